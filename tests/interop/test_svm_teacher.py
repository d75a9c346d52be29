"""scikit-learn support-vector machines as teachers: SVMClassifier and SVMRegressor exported by skl2onnx.

`cache-teacher` must write what onnxruntime computes (log-probabilities for SVC(probability=True), whose
output holds probabilities; the decision scores otherwise, as per-class scores whose argmax is the SVM's
label) within 1e-5, `kd` must report the teacher accuracy onnxruntime gives, and an SVR teacher's test RMSE must be
onnxruntime's. Covers every kernel (RBF, POLY, LINEAR, SIGMOID), NuSVC, binary and 3-class problems and
a 10-class one on 64 features (scikit-learn's bundled digits).

Environment: DISTILL_BINARY or DISTILL_SCRATCH, as in distillcli.py.
"""
import json
import warnings

import pytest

np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402

from distillcli import blob_csvs, distill, write_csv  # noqa: E402


def export(model, features, path, classifier=True):
    with warnings.catch_warnings():  # SVC(probability=True) is deprecated in scikit-learn 1.9
        warnings.simplefilter("ignore", FutureWarning)
        onx = skl2onnx.convert_sklearn(model, initial_types=[("x", FloatTensorType([None, features]))], target_opset=17,
                                       options={id(model): {"zipmap": False}} if classifier else None)
    path.write_bytes(onx.SerializeToString())
    return ort.InferenceSession(str(path))


def classifiers():
    from sklearn.svm import SVC, NuSVC
    return {
        "svc-rbf": SVC(),
        "svc-rbf-probability": SVC(probability=True, random_state=0),
        "svc-poly": SVC(kernel="poly", degree=3, coef0=1.0),
        "svc-linear": SVC(kernel="linear"),
        "svc-sigmoid": SVC(kernel="sigmoid", gamma=0.05, coef0=0.5),
        "nusvc": NuSVC(nu=0.3),
        "nusvc-probability": NuSVC(nu=0.3, probability=True, random_state=0),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("svm")
    x, y, xt, yt = blob_csvs(folder)
    write_csv(folder / "train-binary.csv", x, (y == 0).astype(int))
    write_csv(folder / "test-binary.csv", xt, (yt == 0).astype(int))
    return folder, x.astype(np.float32), y, xt.astype(np.float32), yt


def check_teacher(session, model, train, test, x, xt, yt, classes, tmp_path):
    """cache-teacher's values and kd's teacher accuracy against onnxruntime's. A binary SVC without
    probabilities ends in the SVMClassifier's decisions (−f, f), where f > 0 means class 0: its
    logits are (f, −f), and the teacher's accuracy is that of onnxruntime's label output."""
    labels = lambda rows: session.run(None, {"x": rows})[0]
    scores = lambda rows: session.run(None, {"x": rows})[1]
    probabilities = model.get_params().get("probability") is True
    binary_decisions = classes == 2 and not probabilities
    distill("cache-teacher", "--teacher", tmp_path / "t.onnx", "--data", train, "--label", "label", "--out", tmp_path / "t.npy")
    expected = np.log(np.clip(scores(x), 1e-12, None)) if probabilities else scores(x)[:, ::-1] if binary_decisions else scores(x)
    cached = np.load(tmp_path / "t.npy")
    assert cached.shape == expected.shape
    np.testing.assert_allclose(cached, expected, atol=1e-5, rtol=1e-5)
    if binary_decisions:
        assert (cached.argmax(1) == labels(x)).all()
    result = distill("kd", "--teacher", tmp_path / "t.onnx", "--data", train, "--test-data", test, "--label", "label",
                     "--student", f"mlp:{x.shape[1]}-8-{classes}", "--epochs", "1", "--json", "--output", tmp_path / "run")
    teacher = [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]
    # (With three classes or more, skl2onnx's one-vs-rest scores break ties in votes by confidence, its label by index.)
    predicted = labels(xt) if binary_decisions else scores(xt).argmax(1)
    assert teacher["accuracy"] == float((predicted == yt).mean())


@pytest.mark.parametrize("classes", [3, 4])
def test_one_vs_one_decisions_become_class_scores(classes, tmp_path):
    """SVC(decision_function_shape="ovo") exports the K(K−1)/2 pairwise decisions themselves: DistillKit
    turns them into scikit-learn's one-vs-rest decision function (votes + scaled confidence), whose
    argmax is onnxruntime's label."""
    from sklearn.datasets import make_classification
    from sklearn.svm import SVC
    x, y = make_classification(n_samples=400, n_features=8, n_informative=5, n_classes=classes, n_clusters_per_class=1, random_state=0)
    x = x.astype(np.float32)
    write_csv(tmp_path / "train.csv", x[:300], y[:300])
    write_csv(tmp_path / "test.csv", x[300:], y[300:])
    model = SVC(decision_function_shape="ovo").fit(x[:300], y[:300])
    session = export(model, 8, tmp_path / "t.onnx")
    assert session.run(None, {"x": x[:1]})[1].shape == (1, classes * (classes - 1) // 2)
    distill("cache-teacher", "--teacher", tmp_path / "t.onnx", "--data", tmp_path / "train.csv", "--label", "label", "--out", tmp_path / "t.npy")
    model.decision_function_shape = "ovr"
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), model.decision_function(x[:300]), atol=1e-4)
    result = distill("kd", "--teacher", tmp_path / "t.onnx", "--data", tmp_path / "train.csv", "--test-data", tmp_path / "test.csv",
                     "--label", "label", "--student", f"mlp:8-8-{classes}", "--epochs", "1", "--json", "--output", tmp_path / "run")
    teacher = [m for m in json.loads(result.stdout)["models"] if m["role"] == "teacher"][0]
    assert teacher["accuracy"] == float((session.run(None, {"x": x[300:]})[0] == y[300:]).mean())
    assert "SVM decision values" in result.stderr


@pytest.mark.parametrize("name", list(classifiers()))
@pytest.mark.parametrize("classes", [3, 2])
def test_svc_teacher_matches_onnxruntime(data, name, classes, tmp_path):
    folder, x, y, xt, yt = data
    labels, test_labels = (y, yt) if classes == 3 else ((y == 0).astype(int), (yt == 0).astype(int))
    suffix = "" if classes == 3 else "-binary"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = classifiers()[name].fit(x, labels)
    session = export(model, 4, tmp_path / "t.onnx")
    check_teacher(session, model, folder / f"train{suffix}.csv", folder / f"test{suffix}.csv", x, xt, test_labels, classes, tmp_path)


@pytest.mark.parametrize("probability", [True, False])
def test_ten_class_digits_svc(probability, tmp_path):
    """45 class pairs, 64 features, several hundred support vectors."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    train, test = slice(0, 1200), slice(1200, None)
    write_csv(tmp_path / "train.csv", x[train], y[train])
    write_csv(tmp_path / "test.csv", x[test], y[test])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = SVC(gamma=0.001, probability=probability, random_state=0).fit(x[train], y[train])
    session = export(model, 64, tmp_path / "t.onnx")
    check_teacher(session, model, tmp_path / "train.csv", tmp_path / "test.csv", x[train], x[test], y[test], 10, tmp_path)


def regression_data(rows, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(rows, 3)).astype(np.float32)
    y = (2 * x[:, 0] - x[:, 1] ** 2 + 0.5 * x[:, 2] + rng.normal(0, 0.1, rows)).astype(np.float32)
    return x, y


def regressors():
    from sklearn.svm import SVR, NuSVR
    return {"svr-rbf": SVR(C=3.0), "svr-linear": SVR(kernel="linear"), "svr-poly": SVR(kernel="poly", degree=2, coef0=1.0),
            "nusvr": NuSVR(nu=0.4)}


@pytest.mark.parametrize("name", list(regressors()))
def test_svr_teacher_rmse_matches_onnxruntime(name, tmp_path):
    (x, y), (xt, yt) = regression_data(300, 0), regression_data(100, 1)
    write_csv(tmp_path / "train.csv", x, y, label="y")
    write_csv(tmp_path / "test.csv", xt, yt, label="y")
    model = regressors()[name].fit(x, y)
    session = export(model, 3, tmp_path / "svr.onnx", classifier=False)
    predictions = session.run(None, {"x": xt})[0][:, 0]
    rmse = float(np.sqrt(np.mean((predictions.astype(np.float64) - yt.astype(np.float64)) ** 2)))
    result = json.loads(distill("kd", "--teacher", tmp_path / "svr.onnx", "--data", tmp_path / "train.csv", "--test-data", tmp_path / "test.csv",
                                "--target", "y", "--student", "mlp:3-16-1", "--epochs", "5", "--json", "--quiet").stdout)
    assert result["teacher"]["rmse"] == pytest.approx(rmse, rel=1e-5)

