"""A tabular ONNX teacher sees exactly the rows the user gave, inside `distill kd` as in `cache-teacher`.

The teacher is a tree ensemble whose thresholds are the data's own values (`x0 < v` with `x0 == v` on the
boundary), so a change of one unit in the last place to any value flips its class. The student is
trained on standardised rows; the teacher must not get them back by un-standardising (which rounds).
Checked: the teacher accuracy `kd` reports equals onnxruntime's on the same file exactly, and a student
distilled from the teacher in the loop is bit-identical to one distilled from the teacher's cached outputs.
"""
import json

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from distillcli import distill, write_csv  # noqa: E402

CLASSES = 9


def boundary_tree(values):
    """TreeEnsembleClassifier: class k for values[k] <= x0 < values[k+1] (BRANCH_LT on the data's own values)."""
    k = len(values)
    node_ids, modes, thresholds, true_ids, false_ids = [], [], [], [], []
    class_nodes, class_ids = [], []
    # Node 2j is the test `x0 < values[j+1]`; its true branch is leaf 2j+1 (class j); node 2(k-1) is the last leaf.
    for j in range(k - 1):
        node_ids += [2 * j, 2 * j + 1]
        modes += ["BRANCH_LT", "LEAF"]
        thresholds += [float(values[j + 1]), 0.0]
        true_ids += [2 * j + 1, 0]
        false_ids += [2 * j + 2, 0]
        class_nodes.append(2 * j + 1)
        class_ids.append(j)
    node_ids.append(2 * (k - 1)); modes.append("LEAF"); thresholds.append(0.0); true_ids.append(0); false_ids.append(0)
    class_nodes.append(2 * (k - 1)); class_ids.append(k - 1)
    n = len(node_ids)
    node = helper.make_node(
        "TreeEnsembleClassifier", ["x"], ["label", "probabilities"], domain="ai.onnx.ml",
        nodes_treeids=[0] * n, nodes_nodeids=node_ids, nodes_featureids=[0] * n, nodes_values=thresholds,
        nodes_modes=modes, nodes_truenodeids=true_ids, nodes_falsenodeids=false_ids,
        class_treeids=[0] * len(class_nodes), class_nodeids=class_nodes, class_ids=class_ids,
        class_weights=[1.0] * len(class_nodes), classlabels_int64s=list(range(k)), post_transform="NONE")
    graph = helper.make_graph([node], "tree", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, k])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    return model.SerializeToString()



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tabular-teacher")
    rng = np.random.default_rng(5)
    values = np.sort(rng.normal(3.7, 2.3, size=CLASSES).astype(np.float32))
    def part(n):
        k = rng.integers(0, CLASSES, size=n)
        x = rng.normal(0, 1, size=(n, 4)).astype(np.float32)
        x[:, 0] = values[k]
        return x, k
    (x, y), (xt, yt) = part(600), part(300)
    write_csv(folder / "train.csv", x, y, label="y")
    write_csv(folder / "test.csv", xt, yt, label="y")
    (folder / "tree.onnx").write_bytes(boundary_tree(values))
    # The rows are such that standardising and un-standardising in float32 moves some x0 off its boundary.
    mean, std = np.float32(x[:, 0].astype(np.float64).mean()), np.float32(x[:, 0].astype(np.float64).std())
    assert ((((x[:, 0] - mean) * (np.float32(1) / std)) * std + mean) != x[:, 0]).any()
    session = ort.InferenceSession(str(folder / "tree.onnx"))
    probabilities = lambda rows: session.run(["probabilities"], {"x": rows})[0]
    return folder, probabilities(x), float((probabilities(xt).argmax(1) == yt).mean())


def test_kd_reports_the_teacher_accuracy_onnxruntime_gives(files):
    folder, _, onnxruntime_accuracy = files
    result = distill("kd", "--teacher", folder / "tree.onnx", "--data", folder / "train.csv", "--test-data", folder / "test.csv",
                     "--label", "y", "--student", f"mlp:4-16-{CLASSES}", "--epochs", "1", "--json", "--quiet")
    teacher = [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]
    assert onnxruntime_accuracy == 1.0
    assert teacher["accuracy"] == onnxruntime_accuracy


def test_cache_teacher_writes_what_onnxruntime_computes(files, tmp_path):
    folder, train_probabilities, _ = files
    distill("cache-teacher", "--teacher", folder / "tree.onnx", "--data", folder / "train.csv", "--label", "y", "--out", tmp_path / "t.npy")
    logits = np.load(tmp_path / "t.npy")
    assert (logits.argmax(1) == train_probabilities.argmax(1)).all()
    np.testing.assert_allclose(np.exp(logits), train_probabilities, atol=1e-6)


def test_teacher_in_the_loop_equals_its_cached_outputs_bit_for_bit(files, tmp_path):
    folder, _, _ = files
    distill("cache-teacher", "--teacher", folder / "tree.onnx", "--data", folder / "train.csv", "--label", "y", "--out", tmp_path / "t.npy")
    common = ["--data", folder / "train.csv", "--test-data", folder / "test.csv", "--label", "y", "--student", f"mlp:4-16-{CLASSES}",
              "--epochs", "3", "--temperature", "2", "--alpha", "0.5", "--quiet"]
    distill("kd", "--teacher", folder / "tree.onnx", *common, "--output", tmp_path / "live")
    distill("kd", "--teacher-outputs", tmp_path / "t.npy", *common, "--output", tmp_path / "cached")
    live = (tmp_path / "live" / "student.safetensors").read_bytes()
    cached = (tmp_path / "cached" / "student.safetensors").read_bytes()
    from safetensors.numpy import load
    a, b = load(live), load(cached)
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name
