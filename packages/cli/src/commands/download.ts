import { downloadPretrained } from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { downloadProgress, PRETRAINED_OPTIONS, pretrainedFlags } from '../inference.js';
import '../setup.js';

export const downloadCommand: Command = {
  name: 'download',
  summary: "Fetch a model's pretrained weights into the cache (for offline use later)",
  usage: 'vit download <model> [--tag T] [--weights-url URL] [--cache-dir DIR] [--json]',
  options: {
    ...PRETRAINED_OPTIONS,
    json: JSON_OPTION,
  },
  help: [
    'Examples:',
    '  vit download cait_xxs24_224',
    '  vit download litv2_small --cache-dir /data/vit-cache',
    '  VIT_OFFLINE=1 vit predict --model cait_xxs24_224 --pretrained cat.jpg   # later, from the cache',
    '',
    "The file the model card lists (`vit models --pretrained`) is downloaded whole (retried and resumed when",
    'the connection drops), checked against the size and SHA-256 the card gives, and renamed into the cache',
    '(VIT_CACHE_DIR or --cache-dir, default ~/.cache/vit); a failed or refused download leaves nothing there.',
    'Weights shipped inside a package (the *_nano Fashion-MNIST weights) need no download: their path is printed.',
  ].join('\n'),
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError('give exactly one model name (see `vit models --pretrained`)');
    const name = positionals[0]!;
    // An unknown model, a model without weights or an unknown tag fails before any network use.
    const r = await downloadPretrained(name, { ...pretrainedFlags(values), onProgress: downloadProgress(io) });
    if (values.json) {
      io.out(JSON.stringify({ model: name, tag: r.tag.tag, url: r.source.url, file: r.file, fromCache: r.fromCache, labels: r.tag.labels }, null, 2));
      return EXIT.OK;
    }
    const how = r.fromCache ? 'already in the cache' : /^https?:/i.test(r.source.url) ? 'downloaded' : 'shipped locally';
    io.out(`${name}.${r.tag.tag}: ${how}: ${r.file}`);
    return EXIT.OK;
  },
};
