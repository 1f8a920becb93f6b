/**
 * The Fashion-MNIST subset bundled with the demo (public/fashion-mnist: gzipped IDX files made by
 * `npm run data`), read in the browser with core's IDX parser.
 */
import { ArrayDataset, FASHION_MNIST_CLASSES, parseIdx } from '@vit/core';

export interface Subset {
  train: ArrayDataset;
  test: ArrayDataset;
}

async function fetchIdx(url: string): Promise<ReturnType<typeof parseIdx>> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  let bytes = new Uint8Array(await res.arrayBuffer());
  // A server may already have undone the gzip (Content-Encoding); the magic says which.
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).arrayBuffer());
  return parseIdx(bytes, url);
}

async function split(base: string, prefix: 'train' | 't10k'): Promise<ArrayDataset> {
  const [images, labels] = await Promise.all([fetchIdx(`${base}/${prefix}-images-idx3-ubyte.gz`), fetchIdx(`${base}/${prefix}-labels-idx1-ubyte.gz`)]);
  const [, h, w] = images.dims as [number, number, number];
  // ArrayDataset checks the counts against each other and every label against the class list.
  return new ArrayDataset(images.data, labels.data, [h, w, 1], FASHION_MNIST_CLASSES);
}

export async function loadSubset(base = `${import.meta.env.BASE_URL}fashion-mnist`): Promise<Subset> {
  const [train, test] = await Promise.all([split(base, 'train'), split(base, 't10k')]);
  return { train, test };
}
