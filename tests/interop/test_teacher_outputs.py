"""Distilling from teacher outputs written by numpy (`distill kd --teacher-outputs`).

numpy writes a tabular dataset (three Gaussian blobs: class c raises feature c) and the logits of
a teacher DistillKit never sees: `logits = 2 * x` (class c's score is feature c), as `.npy`,
`.npz` and `.csv`. The `distill` binary distills an MLP from each file, and from the softmax of the
logits as probabilities, and must reach the teacher's own test accuracy within a few points. Bad
files (NaN, wrong row count, probabilities that do not sum to 1) must be refused with the file
and row named, and nothing trained.

Run from the repository root after building (`swift build --scratch-path .build-six`):

    pytest tests/interop/test_teacher_outputs.py

Environment: DISTILL_BINARY or DISTILL_SCRATCH, as in distillcli.py.
Needs numpy (skipped when missing) and a built binary (skipped when missing).
"""

import json
import subprocess

import pytest

np = pytest.importorskip("numpy")
from distillcli import REPO, blobs, distill_binary, write_csv  # noqa: E402



def teacher_logits(x):
    return (2 * x[:, :3]).astype(np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher-outputs")
    x, y = blobs(800, 1)
    xt, yt = blobs(400, 2)
    write_csv(folder / "train.csv", x, y)
    write_csv(folder / "test.csv", xt, yt)
    logits = teacher_logits(x)
    np.save(folder / "logits.npy", logits)
    np.savez(folder / "logits.npz", teacher=logits, extra=np.zeros(3))
    np.savetxt(folder / "logits.csv", logits, delimiter=",", header="a,b,c", comments="")
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.save(folder / "probs.npy", probs.astype(np.float64))
    teacher_accuracy = float((teacher_logits(xt).argmax(1) == yt).mean())
    return folder, teacher_accuracy


def kd(folder, *extra):
    command = [str(distill_binary()), "kd", "--data", str(folder / "train.csv"), "--test-data", str(folder / "test.csv"),
               "--label", "label", "--student", "mlp:4-16-3", "--epochs", "15", "--temperature", "2",
               "--alpha", "0.9", "--json", "--quiet", *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("file,extra", [
    ("logits.npy", []),
    ("logits.npz", ["--teacher-outputs-array", "teacher"]),
    ("logits.csv", []),
    ("probs.npy", ["--teacher-outputs-kind", "probs"]),
])
def test_distills_from_numpy_outputs(data, file, extra):
    folder, teacher_accuracy = data
    result = kd(folder, "--teacher-outputs", str(folder / file), *extra)
    assert result.returncode == 0, result.stderr
    accuracy = json.loads(result.stdout.strip().splitlines()[-1])["accuracy"]
    assert accuracy > teacher_accuracy - 0.04, (file, accuracy, teacher_accuracy)


def test_bad_outputs_are_refused(data, tmp_path):
    folder, _ = data
    logits = np.load(folder / "logits.npy")
    bad = logits.copy()
    bad[17, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "short.npy", logits[:-1])
    cases = {
        "nan.npy": ([], "row 17, column 2"),
        "short.npy": ([], "799 rows"),
    }
    for name, (extra, expected) in cases.items():
        out = tmp_path / ("run-" + name)
        result = kd(folder, "--teacher-outputs", str(tmp_path / name), "--output", str(out), *extra)
        assert result.returncode != 0
        assert name in result.stderr and expected in result.stderr, result.stderr
        assert not out.exists(), "nothing may be trained on bad data"
    result = kd(folder, "--teacher-outputs", str(folder / "logits.npy"), "--teacher-outputs-kind", "probs")
    assert result.returncode != 0 and "row 0, column 0: negative probability" in result.stderr, result.stderr
    probs = np.load(folder / "probs.npy")
    probs[5] *= 1.01
    np.save(tmp_path / "unnormalised.npy", probs)
    result = kd(folder, "--teacher-outputs", str(tmp_path / "unnormalised.npy"), "--teacher-outputs-kind", "probs")
    assert result.returncode != 0 and "row 5: probabilities sum to 1.01" in result.stderr, result.stderr
