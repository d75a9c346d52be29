#!/usr/bin/env python3
"""Golden values for DistillKit's tensor engine, computed by PyTorch.

Run from the repository root with the reference environment (torch 2.13 CPU, numpy):

    /root/.venvs/torchref/bin/python scripts/golden/make_golden.py

It rewrites Tests/DistillTensorTests/Golden/*.json. Every file holds the PyTorch snippet that
produced it ("snippet"), integer parameters ("params") and named float32 tensors ("tensors":
{"name": {"shape": [...], "data": [...]}}). Inputs come from numpy RandomState with fixed seeds,
so the files are identical on every run; the Swift tests read the inputs from the files too.
Tensors are kept to a few hundred elements so each file stays a few KB.
"""

import json
import os
import textwrap

import numpy as np
import torch
import torch.nn.functional as F

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "DistillTensorTests", "Golden"))


def randn(seed, *shape, scale=1.0):
    return torch.from_numpy((np.random.RandomState(seed).standard_normal(shape) * scale).astype(np.float32))


def uniform(seed, low, high, *shape):
    return torch.from_numpy(np.random.RandomState(seed).uniform(low, high, shape).astype(np.float32))


def encode(t):
    a = t.detach().to(torch.float32).numpy()
    # 9 significant digits round-trip float32 exactly.
    return {"shape": list(a.shape), "data": [float("%.9g" % v) for v in a.ravel().tolist()]}


def write(name, snippet, tensors, params=None):
    doc = {
        "op": name,
        "snippet": textwrap.dedent(snippet).strip(),
        "params": params or {},
        "tensors": {k: encode(v) for k, v in tensors.items()},
    }
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print(f"{os.path.relpath(path)}: {os.path.getsize(path)} bytes")


def softmax_cases():
    x = randn(1, 4, 5, scale=2.0)
    x3 = randn(2, 2, 3, 4, scale=2.0)
    write("softmax", """
        x = randn(1, 4, 5, scale=2.0); x3 = randn(2, 2, 3, 4, scale=2.0)
        softmax_last = F.softmax(x, dim=-1); log_softmax_last = F.log_softmax(x, dim=-1)
        softmax_axis1 = F.softmax(x3, dim=1); log_softmax_axis1 = F.log_softmax(x3, dim=1)
        """, {
        "x": x, "x3": x3,
        "softmax_last": F.softmax(x, dim=-1), "log_softmax_last": F.log_softmax(x, dim=-1),
        "softmax_axis1": F.softmax(x3, dim=1), "log_softmax_axis1": F.log_softmax(x3, dim=1),
    })


def loss_cases():
    logits = randn(3, 6, 5, scale=1.5)
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    write("cross_entropy", """
        logits = randn(3, 6, 5, scale=1.5); targets = torch.tensor([0, 4, 2, 2, 1, 3])
        loss = F.cross_entropy(logits, targets)  # reduction='mean'
        """, {
        "logits": logits, "targets": targets.to(torch.float32),
        "loss": F.cross_entropy(logits, targets).reshape(1),
    })

    s = randn(4, 6, 5, scale=2.0)
    t = randn(5, 6, 5, scale=3.0)
    T = 4.0
    kl = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T * T
    write("kl_div", """
        s = randn(4, 6, 5, scale=2.0); t = randn(5, 6, 5, scale=3.0); T = 4.0
        loss = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction='batchmean') * T * T
        """, {"student": s, "teacher": t, "loss": kl.reshape(1)}, params={"temperature": 4})


def conv_cases():
    cases = [
        # name, N, C, H, W, O, R, S, stride, padding, dilation, groups, bias
        ("conv2d_plain", 2, 2, 5, 5, 3, 3, 3, 1, 0, 1, 1, True),
        ("conv2d_stride2_pad1", 2, 2, 6, 5, 3, 3, 3, 2, 1, 1, 1, True),
        ("conv2d_groups2", 1, 4, 4, 4, 4, 3, 3, 1, 1, 1, 2, False),
        ("conv2d_dilation2", 1, 3, 7, 7, 2, 3, 3, 1, 1, 2, 1, True),
    ]
    for i, (name, n, c, h, w, o, r, s, stride, padding, dilation, groups, has_bias) in enumerate(cases):
        x = randn(10 + i, n, c, h, w).requires_grad_()
        weight = randn(20 + i, o, c // groups, r, s, scale=0.5).requires_grad_()
        bias = randn(30 + i, o).requires_grad_() if has_bias else None
        y = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
        g = randn(40 + i, *y.shape)
        y.backward(g)
        tensors = {"x": x, "weight": weight, "y": y, "grad_y": g, "grad_x": x.grad, "grad_weight": weight.grad}
        if has_bias:
            tensors["bias"] = bias
            tensors["grad_bias"] = bias.grad
        write(name, f"""
            x = randn({10 + i}, {n}, {c}, {h}, {w}).requires_grad_()
            weight = randn({20 + i}, {o}, {c // groups}, {r}, {s}, scale=0.5).requires_grad_()
            bias = {f"randn({30 + i}, {o}).requires_grad_()" if has_bias else "None"}
            y = F.conv2d(x, weight, bias, stride={stride}, padding={padding}, dilation={dilation}, groups={groups})
            grad_y = randn({40 + i}, *y.shape); y.backward(grad_y)  # grad_x = x.grad, grad_weight = weight.grad
            """, tensors, params={"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})


def run_snippet(snippet):
    """Runs a case's snippet (the very text written beside its values) and returns its variables."""
    names = {"randn": randn, "uniform": uniform, "torch": torch, "F": F, "np": np}
    exec(textwrap.dedent(snippet), names)
    return names


def pool_cases():
    snippet = """
        x = randn(50, 2, 2, 6, 6)
        max_k2 = F.max_pool2d(x, kernel_size=2)
        max_k3_s2_p1 = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        avg_k2 = F.avg_pool2d(x, kernel_size=2)
        avg_k3_s2_p1 = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)  # count_include_pad=True
        avg_k3_s1 = F.avg_pool2d(x, kernel_size=3, stride=1)
        """
    values = run_snippet(snippet)
    write("pool2d", snippet, {k: values[k] for k in ["x", "max_k2", "max_k3_s2_p1", "avg_k2", "avg_k3_s2_p1", "avg_k3_s1"]})


def batch_norm_cases():
    for name, shape, seed in [("batch_norm_4d", (4, 3, 2, 2), 60), ("batch_norm_2d", (6, 4), 70)]:
        c = shape[1]
        x = (randn(seed, *shape, scale=2.0) + 0.5).requires_grad_()
        weight = uniform(seed + 1, 0.5, 1.5, c).requires_grad_()
        bias = randn(seed + 2, c).requires_grad_()
        running_mean0 = randn(seed + 3, c, scale=0.1)
        running_var0 = uniform(seed + 4, 0.5, 2.0, c)
        g = randn(seed + 5, *shape)

        rm, rv = running_mean0.clone(), running_var0.clone()
        y_train = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=1e-5)
        y_train.backward(g)
        train = {"y_train": y_train, "running_mean_after": rm, "running_var_after": rv,
                 "grad_x_train": x.grad.clone(), "grad_weight_train": weight.grad.clone(), "grad_bias_train": bias.grad.clone()}
        x.grad = None; weight.grad = None; bias.grad = None

        y_eval = F.batch_norm(x, running_mean0, running_var0, weight, bias, training=False, eps=1e-5)
        y_eval.backward(g)
        evals = {"y_eval": y_eval, "grad_x_eval": x.grad, "grad_weight_eval": weight.grad, "grad_bias_eval": bias.grad}

        write(name, f"""
            x = (randn({seed}, *{shape}, scale=2.0) + 0.5).requires_grad_()
            weight = uniform({seed + 1}, 0.5, 1.5, {c}).requires_grad_(); bias = randn({seed + 2}, {c}).requires_grad_()
            running_mean = randn({seed + 3}, {c}, scale=0.1); running_var = uniform({seed + 4}, 0.5, 2.0, {c})
            grad_y = randn({seed + 5}, *{shape})
            rm, rv = running_mean.clone(), running_var.clone()
            y_train = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=1e-5)
            y_train.backward(grad_y)  # running_mean_after = rm, running_var_after = rv, grad_*_train = .grad
            y_eval = F.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=1e-5)
            y_eval.backward(grad_y)   # grads zeroed in between; grad_*_eval = .grad
            """, {"x": x, "weight": weight, "bias": bias, "running_mean": running_mean0, "running_var": running_var0,
                  "grad_y": g, **train, **evals}, params={"momentum_percent": 10})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    softmax_cases()
    loss_cases()
    conv_cases()
    pool_cases()
    batch_norm_cases()
