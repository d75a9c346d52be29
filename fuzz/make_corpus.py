#!/usr/bin/env python3
"""Writes the seed corpora (small valid files) under fuzz/corpus/<target>/. Run from fuzz/ with
numpy installed (../.venv/bin/python make_corpus.py); the outputs are committed, so this only
needs to run again when a format gains a feature worth seeding."""
import gzip, io, json, os, shutil, struct, zipfile
import numpy as np

def put(target, name, data):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    with open(f"corpus/{target}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def idx(code, shape, payload):
    return bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + payload

put("IDX", "labels.idx", idx(0x08, [5], bytes([1, 2, 3, 4, 9])))
put("IDX", "images.idx", idx(0x08, [2, 3, 3], bytes(range(18))))
put("IDX", "images.idx.gz", gzip.compress(idx(0x08, [2, 3, 3], bytes(range(18)))))
put("IDX", "floats.idx", idx(0x0D, [2, 2], struct.pack(">4f", 1.5, -2, 0, 3)))
put("IDX", "int16.idx", idx(0x0B, [3], struct.pack(">3h", -1, 2, 300)))
put("IDX", "f64.idx.gz", gzip.compress(idx(0x0E, [2], struct.pack(">2d", 1e300, -0.5))))

def npy(a):
    b = io.BytesIO(); np.save(b, a); return b.getvalue()

put("NPY", "f4.npy", npy(np.arange(6, dtype="<f4").reshape(2, 3)))
put("NPY", "i8.npy", npy(np.array([1, 2, 3], dtype="<i8")))
put("NPY", "f2be.npy", npy(np.array([[1.5, -2]], dtype=">f2")))
put("NPY", "u1.npy", npy(np.array([255, 0], dtype="u1")))
put("NPY", "bool.npy", npy(np.array([True, False])))
put("NPY", "scalar.npy", npy(np.float64(3.25)))
put("NPY", "empty.npy", npy(np.zeros((0, 4), dtype="<f4")))

def npz(compressed, **arrays):
    b = io.BytesIO(); (np.savez_compressed if compressed else np.savez)(b, **arrays); return b.getvalue()

put("NPZ", "stored.npz", npz(False, x=np.ones((2, 2), "<f4"), y=np.array([0, 1], "<i8")))
put("NPZ", "deflated.npz", npz(True, x=np.arange(8, dtype="<f4"), y=np.array([1], "u1")))

def safetensors(tensors, metadata=None):
    header, body = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(payload)]}
        body += payload
    if metadata: header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body

f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
put("Safetensors", "f32.safetensors", safetensors({"w": ("F32", [2, 2], f32(1, 2, 3, 4)), "b": ("F32", [2], f32(0, 1))}))
put("Safetensors", "mixed.safetensors", safetensors({"h": ("F16", [2], struct.pack("<2e", 1, -2)),
                                                     "bf": ("BF16", [1], b"\x80\x3f"), "d": ("F64", [], struct.pack("<d", 2.5))},
                                                    {"format": "pt"}))

def linear(i, o, seed):
    r = np.random.default_rng(seed)
    return (("F32", [o, i], r.standard_normal((o, i)).astype("<f4").tobytes()), ("F32", [o], np.zeros(o, "<f4").tobytes()))

def mlp_model(widths):
    t = {}
    for k in range(len(widths) - 1):
        w, b = linear(widths[k], widths[k + 1], k)
        t[f"{1 + 2 * k}.weight"] = w; t[f"{1 + 2 * k}.bias"] = b
    return t

meta = lambda spec, shape, classes: {"distillkit.spec": spec, "distillkit.input_shape": shape,
                                     "distillkit.num_classes": str(classes), "format": "pt"}
put("SavedModel", "mlp.safetensors", safetensors(mlp_model([4, 3, 2]), meta("mlp:4-3-2", "4", 2)))
layers = json.dumps([{"linear": {"in": 4, "out": 2}}], separators=(",", ":"))
w, b = linear(4, 2, 7)
put("SavedModel", "layers.safetensors", safetensors({"0.weight": w, "0.bias": b}, meta("layers:" + layers, "4", 2)))

# A small CNN described by a layer list (conv, batch-norm, pool, residual, global pool): the fuzzer
# mutates its spec, input shape and class count, and the target runs what ModelShapes accepts.
cnn = [{"conv2d": {"in": 1, "out": 2, "kernel": 3, "padding": 1}}, {"batchnorm2d": {"features": 2}}, "relu",
       {"maxpool2d": {"kernel": 2, "stride": 2}}, {"residual": {"in": 2, "out": 2}}, {"avgpool2d": {"kernel": 1}},
       "global_avgpool2d", {"linear": {"in": 2, "out": 3}}]
put("SavedModel", "cnn-layers.safetensors", safetensors({}, meta("layers:" + json.dumps(cnn, separators=(",", ":")), "1,6,6", 3)))
put("SavedModel", "cnn-tiny.safetensors", safetensors({}, meta("cnn-tiny", "1,8,8", 3)))
# Two int8 students (corpus/SavedModel/int8-mlp.safetensors and int8-cnn.safetensors) are not
# written here: they are `distill quantize`'s output, so that the fuzzer starts from files the int8
# reader accepts. They were made with
#   distill train --model mlp:4-3-2 --data tiny.csv --label y --epochs 1 --output mlp
#   distill quantize mlp/best.safetensors --calibration tiny.csv --label y --samples 20 --output int8-mlp.safetensors
# (tiny.csv: 60 rows of 4 normal features, y = a + b > 0) and the same for the layer list
#   [conv2d 1→2 3×3 padding 1, relu, maxpool2d 2, flatten, linear 18→2] on 60 random 1×6×6 images (.npz).
put("Experiment", "cnn-layers.yaml", "data: x.npz\nstudent:\n  layers:\n" + "".join(f"    - {json.dumps(l)}\n" for l in cnn))

put("CSV", "iris.csv", "sepal,petal,species\n5.1,1.4,setosa\n7.0,4.7,versicolor\n6.3,6.0,virginica\n")
put("CSV", "quoted.csv", '\ufeffa,"b, c",label\r\n1,"x ""q""",0\r\n2,"multi\nline",1\r\n\r\n3,y,1\r\n')
put("CSV", "regression.csv", "y,x1,colour\n0.5,1e3,red\n-2,NaN,blue\n3,4,\n")

for f in sorted(os.listdir("../examples")):
    if f.endswith(".yaml"): shutil.copy(f"../examples/{f}", f"corpus/Experiment/{f}")
put("Experiment", "anchors.yaml", "seed: &s 3\nepochs: *s\nlosses: [{kd: {temperature: 4, weight: 0.9}}, {ce: {weight: 0.1}}]\nteacher: t.safetensors\n")
put("Experiment", "flow.json", '{"data": "x.csv", "label": "y", "student": {"layers": [flatten, {"linear": {"in": 4, "out": 3}}]}, "epochs": 2}')

try:
    from onnx import helper, numpy_helper, TensorProto
    def onnx_model(nodes, inits, x_shape, y_shape):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    r = np.random.default_rng(0)
    put("ONNX", "mlp.onnx", onnx_model([helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                                        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)],
                                       {"W1": r.standard_normal((3, 4)).astype("f4"), "b1": np.zeros(3, "f4"),
                                        "W2": r.standard_normal((2, 3)).astype("f4"), "b2": np.zeros(2, "f4")}, [1, 4], [1, 2]))
    put("ONNX", "conv.onnx", onnx_model([helper.make_node("Conv", ["x", "K"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                                         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])],
                                        {"K": r.standard_normal((2, 1, 3, 3)).astype("f4"), "M": r.standard_normal((8, 2)).astype("f4")}, [1, 1, 4, 4], [1, 2]))
    put("ONNX", "softmax.onnx", onnx_model([helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Softmax", ["r"], ["y"], axis=-1)],
                                           {"s": np.array([1, -1], "i8")}, [2, 2], [1, 4]))
except ImportError:
    print("onnx not installed: ONNX seeds skipped")
