"""Generates the extra golden cases in fixtures/ (x_*.safetensors) from the OFFICIAL RegionViT code.

Usage: python3 gen_goldens.py /path/to/RegionViT-checkout [case ...]
       python3 gen_goldens.py /path/to/RegionViT-checkout --aux   (official/index_and_masks.json)

The checkout must hold IBM/RegionViT's `regionvit/regionvit.py` and `regionvit/attention/*.py`
unmodified (sha256 of regionvit.py: ecbe0f28..., the shared goldens' file). timm is not needed: the
few helpers the official file imports (to_2tuple, trunc_normal_, DropPath, Mlp, _cfg,
register_model) are provided below with timm 0.4's semantics, none of which touches the forward
of a model whose dropout / drop-path rates are 0.

Each file follows shared/golden/README.md: every official state_dict entry under its official key
(PyTorch layouts), golden.input (NCHW), golden.logits (eval), golden.features.<i> /
golden.features_regional.<i> (outputs of layers[i], B,C,H,W), golden.probe and golden.grad.input,
plus the metadata keys (config = the exact constructor kwargs).
"""
import collections.abc
import hashlib
import json
import struct
import sys
import types
from functools import partial
from itertools import repeat

import torch
import torch.nn as nn


def install_timm_stub():
    def to_2tuple(x):
        if isinstance(x, collections.abc.Iterable):
            return x
        return tuple(repeat(x, 2))

    def trunc_normal_(tensor, mean=0., std=1., a=-2., b=2.):
        return nn.init.trunc_normal_(tensor, mean, std, a, b)

    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            if not self.drop_prob or not self.training:
                return x
            keep = 1 - self.drop_prob
            mask = torch.floor(keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype))
            return x.div(keep) * mask

    class Mlp(nn.Module):
        def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.):
            super().__init__()
            out_features = out_features or in_features
            hidden_features = hidden_features or in_features
            self.fc1 = nn.Linear(in_features, hidden_features)
            self.act = act_layer()
            self.fc2 = nn.Linear(hidden_features, out_features)
            self.drop = nn.Dropout(drop)

        def forward(self, x):
            return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    mods = {}
    for name in ['timm', 'timm.models', 'timm.models.layers', 'timm.models.registry', 'timm.models.vision_transformer']:
        mods[name] = types.ModuleType(name)
        sys.modules[name] = mods[name]
    mods['timm.models.layers'].to_2tuple = to_2tuple
    mods['timm.models.layers'].trunc_normal_ = trunc_normal_
    mods['timm.models.layers'].DropPath = DropPath
    mods['timm.models.registry'].register_model = lambda fn: fn
    mods['timm.models.vision_transformer'].Mlp = Mlp
    mods['timm.models.vision_transformer']._cfg = lambda url='', **kw: {'url': url, **kw}


LN_DEFAULT = "<class 'torch.nn.modules.normalization.LayerNorm'>"


def ln_partial(eps):
    return f'functools.partial(torch.nn.LayerNorm, eps={eps})'


def norm_from_string(s):
    if s == LN_DEFAULT:
        return nn.LayerNorm
    eps = float(s.split('eps=')[1].rstrip(')'))
    return partial(nn.LayerNorm, eps=eps)


BASE = dict(img_size=64, patch_size=4, in_chans=3, num_classes=10, mlp_ratio=4.0, qkv_bias=True, qk_scale=None,
            drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=ln_partial(1e-06),
            computed_cls_token=True, peg=False, det_norm=False)

CASES = {
    # 'linear' stem, window 3 (wrapped rel-pos index), PEG, a 50x38 input: local 12x9 vs regional 5x4
    # (needs 15x12: a whole padded window row AND column), then 6x5 vs 3x2 (pad 3 bottom, 1 right),
    # then 3x3 vs 2x1 (pad bottom only: p_r = 0). Two blocks in the first stages, so the padded tokens
    # (re-zeroed by the PEG re-flatten) evolve through a block.
    'x_linear_ws3_peg_pad': dict(
        config=dict(BASE, img_size=50, embed_dim=[12, 12, 24, 48], depth=[2, 2, 1], num_heads=[1, 2, 4], kernel_sizes=[3, 3, 3],
                    downsampling=['c', 'sc', 'sc'], patch_conv_type='linear', peg=True),
        input=(2, 3, 50, 38),
        description="'linear' stem, window 3, PEG, 50x38 input: padded local maps in every stage "
                    "(full padded window row+column; bottom+right; bottom only), masks with the bottom-right union quirk"),
    # det_norm (4 stages), '3conv' stem, in_chans 2, window 2, 44x60 input (local 11x15 vs regional 6x8: pad 1+1;
    # stage 3 pads the bottom only), qkv_bias False, qk_scale 0.3, per-stage mlp ratios, nn.LayerNorm eps 1e-5,
    # no classifier (num_classes 0: logits are the pooled features).
    'x_det_3conv_ws2_pad': dict(
        config=dict(BASE, img_size=44, in_chans=2, num_classes=0, embed_dim=[16, 16, 32, 64, 64], depth=[1, 2, 1, 1],
                    num_heads=[2, 2, 4, 4], kernel_sizes=[2, 2, 2, 2], downsampling=['c', 'sc', 'sc', 'sc'],
                    patch_conv_type='3conv', mlp_ratio=[2.0, 3.0, 1.5, 4.0], qkv_bias=False, qk_scale=0.3,
                    norm_layer=LN_DEFAULT, det_norm=True),
        input=(2, 2, 44, 60),
        description="det_norm (norm0..3 applied to the local tokens between stages), '3conv' stem, in_chans 2, window 2, "
                    "44x60 input (padding + masks), qkv_bias False, qk_scale 0.3, mlp_ratio list, LayerNorm eps 1e-5, num_classes 0"),
    # '1conv' stem, window 7, 54x40 input: local 14x10 vs regional 2x2 -> right padding only (p_b = 0), so the
    # bottom-right window is NOT masked at all (official quirk) and its regional token sees the padded tokens.
    # Stage 1 'c' with 8 -> 16 channels (1x1 grouped conv with multiplier 2, no stride: same padding again);
    # stage 2 's' (an empty projection, no keys).
    'x_1conv_ws7_rightpad': dict(
        config=dict(BASE, img_size=54, embed_dim=[8, 8, 16, 16], depth=[1, 2, 1], num_heads=[2, 2, 4], kernel_sizes=[7, 7, 7],
                    downsampling=['c', 'c', 's'], patch_conv_type='1conv', mlp_ratio=2.0, num_classes=5),
        input=(2, 3, 54, 40),
        description="'1conv' stem, window 7 (wrapped index), 54x40 input: right padding only, so the bottom-right "
                    "window has no mask (official quirk); 'c' projection 8->16 (grouped 1x1, multiplier 2); 's' projection (no keys)"),
    # Window sizes that differ per stage (4, 4, 2): local 5x6 vs regional 2x2 (padded to 8x8), 3x3 vs 1x1
    # (padded to 4x4), then 2x2 vs 1x1 with window 2 (exact); in_chans 1, a 'sc' first stage that widens
    # 8 -> 16, no qkv bias, no classifier, 33x46 input.
    'x_mixed_ws_3conv': dict(
        config=dict(BASE, in_chans=1, num_classes=0, mlp_ratio=2.0, qkv_bias=False, embed_dim=[8, 16, 32, 32], depth=[2, 1, 2],
                    num_heads=[1, 2, 2], kernel_sizes=[4, 4, 2], downsampling=['sc', 'sc', 'sc'], patch_conv_type='3conv'),
        input=(2, 1, 33, 46),
        description="per-stage windows 4, 4, 2 (padding then exact), in_chans 1, widening 'sc' first stage, qkv_bias False, num_classes 0, 33x46 input"),
    # det_norm with a stage of depth 0 (projection only), 'linear' stem with patch 8 (regions of 40 px), window 5,
    # 'cs' modes, in_chans 1, a 23x13 input (smaller than one region: every stage is one 5x5 window holding
    # a single valid local token), nn.LayerNorm eps 1e-5.
    'x_det_linear_p8_depth0': dict(
        config=dict(BASE, patch_size=8, in_chans=1, num_classes=4, norm_layer=LN_DEFAULT, det_norm=True, embed_dim=[16, 16, 16, 32, 32],
                    depth=[2, 1, 0, 1], num_heads=[2, 1, 2, 1], kernel_sizes=[5, 5, 5, 5], downsampling=['sc', 'cs', 'cs', 'sc'],
                    patch_conv_type='linear'),
        input=(2, 1, 23, 13),
        description="det_norm, a depth-0 stage, 'linear' stem patch 8, window 5, 'cs' modes, in_chans 1, 23x13 input (under one region)"),
}


def randomize(model, gen):
    """Re-draws every parameter as shared/golden/README.md describes (no degenerate init)."""
    from regionvit.attention.attention2d import LayerNorm2d
    norm_params = set()
    for m in model.modules():
        if isinstance(m, (nn.LayerNorm, LayerNorm2d)):
            if m.weight is not None:
                norm_params.add(id(m.weight))
            if m.bias is not None:
                norm_params.add(id(m.bias))
    with torch.no_grad():
        for name, p in model.named_parameters():  # shared tensors (proj/proj_cls) once
            if name.endswith('rel_pos'):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif id(p) in norm_params:
                base = 1.0 if name.endswith('weight') else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith('bias'):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)


def write_safetensors(path, tensors, metadata):
    header = {'__metadata__': metadata}
    offset = 0
    blobs = []
    for k, t in tensors.items():
        t = t.detach().contiguous()
        dtype = {torch.float32: 'F32', torch.int64: 'I64'}[t.dtype]
        data = t.numpy().tobytes()
        header[k] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def generate(root, name, spec, seed):
    from regionvit.regionvit import RegionViT
    cfg = spec['config']
    kwargs = dict(cfg, norm_layer=norm_from_string(cfg['norm_layer']))
    torch.manual_seed(seed)
    model = RegionViT(**kwargs)
    gen = torch.Generator().manual_seed(seed)
    randomize(model, gen)
    model.eval()
    x = torch.randn(spec['input'], generator=gen)
    feats = {}
    hooks = []
    for i, layer in enumerate(model.layers):
        def hook(_m, _inp, out, i=i):
            feats[f'golden.features.{i}'] = out[1].detach().clone()
            feats[f'golden.features_regional.{i}'] = out[0].detach().clone()
        hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    probe = torch.randn(logits.shape, generator=gen)
    xg = x.clone().requires_grad_(True)
    (model(xg) * probe).sum().backward()
    with torch.no_grad():
        model64 = model.double()
        l64 = model64(x.double())
        model.float()
    sd = model.state_dict()
    tensors = dict(sd)
    tensors['golden.input'] = x
    tensors['golden.logits'] = logits
    for k in sorted(feats, key=lambda s: (s.split('.')[1], int(s.split('.')[-1]))):
        tensors[k] = feats[k]
    tensors['golden.probe'] = probe
    tensors['golden.grad.input'] = xg.grad
    src = open(f'{root}/regionvit/regionvit.py', 'rb').read()
    metadata = {
        'arch': 'regionvit',
        'case': name,
        'case_description': spec['description'],
        'class': 'RegionViT',
        'reference': 'IBM/RegionViT:regionvit/regionvit.py',
        'reference_files_sha256': json.dumps({'regionvit/regionvit.py': hashlib.sha256(src).hexdigest()}),
        'config': json.dumps(cfg),
        'state_dict_order': json.dumps(list(sd.keys())),
        'features': json.dumps({k: {'layout': 'B,C,H,W', 'module': f"layers.{k.split('.')[-1]} output[{0 if 'regional' in k else 1}]",
                                    'shape': list(v.shape)} for k, v in feats.items()}),
        'input_shape': json.dumps(list(spec['input'])),
        'has_logits_train': 'false',
        'fp64_check': json.dumps({'logits_max_abs': float((l64.float() - logits).abs().max())}),
        'generator': f'test/gen_goldens.py, official code, torch {torch.__version__} CPU float32',
        'torch': torch.__version__,
        'seed': str(seed),
        'notes': 'Weights re-randomised as in shared/golden (matrices N(0,1/fan_in), biases N(0,0.2), norm weights '
                 '1+N(0,0.2), norm biases N(0,0.2), rel_pos N(0,1)). features.i / features_regional.i = outputs of layers[i] '
                 '(before det_norm), B,C,H,W.',
    }
    out = f'{sys.path[0]}/fixtures/{name}.safetensors'
    write_safetensors(out, tensors, metadata)
    print(name, 'logits', list(logits.shape), 'max|logits|', float(logits.abs().max()), 'fp64 diff', metadata['fp64_check'])


# (ws, hS, wS, pR, pB): regional grid hS x wS, local map (hS*ws - pB) x (wS*ws - pR).
MASK_CASES = [(3, 5, 4, 3, 3), (3, 3, 2, 1, 3), (3, 2, 1, 0, 3), (2, 6, 8, 1, 1), (2, 2, 2, 0, 1), (7, 2, 2, 4, 0),
              (7, 1, 1, 2, 0), (4, 3, 3, 4, 2), (4, 2, 3, 0, 4), (2, 3, 3, 2, 2), (4, 2, 2, 1, 6), (2, 2, 2, 1, -1),
              (5, 2, 3, 2, 0), (2, 1, 3, 1, 0)]
# Right paddings the official mask construction rejects (outside [0, ws]).
MASK_FAILURES = [(2, 2, 2, 3, 0), (3, 2, 2, -1, 1)]


def generate_aux(root, out):
    """Official rel_pos_index (ws 2..7, 14) and window masks, for the unit tests of the two constructions."""
    from regionvit.attention.attention_variants import AttentionWithRelPos
    from regionvit.regionvit import convert_to_flatten_layout
    index = {str(ws): AttentionWithRelPos(4, num_heads=1, attn_map_dim=(ws, ws)).rel_pos_index.tolist() for ws in [2, 3, 4, 5, 7, 14]}
    masks = []
    for ws, hs, wsn, pr, pb in MASK_CASES:
        cls = torch.zeros(1, 1, hs, wsn)
        patch = torch.zeros(1, 1, hs * ws - pb, wsn * ws - pr)
        o = convert_to_flatten_layout(cls, patch, ws)
        mask, p_r, p_b = o[1], o[3], o[5]
        assert (p_r, p_b) == (pr, pb), (ws, hs, wsn, pr, pb, p_r, p_b)
        masks.append({'ws': ws, 'hS': hs, 'wS': wsn, 'pR': pr, 'pB': pb, 'localShape': list(patch.shape[2:]),
                      'mask': ''.join('1' if v else '0' for v in mask.flatten().tolist())})
    failures = []
    for ws, hs, wsn, pr, pb in MASK_FAILURES:
        try:
            convert_to_flatten_layout(torch.zeros(1, 1, hs, wsn), torch.zeros(1, 1, hs * ws - pb, wsn * ws - pr), ws)
            failures.append({'ws': ws, 'hS': hs, 'wS': wsn, 'pR': pr, 'pB': pb, 'fails': False})
        except Exception as e:  # noqa: BLE001 - any failure of the official code is the point
            failures.append({'ws': ws, 'hS': hs, 'wS': wsn, 'pR': pr, 'pB': pb, 'fails': True, 'error': type(e).__name__})
    with open(out, 'w') as f:
        json.dump({'source': 'IBM/RegionViT official code via test/gen_goldens.py --aux', 'relPosIndex': index, 'masks': masks,
                   'failures': failures}, f, separators=(',', ':'))
    print('wrote', out)


def main():
    root = sys.argv[1]
    sys.path.insert(1, root)
    install_timm_stub()
    if sys.argv[2:] == ['--aux']:
        generate_aux(root, f'{sys.path[0]}/official/index_and_masks.json')
        return
    names = sys.argv[2:] or list(CASES)
    for i, name in enumerate(CASES):
        if name in names:
            generate(root, name, CASES[name], 4100 + i)


if __name__ == '__main__':
    main()
