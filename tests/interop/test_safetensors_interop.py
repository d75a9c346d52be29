"""Safetensors interchange between DistillKit and Python's `safetensors` package, both ways.

How it runs (from the repository root, after `swift build`):

    pytest tests/interop

The module fixture writes `from_python.safetensors` with `safetensors.numpy.save_file`, then runs

    swift test --scratch-path $DISTILL_SCRATCH --filter SafetensorsInteropTests

with DISTILL_INTEROP_DIR (a fresh temporary folder) and DISTILL_INTEROP_READ (the Python-written
file) in the environment. The Swift suite (Tests/DistillTensorTests/SafetensorsTests.swift) then
  * writes DISTILL_INTEROP_DIR/weights.safetensors, which the tests below read back with
    `safetensors.numpy.load_file` and compare exactly, and
  * loads DISTILL_INTEROP_READ, checks its values with #expect, and leaves DISTILL_INTEROP_DIR/read-ok
    as proof the check ran; a mismatch fails `swift test` and so this fixture.
Without those variables the Swift interop tests are skipped, so a plain `swift test` is unaffected.

Environment:
  DISTILL_SCRATCH      SwiftPM scratch path to reuse (default: .build), so CI's build is not repeated.
  DISTILL_SKIP_BUILD   set to 1 to pass --skip-build (the test bundle must already be built).
  DISTILL_PACKAGE_DIR  package root to run `swift test` in (default: this repository).
  DISTILL_INTEROP_FILE path of a weights.safetensors that DistillKit already wrote: the Swift-to-Python
                       check reads it and `swift` is not run (the Python-to-Swift check is skipped).
Needs numpy and safetensors (skipped when missing) and `swift` on PATH (skipped when missing).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
st_numpy = pytest.importorskip("safetensors.numpy")
safetensors = pytest.importorskip("safetensors")

REPO = Path(__file__).resolve().parents[2]

# What Python writes; Tests/DistillTensorTests/SafetensorsTests.swift (readFromPython) expects these.
FROM_PYTHON = {
    "f32": np.array([[1.5, -2.0], [0.25, 8.0]], dtype=np.float32),
    "f64": np.array([0.0, 0.1, 0.2, 0.3, 0.4], dtype=np.float64),
    "f16": np.array([1.0, 0.5, -3.0, 65504.0], dtype=np.float16),
    "scalar": np.array(42.0, dtype=np.float32),
    "empty": np.zeros((0, 3), dtype=np.float32),
}

# What DistillKit writes (interopTensorsForPython in SafetensorsTests.swift).
FROM_DISTILLKIT = {
    "a": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32),
    "b": np.arange(10, dtype=np.float32) * np.float32(0.5),
}


@pytest.fixture(scope="module")
def interop(tmp_path_factory):
    """Runs the Swift side once; returns (folder, path of the DistillKit-written file, whether Swift read Python's file)."""
    given = os.environ.get("DISTILL_INTEROP_FILE")
    if given:
        return None, Path(given), False
    swift = shutil.which("swift")
    if swift is None:
        pytest.skip("swift is not on PATH (set DISTILL_INTEROP_FILE to check an existing file instead)")
    folder = tmp_path_factory.mktemp("interop")
    python_file = folder / "from_python.safetensors"
    st_numpy.save_file(FROM_PYTHON, str(python_file), metadata={"written_by": "python"})
    command = [swift, "test", "--scratch-path", os.environ.get("DISTILL_SCRATCH", ".build"),
               "--filter", "SafetensorsInteropTests"]
    if os.environ.get("DISTILL_SKIP_BUILD") == "1":
        command.append("--skip-build")
    env = dict(os.environ, DISTILL_INTEROP_DIR=str(folder), DISTILL_INTEROP_READ=str(python_file))
    result = subprocess.run(command, cwd=os.environ.get("DISTILL_PACKAGE_DIR", str(REPO)), env=env,
                            capture_output=True, text=True, timeout=1800)
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{output}"
    return folder, folder / "weights.safetensors", True


def test_python_reads_distillkit_file(interop):
    _, path, _ = interop
    assert path.exists(), f"DistillKit wrote no {path}"
    tensors = st_numpy.load_file(str(path))
    assert sorted(tensors) == sorted(FROM_DISTILLKIT)
    for name, expected in FROM_DISTILLKIT.items():
        assert tensors[name].dtype == np.float32, name
        assert tensors[name].shape == expected.shape, name
        np.testing.assert_array_equal(tensors[name], expected, err_msg=name)
    with safetensors.safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"written_by": "DistillKit"}


def test_distillkit_file_layout(interop):
    _, path, _ = interop
    raw = path.read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    assert (8 + header_length) % 8 == 0, "data section should start 8-byte aligned"
    assert len(raw) == 8 + header_length + 4 * (6 + 10)


def test_distillkit_reads_python_file(interop):
    folder, _, swift_ran = interop
    if not swift_ran:
        pytest.skip("DISTILL_INTEROP_FILE given: swift was not run")
    assert (folder / "read-ok").exists(), "the Swift readFromPython test did not run (filtered out or skipped?)"
