"""Run folders under concurrent and interrupted use, with the real binary: a second run writing the same folder
is refused while the first holds it (and accepted once it is gone, even after kill -9), and temporary files a
killed run left behind are removed when the folder is used again."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distillcli import distill, distill_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from craft import blobs_npz  # noqa: E402


def wait_for(path, seconds=60):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_second_run_on_the_same_folder_is_refused_until_the_first_is_gone(tmp_path):
    (tmp_path / "d.npz").write_bytes(blobs_npz(rows=3000))
    run = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "d.npz"), "--model", "mlp:4-32-3", "--output", str(run), "--quiet"]
    first = subprocess.Popen([str(distill_binary()), *args, "--epochs", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(run / "config.json")
        second = distill(*args, "--epochs", "1", check=False, timeout=120)
        assert second.returncode == 1, second.stderr
        assert f"another run is writing this folder (process {first.pid})" in second.stderr
        assert str(run) in second.stderr
        assert first.poll() is None, "the first run must be untouched"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel released the lock with the killed process: the folder can be resumed at once.
    resumed = subprocess.Popen([str(distill_binary()), "train", "--resume", str(run), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        assert resumed.poll() is None, resumed.stderr.read().decode()
    finally:
        resumed.send_signal(signal.SIGKILL)
        resumed.wait()


def test_leftover_temporary_files_are_removed_on_resume(tmp_path):
    (tmp_path / "d.npz").write_bytes(blobs_npz(rows=200))
    run = tmp_path / "run"
    distill("train", "--data", tmp_path / "d.npz", "--model", "mlp:4-8-3", "--epochs", "2", "--output", run, "--quiet")
    leftovers = [run / ".checkpoint.safetensors.tmp-99999", run / ".metrics.jsonl.tmp-12345"]
    for path in leftovers:
        path.write_bytes(b"half-written by a killed run")
    keep = run / "notes.tmp-1"  # not one of DistillKit's temporary names: kept
    keep.write_text("mine")
    distill("train", "--resume", run, "--quiet")
    assert not any(p.exists() for p in leftovers)
    assert keep.exists()
    assert (run / "best.safetensors").exists()


def test_a_run_folder_stands_for_its_best_model(tmp_path):
    import json
    (tmp_path / "d.npz").write_bytes(blobs_npz(rows=200))
    run = tmp_path / "run"
    distill("train", "--data", tmp_path / "d.npz", "--model", "mlp:4-8-3", "--epochs", "2", "--output", run, "--quiet")
    by_folder = json.loads(distill("eval", run, "--data", tmp_path / "d.npz", "--json").stdout)
    by_file = json.loads(distill("eval", run / "best.safetensors", "--data", tmp_path / "d.npz", "--json").stdout)
    assert by_folder == by_file
    assert "mlp:4-8-3" in distill("inspect", run).stdout
    distill("export", run, "--onnx", tmp_path / "m.onnx")
    distill("kd", "--teacher", run, "--data", tmp_path / "d.npz", "--student", "mlp:4-4-3", "--epochs", "1", "--quiet")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = distill("eval", empty, "--data", tmp_path / "d.npz", check=False)
    assert refused.returncode == 1 and str(empty) in refused.stderr and "folder" in refused.stderr, refused.stderr
