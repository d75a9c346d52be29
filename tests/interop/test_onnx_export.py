"""ONNX export: DistillKit students written as ONNX give, in onnxruntime, DistillKit's own outputs to
1e-4 on real Fashion-MNIST images; and the CLI round trip: `distill export`, `distill inspect`,
`distill eval model.onnx` and `distill kd --teacher model.onnx`.

How it runs (from the repository root, after `swift build`):

    pytest tests/interop/test_onnx_export.py

The module fixture writes the first 256 Fashion-MNIST test images (pixel/255, [256, 1, 28, 28]) as
images.pb and the student specs as students.txt, then runs

    swift test --scratch-path $DISTILL_SCRATCH --filter ONNXInteropTests

with DISTILL_ONNX_INTEROP_DIR set. The Swift side (Tests/DistillONNXTests/InteropTests.swift) builds
each student with seeded weights and random batch-norm statistics, saves it (.safetensors), exports
it (.onnx) and writes the native model's logits on the images (.logits.pb).

The CLI tests run $DISTILL_SCRATCH/debug/distill (default .build), or $DISTILL_BINARY when set.

Environment: DISTILL_SCRATCH, DISTILL_SKIP_BUILD=1, DISTILL_PACKAGE_DIR, DISTILL_FASHION_MNIST (the
folder with t10k-images-idx3-ubyte.gz; default /usr/share/datasets/fashion-mnist). Needs numpy,
onnx and onnxruntime (skipped when missing).
"""

import gzip
import json
import os
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from distillcli import distill, run_onnx_interop_suite, swift_or_skip  # noqa: E402

STUDENTS = ["mlp:784-64-10", "cnn-tiny", "lenet5", "resnet8", "mobilenet-tiny"]
FASHION = Path(os.environ.get("DISTILL_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def fashion_images(count=256):
    path = FASHION / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"{path} is missing (apt-get install dataset-fashion-mnist)")
    with gzip.open(path) as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    return (data[: count * 784].reshape(count, 1, 28, 28).astype(np.float32) / 255).astype(np.float32)


def safe(spec):
    return spec.replace(":", "_")


def run_onnxruntime(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    swift_or_skip()
    folder = tmp_path_factory.mktemp("onnx_export")
    images = fashion_images()
    (folder / "images.pb").write_bytes(numpy_helper.from_array(images, "images").SerializeToString())
    (folder / "students.txt").write_text("\n".join(STUDENTS) + "\n")
    run_onnx_interop_suite(folder)
    return folder, images


@pytest.mark.parametrize("spec", STUDENTS)
def test_onnxruntime_matches_distillkit(exported, spec):
    folder, images = exported
    path = folder / f"{safe(spec)}.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    batch_axis = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param == "N", "the batch axis must be dynamic"
    want = numpy_helper.to_array(onnx.load_tensor(str(folder / f"{safe(spec)}.logits.pb")))
    got = run_onnxruntime(path, images)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=spec)
    # Any batch size: one image alone gives its row of the batch.
    np.testing.assert_allclose(run_onnxruntime(path, images[3:4]), want[3:4], rtol=1e-4, atol=1e-4)


def test_cli_export_inspect_and_opsets(exported, tmp_path):
    folder, images = exported
    want = numpy_helper.to_array(onnx.load_tensor(str(folder / "resnet8.logits.pb")))
    for opset in (13, 17, 20):
        out = tmp_path / f"resnet8_{opset}.onnx"
        result = distill("export", folder / "resnet8.safetensors", "--onnx", out, "--opset", opset)
        assert "outputs match the model" in result.stdout
        model = onnx.load(str(out))
        assert model.opset_import[0].version == opset
        np.testing.assert_allclose(run_onnxruntime(out, images), want, rtol=1e-4, atol=1e-4)
    inspected = json.loads(distill("inspect", tmp_path / "resnet8_17.onnx", "--json").stdout)
    native = json.loads(distill("inspect", folder / "resnet8.safetensors", "--json").stdout)
    assert inspected["flops"] == native["flops"] > 0
    assert inspected["operators"]["Conv"] == 9 and inspected["inputs"][0]["shape"] == "[N,1,28,28]"
    assert "FLOPs per example" in distill("inspect", folder / "resnet8.safetensors").stdout
    bad = distill("export", folder / "resnet8.safetensors", "--onnx", tmp_path / "x.onnx", "--opset", 5, check=False)
    assert bad.returncode != 0 and "opset" in bad.stderr


def test_cli_onnx_teacher_end_to_end(exported, tmp_path):
    """Train a small teacher, export it, evaluate the ONNX file, and distill a student from it."""
    run = tmp_path / "teacher_run"
    distill("train", "--model", "cnn-tiny", "--epochs", 1, "--train-limit", 2000, "--output", run, "--quiet")
    teacher = tmp_path / "teacher.onnx"
    distill("export", run / "student.safetensors", "--onnx", teacher)
    native = json.loads(distill("eval", run / "student.safetensors", "--json").stdout)
    via_onnx = json.loads(distill("eval", teacher, "--json").stdout)
    assert abs(native["accuracy"] - via_onnx["accuracy"]) < 1e-9 and via_onnx["accuracy"] > 0.3
    student = json.loads(distill("kd", "--teacher", teacher, "--student", "mlp:784-32-10", "--epochs", 1,
                                 "--train-limit", 2000, "--quiet", "--json").stdout)
    assert student["accuracy"] > 0.3
    # Feature distillation names the teacher's layers by ONNX value name (the exporter uses layer paths).
    distill("kd", "--teacher", teacher, "--student", "mlp:784-64-10", "--method", "fitnets", "--teacher-layer", "6",
            "--student-layer", "2", "--epochs", 1, "--train-limit", 500, "--quiet")


def test_cli_teacher_shape_mismatch_is_explained(tmp_path):
    """A teacher exported for flattened inputs: the error says what was given and what is expected."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(rng.standard_normal((10, 784)).astype(np.float32), "w")])
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = distill("kd", "--teacher", path, "--student", "mlp:784-32-10", "--epochs", 1, "--train-limit", 100, "--quiet", check=False)
    assert result.returncode != 0
    assert "[N,1,28,28] given, [N,784] expected" in result.stderr and "re-export" in result.stderr
    unsupported = tmp_path / "unsupported.onnx"
    graph = helper.make_graph([helper.make_node("NonMaxSuppression", ["x"], ["y"], name="boxes")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 784])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(unsupported))
    result = distill("eval", unsupported, check=False)
    assert result.returncode != 0 and "NonMaxSuppression (node 'boxes', ai.onnx opset 17): operator not implemented" in result.stderr
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    result = distill("inspect", corrupt, check=False)
    assert result.returncode != 0 and "corrupt.onnx" in result.stderr and "Fatal error" not in result.stderr


def test_cli_sklearn_teacher_on_a_table(tmp_path):
    """A scikit-learn GradientBoostingClassifier (skl2onnx, no ZipMap) evaluated and distilled from the CLI."""
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_digits
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    table = tmp_path / "digits.csv"
    rows = [",".join([f"p{i}" for i in range(64)] + ["label"])]
    rows += [",".join([str(int(v)) for v in row] + [str(int(label))]) for row, label in zip(x, y)]
    table.write_text("\n".join(rows) + "\n")
    model = GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0).fit(x, y)
    teacher = tmp_path / "gbc.onnx"
    teacher.write_bytes(skl2onnx.to_onnx(model, x[:1], options={id(model): {"zipmap": False}}).SerializeToString())
    evaluation = json.loads(distill("eval", teacher, "--data", table, "--label", "label", "--json").stdout)
    assert evaluation["accuracy"] > 0.9
    student = json.loads(distill("kd", "--teacher", teacher, "--data", table, "--label", "label", "--student", "mlp:64-32-10",
                                 "--epochs", 5, "--quiet", "--json").stdout)
    assert student["accuracy"] > 0.6
