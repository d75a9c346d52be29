"""scikit-learn teachers for DistillKit: two tree ensembles on scikit-learn's bundled digits.

Writes, into this folder (examples/digits/):
  train.csv, test.csv           64 pixel columns p0..p63 (values 0-16) and `label`; a fixed,
                                stratified 75/25 split (random_state 0): 1347 and 450 rows
  gbc.onnx, rf.onnx             GradientBoostingClassifier and RandomForestClassifier, exported
                                with skl2onnx (zipmap disabled: outputs `label` and a [N, 10]
                                `probabilities` tensor)
  gbc_train_probs.npy,          each ensemble's predict_proba for the training rows, in file
  rf_train_probs.npy            order: `distill kd --teacher-outputs F --teacher-outputs-kind probs`
  sklearn_results.json          test accuracy of each ensemble (sklearn and onnxruntime) and its
                                onnxruntime time per sample (batch 1 median; batch 450 mean)

Run (Python with scikit-learn, skl2onnx and onnxruntime):
    pip install scikit-learn skl2onnx onnxruntime
    python examples/digits/make_digits.py
    python examples/digits/make_digits.py --time-only   # time the committed .onnx files, write nothing
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent


def write_csv(path, x, y):
    header = ",".join(f"p{i}" for i in range(x.shape[1])) + ",label"
    rows = [",".join(str(int(v)) for v in row) + f",{int(label)}" for row, label in zip(x, y)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


def onnx_timing(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    one = x[:1].astype(np.float32)
    for _ in range(50):
        session.run(None, {name: one})
    times = []
    for i in range(1000):
        row = x[i % len(x): i % len(x) + 1].astype(np.float32)
        t0 = time.perf_counter()
        session.run(None, {name: row})
        times.append(time.perf_counter() - t0)
    batch = x.astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(20):
        outputs = session.run(None, {name: batch})
    batch_time = (time.perf_counter() - t0) / 20 / len(x)
    return float(np.median(times)) * 1e6, batch_time * 1e6, outputs


def main():
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    write_csv(HERE / "train.csv", x_train, y_train)
    write_csv(HERE / "test.csv", x_test, y_test)

    models = {
        "gbc": GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0),
        "rf": RandomForestClassifier(n_estimators=25, max_depth=8, random_state=0),
    }
    results = {"train_rows": len(x_train), "test_rows": len(x_test), "onnxruntime": ort.__version__}
    for name, model in models.items():
        model.fit(x_train, y_train)
        sklearn_accuracy = float(model.score(x_test, y_test))
        onnx_model = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 64]))],
                                     options={id(model): {"zipmap": False}}, target_opset=15)
        path = HERE / f"{name}.onnx"
        path.write_bytes(onnx_model.SerializeToString())
        np.save(HERE / f"{name}_train_probs.npy", model.predict_proba(x_train).astype(np.float32))
        latency_us, batch_us, outputs = onnx_timing(path, x_test)
        onnx_accuracy = float((outputs[0] == y_test).mean())
        results[name] = {
            "model": type(model).__name__, "sklearn_test_accuracy": sklearn_accuracy,
            "onnx_test_accuracy": onnx_accuracy, "onnx_bytes": path.stat().st_size,
            "onnxruntime_batch1_median_us": latency_us, "onnxruntime_batch450_us_per_sample": batch_us,
        }
        print(f"{name}: sklearn test accuracy {sklearn_accuracy:.4f}, onnx {onnx_accuracy:.4f}, "
              f"{path.stat().st_size} bytes, onnxruntime batch-1 {latency_us:.1f} µs, batch-450 {batch_us:.2f} µs/sample")
    (HERE / "sklearn_results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def time_only():
    """onnxruntime's time per sample for the committed ensembles on test.csv (nothing rewritten)."""
    x_test = np.loadtxt(HERE / "test.csv", delimiter=",", skiprows=1, dtype=np.float32)[:, :-1]
    for name in ["gbc", "rf"]:
        latency_us, batch_us, _ = onnx_timing(HERE / f"{name}.onnx", x_test)
        print(f"{name}: onnxruntime {ort.__version__} batch-1 {latency_us:.2f} µs, batch-450 {batch_us:.2f} µs/sample")


if __name__ == "__main__":
    time_only() if "--time-only" in sys.argv else main()
