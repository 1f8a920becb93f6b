# PyTorch reference: the first steps of the seed-mrla recipe on the full Fashion-MNIST (Debian's
# dataset-fashion-mnist), with the seed's model transcribed in ../shared/perf/seed_models.py: SGD
# lr 0.1 momentum 0.9 wd 1e-5, label smoothing 0.1, RandomResizedCrop(0.08-1) to 32 px + flip,
# mean/std 0.5, batch 256. Prints each step's loss, to compare with `vit train --recipe seed-mrla`.
#   python3 tools/bench/torch_seed_mrla_steps.py [STEPS=15] [SEED=0]
import gzip, math, random, sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[2].parent / 'shared' / 'perf'))
from seed_models import ResNet18MRLACifar
torch.manual_seed(int(sys.argv[2]) if len(sys.argv) > 2 else 0); np.random.seed(0); random.seed(0); torch.set_num_threads(1)
def idx(p, off):
    return np.frombuffer(gzip.open(p).read(), np.uint8, offset=off)
X = torch.tensor(idx('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz', 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
Y = torch.tensor(idx('/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz', 8).astype(np.int64))
def rrc(img, size=32, scale=(0.08, 1.0), ratio=(3/4, 4/3)):
    _, h, w = img.shape
    for _ in range(10):
        area = h * w * random.uniform(*scale)
        ar = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            i, j = random.randint(0, h - ch), random.randint(0, w - cw)
            return F.interpolate(img[None, :, i:i+ch, j:j+cw], size=(size, size), mode='bilinear', align_corners=False)[0]
    return F.interpolate(img[None], size=(size, size), mode='bilinear', align_corners=False)[0]
m = ResNet18MRLACifar(10); m.train()
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-5)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 15
perm = torch.randperm(len(X))
tot, acc = 0.0, 0
for s in range(steps):
    ids = perm[s * 256:(s + 1) * 256]
    xb = torch.stack([rrc(X[i]) for i in ids])
    flip = torch.rand(len(ids)) < 0.5
    xb[flip] = xb[flip].flip(-1)
    xb = ((xb - 0.5) / 0.5).repeat(1, 3, 1, 1)
    out = m(xb); loss = F.cross_entropy(out, Y[ids], label_smoothing=0.1)
    opt.zero_grad(); loss.backward(); opt.step()
    tot += loss.item(); acc += (out.argmax(1) == Y[ids]).sum().item()
    print(f'step {s+1} loss {loss.item():.4f} running {tot/(s+1):.4f} acc {100*acc/(256*(s+1)):.2f}%', flush=True)
