import CKernels
@testable import DistillONNX
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// The load-time graph optimisations (GraphOptimizer.swift) and the kernels they route to: every
// result must equal the graph as written within float rounding.

/// Deterministic values in [-1, 1).
private func values(_ count: Int, seed: UInt64) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1..<1, using: &g) }
}

private func tensorAttribute(_ name: String, _ t: Onnx_TensorProto) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name; a.type = .tensor; a.t = t
    return a
}

/// A small CNN with every pattern the optimiser rewrites: Identity, Dropout, Constant Clip limits,
/// Conv + BatchNormalization + Relu, a depthwise Conv + Clip(0, 6), a 1×1 Conv + x·Sigmoid(x),
/// squeeze-excitation (GlobalAveragePool, 1×1 Convs, Sigmoid, Mul) and a residual Add (folded
/// into the projection).
private func patternModel() -> Onnx_ModelProto {
    let c = 8
    var inits: [Onnx_TensorProto] = [
        floatTensor("w1", [c, 3, 3, 3], values(c * 27, seed: 1)), floatTensor("b1", [c], values(c, seed: 2)),
        floatTensor("gamma", [c], values(c, seed: 3).map { 1 + $0 / 2 }), floatTensor("beta", [c], values(c, seed: 4)),
        floatTensor("mean", [c], values(c, seed: 5)), floatTensor("var", [c], values(c, seed: 6).map { 1 + $0 / 2 }),
        floatTensor("wdw", [c, 1, 3, 3], values(c * 9, seed: 7)), floatTensor("bdw", [c], values(c, seed: 8)),
        floatTensor("wpw", [c, c, 1, 1], values(c * c, seed: 9)),
        floatTensor("wse1", [2, c, 1, 1], values(2 * c, seed: 10)), floatTensor("bse1", [2], values(2, seed: 11)),
        floatTensor("wse2", [c, 2, 1, 1], values(2 * c, seed: 12)), floatTensor("bse2", [c], values(c, seed: 13)),
        floatTensor("wproj", [c, c, 1, 1], values(c * c, seed: 14)), floatTensor("bproj", [c], values(c, seed: 15)),
    ]
    inits.append(floatTensor("unused", [1], [0]))
    let nodes = [
        makeNode("Identity", ["w1"], ["w1_alias"]),
        makeNode("Conv", ["x", "w1_alias", "b1"], ["c1"], name: "conv1", [intsAttribute("pads", [1, 1, 1, 1])]),
        makeNode("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn1"], [floatAttribute("epsilon", 1e-3)]),
        makeNode("Relu", ["bn1"], ["r1"]),
        makeNode("Dropout", ["r1"], ["d1"]),
        makeNode("Constant", [], ["lo"], [tensorAttribute("value", floatTensor("", [], [0]))]),
        makeNode("Constant", [], ["hi"], [tensorAttribute("value", floatTensor("", [], [0.5]))]),
        makeNode("Conv", ["d1", "wdw", "bdw"], ["c2"], name: "depthwise",
                 [intAttribute("group", c), intsAttribute("pads", [1, 1, 1, 1]), intsAttribute("strides", [2, 2])]),
        makeNode("Clip", ["c2", "lo", "hi"], ["r2"]),
        makeNode("Conv", ["r2", "wpw"], ["c3"], name: "pointwise"),
        makeNode("Sigmoid", ["c3"], ["s3"]),
        makeNode("Mul", ["c3", "s3"], ["silu"]),
        makeNode("GlobalAveragePool", ["silu"], ["pooled"]),
        makeNode("Conv", ["pooled", "wse1", "bse1"], ["se1"], name: "se1"),
        makeNode("Relu", ["se1"], ["se1r"]),
        makeNode("Conv", ["se1r", "wse2", "bse2"], ["se2"], name: "se2"),
        makeNode("Sigmoid", ["se2"], ["gate"]),
        makeNode("Mul", ["silu", "gate"], ["excited"]),
        makeNode("Conv", ["excited", "wproj", "bproj"], ["projected"], name: "project"),
        makeNode("Add", ["projected", "r2"], ["y"]),
    ]
    return makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, 3, 15, 15])], outputs: [tensorInfo("y", [nil, c, 8, 8])],
                     initializers: inits, opset: 17)
}

@Suite("ONNX graph optimiser")
struct GraphOptimizerTests {
    @Test("Folding, removal and fusion: the optimised graph computes what the graph as written does")
    func optimisedEqualsWritten() throws {
        let model = try load(patternModel())
        let labels = model.optimizedPlan.steps.map(\.label)
        #expect(labels.contains("Conv+Relu"))            // conv1 with its BatchNormalization folded, then Relu
        #expect(labels.contains("Conv[grouped]+Clip"))   // depthwise + Clip(0, 0.5) from Constant nodes
        #expect(labels.contains("Conv+SiLU"))            // pointwise + x·Sigmoid(x)
        #expect(labels.contains("Conv+Sigmoid"))         // squeeze-excitation's gate
        #expect(labels.contains("Mul+Conv+Add"))         // the gate scaling the 1×1 projection's weight, the residual Add after it
        for removed in ["Identity", "Dropout", "Constant", "BatchNormalization", "Relu", "Clip", "Sigmoid", "Mul", "Add"] {
            #expect(!labels.contains(removed), "\(removed) should be folded or fused")
        }
        #expect(model.optimizedPlan.steps.count == 7)
        let x = Tensor(shape: [3, 3, 15, 15], scalars: values(3 * 3 * 225, seed: 42))
        let optimised = try model.run(["x": .float(x)], extra: [], observe: nil, optimized: true)["y"]!.floatTensor!
        let written = try model.run(["x": .float(x)], extra: [], observe: nil, optimized: false)["y"]!.floatTensor!
        #expect(optimised.shape == [3, 8, 8, 8])
        assertClose(optimised.scalars, written.scalars, atol: 1e-5, rtol: 1e-4)
    }

    @Test("A Mul folded into a 1×1 Conv whose factors are not a per-image gate runs as written")
    func gateFallsBack() throws {
        let nodes = [makeNode("Mul", ["a", "b"], ["p"]), makeNode("Conv", ["p", "w"], ["y"], name: "proj")]
        let model = try load(makeModel(nodes: nodes, inputs: [tensorInfo("a", [nil, 4, 5, 5]), tensorInfo("b", [nil, nil, 5, 5])],
                                       outputs: [tensorInfo("y", [nil, 3, 5, 5])],
                                       initializers: [floatTensor("w", [3, 4, 1, 1], values(12, seed: 1))]))
        #expect(model.optimizedPlan.steps.map(\.label) == ["Mul+Conv"])
        let feeds: [String: ONNXValue] = ["a": .float(Tensor(shape: [2, 4, 5, 5], scalars: values(200, seed: 2))),
                                          "b": .float(Tensor(shape: [2, 4, 5, 5], scalars: values(200, seed: 3)))]
        let optimised = try model.run(feeds)["y"]!.floatTensor!
        let written = try model.run(feeds, extra: [], observe: nil, optimized: false)["y"]!.floatTensor!
        assertClose(optimised.scalars, written.scalars, atol: 1e-6, rtol: 1e-5)
        // A gate of the wrong shape is the Mul's error, as in the graph as written.
        let bad: [String: ONNXValue] = ["a": feeds["a"]!, "b": .float(Tensor.zeros([2, 3, 5, 5]))]
        #expect(errorMessage { _ = try model.run(bad) }.contains("broadcast"))
    }

    @Test("A value a fusion removes can still be asked for: the graph then runs as written")
    func extraValueFallsBack() throws {
        let model = try load(patternModel())
        let x = Tensor(shape: [1, 3, 15, 15], scalars: values(225 * 3, seed: 7))
        let out = try model.run(["x": .float(x)], extra: ["c2", "bn1"])
        let reference = try model.run(["x": .float(x)], extra: ["c2", "bn1"], observe: nil, optimized: false)
        for name in ["y", "c2", "bn1"] {
            assertClose(out[name]!.floatTensor!.scalars, reference[name]!.floatTensor!.scalars, atol: 1e-6, rtol: 1e-6, name)
        }
        #expect(!model.optimizedPlan.available.contains("c2"))
    }

    @Test("Depthwise Conv: strides, dilations, asymmetric padding, 5×5 kernels and row tails match the engine's grouped conv2d")
    func depthwiseMatchesEngine() throws {
        // (channels, height, width, kernel, stride, dilation, pads [top, left, bottom, right])
        let cases: [(Int, Int, Int, Int, Int, Int, [Int])] = [
            (3, 9, 37, 3, 1, 1, [1, 1, 1, 1]), (4, 12, 12, 3, 2, 1, [1, 1, 1, 1]), (2, 17, 20, 5, 2, 1, [2, 2, 2, 2]),
            (5, 7, 7, 5, 1, 1, [2, 2, 2, 2]), (2, 11, 14, 3, 1, 2, [2, 2, 2, 2]), (3, 10, 10, 3, 2, 1, [0, 0, 1, 1]),
            (1, 6, 40, 3, 3, 1, [0, 1, 0, 1]),
        ]
        for (index, (ch, h, w, k, stride, dilation, pads)) in cases.enumerated() {
            let x = Tensor(shape: [2, ch, h, w], scalars: values(2 * ch * h * w, seed: UInt64(index)))
            let weight = Tensor(shape: [ch, 1, k, k], scalars: values(ch * k * k, seed: UInt64(100 + index)))
            let bias = Tensor(shape: [ch], scalars: values(ch, seed: UInt64(200 + index)))
            let got = try runSingle("Conv", [x], attributes: [intAttribute("group", ch), intsAttribute("strides", [stride, stride]),
                                                              intsAttribute("dilations", [dilation, dilation]), intsAttribute("pads", pads)],
                                    initializers: [floatTensor("w", weight.shape, weight.scalars), floatTensor("b", [ch], bias.scalars)],
                                    extraInputs: ["w", "b"]).floatTensor!
            // Reference: pad explicitly, then the engine's grouped im2col convolution.
            let padded = Tensor.zeros([2, ch, h + pads[0] + pads[2], w + pads[1] + pads[3]])
            for p in 0..<(2 * ch) { for i in 0..<h { for j in 0..<w {
                padded.data[(p * padded.shape[2] + i + pads[0]) * padded.shape[3] + j + pads[1]] = x.data[(p * h + i) * w + j]
            } } }
            let expected = conv2d(padded, weight: weight, bias: bias,
                                  config: Conv2dConfig(stride: (stride, stride), dilation: (dilation, dilation), groups: ch))
            #expect(got.shape == expected.shape, "case \(index)")
            assertClose(got.scalars, expected.scalars, atol: 1e-5, rtol: 1e-5, "case \(index)")
        }
    }

    @Test("The depthwise and max-pool kernels' vector (AVX2, AVX-512) and portable loops agree, and each activation matches its formula")
    func depthwiseLevelsAndActivations() throws {
        // (height, width, kernel, stride, dilation, pad): 3×3 and 5×5 (the unrolled tap loops),
        // stride 2 on rows wide enough for the vector strided copy and with odd widths and pads
        // around it, stride 1 and 3, dilation 2, rows narrower than a vector.
        let cases: [(Int, Int, Int, Int, Int, Int)] = [
            (13, 21, 3, 2, 1, 1), (9, 112, 3, 2, 1, 1), (8, 97, 3, 2, 1, 0), (7, 80, 5, 2, 1, 2), (6, 67, 5, 1, 1, 2),
            (10, 40, 3, 1, 2, 2), (5, 50, 3, 3, 1, 1), (7, 7, 3, 1, 1, 1), (4, 4, 7, 1, 1, 3), (11, 35, 2, 2, 1, 0),
        ]
        for (index, (h, wd, k, stride, dilation, pad)) in cases.enumerated() {
            let span = dilation * (k - 1) + 1
            let outH = (h + 2 * pad - span) / stride + 1, outW = (wd + 2 * pad - span) / stride + 1
            var shape = dk_window_shape(channels: 3, height: h, width: wd, kernel_h: k, kernel_w: k, stride_h: stride, stride_w: stride,
                                        pad_top: pad, pad_left: pad, dilation_h: dilation, dilation_w: dilation, out_h: outH, out_w: outW)
            let x = values(2 * 3 * h * wd, seed: UInt64(5 + index)), w = values(3 * k * k, seed: 6), b = values(3, seed: 7)
            var scratch = [Float](repeating: 0, count: dk_depthwise_scratch_floats(&shape))
            var portable = [Float](repeating: 0, count: 2 * 3 * outH * outW), vector = portable
            #expect(dk_depthwise_conv2d_level(0, &shape, x, w, b, &portable, 0, 6, 0, 0, 0, &scratch) == 0)
            for level: Int32 in [1, 2] where dk_depthwise_conv2d_level(level, &shape, x, w, b, &vector, 0, 6, 0, 0, 0, &scratch) == 0 {
                assertClose(vector, portable, atol: 1e-6, rtol: 1e-6, "depthwise case \(index), level \(level)")
            }
            #expect(dk_max_pool2d_level(0, &shape, x, &portable, 0, 6, &scratch) == 0)
            if dk_max_pool2d_level(2, &shape, x, &vector, 0, 6, &scratch) == 0 {
                #expect(vector == portable, "max-pool case \(index)")
            }
        }
        let input: [Float] = values(1000, seed: 9).map { $0 * 12 } + [0, -0.0, 50, -50, 100, -100]
        func activated(_ kind: dk_activation, lo: Float = 0, hi: Float = 0, _ x: [Float] = input) -> [Float] {
            var y = x
            let count = y.count
            dk_activation_inplace(&y, count, Int32(kind.rawValue), lo, hi)
            return y
        }
        // NaN: Relu gives 0 (as the Relu operator), Clip and the sigmoids keep NaN.
        #expect(activated(DK_ACTIVATION_RELU, [.nan]) == [0])
        #expect(activated(DK_ACTIVATION_CLIP, lo: 0, hi: 6, [.nan])[0].isNaN)
        #expect(activated(DK_ACTIVATION_SILU, [.nan])[0].isNaN)
        func sigmoid(_ v: Float) -> Float { v >= 0 ? 1 / (1 + Foundation.exp(-v)) : Foundation.exp(v) / (1 + Foundation.exp(v)) }
        assertClose(activated(DK_ACTIVATION_RELU), input.map { $0 > 0 ? $0 : 0 }, atol: 0, rtol: 0)
        assertClose(activated(DK_ACTIVATION_CLIP, lo: -1, hi: 6), input.map { $0.isNaN ? $0 : Swift.min(Swift.max($0, -1), 6) }, atol: 0, rtol: 0)
        assertClose(activated(DK_ACTIVATION_SIGMOID), input.map(sigmoid), atol: 1e-7, rtol: 1e-6)
        assertClose(activated(DK_ACTIVATION_SILU), input.map { $0 * sigmoid($0) }, atol: 1e-7, rtol: 1e-6)
        assertClose(activated(DK_ACTIVATION_HARDSWISH), input.map { $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) }, atol: 1e-7, rtol: 1e-6)
    }

    @Test("2-D MaxPool on the C kernel equals the general loop (the one that also returns indices), NaN and ceil_mode included")
    func maxPoolMatchesGeneralLoop() throws {
        // (height, width, kernel, stride, dilation, pads, ceil_mode)
        let cases: [(Int, Int, Int, Int, Int, [Int], Int)] = [
            (112, 112, 3, 2, 1, [1, 1, 1, 1], 0), (9, 13, 2, 2, 1, [0, 0, 0, 0], 0), (10, 11, 3, 2, 1, [0, 0, 0, 0], 1),
            (8, 19, 3, 1, 2, [2, 1, 0, 2], 0), (7, 7, 5, 3, 1, [2, 2, 2, 2], 1),
        ]
        for (index, (h, w, k, stride, dilation, pads, ceil)) in cases.enumerated() {
            var scalars = values(2 * 3 * h * w, seed: UInt64(index))
            scalars[5] = .nan
            let x = Tensor(shape: [2, 3, h, w], scalars: scalars)
            let attributes = [intsAttribute("kernel_shape", [k, k]), intsAttribute("strides", [stride, stride]),
                              intsAttribute("dilations", [dilation, dilation]), intsAttribute("pads", pads), intAttribute("ceil_mode", ceil)]
            let fast = try runSingle("MaxPool", [x], attributes: attributes).floatTensor!
            // With the Indices output asked for, the general loop runs.
            let node = makeNode("MaxPool", ["x"], ["y", "i"], attributes)
            let model = try load(makeModel(nodes: [node], inputs: [tensorInfo("x", [2, 3, h, w])],
                                           outputs: [tensorInfo("y", []), tensorInfo("i", [], type: .int64)]))
            let general = try model.run(["x": .float(x)])["y"]!.floatTensor!
            #expect(fast.shape == general.shape, "case \(index)")
            #expect(fast.scalars.map(\.isNaN) == general.scalars.map(\.isNaN), "case \(index)")
            #expect(fast.scalars.filter { !$0.isNaN } == general.scalars.filter { !$0.isNaN }, "case \(index)")
        }
    }

    @Test("A 1×1 Conv runs as one GEMM per image, equal to the engine's conv2d; large Add and per-plane Mul are threaded")
    func pointwiseAndElementwise() throws {
        let x = Tensor(shape: [3, 6, 9, 10], scalars: values(3 * 6 * 90, seed: 1))
        let weight = Tensor(shape: [5, 6, 1, 1], scalars: values(30, seed: 2)), bias = Tensor(shape: [5], scalars: values(5, seed: 3))
        let got = try runSingle("Conv", [x], initializers: [floatTensor("w", weight.shape, weight.scalars), floatTensor("b", [5], bias.scalars)],
                                extraInputs: ["w", "b"]).floatTensor!
        assertClose(got.scalars, conv2d(x, weight: weight, bias: bias).scalars, atol: 1e-5, rtol: 1e-5)

        let big = Tensor(shape: [4, 8, 16, 16], scalars: values(4 * 8 * 256, seed: 4))
        let other = Tensor(shape: [4, 8, 16, 16], scalars: values(4 * 8 * 256, seed: 5))
        let gate = Tensor(shape: [4, 8, 1, 1], scalars: values(32, seed: 6))
        for (op, f) in [("Add", { (a: Float, b: Float) in a + b }), ("Sub", { $0 - $1 }), ("Mul", { $0 * $1 }), ("Div", { $0 / $1 })] {
            let same = try runSingle(op, [big, other]).floatTensor!
            #expect(same.scalars == zip(big.scalars, other.scalars).map(f), "\(op), equal shapes")
            let planes = try runSingle(op, [big, gate]).floatTensor!
            #expect(planes.scalars == big.scalars.enumerated().map { f($1, gate.scalars[$0 / 256]) }, "\(op), per plane")
            let reversed = try runSingle(op, [gate, big]).floatTensor!
            #expect(reversed.scalars == big.scalars.enumerated().map { f(gate.scalars[$0 / 256], $1) }, "\(op), per plane, scalar first")
        }
    }
}
