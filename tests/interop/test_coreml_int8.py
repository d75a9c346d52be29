"""int8 students to Core ML: `distill export MODEL.int8.safetensors --coreml`, checked from the file alone.

The file is a neural-network classifier whose inner products and convolutions hold DistillKit's int8 weights as
Core ML's 8-bit linear quantization (unsigned bytes u = q + 128, per output channel scale · u + bias with
bias = −128 · scale), biases in float32. Core ML dequantizes such weights when it loads the model and computes in
float, so the file is the int8 student with float activations, not DistillKit's int8 path (which also rounds every
activation to a byte). So:

- coremltools loads and validates the file (`load_spec`, `MLModel`); every weight blob holds exactly the
  safetensors file's int8 values (+ 128) and scales, and coremltools' own dequantization gives the weights the
  NumPy interpreter uses.
- The NumPy interpreter over the spec's layers (test_student_shipping.py's, which dequantizes 8-bit weights)
  computes logits from the .mlmodel alone on 1,000 Fashion-MNIST test images (the tabular student: 400 rows of
  its CSV); they match, within 1e-4, a float forward with the dequantized weights written here from the int8
  .safetensors file (its layer list, I8 weights, scales, biases and input statistics).
- Against DistillKit's real int8 path (`distill cache-teacher` with the int8 file as teacher) the predictions
  agree on most images; every differing one is a near-tie of DistillKit's int8 logits. The figures are printed.
- The int8 file is about a quarter of the float32 export's size; `distill inspect` reports its 8-bit weights.

How it runs (from the repository root, after `swift build`): `pytest tests/interop/test_coreml_int8.py`.
Environment: DISTILL_SCRATCH / DISTILL_BINARY (see distillcli.py), DISTILL_FASHION_MNIST.
"""

import json

import pytest

np = pytest.importorskip("numpy")
from distillcli import distill  # noqa: E402
from test_student_shipping import CLASS_NAMES, coreml_interpret, load_classifier_spec, safe, trained_students  # noqa: E402

STUDENTS = ["mlp:784-64-10", "cnn-tiny", "lenet5"]


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    """Students trained for a moment, quantized (`distill quantize`), exported to Core ML as int8 and as float32,
    with DistillKit's int8 outputs on the test inputs: {name: dict}."""
    folder = tmp_path_factory.mktemp("coreml-int8")
    made = {}
    for name, trained in trained_students(folder, STUDENTS).items():
        tabular = name == "tabular"
        made[name] = dict(float_model=trained["model"], inputs=trained["inputs"], archive=trained["archive"],
                          class_names=["a", "b", "c"] if tabular else CLASS_NAMES,
                          calibration=["--calibration", trained["table"], "--label", "label"] if tabular
                          else ["--calibration", "fashion-mnist", "--samples", 500])

    for name, entry in made.items():
        entry["model"] = folder / f"{safe(name)}.int8.safetensors"
        distill("quantize", entry["float_model"], *entry["calibration"], "--output", entry["model"])
        reference = folder / f"{safe(name)}.int8.reference.npy"
        distill("cache-teacher", "--teacher", entry["model"], "--data", entry["archive"], "--out", reference)
        entry["reference"] = np.load(reference)
        names = ",".join(entry["class_names"])
        entry["mlmodel"] = folder / f"{safe(name)}.int8.mlmodel"
        entry["report"] = json.loads(distill("export", entry["model"], "--coreml", entry["mlmodel"], "--class-names", names, "--json").stdout)
        entry["float_mlmodel"] = folder / f"{safe(name)}.float.mlmodel"
        distill("export", entry["float_model"], "--coreml", entry["float_mlmodel"], "--class-names", names)
    return made


def read_int8(path):
    """The int8 safetensors file: (metadata, {tensor name: array})."""
    safetensors = pytest.importorskip("safetensors", reason="safetensors is not installed (pip install safetensors)")
    with safetensors.safe_open(str(path), "np") as f:
        return f.metadata(), {key: f.get_tensor(key) for key in f.keys()}


def windows(x, kernel, stride, padding, fill=0.0):
    """[N, C, OH, OW, KH, KW] windows of x [N, C, H, W] padded with `fill`."""
    from numpy.lib.stride_tricks import sliding_window_view
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=fill)
    return sliding_window_view(xp, tuple(kernel), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]


def dequantized_forward(path, x):
    """The int8 student at `path` with float activations, in float64: each weight its int8 values times its
    output channel's scale, the float bias, ReLU, pooling as DistillKit defines it (average pooling counts the
    padding), the tabular standardisation first. Written from the safetensors file's layout (QuantizedFile.swift)."""
    metadata, tensors = read_int8(path)
    h = x.astype(np.float64)
    if "feature_statistics" in metadata:
        statistics = json.loads(metadata["feature_statistics"])
        std = np.array(statistics["std"], dtype=np.float64)
        h = (h - np.array(statistics["mean"], dtype=np.float64)) / np.where(std < 1e-6, 1, std)   # a tiny std only centres
    for k, layer in enumerate(json.loads(metadata["distillkit.int8.layers"])):
        op = layer["op"]
        if op in ("linear", "conv"):
            q = tensors[f"layers.{k}.weight"].astype(np.float64)
            w = q * tensors[f"layers.{k}.weight_scale"].astype(np.float64).reshape(-1, *[1] * (q.ndim - 1))
            b = tensors[f"layers.{k}.bias"].astype(np.float64) if layer["bias"] else np.zeros(len(w))
            if op == "linear":
                h = h.reshape(len(h), -1) @ w.T + b
            else:
                h = np.einsum("nchwuv,ocuv->nohw", windows(h, w.shape[2:], layer["stride"], layer["padding"]), w) + b.reshape(1, -1, 1, 1)
            if layer["relu"]:
                h = np.maximum(h, 0)
        elif op == "max_pool":
            h = windows(h, layer["kernel"], layer["stride"], layer["padding"], fill=-np.inf).max(axis=(4, 5))
        elif op == "avg_pool":
            h = windows(h, layer["kernel"], layer["stride"], layer["padding"]).mean(axis=(4, 5))
        elif op == "global_avg_pool":
            h = h.mean(axis=(2, 3))
        elif op == "flatten":
            h = h.reshape(len(h), -1)
        else:
            raise AssertionError(f"int8 layer {k}: op {op} not interpreted")
    return h


def coreml_or_skip():
    return pytest.importorskip("coremltools", reason="coremltools is not installed (pip install coremltools)")


def quantized_layers(spec):
    """(layer, its parameters) for every inner product and convolution of the spec."""
    network = getattr(spec, spec.WhichOneof("Type"))
    return [(layer, getattr(layer, layer.WhichOneof("layer"))) for layer in network.layers
            if layer.WhichOneof("layer") in ("innerProduct", "convolution")]


@pytest.mark.parametrize("name", STUDENTS + ["tabular"])
def test_coremltools_loads_the_file_and_its_weights_are_distillkits(students, name):
    ct = coreml_or_skip()
    entry = students[name]
    spec = load_classifier_spec(ct, entry["mlmodel"], entry["class_names"])
    _, tensors = read_int8(entry["model"])
    layers = quantized_layers(spec)
    assert len(layers) == sum(1 for key in tensors if key.endswith(".weight"))
    for layer, p in layers:
        q = p.weights.quantization
        assert not p.weights.floatValue and q.numberOfBits == 8 and q.WhichOneof("QuantizationType") == "linearQuantization"
        int8 = tensors[f"{layer.name}.weight"]
        scales = tensors[f"{layer.name}.weight_scale"]
        stored = np.frombuffer(p.weights.rawValue, dtype=np.uint8).astype(np.int16) - 128
        assert (stored == int8.reshape(-1)).all(), f"{layer.name}: the bytes are not the int8 values + 128"
        assert (np.array(q.linearQuantization.scale, dtype=np.float32) == scales).all()
        assert (np.array(q.linearQuantization.bias, dtype=np.float32) == np.float32(-128) * scales).all()
        bias = tensors.get(f"{layer.name}.bias", np.zeros(len(scales), dtype=np.float32))
        assert (np.array(p.bias.floatValue, dtype=np.float32) == bias).all()

    # coremltools' own dequantization (what its converters use to undo quantization) gives the float weights
    # the interpreter computes from the file.
    from coremltools.models.neural_network.quantization_utils import _dequantize_nn_spec
    from test_student_shipping import coreml_weights
    dequantized = ct.utils.load_spec(str(entry["mlmodel"]))
    _dequantize_nn_spec(getattr(dequantized, dequantized.WhichOneof("Type")))
    for (layer, p), (_, d) in zip(layers, quantized_layers(dequantized)):
        shape = tensors[f"{layer.name}.weight"].shape
        ours = coreml_weights(p.weights, shape)
        theirs = np.array(d.weights.floatValue, dtype=np.float64).reshape(shape)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9, err_msg=layer.name)


@pytest.mark.parametrize("name", STUDENTS + ["tabular"])
def test_spec_computes_the_int8_weights_with_float_activations(students, name):
    ct = coreml_or_skip()
    entry = students[name]
    spec = ct.utils.load_spec(str(entry["mlmodel"]))
    assert list(spec.description.input[0].type.multiArrayType.shape) == list(entry["inputs"].shape[1:])
    computed = coreml_interpret(spec, entry["inputs"])
    expected = dequantized_forward(entry["model"], entry["inputs"])
    difference = np.abs(computed["logits"] - expected)
    print(f"int8 Core ML {name}: logits from the file alone vs the float forward with dequantized weights on "
          f"{len(expected)} inputs: max |difference| {difference.max():.3g} (logits up to {np.abs(expected).max():.3g})")
    np.testing.assert_allclose(computed["logits"], expected, rtol=1e-4, atol=1e-4, err_msg=name)
    probabilities = np.exp(expected - expected.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(computed["classProbability"], probabilities, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", STUDENTS + ["tabular"])
def test_predictions_agree_with_distillkits_int8_path(students, name):
    ct = coreml_or_skip()
    entry = students[name]
    logits = coreml_interpret(ct.utils.load_spec(str(entry["mlmodel"])), entry["inputs"])["logits"]
    reference = entry["reference"].astype(np.float64)
    agree = logits.argmax(1) == reference.argmax(1)
    difference = np.abs(logits - reference)
    ordered = np.sort(reference, axis=1)
    margin = ordered[:, -1] - ordered[:, -2]
    print(f"int8 Core ML {name}: predictions agree with DistillKit's int8 path on {agree.mean():.2%} of {len(agree)}; "
          f"max |logit difference| {difference.max():.3g} (logits up to {np.abs(reference).max():.3g}), mean {difference.mean():.3g}; "
          f"DistillKit's int8 margins where they differ: {np.round(margin[~agree], 4).tolist()}")
    # Float activations against activations rounded to bytes: the logits move by a fraction of their scale, and a
    # prediction changes only where DistillKit's two best int8 logits are closer than the largest movement.
    assert difference.max() <= 0.05 * max(1.0, float(np.abs(reference).max())), f"{name}: logits differ by up to {difference.max()}"
    assert (margin[~agree] <= 2 * difference.max()).all(), f"{name}: a differing prediction that is not a near-tie"
    assert agree.mean() >= 0.98, f"{name}: predictions agree on {agree.mean():.2%}"


@pytest.mark.parametrize("name", STUDENTS)
def test_int8_file_is_a_quarter_of_the_float_one(students, name):
    entry = students[name]
    int8, float32 = entry["mlmodel"].stat().st_size, entry["float_mlmodel"].stat().st_size
    print(f"Core ML {name}: float32 {float32} bytes, int8 {int8} bytes ({int8 / float32:.1%})")
    assert int8 < 0.3 * float32


def test_export_report_and_inspect_show_the_quantization(students):
    for name in STUDENTS:
        entry = students[name]
        report = entry["report"]
        assert report["format"] == "Core ML" and report["int8"] and "not quantized" in report["notes"][1]
        _, tensors = read_int8(entry["model"])
        weights = [key for key in tensors if key.endswith(".weight")]
        scales = sum(len(tensors[key + "_scale"]) for key in weights)
        summary = json.loads(distill("inspect", entry["mlmodel"], "--json").stdout)
        assert summary["format"].startswith("Core ML (specification 4, neuralNetworkClassifier, 10 class labels, ")
        assert f"8-bit linear weights in {len(weights)} layers, {scales} per-channel scales" in summary["format"], summary["format"]
        float_summary = json.loads(distill("inspect", entry["float_mlmodel"], "--json").stdout)
        assert summary["parameters"] == float_summary["parameters"] == report["params"]
        assert summary["bytes"] < 0.3 * float_summary["bytes"]
        assert summary["flops"] == float_summary["flops"]
        assert len(summary["quantization"]) == len(weights)
    text = distill("export", students["lenet5"]["model"], "--coreml", students["lenet5"]["mlmodel"]).stdout
    assert "(8-bit weights, float arithmetic)" in text and "Core ML dequantizes the weights" in text
    inspected = distill("inspect", students["lenet5"]["mlmodel"]).stdout
    assert "8-bit linear weights in 5 layers" in inspected and "quantized weights (real = scale · u + bias" in inspected
