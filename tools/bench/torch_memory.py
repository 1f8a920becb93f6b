"""What a PyTorch training step holds, measured in a fresh process (the PyTorch side of tools/bench/peer.mjs).

../shared/perf/torch_peer.py reports `train_extra_mb` = peak RSS − RSS after its no-grad forward
phase. That forward has already grown the allocator's heap, which the training step then reuses
without raising the RSS, so it understates a training step (for conv2former_n_cifar at batch 32 it
reports less than the tensors autograd saves). This builds the same model (torch_peer.build) in a
process that does nothing else and reports:
  saved_mb:      distinct storages autograd saves for the backward pass (saved_tensors_hooks),
  peak_extra_mb: peak RSS over two training steps (forward, cross entropy, backward, SGD) minus the
                 RSS of the built model.
Usage: python3 tools/bench/torch_memory.py --ref-root REF [--threads 2] name:batch:img
One JSON line. PyTorch from the machine's local wheel (pip install /opt/wheels/torch-*.whl).
"""
import argparse
import json
import os
import resource
import sys

PERF = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'perf')


def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--ref-root', required=True)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--perf-dir', default=os.environ.get('VIT_PERF_DIR', PERF))
    ap.add_argument('spec')
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.perf_dir))
    import torch
    import torch_peer

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    name, batch, img = a.spec.split(':')[:3]
    batch, img = int(batch), int(img)
    model = torch_peer.build(name, a.ref_root)
    classes = 10 if name.endswith('_cifar') else 1000
    x = torch.randn(batch, 3, img, img)
    y = torch.randint(0, classes, (batch,))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    base = rss_mb()
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    for i in range(2):
        opt.zero_grad()
        if i == 0:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = torch.nn.functional.cross_entropy(model(x), y)
        else:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({'model': name, 'batch': batch, 'img': img, 'threads': a.threads, 'torch': torch.__version__,
                      'saved_mb': round(sum(storages.values()) / 2 ** 20, 1), 'peak_extra_mb': round(peak - base)}), flush=True)


if __name__ == '__main__':
    main()
