import { getModelCard, listModels, type ModelCard } from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import { EXIT } from '../exit-codes.js';
import '../setup.js';

function table(rows: string[][]): string[] {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ').trimEnd());
}

/** Fetchable tags by name; a tag no program can fetch is marked (`in1k (manual)`). */
function pretrainedColumn(c: ModelCard): string {
  const tags = (c.pretrained ?? []).map((t) => (t.unavailable ? `${t.tag} (manual)` : t.tag));
  return tags.length ? tags.join(', ') : '—';
}

export const modelsCommand: Command = {
  name: 'models',
  summary: 'List registered models (name, params, input size, paper top-1)',
  usage: 'vit models [glob…] [--pretrained] [--json]',
  options: {
    json: JSON_OPTION,
    pretrained: { type: 'boolean', description: 'only models with weights a program can fetch, with their tags' },
  },
  help: [
    'Examples:',
    '  vit models',
    "  vit models 'cait_*'",
    '  vit models --pretrained            # only models with weights a program can fetch, with their tags',
    "  vit models 'conv2former_*' --json",
  ].join('\n'),
  async run({ values, positionals }, io) {
    const names = listModels(positionals.length ? positionals : '*', { pretrained: values.pretrained === true });
    const cards = names.map(getModelCard);
    if (values.json) {
      io.out(JSON.stringify(cards, null, 2));
      return EXIT.OK;
    }
    if (!cards.length) {
      io.err(`No registered model matches ${positionals.join(' ') || '*'}.`);
      return EXIT.FAILED;
    }
    const rows = [['model', 'params', 'input', 'top-1', 'official', 'pretrained']];
    for (const c of cards) {
      rows.push([
        c.name,
        c.paramCount !== undefined ? `${(c.paramCount / 1e6).toFixed(2)}M` : '—',
        `${c.inputSize[0]}x${c.inputSize[1]}`,
        c.top1 !== undefined ? c.top1.toFixed(1) : '—',
        c.official ? 'yes' : 'no',
        pretrainedColumn(c),
      ]);
    }
    for (const l of table(rows)) io.out(l);
    io.out(`${cards.length} model${cards.length === 1 ? '' : 's'}`);
    return EXIT.OK;
  },
};
