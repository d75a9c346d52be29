#!/usr/bin/env python3
"""Golden values for DistillKit's layers, optimizers and schedules, computed by PyTorch.

Run from anywhere with the reference environment (torch 2.13 CPU, numpy):

    /root/.venvs/torchref/bin/python scripts/golden/make_nn_golden.py

It rewrites Tests/DistillNNTests/NNGoldenValues.swift: plain Swift literals (no resources to
bundle), each case carrying the PyTorch snippet that produced it. Everything is computed from
fixed literals or from integer formulas that the Swift tests reproduce exactly (see `pattern`),
so the file is identical on every run.

What it records:
  * optimizer trajectories: two parameters updated for four steps from fixed gradients by
    torch.optim.SGD (plain, momentum, Nesterov, weight decay), Adam (with and without L2 decay)
    and AdamW;
  * learning rates of torch.optim.lr_scheduler StepLR, CosineAnnealingLR, and LinearLR as the
    warm-up (DistillKit's warm-up rate·(t+1)/W equals LinearLR(start_factor=1/W, total_iters=W−1));
  * torch.nn.utils.clip_grad_norm_ results (above and below the threshold);
  * BatchNorm1d/2d outputs and running statistics after two training steps;
  * for every ModelZoo preset, the equivalent torch.nn.Sequential: its state-dict names and
    shapes, parameter count, and logits for a fixed input with weights set by `pattern`;
  * statistics of torch.nn.Linear(784, 64)'s default initialisation (its bound and spread).
"""

import math
import os

import numpy as np
import torch
import torch.nn as nn

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "Tests", "DistillNNTests", "NNGoldenValues.swift"))


# ----------------------------------------------------------------------------------------------
# Formatting


def f32(x):
    """A float32 value as a Swift literal (9 significant digits round-trip float32 exactly)."""
    v = float(np.float32(x))
    assert math.isfinite(v)
    return "%.9g" % v


def f64(x):
    v = float(x)
    assert math.isfinite(v)
    return repr(v)


def floats(values, fmt=f32):
    return "[" + ", ".join(fmt(v) for v in values) + "]"


def flat(t):
    return t.detach().to(torch.float32).reshape(-1).tolist()


def swift_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def snippet(s):
    body = "\n".join("        " + line if line.strip() else "" for line in s.strip("\n").splitlines())
    return '#"""\n' + body + '\n        """#'


# ----------------------------------------------------------------------------------------------
# Deterministic values both languages compute exactly


def pattern(n, j):
    """n values in [-1, 1]: ((i·7919 + j·104729 + 17) mod 1009) / 1008 · 2 − 1, in float64.
    Integer arithmetic then one division, so Swift gets the identical doubles."""
    i = np.arange(n, dtype=np.int64)
    k = (i * 7919 + j * 104729 + 17) % 1009
    return k.astype(np.float64) / 1008.0 * 2.0 - 1.0


def image_input(n):
    """Inputs in [0, 1]: ((i·31 + 7) mod 101) / 100."""
    i = np.arange(n, dtype=np.int64)
    return ((i * 31 + 7) % 101).astype(np.float64) / 100.0


def pattern_value(name, shape, j):
    """The value given to state-dict entry `name` (index j in the sorted names)."""
    n = int(np.prod(shape)) if len(shape) else 1
    v = pattern(n, j)
    leaf = name.rsplit(".", 1)[-1]
    is_bn = name.rsplit(".", 1)[0] in BN_PREFIXES
    if leaf == "running_mean":
        out = 0.1 * v
    elif leaf == "running_var":
        out = 0.75 + 0.25 * v
    elif leaf == "num_batches_tracked":
        return None
    elif is_bn and leaf == "weight":
        out = 1.0 + 0.2 * v
    elif len(shape) >= 2:
        out = v * (1.0 / math.sqrt(float(np.prod(shape[1:]))))
    else:
        out = 0.1 * v
    return torch.from_numpy(out.astype(np.float32).reshape(shape))


BN_PREFIXES = set()


# ----------------------------------------------------------------------------------------------
# Optimizers

OPT_INITIAL = [
    [0.5, -1.2, 0.3, 2.0, -0.7, 1.1],
    [0.05, -0.4, 0.9],
]
OPT_SHAPES = [[2, 3], [3]]
OPT_GRADS = [  # [step][parameter][values]
    [[0.3, -0.2, 0.5, -1.0, 0.8, 0.1], [0.25, -0.6, 0.05]],
    [[-0.4, 0.1, 0.6, -0.3, 0.2, 0.9], [0.7, 0.2, -0.15]],
    [[0.05, 0.35, -0.25, 0.6, -0.5, 0.4], [-0.3, 0.45, 0.6]],
    [[0.2, -0.9, 0.15, 0.1, 0.3, -0.2], [0.1, -0.05, 0.35]],
]

def F(v):
    """v rounded to float32, as a Python float. DistillKit keeps hyperparameters as Float (Adam's β₂
    is 0.99900001287 there); torch given the unrounded values drifts from torch given the rounded
    ones by up to ~1.3e-6 relative in four Adam steps, as much as the 1e-6 tolerance, so torch gets
    the rounded values and the comparison is of the update rules alone."""
    return float(np.float32(v))


OPT_CASES = [
    # name, kind, lr, momentum, nesterov, weight decay, torch constructor
    ("sgd", "sgd", 0.1, 0.0, False, 0.0, "torch.optim.SGD(params, lr=F(0.1))"),
    ("sgd momentum", "sgd", 0.1, 0.9, False, 0.0, "torch.optim.SGD(params, lr=F(0.1), momentum=F(0.9))"),
    ("sgd nesterov", "sgd", 0.1, 0.9, True, 0.0, "torch.optim.SGD(params, lr=F(0.1), momentum=F(0.9), nesterov=True)"),
    ("sgd weight decay", "sgd", 0.1, 0.0, False, 0.01, "torch.optim.SGD(params, lr=F(0.1), weight_decay=F(0.01))"),
    ("sgd momentum weight decay", "sgd", 0.1, 0.9, False, 0.01,
     "torch.optim.SGD(params, lr=F(0.1), momentum=F(0.9), weight_decay=F(0.01))"),
    ("adam", "adam", 0.1, 0.0, False, 0.0, "torch.optim.Adam(params, lr=F(0.1), betas=(F(0.9), F(0.999)), eps=F(1e-8))"),
    ("adam lr 0.01", "adam", 0.01, 0.0, False, 0.0, "torch.optim.Adam(params, lr=F(0.01), betas=(F(0.9), F(0.999)), eps=F(1e-8))"),
    ("adam weight decay", "adam", 0.1, 0.0, False, 0.01,
     "torch.optim.Adam(params, lr=F(0.1), betas=(F(0.9), F(0.999)), eps=F(1e-8), weight_decay=F(0.01))"),
    ("adamw", "adamw", 0.1, 0.0, False, 0.01,
     "torch.optim.AdamW(params, lr=F(0.1), betas=(F(0.9), F(0.999)), eps=F(1e-8), weight_decay=F(0.01))"),
]

OPT_SNIPPET = """
F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
          for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
opt = {constructor}
for grads in OPT_GRADS:
    for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
    opt.step()
    trajectory.append([p.detach().flatten().tolist() for p in params])
"""


def optimizer_cases():
    out = []
    for name, kind, lr, mom, nest, wd, ctor in OPT_CASES:
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_() for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = eval(ctor)
        trajectory = []
        for grads in OPT_GRADS:
            for p, g in zip(params, grads):
                p.grad = torch.tensor(g, dtype=torch.float32).reshape(p.shape)
            opt.step()
            trajectory.append([flat(p) for p in params])
        steps = ",\n".join("                [" + ", ".join(floats(p) for p in step) + "]" for step in trajectory)
        out.append(f"""        OptimizerCase(
            name: {swift_string(name)}, kind: {swift_string(kind)}, learningRate: {f32(lr)}, momentum: {f32(mom)},
            nesterov: {'true' if nest else 'false'}, weightDecay: {f32(wd)},
            snippet: {snippet(OPT_SNIPPET.format(constructor=ctor))},
            trajectory: [
{steps},
            ]),""")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Schedules


def lr_sequence(make_scheduler, base, steps):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def schedule_cases():
    from torch.optim import lr_scheduler as S
    cases = []

    lrs = lr_sequence(lambda o: S.StepLR(o, step_size=3, gamma=0.5), 0.1, 12)
    cases.append(("step", dict(base=0.1, stepSize=3, gamma=0.5), lrs,
                  "StepLR(opt, step_size=3, gamma=0.5)  # base lr 0.1; lr read before each opt.step()"))

    lrs = lr_sequence(lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 0.1, 11)
    # torch's recursive form drifts from the closed form by rounding only; DistillKit uses the
    # closed form and holds eta_min after T_max (torch would rise again), so steps 0...T_max.
    closed = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    assert max(abs(a - b) for a, b in zip(lrs, closed)) < 1e-12
    cases.append(("cosine", dict(base=0.1, totalSteps=10, minimum=0.001), lrs,
                  "CosineAnnealingLR(opt, T_max=10, eta_min=0.001)  # base lr 0.1; steps 0...T_max"))

    # DistillKit's warm-up is rate·(t+1)/W for t < W: the first step already trains at rate/W and
    # step W−1 reaches the full rate. torch's LinearLR(start_factor=f, total_iters=T) gives
    # rate·(f + (1−f)·min(t, T)/T), which is the same with f = 1/W and T = W−1 (the "obvious"
    # LinearLR(start_factor=1/W, total_iters=W) would reach the full rate one step later).
    W = 5
    lrs = lr_sequence(lambda o: S.LinearLR(o, start_factor=1 / W, end_factor=1.0, total_iters=W - 1), 0.1, 9)
    assert max(abs(a - 0.1 * min(t + 1, W) / W) for t, a in enumerate(lrs)) < 1e-12
    cases.append(("warmup-constant", dict(base=0.1, warmupSteps=W), lrs,
                  f"LinearLR(opt, start_factor=1/{W}, end_factor=1.0, total_iters={W - 1})  # base lr 0.1"))

    lrs = lr_sequence(lambda o: S.ChainedScheduler([
        S.LinearLR(o, start_factor=1 / W, end_factor=1.0, total_iters=W - 1),
        S.StepLR(o, step_size=3, gamma=0.5)]), 0.1, 12)
    cases.append(("warmup-step", dict(base=0.1, warmupSteps=W, stepSize=3, gamma=0.5), lrs,
                  f"ChainedScheduler([LinearLR(opt, start_factor=1/{W}, total_iters={W - 1}), StepLR(opt, step_size=3, gamma=0.5)])"))

    out = []
    for kind, params, lrs, code in cases:
        fields = dict(base=0.0, stepSize=1, gamma=1.0, totalSteps=1, minimum=0.0, warmupSteps=0)
        fields.update(params)
        out.append(f"""        ScheduleCase(
            kind: {swift_string(kind)}, base: {f32(fields['base'])}, stepSize: {fields['stepSize']}, gamma: {f32(fields['gamma'])},
            totalSteps: {fields['totalSteps']}, minimum: {f32(fields['minimum'])}, warmupSteps: {fields['warmupSteps']},
            snippet: {swift_string(code)},
            rates: {floats(lrs, f64)}),""")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Gradient clipping

CLIP_SNIPPET = """
params = [torch.zeros(s, requires_grad=True) for s in shapes]
for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
norm = torch.nn.utils.clip_grad_norm_(params, max_norm={max_norm})
"""


def clip_cases():
    shapes = [[2, 3], [4]]
    grads = [[0.3, -1.2, 0.8, 2.0, -0.5, 0.1], [1.5, -0.7, 0.25, -2.2]]
    out = []
    for max_norm in [1.0, 10.0]:
        params = [torch.zeros(s, requires_grad=True) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float32).reshape(p.shape)
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm)
        out.append(f"""        ClipCase(
            maxNorm: {f32(max_norm)}, shapes: {shapes}, gradients: [{", ".join(floats(g) for g in grads)}],
            snippet: {snippet(CLIP_SNIPPET.format(max_norm=max_norm))},
            totalNorm: {f32(norm.item())}, clipped: [{", ".join(floats(flat(p.grad)) for p in params)}]),""")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Batch normalisation

BN_SNIPPET = """
bn = torch.nn.BatchNorm{d}d({c})  # momentum 0.1, eps 1e-5; training mode
bn.weight.data = torch.tensor(weight); bn.bias.data = torch.tensor(bias)
bn(first)
second_out = bn(second)
bn.eval(); eval_out = bn(first)
"""


def batchnorm_cases():
    out = []
    for d, shape in [(1, [6, 3]), (2, [2, 3, 2, 3])]:
        c = shape[1]
        n = int(np.prod(shape))
        first = torch.from_numpy((pattern(n, 11 + d) * 2.0 + 0.5).astype(np.float32).reshape(shape))
        second = torch.from_numpy((pattern(n, 21 + d) * 1.5 - 0.3).astype(np.float32).reshape(shape))
        weight = [1.0, 0.5, -1.5]
        bias = [0.1, -0.2, 0.3]
        bn = nn.BatchNorm1d(c) if d == 1 else nn.BatchNorm2d(c)
        bn.weight.data = torch.tensor(weight)
        bn.bias.data = torch.tensor(bias)
        bn(first)
        second_out = bn(second)
        bn.eval()
        eval_out = bn(first)
        out.append(f"""        BatchNormCase(
            dims: {d}, shape: {shape}, firstPattern: {11 + d}, secondPattern: {21 + d}, weight: {floats(weight)}, bias: {floats(bias)},
            snippet: {snippet(BN_SNIPPET.format(d=d, c=c))},
            secondOutput: {floats(flat(second_out))},
            runningMean: {floats(flat(bn.running_mean))}, runningVar: {floats(flat(bn.running_var))},
            evalOutput: {floats(flat(eval_out))}),""")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Model zoo equivalents


class GlobalAvgPool2d(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


def torch_model(spec):
    if spec.startswith("mlp:"):
        w = [int(v) for v in spec[4:].split("-")]
        layers = [nn.Flatten()]
        for i in range(len(w) - 1):
            layers.append(nn.Linear(w[i], w[i + 1]))
            if i < len(w) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)
    if spec in ("cnn-small", "cnn-tiny"):
        a, b, hidden = (32, 64, 128) if spec == "cnn-small" else (8, 16, 0)
        layers = [nn.Conv2d(1, a, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
        flat_in = b * 7 * 7
        layers += [nn.Linear(flat_in, hidden), nn.ReLU(), nn.Linear(hidden, 10)] if hidden else [nn.Linear(flat_in, 10)]
        return nn.Sequential(*layers)
    if spec == "lenet5":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    if spec == "resnet8":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            ResidualBlock(16, 16), ResidualBlock(16, 32, 2), ResidualBlock(32, 64, 2),
            GlobalAvgPool2d(), nn.Linear(64, 10))
    if spec == "mobilenet-tiny":
        layers = [nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        for cin, cout, stride in [(16, 32, 2), (32, 64, 1), (64, 128, 2)]:
            layers += [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                       nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        layers += [GlobalAvgPool2d(), nn.Linear(128, 10)]
        return nn.Sequential(*layers)
    raise ValueError(spec)


ZOO_SNIPPET = """
model = {spec_fn}  # the torch.nn.Sequential equivalent (see make_nn_golden.py: torch_model)
names = sorted(model.state_dict())
model.load_state_dict({{k: pattern_value(k, v.shape, names.index(k)) ...}}, strict=False)
x = torch.tensor(image_input(2 * 28 * 28)).reshape(2, 1, 28, 28)
model.eval(); eval_logits = model(x)
model.train(); train_logits = model(x)  # batch statistics (models with batch-norm only)
"""


def zoo_cases():
    out = []
    for spec in ["mlp:784-64-10", "cnn-small", "cnn-tiny", "lenet5", "resnet8", "mobilenet-tiny"]:
        torch.manual_seed(0)
        model = torch_model(spec)
        BN_PREFIXES.clear()
        BN_PREFIXES.update(name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
        sd = model.state_dict()
        names = sorted(sd)
        new = {}
        for j, k in enumerate(names):
            v = pattern_value(k, list(sd[k].shape), j)
            if v is not None:
                new[k] = v
        model.load_state_dict(new, strict=False)
        x = torch.from_numpy(image_input(2 * 28 * 28).astype(np.float32)).reshape(2, 1, 28, 28)
        with torch.no_grad():
            model.eval()
            eval_logits = model(x)
            has_bn = bool(BN_PREFIXES)
            model.train()
            train_logits = model(x) if has_bn else torch.zeros(0)
        count = sum(p.numel() for p in model.parameters())
        buffers = sorted(name for name, _ in model.named_buffers())
        shapes = ", ".join(str(list(sd[k].shape)) for k in names)
        out.append(f"""        ZooCase(
            spec: {swift_string(spec)}, parameterCount: {count},
            snippet: {snippet(ZOO_SNIPPET.format(spec_fn=f'torch_model({spec!r})'))},
            names: [{", ".join(swift_string(k) for k in names)}],
            shapes: [{shapes}],
            buffers: [{", ".join(swift_string(k) for k in buffers)}],
            evalLogits: {floats(flat(eval_logits))},
            trainLogits: {floats(flat(train_logits))}),""")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Default initialisation


def init_stats():
    torch.manual_seed(0)
    w = nn.Linear(784, 64).weight.detach().double()
    return (f"    /// `torch.nn.Linear(784, 64)` weight after `torch.manual_seed(0)`: max |w|, mean and standard deviation\n"
            f"    /// (the bound is 1/√784 = 1/28, and U(±b) has standard deviation b/√3 = {1 / 28 / math.sqrt(3):.6g}).\n"
            f"    static let torchLinear784x64 = (maxAbs: {f32(w.abs().max().item())}, mean: {f32(w.mean().item())}, "
            f"std: {f32(w.std().item())})")


# ----------------------------------------------------------------------------------------------


def main():
    text = f"""// GENERATED FILE: do not edit. Golden values from PyTorch {torch.__version__} for the DistillNN tests.
// Regenerate from the repository root with:
//     /root/.venvs/torchref/bin/python scripts/golden/make_nn_golden.py
// Each case carries the PyTorch snippet that produced it; `pattern` and `imageInput` in
// NNTestSupport.swift reproduce the script's deterministic weights and inputs exactly.

import Testing

enum NNGolden {{
    /// Optimizer trajectories: parameters after each of `optimizerGradients.count` steps.
    struct OptimizerCase: Sendable, CustomTestStringConvertible {{
        let name: String, kind: String
        let learningRate: Float, momentum: Float, nesterov: Bool, weightDecay: Float
        let snippet: String
        /// [step][parameter][element]
        let trajectory: [[[Float]]]
        var testDescription: String {{ name }}
    }}

    /// Learning rates from torch.optim.lr_scheduler, read before each optimizer step.
    struct ScheduleCase: Sendable, CustomTestStringConvertible {{
        let kind: String, base: Float, stepSize: Int, gamma: Float, totalSteps: Int, minimum: Float, warmupSteps: Int
        let snippet: String
        let rates: [Double]
        var testDescription: String {{ kind }}
    }}

    /// torch.nn.utils.clip_grad_norm_.
    struct ClipCase: Sendable, CustomTestStringConvertible {{
        let maxNorm: Float, shapes: [[Int]], gradients: [[Float]]
        let snippet: String
        let totalNorm: Float, clipped: [[Float]]
        var testDescription: String {{ "max norm \\(maxNorm)" }}
    }}

    /// Batch-norm after two training steps on `pattern` inputs (first: 2·pattern + 0.5, second: 1.5·pattern − 0.3).
    struct BatchNormCase: Sendable, CustomTestStringConvertible {{
        let dims: Int, shape: [Int], firstPattern: Int, secondPattern: Int, weight: [Float], bias: [Float]
        let snippet: String
        let secondOutput: [Float], runningMean: [Float], runningVar: [Float], evalOutput: [Float]
        var testDescription: String {{ "BatchNorm\\(dims)d \\(shape)" }}
    }}

    /// A ModelZoo preset's torch.nn.Sequential twin: state dict (sorted names), and logits for
    /// `imageInput` with every tensor set by `pattern` (trainLogits empty without batch-norm).
    struct ZooCase: Sendable, CustomTestStringConvertible {{
        let spec: String, parameterCount: Int
        let snippet: String
        let names: [String], shapes: [[Int]], buffers: [String]
        let evalLogits: [Float], trainLogits: [Float]
        var testDescription: String {{ spec }}
    }}

    static let optimizerShapes: [[Int]] = {OPT_SHAPES}
    static let optimizerInitial: [[Float]] = [{", ".join(floats(v) for v in OPT_INITIAL)}]
    /// [step][parameter][element]
    static let optimizerGradients: [[[Float]]] = [
{chr(10).join("        [" + ", ".join(floats(g) for g in step) + "]," for step in OPT_GRADS)}
    ]

    static let optimizerCases: [OptimizerCase] = [
{optimizer_cases()}
    ]

    static let scheduleCases: [ScheduleCase] = [
{schedule_cases()}
    ]

    static let clipCases: [ClipCase] = [
{clip_cases()}
    ]

    static let batchNormCases: [BatchNormCase] = [
{batchnorm_cases()}
    ]

    static let zooCases: [ZooCase] = [
{zoo_cases()}
    ]

{init_stats()}
}}
"""
    with open(OUT, "w") as f:
        f.write(text)
    print(f"{os.path.relpath(OUT)}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
