"""`.npz` archives between NumPy and DistillKit's own ZIP reader and writer.

NumPy writes a small three-class dataset with `np.savez` (stored entries, ZIP64 local headers) and
`np.savez_compressed` (deflated); `distill train` must read both and agree on the result. Then
`distill cache-teacher --out logits.npz` writes an archive that `np.load` must read, holding
exactly the logits the same teacher writes to `.npy`. A damaged archive must be refused with the
file named.

Environment: DISTILL_BINARY or DISTILL_SCRATCH, as in distillcli.py.
"""
import json
import re

import pytest

np = pytest.importorskip("numpy")
from distillcli import blobs, distill  # noqa: E402


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("npz")
    x, y = blobs(600, 1)
    xt, yt = blobs(200, 2)
    arrays = dict(x_train=x, y_train=y, x_test=xt, y_test=yt)
    np.savez(folder / "stored.npz", **arrays)
    np.savez_compressed(folder / "deflated.npz", **arrays)
    return folder


def train(data, out):
    result = distill("train", "--data", data, "--model", "mlp:4-16-3", "--epochs", "30", "--seed", "5",
                     "--output", out, "--json", "--quiet")
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_reads_stored_and_deflated_numpy_archives_alike(archives):
    stored = train(archives / "stored.npz", archives / "run-stored")
    deflated = train(archives / "deflated.npz", archives / "run-deflated")
    assert stored["accuracy"] == deflated["accuracy"]
    assert stored["accuracy"] > 0.8, stored


def test_numpy_reads_what_distill_writes(archives):
    teacher = archives / "run-teacher"
    train(archives / "deflated.npz", teacher)
    model = next(teacher.glob("*.safetensors"))
    distill("cache-teacher", "--teacher", model, "--data", archives / "deflated.npz", "--out", archives / "logits.npz")
    distill("cache-teacher", "--teacher", model, "--data", archives / "deflated.npz", "--out", archives / "logits.npy")
    with np.load(archives / "logits.npz") as archive:
        assert archive.files == ["logits"]
        logits = archive["logits"]
    assert logits.dtype == np.float32 and logits.shape == (600, 3)
    np.testing.assert_array_equal(logits, np.load(archives / "logits.npy"))


def test_a_damaged_archive_names_the_file_and_entry(archives, tmp_path):
    data = bytearray((archives / "deflated.npz").read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the deflated x_train or y_train data
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(data))
    result = distill("train", "--data", damaged, "--model", "mlp:4-16-3", "--epochs", "1",
                     "--output", tmp_path / "run", check=False)
    assert result.returncode != 0
    assert re.search(r"damaged\.npz\[\w+\.npy\]", result.stderr), result.stderr
    assert not (tmp_path / "run").exists()
