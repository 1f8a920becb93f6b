#!/usr/bin/env node
// Publishes a nano run's final weights as the model's `fashion_mnist` pretrained tag: converts
// <run>/final/model.safetensors to float16 (half the bytes; the test top-1 is measured on the
// float16 file itself) into packages/<pkg>/weights/<model>.fashion_mnist.safetensors, evaluates it
// on the 10,000 Fashion-MNIST test images, and prints the card entry (url, sha256, size, top-1).
//
//   node tools/nano-weights.mjs --model conv2former_nano --run runs/pre_conv2former_nano [--backend tensorflow]
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGES = { conv2former_nano: 'conv2former', regionvit_nano: 'regionvit', litv2_nano: 'hilo', resnet10_mrlal_nano: 'mrla', cait_nano: 'cait' };
const { values } = parseArgs({ options: { model: { type: 'string' }, run: { type: 'string' }, backend: { type: 'string', default: 'wasm' } } });
const pkg = PACKAGES[values.model];
if (!pkg || !values.run) {
  console.error(`usage: node tools/nano-weights.mjs --model <${Object.keys(PACKAGES).join('|')}> --run RUN_DIR [--backend B]`);
  process.exit(2);
}
const vit = (...args) => execFileSync(process.execPath, [join(root, 'packages/cli/bin/vit.js'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
const out = join(root, 'packages', pkg, 'weights', `${values.model}.fashion_mnist.safetensors`);
mkdirSync(dirname(out), { recursive: true });
vit('convert', join(resolve(values.run), 'final', 'model.safetensors'), '--out', out, '--dtype', 'F16');
const ev = JSON.parse(vit('eval', '--model', values.model, '--weights', out, '--data', 'fashion-mnist', '--backend', values.backend, '--json'));
const top1 = Math.round(ev.top1 * 10000) / 100;
const summary = JSON.parse(readFileSync(join(resolve(values.run), 'summary.json'), 'utf8'));
console.log(
  JSON.stringify(
    {
      model: values.model,
      file: out,
      sha256: createHash('sha256').update(readFileSync(out)).digest('hex'),
      sizeBytes: statSync(out).size,
      top1,
      evaluatedOn: ev.data ?? 'fashion-mnist test',
      run: { epochs: summary.epochs, recipe: summary.recipe, backend: summary.backend, valTop1: summary.valTop1, command: summary.command },
    },
    null,
    2,
  ),
);
