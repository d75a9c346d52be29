"""What an ONNX teacher's output holds, decided from the graph and confirmed on the first batch.

scikit-learn classifiers exported by skl2onnx end in probabilities (LinearClassifier(SOFTMAX) → Normalizer,
tree ensembles); `cache-teacher` must write their logarithms (logits of the same distribution), equal to
onnxruntime's within 1e-5, and `kd` must report the teacher accuracy onnxruntime gives. A softmax written out
by hand (Exp → ReduceSum → Div) is a row normalisation, read as probabilities; a graph that ends in arithmetic
(logits, by the graph) but gives probabilities is a contradiction, an error naming both, which
`--teacher-output probs` settles.
"""
import json

import pytest

np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")
from onnx import TensorProto, helper  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402

from distillcli import blobs, distill, write_csv  # noqa: E402



def sklearn_models():
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return {
        "logistic": LogisticRegression(max_iter=500),
        "scaler-logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        "forest": RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0),
        "boosting": GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("output-kind")
    (x, y), (xt, yt) = blobs(300, 4), blobs(200, 5)
    x[:, 3] = x[:, 3] * 50 + 100  # a feature on another scale, so that the scaler matters
    xt[:, 3] = xt[:, 3] * 50 + 100
    write_csv(folder / "train.csv", x, y, columns=["a", "b", "c", "d"])
    write_csv(folder / "test.csv", xt, yt, columns=["a", "b", "c", "d"])
    return folder, x.astype(np.float32), xt.astype(np.float32), yt


@pytest.mark.parametrize("name", list(sklearn_models()))
def test_sklearn_probabilities_become_logits(data, name, tmp_path):
    folder, x, xt, yt = data
    model = sklearn_models()[name].fit(x, blobs(300, 4)[1])
    exported = skl2onnx.convert_sklearn(model, initial_types=[("x", FloatTensorType([None, 4]))], target_opset=17,
                                        options={id(model): {"zipmap": False}} if name != "scaler-logistic" else {id(model.steps[-1][1]): {"zipmap": False}})
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(exported.SerializeToString())
    session = ort.InferenceSession(str(path))
    probabilities = lambda rows: session.run(None, {"x": rows})[1]
    distill("cache-teacher", "--teacher", path, "--data", folder / "train.csv", "--label", "label", "--out", tmp_path / "t.npy")
    expected = np.log(np.clip(probabilities(x), 1e-12, None))
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), expected, atol=1e-5, rtol=1e-5)
    result = distill("kd", "--teacher", path, "--data", folder / "train.csv", "--test-data", folder / "test.csv", "--label", "label",
                     "--student", "mlp:4-8-3", "--epochs", "1", "--json", "--output", tmp_path / "run")
    teacher = [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]
    assert teacher["accuracy"] == float((probabilities(xt).argmax(1) == yt).mean())
    assert "holds probabilities" in result.stderr, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "probabilities" in summary["teacher_outputs"][0]


def softmax_model(then, then_op="MatMul"):
    """A softmax written out by hand (Gemm → Exp → ReduceSum → Div): a row normalisation, probabilities. With a
    final MatMul by the identity the graph ends in a layer (logits, by the graph) while the numbers are still
    probabilities; with a final Add of 0 it ends in arithmetic, which leaves the kind to the numbers."""
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"]), helper.make_node("Exp", ["z"], ["e"]),
             helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1), helper.make_node("Div", ["e", "s"], ["p" if not then else "q"])]
    if then:
        nodes.append(helper.make_node(then_op, ["q", "eye" if then_op == "MatMul" else "zero"], ["p"]))
    rng = np.random.default_rng(0)
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [4, 3], (0.01 * rng.normal(size=12)).tolist()),
             helper.make_tensor("axes", TensorProto.INT64, [1], [1]), helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("eye", TensorProto.FLOAT, [3, 3], np.eye(3).ravel().tolist())]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_handwritten_softmax_is_read_as_probabilities(data, tmp_path):
    folder, x, _, _ = data
    (tmp_path / "p.onnx").write_bytes(softmax_model(then=False))
    distill("cache-teacher", "--teacher", tmp_path / "p.onnx", "--data", folder / "train.csv", "--label", "label", "--out", tmp_path / "t.npy")
    p = ort.InferenceSession(str(tmp_path / "p.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), np.log(p), atol=1e-5, rtol=1e-5)


def test_arithmetic_at_the_end_leaves_the_kind_to_the_numbers(data, tmp_path):
    folder, x, _, _ = data
    (tmp_path / "p.onnx").write_bytes(softmax_model(then=True, then_op="Add"))
    distill("cache-teacher", "--teacher", tmp_path / "p.onnx", "--data", folder / "train.csv", "--label", "label", "--out", tmp_path / "t.npy")
    p = ort.InferenceSession(str(tmp_path / "p.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), np.log(p), atol=1e-5, rtol=1e-5)


def stock_classifiers():
    """scikit-learn classifiers whose exported probabilities end in arithmetic: GaussianNB (Exp), a binary
    MLPClassifier and SGDClassifier (Concat of [1 − p, p]), AdaBoost (Div), CalibratedClassifierCV (Sum)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.linear_model import SGDClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import LinearSVC
    return {"gaussian-nb": GaussianNB(), "mlp": MLPClassifier((16,), max_iter=800, random_state=0),
            "sgd-log": SGDClassifier(loss="log_loss", random_state=0), "adaboost": AdaBoostClassifier(n_estimators=10, random_state=0),
            "calibrated": CalibratedClassifierCV(LinearSVC(), cv=3)}


@pytest.mark.parametrize("name", list(stock_classifiers()))
def test_stock_classifiers_ending_in_arithmetic(data, name, tmp_path):
    import warnings
    folder, x, xt, yt = data
    y = blobs(300, 4)[1]
    binary_train, binary_test = tmp_path / "train.csv", tmp_path / "test.csv"
    write_csv(binary_train, x, (y == 0).astype(int), columns=["a", "b", "c", "d"])
    write_csv(binary_test, xt, (yt == 0).astype(int), columns=["a", "b", "c", "d"])
    model = stock_classifiers()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, (y == 0).astype(int))
    exported = skl2onnx.convert_sklearn(model, initial_types=[("x", FloatTensorType([None, 4]))], target_opset=17,
                                        options={id(model): {"zipmap": False}})
    (tmp_path / "m.onnx").write_bytes(exported.SerializeToString())
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    distill("cache-teacher", "--teacher", tmp_path / "m.onnx", "--data", binary_train, "--label", "label", "--out", tmp_path / "t.npy")
    np.testing.assert_allclose(np.exp(np.load(tmp_path / "t.npy")), session.run(None, {"x": x})[1], atol=1e-5)
    evaluated = distill("eval", tmp_path / "m.onnx", "--data", binary_test, "--label", "label", "--json")
    assert json.loads(evaluated.stdout)["accuracy"] == float((session.run(None, {"x": xt})[1].argmax(1) == (yt == 0)).mean())


def test_a_contradiction_between_graph_and_numbers_is_an_error(data, tmp_path):
    folder, x, _, _ = data
    (tmp_path / "p.onnx").write_bytes(softmax_model(then=True))
    refused = distill("cache-teacher", "--teacher", tmp_path / "p.onnx", "--data", folder / "train.csv", "--label", "label",
                      "--out", tmp_path / "t.npy", check=False)
    assert refused.returncode == 1
    assert "the graph ends in MatMul" in refused.stderr and "probabilities" in refused.stderr and "--teacher-output" in refused.stderr
    distill("cache-teacher", "--teacher", tmp_path / "p.onnx", "--data", folder / "train.csv", "--label", "label",
            "--out", tmp_path / "t.npy", "--teacher-output", "probs")
    p = ort.InferenceSession(str(tmp_path / "p.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), np.log(p), atol=1e-5, rtol=1e-5)
    wrong = distill("cache-teacher", "--teacher", tmp_path / "p.onnx", "--data", folder / "train.csv", "--label", "label",
                    "--out", tmp_path / "t.npy", "--teacher-output", "logprobs", check=False)
    assert wrong.returncode == 1 and "--teacher-output logprobs was given" in wrong.stderr


def boosting_models():
    """LightGBM and XGBoost classifiers with their onnxmltools converters (skipped where not installed)."""
    onnxmltools = pytest.importorskip("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType as MLFloat
    models = {}
    try:
        import lightgbm
        models["lightgbm"] = (lightgbm.LGBMClassifier(n_estimators=15, num_leaves=8, verbose=-1, random_state=0),
                              lambda m: onnxmltools.convert_lightgbm(m, initial_types=[("x", MLFloat([None, 4]))], zipmap=False, target_opset=15))
    except ImportError:
        pass
    try:
        import xgboost
        models["xgboost"] = (xgboost.XGBClassifier(n_estimators=15, max_depth=3, random_state=0),
                             lambda m: onnxmltools.convert_xgboost(m, initial_types=[("x", MLFloat([None, 4]))], target_opset=15))
    except ImportError:
        pass
    return models


@pytest.mark.parametrize("name", ["lightgbm", "xgboost"])
def test_boosting_probabilities_become_logits(data, name, tmp_path):
    models = boosting_models()
    if name not in models:
        pytest.skip(f"{name} is not installed")
    folder, x, xt, yt = data
    model, convert = models[name]
    model.fit(x, blobs(300, 4)[1])
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(convert(model).SerializeToString())
    session = ort.InferenceSession(str(path))
    names = [o.name for o in session.get_outputs()]
    probabilities = lambda rows: dict(zip(names, session.run(None, {"x": rows})))[names[1]]
    distill("cache-teacher", "--teacher", path, "--data", folder / "train.csv", "--label", "label", "--out", tmp_path / "t.npy")
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), np.log(np.clip(probabilities(x), 1e-12, None)), atol=1e-5, rtol=1e-4)
    result = distill("kd", "--teacher", path, "--data", folder / "train.csv", "--test-data", folder / "test.csv", "--label", "label",
                     "--student", "mlp:4-8-3", "--epochs", "1", "--json", "--quiet")
    teacher = [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]
    assert teacher["accuracy"] == float((probabilities(xt).argmax(1) == yt).mean())


def sigmoid_head(weights, bias):
    """x [N, 4] → Gemm → Sigmoid: a Keras-style binary head (one column, the positive class) or a
    one-vs-rest head (one column per class), each value its own probability."""
    classes = weights.shape[1]
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"]), helper.make_node("Sigmoid", ["z"], ["p"])]
    inits = [helper.make_tensor("W", TensorProto.FLOAT, list(weights.shape), weights.astype(np.float32).ravel().tolist()),
             helper.make_tensor("b", TensorProto.FLOAT, [classes], bias.astype(np.float32).ravel().tolist())]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_sigmoid_heads_become_logits(data, tmp_path):
    """Sigmoid outputs are probabilities, not logits: a one-vs-rest head's become log p (softmax: p
    normalised), a binary head's one column p becomes [log(1 − p), log p]; kd reports the teacher
    accuracy onnxruntime gives (argmax of p, or p > 0.5)."""
    from sklearn.linear_model import LogisticRegression
    folder, x, xt, yt = data
    y = blobs(300, 4)[1]
    ovr = LogisticRegression(max_iter=500).fit(x, y)
    (tmp_path / "ovr.onnx").write_bytes(sigmoid_head(ovr.coef_.T, ovr.intercept_))
    distill("cache-teacher", "--teacher", tmp_path / "ovr.onnx", "--data", folder / "train.csv", "--label", "label", "--out", tmp_path / "t.npy")
    p = ort.InferenceSession(str(tmp_path / "ovr.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), np.log(np.clip(p, 1e-12, None)), atol=1e-5, rtol=1e-5)

    binary_train, binary_test = folder / "binary-train.csv", folder / "binary-test.csv"
    write_csv(binary_train, x, (y == 0).astype(int), columns=["a", "b", "c", "d"])
    write_csv(binary_test, xt, (yt == 0).astype(int), columns=["a", "b", "c", "d"])
    binary = LogisticRegression(max_iter=500).fit(x, y == 0)
    (tmp_path / "binary.onnx").write_bytes(sigmoid_head(binary.coef_.T, binary.intercept_))
    session = ort.InferenceSession(str(tmp_path / "binary.onnx"))
    distill("cache-teacher", "--teacher", tmp_path / "binary.onnx", "--data", binary_train, "--label", "label", "--out", tmp_path / "b.npy")
    q = np.clip(session.run(None, {"x": x})[0][:, 0].astype(np.float64), 1e-12, 1 - 1e-7)
    # Compared as probabilities: float32 sigmoids of two runtimes differ by ulps, which are whole
    # percents of log p where p is 1e-5.
    np.testing.assert_allclose(np.exp(np.load(tmp_path / "b.npy")), np.stack([1 - q, q], axis=1), atol=1e-6)
    result = distill("kd", "--teacher", tmp_path / "binary.onnx", "--data", binary_train, "--test-data", binary_test, "--label", "label",
                     "--student", "mlp:4-8-2", "--epochs", "1", "--json", "--output", tmp_path / "run")
    teacher = [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]
    expected = float(((session.run(None, {"x": xt})[0][:, 0] > 0.5) == (yt == 0)).mean())
    assert teacher["accuracy"] == expected and expected > 0.8, (teacher["accuracy"], expected)
    assert "sigmoid" in result.stderr, result.stderr


def test_class_labels_that_are_not_0_to_k_are_placed(data, tmp_path):
    """scikit-learn trained on labels 1, 2, 3 gives three columns; DistillKit numbers the data's classes by
    value (0...3: four). Each of the model's classes is read as the data's class of the same label (class 0,
    which it never saw, gets no probability), so `cache-teacher` equals predict_proba on classes 1...3, `eval`
    scores the model as scikit-learn does, and `kd` trains a four-class student from it. String labels are
    placed by name the same way; a label that names none of the data's classes is refused, naming them."""
    from sklearn.linear_model import LogisticRegression
    folder, x, _, _ = data
    y = blobs(300, 4)[1] + 1
    write_csv(tmp_path / "train.csv", x, y, columns=["a", "b", "c", "d"])

    def export(model, name):
        exported = skl2onnx.convert_sklearn(model, initial_types=[("x", FloatTensorType([None, 4]))], target_opset=17,
                                            options={id(model): {"zipmap": False}})
        (tmp_path / name).write_bytes(exported.SerializeToString())
        return tmp_path / name

    model = LogisticRegression(max_iter=500).fit(x, y)
    path = export(model, "m.onnx")
    cached = distill("cache-teacher", "--teacher", path, "--data", tmp_path / "train.csv", "--label", "label", "--out", tmp_path / "t.npy")
    assert "its classes 1, 2, 3" in cached.stderr, cached.stderr
    logits = np.load(tmp_path / "t.npy")
    assert logits.shape == (300, 4)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities[:, 1:], model.predict_proba(x), atol=1e-5)
    assert probabilities[:, 0].max() < 1e-9
    scored = json.loads(distill("eval", path, "--data", tmp_path / "train.csv", "--label", "label", "--json").stdout)
    assert abs(scored["accuracy"] - model.score(x, y)) < 1e-9, (scored["accuracy"], model.score(x, y))
    distill("kd", "--teacher", path, "--data", tmp_path / "train.csv", "--label", "label", "--student", "mlp:4-8-4",
            "--epochs", "1", "--quiet", "--output", tmp_path / "kd")

    # Names: the teacher knows ant, bee, cat; the data also has dog (sorted: ant, bee, cat, dog).
    names = np.array(["ant", "bee", "cat"])[blobs(300, 4)[1]]
    named = LogisticRegression(max_iter=500).fit(x, names)
    with_dog = names.copy()
    with_dog[:5] = "dog"
    write_csv(tmp_path / "named.csv", x, with_dog, columns=["a", "b", "c", "d"])
    distill("cache-teacher", "--teacher", export(named, "named.onnx"), "--data", tmp_path / "named.csv", "--label", "label",
            "--out", tmp_path / "n.npy")
    logits = np.load(tmp_path / "n.npy")
    assert logits.shape == (300, 4) and (logits[:, :3].argmax(axis=1) == named.predict_proba(x).argmax(axis=1)).all()
    assert (logits[:, 3] < logits[:, :3].min(axis=1)).all()

    # Labels 5, 6, 7 name none of the data's classes 0...3: refused, naming them.
    other = LogisticRegression(max_iter=500).fit(x, blobs(300, 4)[1] + 5)
    refused = distill("cache-teacher", "--teacher", export(other, "other.onnx"), "--data", tmp_path / "train.csv", "--label", "label",
                      "--out", tmp_path / "o.npy", check=False)
    assert refused.returncode == 1
    assert "the model's classes are 5, 6, 7" in refused.stderr, refused.stderr
