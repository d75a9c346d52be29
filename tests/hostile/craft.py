"""Small builders for hostile files: safetensors models with any metadata, NPZ datasets, CSV text."""
import io
import json
import struct
import zipfile

import numpy as np


def safetensors(tensors, metadata=None):
    """A safetensors file: `tensors` maps a name to a float32 array (or to (dtype, shape, raw bytes))."""
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        if isinstance(value, tuple):
            dtype, shape, raw = value
        else:
            arr = np.ascontiguousarray(value, dtype=np.float32)
            dtype, shape, raw = "F32", list(arr.shape), arr.tobytes()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def mlp_weights(widths, seed=0, first_index=1):
    """State dict of `mlp:A-B-...` (Flatten at 0, Linear at odd indices)."""
    rng = np.random.default_rng(seed)
    tensors, index = {}, first_index
    for a, b in zip(widths, widths[1:]):
        tensors[f"{index}.weight"] = rng.normal(0, 0.3, size=(b, a)).astype(np.float32)
        tensors[f"{index}.bias"] = np.zeros(b, np.float32)
        index += 2
    return tensors


def model(widths=(4, 8, 3), spec=None, input_shape=None, classes=None, extra=None, tensors=None):
    """A DistillKit model file; every metadata value can be overridden with a hostile one."""
    meta = {"distillkit.spec": spec if spec is not None else "mlp:" + "-".join(map(str, widths)),
            "distillkit.input_shape": input_shape if input_shape is not None else str(widths[0]),
            "distillkit.num_classes": classes if classes is not None else str(widths[-1]), "format": "pt"}
    meta.update(extra or {})
    meta = {k: v for k, v in meta.items() if v is not None}
    return safetensors(tensors if tensors is not None else mlp_weights(widths), meta)


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def blobs_npz(rows=60, features=4, classes=3, seed=0, test_rows=None):
    """A small separable tabular dataset as an NPZ with x_train, y_train, x_test, y_test."""
    rng = np.random.default_rng(seed)
    def part(n):
        y = rng.integers(0, classes, size=n)
        x = rng.normal(0, 1, size=(n, features)).astype(np.float32)
        x[np.arange(n), y % features] += 3
        return x, y.astype(np.int64)
    xt, yt = part(rows)
    xs, ys = part(rows // 3 if test_rows is None else test_rows)
    return npz(x_train=xt, y_train=yt, x_test=xs, y_test=ys)


def blobs_csv(rows=60, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    lines = [",".join([f"f{i}" for i in range(features)] + ["y"])]
    for _ in range(rows):
        y = int(rng.integers(0, classes))
        x = rng.normal(0, 1, size=features)
        x[y % features] += 3
        lines.append(",".join(f"{v:.4f}" for v in x) + f",{y}")
    return "\n".join(lines) + "\n"


def zip_bytes(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buffer.getvalue()
