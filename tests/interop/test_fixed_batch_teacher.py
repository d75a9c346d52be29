"""Teachers exported with a fixed batch size (`[1, C, H, W]` from older exporters, `[64, ...]`) run on any number
of rows: DistillKit feeds them chunks of their batch size, the last one padded and trimmed, with no option to set."""
import json

import pytest

np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from distillcli import blobs, distill  # noqa: E402


def fixed_batch_model(batch):
    rng = np.random.default_rng(batch)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "V"], ["y"])]
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [4, 8], rng.normal(size=32).tolist()),
             helper.make_tensor("b", TensorProto.FLOAT, [8], rng.normal(size=8).tolist()),
             helper.make_tensor("V", TensorProto.FLOAT, [8, 3], rng.normal(size=24).tolist())]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("batch", [1, 64])
def test_fixed_batch_teacher_runs_in_chunks(batch, tmp_path):
    (x, y), (xt, yt) = blobs(300, 7), blobs(130, 8)
    np.savez(tmp_path / "d.npz", x_train=x.astype(np.float32), y_train=y, x_test=xt.astype(np.float32), y_test=yt)
    (tmp_path / "t.onnx").write_bytes(fixed_batch_model(batch))
    session = ort.InferenceSession(str(tmp_path / "t.onnx"))
    def reference(rows):
        rows = rows.astype(np.float32)
        padded = np.concatenate([rows, np.repeat(rows[-1:], -len(rows) % batch, axis=0)])
        return np.concatenate([session.run(None, {"x": padded[i:i + batch]})[0] for i in range(0, len(padded), batch)])[:len(rows)]
    distill("cache-teacher", "--teacher", tmp_path / "t.onnx", "--data", tmp_path / "d.npz", "--out", tmp_path / "t.npy")
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), reference(x), atol=1e-5, rtol=1e-5)
    result = distill("kd", "--teacher", tmp_path / "t.onnx", "--data", tmp_path / "d.npz", "--student", "mlp:4-8-3", "--epochs", "1", "--json", "--quiet")
    teacher = [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]
    assert teacher["accuracy"] == float((reference(xt).argmax(1) == yt).mean())
