import { asOutOfMemory } from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import { EXIT } from '../exit-codes.js';
import { posInt } from '../flags.js';
import { BACKEND_OPTION, useBackend } from '../setup.js';
import { imageFiles, imageLoader, INFERENCE_OPTIONS, loadForInference } from '../inference.js';

const DEFAULT_TOP_K = 5;

export const predictCommand: Command = {
  name: 'predict',
  summary: 'Classify images: top-5 classes with probabilities',
  usage:
    'vit predict (--checkpoint DIR | --model <name> --weights FILE | --model <name> --pretrained [--tag T] [--weights-url URL] [--cache-dir DIR]) <image…> [--top-k 5] [--backend auto] [--json]',
  options: {
    ...INFERENCE_OPTIONS,
    'top-k': { type: 'string', value: '<k>', description: `how many classes to list per image (default ${DEFAULT_TOP_K})` },
    backend: BACKEND_OPTION,
    json: JSON_OPTION,
  },
  help: [
    'Examples:',
    '  vit predict --checkpoint runs/conv2former_nano shirt.png boot.jpg',
    '  vit predict --model conv2former_n --weights conv2former_n.pth cat.jpg --json',
    '  vit predict --model conv2former_nano --pretrained shirt.png            # our Fashion-MNIST weights, shipped in the package',
    '  vit predict --model cait_xxs24_224 --pretrained cat.jpg                # downloaded once into ~/.cache/vit',
    '  vit predict --model conv2former_n --weights-url ./conv2former_n.pth cat.jpg',
    '',
    'Images (JPEG, PNG, WebP) are resized and centre-cropped as the model expects. Class names come from the',
    "checkpoint's training run, or the pretrained tag's label set (ImageNet-1k, Fashion-MNIST); with --weights",
    'they are class indices.',
    '--pretrained loads the model card\'s published weights (see `vit models --pretrained`; --tag picks one):',
    'downloaded once into the cache (VIT_CACHE_DIR or --cache-dir, default ~/.cache/vit), checked (size and',
    'SHA-256 where the card has them), converted from the official .pth on the fly. VIT_OFFLINE=1 uses the cache',
    'only. --weights-url URL|FILE loads another copy (a mirror, a file you downloaded) with the same tag settings.',
  ].join('\n'),
  async run({ values, positionals }, io) {
    const files = imageFiles(positionals);
    const topK = posInt(values['top-k'], 'top-k') ?? DEFAULT_TOP_K;
    const backend = await useBackend(values.backend ?? 'auto');
    const m = await loadForInference(values, io);
    for (const w of m.warnings) io.err(w);
    try {
      const loader = imageLoader(files, m);
      const r = await m.trainer.predict(loader, { topK }).catch((e: unknown) => {
        throw asOutOfMemory(e, { what: `predicting with ${m.modelName}`, batchSize: Math.min(16, files.length) });
      });
      const name = (c: number) => m.classNames?.[c] ?? String(c);
      const rows = files.map((f, i) => ({ image: f, top: r.classes[i]!.map((c, j) => ({ class: c, name: name(c), probability: r.probabilities[i]![j]! })) }));
      if (values.json) {
        io.out(JSON.stringify({ model: m.modelName, checkpoint: m.source, backend, predictions: rows }, null, 2));
      } else {
        for (const row of rows) {
          io.out(row.image);
          for (const t of row.top) io.out(`  ${(100 * t.probability).toFixed(2).padStart(6)}%  ${t.name}`);
        }
      }
    } finally {
      m.dispose();
    }
    return EXIT.OK;
  },
};
