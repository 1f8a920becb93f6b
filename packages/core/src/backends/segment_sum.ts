import * as tf from '@tensorflow/tfjs-core';
import { scoped, sizeOf, type Info } from './kernel_util.js';
import { heapView } from './matmul_wasm.js';

/**
 * UnsortedSegmentSum (the gradient of gather): out[s, …] = Σ_{i: ids[i] = s} x[i, …]. tfjs's cpu
 * kernel loops over every segment with a full mask-multiply-sum (O(segments·rows·width): minutes
 * for an embedding-sized gather gradient) and wasm has none. Ids outside [0, numSegments) are
 * dropped, as TensorFlow does.
 */

type Values = Float32Array | Int32Array | Uint8Array;

interface ReadableBackend {
  readSync(dataId: tf.DataId): unknown;
}
interface CpuBackend extends ReadableBackend {
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Values): Info;
}
interface WasmBackend extends ReadableBackend {
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: Values): Info;
}

function outShapeOf(x: Info, ids: Info, numSegments: number): number[] {
  return [numSegments, ...x.shape.slice(ids.shape.length)];
}

/** One pass over the rows: O(rows·width). */
function segmentSumLoop(x: ArrayLike<number>, ids: ArrayLike<number>, numSegments: number, width: number, out: Values): void {
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue;
    const o = s * width;
    const r = i * width;
    for (let j = 0; j < width; j++) out[o + j]! += x[r + j]!;
  }
}

/** The kernel's inputs, checked, with the output shape and the elements per segment. */
function segmentArgs(args: Parameters<tf.KernelFunc>[0]) {
  const { x, segmentIds } = args.inputs as { x: Info; segmentIds: Info };
  const { numSegments } = args.attrs as unknown as tf.UnsortedSegmentSumAttrs;
  for (let i = 0; i < segmentIds.shape.length; i++) {
    if (x.shape[i] !== segmentIds.shape[i]) {
      throw new Error(`UnsortedSegmentSum: segmentIds shape [${segmentIds.shape.join(',')}] must be a prefix of the data shape [${x.shape.join(',')}]`);
    }
  }
  const shape = outShapeOf(x, segmentIds, numSegments);
  return { x, segmentIds, numSegments, shape, width: sizeOf(shape) / Math.max(numSegments, 1) };
}

export function segmentSumCpu(args: Parameters<tf.KernelFunc>[0]): Info {
  const { x, segmentIds, numSegments, shape, width } = segmentArgs(args);
  const backend = args.backend as CpuBackend;
  const out = x.dtype === 'int32' ? new Int32Array(sizeOf(shape)) : new Float32Array(sizeOf(shape));
  segmentSumLoop(backend.readSync(x.dataId) as Values, backend.readSync(segmentIds.dataId) as Values, numSegments, width, out);
  return backend.makeTensorInfo(shape, x.dtype, out);
}

export function segmentSumWasm(args: Parameters<tf.KernelFunc>[0]): Info {
  const { x, segmentIds, numSegments, shape, width } = segmentArgs(args);
  const backend = args.backend as WasmBackend;
  const rows = sizeOf(segmentIds.shape);
  // The wasm ScatterNd kernel sums duplicate indices but does not bound-check them: use it only
  // when every id is in range (a view of the heap, no copy, to check).
  const ids = heapView(backend, segmentIds);
  let inRange = true;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i]! < 0 || ids[i]! >= numSegments) {
      inRange = false;
      break;
    }
  }
  if (inRange && rows > 0 && sizeOf(shape) > 0 && (x.dtype === 'float32' || x.dtype === 'int32')) {
    return scoped(backend, 'wasm', (s) => {
      const sums = s.run('ScatterNd', { indices: s.reshape(segmentIds, [rows, 1]), updates: s.reshape(x, [rows, width]) }, { shape: [numSegments, width] });
      return s.reshape(sums, shape);
    });
  }
  const out = x.dtype === 'int32' ? new Int32Array(sizeOf(shape)) : new Float32Array(sizeOf(shape));
  segmentSumLoop(heapView(backend, x), heapView(backend, segmentIds), numSegments, width, out);
  return backend.makeOutput(shape, x.dtype, undefined, out);
}
