"""ONNX import: models built with the `onnx` helper API (and exported by skl2onnx) run in onnxruntime
and in DistillKit, and the outputs agree to 1e-4.

How it runs (from the repository root, after `swift build`):

    pytest tests/interop/test_onnx_import.py

The module fixture writes each model and its inputs (TensorProto .pb files) under
<tmp>/cases/<name>/, then runs

    swift test --scratch-path $DISTILL_SCRATCH --filter ONNXInteropTests

with DISTILL_ONNX_INTEROP_DIR=<tmp>. The Swift side (Tests/DistillONNXTests/InteropTests.swift) runs
every case with DistillKit's importer and writes output_N.pb (or error.txt); the tests below compare
them with onnxruntime's outputs.

Environment: DISTILL_SCRATCH (SwiftPM scratch path, default .build), DISTILL_SKIP_BUILD=1 (pass
--skip-build), DISTILL_PACKAGE_DIR (package root). Needs numpy, onnx and onnxruntime (skipped when
missing); the scikit-learn cases need scikit-learn and skl2onnx (skipped when missing).
"""

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from distillcli import run_onnx_interop_suite, swift_or_skip  # noqa: E402

RNG = np.random.default_rng(0)


def weight(name, *shape, scale=0.3):
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def bn(prefix, channels):
    """Initializers of a BatchNormalization with non-trivial statistics."""
    return [
        numpy_helper.from_array((1 + 0.2 * RNG.standard_normal(channels)).astype(np.float32), f"{prefix}.scale"),
        numpy_helper.from_array((0.1 * RNG.standard_normal(channels)).astype(np.float32), f"{prefix}.bias"),
        numpy_helper.from_array((0.1 * RNG.standard_normal(channels)).astype(np.float32), f"{prefix}.mean"),
        numpy_helper.from_array(RNG.uniform(0.5, 1.5, channels).astype(np.float32), f"{prefix}.var"),
    ]


def bn_node(prefix, x, y):
    return helper.make_node("BatchNormalization", [x, f"{prefix}.scale", f"{prefix}.bias", f"{prefix}.mean", f"{prefix}.var"], [y],
                            name=prefix, epsilon=1e-5)


def model(nodes, inputs, outputs, initializers, opset=17):
    graph = helper.make_graph(nodes, "case", inputs, outputs, initializers)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="interop")
    m.ir_version = min(m.ir_version, 8)
    onnx.checker.check_model(m)
    return m


def image_input(name="x", shape=("N", 1, 28, 28)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def out(rank=2, name="y"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"d{i}" for i in range(rank)])


def mlp(opset):
    """What torch.onnx exports for nn.Sequential(Flatten, Linear, ReLU, Linear) with a softmax head."""
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], alpha=1.0, beta=1.0, transB=1),
        helper.make_node("LogSoftmax", ["logits"], ["y"], axis=1),
    ]
    init = [weight("w1", 32, 784, scale=0.05), weight("b1", 32), weight("w2", 10, 32), weight("b2", 10)]
    return model(nodes, [image_input()], [out()], init, opset)


def cnn():
    """Conv/BN/ReLU/pooling classifier, PyTorch style (opset 13)."""
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        bn_node("bn1", "c1", "n1"),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2.w"], ["c2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("AveragePool", ["r2"], ["p2"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("GlobalAveragePool", ["p2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], transB=1),
    ]
    init = [weight("c1.w", 8, 1, 3, 3), weight("c1.b", 8), *bn("bn1", 8), weight("c2.w", 16, 4, 3, 3), weight("fc.w", 10, 16), weight("fc.b", 10)]
    return model(nodes, [image_input()], [out()], init, 13)


def resnet_block():
    """A residual block with a strided 1x1 projection, ReLU6 as Clip with inputs (opset 13)."""
    nodes = [
        helper.make_node("Conv", ["x", "stem.w"], ["s"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        bn_node("bn0", "s", "s_n"), helper.make_node("Relu", ["s_n"], ["s_r"]),
        helper.make_node("Conv", ["s_r", "a.w"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        bn_node("bna", "a", "a_n"), helper.make_node("Clip", ["a_n", "zero", "six"], ["a_r"]),
        helper.make_node("Conv", ["a_r", "b.w"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        bn_node("bnb", "b", "b_n"),
        helper.make_node("Conv", ["s_r", "proj.w"], ["p"], kernel_shape=[1, 1], strides=[2, 2]),
        bn_node("bnp", "p", "p_n"),
        helper.make_node("Add", ["b_n", "p_n"], ["sum"]), helper.make_node("Relu", ["sum"], ["r"]),
        helper.make_node("ReduceMean", ["r"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "fc.w", "fc.b"], ["y"], transB=1),
    ]
    init = [weight("stem.w", 8, 1, 3, 3), *bn("bn0", 8), weight("a.w", 16, 8, 3, 3), *bn("bna", 16), weight("b.w", 16, 16, 3, 3, scale=0.1),
            *bn("bnb", 16), weight("proj.w", 16, 8, 1, 1), *bn("bnp", 16), weight("fc.w", 10, 16), weight("fc.b", 10),
            numpy_helper.from_array(np.array(0, np.float32), "zero"), numpy_helper.from_array(np.array(6, np.float32), "six")]
    return model(nodes, [image_input()], [out()], init, 13)


def mobilenet_block():
    """TensorFlow-style: SAME_UPPER strided depthwise conv (asymmetric padding), HardSwish, a
    run-time reshape (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) and Softmax (opset 17)."""
    nodes = [
        helper.make_node("Conv", ["x", "pw.w", "pw.b"], ["pw"], kernel_shape=[1, 1]),
        helper.make_node("HardSwish", ["pw"], ["hs"]),
        helper.make_node("Conv", ["hs", "dw.w"], ["dw"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER", group=8),
        bn_node("bn", "dw", "dw_n"), helper.make_node("Clip", ["dw_n", "zero", "six"], ["dw_r"]),
        helper.make_node("Conv", ["dw_r", "pr.w"], ["pr"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Shape", ["pr"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero_i"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["pr", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc.w"], ["mm"]),
        helper.make_node("Add", ["mm", "fc.b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    init = [weight("pw.w", 8, 1, 1, 1), weight("pw.b", 8), weight("dw.w", 8, 1, 3, 3), *bn("bn", 8), weight("pr.w", 4, 8, 2, 2),
            weight("fc.w", 4 * 7 * 7, 10, scale=0.1), weight("fc.b", 10), ints("zero_i", 0), ints("axes0", [0]), ints("minus1", [-1]),
            numpy_helper.from_array(np.array(0, np.float32), "zero"), numpy_helper.from_array(np.array(6, np.float32), "six")]
    return model(nodes, [image_input()], [out()], init, 17)


def attention_like():
    """Batched MatMul, Transpose, Softmax over an axis, exact GELU via Erf, Slice with steps,
    Pad (reflect), Concat, Unsqueeze/Squeeze with axes inputs, Cast, ConstantOfShape (opset 17)."""
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Div", ["scores", "scale"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["attn"], axis=2),
        helper.make_node("MatMul", ["attn", "x"], ["ctx"]),
        helper.make_node("Div", ["ctx", "sqrt2"], ["g0"]), helper.make_node("Erf", ["g0"], ["g1"]),
        helper.make_node("Add", ["g1", "one"], ["g2"]), helper.make_node("Mul", ["ctx", "g2"], ["g3"]),
        helper.make_node("Mul", ["g3", "half"], ["gelu"]),
        helper.make_node("Slice", ["gelu", "starts", "ends", "axes", "steps"], ["sl"]),
        helper.make_node("Pad", ["sl", "pads"], ["padded"], mode="reflect"),
        helper.make_node("Unsqueeze", ["padded", "axes1"], ["u"]),
        helper.make_node("Squeeze", ["u", "axes1"], ["sq"]),
        helper.make_node("Shape", ["sq"], ["sshape"]),
        helper.make_node("Cast", ["sshape"], ["sshape_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["sshape_f"], ["total"], keepdims=1),
        helper.make_node("ConstantOfShape", ["cshape"], ["ones"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("Mul", ["ones", "total"], ["bias"]),
        helper.make_node("Concat", ["sq", "bias"], ["cat"], axis=2),
        helper.make_node("Tanh", ["cat"], ["t"]), helper.make_node("Sigmoid", ["t"], ["s"]),
        helper.make_node("LeakyRelu", ["s"], ["l"], alpha=0.1),
        helper.make_node("Sub", ["l", "half"], ["y0"]),
        helper.make_node("Identity", ["y0"], ["y1"]),
        helper.make_node("Dropout", ["y1"], ["y"]),
    ]
    init = [weight("wq", 6, 6), weight("wk", 6, 6), numpy_helper.from_array(np.array(2.45, np.float32), "scale"),
            numpy_helper.from_array(np.array(1.4142135, np.float32), "sqrt2"), numpy_helper.from_array(np.array(1, np.float32), "one"),
            numpy_helper.from_array(np.array(0.5, np.float32), "half"), ints("starts", [5, 0]), ints("ends", [-100, 6]), ints("axes", [2, 1]),
            ints("steps", [-2, 2]), ints("pads", [0, 1, 1, 0, 1, 1]), ints("axes1", [1]), ints("cshape", [2, 5, 1])]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 6])], [out(3)], init, 17)


def opset11_variants():
    """Opset 11: Unsqueeze/Squeeze axes as attributes, LogSoftmax coerced to 2-D from axis 1."""
    nodes = [
        helper.make_node("Unsqueeze", ["x"], ["u"], axes=[1]),
        helper.make_node("Squeeze", ["u"], ["s"], axes=[1]),
        helper.make_node("Clip", ["s", "lo", "hi"], ["c"]),
        helper.make_node("Slice", ["c", "starts", "ends", "axes"], ["sl"]),
        helper.make_node("LogSoftmax", ["sl"], ["y"], axis=1),
    ]
    init = [numpy_helper.from_array(np.array(-1, np.float32), "lo"), numpy_helper.from_array(np.array(1.5, np.float32), "hi"),
            ints("starts", [1]), ints("ends", [100]), ints("axes", [2])]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])], [out(3)], init, 11)


def cases():
    images = RNG.uniform(0, 1, (6, 1, 28, 28)).astype(np.float32)
    built = {
        "mlp_opset11": (mlp(11), [images]), "mlp_opset17": (mlp(17), [images]), "cnn": (cnn(), [images]),
        "resnet_block": (resnet_block(), [images]), "mobilenet_block": (mobilenet_block(), [images]),
        "attention_like": (attention_like(), [RNG.standard_normal((2, 5, 6)).astype(np.float32)]),
        "opset11_variants": (opset11_variants(), [RNG.standard_normal((3, 4, 5)).astype(np.float32) * 2]),
    }
    built.update(sklearn_cases())
    return built


def sklearn_cases():
    """scikit-learn models exported by skl2onnx without ZipMap (when both are installed)."""
    try:
        from skl2onnx import to_onnx
        from sklearn.datasets import load_digits
        from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer, StandardScaler
    except ImportError:
        return {}
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    train, test = slice(0, 1200), slice(1200, None)
    gbc = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x[train], y[train])
    logistic = make_pipeline(StandardScaler(), Normalizer(), LogisticRegression(max_iter=300)).fit(x[train], y[train])
    forest = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0).fit(x[train], y[train].astype(np.float32))
    binary = GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0).fit(x[train], (y[train] > 4).astype(np.int64))
    no_zipmap = {"zipmap": False}
    return {
        "sklearn_gbc_digits": (to_onnx(gbc, x[:1], options={id(gbc): no_zipmap}), [x[test]]),
        "sklearn_gbc_binary": (to_onnx(binary, x[:1], options={id(binary): no_zipmap}), [x[test]]),
        "sklearn_logistic_pipeline": (to_onnx(logistic, x[:1], options={id(logistic.steps[-1][1]): no_zipmap}), [x[test]]),
        "sklearn_forest_regressor": (to_onnx(forest, x[:1]), [x[test]]),
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    swift_or_skip()
    folder = tmp_path_factory.mktemp("onnx_import")
    built = cases()
    for name, (m, inputs) in built.items():
        case = folder / "cases" / name
        case.mkdir(parents=True)
        (case / "model.onnx").write_bytes(m.SerializeToString())
        for i, value in enumerate(inputs):
            (case / f"input_{i}.pb").write_bytes(numpy_helper.from_array(value).SerializeToString())
    run_onnx_interop_suite(folder)
    return folder, built


def compare_case(results, name):
    folder, built = results
    if name not in built:
        pytest.skip(f"{name}: scikit-learn or skl2onnx is not installed")
    m, inputs = built[name]
    case = folder / "cases" / name
    error = case / "error.txt"
    assert not error.exists(), f"DistillKit failed on {name}: {error.read_text() if error.exists() else ''}"
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: v for i, v in zip(session.get_inputs(), inputs)}
    expected = session.run(None, feeds)
    for i, want in enumerate(expected):
        got = numpy_helper.to_array(onnx.load_tensor(str(case / f"output_{i}.pb")))
        assert got.shape == np.asarray(want).shape, f"{name} output {i}: shape {got.shape}, onnxruntime {np.asarray(want).shape}"
        if np.issubdtype(np.asarray(want).dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{name} output {i}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"{name} output {i}")
    return expected


@pytest.mark.parametrize("name", ["mlp_opset11", "mlp_opset17", "cnn", "resnet_block", "mobilenet_block", "attention_like", "opset11_variants"])
def test_helper_models_match_onnxruntime(results, name):
    compare_case(results, name)


@pytest.mark.parametrize("name", ["sklearn_gbc_digits", "sklearn_gbc_binary", "sklearn_logistic_pipeline", "sklearn_forest_regressor"])
def test_sklearn_models_match_onnxruntime(results, name):
    expected = compare_case(results, name)
    if name == "sklearn_gbc_digits":
        probabilities = expected[1]
        assert probabilities.shape[1] == 10 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
