import { basename, extname, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { asOutOfMemory, explain, plotExplanation, type ExplainMethod } from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { nonNegInt, num, oneOf } from '../flags.js';
import { BACKEND_OPTION, useBackend } from '../setup.js';
import { decodeSize, imageFiles, imageLoader, INFERENCE_OPTIONS, loadForInference } from '../inference.js';

const METHODS: readonly ExplainMethod[] = ['auto', 'gradcam', 'rollout'];

export const explainCommand: Command = {
  name: 'explain',
  summary: 'Where in an image a prediction comes from: Grad-CAM or attention rollout, as an overlay PNG',
  usage:
    'vit explain (--checkpoint DIR | --model <name> --weights FILE | --model <name> --pretrained [--tag T] [--weights-url URL] [--cache-dir DIR]) <image> [--out overlay.png] [--method auto|gradcam|rollout] [--class N] [--alpha 0.5] [--backend auto] [--json]',
  options: {
    ...INFERENCE_OPTIONS,
    out: { type: 'string', value: '<file>', description: 'the overlay PNG to write (default <image name>.explain.png in this folder)' },
    method: { type: 'string', value: '<auto|gradcam|rollout>', description: "auto (default): the architecture's choice (attention rollout for CaiT, Grad-CAM for the others)" },
    class: { type: 'string', value: '<n>', description: 'explain this class index with Grad-CAM (default: the top class)' },
    alpha: { type: 'string', value: '<a>', description: 'weight of the heatmap colours in the blend, in [0, 1] (default 0.5)' },
    backend: BACKEND_OPTION,
    json: JSON_OPTION,
  },
  help: [
    'Examples:',
    '  vit explain --checkpoint runs/conv2former_nano shirt.png                  # writes shirt.explain.png',
    '  vit explain --model cait_nano --pretrained boot.png --out boot-cam.png --method gradcam --class 9',
    '',
    'Prints the top class and writes the image with the explanation map over it (jet colours, red = most',
    'evidence), at the image\'s own size; the map covers the centred square the model saw (after its resize and',
    "centre crop), the rest of the image is left as it is. --out defaults to <image name>.explain.png here.",
    '--method auto (default) uses attention rollout for models with global attention maps (CaiT) and Grad-CAM',
    'for the others; --class N explains class N with Grad-CAM (rollout cannot target a class). Models and',
    'weights load as for `vit predict`.',
  ].join('\n'),
  async run({ values, positionals }, io) {
    const files = imageFiles(positionals);
    if (files.length !== 1) throw new UsageError(`give one image, got ${files.length}`);
    const file = files[0]!;
    const method = oneOf(values.method, 'method', METHODS) ?? 'auto';
    const classIndex = nonNegInt(values.class, 'class');
    const alpha = num(values.alpha, 'alpha', (a) => a >= 0 && a <= 1, 'a number in [0, 1]') ?? 0.5;
    const out = resolve((values.out as string | undefined) ?? `${basename(file, extname(file))}.explain.png`);
    if (out === file) throw new UsageError(`--out ${out} would overwrite the image; give another file`);
    const backend = await useBackend((values.backend as string | undefined) ?? 'auto');
    const m = await loadForInference(values, io);
    for (const w of m.warnings) io.err(w);
    try {
      let x: tf.Tensor4D | undefined;
      for await (const batch of imageLoader([file], m, 1).epoch(0)) {
        x = batch.x;
        batch.y.dispose();
      }
      let r: ReturnType<typeof explain>;
      try {
        r = explain(m.trainer.model, x!, { method, classIndex });
      } catch (e) {
        throw asOutOfMemory(e, { what: `explaining with ${m.modelName}`, batchSize: 1 });
      } finally {
        x!.dispose();
      }
      const softmax = tf.softmax(r.logits);
      const [map, probs] = [await r.map.data(), await softmax.data()];
      tf.dispose([r.map, r.logits, softmax]);
      const top = probs.indexOf(Math.max(...probs));
      const name = (c: number) => m.classNames?.[c] ?? String(c);
      await plotExplanation(file, { data: map, width: m.imgSize, height: m.imgSize }, out, { alpha, centreCrop: m.imgSize / decodeSize(m) });
      const explained = r.classIndex[0]!;
      if (values.json) {
        io.out(
          JSON.stringify(
            {
              model: m.modelName,
              checkpoint: m.source,
              backend,
              image: file,
              top: { class: top, name: name(top), probability: probs[top] },
              method: r.method,
              ...(r.layer ? { layer: r.layer } : {}),
              explained: { class: explained, name: name(explained), probability: probs[explained] },
              out,
            },
            null,
            2,
          ),
        );
      } else {
        io.out(`${file}: ${name(top)} (${(100 * probs[top]!).toFixed(2)}%)`);
        const what = r.method === 'rollout' ? 'attention rollout (class-agnostic)' : `Grad-CAM of '${name(explained)}' on ${r.layer}`;
        io.out(`  ${what} → ${out}`);
      }
    } finally {
      m.dispose();
    }
    return EXIT.OK;
  },
};
