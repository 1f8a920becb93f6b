import { createModel, getModelCard } from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { posInt } from '../flags.js';
import { BACKEND_OPTION, useBackend } from '../setup.js';

export const summaryCommand: Command = {
  name: 'summary',
  summary: 'Print the layer table (module, output shape, params) and totals of a model',
  usage: 'vit summary <model> [--input 224] [--num-classes N] [--json] [--backend cpu]',
  options: {
    input: { type: 'string', value: '<px>', description: "the input image size (square; default the model card's)" },
    'num-classes': { type: 'string', value: '<n>', description: "the classifier's class count (default the model card's)" },
    json: JSON_OPTION,
    backend: BACKEND_OPTION,
  },
  help: ['Examples:', '  vit summary cait_xxs24_224', '  vit summary conv2former_n_cifar --input 32 --json'].join('\n'),
  async run({ values, positionals }, io) {
    const [name] = positionals;
    if (!name || positionals.length > 1) throw new UsageError('expects exactly one model name (see `vit models`)');
    const card = getModelCard(name);
    const size = posInt(values.input, 'input');
    const numClasses = posInt(values['num-classes'], 'num-classes');
    await useBackend(values.backend);
    const h = size ?? card.inputSize[0];
    const w = size ?? card.inputSize[1];
    const model = createModel(name, numClasses ? { numClasses, imgSize: size } : size ? { imgSize: size } : {});
    try {
      const s = model.summary([1, h, w, card.inputSize[2]]);
      if (values.json) {
        io.out(
          JSON.stringify(
            { model: name, params: s.totalParams, trainableParams: s.trainableParams, inputShape: s.inputShape, outputShape: s.outputShape, layers: s.rows },
            null,
            2,
          ),
        );
      } else {
        io.out(`${name}`);
        io.out(s.text);
      }
    } finally {
      model.dispose();
    }
    return EXIT.OK;
  },
};
