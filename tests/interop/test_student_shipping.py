"""Shipping a student without ONNX: `distill export --c / --coreml / --tflite`, each file checked by its own runtime.

Students are trained for a moment on Fashion-MNIST (`distill train`, one short epoch: real weights and real
batch-norm statistics), plus a tabular MLP trained on a CSV (its standardisation travels inside the files).
DistillKit's own outputs on the first 1,000 Fashion-MNIST test images come from `distill cache-teacher`
(the student as a teacher, over an .npz whose training split is those images). Then:

- C: the exported .c and .h build with the system cc (`-O2 -std=c99 -Wall -Wextra -Werror`) together with a
  small driver that runs `student_predict_batch` on the 1,000 images: outputs within 1e-5, identical predictions.
- LiteRT: `ai_edge_litert`'s Interpreter runs the .tflite on the 1,000 images (NHWC): outputs within 1e-5.
- Core ML: coremltools loads the .mlmodel (`load_spec`, `MLModel`), and a NumPy interpreter over the spec's
  layers (written here from Core ML's NeuralNetwork.proto semantics) computes the outputs from the file alone:
  logits within 1e-5, class labels and probabilities as the file declares them.

int8 students (`distill quantize`, calibrated on Fashion-MNIST's training split; the tabular one on its CSV):
- C: the integer-arithmetic .c gives outputs IDENTICAL (bit for bit) to DistillKit's int8 path on the 1,000 images.
- LiteRT: the default int8 .tflite is fully integer (QUANTIZE, int8 CONV_2D / FULLY_CONNECTED with per-channel
  weights and int32 biases, then CAST and TFLite's 16x8 FULLY_CONNECTED writing int16 logits, DEQUANTIZE); LiteRT's
  Interpreter runs it with its default kernels and with its reference kernels. TFLite adds biases rounded to integers
  (and its reference kernels round twice), so now and then a hidden value lands one step from DistillKit's; the int16
  logits' step is too fine to matter. So: the logits lie within 1% of their scale, every differing prediction is a
  near-tie, and the predictions agree on at least 99.5% of the images with the default kernels (measured: 99.9-100%),
  at least 99% with the reference kernels (measured: 99.5-100%; their double rounding moves more hidden values).
  With --calibration DATA the logits are int8 (every operator int8, for accelerators that run nothing else): every
  logit DistillKit gives inside the int8 logits' range is within two steps of LiteRT's (outside it, LiteRT's is the
  range's end), every differing prediction is a tie in LiteRT's int8 logits where DistillKit's two best logits are
  less than two steps apart, and at least 97% agree (measured: 98-100%; these briefly trained students' small logits
  make such near-ties common). With --float-logits the last layer runs in float32: as the default, at least 99%.

How it runs (from the repository root, after `swift build`): `pytest tests/interop/test_student_shipping.py`.
Environment: DISTILL_SCRATCH / DISTILL_BINARY (see distillcli.py), DISTILL_FASHION_MNIST (default
/usr/share/datasets/fashion-mnist). Each runtime's tests are skipped, with the reason, when its package is missing.
"""

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
from distillcli import blobs, distill, write_csv  # noqa: E402

FASHION = Path(os.environ.get("DISTILL_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
IMAGES = 1000
STUDENTS = ["mlp:784-64-10", "cnn-tiny", "lenet5", "resnet8", "mobilenet-tiny"]
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def safe(spec):
    return spec.replace(":", "_")


def fashion_test(count):
    images, labels = FASHION / "t10k-images-idx3-ubyte.gz", FASHION / "t10k-labels-idx1-ubyte.gz"
    if not images.exists():
        pytest.skip(f"{images} is missing (apt-get install dataset-fashion-mnist)")
    with gzip.open(images) as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16)[: count * 784].reshape(count, 1, 28, 28)
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:count]
    return (x.astype(np.float32) / 255).astype(np.float32), y.astype(np.int64)


def trained_students(folder, specs):
    """Image students trained for a moment (one epoch on 1,000 rows) and a tabular classifier far from
    standardised inputs (its standardisation must travel inside exported files), with the inputs
    to compare them on: {name: dict(model, inputs, archive)}, the tabular one also with its `table`."""
    images, labels = fashion_test(IMAGES)
    archive = folder / "images.npz"
    np.savez(archive, x_train=images, y_train=labels, x_test=images[:10], y_test=labels[:10])
    made = {}
    for spec in specs:
        run = folder / safe(spec)
        distill("train", "--model", spec, "--epochs", 1, "--train-limit", 1000, "--batch-size", 64, "--output", run, "--quiet")
        made[spec] = dict(model=run / "student.safetensors", inputs=images, archive=archive)
    x, y = blobs(600, seed=3)
    x = x * np.float32(40) + np.float32(500)   # far from standardised: a forgotten standardisation shows
    table = folder / "blobs.csv"
    write_csv(table, x, y)
    run = folder / "tabular"
    distill("train", "--model", "mlp:4-16-3", "--data", table, "--label", "label", "--epochs", 3, "--output", run, "--quiet")
    rows = x[:400].astype(np.float32)
    rows_archive = folder / "rows.npz"
    np.savez(rows_archive, x_train=rows, y_train=y[:400], x_test=rows[:10], y_test=y[:10])
    made["tabular"] = dict(model=run / "student.safetensors", inputs=rows, archive=rows_archive, table=table)
    return made


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    """Trained students, their exports, and DistillKit's outputs on the test inputs: {name: dict}."""
    folder = tmp_path_factory.mktemp("shipping")
    made = trained_students(folder, STUDENTS)

    for name, entry in made.items():
        reference = folder / f"{safe(name)}.reference.npy"
        distill("cache-teacher", "--teacher", entry["model"], "--data", entry["archive"], "--out", reference)
        entry["reference"] = np.load(reference).astype(np.float32)
        names = CLASS_NAMES if name != "tabular" else ["a", "b", "c"]
        entry["class_names"] = names
        for flag, suffix in (("--c", "c"), ("--coreml", "mlmodel"), ("--tflite", "tflite")):
            out = folder / f"{safe(name)}.{suffix}"
            distill("export", entry["model"], flag, out, "--class-names", ",".join(names))
            entry[suffix] = out
    return made


# ---------------------------------------------------------------- C

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "student.h"
/* driver INPUTS OUTPUTS COUNT: float32 inputs in, float32 outputs and int32 predictions out. */
int main(int argc, char **argv) {
    int count = atoi(argv[3]);
    float *x = malloc(sizeof(float) * STUDENT_INPUT_SIZE * count), *y = malloc(sizeof(float) * STUDENT_OUTPUT_SIZE * count);
    int *predicted = malloc(sizeof(int) * count);
    FILE *f = fopen(argv[1], "rb");
    if (fread(x, sizeof(float), (size_t)STUDENT_INPUT_SIZE * count, f) != (size_t)STUDENT_INPUT_SIZE * count) return 2;
    fclose(f);
    if (student_predict_batch(x, y, count, predicted) != 0) return 3;
    f = fopen(argv[2], "wb");
    fwrite(y, sizeof(float), (size_t)STUDENT_OUTPUT_SIZE * count, f);
    fwrite(predicted, sizeof(int), (size_t)count, f);
    fclose(f);
    printf("%s\n", student_class_names[predicted[0]]);
    return 0;
}
"""


@pytest.mark.parametrize("name", STUDENTS + ["tabular"])
def test_c_source_matches_distillkit(students, name, tmp_path):
    entry = students[name]
    outputs, predicted, printed = compile_and_run(entry, tmp_path)
    np.testing.assert_allclose(outputs, entry["reference"], err_msg=name, **TOLERANCE)
    assert (predicted == entry["reference"].argmax(1)).all()
    assert printed == entry["class_names"][predicted[0]]


def test_c_source_has_no_allocation_and_documents_its_api(students):
    source = students["cnn-tiny"]["c"].read_text()
    header = students["cnn-tiny"]["c"].with_suffix(".h").read_text()
    assert "malloc" not in source and "#include <math.h>" in source and "<stdlib.h>" not in source
    assert "int student_predict(const float *input, float *output);" in header
    assert "student_predict_batch" in header and "#define STUDENT_INPUT_SIZE 784" in header
    assert '"Ankle boot"' in source and "static const float" in source


# ---------------------------------------------------------------- LiteRT

def litert_run(path, x):
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed (pip install ai-edge-litert)")
    interpreter = interpreter_module.Interpreter(model_path=str(path))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x.shape), strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("name", STUDENTS + ["tabular"])
def test_litert_matches_distillkit(students, name):
    entry = students[name]
    x = entry["inputs"]
    if x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))   # TFLite images are NHWC
    got = litert_run(entry["tflite"], x)
    np.testing.assert_allclose(got, entry["reference"], err_msg=name, **TOLERANCE)
    assert (got.argmax(1) == entry["reference"].argmax(1)).all()


def test_litert_file_carries_names_and_signature(students):
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")
    interpreter = interpreter_module.Interpreter(model_path=str(students["lenet5"]["tflite"]))
    signatures = interpreter.get_signature_list()
    assert signatures == {"serving_default": {"inputs": ["input"], "outputs": ["output"]}}
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, 28, 28, 1]
    runner = interpreter.get_signature_runner("serving_default")
    image = np.ascontiguousarray(students["lenet5"]["inputs"][:1].transpose(0, 2, 3, 1))
    np.testing.assert_allclose(runner(input=image)["output"], students["lenet5"]["reference"][:1], **TOLERANCE)


# ---------------------------------------------------------------- Core ML

def erf(x):
    try:
        from scipy.special import erf as scipy_erf
        return scipy_erf(x)
    except ImportError:
        import math
        return np.vectorize(math.erf)(x)


def coreml_weights(weights, shape):
    """A WeightParams blob as float64 of `shape`: its float32 values, or 8-bit linear quantized integers (rawValue,
    an int8 export) dequantized as Core ML does when it loads the model: scale · u + bias, one pair per output channel
    (axis 0) or one for all."""
    if not weights.HasField("quantization"):
        return np.array(weights.floatValue, dtype=np.float64).reshape(shape)
    q = weights.quantization
    assert q.numberOfBits == 8 and q.WhichOneof("QuantizationType") == "linearQuantization" and not weights.floatValue
    u = np.frombuffer(weights.rawValue, dtype=np.uint8).astype(np.float64).reshape(shape[0], -1)
    scale = np.array(q.linearQuantization.scale, dtype=np.float64).reshape(-1, 1)
    bias = np.array(q.linearQuantization.bias, dtype=np.float64).reshape(-1, 1)
    return (u * scale + bias).reshape(shape)


def coreml_layer(layer, blobs):
    """One NeuralNetworkLayer over [N, C, H, W] float64 blobs, as Core ML defines it."""
    kind = layer.WhichOneof("layer")
    x = blobs[layer.input[0]]
    if kind == "innerProduct":
        p = layer.innerProduct
        w = coreml_weights(p.weights, (p.outputChannels, p.inputChannels))
        y = x.reshape(len(x), -1) @ w.T
        if p.hasBias:
            y = y + np.array(p.bias.floatValue)
        return y.reshape(len(x), -1, 1, 1)
    if kind == "convolution":
        p = layer.convolution
        kh, kw = p.kernelSize
        sh, sw = p.stride
        dh, dw = p.dilationFactor
        (pt, pb), (pl, pr) = [(e.startEdgeSize, e.endEdgeSize) for e in p.valid.paddingAmounts.borderAmounts]
        groups, cout, cg = p.nGroups, p.outputChannels, p.kernelChannels
        w = coreml_weights(p.weights, (cout, cg, kh, kw))
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
        ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
        y = np.zeros((len(x), cout, oh, ow))
        og = cout // groups
        for g in range(groups):
            xs = xp[:, g * cg:(g + 1) * cg]
            for u in range(kh):
                for v in range(kw):
                    patch = xs[:, :, u * dh:u * dh + sh * (oh - 1) + 1:sh, v * dw:v * dw + sw * (ow - 1) + 1:sw]
                    y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[g * og:(g + 1) * og, :, u, v])
        if p.hasBias:
            y += np.array(p.bias.floatValue).reshape(1, -1, 1, 1)
        return y
    if kind == "pooling":
        p = layer.pooling
        if p.globalPooling:
            return x.mean(axis=(2, 3), keepdims=True) if p.type == 1 else x.max(axis=(2, 3), keepdims=True)
        kh, kw = p.kernelSize
        sh, sw = p.stride
        (pt, pb), (pl, pr) = [(e.startEdgeSize, e.endEdgeSize) for e in p.valid.paddingAmounts.borderAmounts]
        is_max = p.type == 0
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=-np.inf if is_max else 0)
        oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
        windows = [xp[:, :, u:u + sh * (oh - 1) + 1:sh, v:v + sw * (ow - 1) + 1:sw] for u in range(kh) for v in range(kw)]
        assert not p.avgPoolExcludePadding
        return np.max(windows, axis=0) if is_max else np.sum(windows, axis=0) / (kh * kw)
    if kind == "activation":
        a = layer.activation
        which = a.WhichOneof("NonlinearityType")
        if which == "ReLU":
            return np.maximum(x, 0)
        if which == "leakyReLU":
            return np.where(x > 0, x, a.leakyReLU.alpha * x)
        if which == "sigmoid":
            return 1 / (1 + np.exp(-x))
        if which == "tanh":
            return np.tanh(x)
        raise AssertionError(f"activation {which} not interpreted")
    if kind == "gelu":
        assert layer.gelu.mode == 0  # EXACT
        return 0.5 * x * (1 + erf(x / np.sqrt(2)))
    if kind == "flatten":
        assert layer.flatten.mode == 0  # CHANNEL_FIRST
        return x.reshape(len(x), -1, 1, 1)
    if kind == "scale":
        p = layer.scale
        y = x * np.array(p.scale.floatValue).reshape(broadcast_shape(p.shapeScale))
        if p.hasBias:
            y = y + np.array(p.bias.floatValue).reshape(broadcast_shape(p.shapeBias))
        return y
    if kind == "bias":
        return x + np.array(layer.bias.bias.floatValue).reshape(broadcast_shape(layer.bias.shape))
    if kind == "add":
        return sum(blobs[name] for name in layer.input)
    if kind == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise AssertionError(f"layer kind {kind} not interpreted")


def broadcast_shape(shape):
    """A Core ML [1], [C] or [C, H, W] parameter shape, broadcast over [N, C, H, W]."""
    shape = list(shape)
    if len(shape) == 1:
        return (1, shape[0], 1, 1)
    return (1, *shape)


def coreml_interpret(spec, x, batch=100):
    """Runs the spec's layers on x ([N, ...] in the input's declared shape): {blob name: [N, ...]}."""
    network = getattr(spec, spec.WhichOneof("Type"))
    input_name = spec.description.input[0].name
    results = {}
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch].astype(np.float64)
        blobs = {input_name: chunk.reshape(len(chunk), chunk.shape[1], *(chunk.shape[2:] or (1, 1)))}
        for layer in network.layers:
            blobs[layer.output[0]] = coreml_layer(layer, blobs)
        for name, value in blobs.items():
            results.setdefault(name, []).append(value.reshape(len(chunk), -1))
    return {name: np.concatenate(parts) for name, parts in results.items()}


def load_classifier_spec(ct, path, class_names):
    """The .mlmodel's spec, loaded and validated by coremltools (prediction needs macOS), checked to be
    a specification-4 classifier with `class_names` and DistillKit's three outputs."""
    spec = ct.utils.load_spec(str(path))
    model = ct.models.MLModel(spec)
    assert model.get_spec().specificationVersion == 4
    assert spec.WhichOneof("Type") == "neuralNetworkClassifier"
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == class_names
    assert [f.name for f in spec.description.output] == ["classLabel", "classProbability", "logits"]
    return spec


@pytest.mark.parametrize("name", STUDENTS + ["tabular"])
def test_coreml_spec_matches_distillkit(students, name):
    ct = pytest.importorskip("coremltools", reason="coremltools is not installed (pip install coremltools)")
    entry = students[name]
    spec = load_classifier_spec(ct, entry["mlmodel"], entry["class_names"])
    description = spec.description
    assert description.predictedFeatureName == "classLabel" and description.predictedProbabilitiesName == "classProbability"
    assert list(description.input[0].type.multiArrayType.shape) == list(entry["inputs"].shape[1:])
    blobs = coreml_interpret(spec, entry["inputs"])
    np.testing.assert_allclose(blobs["logits"], entry["reference"], err_msg=name, **TOLERANCE)
    reference = entry["reference"].astype(np.float64)
    probabilities = np.exp(reference - reference.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(blobs["classProbability"], probabilities, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- CLI: inspect, refusals

def test_inspect_reads_back_tflite_and_coreml(students):
    entry = students["resnet8"]
    native = json.loads(distill("inspect", entry["model"], "--json").stdout)
    tflite = json.loads(distill("inspect", entry["tflite"], "--json").stdout)
    coreml = json.loads(distill("inspect", entry["mlmodel"], "--json").stdout)
    assert tflite["format"].startswith("TFLite") and tflite["inputs"][0]["shape"] == "[N,28,28,1]"
    assert tflite["operators"]["CONV_2D"] == 9 and tflite["operators"]["ADD"] == 3
    # Batch norm folded into the convolutions: its FLOPs are gone, nothing else is.
    assert 0.95 * native["flops"] < tflite["flops"] < native["flops"]
    assert coreml["format"].startswith("Core ML (specification 4, neuralNetworkClassifier, 10 class labels")
    assert coreml["operators"]["convolution"] == 9 and coreml["operators"]["softmax"] == 1
    assert coreml["inputs"][0]["shape"] == "[1,28,28]"
    plain = students["cnn-tiny"]
    native = json.loads(distill("inspect", plain["model"], "--json").stdout)
    for path in (plain["tflite"], plain["mlmodel"]):
        summary = json.loads(distill("inspect", path, "--json").stdout)
        assert summary["parameters"] == native["parameters"]
    assert json.loads(distill("inspect", plain["tflite"], "--json").stdout)["flops"] == native["flops"]
    text = distill("inspect", plain["mlmodel"]).stdout
    assert "FLOPs per example" in text and "classProbability" in text


def test_export_errors_are_explained(students, tmp_path):
    model = students["cnn-tiny"]["model"]
    both = distill("export", model, "--c", tmp_path / "a.c", "--tflite", tmp_path / "a.tflite", check=False)
    assert both.returncode != 0 and "give one of" in both.stderr
    wrong = distill("export", model, "--coreml", tmp_path / "a.mlmodel", "--class-names", "a,b", check=False)
    assert wrong.returncode != 0 and "2 class names given; the model has 10 outputs" in wrong.stderr
    assert not (tmp_path / "a.mlmodel").exists()
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(students["cnn-tiny"]["tflite"].read_bytes()[:300])
    result = distill("inspect", corrupt, check=False)
    assert result.returncode != 0 and "corrupt.tflite" in result.stderr and "Fatal error" not in result.stderr


# ---------------------------------------------------------------- int8 students: C and LiteRT

INT8_STUDENTS = ["mlp:784-64-10", "cnn-tiny", "lenet5"]


@pytest.fixture(scope="module")
def int8_students(students, tmp_path_factory):
    """int8 students quantized from the trained ones, their C and TFLite exports, DistillKit's int8 outputs."""
    folder = tmp_path_factory.mktemp("shipping-int8")
    made = {}
    for name in INT8_STUDENTS + ["tabular"]:
        entry = students[name]
        model = folder / f"{safe(name)}.int8.safetensors"
        if name == "tabular":
            calibration = ["--calibration", entry["model"].parent.parent / "blobs.csv", "--label", "label"]
        else:
            calibration = ["--calibration", "fashion-mnist", "--samples", 500]
        distill("quantize", entry["model"], *calibration, "--output", model)
        reference = folder / f"{safe(name)}.int8.reference.npy"
        distill("cache-teacher", "--teacher", model, "--data", entry["archive"], "--out", reference)
        int8 = dict(model=model, inputs=entry["inputs"], class_names=entry["class_names"], reference=np.load(reference))
        assert int8["reference"].dtype == np.float32
        int8["c"] = folder / f"{safe(name)}.int8.c"
        distill("export", model, "--c", int8["c"], "--class-names", ",".join(entry["class_names"]))
        int8["tflite"] = folder / f"{safe(name)}.int8.tflite"
        report = distill("export", model, "--tflite", int8["tflite"], "--class-names", ",".join(entry["class_names"]), "--json")
        int8["report"] = json.loads(report.stdout)
        int8["tflite_int8_logits"] = folder / f"{safe(name)}.int8-int8-logits.tflite"
        tflite_calibration = [c for c in calibration if c not in ("--samples", 500)]   # the default 1,000 rows for the logits
        distill("export", model, "--tflite", int8["tflite_int8_logits"], *tflite_calibration, "--class-names", ",".join(entry["class_names"]))
        int8["tflite_float_logits"] = folder / f"{safe(name)}.int8-float-logits.tflite"
        distill("export", model, "--tflite", int8["tflite_float_logits"], "--float-logits", "--class-names", ",".join(entry["class_names"]))
        made[name] = int8
    return made


def compile_and_run(entry, tmp_path):
    """Builds the exported C file with the driver above and runs it on the entry's inputs: (outputs,
    predictions, what the driver printed: the first input's class name)."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on PATH")
    work = tmp_path / "c"
    work.mkdir()
    shutil.copy(entry["c"], work / "student.c")
    header = entry["c"].with_suffix(".h")
    # The .c includes its header by the name it was exported with.
    shutil.copy(header, work / header.name)
    shutil.copy(header, work / "student.h")
    (work / "driver.c").write_text(DRIVER)
    subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", "student.c", "-o", "student.o"],
                   cwd=work, check=True, capture_output=True, text=True)
    subprocess.run([cc, "-O2", "driver.c", "student.o", "-o", "driver", "-lm"], cwd=work, check=True, capture_output=True, text=True)
    inputs = entry["inputs"]
    (work / "inputs.bin").write_bytes(np.ascontiguousarray(inputs, dtype=np.float32).tobytes())
    run = subprocess.run(["./driver", "inputs.bin", "outputs.bin", str(len(inputs))], cwd=work, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    raw = (work / "outputs.bin").read_bytes()
    classes = entry["reference"].shape[1]
    outputs = np.frombuffer(raw[: 4 * classes * len(inputs)], dtype=np.float32).reshape(len(inputs), classes)
    return outputs, np.frombuffer(raw[4 * classes * len(inputs):], dtype=np.int32), run.stdout.strip()


@pytest.mark.parametrize("name", INT8_STUDENTS + ["tabular"])
def test_int8_c_source_is_identical_to_distillkit(int8_students, name, tmp_path):
    entry = int8_students[name]
    source = entry["c"].read_text()
    assert "static const signed char" in source and "dk_linear_int8" in source and "malloc" not in source
    outputs, predicted, _ = compile_and_run(entry, tmp_path)
    reference = entry["reference"]
    differing = int((outputs.view(np.uint32) != reference.view(np.uint32)).any(axis=1).sum())
    print(f"int8 C {name}: {len(outputs) - differing}/{len(outputs)} rows bit-identical to DistillKit's int8 path")
    assert differing == 0, f"{name}: {differing} of {len(outputs)} rows differ; largest difference {np.abs(outputs - reference).max()}"
    assert (predicted == reference.argmax(1)).all()


def litert_interpreter(path, reference_kernels):
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed (pip install ai-edge-litert)")
    if reference_kernels:
        return interpreter_module.Interpreter(model_path=str(path),
                                              experimental_op_resolver_type=interpreter_module.OpResolverType.BUILTIN_REF)
    return interpreter_module.Interpreter(model_path=str(path))


def litert_int8_run(entry, reference_kernels, file="tflite"):
    """LiteRT's outputs on the entry's inputs and, for integer logits, the logits tensor's type, scale and zero point."""
    x = entry["inputs"]
    if x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    interpreter = litert_interpreter(entry[file], reference_kernels)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x.shape), strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    logits = [t for t in interpreter.get_tensor_details() if t["name"] == "logits.quantized"]
    if file == "tflite_float_logits":
        assert not logits
        return output, None, None, None
    assert len(logits) == 1
    parameters = logits[0]["quantization_parameters"]
    return output, logits[0]["dtype"], float(parameters["scales"][0]), int(parameters["zero_points"][0])


def kernels_name(reference_kernels):
    return "reference" if reference_kernels else "default"


def assert_near_ties(name, got, reference, minimum, label):
    """Predictions of `got` against DistillKit's: logits within 1% of their scale, every differing prediction a
    near-tie (DistillKit's two best logits no further apart than twice the largest logit difference), and at
    least `minimum` of them agreeing. Prints the agreement and how close the differing ones were."""
    agree = got.argmax(1) == reference.argmax(1)
    difference = np.abs(got - reference)
    ordered = np.sort(reference, axis=1)
    margin = ordered[:, -1] - ordered[:, -2]
    print(f"{label} {name}: predictions agree on {agree.mean():.2%} of {len(got)}; max |logit difference| {difference.max():.3g} "
          f"(logits up to {np.abs(reference).max():.3g}), {(difference > 1e-4).mean():.3%} of logits beyond 1e-4; DistillKit's "
          f"top-two margins where they differ: {np.round(margin[~agree], 5).tolist()}")
    # The int8 layers before the last round differently now and then (a hidden value one step off moves the
    # logits a little): the logits stay within 1% of their scale, a differing prediction is a near-tie.
    assert difference.max() <= 0.01 * max(1.0, float(np.abs(reference).max())), f"{name}: logits differ by up to {difference.max()}"
    assert (margin[~agree] <= 2 * difference.max()).all(), f"{name}: a differing prediction that is not a near-tie"
    assert agree.mean() >= minimum, f"{name}: predictions agree on {agree.mean():.2%}"


@pytest.mark.parametrize("reference_kernels", [False, True], ids=["default-kernels", "reference-kernels"])
@pytest.mark.parametrize("name", INT8_STUDENTS + ["tabular"])
def test_int8_litert_agrees_with_distillkit(int8_students, name, reference_kernels):
    entry = int8_students[name]
    got, dtype, step, zero_point = litert_int8_run(entry, reference_kernels)
    reference = entry["reference"]
    assert got.dtype == np.float32 and got.shape == reference.shape
    # int16 logits, zero point 0, a step that no logit the last layer can produce exceeds 32,767 times: none saturates.
    assert dtype == np.int16 and zero_point == 0
    assert np.abs(reference).max() < 32767 * step
    print(f"int16 logits step {step:.4g}: DistillKit's largest logit is {np.abs(reference).max() / step:.0f} steps")
    # The default kernels requantise as DistillKit does up to the biases' rounding; the reference kernels also
    # round twice (a fixed-point multiply, then a shift), so more hidden values land a step off.
    assert_near_ties(name, got, reference, 0.99 if reference_kernels else 0.995,
                     f"int8 LiteRT int16 logits ({kernels_name(reference_kernels)} kernels)")


@pytest.mark.parametrize("reference_kernels", [False, True], ids=["default-kernels", "reference-kernels"])
@pytest.mark.parametrize("name", INT8_STUDENTS + ["tabular"])
def test_int8_litert_with_int8_logits_agrees_with_distillkit(int8_students, name, reference_kernels):
    entry = int8_students[name]
    got, dtype, step, zero_point = litert_int8_run(entry, reference_kernels, file="tflite_int8_logits")
    reference = entry["reference"]
    assert got.dtype == np.float32 and got.shape == reference.shape and dtype == np.int8
    low, high = step * (-128 - zero_point), step * (127 - zero_point)
    inside = (reference >= low - step / 2) & (reference <= high + step / 2)
    steps = np.abs(got - reference) / step
    agree = got.argmax(1) == reference.argmax(1)
    ordered = np.sort(reference, axis=1)
    margin = (ordered[:, -1] - ordered[:, -2]) / step
    top = np.sort(got, axis=1)
    tie = top[:, -1] == top[:, -2]
    print(f"int8 LiteRT int8 logits {name} ({kernels_name(reference_kernels)} kernels): predictions agree on {agree.mean():.2%} "
          f"of {len(got)} ({(~agree & tie).sum()} of {(~agree).sum()} differing are int8 ties); logits within the int8 range: max "
          f"|difference| {steps[inside].max():.2f} steps of {step:.4g}, mean {steps[inside].mean():.3f}, {(steps[inside] > 1.0001).mean():.3%} "
          f"beyond one step; {(~inside).sum()} logits outside the range (max {steps.max():.1f} steps)")
    assert steps[inside].max() <= 2.0001, f"{name}: logits inside the int8 range differ by up to {steps[inside].max():.2f} steps of {step}"
    np.testing.assert_allclose(got[~inside], np.clip(reference[~inside], low, high), atol=1.0001 * step)
    assert (tie[~agree]).all() and (margin[~agree] < 2).all(), f"{name}: a differing prediction that is not a near-tie"
    assert agree.mean() >= 0.97, f"{name}: predictions agree on {agree.mean():.2%}"


@pytest.mark.parametrize("reference_kernels", [False, True], ids=["default-kernels", "reference-kernels"])
@pytest.mark.parametrize("name", INT8_STUDENTS + ["tabular"])
def test_int8_litert_with_float_logits_agrees_with_distillkit(int8_students, name, reference_kernels):
    entry = int8_students[name]
    got, _, _, _ = litert_int8_run(entry, reference_kernels, file="tflite_float_logits")
    assert_near_ties(name, got, entry["reference"], 0.99, f"int8 LiteRT float logits ({kernels_name(reference_kernels)} kernels)")


def test_int8_tflite_is_fully_integer_and_inspectable(int8_students):
    entry = int8_students["lenet5"]
    interpreter = litert_interpreter(entry["tflite"], reference_kernels=False)
    input_details, output_details = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert input_details["dtype"] == np.float32 and output_details["dtype"] == np.float32
    assert list(input_details["shape_signature"]) == [-1, 28, 28, 1]
    tensors = {t["name"]: t for t in interpreter.get_tensor_details()}
    weights = [t for name, t in tensors.items() if name.endswith(".weight")]
    assert len(weights) == 5 and all(t["dtype"] == np.int8 for t in weights)
    for t in weights:
        q = t["quantization_parameters"]
        assert len(q["scales"]) == t["shape"][0] and q["quantized_dimension"] == 0 and not q["zero_points"].any()
    biases = {name: t for name, t in tensors.items() if name.endswith(".bias")}
    assert [t["dtype"] for t in biases.values()] == [np.int32] * 4 + [np.int64]   # the last layer's: 16x8
    # Every activation is an integer: int8 between layers, the last layer's input widened to int16 by CAST.
    activations = [t for name, t in tensors.items() if name not in biases and not name.endswith((".weight", ".shape"))]
    assert {t["name"] for t in activations if t["dtype"] == np.float32} == {"input", "output"}
    assert {t["name"] for t in activations if t["dtype"] == np.int16} == {"l7.int16", "logits.quantized"}
    report = entry["report"]
    assert report["int8"] and report["operators"]["QUANTIZE"] == 1 and report["operators"]["DEQUANTIZE"] == 1 and report["operators"]["CAST"] == 1
    assert report["operators"]["CONV_2D"] == 2 and report["operators"]["FULLY_CONNECTED"] == 3 and "logits stored as int16" in report["notes"][0]

    summary = json.loads(distill("inspect", entry["tflite"], "--json").stdout)
    assert summary["parameters"] == report["params"]
    by_name = {q["tensor"]: q for q in summary["quantization"]}
    quantized_input = by_name["input.quantized"]
    assert quantized_input["type"] == "int8" and quantized_input["scales"][0] == pytest.approx(tensors["input.quantized"]["quantization_parameters"]["scales"][0])
    assert quantized_input["zero_points"][0] == int(tensors["input.quantized"]["quantization_parameters"]["zero_points"][0])
    conv = by_name["l0.weight"]
    assert conv["axis"] == 0 and conv["constant"] and len(conv["scales"]) == conv["shape"][0] and set(conv["zero_points"]) == {0}
    text = distill("inspect", entry["tflite"]).stdout
    assert "quantization (real = scale · (q − zero point))" in text and "per-channel (axis 0)" in text and "logits.quantized int16" in text
    assert "logits.quantized int8" in distill("inspect", entry["tflite_int8_logits"]).stdout


def test_int8_tflite_options_and_float_models_refuse_them(int8_students, students, tmp_path):
    both = distill("export", int8_students["cnn-tiny"]["model"], "--tflite", tmp_path / "a.tflite", "--float-logits",
                   "--calibration", "fashion-mnist", check=False)
    assert both.returncode != 0 and "need none" in both.stderr and not (tmp_path / "a.tflite").exists()
    float_model = distill("export", students["cnn-tiny"]["model"], "--tflite", tmp_path / "b.tflite", "--calibration", "fashion-mnist", check=False)
    assert float_model.returncode != 0 and "is a float model" in float_model.stderr and not (tmp_path / "b.tflite").exists()
    corrupt = tmp_path / "corrupt.int8.tflite"
    data = bytearray(int8_students["cnn-tiny"]["tflite"].read_bytes())
    corrupt.write_bytes(bytes(data[: len(data) // 2]))
    result = distill("inspect", corrupt, check=False)
    assert result.returncode != 0 and "corrupt.int8.tflite" in result.stderr and "Fatal error" not in result.stderr
