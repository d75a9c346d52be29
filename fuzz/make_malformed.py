#!/usr/bin/env python3
"""Writes Tests/DistillDataTests/Malformed/: one hostile or broken file per failure mode, each
checked by a test for its specific error message (MalformedFileTests.swift, ReliabilityTests.swift).
Run from fuzz/ with ../.venv/bin/python make_malformed.py; the outputs are committed.
Inputs the fuzzer found go in the same folder as crash-<target>-<what>.<ext>."""
import gzip, io, json, os, struct, zipfile
import numpy as np

OUT = "../Tests/DistillDataTests/Malformed"
os.makedirs(OUT, exist_ok=True)

def put(name, data):
    with open(f"{OUT}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def idx(code, shape, payload=b"", magic=b"\0\0"):
    return magic + bytes([code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + payload

put("idx-truncated.idx", idx(0x08, [10, 28, 28], bytes(100)))
put("idx-wrong-magic.idx", idx(0x08, [3], bytes(3), magic=b"PK"))
put("idx-huge-shape.idx", idx(0x08, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], bytes(16)))
put("idx-wrong-dtype.idx", idx(0x07, [4], bytes(4)))
put("idx-gzip-bomb-header.idx.gz", gzip.compress(idx(0x08, [4000, 1000, 1000], bytes(64))))
put("idx-gzip-truncated.idx.gz", gzip.compress(idx(0x08, [100, 28, 28], bytes(range(256)) * 306))[:200])

def npy_header(descr, shape, fortran=False):
    h = "{'descr': %r, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    h = h.encode() + b" " * (-(len(h) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h

put("npy-truncated.npy", npy_header("<f4", (4, 4)) + bytes(20))
put("npy-wrong-magic.npy", b"\x93NUMPZ" + npy_header("<f4", (1,))[6:] + bytes(4))
put("npy-huge-shape.npy", npy_header("<f4", (10**12, 10**12)) + bytes(16))
put("npy-negative-shape.npy", npy_header("<f4", (-1, 4)) + bytes(16))
put("npy-wrong-dtype.npy", npy_header("<c16", (2,)) + bytes(32))
put("npy-fortran-order.npy", npy_header("<f4", (2, 2), fortran=True) + bytes(16))
put("npy-header-length-lies.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{'descr': '<f4'}")

def npz(entries, compression=zipfile.ZIP_STORED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression) as z:
        for name, data in entries.items(): z.writestr(name, data)
    return b.getvalue()

def npy(a):
    b = io.BytesIO(); np.save(b, a); return b.getvalue()

good = npz({"x.npy": npy(np.ones((2, 2), "<f4"))})
put("npz-truncated.npz", good[: len(good) // 2])
put("npz-not-npy-entry.npz", npz({"x.npy": npy(np.ones(2, "<f4")), "notes.txt": "hello"}))
# An entry whose headers claim 4000000000 uncompressed bytes from 100 deflated ones (a ZIP bomb's
# claim): both the local header and the central directory are patched.
bomb = bytearray(npz({"x.npy": bytes(100000)}, zipfile.ZIP_DEFLATED))
for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
    i = bomb.find(sig); struct.pack_into("<I", bomb, i + off, 4_000_000_000)
put("npz-bomb-declared-size.npz", bytes(bomb))
# A dataset whose features hold a NaN (sample 5): training must refuse it, naming the sample.
x = np.random.default_rng(0).random((12, 4)).astype("<f4"); x[5, 2] = np.nan
put("npz-nan-features.npz", npz({"x_train.npy": npy(x), "y_train.npy": npy(np.arange(12) % 3),
                                 "x_test.npy": npy(x[:3] * 0), "y_test.npy": npy(np.arange(3))}))

def safetensors(header, body=b"", raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + body

f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
put("st-truncated.safetensors", safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(1, 2)))
put("st-header-length-huge.safetensors", struct.pack("<Q", 2**62) + b"{}")
put("st-negative-shape.safetensors", safetensors({"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, bytes(16)))
put("st-huge-shape.safetensors", safetensors({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}, bytes(16)))
put("st-wrong-dtype.safetensors", safetensors({"w": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}, bytes(16)))
put("st-overlap.safetensors", safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
put("st-not-json.safetensors", safetensors(None, raw_header=b"[1,2,3"))

meta = lambda spec, shape, classes: {"distillkit.spec": spec, "distillkit.input_shape": shape, "distillkit.num_classes": str(classes)}
put("model-huge-spec.safetensors", safetensors({"__metadata__": meta("mlp:100000-100000-10", "100000", 10),
                                                 "1.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)))
put("model-lenet5-tiny-images.safetensors", safetensors({"__metadata__": meta("lenet5", "1,4,40", 10),
                                                          "0.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)))
put("model-negative-classes.safetensors", safetensors({"__metadata__": meta("mlp:4-3", "4", -3),
                                                        "1.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)))
# A valid teacher for 4 features and 3 classes whose weights hold a NaN: distillation must refuse
# to learn from its outputs.
w = np.ones((3, 4), "<f4"); w[1, 1] = np.nan
put("model-nan-teacher.safetensors", safetensors({"__metadata__": meta("mlp:4-3", "4", 3),
                                                   "1.weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
                                                   "1.bias": {"dtype": "F32", "shape": [3], "data_offsets": [48, 60]}},
                                                  w.tobytes() + bytes(12)))

put("csv-ragged.csv", "a,b,label\n1,2,x\n3,4\n5,6,y\n")
put("csv-unterminated-quote.csv", 'a,b,label\n1,"2,x\n3,4,y\n')
put("csv-nan.csv", "a,b,label\n1,2,0\nnan,4,1\n5,6,0\n")
put("csv-duplicate-column.csv", "a,a,label\n1,2,0\n")

put("yaml-deep.yaml", "student: " + "[" * 500 + "]" * 500 + "\n")
put("yaml-deep-block.yaml", "".join(" " * i + "- \n" for i in range(0, 400, 2)))
laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
for i in range(1, 10):
    laughs.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
put("yaml-billion-laughs.yaml", "\n".join(laughs) + "\n")
put("yaml-unknown-key.yaml", "epochs: 3\nlearning_rat: 0.1\n")
put("yaml-not-a-map.yaml", "- just\n- a list\n")

try:
    import onnx
    from onnx import helper, TensorProto
    def model(nodes, inits=(), inputs=("x",), outputs=("y",)):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1, 4]) for i in inputs],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 4]) for o in outputs], list(inits))
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    put("onnx-cycle.onnx", model([helper.make_node("Relu", ["b"], ["a"], name="first"),
                                  helper.make_node("Add", ["x", "a"], ["b"], name="second"),
                                  helper.make_node("Relu", ["b"], ["y"], name="third")]))
    put("onnx-missing-initializer.onnx", model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]))
    put("onnx-truncated.onnx", model([helper.make_node("Relu", ["x"], ["y"])])[:-7])
except ImportError:
    print("onnx not installed: ONNX files skipped")
print(len(os.listdir(OUT)), "files in", OUT)
