@testable import DistillONNX
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Operator semantics that change with the opset, and the ONNX-ML operators. The backend
// conformance suite covers most operators; these pin the opset differences an exporter meets.

/// Rounds to 1e-4 for comparisons with printed NumPy values.
func rounded(_ v: ONNXValue) -> [Float] { v.floatTensor!.scalars.map { ($0 * 10_000).rounded() / 10_000 } }

@Suite("ONNX operators")
struct OperatorTests {
    @Test("LogSoftmax and Softmax: a 2-D coercion before opset 13, one axis after")
    func softmaxAxis() throws {
        let x = Tensor(shape: [1, 2, 2], scalars: [0, 1, 2, 3])
        // opset 11, axis 1: softmax over all four values (flattened from axis 1 on).
        let old = try runSingle("Softmax", [x], attributes: [intAttribute("axis", 1)], opset: 11)
        let e = [0, 1, 2, 3].map { Foundation.exp(Double($0)) }, total = e.reduce(0, +)
        assertClose(old.floatTensor!.scalars, e.map { Float($0 / total) }, atol: 1e-6)
        // opset 13, axis 1: softmax over the two rows separately for each column.
        let new = try runSingle("Softmax", [x], attributes: [intAttribute("axis", 1)], opset: 13)
        let a = Float(1 / (1 + Foundation.exp(2.0)))
        assertClose(new.floatTensor!.scalars, [a, a, 1 - a, 1 - a], atol: 1e-6)
        // LogSoftmax defaults: axis 1 before 13 (all of [2, 2] here), −1 from 13.
        let logOld = try runSingle("LogSoftmax", [x], opset: 12)
        assertClose(logOld.floatTensor!.scalars, e.map { Float(Foundation.log($0 / total)) }, atol: 1e-5)
        let logNew = try runSingle("LogSoftmax", [x], opset: 13)
        let first = Float(-Foundation.log(1 + Foundation.exp(1.0))), second = Float(-Foundation.log(1 + Foundation.exp(-1.0)))
        assertClose(logNew.floatTensor!.scalars, [first, second, first, second], atol: 1e-5)
    }

    @Test("Unsqueeze and Squeeze: axes as an attribute before opset 13, an input after")
    func unsqueezeAxes() throws {
        let x = Tensor.zeros([3, 4])
        #expect(try runSingle("Unsqueeze", [x], attributes: [intsAttribute("axes", [0, -1])], opset: 11).shape == [1, 3, 4, 1])
        #expect(try runSingle("Unsqueeze", [x], initializers: [int64Tensor("axes", [2], [1, 3])], extraInputs: ["axes"], opset: 13).shape == [3, 1, 4, 1])
        #expect(try runSingle("Squeeze", [Tensor.zeros([1, 3, 1])], attributes: [intsAttribute("axes", [2])], opset: 11).shape == [1, 3])
        #expect(try runSingle("Squeeze", [Tensor.zeros([1, 3, 1])], opset: 13).shape == [3])
        #expect(errorMessage { _ = try runSingle("Squeeze", [Tensor.zeros([2, 3])], attributes: [intsAttribute("axes", [0])], opset: 11) }
            .contains("cannot squeeze axis 0 of extent 2"))
    }

    @Test("Slice: attributes before opset 10, inputs (with steps and clamping) after")
    func slice() throws {
        let x = Tensor(shape: [2, 5], scalars: (0..<10).map(Float.init))
        let old = try runSingle("Slice", [x], attributes: [intsAttribute("starts", [1]), intsAttribute("ends", [1000]), intsAttribute("axes", [1])], opset: 9)
        #expect(old.floatTensor!.scalars == [1, 2, 3, 4, 6, 7, 8, 9])
        let new = try runSingle("Slice", [x], initializers: [int64Tensor("s", [1], [-1]), int64Tensor("e", [1], [Int64.min]), int64Tensor("a", [1], [1]), int64Tensor("st", [1], [-2])],
                                extraInputs: ["s", "e", "a", "st"], opset: 13)
        #expect(new.floatTensor!.scalars == [4, 2, 0, 9, 7, 5])
    }

    @Test("Clip: bounds as attributes before opset 11, optional inputs after")
    func clip() throws {
        let x = Tensor([-2, 0.5, 3])
        #expect(try runSingle("Clip", [x], attributes: [floatAttribute("min", 0), floatAttribute("max", 1)], opset: 6).floatTensor!.scalars == [0, 0.5, 1])
        #expect(try runSingle("Clip", [x], initializers: [floatTensor("lo", [], [-1])], extraInputs: ["lo"], opset: 13).floatTensor!.scalars == [-1, 0.5, 3])
        #expect(try runSingle("Clip", [x], initializers: [floatTensor("hi", [], [0])], extraInputs: ["", "hi"], opset: 13).floatTensor!.scalars == [-2, 0, 0])
    }

    @Test("Reshape: 0 copies an extent, -1 is inferred, allowzero keeps zeros")
    func reshape() throws {
        let x = Tensor.zeros([2, 3, 4])
        #expect(try runSingle("Reshape", [x], initializers: [int64Tensor("s", [2], [0, -1])], extraInputs: ["s"]).shape == [2, 12])
        #expect(try runSingle("Reshape", [x], initializers: [int64Tensor("s", [3], [-1, 0, 2])], extraInputs: ["s"]).shape == [4, 3, 2])
        #expect(errorMessage { _ = try runSingle("Reshape", [x], initializers: [int64Tensor("s", [2], [-1, -1])], extraInputs: ["s"]) }.contains("more than one -1"))
    }

    @Test("Conv: groups, dilations, and SAME_UPPER's asymmetric padding")
    func conv() throws {
        // 1 channel 4×4 image 0..15, 2×2 kernel of ones, stride 1, SAME_UPPER: pads (0,0) before, (1,1) after.
        let x = Tensor(shape: [1, 1, 4, 4], scalars: (0..<16).map(Float.init))
        let w = floatTensor("w", [1, 1, 2, 2], [1, 1, 1, 1])
        let y = try runSingle("Conv", [x], attributes: [stringAttribute("auto_pad", "SAME_UPPER")], initializers: [w], extraInputs: ["w"])
        #expect(y.shape == [1, 1, 4, 4])
        let expected: [Float] = [10, 14, 18, 10, 26, 30, 34, 18, 42, 46, 50, 26, 25, 27, 29, 15]
        #expect(y.floatTensor!.scalars == expected)
        // Depthwise (group = channels) with dilation 2: each channel sums its four corners of a 3×3 window.
        let x2 = Tensor(shape: [1, 2, 3, 3], scalars: (0..<18).map(Float.init))
        let w2 = floatTensor("w", [2, 1, 2, 2], [1, 1, 1, 1, 1, 0, 0, -1])
        let y2 = try runSingle("Conv", [x2], attributes: [intAttribute("group", 2), intsAttribute("dilations", [2, 2])], initializers: [w2], extraInputs: ["w"])
        #expect(y2.shape == [1, 2, 1, 1])
        let corners: [Float] = [0 + 2 + 6 + 8, 9 - 17]
        #expect(y2.floatTensor!.scalars == corners)
        // 1-D convolution.
        let y3 = try runSingle("Conv", [Tensor(shape: [1, 1, 5], scalars: [1, 2, 3, 4, 5])], attributes: [intsAttribute("pads", [1, 1])],
                               initializers: [floatTensor("w", [1, 1, 3], [1, 0, -1])], extraInputs: ["w"])
        #expect(y3.floatTensor!.scalars == [-2, -2, -2, -2, 4])
        #expect(errorMessage { _ = try runSingle("Conv", [Tensor.zeros([1, 3, 4, 4])], initializers: [floatTensor("w", [2, 2, 1, 1], [1, 1, 1, 1])], extraInputs: ["w"]) }
            .contains("do not fit"))
    }

    @Test("AveragePool: count_include_pad decides the divisor at the border")
    func averagePool() throws {
        let x = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        let attributes = [intsAttribute("kernel_shape", [2, 2]), intsAttribute("pads", [1, 1, 0, 0])]
        let excluded = try runSingle("AveragePool", [x], attributes: attributes)
        #expect(excluded.floatTensor!.scalars == [1, 1.5, 2, 2.5])
        let included = try runSingle("AveragePool", [x], attributes: attributes + [intAttribute("count_include_pad", 1)])
        #expect(included.floatTensor!.scalars == [0.25, 0.75, 1, 2.5])
        let maxed = try runSingle("MaxPool", [x], attributes: [intsAttribute("kernel_shape", [2, 2]), intAttribute("ceil_mode", 1), intsAttribute("strides", [2, 2]), intsAttribute("pads", [0, 0, 1, 1])])
        #expect(maxed.floatTensor!.scalars == [4])
    }

    @Test("Gemm: transposes, alpha, beta and a broadcast C")
    func gemm() throws {
        let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])  // used as Aᵀ
        let y = try runSingle("Gemm", [a], attributes: [intAttribute("transA", 1), floatAttribute("alpha", 2), floatAttribute("beta", 0.5)],
                              initializers: [floatTensor("b", [2, 1], [1, 1]), floatTensor("c", [1], [10])], extraInputs: ["b", "c"])
        // Aᵀ·B = [[1+3], [2+4]] = [4, 6]; 2·that + 0.5·10
        #expect(y.floatTensor!.scalars == [13, 17])
    }

    @Test("integer shape arithmetic: Shape → Gather → Concat → Reshape, as PyTorch's flatten exports")
    func shapeArithmetic() throws {
        let nodes = [makeNode("Shape", ["x"], ["s"]), makeNode("Gather", ["s", "zero"], ["n"], [intAttribute("axis", 0)]),
                     makeNode("Unsqueeze", ["n", "axes"], ["n1"]), makeNode("Concat", ["n1", "minus1"], ["shape"], [intAttribute("axis", 0)]),
                     makeNode("Reshape", ["x", "shape"], ["y"])]
        let m = try load(makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, 2, 3])], outputs: [tensorInfo("y", [nil, 6])],
                                   initializers: [int64Tensor("zero", [], [0]), int64Tensor("axes", [1], [0]), int64Tensor("minus1", [1], [-1])]))
        #expect(try m(Tensor.zeros([5, 2, 3])).shape == [5, 6])
    }

    @Test("Pad: constant, reflect and edge")
    func pad() throws {
        let x = Tensor([1, 2, 3])
        func padded(_ mode: String) throws -> [Float] {
            try runSingle("Pad", [x], attributes: [stringAttribute("mode", mode)], initializers: [int64Tensor("p", [2], [2, 1]), floatTensor("v", [], [9])],
                          extraInputs: ["p", "v"]).floatTensor!.scalars
        }
        #expect(try padded("constant") == [9, 9, 1, 2, 3, 9])
        #expect(try padded("reflect") == [3, 2, 1, 2, 3, 2])
        #expect(try padded("edge") == [1, 1, 1, 2, 3, 3])
    }

    @Test("Cast between FLOAT, INT64 and BOOL")
    func cast() throws {
        let x = Tensor([-1.7, 0, 2.9])
        let asInt = try runSingle("Cast", [x], attributes: [intAttribute("to", Int(ONNXDataType.int64.rawValue))])
        #expect(asInt.intTensor! == IntTensor([-1, 0, 2]))
        let asBool = try runSingle("Cast", [x], attributes: [intAttribute("to", Int(ONNXDataType.bool.rawValue))])
        #expect(asBool.intTensor!.values == [1, 0, 1] && asBool.dataType == .bool)
        #expect(errorMessage { _ = try runSingle("Cast", [x], attributes: [intAttribute("to", Int(ONNXDataType.double.rawValue))]) }.contains("casting to DOUBLE is not supported"))
    }

    @Test("Einsum: products, diagonals, implicit outputs and ellipses")
    func einsum() throws {
        func einsum(_ equation: String, _ operands: [Tensor]) throws -> Tensor {
            try runSingle("Einsum", operands, attributes: [stringAttribute("equation", equation)]).floatTensor!
        }
        let a = Tensor(shape: [2, 2, 3], scalars: (0..<12).map(Float.init)), b = Tensor(shape: [2, 3, 1], scalars: [1, 0, -1, 2, 1, 0])
        // numpy.einsum('bij,bjk->bik', a, b).ravel() = [-2, -2, 19, 28]
        let product = try einsum("bij,bjk->bik", [a, b])
        #expect(product.shape == [2, 2, 1] && product.scalars == [-2, -2, 19, 28])
        let square = Tensor(shape: [3, 3], scalars: (0..<9).map(Float.init))
        #expect(try einsum("ii->i", [square]).scalars == [0, 4, 8])
        #expect(try einsum("ii", [square]).scalars == [12])          // implicit output: the trace
        #expect(try einsum("ij", [square]).scalars == square.scalars)  // implicit, letters sorted
        #expect(try einsum("ji", [square]).scalars == [0, 3, 6, 1, 4, 7, 2, 5, 8])
        let t = try einsum("...ij->...ji", [a])
        #expect(t.shape == [2, 3, 2] && t.scalars[0..<6] == [0, 3, 1, 4, 2, 5])
        #expect(try einsum("i,i", [Tensor([1, 2, 3]), Tensor([4, 5, 6])]).scalars == [32])
    }

    // MARK: ONNX-ML

    /// Golden values from onnx.reference.ReferenceEvaluator and onnxruntime 1.32 (identical to 1e-6):
    ///
    ///     node = helper.make_node('TreeEnsembleClassifier', ['X'], ['label', 'scores'], domain='ai.onnx.ml',
    ///         nodes_treeids=[0,0,0,1,1,1], nodes_nodeids=[0,1,2,0,1,2], nodes_featureids=[0,0,0,1,0,0],
    ///         nodes_modes=['BRANCH_LEQ','LEAF','LEAF','BRANCH_LT','LEAF','LEAF'], nodes_values=[0.5,0,0,-1.0,0,0],
    ///         nodes_truenodeids=[1,0,0,1,0,0], nodes_falsenodeids=[2,0,0,2,0,0],
    ///         class_treeids=[0,0,0,1,1], class_nodeids=[1,2,2,1,2], class_ids=[0,1,2,2,0],
    ///         class_weights=[1.0,0.5,2.0,1.5,-0.5], classlabels_int64s=[10,20,30], base_values=[0.1,0.2,0.3],
    ///         post_transform='SOFTMAX')
    ///     X = [[0.2,-2],[0.7,0],[0.5,5]]
    @Test("TreeEnsembleClassifier matches the ONNX reference")
    func treeEnsembleClassifier() throws {
        let node = makeNode("TreeEnsembleClassifier", ["X"], ["label", "scores"], name: "trees", domain: "ai.onnx.ml", [
            intsAttribute("nodes_treeids", [0, 0, 0, 1, 1, 1]), intsAttribute("nodes_nodeids", [0, 1, 2, 0, 1, 2]),
            intsAttribute("nodes_featureids", [0, 0, 0, 1, 0, 0]),
            stringsAttribute("nodes_modes", ["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"]),
            floatsAttribute("nodes_values", [0.5, 0, 0, -1, 0, 0]), intsAttribute("nodes_truenodeids", [1, 0, 0, 1, 0, 0]),
            intsAttribute("nodes_falsenodeids", [2, 0, 0, 2, 0, 0]), intsAttribute("class_treeids", [0, 0, 0, 1, 1]),
            intsAttribute("class_nodeids", [1, 2, 2, 1, 2]), intsAttribute("class_ids", [0, 1, 2, 2, 0]),
            floatsAttribute("class_weights", [1, 0.5, 2, 1.5, -0.5]), intsAttribute("classlabels_int64s", [10, 20, 30]),
            floatsAttribute("base_values", [0.1, 0.2, 0.3]), stringAttribute("post_transform", "SOFTMAX"),
        ])
        let m = try load(makeModel(nodes: [node], inputs: [tensorInfo("X", [nil, 2])],
                                   outputs: [tensorInfo("label", [nil], type: .int64), tensorInfo("scores", [nil, 3])], mlOpset: 3))
        let out = try m.run(["X": .float(Tensor(shape: [3, 2], scalars: [0.2, -2, 0.7, 0, 0.5, 5]))])
        #expect(out["label"]!.intTensor!.values == [30, 30, 10])
        assertClose(out["scores"]!.floatTensor!.scalars, [0.2923701, 0.11886882, 0.5887611, 0.05295516, 0.15908612, 0.7879587,
                                                          0.41474187, 0.27800977, 0.30724832], atol: 1e-6)
    }

    /// LinearClassifier(coefficients=[1,-2], intercepts=[0.5], classlabels_ints=[0,1], post_transform='LOGISTIC'),
    /// same X; reference and onnxruntime give scores [[0.0090133, 0.99098665], [0.23147522, 0.76852483], [0.99987662, 0.00012339]].
    @Test("a binary LinearClassifier gives (−s, s) before the transform, as the reference")
    func linearClassifier() throws {
        let node = makeNode("LinearClassifier", ["X"], ["label", "scores"], domain: "ai.onnx.ml", [
            floatsAttribute("coefficients", [1, -2]), floatsAttribute("intercepts", [0.5]), intsAttribute("classlabels_ints", [0, 1]),
            stringAttribute("post_transform", "LOGISTIC"),
        ])
        let m = try load(makeModel(nodes: [node], inputs: [tensorInfo("X", [nil, 2])],
                                   outputs: [tensorInfo("label", [nil], type: .int64), tensorInfo("scores", [nil, 2])], mlOpset: 1))
        let out = try m.run(["X": .float(Tensor(shape: [3, 2], scalars: [0.2, -2, 0.7, 0, 0.5, 5]))])
        #expect(out["label"]!.intTensor!.values == [1, 1, 0])
        assertClose(out["scores"]!.floatTensor!.scalars, [0.0090133, 0.99098665, 0.23147522, 0.76852483, 0.99987662, 0.00012339], atol: 1e-6)
    }

    @Test("Scaler, Normalizer and LinearRegressor")
    func preprocessing() throws {
        let x = Tensor(shape: [2, 2], scalars: [1, 2, 3, -4])
        let scaler = try load(makeModel(nodes: [makeNode("Scaler", ["X"], ["Y"], domain: "ai.onnx.ml", [floatsAttribute("offset", [1, 2]), floatsAttribute("scale", [2, 0.5])])],
                                        inputs: [tensorInfo("X", [nil, 2])], outputs: [tensorInfo("Y", [nil, 2])], mlOpset: 1))
        #expect(try scaler(x).floatTensor!.scalars == [0, 0, 4, -3])
        let normalizer = try load(makeModel(nodes: [makeNode("Normalizer", ["X"], ["Y"], domain: "ai.onnx.ml", [stringAttribute("norm", "L1")])],
                                            inputs: [tensorInfo("X", [nil, 2])], outputs: [tensorInfo("Y", [nil, 2])], mlOpset: 1))
        assertClose(try normalizer(x).floatTensor!.scalars, [1.0 / 3, 2.0 / 3, 3.0 / 7, -4.0 / 7], atol: 1e-6)
        let regressor = try load(makeModel(nodes: [makeNode("LinearRegressor", ["X"], ["Y"], domain: "ai.onnx.ml", [floatsAttribute("coefficients", [1, 1, 2, -1]), floatsAttribute("intercepts", [0, 1]), intAttribute("targets", 2)])],
                                           inputs: [tensorInfo("X", [nil, 2])], outputs: [tensorInfo("Y", [nil, 2])], mlOpset: 1))
        #expect(try regressor(x).floatTensor!.scalars == [3, 1, -1, 11])
    }
}
