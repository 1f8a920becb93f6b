import { main } from '../main.js';

/** Runs `vit …` in this process and returns its exit code and what it printed (tests only). */
export async function vit(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** The backend the CLI tests run on (`VIT_TEST_BACKEND`, default cpu). */
export const testBackend = process.env.VIT_TEST_BACKEND ?? 'cpu';

/** A tiny Conv2Former with the seed's CIFAR layout, so a few epochs take seconds on cpu. */
export const tinyConv2Former = ['--model', 'conv2former_n_cifar', '--model-opts', '{"dims":[8,16,16,16],"depths":[1,1,1,1],"kernelSize":3,"mlpRatios":[2,2,2,2]}'];

/** Smaller still (4–8 channels, runs at 8 px): a whole `vit train` of 2 epochs × 5 steps takes about a second on cpu. */
export const microConv2Former = ['--model', 'conv2former_n_cifar', '--model-opts', '{"dims":[4,8,8,8],"depths":[1,1,1,1],"kernelSize":3,"mlpRatios":[1,1,1,1]}'];
