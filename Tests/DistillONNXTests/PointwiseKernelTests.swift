import CKernels
@testable import DistillONNX
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// The direct 1×1 convolution kernel (Sources/CKernels/conv_pointwise.c), at every level this CPU
// has (AVX2 + FMA, AVX-512), against the BLAS path it replaces (`ONNXModel.pointwiseKernel` 0):
// the same sums in another order, so equal within float rounding; Relu's and Clip's NaN rules
// exactly.

/// Deterministic values in [-1, 1).
private func values(_ count: Int, seed: UInt64) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1..<1, using: &g) }
}

/// The kernel's levels this CPU runs: 1 (AVX2 + FMA), 2 (AVX-512).
private let levels: [Int32] = [1, 2].filter { level in
    var (w, x, y): (Float, Float, Float) = (1, 1, 0)
    return dk_pointwise_conv_level(level, 1, 1, 1, &w, &x, nil, nil, &y, 0, 0, 0) == 0 && y == 1
}

/// `pointwiseConv2d` on the direct kernel at `level`, or on BLAS (level 0).
private func pointwise(level: Int32, _ x: Tensor, _ w: Tensor, _ b: Tensor?, gate: Tensor? = nil, residual: Tensor? = nil,
                       activation: FusedActivation?) -> Tensor {
    ONNXModel.$pointwiseKernel.withValue(level) {
        ONNXOps.pointwiseConv2d(x, w, b, gate: gate, residual: residual, activation: activation)
    }
}

@Suite("ONNX direct 1×1 convolution kernel", .enabled(if: !levels.isEmpty, "the kernel needs AVX2 + FMA or AVX-512"))
struct PointwiseKernelTests {
    @Test("Odd channel counts, pixel tails, bias, residual, gate and every fused activation match the BLAS path")
    func matchesBLAS() throws {
        // (images, input channels, output channels, height, width): tails of the 8- and 6-row
        // and 48- and 16-pixel tiles on both sides, one pixel, one channel, and a column block
        // boundary (k + m = 1,060: one strip per block, so 1,000 pixels cross 21 or 63).
        let shapes = [(2, 1, 1, 1, 1), (1, 3, 7, 1, 47), (3, 16, 9, 7, 7), (2, 33, 17, 5, 13), (1, 5, 8, 4, 12),
                      (2, 24, 144, 6, 8), (1, 96, 24, 14, 14), (1, 1000, 60, 20, 50)]
        let activations: [FusedActivation?] = [nil, .relu, .clip(0, 6), .clip(-0.25, 0.5), .sigmoid, .silu, .hardSwish]
        for (index, (n, k, m, h, w)) in shapes.enumerated() {
            let x = Tensor(shape: [n, k, h, w], scalars: values(n * k * h * w, seed: UInt64(10 * index + 1)))
            let weight = Tensor(shape: [m, k, 1, 1], scalars: values(m * k, seed: UInt64(10 * index + 2)))
            let bias = Tensor(shape: [m], scalars: values(m, seed: UInt64(10 * index + 3)))
            let residual = Tensor(shape: [n, m, h, w], scalars: values(n * m * h * w, seed: UInt64(10 * index + 4)))
            let gate = Tensor(shape: [n, k, 1, 1], scalars: values(n * k, seed: UInt64(10 * index + 5)))
            // Products of k terms below 1 in size: rounding grows like k·eps at worst.
            let tolerance = 4e-7 * Double(k) + 1e-6
            for (a, activation) in activations.enumerated() {
                let withBias = a % 2 == 0 ? bias : nil
                let withResidual = a % 3 == 1 ? residual : nil
                let withGate = a % 4 == 3 ? gate : nil
                let want = pointwise(level: 0, x, weight, withBias, gate: withGate, residual: withResidual, activation: activation)
                for level in levels {
                    let got = pointwise(level: level, x, weight, withBias, gate: withGate, residual: withResidual, activation: activation)
                    #expect(got.shape == [n, m, h, w])
                    assertClose(got.scalars, want.scalars, atol: tolerance, rtol: tolerance,
                                "level \(level), shape \(index), activation \(activation?.description ?? "none")")
                }
            }
        }
    }

    @Test("Relu turns NaN into 0 and Clip keeps it, as the BLAS path's activation pass does")
    func nanRules() throws {
        var xs = values(2 * 3 * 50, seed: 7)
        xs[4] = .nan; xs[57] = .nan  // image 0: channel 0, pixel 4 and channel 1, pixel 7
        let x = Tensor(shape: [2, 3, 5, 10], scalars: xs)
        let weight = Tensor(shape: [9, 3, 1, 1], scalars: values(27, seed: 8))
        for level in levels {
            for activation in [FusedActivation.relu, .clip(0, 6)] {
                let got = pointwise(level: level, x, weight, nil, activation: activation)
                let want = pointwise(level: 0, x, weight, nil, activation: activation)
                #expect(got.scalars.map(\.isNaN) == want.scalars.map(\.isNaN), "\(activation)")
                #expect(got.scalars.filter(\.isNaN).count == (activation == .relu ? 0 : 2 * 9))
                assertClose(got.scalars.map { $0.isNaN ? 0 : $0 }, want.scalars.map { $0.isNaN ? 0 : $0 }, atol: 1e-5, rtol: 1e-5)
            }
        }
    }

    @Test("An inverted residual block (expand + Clip, depthwise + Clip, project + Add) on the kernel equals the graph as written on BLAS")
    func blockMatchesWrittenGraph() throws {
        let (c, e) = (5, 19)  // odd channel counts: row tails in both 1×1 convolutions
        let nodes = [
            makeNode("Conv", ["x", "wexp", "bexp"], ["c1"], name: "expand"),
            makeNode("Clip", ["c1", "lo", "hi"], ["a1"]),
            makeNode("Conv", ["a1", "wdw", "bdw"], ["c2"], name: "depthwise", [intAttribute("group", e), intsAttribute("pads", [1, 1, 1, 1])]),
            makeNode("Clip", ["c2", "lo", "hi"], ["a2"]),
            makeNode("Conv", ["a2", "wproj", "bproj"], ["c3"], name: "project"),
            makeNode("Add", ["x", "c3"], ["y"]),
        ]
        let inits = [
            floatTensor("wexp", [e, c, 1, 1], values(e * c, seed: 1)), floatTensor("bexp", [e], values(e, seed: 2)),
            floatTensor("wdw", [e, 1, 3, 3], values(e * 9, seed: 3)), floatTensor("bdw", [e], values(e, seed: 4)),
            floatTensor("wproj", [c, e, 1, 1], values(c * e, seed: 5)), floatTensor("bproj", [c], values(c, seed: 6)),
            floatTensor("lo", [], [0]), floatTensor("hi", [], [6]),
        ]
        let model = try load(makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, c, 7, 9])], outputs: [tensorInfo("y", [nil, c, 7, 9])],
                                       initializers: inits, opset: 17))
        #expect(model.optimizedPlan.steps.map(\.label) == ["[Conv+Clip → Conv[grouped]+Clip → Conv+Add]"])
        let feeds = ["x": ONNXValue.float(Tensor(shape: [3, c, 7, 9], scalars: values(3 * c * 63, seed: 9)))]
        let written = try ONNXModel.$pointwiseKernel.withValue(0) { try model.run(feeds, extra: [], observe: nil, optimized: false) }
        for level in levels {
            let fused = try ONNXModel.$pointwiseKernel.withValue(level) { try model.run(feeds, extra: [], observe: nil, optimized: true) }
            assertClose(fused["y"]!.floatTensor!.scalars, written["y"]!.floatTensor!.scalars, atol: 1e-5, rtol: 1e-5, "level \(level)")
        }
    }
}
