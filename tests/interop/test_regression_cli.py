"""Regression students from the command line: `distill train --target`, `distill kd --target` from a
teacher file, and `distill eval --target`, which must score a saved model exactly as training did.

Environment: DISTILL_BINARY or DISTILL_SCRATCH, as in distillcli.py.
"""
import json

import pytest

np = pytest.importorskip("numpy")
from distillcli import distill  # noqa: E402


def write(path, rows, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(rows, 3))
    y = 2 * x[:, 0] - x[:, 1] ** 2 + 0.5 * x[:, 2] + rng.normal(0, 0.1, rows)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="a,b,c,y", comments="", fmt="%.5f")


def test_eval_scores_a_saved_regression_model_as_training_did(tmp_path):
    write(tmp_path / "train.csv", 400, 0)
    write(tmp_path / "test.csv", 100, 1)
    data = ["--data", tmp_path / "train.csv", "--test-data", tmp_path / "test.csv", "--target", "y", "--json", "--quiet"]
    teacher = json.loads(distill("train", *data, "--model", "mlp:3-32-1", "--epochs", "30",
                                 "--output", tmp_path / "teacher").stdout.strip().splitlines()[-1])
    student = json.loads(distill("kd", *data, "--teacher", tmp_path / "teacher" / "student.safetensors",
                                 "--student", "mlp:3-8-1", "--epochs", "30",
                                 "--output", tmp_path / "student").stdout.strip().splitlines()[-1])
    for run, trained in [("teacher", teacher), ("student", student)]:
        scored = json.loads(distill("eval", tmp_path / run / "student.safetensors", "--data", tmp_path / "test.csv",
                                    "--target", "y", "--json").stdout)
        assert scored["count"] == 100
        assert scored["rmse"] == pytest.approx(trained["rmse"], rel=1e-6), (run, scored, trained)
        assert scored["r2"] == pytest.approx(trained["r2"], rel=1e-6, abs=1e-9)
    assert teacher["r2"] > 0.5, teacher
    wrong = distill("eval", tmp_path / "teacher" / "student.safetensors", "--data", tmp_path / "test.csv",
                    "--label", "y", check=False)
    assert wrong.returncode != 0 and "is a regression model" in wrong.stderr and "--target" in wrong.stderr, wrong.stderr


def test_kd_from_an_onnx_regressor(tmp_path):
    """`distill kd --target` with a scikit-learn RandomForestRegressor exported by skl2onnx: the teacher's test
    errors DistillKit reports are onnxruntime's on the same rows, and the student learns from it."""
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx")
    ort = pytest.importorskip("onnxruntime")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestRegressor

    write(tmp_path / "train.csv", 400, 0)
    write(tmp_path / "test.csv", 100, 1)
    train = np.loadtxt(tmp_path / "train.csv", delimiter=",", skiprows=1, dtype=np.float32)
    test = np.loadtxt(tmp_path / "test.csv", delimiter=",", skiprows=1, dtype=np.float32)
    forest = RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0).fit(train[:, :3], train[:, 3])
    onnx_model = skl2onnx.convert_sklearn(forest, initial_types=[("x", FloatTensorType([None, 3]))], target_opset=17)
    (tmp_path / "rfr.onnx").write_bytes(onnx_model.SerializeToString())
    predictions = ort.InferenceSession(str(tmp_path / "rfr.onnx")).run(None, {"x": test[:, :3]})[0][:, 0]
    rmse = float(np.sqrt(np.mean((predictions.astype(np.float64) - test[:, 3]) ** 2)))

    result = json.loads(distill("kd", "--teacher", tmp_path / "rfr.onnx", "--data", tmp_path / "train.csv", "--test-data", tmp_path / "test.csv",
                                "--target", "y", "--student", "mlp:3-32-1", "--epochs", "40", "--alpha", "0.5", "--json", "--quiet").stdout)
    assert result["teacher"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    assert result["r2"] > 0.5, result
