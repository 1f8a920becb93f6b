"""Checks, with PyTorch, what `vit convert --to-pytorch` exported (convert.roundtrip.test.ts runs it).

Reads a JSON list of jobs on stdin; for each:
  exported   a .pth we wrote: torch.load(path, weights_only=True) must accept it;
  original   (optional) the official .pth it came from: the state dicts must be equal exactly
             (same keys, dtypes, shapes and bytes; a wrapped file's 'model' entry, 'module.' removed);
  golden     (optional) the golden's metadata (reference, class, config, overrides): the official
             model class is built from the official repository under REF_ROOT (owner+repo) and must
             take the exported state dict with load_state_dict(strict=True).
Prints one JSON line per job: {"exported", "loaded", "equal", "official": "strict ok" | "skipped: why"}.
Exits 0 unless a check failed (then the line carries "error").
"""
import functools, importlib, json, os, sys, types

import torch

REF_ROOT = os.environ.get('REF_ROOT', '')
SHIM = os.environ.get('SHIM', '')


def state_dict_of(obj):
    if isinstance(obj, dict) and 'model' in obj and isinstance(obj['model'], dict):
        obj = obj['model']
    if all(isinstance(k, str) and k.startswith('module.') for k in obj):
        obj = {k[len('module.'):]: v for k, v in obj.items()}
    return obj


def same(a, b):
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    a = a.contiguous().reshape(-1)
    b = b.contiguous().reshape(-1)
    if a.numel() == 0:
        return True
    return bool(torch.equal(a.view(torch.uint8), b.view(torch.uint8)))


def norm_layer(v):
    import torch.nn as nn
    if v == 'torch.nn.BatchNorm2d':
        return nn.BatchNorm2d
    if isinstance(v, str) and v.startswith('functools.partial(torch.nn.LayerNorm, eps='):
        return functools.partial(nn.LayerNorm, eps=float(v[len('functools.partial(torch.nn.LayerNorm, eps='):-1]))
    if v is None:
        return None
    raise ValueError(f'unknown norm_layer {v!r}')


def fake_torchvision():
    """LITv2 imports torchvision.ops.deform_conv2d, absent from this machine's wheels: a stand-in
    with the same signature (only construction and load_state_dict are exercised here)."""
    tv = types.ModuleType('torchvision')
    ops = types.ModuleType('torchvision.ops')
    ops.deform_conv2d = lambda *a, **k: None
    tv.ops = ops
    sys.modules.setdefault('torchvision', tv)
    sys.modules.setdefault('torchvision.ops', ops)


def official_model(golden):
    repo, path = golden['reference'].split(':', 1)
    root = os.path.join(REF_ROOT, repo.replace('/', '+'))
    if not REF_ROOT or not os.path.isdir(root):
        return None, f'no official repository {repo} under REF_ROOT'
    for m in [m for m in sys.modules if m == 'models' or m.startswith('models.') or m.startswith('regionvit') or m == 'cait_models']:
        del sys.modules[m]
    sys.path[:] = [p for p in sys.path if not p.startswith(REF_ROOT)]
    if SHIM and os.path.isdir(SHIM):
        sys.path.insert(0, SHIM)
    config = dict(golden['config'])
    if 'norm_layer' in config:
        config['norm_layer'] = norm_layer(config['norm_layer'])
    overrides = golden.get('overrides') or {}
    if repo == 'joyfang1106/MRLA':
        base = os.path.join(root, 'resnet')
        sys.path.insert(0, base)
        pkg = types.ModuleType('models')
        pkg.__path__ = [os.path.join(base, 'models')]
        sys.modules['models'] = pkg
        mod = importlib.import_module('models.resnet_mrla_light')
        block = getattr(mod, config.pop('block'))
        attrs = {}
        for k, v in overrides.items():
            cls, attr = k.split('.', 1)
            if cls == block.__name__:
                attrs[attr] = v
            else:
                target = getattr(mod, cls, None) or importlib.import_module(f'models.modules.{cls}')
                setattr(target, attr, v)
        block = type(block.__name__, (block,), attrs)
        return getattr(mod, golden['class'])(block, **config), None
    if overrides:
        return None, f'overrides {overrides} not supported for {repo}'
    if repo == 'ziplab/LITv2':
        fake_torchvision()
        sys.path.insert(0, os.path.join(root, 'classification'))
        if SHIM and os.path.isdir(SHIM):
            sys.path.insert(0, SHIM)
    else:
        sys.path.insert(0, root)
    mod = importlib.import_module(path[:-len('.py')].replace('/', '.') if repo != 'ziplab/LITv2' else 'models.litv2')
    return getattr(mod, golden['class'])(**config), None


def main():
    jobs = json.load(sys.stdin)
    failed = False
    for job in jobs:
        out = {'exported': job['exported']}
        try:
            sd = torch.load(job['exported'], weights_only=True)
            out['loaded'] = len(sd)
            if job.get('original'):
                ref = state_dict_of(torch.load(job['original'], weights_only=False, map_location='cpu'))
                bad = sorted(set(ref) ^ set(sd)) + [k for k in ref if k in sd and not same(ref[k], sd[k])]
                out['equal'] = not bad
                if bad:
                    out['error'] = f'differs from the original at {bad[:5]}'
            if job.get('golden'):
                try:
                    model, why = official_model(job['golden'])
                except Exception as e:  # an import problem of the official code, not of our file
                    model, why = None, f'official code not importable: {type(e).__name__}: {e}'
                if model is None:
                    out['official'] = f'skipped: {why}'
                else:
                    model.load_state_dict(sd, strict=True)
                    out['official'] = 'strict ok'
        except Exception as e:
            out['error'] = f'{type(e).__name__}: {e}'
        failed = failed or 'error' in out
        print(json.dumps(out), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
