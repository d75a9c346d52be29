"""Teachers whose graphs use control flow (If, Loop, Scan) load and give onnxruntime's outputs.

skl2onnx exports KNeighborsClassifier (uniform or distance weights) with a Scan computing the
pairwise distances; it ends in probabilities, so `cache-teacher` must write their logarithms, equal
to onnxruntime's within 1e-5, and `kd` must report onnxruntime's teacher accuracy exactly. Its
graph ends in a Div by its own row sums, which the output-kind check reads as probabilities, as it
does a hand-written softmax (test_teacher_output_kind.py): no option needed. skl2onnx emits no If or Loop for these
models, so a small hand-built graph covers those: an If choosing a Gemm, a Loop summing it, both
reading the main graph's values from inside their sub-graphs.
"""
import json

import pytest

np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")
from onnx import TensorProto, helper  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402

from distillcli import blob_csvs, distill  # noqa: E402


def neighbour_models():
    from sklearn.neighbors import KNeighborsClassifier
    return {
        "knn": KNeighborsClassifier(n_neighbors=5),
        "knn-distance": KNeighborsClassifier(n_neighbors=7, weights="distance"),
    }


def operators(graph):
    """Every operator in `graph` and its sub-graphs."""
    found = set()
    for node in graph.node:
        found.add(node.op_type)
        for attribute in node.attribute:
            if attribute.HasField("g"):
                found |= operators(attribute.g)
    return found


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("control-flow")
    return (folder, *blob_csvs(folder, seeds=(7, 8)))


def check_teacher(path, folder, x, xt, yt, tmp_path, expected_outputs, predictions, kind=()):
    """cache-teacher equals `expected_outputs(x)`, and kd reports the accuracy of `predictions(xt)`.
    `kind` is extra options (--teacher-output) for both."""
    distill("cache-teacher", "--teacher", path, "--data", folder / "train.csv", "--label", "label", "--out", tmp_path / "t.npy", *kind)
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), expected_outputs(x), atol=1e-5, rtol=1e-5)
    result = distill("kd", "--teacher", path, "--data", folder / "train.csv", "--test-data", folder / "test.csv", "--label", "label",
                     "--student", "mlp:4-8-3", "--epochs", "1", "--json", "--output", tmp_path / "run", *kind)
    teacher = [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]
    assert teacher["accuracy"] == float((predictions(xt) == yt).mean())


@pytest.mark.parametrize("name", list(neighbour_models()))
def test_neighbour_classifiers_with_scan_match_onnxruntime(data, name, tmp_path):
    folder, x, y, xt, yt = data
    model = neighbour_models()[name].fit(x, y)
    exported = skl2onnx.convert_sklearn(model, initial_types=[("x", FloatTensorType([None, 4]))], target_opset=17,
                                        options={id(model): {"zipmap": False}})
    assert "Scan" in operators(exported.graph)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(exported.SerializeToString())
    session = ort.InferenceSession(str(path))
    probabilities = lambda rows: session.run(None, {"x": rows})[1]
    check_teacher(path, folder, x, xt, yt, tmp_path,
                  expected_outputs=lambda rows: np.log(np.clip(probabilities(rows), 1e-12, None)),
                  predictions=lambda rows: probabilities(rows).argmax(1))


def if_and_loop_teacher():
    """logits = 3 · (x·W + b): an If (condition true) whose branch reads x and W from the main
    graph, then a Loop of three iterations adding the branch's result to an accumulator."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 3)).astype(np.float32)
    then_branch = helper.make_graph([helper.make_node("Gemm", ["x", "W", "b"], ["z_then"])], "then", [],
                                    [helper.make_tensor_value_info("z_then", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph([helper.make_node("Neg", ["b"], ["z_else"])], "else", [],
                                    [helper.make_tensor_value_info("z_else", TensorProto.FLOAT, None)])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc", "z"], ["acc_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("If", ["use_gemm"], ["z"], then_branch=then_branch, else_branch=else_branch),
             helper.make_node("Mul", ["z", "zero"], ["acc0"]),
             helper.make_node("Loop", ["trips", "", "acc0"], ["logits"], body=body)]
    initializers = [helper.make_tensor("W", TensorProto.FLOAT, [4, 3], weights.flatten().tolist()),
                    helper.make_tensor("b", TensorProto.FLOAT, [3], [0.1, -0.2, 0.3]),
                    helper.make_tensor("use_gemm", TensorProto.BOOL, [], [True]),
                    helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                    helper.make_tensor("trips", TensorProto.INT64, [], [3])]
    graph = helper.make_graph(nodes, "if-loop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_if_and_loop_teacher_matches_onnxruntime(data, tmp_path):
    folder, x, y, xt, yt = data
    path = tmp_path / "if-loop.onnx"
    path.write_bytes(if_and_loop_teacher().SerializeToString())
    session = ort.InferenceSession(str(path))
    logits = lambda rows: session.run(None, {"x": rows})[0]
    check_teacher(path, folder, x, xt, yt, tmp_path, expected_outputs=logits, predictions=lambda rows: logits(rows).argmax(1))
