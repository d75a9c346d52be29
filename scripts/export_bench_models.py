#!/usr/bin/env python3
"""Writes the imported-teacher benchmark models of `scripts/bench.sh` into OUTDIR, exported the way
users export them (random weights: speed does not depend on their values):

  resnet18.onnx, mobilenet_v2.onnx, efficientnet_b0.onnx   torchvision, [N, 3, 224, 224]
  lstm.onnx, gru.onnx      PyTorch nn.LSTM / nn.GRU (64 inputs, 128 hidden, 32 steps, batch first)
                           with a Linear(128, 10) on the last step: [N, 32, 64] -> [N, 10]
  random_forest.onnx       skl2onnx RandomForestClassifier (100 trees, depth <= 12) on 64 features
  gradient_boosting.onnx   skl2onnx GradientBoostingClassifier (100 stages x 10 classes) on 64 features

Run:  python scripts/export_bench_models.py OUTDIR [--only NAME,NAME]
Needs torch (CPU), torchvision, onnx, scikit-learn and skl2onnx.
"""
import argparse
import os
import sys

import numpy as np


def torch_models():
    import torch
    import torch.nn as nn
    # torchvision's PyPI wheel expects its compiled detection ops; its model zoo needs only the schemas.
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision

    class Recurrent(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.rnn = cell(64, 128, batch_first=True)
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    image = torch.randn(1, 3, 224, 224)
    sequence = torch.randn(1, 32, 64)
    return {
        "resnet18": (lambda: torchvision.models.resnet18(), image),
        "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(), image),
        "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(), image),
        "lstm": (lambda: Recurrent(nn.LSTM), sequence),
        "gru": (lambda: Recurrent(nn.GRU), sequence),
    }, lib


def export_torch(name, make, example, path):
    import torch
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        torch.onnx.export(model, example, path, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, opset_version=17, dynamo=False)


def export_sklearn(name, path):
    from sklearn.datasets import load_digits
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from skl2onnx import to_onnx
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    if name == "random_forest":
        model = RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0)
    else:
        model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    model.fit(x, y)
    onnx_model = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    with open(path, "wb") as f:
        f.write(onnx_model.SerializeToString())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    wanted = set(filter(None, args.only.split(",")))
    names = ["resnet18", "mobilenet_v2", "efficientnet_b0", "lstm", "gru", "random_forest", "gradient_boosting"]
    torch_zoo, keep_alive = torch_models() if not wanted or wanted & {"resnet18", "mobilenet_v2", "efficientnet_b0", "lstm", "gru"} else ({}, None)
    for name in names:
        if wanted and name not in wanted:
            continue
        path = os.path.join(args.outdir, name + ".onnx")
        if name in torch_zoo:
            export_torch(name, *torch_zoo[name], path)
        else:
            export_sklearn(name, path)
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
