"""Reference numbers for the @vit/core layer tests, computed with PyTorch.

Run: python3 gen_reference.py  (writes reference.ts beside it). Tests never need Python.
Every input/weight is seq(shape, a, b, s)[i] = float32(s*sin(a*i + b)) over the flat index of the
tensor in OUR layout; the script converts to PyTorch layouts (NCHW, OIHW, [out,in]) itself.
"""
import json, math
import numpy as np, torch, torch.nn.functional as F
torch.set_default_dtype(torch.float32)

def seq(shape, a=0.37, b=0.1, s=1.0):
    n = int(np.prod(shape))
    return (s*np.sin(a*np.arange(n, dtype=np.float64)+b)).astype(np.float32).reshape(shape)

def r(t):
    a = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return [float('%.7g' % v) for v in a.astype(np.float64).ravel()]

def nhwc2t(x): return torch.from_numpy(x).permute(0,3,1,2).contiguous()
def t2nhwc(t): return t.permute(0,2,3,1)
def convw(w): # ours [kh,kw,i,o] -> torch [o,i,kh,kw]
    return torch.from_numpy(w).permute(3,2,0,1).contiguous()
def dww(w): # ours [kh,kw,C,m] -> torch [C*m,1,kh,kw]
    kh,kw,C,m = w.shape
    return torch.from_numpy(w.reshape(kh,kw,C*m)).permute(2,0,1).unsqueeze(1).contiguous()

out = {}
# Linear
x = seq([2,2,4]); w = seq([4,3],0.53,0.2); b = seq([3],0.91,0.3)
out['linear'] = r(F.linear(torch.from_numpy(x), torch.from_numpy(w).T, torch.from_numpy(b)))

def conv_case(name, xs, ws, bs, stride, pad, dil, groups, dw=False):
    x = seq(xs); w = seq(ws,0.29,0.5,0.5); b = seq([bs],0.71,0.4) if bs else None
    tw = dww(w) if dw else convw(w)
    y = F.conv2d(nhwc2t(x), tw, torch.from_numpy(b) if b is not None else None, stride=stride, padding=pad, dilation=dil, groups=groups)
    out[name] = {'shape': list(t2nhwc(y).shape), 'y': r(t2nhwc(y))}

conv_case('conv_s2p1', [1,4,4,2], [3,3,2,3], 3, 2, 1, 1, 1)
conv_case('conv_dil2', [1,5,5,2], [3,3,2,2], 2, 1, 2, 2, 1)
conv_case('conv_dil2_s2', [1,6,6,2], [3,3,2,2], 0, 2, 1, 2, 1)
conv_case('conv_rect', [1,5,6,2], [2,3,2,2], 2, (2,1), (1,0), 1, 1)
conv_case('conv_g2', [1,3,3,4], [3,3,2,6], 6, 1, 1, 1, 2)
conv_case('conv_dw_m2', [1,4,4,3], [3,3,3,2], 6, 1, 1, 1, 3, dw=True)
conv_case('conv_dw_m2_s2', [1,5,5,3], [3,3,3,2], 0, 2, 1, 1, 3, dw=True)
conv_case('conv_dw_rect_stride', [1,5,5,2], [3,3,2,1], 2, (1,2), 1, 1, 2, dw=True)

# same-padding counterexample: TF 'same' for stride 2 would pad 0/1
# Conv1d: ours [k, i/g, o] -> torch [o, i/g, k]
def conv1_case(name, xs, ws, bs, stride, pad, dil, groups):
    x = seq(xs); w = seq(ws,0.29,0.5,0.5); b = seq([bs],0.71,0.4) if bs else None
    tw = torch.from_numpy(w).permute(2,1,0).contiguous()
    y = F.conv1d(torch.from_numpy(x).permute(0,2,1), tw, torch.from_numpy(b) if b is not None else None, stride=stride, padding=pad, dilation=dil, groups=groups)
    out[name] = {'shape': list(y.permute(0,2,1).shape), 'y': r(y.permute(0,2,1))}
conv1_case('conv1d', [2,5,2], [3,2,3], 3, 2, 1, 1, 1)
conv1_case('conv1d_dw', [1,6,2], [3,1,4], 4, 1, 1, 1, 2)
conv1_case('conv1d_dil', [1,7,1], [3,1,1], 0, 1, 2, 2, 1)

# LayerNorm
x = seq([2,3,5]) * 3 + 1.5; w = seq([5],0.43,0.7); b = seq([5],0.61,0.2)
out['layernorm'] = r(F.layer_norm(torch.from_numpy(x), (5,), torch.from_numpy(w), torch.from_numpy(b), 1e-5))
# LayerNorm2d (RegionViT form, params [1,C,1,1], eps 1e-5)
x = nhwc2t(seq([2,2,3,4]) * 2 + 0.5); w = torch.from_numpy(seq([1,4,1,1],0.43,0.7)); b = torch.from_numpy(seq([1,4,1,1],0.61,0.2))
u = x.mean(1, keepdim=True); s = (x-u).pow(2).mean(1, keepdim=True)
y = w * ((x-u)/torch.sqrt(s+1e-5)) + b
out['layernorm2d'] = r(t2nhwc(y))
# BatchNorm2d train + eval
bn = torch.nn.BatchNorm2d(3)
with torch.no_grad():
    bn.weight.copy_(torch.from_numpy(seq([3],0.43,0.7))); bn.bias.copy_(torch.from_numpy(seq([3],0.61,0.2)))
x = seq([2,3,3,3]) * 2 + 0.7
bn.train(); y = bn(nhwc2t(x))
out['bn_train'] = {'y': r(t2nhwc(y)), 'running_mean': r(bn.running_mean), 'running_var': r(bn.running_var)}
x2 = seq([2,3,3,3],0.23,0.9) * 1.5 - 0.3
y2 = bn(nhwc2t(x2))
out['bn_train2'] = {'y': r(t2nhwc(y2)), 'running_mean': r(bn.running_mean), 'running_var': r(bn.running_var)}
bn.eval(); y3 = bn(nhwc2t(x))
out['bn_eval'] = r(t2nhwc(y3))
# GroupNorm
for g in (1,2):
    x = seq([2,3,3,4]) * 2 + 0.3
    w = torch.from_numpy(seq([4],0.43,0.7)); b = torch.from_numpy(seq([4],0.61,0.2))
    y = F.group_norm(nhwc2t(x), g, w, b, 1e-5)
    out[f'groupnorm{g}'] = r(t2nhwc(y))
# GELU
xs = np.array([-3,-1.5,-0.5,0,0.3,1,2.5], dtype=np.float32)
out['gelu_x'] = r(xs)
out['gelu'] = r(F.gelu(torch.from_numpy(xs)))
out['gelu_tanh'] = r(F.gelu(torch.from_numpy(xs), approximate='tanh'))
# Pools
def pool(name, fn, xs, **kw):
    x = seq(xs) * 2 - 0.5
    y = fn(nhwc2t(x), **kw)
    out[name] = {'shape': list(t2nhwc(y).shape), 'y': r(t2nhwc(y))}
pool('avg_k3s2p1', F.avg_pool2d, [1,5,5,2], kernel_size=3, stride=2, padding=1)
pool('avg_k3s2p1_nopad', F.avg_pool2d, [1,5,5,2], kernel_size=3, stride=2, padding=1, count_include_pad=False)
pool('avg_k3s2_ceil', F.avg_pool2d, [1,6,6,1], kernel_size=3, stride=2, ceil_mode=True)
pool('avg_k3s2p1_ceil', F.avg_pool2d, [1,6,6,1], kernel_size=3, stride=2, padding=1, ceil_mode=True)
pool('avg_k3s2p1_ceil_nopad', F.avg_pool2d, [1,6,6,1], kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
pool('avg_k2', F.avg_pool2d, [1,4,4,2], kernel_size=2)
xneg = -(np.abs(seq([1,5,5,2])) + 0.1)
y = F.max_pool2d(nhwc2t(xneg), 3, 2, 1)
out['max_neg_k3s2p1'] = {'shape': list(t2nhwc(y).shape), 'y': r(t2nhwc(y))}
pool('max_k3s2p1_ceil', F.max_pool2d, [1,6,6,1], kernel_size=3, stride=2, padding=1, ceil_mode=True)
pool('max_k2', F.max_pool2d, [1,4,5,2], kernel_size=2)
pool('adapt_5x7_to_3x2', F.adaptive_avg_pool2d, [1,5,7,2], output_size=(3,2))
pool('adapt_7_to_3', F.adaptive_avg_pool2d, [2,7,7,1], output_size=3)
pool('adapt_6_to_4', F.adaptive_avg_pool2d, [1,6,6,1], output_size=4)
pool('adapt_1', F.adaptive_avg_pool2d, [2,3,4,2], output_size=1)
# drop path rates
out['dpr'] = {f'{rate}_{d}': [x.item() for x in torch.linspace(0, rate, d)] for rate, d in [(0.1,12),(0.3,24),(0.05,7),(0.2,5),(0.1,2),(0.1,1),(0.0,4),(0.15,36)]}
# attention
q = seq([2,2,3,4]); k = seq([2,2,5,4],0.41,0.3); v = seq([2,2,5,3],0.19,0.8); bias = seq([1,2,3,5],0.77,0.1)
out['sdpa'] = r(F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), attn_mask=torch.from_numpy(bias)))
out['sdpa_scale'] = r(F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), scale=0.3))
# Gradients through conv(s2, p1, no bias) -> BatchNorm2d(train) -> exact GELU; loss = sum(y * seq(y NHWC, 0.83, 0.3)).
x = torch.from_numpy(seq([2,4,4,2],0.61,0.4)).requires_grad_(True)
conv = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
bn = torch.nn.BatchNorm2d(3)
with torch.no_grad():
    conv.weight.copy_(convw(seq([3,3,2,3],0.29,0.5,0.5)))
    bn.weight.copy_(torch.from_numpy(seq([3],0.43,0.7))); bn.bias.copy_(torch.from_numpy(seq([3],0.61,0.2)))
xn = x.permute(0,3,1,2)
y = t2nhwc(F.gelu(bn(conv(xn))))
(y * torch.from_numpy(seq(list(y.shape),0.83,0.3))).sum().backward()
out['grad_chain'] = {'x': r(x.grad), 'conv_w': r(conv.weight.grad.permute(2,3,1,0)), 'bn_w': r(bn.weight.grad), 'bn_b': r(bn.bias.grad)}

import sys, os
target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference.ts')
with open(target, 'w') as f:
    f.write('// Generated by gen_reference.py (PyTorch %s, float32); do not edit by hand.\n' % torch.__version__)
    f.write('// Inputs and weights are seq(shape, a, b, s)[i] = f32(s*sin(a*i + b)) in OUR layouts (NHWC, [in,out], [kh,kw,in/g,out]).\n')
    f.write('export const REF = ' + json.dumps(out, separators=(',', ':')) + ' as const;\n')

