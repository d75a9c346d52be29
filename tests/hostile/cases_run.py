"""Hostile run folders and data that cannot make a run: output paths in the way, damaged checkpoints and
metrics on --resume, empty training or test sets, NaN where a model or data must be finite."""
import json

import numpy as np

from corpus import Case
from craft import blobs_npz, model, npz, safetensors

DATA = {"d.npz": blobs_npz()}
TRAIN = ["train", "--data", "d.npz", "--model", "mlp:4-8-3", "--epochs", "2", "--quiet"]
CONFIG = {"data": "d.npz", "student": "mlp:4-8-3", "teachers": [], "losses": [{"ce": {"weight": 1}}], "epochs": 2, "batch_size": 16,
          "optimizer": "adam", "learning_rate": 0.001, "weight_decay": 0, "momentum": 0.9, "schedule": "constant", "warmup_epochs": 0,
          "seed": 0, "shift": 0, "flip": False, "output": "run"}


def checkpoint(metadata, tensors=None, nan=False):
    from craft import mlp_weights
    weights = {f"student.{k}": v for k, v in (tensors or mlp_weights((4, 8, 3))).items()}
    if nan:
        weights["student.1.bias"] = np.full(8, np.nan, np.float32)
    return safetensors(weights, metadata)


def resume(name, files, expect=None):
    return Case("run-folder", name, ["train", "--resume", "run", "--quiet"], {"run/config.json": json.dumps(CONFIG), **DATA, **files},
                expect or ["run"])


def cases():
    out = [
        Case("run-folder", "output-is-a-file", TRAIN + ["--output", "out"], {**DATA, "out": "not a folder"}, ["out", "not a folder"]),
        Case("run-folder", "output-parent-is-a-file", TRAIN + ["--output", "f/run"], {**DATA, "f": "a file"}, ["f/run", "is a file"]),
        Case("run-folder", "output-in-dev-null", TRAIN + ["--output", "/dev/null/run"], DATA, ["/dev/null/run"]),
        Case("run-folder", "output-in-proc", TRAIN + ["--output", "/proc/distill-run"], DATA, ["/proc/distill-run"]),
        Case("run-folder", "cache-out-in-a-file", ["cache-teacher", "--teacher", "m.safetensors", "--data", "d.npz", "--out", "f/t.npy"],
             {**DATA, "m.safetensors": model(), "f": "a file"}, ["f"]),
        Case("run-folder", "export-into-a-file", ["export", "m.safetensors", "--onnx", "f/m.onnx"], {"m.safetensors": model(), "f": "a file"}, ["f"]),
        resume("checkpoint-garbage", {"run/checkpoint.safetensors": b"\x00" * 100}, ["checkpoint.safetensors"]),
        resume("checkpoint-nan", {"run/checkpoint.safetensors": checkpoint({"distillkit.epochs_done": "1"}, nan=True)}, ["checkpoint.safetensors", "nan"]),
        resume("checkpoint-epochs-negative", {"run/checkpoint.safetensors": checkpoint({"distillkit.epochs_done": "-5"})}, ["checkpoint.safetensors"]),
        resume("checkpoint-epochs-huge", {"run/checkpoint.safetensors": checkpoint({"distillkit.epochs_done": "9223372036854775807"})}, ["checkpoint.safetensors"]),
        resume("checkpoint-sum-huge", {"run/checkpoint.safetensors": checkpoint({"distillkit.epochs_done": "0", "distillkit.next_batch": "1",
                                                                                 "distillkit.sum.seen": "1e300"})}, ["checkpoint.safetensors"]),
        resume("checkpoint-wrong-model", {"run/checkpoint.safetensors": checkpoint({"distillkit.epochs_done": "1"}, tensors={"1.weight": np.zeros((2, 2), np.float32)})},
               ["checkpoint.safetensors"]),
        resume("checkpoint-is-folder", {"run/checkpoint.safetensors": lambda p: p.mkdir()}, ["checkpoint.safetensors"]),
        resume("checkpoint-is-fifo", {"run/checkpoint.safetensors": lambda p: __import__("os").mkfifo(p)}, ["checkpoint.safetensors"]),
        # Data that cannot make a run.
        Case("run-data", "train-limit-0", TRAIN + ["--train-limit", "0"], DATA, ["--train-limit"]),
        Case("run-data", "empty-test-set", TRAIN, {"d.npz": npz(x_train=np.ones((10, 4), np.float32), y_train=np.arange(10) % 3,
                                                             x_test=np.ones((0, 4), np.float32), y_test=np.zeros(0, np.int64))}, ["d.npz", "x_test"]),
        Case("run-data", "nan-test-input-eval", ["eval", "m.safetensors", "--data", "d.npz"],
             {"m.safetensors": model(), "d.npz": npz(x_train=np.ones((10, 4), np.float32), y_train=np.arange(10) % 3,
                                                     x_test=np.full((5, 4), np.nan, np.float32), y_test=np.arange(5) % 3)}, ["d.npz"]),
        Case("run-data", "nan-train-input", TRAIN, {"d.npz": npz(x_train=np.full((10, 4), np.nan, np.float32), y_train=np.arange(10) % 3,
                                                               x_test=np.ones((5, 4), np.float32), y_test=np.arange(5) % 3)}, ["training rows", "row 0 holds nan"]),
        Case("run-data", "lr-diverges", TRAIN + ["--lr", "1e30", "--output", "run"], DATA, ["no checkpoint had been written yet", "run"]),
    ]
    return out
