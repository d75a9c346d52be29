#!/usr/bin/env python3
"""PyTorch side of the peak-memory comparison (BENCHMARKS.md): the same job as
`distill kd --teacher T --student mlp:784-64-10 --epochs 1` on Fashion-MNIST, teacher cnn-small in the
loop, read from Debian's dataset-fashion-mnist, batch 128, Adam 1e-3, KD T=4 alpha=0.9. Prints the
process's peak resident memory. Run with the reference venv (../shared/bench/pytorch_reference.py)."""
import gzip, resource, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

root = "/usr/share/datasets/fashion-mnist/"
def images(name):
    with gzip.open(root + name) as f:
        return torch.from_numpy(np.frombuffer(f.read(), np.uint8, offset=16).astype(np.float32) / 255).view(-1, 1, 28, 28)
def labels(name):
    with gzip.open(root + name) as f:
        return torch.from_numpy(np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64))
torch.set_num_threads(2)
X, Y = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
Xt, Yt = images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")
teacher = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
student = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
opt = torch.optim.Adam(student.parameters(), 1e-3)
perm = torch.randperm(len(X))
for i in range(0, len(X), 128):
    idx = perm[i:i + 128]
    with torch.no_grad():
        t = teacher(X[idx])
    s = student(X[idx])
    loss = 0.9 * 16 * F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean") + 0.1 * F.cross_entropy(s, Y[idx])
    opt.zero_grad(); loss.backward(); opt.step()
with torch.no_grad():
    acc = (student(Xt).argmax(1) == Yt).float().mean().item()
print(f"accuracy {acc:.4f} peak_memory_bytes {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}")
