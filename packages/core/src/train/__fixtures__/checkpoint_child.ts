// A child process for the kill-during-checkpoint test (bundled with esbuild by checkpoint.test.ts).
//   node child.mjs <dir> stage <stage>   save version 1, then version 2, SIGKILLing itself at <stage>
//   node child.mjs <dir> loop <start>    save versions start, start+1, … until killed, printing
//                                        "begin N" before and "saved N" after each save
// Every version v is self-consistent: all weights = v, optimizer stepCount = v, trainer.json and
// config meta say v. The parent checks that whatever survives a kill is one whole version.
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { AdamW } from '../../optim/index.js';
import { saveCheckpoint, type CheckpointStage } from '../checkpoint.js';
import { TinyMlp } from './toy.js';

async function main(): Promise<void> {
  const [dir, mode, arg] = process.argv.slice(2) as [string, string, string];
  await tf.setBackend('cpu');
  // ~0.5 MB of weights and 1 MB of optimizer state, so a timed kill can land inside a write.
  const model = new TinyMlp(32, 1024, 4);
  const opt = new AdamW(model, { lr: 0.1 });
  const setVersion = (v: number) => {
    // A step from fixed gradients (no gradient kernels needed in this bare tfjs-core bundle).
    const grads = new Map(opt.variables().map((p) => [p, tf.onesLike(p)] as [tf.Variable, tf.Tensor]));
    opt.step(grads);
    tf.dispose([...grads.values()]);
    for (const p of model.parameters()) tf.tidy(() => p.assign(tf.fill(p.shape, v)));
  };
  const save = (v: number, onStage?: (s: CheckpointStage) => void) =>
    saveCheckpoint(dir, { model, optimizer: opt, trainer: { version: v }, config: { meta: { version: v } } }, { onStage });
  if (mode === 'stage') {
    setVersion(1);
    await save(1);
    setVersion(2);
    await save(2, (s) => {
      if (s === arg) process.kill(process.pid, 'SIGKILL');
    });
    process.stdout.write('not killed\n');
    return;
  }
  for (let v = Number(arg); ; v++) {
    while (opt.stepCount < v) setVersion(v);
    for (const p of model.parameters()) tf.tidy(() => p.assign(tf.fill(p.shape, v)));
    process.stdout.write(`begin ${v}\n`);
    await save(v);
    process.stdout.write(`saved ${v}\n`);
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
