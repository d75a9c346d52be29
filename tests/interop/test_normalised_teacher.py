"""An ONNX image teacher trained on normalised inputs, `(x − mean) / std` per channel as torchvision's models
are: DistillKit feeds it what it expects when told (`--teacher-input-mean/--teacher-input-std`, or the model's
`distillkit.input_mean/input_std` metadata), and warns loudly when it is not told and the teacher scores near
chance. The teacher is a small CNN whose scores are per-channel means, so its accuracy depends on the normalisation alone.
"""
import json

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from distillcli import distill  # noqa: E402

MEAN, STD = np.array([0.9, 0.1, 0.5], np.float32), np.array([0.05, 0.3, 0.2], np.float32)
FLAGS = ["--teacher-input-mean", "0.9,0.1,0.5", "--teacher-input-std", "0.05,0.3,0.2"]


def teacher(metadata=None):
    """A CNN as torchvision exports one (Conv → GlobalAveragePool → Flatten → Gemm), whose class scores are the
    per-channel means of its normalised input: right only when fed `(x − mean) / std`."""
    eye = np.eye(3, dtype=np.float32)
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["c"], kernel_shape=[1, 1]), helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "W", "b"], ["logits"], transB=1)]
    inits = [helper.make_tensor("K", TensorProto.FLOAT, [3, 3, 1, 1], eye.flatten().tolist()), helper.make_tensor("kb", TensorProto.FLOAT, [3], [0, 0, 0]),
             helper.make_tensor("W", TensorProto.FLOAT, [3, 3], eye.flatten().tolist()), helper.make_tensor("b", TensorProto.FLOAT, [3], [0, 0, 0])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("normalised")
    rng = np.random.default_rng(3)
    def part(n):
        y = rng.integers(0, 3, size=n)
        x = MEAN[None, :, None, None] + STD[None, :, None, None] * rng.normal(0, 0.5, size=(n, 3, 4, 4))
        x[np.arange(n), y] += 1.2 * STD[y][:, None, None]
        return np.clip(x, 0, 1).astype(np.float32), y
    (x, y), (xt, yt) = part(300), part(200)
    np.savez(folder / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    (folder / "t.onnx").write_bytes(teacher())
    (folder / "t-meta.onnx").write_bytes(teacher({"distillkit.input_mean": "0.9,0.1,0.5", "distillkit.input_std": "0.05,0.3,0.2"}))
    session = ort.InferenceSession(str(folder / "t.onnx"))
    normalise = lambda a: ((a - MEAN[None, :, None, None]) / STD[None, :, None, None]).astype(np.float32)
    accuracy = float((session.run(None, {"x": normalise(xt)})[0].argmax(1) == yt).mean())
    return folder, accuracy, session.run(None, {"x": normalise(x)})[0]


def kd(folder, teacher_file, *extra):
    result = distill("kd", "--teacher", folder / teacher_file, "--data", folder / "d.npz", "--student", "mlp:48-16-3",
                     "--epochs", "1", "--json", "--quiet", *extra)
    return [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]["accuracy"], result.stderr


def test_without_normalisation_the_teacher_is_near_chance_and_a_warning_says_why(files):
    folder, accuracy, _ = files
    raw, stderr = kd(folder, "t.onnx")
    assert accuracy > 0.9 and raw < 0.5
    assert "WARNING" in stderr and "near chance" in stderr and "--teacher-input-mean" in stderr


@pytest.mark.parametrize("teacher_file, extra", [("t.onnx", FLAGS), ("t-meta.onnx", [])], ids=["options", "metadata"])
def test_the_normalised_teacher_scores_what_onnxruntime_gives(files, teacher_file, extra):
    folder, accuracy, _ = files
    normalised, stderr = kd(folder, teacher_file, *extra)
    assert normalised == accuracy
    assert "WARNING" not in stderr


def test_cache_teacher_normalises_too(files, tmp_path):
    folder, _, logits = files
    distill("cache-teacher", "--teacher", folder / "t.onnx", "--data", folder / "d.npz", "--out", tmp_path / "t.npy", *FLAGS)
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), logits, atol=1e-5)


def test_a_distillkit_teacher_refuses_the_options(files, tmp_path):
    folder, _, _ = files
    distill("train", "--data", folder / "d.npz", "--model", "mlp:48-8-3", "--epochs", "1", "--output", tmp_path / "m", "--quiet")
    result = distill("kd", "--teacher", tmp_path / "m" / "best.safetensors", "--data", folder / "d.npz", *FLAGS, check=False)
    assert result.returncode == 1 and "are for ONNX teachers" in result.stderr
