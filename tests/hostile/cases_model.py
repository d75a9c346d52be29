"""Hostile DistillKit model files: every value in a model's metadata and weights is untrusted."""
import json
import os

import numpy as np

from corpus import Case
from craft import blobs_npz, mlp_weights, model, safetensors

DATA = {"d.npz": blobs_npz()}


def _commands(name, content, expect=None, commands=("inspect", "eval", "kd")):
    """The same hostile model through the commands that read models: inspect, eval, a teacher in kd, export."""
    expect = expect or ["m.safetensors"]
    files = {"m.safetensors": content, **DATA}
    argv = {
        "inspect": ["inspect", "m.safetensors"],
        "eval": ["eval", "m.safetensors", "--data", "d.npz"],
        "kd": ["kd", "--teacher", "m.safetensors", "--student", "mlp:4-8-3", "--data", "d.npz", "--epochs", "1", "--output", "out", "--quiet"],
        "export": ["export", "m.safetensors", "--onnx", "o.onnx"],
        "cache": ["cache-teacher", "--teacher", "m.safetensors", "--data", "d.npz", "--out", "t.npy"],
    }
    return [Case("model", f"{name}-{c}", argv[c], files, expect) for c in commands]


def layers(*items, input_shape="1,8,8", classes="3", tensors=None):
    return model(spec="layers:" + json.dumps(list(items)), input_shape=input_shape, classes=classes, tensors=tensors or {})


def cases():
    out = []
    add = lambda *a, **k: out.extend(_commands(*a, **k))
    # Specs that overflow or are malformed.
    add("spec-int64-width", model(spec="mlp:9223372036854775807-10"))
    add("spec-2e63-width", model(spec="mlp:4-9223372036854775808-3"), commands=("inspect", "eval"))
    add("spec-huge-product", model(spec="mlp:4-4294967296-4294967296-3"), commands=("inspect", "kd"))
    add("spec-zero-width", model(spec="mlp:4-0-3"), commands=("inspect", "eval"))
    add("spec-negative-width", model(spec="mlp:4--8-3"), commands=("inspect",))
    add("spec-one-width", model(spec="mlp:4"), commands=("inspect",))
    add("spec-empty", model(spec=""), commands=("inspect", "eval"))
    add("spec-unknown", model(spec="vgg99"), commands=("inspect",))
    add("spec-unicode", model(spec="mlp:４-8-3"), commands=("inspect",))
    add("spec-long", model(spec="mlp:" + "-".join(["4"] * 100_000)), commands=("inspect",))
    # Declared input shapes and class counts.
    add("input-shape-2^32-cubed", model(input_shape="4294967296,4294967296,4294967296"))
    add("input-shape-negative", model(input_shape="-4"))
    add("input-shape-zero", model(input_shape="0"), commands=("inspect", "eval"))
    add("input-shape-garbage", model(input_shape="four"), commands=("inspect", "eval"))
    add("input-shape-rank-9", model(input_shape="1,1,1,1,1,1,1,1,4"), commands=("inspect", "eval"))
    add("input-shape-wrong-width", model(input_shape="5"), commands=("eval", "kd"))
    add("input-shape-int64max", model(input_shape="9223372036854775807"), commands=("inspect", "eval"))
    add("classes-negative", model(classes="-3"))
    add("classes-zero", model(classes="0"), commands=("inspect", "eval"))
    add("classes-huge", model(classes="99999999999"), commands=("inspect", "eval"))
    add("classes-mismatch", model(classes="7"), commands=("eval", "kd"))
    add("classes-garbage", model(classes="three"), commands=("inspect", "eval"))
    # Presets on images that are too small or too many channels.
    add("cnn-small-2x2", model(spec="cnn-small", input_shape="1,2,2", tensors={}), commands=("inspect",))
    add("lenet5-huge-side", model(spec="lenet5", input_shape="1,100000,100000", tensors={}), commands=("inspect",))
    add("resnet8-4097-channels", model(spec="resnet8", input_shape="4097,8,8", tensors={}), commands=("inspect",))
    add("cnn-tiny-flat-input", model(spec="cnn-tiny", input_shape="784", tensors={}), commands=("inspect",))
    # Layer lists with parameters out of range or that do not fit the data.
    add("maxpool-stride-0", layers("flatten", {"maxpool2d": {"kernel": 2, "stride": 0}}), commands=("inspect",))
    add("maxpool-stride-negative", layers({"maxpool2d": {"kernel": 2, "stride": -1}}), commands=("inspect",))
    add("maxpool-kernel-larger-than-input", layers({"maxpool2d": {"kernel": 9}}, "flatten", {"linear": {"in": 1, "out": 3}}), commands=("inspect",))
    add("avgpool-stride-0", layers({"avgpool2d": {"kernel": 2, "stride": 0}}), commands=("inspect",))
    add("avgpool-padding-over-half", layers({"avgpool2d": {"kernel": 2, "padding": 5}}), commands=("inspect",))
    add("conv-kernel-larger-than-input", layers({"conv2d": {"in": 1, "out": 2, "kernel": 9}}), commands=("inspect",))
    add("conv-stride-huge", layers({"conv2d": {"in": 1, "out": 2, "kernel": 3, "stride": 16777216}}), commands=("inspect",))
    add("conv-padding-huge", layers({"conv2d": {"in": 1, "out": 2, "kernel": 3, "padding": 16777216}}), commands=("inspect",))
    add("conv-dilation-huge", layers({"conv2d": {"in": 1, "out": 2, "kernel": 3, "dilation": 16777216}}), commands=("inspect",))
    add("conv-in-channels-wrong", layers({"conv2d": {"in": 3, "out": 2, "kernel": 3}}), commands=("inspect",))
    add("conv-on-flat-input", layers({"conv2d": {"in": 1, "out": 2, "kernel": 3}}, input_shape="64"), commands=("inspect",))
    add("linear-in-5-fed-64", layers("flatten", {"linear": {"in": 5, "out": 3}}), commands=("inspect", "eval"))
    add("linear-without-flatten", layers({"linear": {"in": 64, "out": 3}}), commands=("inspect",))
    add("output-width-not-classes", layers("flatten", {"linear": {"in": 64, "out": 5}}), commands=("inspect",))
    add("batchnorm-features-wrong", layers({"batchnorm2d": {"features": 7}}), commands=("inspect",))
    add("batchnorm1d-on-images", layers({"batchnorm1d": {"features": 1}}), commands=("inspect",))
    add("residual-in-wrong", layers({"residual": {"in": 4, "out": 4}}), commands=("inspect",))
    add("global-pool-on-flat", layers("global_avgpool2d", input_shape="64"), commands=("inspect",))
    add("dropout-p-1.5", layers({"dropout": {"p": 1.5}}), commands=("inspect",))
    add("leaky-slope-nan", model(spec='layers:[{"leaky_relu": {"slope": NaN}}]', input_shape="4", classes="4", tensors={}), commands=("inspect",))
    add("layers-not-json", model(spec="layers:[{", tensors={}), commands=("inspect",))
    add("layers-empty", model(spec="layers:[]", tensors={}), commands=("inspect",))
    add("layers-10001", model(spec="layers:" + json.dumps(["relu"] * 10_001), tensors={}), commands=("inspect",))
    add("layers-deep-json", model(spec="layers:" + "[" * 100_000 + "]" * 100_000, tensors={}), commands=("inspect",))
    add("layers-number", model(spec="layers:[42]", tensors={}), commands=("inspect",))
    add("layers-unknown", model(spec='layers:["softmax9"]', tensors={}), commands=("inspect",))
    add("layers-float-option", layers({"conv2d": {"in": 1.5, "out": 2, "kernel": 3}}), commands=("inspect",))
    add("layers-groups-zero", layers({"conv2d": {"in": 1, "out": 2, "kernel": 3, "groups": 0}}), commands=("inspect",))
    # Weights: NaN, Inf, missing, extra, wrongly shaped, other dtypes.
    w = mlp_weights((4, 8, 3))
    nan_bias = dict(w); nan_bias["3.bias"] = np.array([np.nan, 0, 0], np.float32)
    add("nan-bias", model(tensors=nan_bias), commands=("eval", "kd", "cache", "export"))
    inf_weight = dict(w); inf_weight["1.weight"] = np.full((8, 4), np.inf, np.float32)
    add("inf-weight", model(tensors=inf_weight), commands=("eval", "inspect"))
    missing = dict(w); del missing["3.bias"]
    add("missing-tensor", model(tensors=missing), commands=("eval",))
    extra = dict(w); extra["9.weight"] = np.zeros((2, 2), np.float32)
    add("extra-tensor", model(tensors=extra), commands=("eval",))
    wrong = dict(w); wrong["1.weight"] = np.zeros((4, 8), np.float32)
    add("transposed-weight", model(tensors=wrong), commands=("eval",))
    half = {k: ("F16", list(v.shape), np.full(v.shape, np.float16(np.nan)).tobytes()) for k, v in w.items()}
    add("f16-nan", model(tensors=half), commands=("eval",))
    ints = {k: ("I64", list(v.shape), np.zeros(v.shape, np.int64).tobytes()) for k, v in w.items()}
    add("int64-weights", model(tensors=ints), commands=("eval",))
    # Tabular statistics kept in the metadata.
    stats = lambda mean, std, shape=(4,): json.dumps({"exampleShape": list(shape), "mean": mean, "std": std})
    add("stats-empty-std", model(extra={"feature_statistics": stats([0, 0, 0, 0], [])}), commands=("eval", "kd", "export"))
    add("stats-wrong-count", model(extra={"feature_statistics": stats([0, 0], [1, 1])}), commands=("eval", "export"))
    add("stats-negative-std", model(extra={"feature_statistics": stats([0, 0, 0, 0], [-1, 1, 1, 1])}), commands=("eval",))
    add("stats-huge-shape", model(extra={"feature_statistics": stats([0], [1], shape=(4294967296, 4294967296))}), commands=("eval", "export"))
    add("stats-not-json", model(extra={"feature_statistics": "{"}), commands=("eval",))
    add("stats-strings", model(extra={"feature_statistics": json.dumps({"exampleShape": "4", "mean": "x", "std": None})}), commands=("eval",))
    add("target-stats-garbage", model(extra={"target_statistics": "nan,0", "task": "regression"}), commands=("export", "eval"))
    # Not a model at all.
    out.append(Case("model", "plain-safetensors-teacher", ["kd", "--teacher", "m.safetensors", "--data", "d.npz", "--student", "mlp:4-8-3", "--epochs", "1"],
                    {"m.safetensors": safetensors({"a": np.zeros(3, np.float32)}), **DATA}, ["m.safetensors"]))
    out.append(Case("model", "teacher-is-folder", ["kd", "--teacher", "m.safetensors", "--data", "d.npz", "--student", "mlp:4-8-3", "--epochs", "1"],
                    {"m.safetensors": lambda p: p.mkdir(), **DATA}, ["m.safetensors"]))
    out.append(Case("model", "teacher-is-fifo", ["kd", "--teacher", "m.safetensors", "--data", "d.npz", "--student", "mlp:4-8-3", "--epochs", "1"],
                    {"m.safetensors": lambda p: os.mkfifo(p), **DATA}, ["m.safetensors"]))
    out.append(Case("model", "eval-dev-zero", ["eval", "/dev/zero", "--data", "d.npz"], DATA, ["/dev/zero"]))
    out.append(Case("model", "inspect-fifo", ["inspect", "m.safetensors"], {"m.safetensors": lambda p: os.mkfifo(p)}, ["m.safetensors"]))
    out.append(Case("model", "teacher-wrong-width", ["kd", "--teacher", "m.safetensors", "--data", "d.npz", "--student", "mlp:4-8-3", "--epochs", "1"],
                    {"m.safetensors": model(widths=(5, 8, 3)), **DATA}, ["m.safetensors"]))
    return out + more_cases()


def more_cases():
    """Teachers given to `eval --teacher` that do not fit the data."""
    files = {"m.safetensors": model(), "t.safetensors": model(widths=(5, 8, 3)), "t7.safetensors": model(widths=(4, 8, 7)), **DATA}
    return [
        Case("model", "eval-teacher-wrong-width", ["eval", "m.safetensors", "--data", "d.npz", "--teacher", "t.safetensors"], files, ["t.safetensors"]),
        Case("model", "eval-teacher-wrong-classes", ["eval", "m.safetensors", "--data", "d.npz", "--teacher", "t7.safetensors"], files, ["t7.safetensors"]),
        Case("model", "cache-teacher-wrong-width", ["cache-teacher", "--teacher", "t.safetensors", "--data", "d.npz", "--out", "o.npy"], files, ["t.safetensors"]),
        Case("model", "data-report-teacher-wrong-width", ["data-report", "--teacher", "t.safetensors", "--data", "d.npz"], files, ["t.safetensors"]),
    ]
