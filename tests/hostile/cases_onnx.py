"""Hostile ONNX models: every size, index, attribute and file reference in an .onnx file is untrusted.

Families:
  onnx-file      the model file itself (a FIFO, a folder, a device, empty, truncated, garbage)
  onnx-external  external data (FIFOs, folders, devices, paths that leave the folder, wild offsets)
  onnx-declared  declared shapes and initializer/attribute tensors (negative, overflowing, zero-element
                 shapes whose other extents overflow)
  onnx-graph     graph structure (cycles, duplicates, missing values, a million nodes, deep nesting)
  onnx-op        operators whose output size, loop bounds or indices come from attribute or input values
  onnx-ml        ONNX-ML operators (tree ensembles, linear models, feature extractors)

Models are built with onnx.helper (or as raw protobuf where onnx would refuse the value) and run through
the commands users run: `distill inspect`, `distill eval`, `distill kd --teacher`, `distill cache-teacher`.
Operators are reached through `eval` on a 4-feature, 3-class NPZ: the graph input is x [N, 4].
"""
import os
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from corpus import Case
from craft import blobs_npz

DATA = blobs_npz(rows=12, test_rows=6)
BIG = 1 << 62
# For cases whose size is absurd but below what the default budget (half of physical memory) refuses on a
# large machine: a fixed budget makes them refused everywhere, as the 16 GiB ConstantOfShape.
SMALL_BUDGET = {"DISTILL_MAX_MEMORY": "512m"}


# MARK: Builders

def graph_model(nodes, inits=(), inputs=None, outputs=None, opset=17, ml=None, ir=8):
    """Serialized ModelProto: input x FLOAT [N, 4], output y FLOAT [N, 3] unless given."""
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
    outputs = outputs if outputs is not None else [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])]
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=list(inits))
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("ai.onnx.ml", ml)] if ml else [])
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = ir
    return model.SerializeToString()


def raw_tensor(name, dtype, dims, **fields):
    """A TensorProto with exactly these dims and fields (onnx.helper checks values against dims)."""
    t = TensorProto()
    t.name = name
    t.data_type = dtype
    t.dims.extend(dims)
    for key, value in fields.items():
        if key == "raw_data":
            t.raw_data = value
        else:
            getattr(t, key).extend(value)
    return t


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def floats(name, values, shape=None):
    arr = np.array(values, dtype=np.float32)
    return numpy_helper.from_array(arr.reshape(shape) if shape else arr, name)


def external(name, dims, location, **entries):
    """A FLOAT initializer whose data lives in an external file."""
    t = raw_tensor(name, TensorProto.FLOAT, dims)
    t.data_location = TensorProto.EXTERNAL
    for key, value in [("location", location)] + list(entries.items()):
        e = t.external_data.add()
        e.key, e.value = key, str(value)
    return t


def node(op, inputs, outputs, name="hostile", domain=None, **attrs):
    return helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs)


def matmul_tail(source="x"):
    """y = source · W, W [4, 3]: a well-formed end for graphs whose hostile node comes first."""
    return [node("MatMul", [source, "W_tail"], ["y"], name="tail")], [floats("W_tail", np.ones((4, 3)) * 0.1)]


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def nested_if_model(depth):
    """An If node whose then_branch holds an If node whose then_branch ... `depth` graphs deep (raw protobuf)."""
    graph = b""
    for _ in range(depth):
        attribute = field(1, b"then_branch") + varint(20 << 3) + varint(5) + field(6, graph)
        nodeproto = field(1, b"c") + field(2, b"o") + field(4, b"If") + field(5, attribute)
        graph = field(1, nodeproto) + field(2, b"g")
    opset = varint(2 << 3) + varint(17)
    return varint(1 << 3) + varint(8) + field(7, graph) + field(8, opset)


# MARK: Commands

def eval_args(model="m.onnx"):
    return ["eval", model, "--data", "d.npz"]


ARGS = {
    "inspect": lambda m: ["inspect", m],
    "eval": eval_args,
    "kd": lambda m: ["kd", "--teacher", m, "--student", "mlp:4-8-3", "--data", "d.npz", "--epochs", "1",
                     "--output", "out", "--quiet"],
    "cache": lambda m: ["cache-teacher", "--teacher", m, "--data", "d.npz", "--out", "t.npy"],
}


VALID = (0,)  # exit_codes of a case whose extreme values are legal: it must simply run, quickly and in bounded memory


def case(family, name, content, expect=(), command="eval", extra_files=None, exit_codes=(1, 64), env=None):
    """A case running `command` on m.onnx (with d.npz beside it); when it must fail, stderr must name
    m.onnx and each `expect` string."""
    files = {"m.onnx": content, "d.npz": DATA}
    files.update(extra_files or {})
    expected = [] if exit_codes == VALID else ["m.onnx"] + list(expect)
    return Case(family, name, ARGS[command]("m.onnx"), files, expected, exit_codes=exit_codes, env=dict(env or {}))


def op_case(name, nodes, inits=(), expect=("hostile",), opset=17, ml=None, env=None, command="eval", exit_codes=(1, 64), **kw):
    """An operator case: the hostile node (named 'hostile') runs first on x; the tail makes y."""
    tail_nodes, tail_inits = matmul_tail()
    content = graph_model(list(nodes) + tail_nodes, list(inits) + tail_inits, opset=opset, ml=ml, **kw)
    family = "onnx-ml" if ml else "onnx-op"
    return case(family, name, content, expect, command=command, env=env, exit_codes=exit_codes)


def reshaped_x(shape, out="x4"):
    """x [N, 4] reshaped to `shape` (0 keeps N)."""
    return node("Reshape", ["x", f"{out}_shape"], [out], name=f"reshape_{out}"), ints(f"{out}_shape", shape)


def empty_rows(out="x0"):
    """x [N, 4] sliced to [0, 4]: an empty tensor computed at run time."""
    return ([node("Slice", ["x", "z0", "z0", "z0"], [out], name="to_empty")], [ints("z0", [0])])


# MARK: Families

def file_cases():
    valid = graph_model(*[list(p) for p in matmul_tail()])
    out = [
        case("onnx-file", "fifo", lambda p: os.mkfifo(p), ["FIFO"], command="inspect"),
        case("onnx-file", "fifo-teacher", lambda p: os.mkfifo(p), ["FIFO"], command="kd"),
        case("onnx-file", "folder", lambda p: p.mkdir(), ["folder"], command="inspect"),
        case("onnx-file", "dev-zero", lambda p: p.symlink_to("/dev/zero"), ["device"], command="inspect"),
        case("onnx-file", "dev-zero-eval", lambda p: p.symlink_to("/dev/zero"), ["device"], command="eval"),
        case("onnx-file", "empty", b"", ["empty"], command="inspect"),
        case("onnx-file", "garbage", bytes(range(256)) * 4, command="inspect"),
        case("onnx-file", "truncated", valid[: len(valid) // 2], command="inspect"),
        case("onnx-file", "truncated-teacher", valid[: len(valid) - 3], command="cache"),
        case("onnx-file", "text", "this is not a model\n", command="eval"),
        case("onnx-file", "huge-length-prefix", varint(7 << 3 | 2) + varint(1 << 62), command="inspect"),
    ]
    return out


def external_cases():
    def with_external(location, dims=(4, 3), **entries):
        nodes = [node("MatMul", ["x", "W"], ["y"], name="mm")]
        return graph_model(nodes, [external("W", list(dims), location, **entries)])

    def sparse(size):
        def make(p: Path):
            with open(p, "wb") as f:
                f.truncate(size)
        return make

    w48 = np.ones(12, np.float32).tobytes()
    out = [
        case("onnx-external", "fifo", with_external("w.bin"), ["w.bin", "FIFO"], command="inspect",
             extra_files={"w.bin": lambda p: os.mkfifo(p)}),
        case("onnx-external", "fifo-eval", with_external("w.bin"), ["w.bin", "FIFO"], command="eval",
             extra_files={"w.bin": lambda p: os.mkfifo(p)}),
        case("onnx-external", "folder", with_external("w.bin"), ["w.bin", "folder"], command="inspect",
             extra_files={"w.bin": lambda p: p.mkdir()}),
        case("onnx-external", "dev-zero-link", with_external("w.bin"), ["w.bin"], command="inspect",
             extra_files={"w.bin": lambda p: p.symlink_to("/dev/zero")}),
        case("onnx-external", "missing", with_external("w.bin"), ["w.bin"], command="inspect"),
        case("onnx-external", "absolute", with_external("/etc/passwd"), ["/etc/passwd"], command="inspect"),
        case("onnx-external", "dot-dot", with_external("../w.bin"), ["../w.bin"], command="inspect"),
        case("onnx-external", "link-outside", with_external("w.bin"), ["w.bin"], command="inspect",
             extra_files={"w.bin": lambda p: p.symlink_to("/etc/hostname")}),
        case("onnx-external", "offset-past-end", with_external("w.bin", offset=1 << 40), ["w.bin"], command="inspect",
             extra_files={"w.bin": w48}),
        case("onnx-external", "length-huge", with_external("w.bin", length=1 << 62), ["w.bin"], command="inspect",
             extra_files={"w.bin": w48}),
        case("onnx-external", "offset-text", with_external("w.bin", offset="12abc"), ["w.bin"], command="inspect",
             extra_files={"w.bin": w48}),
        case("onnx-external", "offset-negative", with_external("w.bin", offset=-8), ["w.bin"], command="inspect",
             extra_files={"w.bin": w48}),
        case("onnx-external", "length-disagrees", with_external("w.bin", length=8), ["w.bin"], command="inspect",
             extra_files={"w.bin": w48}),
        # A 64 GiB sparse file where the tensor needs its first 48 bytes: only those are read.
        case("onnx-external", "sparse-64g", with_external("w.bin"), command="eval", exit_codes=VALID,
             extra_files={"w.bin": sparse(64 << 30)}),
        case("onnx-external", "huge-dims", with_external("w.bin", dims=(1 << 31, 1 << 31)), ["W"], command="inspect",
             extra_files={"w.bin": w48}),
        case("onnx-external", "nul-in-location", with_external("w.bin\0.txt"), ["W"], command="inspect",
             extra_files={"w.bin": w48}),
    ]
    return out


def declared_cases():
    def with_input_dims(dims):
        return graph_model([node("Identity", ["x"], ["y"], name="id")],
                           inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)])

    def fed_to(op_nodes, init):
        return graph_model(op_nodes, [init], outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])

    zero_huge = raw_tensor("Z", TensorProto.FLOAT, [0, 1 << 62, 4])
    tree_attr = raw_tensor("v", TensorProto.FLOAT, [1 << 32, 1 << 32])
    tree = node("TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", nodes_treeids=[0], nodes_nodeids=[0],
                nodes_featureids=[0], nodes_modes=["LEAF"], nodes_truenodeids=[0], nodes_falsenodeids=[0],
                nodes_values_as_tensor=tree_attr, target_treeids=[0], target_nodeids=[0], target_ids=[0],
                target_weights=[1.0])
    constant_attr = raw_tensor("c", TensorProto.FLOAT, [1 << 31, 1 << 31])
    out = [
        case("onnx-declared", "input-dim-negative", with_input_dims(["N", -1]), ["-1"], command="inspect"),
        case("onnx-declared", "input-dim-negative-eval", with_input_dims([-5, 4]), ["-5"], command="eval"),
        # A legal but huge declared extent: inspect describes the model and skips the FLOP count.
        case("onnx-declared", "input-dim-2e31", with_input_dims(["N", 1 << 31]), command="inspect", exit_codes=VALID),
        case("onnx-declared", "input-dim-2e31-eval", with_input_dims(["N", 1 << 31]), command="eval"),
        case("onnx-declared", "input-dims-overflow", with_input_dims([1 << 62, 1 << 62]), command="inspect", exit_codes=VALID),
        case("onnx-declared", "input-dims-overflow-eval", with_input_dims(["N", 1 << 62, 1 << 62]), command="eval"),
        case("onnx-declared", "initializer-negative-dim", fed_to([node("Identity", ["W"], ["y"])], raw_tensor("W", TensorProto.FLOAT, [-1, 3])),
             ["W"], command="inspect"),
        case("onnx-declared", "initializer-overflow", fed_to([node("Identity", ["W"], ["y"])], raw_tensor("W", TensorProto.FLOAT, [1 << 62, 4])),
             ["W"], command="inspect"),
        case("onnx-declared", "zero-element-flatten", fed_to([node("Flatten", ["Z"], ["y"], axis=2)], zero_huge), ["Z"], command="eval"),
        case("onnx-declared", "zero-element-transpose", fed_to([node("Transpose", ["Z"], ["y"])], zero_huge), ["Z"], command="inspect"),
        case("onnx-declared", "raw-size-mismatch", fed_to([node("Identity", ["W"], ["y"])], raw_tensor("W", TensorProto.FLOAT, [4, 3], raw_data=b"\0" * 5)),
             ["W"], command="inspect"),
        case("onnx-declared", "unknown-dtype", fed_to([node("Identity", ["W"], ["y"])], raw_tensor("W", 99, [1], raw_data=b"\0")),
             ["W"], command="inspect"),
        case("onnx-declared", "complex-dtype", fed_to([node("Identity", ["W"], ["y"])], raw_tensor("W", TensorProto.COMPLEX64, [1], raw_data=b"\0" * 8)),
             ["W"], command="inspect"),
        case("onnx-declared", "string-count-mismatch", fed_to([node("Identity", ["W"], ["y"])], raw_tensor("W", TensorProto.STRING, [3], string_data=[b"a"])),
             ["W"], command="inspect"),
        case("onnx-declared", "rank-100000", fed_to([node("Identity", ["W"], ["y"])], raw_tensor("W", TensorProto.FLOAT, [1] * 100000, float_data=[1.0])),
             ["W"], command="inspect"),
        case("onnx-declared", "ml-attribute-tensor-2e64", graph_model([tree], ml=3), ["nodes_values_as_tensor"], command="inspect"),
        case("onnx-declared", "constant-attribute-huge", graph_model([node("Constant", [], ["c"], value=constant_attr), *matmul_tail()[0]], matmul_tail()[1]),
             ["value"], command="inspect"),
    ]
    return out


def graph_cases():
    info = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4])
    n = 200_000
    # One value feeding 200k nodes, listed in reverse: the producer comes last.
    fanout = [node("Identity", ["a"], [f"b{i}"], name=f"n{i}") for i in range(n)] + [node("Identity", ["x"], ["a"], name="first")]
    fanout_model = graph_model(fanout, outputs=[info("b0")])
    # A million empty nodes (no operator, no inputs; raw protobuf, 2 bytes each): one short error, quickly.
    graph = field(1, b"") * 1_000_000 + field(2, b"g") + field(12, field(1, b"y"))
    million_empty = varint(1 << 3) + varint(8) + field(7, graph) + field(8, varint(2 << 3) + varint(17))
    unsupported = graph_model([node("NoSuchOp", ["x"], [f"u{i}"], name=f"u{i}") for i in range(100_000)], outputs=[info("u0")])
    chain = [node("MatMul", ["x", "W_tail"], ["c0"], name="mm")] + [node("Identity", [f"c{i}"], [f"c{i + 1}"], name=f"i{i}") for i in range(n)]
    chain.append(node("Identity", [f"c{n}"], ["y"], name="last"))
    chain_model = graph_model(chain, [floats("W_tail", np.ones((4, 3)))])
    many_outputs = graph_model([node("Identity", ["x"], [f"o{i}"], name=f"o{i}") for i in range(50_000)],
                               outputs=[info(f"o{i}") for i in range(50_000)])
    long_name = "v" * 200_000
    out = [
        case("onnx-graph", "fanout-200k-reverse", fanout_model, command="inspect", exit_codes=VALID),
        case("onnx-graph", "million-empty-nodes", million_empty, command="inspect"),
        case("onnx-graph", "100k-unsupported", unsupported, ["NoSuchOp"], command="inspect"),
        case("onnx-graph", "identity-chain-200k", chain_model, command="eval", exit_codes=VALID),
        case("onnx-graph", "50k-outputs", many_outputs, command="inspect", exit_codes=VALID),
        case("onnx-graph", "cycle", graph_model([node("Relu", ["b"], ["a"], name="r1"), node("Relu", ["a"], ["b"], name="r2"),
                                                  node("Add", ["x", "a"], ["y"], name="add")]), ["cycle"], command="inspect"),
        case("onnx-graph", "self-loop", graph_model([node("Add", ["x", "y"], ["y"], name="loop")]), ["loop"], command="inspect"),
        case("onnx-graph", "duplicate-output", graph_model([node("Relu", ["x"], ["y"], name="a"), node("Relu", ["x"], ["y"], name="b")]),
             ["twice"], command="inspect"),
        case("onnx-graph", "writes-initializer", graph_model([node("Relu", ["x"], ["W"], name="w"), *matmul_tail()[0]], [floats("W", [1.0])] + matmul_tail()[1]),
             ["'W'"], command="inspect"),
        case("onnx-graph", "missing-input", graph_model([node("Add", ["x", "nowhere"], ["y"], name="add")]), ["nowhere"], command="inspect"),
        case("onnx-graph", "undefined-output", graph_model([node("Relu", ["x"], ["r"], name="r")]), ["'y'"], command="inspect"),
        case("onnx-graph", "duplicate-graph-input", graph_model([node("Relu", ["x"], ["y"], name="r")], inputs=[info("x"), info("x")]),
             ["'x'"], command="inspect"),
        case("onnx-graph", "no-outputs", graph_model([node("Relu", ["x"], ["y"], name="r")], outputs=[]), command="inspect"),
        case("onnx-graph", "nested-if-5000", nested_if_model(5000), command="inspect"),
        case("onnx-graph", "opset-huge", graph_model([node("Relu", ["x"], ["y"])], opset=1 << 40), ["opset"], command="inspect"),
        case("onnx-graph", "ir-version-negative", graph_model([node("Relu", ["x"], ["y"])], ir=-1), ["IR version"], command="inspect"),
        case("onnx-graph", "200k-char-name", graph_model([node("Add", ["x", long_name], ["y"], name="add")]), command="inspect"),
        case("onnx-graph", "many-inputs-sum", graph_model([node("Sum", ["x"] * 300_000, ["s"], name="sum"), *matmul_tail("s")[0]], matmul_tail()[1]),
             command="eval", exit_codes=VALID),
    ]
    return out


def op_cases():
    out = []
    add = lambda *a, **k: out.append(op_case(*a, **k))
    x4d, x4d_init = reshaped_x([0, 4, 1, 1])
    x3d, x3d_init = reshaped_x([0, 4, 1], out="x3")
    empty_nodes, empty_inits = empty_rows()

    # Output sizes from values.
    add("constant-of-shape-16g", [node("ConstantOfShape", ["s"], ["c"])], [ints("s", [65536, 65536])], env=SMALL_BUDGET)
    add("constant-of-shape-2e80", [node("ConstantOfShape", ["s"], ["c"])], [ints("s", [1 << 40, 1 << 40])])
    for command in ("kd", "cache"):  # the same refusal when the model is a teacher
        add(f"constant-of-shape-2e80-{command}", [node("ConstantOfShape", ["s"], ["c"])], [ints("s", [1 << 40, 1 << 40])], command=command)
        add(f"gather-nd-negative-batch-{command}", [node("GatherND", ["x", "i"], ["g"], batch_dims=-1)], [ints("i", [[0]])], command=command)
    add("constant-of-shape-negative", [node("ConstantOfShape", ["s"], ["c"])], [ints("s", [-1, 4])])
    add("constant-of-shape-zero-huge", [node("ConstantOfShape", ["s"], ["c"]), node("Flatten", ["c"], ["f"], name="flat")],
        [ints("s", [0, 1 << 62, 4])])
    add("constant-of-shape-rank-1m", [node("ConstantOfShape", ["s"], ["c"])], [ints("s", [1] * 1_000_000)])
    add("expand-2e42", [node("Expand", ["x", "s"], ["e"])], [ints("s", [1 << 20, 1 << 20, 1, 4])])
    add("expand-negative", [node("Expand", ["x", "s"], ["e"])], [ints("s", [-3, 4])])
    add("tile-2e60", [node("Tile", ["x", "r"], ["t"])], [ints("r", [1 << 30, 1 << 30])])
    add("tile-overflow", [node("Tile", ["x", "r"], ["t"])], [ints("r", [(1 << 31) - 1, (1 << 31) - 1])])
    add("range-1e15", [node("Range", ["a", "b", "d"], ["r"])], [floats("a", 0.0, ()), floats("b", 1e15, ()), floats("d", 1.0, ())])
    add("range-backwards-1e30", [node("Range", ["a", "b", "d"], ["r"])], [floats("a", 1e30, ()), floats("b", 1e15, ()), floats("d", 1.0, ())],
        exit_codes=VALID)
    add("range-empty-start", [node("Range", ["a", "b", "d"], ["r"])], [floats("a", [], (0,)), floats("b", 5.0, ()), floats("d", 1.0, ())])
    scalar = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    add("range-int-huge", [node("Range", ["a", "b", "d"], ["r"])], [scalar("a", 0), scalar("b", 1 << 62), scalar("d", 1)])
    add("resize-scales-1e5", [node("Resize", ["x", "", "sc"], ["r"])], [floats("sc", [1e5, 1e5])])
    add("resize-sizes-huge", [node("Resize", ["x", "", "", "sz"], ["r"])], [ints("sz", [(1 << 31) - 1, (1 << 31) - 1])])
    add("resize-roi-nan", [node("Resize", ["x", "roi", "", "sz"], ["r"], coordinate_transformation_mode="tf_crop_and_resize", mode="linear")],
        [floats("roi", [0, float("nan"), 1, 1]), ints("sz", [6, 8])])
    add("resize-roi-inf", [node("Resize", ["x", "roi", "", "sz"], ["r"], coordinate_transformation_mode="tf_crop_and_resize")],
        [floats("roi", [0, -float("inf"), 1, float("inf")]), ints("sz", [6, 8])])
    add("upsample-scales-huge", [node("Upsample", ["x", "sc"], ["u"])], [floats("sc", [1e5, 1e5])], opset=9)
    add("upsample7-scales-attr", [node("Upsample", ["x"], ["u"], scales=[1e5, 1e5])], opset=7)
    add("pad-2e31", [node("Pad", ["x", "p"], ["q"])], [ints("p", [0, (1 << 31) - 1, 0, (1 << 31) - 1])])
    add("pad-empty-wide", [*empty_nodes, node("Pad", ["x0", "p"], ["q"])], [*empty_inits, ints("p", [0, 0, 0, (1 << 31) - 1])], env=SMALL_BUDGET)
    add("pad-int64-min", [node("Pad", ["x", "p"], ["q"])], [ints("p", [0, -(1 << 63), 0, 0])])
    add("pad-reflect-crop", [node("Pad", ["x", "p"], ["q"], mode="reflect")], [ints("p", [0, -10, 0, 0])])
    add("reshape-zero-huge", [*empty_nodes, node("Reshape", ["x0", "s"], ["r"], allowzero=1), node("Flatten", ["r"], ["f"], name="flat")],
        [*empty_inits, ints("s", [0, 1 << 62, 4])])
    add("reshape-2e62", [node("Reshape", ["x", "s"], ["r"])], [ints("s", [1 << 62, -1])])
    add("onehot-depth-2e30", [node("OneHot", ["x", "d", "v"], ["o"])], [floats("d", 1 << 30, ()), floats("v", [0, 1])])
    add("onehot-depth-nan", [node("OneHot", ["x", "d", "v"], ["o"])], [floats("d", float("nan"), ()), floats("v", [0, 1])])
    add("slice-wild", [node("Slice", ["x", "s", "e", "a", "st"], ["o"])],
        [ints("s", [-(1 << 63)]), ints("e", [(1 << 63) - 1]), ints("a", [1]), ints("st", [1 << 62])], exit_codes=VALID)
    add("slice-step-min", [node("Slice", ["x", "s", "e", "a", "st"], ["o"])],
        [ints("s", [(1 << 63) - 1]), ints("e", [-(1 << 63)]), ints("a", [1]), ints("st", [-(1 << 63)])])
    add("slice-axis-huge", [node("Slice", ["x", "s", "e", "a"], ["o"])], [ints("s", [0]), ints("e", [1]), ints("a", [1 << 40])])
    add("gather-index-huge", [node("Gather", ["x", "i"], ["g"], axis=1)], [ints("i", [1 << 62])])
    add("gather-index-min", [node("Gather", ["x", "i"], ["g"], axis=1)], [ints("i", [-(1 << 63)])])
    add("gather-output-huge", [node("ConstantOfShape", ["s"], ["i"], name="idx", value=helper.make_tensor("v", TensorProto.INT64, [1], [0])),
                               node("Gather", ["x", "i"], ["g"], axis=1)], [ints("s", [1 << 12, 1 << 12])], env=SMALL_BUDGET)
    add("gather-elements-shape", [node("GatherElements", ["x", "i"], ["g"], axis=1)], [ints("i", np.zeros((50, 2), np.int64))])
    add("gather-nd-negative-batch", [node("GatherND", ["x", "i"], ["g"], batch_dims=-1)], [ints("i", [[0]])])
    add("gather-nd-batch-mismatch", [node("GatherND", ["x", "i"], ["g"], batch_dims=1)], [ints("i", np.zeros((50, 1), np.int64))])
    add("scatter-elements-shape", [node("ScatterElements", ["x", "i", "u"], ["g"], axis=1)],
        [ints("i", np.zeros((50, 1), np.int64)), floats("u", np.zeros((50, 1)))])
    add("scatter-nd-index", [node("ScatterND", ["x", "i", "u"], ["g"])], [ints("i", [[1 << 40]]), floats("u", np.zeros((1, 4)))])
    add("concat-rank-mismatch", [node("Concat", ["x", "v"], ["c"], axis=0)], [floats("v", [1.0])])
    add("concat-axis-huge", [node("Concat", ["x", "x"], ["c"], axis=1 << 40)])
    add("concat-type-mismatch", [node("Concat", ["x", "v"], ["c"], axis=0)], [ints("v", [[1, 2, 3, 4]])])
    add("split-num-outputs-2e40", [node("Split", ["x"], ["p"], axis=1, num_outputs=1 << 40)], opset=18)
    add("split-sizes-overflow", [node("Split", ["x", "s"], ["p", "q"], axis=1)], [ints("s", [(1 << 62), (1 << 62)])])
    add("split-sizes-negative", [node("Split", ["x", "s"], ["p", "q"], axis=1)], [ints("s", [8, -4])])
    add("topk-k-huge", [node("TopK", ["x", "k"], ["v", "i"])], [ints("k", [1 << 62])])
    add("topk-k-negative", [node("TopK", ["x", "k"], ["v", "i"])], [ints("k", [-1])])
    add("reduce-axes-out-of-range", [node("ReduceSum", ["x", "a"], ["r"])], [ints("a", [7])])
    add("reduce-axes-repeat", [node("ReduceMean", ["x"], ["r"], axes=[1, -1])], opset=13)
    add("argmax-axis", [node("ArgMax", ["x"], ["r"], axis=-9)])
    add("transpose-perm-invalid", [node("Transpose", ["x"], ["t"], perm=[0, 5])])
    add("transpose-perm-long", [node("Transpose", ["x"], ["t"], perm=list(range(100_000)))])
    add("squeeze-axis-huge", [node("Squeeze", ["x", "a"], ["s"])], [ints("a", [1 << 40])])
    add("unsqueeze-1m-axes", [node("Unsqueeze", ["x", "a"], ["u"])], [ints("a", list(range(2, 1_000_002)))])
    add("unsqueeze-axis-min", [node("Unsqueeze", ["x", "a"], ["u"])], [ints("a", [-(1 << 63)])])
    add("cast-complex", [node("Cast", ["x"], ["c"], to=TensorProto.COMPLEX64)])
    add("cast-unknown", [node("Cast", ["x"], ["c"], to=999)])
    add("cast-2e40", [node("Cast", ["x"], ["c"], to=1 << 40)])
    add("eye-like-dtype-huge", [node("EyeLike", ["x"], ["e"], dtype=1 << 40)])
    add("depth-to-space-2e62", [x4d, node("DepthToSpace", ["x4"], ["d"], blocksize=1 << 62)], [x4d_init])
    add("space-to-depth-huge", [x4d, node("SpaceToDepth", ["x4"], ["d"], blocksize=1 << 62)], [x4d_init])
    add("lrn-size-2e62", [x3d, node("LRN", ["x3"], ["l"], size=1 << 62)], [x3d_init], exit_codes=VALID)
    add("einsum-1e12-loop", [node("Einsum", ["v", "v", "v", "v"], ["e"], equation="a,b,c,d->")], [floats("v", np.ones(1000))])
    add("einsum-bad-equation", [node("Einsum", ["x"], ["e"], equation="ab->abc")])
    add("einsum-arrows", [node("Einsum", ["x"], ["e"], equation="ab->a->b")])
    add("einsum-ellipsis-twice", [node("Einsum", ["x"], ["e"], equation="...a...->a")])
    add("cumsum-axis-huge", [node("CumSum", ["x", "a"], ["c"])], [ints("a", [1 << 40])])
    int_min = numpy_helper.from_array(np.array([-(1 << 63)], np.int64), "m")
    add("div-int64-min-by-minus-one", [node("Div", ["m", "n"], ["q"])], [int_min, ints("n", [-1])], exit_codes=VALID)
    add("mod-int64-min-by-minus-one", [node("Mod", ["m", "n"], ["q"])], [int_min, ints("n", [-1])], exit_codes=VALID)
    add("mod-int-zero", [node("Cast", ["x"], ["xi"], name="cast", to=TensorProto.INT64), node("Mod", ["xi", "z"], ["m"])], [ints("z", [0])])
    add("clip-empty-min", [node("Clip", ["x", "lo"], ["c"])], [floats("lo", [], (0,))])
    add("where-huge-broadcast", [node("Where", ["b", "p", "q"], ["w"])],
        [numpy_helper.from_array(np.ones((1 << 10, 1, 1), bool), "b"), floats("p", np.ones((1, 1 << 10, 1))), floats("q", np.ones((1, 1, 1 << 12)))],
        env=SMALL_BUDGET)
    add("add-huge-broadcast", [node("Add", ["p", "q"], ["w"])], [floats("p", np.ones((1 << 14, 1))), floats("q", np.ones((1, 1 << 14)))], env=SMALL_BUDGET)
    add("bitshift-types", [node("BitShift", ["x", "x"], ["b"], direction="LEFT")])

    # Control flow: a Loop that never ends, and one whose scan output stacks past the budget.
    loop_inputs = [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                   helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)]
    loop_outputs = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)]
    forever = helper.make_graph([node("Identity", ["cond_in"], ["cond_out"], name="c"), node("Identity", ["v_in"], ["v_out"], name="v")],
                                "forever", loop_inputs, loop_outputs)
    true = helper.make_tensor("t", TensorProto.BOOL, [], [True])
    add("loop-trip-count-2e62", [node("Loop", ["M", "t", "x"], ["lv"], body=forever)], [ints("M", 1 << 62), true])
    add("loop-no-trip-count", [node("Loop", ["", "t", "x"], ["lv"], body=forever)], [true])
    wide = helper.make_graph([node("Identity", ["cond_in"], ["cond_out"], name="c"), node("Identity", ["v_in"], ["v_out"], name="v"),
                              node("Identity", ["big"], ["scan"], name="s")], "wide", loop_inputs,
                             loop_outputs + [helper.make_tensor_value_info("scan", TensorProto.FLOAT, None)], initializer=[floats("big", np.zeros(1 << 16))])
    add("loop-scan-output-stacks", [node("Loop", ["M", "t", "x"], ["lv", "ls"], body=wide)], [ints("M", 1 << 20), true], env=SMALL_BUDGET)

    # Windows: convolution and pooling geometry.
    w = floats("W", np.ones((2, 4, 1, 1)))
    add("conv-stride-zero", [x4d, node("Conv", ["x4", "W"], ["c"], strides=[0, 0])], [x4d_init, w])
    add("conv-stride-negative", [x4d, node("Conv", ["x4", "W"], ["c"], strides=[-1, 1])], [x4d_init, w])
    add("conv-kernel-attr-negative", [x4d, node("Conv", ["x4", "W"], ["c"], kernel_shape=[-1, -1])], [x4d_init, w])
    add("conv-pads-2e30", [x4d, node("Conv", ["x4", "W"], ["c"], pads=[1 << 30] * 4)], [x4d_init, w])
    add("conv-pads-negative", [x4d, node("Conv", ["x4", "W"], ["c"], pads=[-5, -5, 0, 0])], [x4d_init, w])
    add("conv-dilations-2e40", [x4d, node("Conv", ["x4", "W3"], ["c"], dilations=[1 << 40, 1])], [x4d_init, floats("W3", np.ones((2, 4, 3, 1)))])
    add("conv-group-zero", [x4d, node("Conv", ["x4", "W"], ["c"], group=0)], [x4d_init, w])
    add("conv-group-not-dividing", [x4d, node("Conv", ["x4", "W"], ["c"], group=3)], [x4d_init, w])
    add("conv-weight-rank", [x4d, node("Conv", ["x4", "Wr"], ["c"])], [x4d_init, floats("Wr", np.ones((2, 4)))])
    add("conv-bias-wrong", [x4d, node("Conv", ["x4", "W", "B"], ["c"])], [x4d_init, w, floats("B", [1.0, 2.0, 3.0])])
    add("conv-auto-pad-unknown", [x4d, node("Conv", ["x4", "W"], ["c"], auto_pad="SIDEWAYS")], [x4d_init, w])
    add("conv-transpose-output-shape", [x4d, node("ConvTranspose", ["x4", "WT"], ["c"], output_shape=[1 << 30, 1 << 30])],
        [x4d_init, floats("WT", np.ones((4, 2, 1, 1)))])
    add("conv-transpose-strides-huge", [x4d, node("ConvTranspose", ["x4", "WT"], ["c"], strides=[(1 << 31) - 1, (1 << 31) - 1])],
        [x4d_init, floats("WT", np.ones((4, 2, 2, 2)))], exit_codes=VALID)
    add("conv-transpose-group-zero", [x4d, node("ConvTranspose", ["x4", "WT"], ["c"], group=0)], [x4d_init, floats("WT", np.ones((4, 2, 1, 1)))])
    add("maxpool-stride-zero", [x4d, node("MaxPool", ["x4"], ["p"], kernel_shape=[1, 1], strides=[0, 0])], [x4d_init])
    add("maxpool-kernel-2e40", [x4d, node("MaxPool", ["x4"], ["p"], kernel_shape=[1 << 40, 1])], [x4d_init])
    add("maxpool-pads-2e30", [x4d, node("MaxPool", ["x4"], ["p"], kernel_shape=[1, 1], pads=[(1 << 30)] * 4)], [x4d_init])
    add("maxpool-kernel-missing", [x4d, node("MaxPool", ["x4"], ["p"])], [x4d_init])
    add("avgpool-kernel-negative", [x4d, node("AveragePool", ["x4"], ["p"], kernel_shape=[-1, 1])], [x4d_init])
    add("avgpool-long-window", [x4d, node("Expand", ["x4", "wide"], ["xw"], name="wide"),
                                node("AveragePool", ["xw"], ["p"], kernel_shape=[1, 1 << 19], pads=[0, (1 << 19) - 1, 0, (1 << 19) - 1], strides=[1, 1])],
        [x4d_init, ints("wide", [1, 4, 1, 1 << 19])])
    add("global-pool-rank1", [node("Flatten", ["x"], ["f"], name="f", axis=0), node("Reshape", ["f", "s1"], ["v"], name="v"),
                              node("GlobalAveragePool", ["v"], ["p"])], [ints("s1", [-1])])

    # Products and normalisation.
    add("matmul-mismatch", [node("MatMul", ["x", "M"], ["m"])], [floats("M", np.ones((5, 3)))])
    add("matmul-scalar", [node("MatMul", ["x", "s"], ["m"])], [floats("s", 1.0, ())])
    add("gemm-mismatch", [node("Gemm", ["x", "M"], ["m"], transB=1)], [floats("M", np.ones((4, 3)))])
    add("gemm-c-wrong", [node("Gemm", ["x", "M", "C"], ["m"])], [floats("M", np.ones((4, 3))), floats("C", np.ones((7,)))])
    add("batchnorm-sizes", [x4d, node("BatchNormalization", ["x4", "s", "s", "s", "v"], ["b"])], [x4d_init, floats("s", [1.0] * 4), floats("v", [1.0] * 3)])
    add("layernorm-scale-huge-broadcast", [node("LayerNormalization", ["x", "s"], ["l"])], [floats("s", np.ones((1 << 16, 1, 1)))], env=SMALL_BUDGET)
    add("instancenorm-rank", [node("InstanceNormalization", ["x", "s", "s"], ["i"])], [floats("s", [1.0] * 4)])
    add("softmax-axis", [node("Softmax", ["x"], ["s"], axis=1 << 40)])
    add("hardmax-axis-min", [node("Hardmax", ["x"], ["s"], axis=-(1 << 62))])
    add("nll-target-wrong", [node("NegativeLogLikelihoodLoss", ["x", "t"], ["l"])], [ints("t", [1 << 40] * 6)])

    # Recurrent layers.
    seq = node("Reshape", ["x", "seq_shape"], ["xs"], name="seq")
    seq_init = ints("seq_shape", [1, -1, 4])
    rw = lambda gates, hidden: [floats("RW", np.ones((1, gates * hidden, 4))), floats("RR", np.ones((1, gates * hidden, hidden)))]
    add("lstm-hidden-2e62", [seq, node("LSTM", ["xs", "RW", "RR"], ["ly"], hidden_size=1 << 62)], [seq_init, *rw(4, 2)])
    add("lstm-hidden-mismatch", [seq, node("LSTM", ["xs", "RW", "RR"], ["ly"], hidden_size=3)], [seq_init, *rw(4, 2)])
    add("lstm-seq-lens-short", [seq, node("LSTM", ["xs", "RW", "RR", "", "lens"], ["ly"], hidden_size=2)],
        [seq_init, *rw(4, 2), numpy_helper.from_array(np.array([1], np.int32), "lens")])
    add("lstm-initial-h-small", [seq, node("LSTM", ["xs", "RW", "RR", "", "", "h0"], ["ly"], hidden_size=2)],
        [seq_init, *rw(4, 2), floats("h0", [1.0])])
    add("lstm-peepholes-small", [seq, node("LSTM", ["xs", "RW", "RR", "", "", "", "", "P"], ["ly"], hidden_size=2)],
        [seq_init, *rw(4, 2), floats("P", [1.0])])
    add("gru-layout-2", [seq, node("GRU", ["xs", "RW", "RR"], ["ly"], hidden_size=2, layout=2)], [seq_init, *rw(3, 2)])
    add("rnn-direction-unknown", [seq, node("RNN", ["xs", "RW", "RR"], ["ly"], hidden_size=2, direction="sideways")], [seq_init, *rw(1, 2)])
    add("rnn-activation-unknown", [seq, node("RNN", ["xs", "RW", "RR"], ["ly"], hidden_size=2, activations=["Explode"])], [seq_init, *rw(1, 2)])
    return out


def ml_cases():
    out = []

    def tree(name, attrs, op="TreeEnsembleClassifier", command="eval"):
        base = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                    nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0, 0], nodes_truenodeids=[1, 0, 0],
                    nodes_falsenodeids=[2, 0, 0])
        if op == "TreeEnsembleClassifier":
            base.update(class_treeids=[0, 0], class_nodeids=[1, 2], class_ids=[0, 2], class_weights=[1.0, 1.0],
                        classlabels_int64s=[0, 1, 2])
            outputs = ["label", "y"]
        else:
            base.update(target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 2], target_weights=[1.0, 1.0], n_targets=3)
            outputs = ["y"]
        base.update(attrs)
        content = graph_model([node(op, ["x"], outputs, domain="ai.onnx.ml", **base)], ml=3)
        out.append(case("onnx-ml", name, content, ["hostile"], command=command))

    tree("tree-true-id-missing", dict(nodes_truenodeids=[7, 0, 0]))
    tree("tree-cycle", dict(nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"], nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[1, 0, 0]))
    tree("tree-feature-2e40", dict(nodes_featureids=[1 << 40, 0, 0]))
    tree("tree-feature-negative", dict(nodes_featureids=[-3, 0, 0]))
    tree("tree-class-id-2e40", dict(class_ids=[0, 1 << 40]))
    tree("tree-class-id-negative", dict(class_ids=[-5, -5]))
    tree("tree-lengths-differ", dict(nodes_featureids=[0, 0]))
    tree("tree-mode-unknown", dict(nodes_modes=["BRANCH_SIDEWAYS", "LEAF", "LEAF"]))
    tree("tree-string-and-int-labels", dict(classlabels_strings=["a"]))
    tree("tree-weight-node-missing", dict(class_nodeids=[1, 9]))
    tree("tree-base-values-wrong", dict(base_values=[1.0] * 7))
    tree("tree-post-transform-unknown", dict(post_transform="EXPLODE"))
    tree("tree-duplicate-node-ids", dict(nodes_nodeids=[0, 0, 0]))
    tree("regressor-n-targets-2e40", dict(n_targets=1 << 40), op="TreeEnsembleRegressor")
    tree("regressor-n-targets-zero", dict(n_targets=0), op="TreeEnsembleRegressor")
    tree("regressor-target-id-negative", dict(target_ids=[-1, 0]), op="TreeEnsembleRegressor")
    tree("regressor-aggregate-unknown", dict(aggregate_function="MEDIAN"), op="TreeEnsembleRegressor")
    tree("regressor-cycle-deep", dict(nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LEQ"], nodes_truenodeids=[1, 2, 0],
                                      nodes_falsenodeids=[1, 2, 0]), op="TreeEnsembleRegressor")

    def ml(name, op, inputs, attrs, inits=(), outputs=("y",)):
        content = graph_model([node(op, inputs, list(outputs), domain="ai.onnx.ml", **attrs)], list(inits), ml=3)
        out.append(case("onnx-ml", name, content, ["hostile"]))

    ml("linear-classifier-coefficients", "LinearClassifier", ["x"], dict(coefficients=[1.0] * 7, classlabels_ints=[0, 1, 2]), outputs=("l", "y"))
    ml("linear-classifier-intercepts", "LinearClassifier", ["x"], dict(coefficients=[1.0] * 12, intercepts=[0.0] * 5, classlabels_ints=[0, 1, 2]),
       outputs=("l", "y"))
    ml("linear-regressor-targets-2e62", "LinearRegressor", ["x"], dict(coefficients=[1.0] * 12, targets=1 << 62))
    ml("linear-regressor-targets-negative", "LinearRegressor", ["x"], dict(coefficients=[1.0] * 12, targets=-3))
    ml("array-feature-extractor-index", "ArrayFeatureExtractor", ["x", "i"], {}, [ints("i", [1 << 40])])
    ml("array-feature-extractor-negative", "ArrayFeatureExtractor", ["x", "i"], {}, [ints("i", [-1])])
    ml("scaler-sizes", "Scaler", ["x"], dict(offset=[0.0] * 3, scale=[1.0] * 4))
    ml("normalizer-unknown", "Normalizer", ["x"], dict(norm="L7"))
    return out


def cases():
    return file_cases() + external_cases() + declared_cases() + graph_cases() + op_cases() + ml_cases()
