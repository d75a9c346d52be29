@testable import DistillONNX
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Residual Adds folded into the Conv before them (GraphOptimizer.swift) and batches run a few
// images at a time (BatchChunks.swift): both must compute what the graph as written computes on
// the whole batch, and refuse or fall back where they cannot.

/// Deterministic values in [-1, 1).
private func values(_ count: Int, seed: UInt64) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1..<1, using: &g) }
}

/// A MobileNet-like network on [N, 3, 12, 12]: a strided 3×3 Conv + BatchNormalization + Clip(0, 6),
/// an inverted residual block (1×1 expand + Relu, depthwise 3×3 + Relu, 1×1 project, residual Add),
/// a ResNet-style 3×3 Conv + Add + Relu, then GlobalAveragePool, Flatten (or a Reshape to
/// `reshape`) and Gemm.
private func blockModel(reshape: [Int64]? = nil) -> Onnx_ModelProto {
    let c = 6, e = 12
    let inits: [Onnx_TensorProto] = [
        floatTensor("w0", [c, 3, 3, 3], values(c * 27, seed: 1)), floatTensor("b0", [c], values(c, seed: 2)),
        floatTensor("gamma", [c], values(c, seed: 3).map { 1 + $0 / 2 }), floatTensor("beta", [c], values(c, seed: 4)),
        floatTensor("mean", [c], values(c, seed: 5)), floatTensor("var", [c], values(c, seed: 6).map { 1 + $0 / 2 }),
        floatTensor("lo", [], [0]), floatTensor("hi", [], [6]),
        floatTensor("wexp", [e, c, 1, 1], values(e * c, seed: 7)), floatTensor("bexp", [e], values(e, seed: 8)),
        floatTensor("wdw", [e, 1, 3, 3], values(e * 9, seed: 9)), floatTensor("bdw", [e], values(e, seed: 10)),
        floatTensor("wproj", [c, e, 1, 1], values(c * e, seed: 11)), floatTensor("bproj", [c], values(c, seed: 12)),
        floatTensor("w3", [c, c, 3, 3], values(c * c * 9, seed: 13)),
        floatTensor("wfc", [4, c], values(4 * c, seed: 14)), floatTensor("bfc", [4], values(4, seed: 15)),
        int64Tensor("shape", [reshape?.count ?? 0], reshape ?? []),
    ]
    let flatten = reshape == nil ? makeNode("Flatten", ["pooled"], ["flat"]) : makeNode("Reshape", ["pooled", "shape"], ["flat"])
    let nodes = [
        makeNode("Conv", ["x", "w0", "b0"], ["c0"], name: "stem", [intsAttribute("pads", [1, 1, 1, 1]), intsAttribute("strides", [2, 2])]),
        makeNode("BatchNormalization", ["c0", "gamma", "beta", "mean", "var"], ["bn0"]),
        makeNode("Clip", ["bn0", "lo", "hi"], ["a0"]),
        makeNode("Conv", ["a0", "wexp", "bexp"], ["c1"], name: "expand"),
        makeNode("Relu", ["c1"], ["a1"]),
        makeNode("Conv", ["a1", "wdw", "bdw"], ["c2"], name: "depthwise", [intAttribute("group", e), intsAttribute("pads", [1, 1, 1, 1])]),
        makeNode("Relu", ["c2"], ["a2"]),
        makeNode("Conv", ["a2", "wproj", "bproj"], ["c3"], name: "project"),
        makeNode("Add", ["a0", "c3"], ["block"]),
        makeNode("Conv", ["block", "w3"], ["c4"], name: "resnet", [intsAttribute("pads", [1, 1, 1, 1])]),
        makeNode("Add", ["c4", "block"], ["s4"]),
        makeNode("Relu", ["s4"], ["a4"]),
        makeNode("GlobalAveragePool", ["a4"], ["pooled"]),
        flatten,
        makeNode("Gemm", ["flat", "wfc", "bfc"], ["y"], [intAttribute("transB", 1)]),
    ]
    return makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, 3, 12, 12])], outputs: [tensorInfo("y", [nil, 4])],
                     initializers: inits, opset: 17)
}

private func input(_ n: Int, seed: UInt64 = 42) -> [String: ONNXValue] {
    ["x": .float(Tensor(shape: [n, 3, 12, 12], scalars: values(n * 3 * 144, seed: seed)))]
}

/// The model's outputs with batches cut into `chunk` images (0: the whole batch at once).
private func run(_ model: ONNXModel, _ feeds: [String: ONNXValue], chunk: Int, extra: [String] = [],
                 optimized: Bool = true) throws -> [String: ONNXValue] {
    try ONNXModel.$chunkImages.withValue(chunk) { try model.run(feeds, extra: extra, observe: nil, optimized: optimized) }
}

@Suite("ONNX residual fusion and batch chunks")
struct BatchChunkTests {
    @Test("A residual Add folds into the Conv before it, with the Relu after it; results equal the graph as written")
    func residualFusion() throws {
        let model = try load(blockModel())
        let labels = model.optimizedPlan.steps.map(\.label)
        #expect(labels == ["Conv+Clip", "[Conv+Relu → Conv[grouped]+Relu → Conv+Add]", "Conv+Add+Relu", "GlobalAveragePool", "Flatten", "Gemm"])
        let feeds = input(5)
        let written = try run(model, feeds, chunk: 0, optimized: false)["y"]!.floatTensor!
        let optimised = try run(model, feeds, chunk: 0)["y"]!.floatTensor!
        assertClose(optimised.scalars, written.scalars, atol: 1e-5, rtol: 1e-5)
    }

    @Test("A value read by a fused Add and by later nodes keeps its contents; an Add whose operand comes later is not folded")
    func sharedResidualKept() throws {
        // r = Relu(x); y = Conv1x1(r) + r; z = r · 2 (read after the fused Conv wrote y); Add(Conv(x), later) stays an Add.
        let nodes = [
            makeNode("Relu", ["x"], ["r"]),
            makeNode("Conv", ["r", "w"], ["c"], name: "pw"),
            makeNode("Add", ["c", "r"], ["y"]),
            makeNode("Mul", ["r", "two"], ["z"]),
            makeNode("Conv", ["x", "w"], ["d"], name: "pw2"),
            makeNode("Sigmoid", ["x"], ["later"]),
            makeNode("Add", ["d", "later"], ["u"]),
        ]
        let model = try load(makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, 4, 5, 5])],
                                       outputs: [tensorInfo("y", [nil, 4, 5, 5]), tensorInfo("z", [nil, 4, 5, 5]), tensorInfo("u", [nil, 4, 5, 5])],
                                       initializers: [floatTensor("w", [4, 4, 1, 1], values(16, seed: 1)), floatTensor("two", [], [2])]))
        let labels = model.optimizedPlan.steps.map(\.label)
        #expect(labels.filter { $0 == "Conv+Add" }.count == 1)
        #expect(labels.contains("Add"))  // d + later: later is computed after pw2
        let x = Tensor(shape: [3, 4, 5, 5], scalars: values(300, seed: 2))
        let out = try run(model, ["x": .float(x)], chunk: 0)
        let reference = try run(model, ["x": .float(x)], chunk: 0, optimized: false)
        for name in ["y", "z", "u"] {
            assertClose(out[name]!.floatTensor!.scalars, reference[name]!.floatTensor!.scalars, atol: 1e-6, rtol: 1e-6, name)
        }
        #expect(out["z"]!.floatTensor!.scalars == x.scalars.map { Swift.max($0, 0) * 2 })
    }

    @Test("A residual that broadcasts runs the Add as written, then the fused activation")
    func broadcastResidualFallsBack() throws {
        let nodes = [
            makeNode("Conv", ["x", "w"], ["c"], name: "pw"),
            makeNode("Add", ["bias", "c"], ["s"]),
            makeNode("Relu", ["s"], ["y"]),
        ]
        let model = try load(makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, 4, 5, 5]), tensorInfo("bias", [nil, nil, 1, 1])],
                                       outputs: [tensorInfo("y", [nil, 4, 5, 5])],
                                       initializers: [floatTensor("w", [4, 4, 1, 1], values(16, seed: 1))]))
        #expect(model.optimizedPlan.steps.map(\.label) == ["Conv+Add+Relu"])
        let feeds: [String: ONNXValue] = ["x": .float(Tensor(shape: [2, 4, 5, 5], scalars: values(200, seed: 2))),
                                          "bias": .float(Tensor(shape: [2, 4, 1, 1], scalars: values(8, seed: 3)))]
        let out = try run(model, feeds, chunk: 0)["y"]!.floatTensor!
        let reference = try run(model, feeds, chunk: 0, optimized: false)["y"]!.floatTensor!
        assertClose(out.scalars, reference.scalars, atol: 1e-6, rtol: 1e-6)
        #expect(out.scalars.allSatisfy { $0 >= 0 })
        // A residual that fits neither way is the Add's own broadcasting error, as written.
        let bad: [String: ONNXValue] = ["x": feeds["x"]!, "bias": .float(Tensor.zeros([2, 3, 1, 1]))]
        #expect(errorMessage { _ = try run(model, bad, chunk: 0) }.contains("broadcast"))
    }

    @Test("A batch run in chunks equals the whole batch, call after call, including a short last chunk")
    func chunksEqualWholeBatch() throws {
        let model = try load(blockModel())
        #expect(model.chunkable)
        let feeds = input(37)
        let whole = try run(model, feeds, chunk: 0)["y"]!.floatTensor!
        for chunk in [1, 4, 8] {
            let first = try run(model, feeds, chunk: chunk)["y"]!.floatTensor!
            let second = try run(model, feeds, chunk: chunk)["y"]!.floatTensor!
            #expect(first.shape == [37, 4])
            #expect(first.scalars == second.scalars, "chunk \(chunk): two calls differ")
            assertClose(first.scalars, whole.scalars, atol: 1e-6, rtol: 1e-6, "chunk \(chunk)")
        }
        // A Reshape that infers the batch extent from fixed per-image extents also runs in chunks.
        let reshaped = try load(blockModel(reshape: [-1, 6]))
        #expect(reshaped.chunkable)
        assertClose(try run(reshaped, feeds, chunk: 4)["y"]!.floatTensor!.scalars, whole.scalars, atol: 1e-6, rtol: 1e-6)
    }

    @Test("Graphs that mix images are never cut into chunks")
    func mixingGraphsRunWhole() throws {
        // A Reshape that groups images in pairs: chunks would compute something else.
        #expect(!(try load(blockModel(reshape: [2, -1]))).chunkable)
        // A reduction over the batch axis, a Softmax, a fixed batch, an integer input.
        let reduce = try load(makeModel(nodes: [makeNode("ReduceMean", ["x"], ["y"], [intsAttribute("axes", [0])])],
                                        inputs: [tensorInfo("x", [nil, 3])], outputs: [tensorInfo("y", [nil])], opset: 13))
        #expect(!reduce.chunkable)
        let fixed = try load(makeModel(nodes: [makeNode("Relu", ["x"], ["y"])], inputs: [tensorInfo("x", [64, 3])],
                                       outputs: [tensorInfo("y", [64, 3])]))
        #expect(!fixed.chunkable)
        let integer = try load(makeModel(nodes: [makeNode("Cast", ["x"], ["y"], [intAttribute("to", 1)])],
                                         inputs: [tensorInfo("x", [nil, 3], type: .int64)], outputs: [tensorInfo("y", [nil, 3])]))
        #expect(!integer.chunkable)

        // Without a depthwise convolution (ResNet-like: im2col GEMMs over the whole batch) batches run whole.
        let plain = try load(makeModel(nodes: [makeNode("Conv", ["x", "w"], ["y"])], inputs: [tensorInfo("x", [nil, 2, 3, 3])],
                                       outputs: [tensorInfo("y", [nil, 2, 3, 3])], initializers: [floatTensor("w", [2, 2, 1, 1], values(4, seed: 1))]))
        #expect(!plain.chunkable)

        // A constant operand whose leading extent meets the batch axis: chunks fall back to the whole batch.
        let n = 24
        let scale = (0..<n).map { Float($0 + 1) }
        let broadcast = try load(makeModel(nodes: [makeNode("Conv", ["x", "ones"], ["d"], [intAttribute("group", 3)]), makeNode("Mul", ["d", "s"], ["y"])],
                                           inputs: [tensorInfo("x", [nil, 3, 2, 2])], outputs: [tensorInfo("y", [nil, 3, 2, 2])],
                                           initializers: [floatTensor("ones", [3, 1, 1, 1], [1, 1, 1]), floatTensor("s", [n, 1, 1, 1], scale)]))
        #expect(broadcast.chunkable)
        let x = Tensor(shape: [n, 3, 2, 2], scalars: values(n * 12, seed: 5))
        let y = try run(broadcast, ["x": .float(x)], chunk: 4)["y"]!.floatTensor!
        #expect(y.scalars == x.scalars.enumerated().map { $1 * scale[$0 / 12] })
    }

    @Test("Bad input gives the whole batch's error, chunks or not; a changed image changes only its own output")
    func errorsAsWhole() throws {
        // A residual that does not broadcast fails inside a chunk: the whole batch then runs and fails as written.
        let nodes = [makeNode("Conv", ["x", "wdw"], ["d"], name: "dw", [intAttribute("group", 4)]),
                     makeNode("Conv", ["d", "w"], ["c"], name: "pw"), makeNode("Add", ["c", "r"], ["y"])]
        let model = try load(makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, 4, 5, 5]), tensorInfo("r", [nil, nil, 1, 1])],
                                       outputs: [tensorInfo("y", [nil, 4, 5, 5])],
                                       initializers: [floatTensor("w", [4, 4, 1, 1], values(16, seed: 1)),
                                                      floatTensor("wdw", [4, 1, 1, 1], values(4, seed: 2))]))
        #expect(model.chunkable)
        let wrong: [String: ONNXValue] = ["x": .float(Tensor.zeros([20, 4, 5, 5])), "r": .float(Tensor.zeros([20, 3, 1, 1]))]
        let chunked = errorMessage { _ = try run(model, wrong, chunk: 4) }
        let whole = errorMessage { _ = try run(model, wrong, chunk: 0) }
        #expect(whole.contains("broadcast"))
        #expect(chunked == whole)

        let block = try load(blockModel())
        var scalars = values(19 * 3 * 144, seed: 9)
        let before = try run(block, ["x": .float(Tensor(shape: [19, 3, 12, 12], scalars: scalars))], chunk: 4)["y"]!.floatTensor!.scalars
        for i in 5 * 3 * 144..<6 * 3 * 144 { scalars[i] = -scalars[i] }
        let after = try run(block, ["x": .float(Tensor(shape: [19, 3, 12, 12], scalars: scalars))], chunk: 4)["y"]!.floatTensor!.scalars
        for image in 0..<19 {
            #expect((before[image * 4..<image * 4 + 4] == after[image * 4..<image * 4 + 4]) == (image != 5), "image \(image)")
        }
    }
}
