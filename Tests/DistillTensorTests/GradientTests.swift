@testable import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Central-difference checks of every differentiable op (see DistillTestSupport/GradientCheck.swift).
// Inputs sit away from kinks: ReLU/|x|/leaky ReLU see |x| ≥ 0.1, max and max-pool see distinct
// values 0.1 apart, clamp's bounds lie between samples, and log/sqrt/pow(0.5)/div see positive values.

/// One op under test: fresh inputs (tensors are reference types, so each run builds its own) and
/// the function of them whose gradients are checked.
struct GradCase: Sendable, CustomTestStringConvertible {
    let name: String
    let inputs: @Sendable () -> [Tensor]
    let f: @Sendable ([Tensor]) -> Tensor
    var epsilon: Float = 1e-2
    var atol: Double = 1e-3
    var rtol: Double = 1e-2
    var testDescription: String { name }

    init(_ name: String, epsilon: Float = 1e-2, atol: Double = 1e-3, rtol: Double = 1e-2,
         _ inputs: @escaping @Sendable () -> [Tensor], _ f: @escaping @Sendable ([Tensor]) -> Tensor) {
        self.name = name; self.inputs = inputs; self.f = f
        self.epsilon = epsilon; self.atol = atol; self.rtol = rtol
    }

    func run(sourceLocation: SourceLocation = #_sourceLocation) {
        let x = inputs()
        let report = expectGradients(name, inputs: x, epsilon: epsilon, atol: atol, rtol: rtol, sourceLocation: sourceLocation, f)
        #expect(report.checkedElements == x.filter(\.requiresGrad).reduce(0) { $0 + $1.count })
        #expect(report.inputsWithoutGradient.isEmpty, "\(name): \(report)")
    }
}

private func normal(_ shape: [Int], _ seed: UInt64, scale: Float = 1, shift: Float = 0) -> Tensor {
    .testNormal(shape, seed: seed, scale: scale, shift: shift)
}
private func positive(_ shape: [Int], _ seed: UInt64, low: Float = 0.5, high: Float = 2) -> Tensor {
    .testUniform(shape, seed: seed, low: low, high: high)
}

// MARK: - Elementwise

let arithmeticCases: [GradCase] = [
    GradCase("add same shape", { [normal([2, 3], 1), normal([2, 3], 2)] }) { $0[0] + $0[1] },
    GradCase("add [2,3]+[3]", { [normal([2, 3], 1), normal([3], 2)] }) { $0[0] + $0[1] },
    GradCase("add [3]+[2,3]", { [normal([3], 1), normal([2, 3], 2)] }) { $0[0] + $0[1] },
    GradCase("add rank-0 + [2,3]", { [normal([], 1), normal([2, 3], 2)] }) { $0[0] + $0[1] },
    GradCase("sub [2,3]-[3]", { [normal([2, 3], 3), normal([3], 4)] }) { $0[0] - $0[1] },
    GradCase("sub [2,1]-[1,3]", { [normal([2, 1], 3), normal([1, 3], 4)] }) { $0[0] - $0[1] },
    GradCase("mul same shape", { [normal([2, 3], 5), normal([2, 3], 6)] }) { $0[0] * $0[1] },
    GradCase("mul [2,1,4]*[3,1]", { [normal([2, 1, 4], 5), normal([3, 1], 6)] }) { $0[0] * $0[1] },
    GradCase("mul [2,3]*[1] (single element)", { [normal([2, 3], 5), normal([1], 6)] }) { $0[0] * $0[1] },
    GradCase("mul [2,3]*rank-0", { [normal([2, 3], 5), normal([], 6)] }) { $0[0] * $0[1] },
    GradCase("mul [1]*[2,3] (single element first)", { [normal([1], 5), normal([2, 3], 6)] }) { $0[0] * $0[1] },
    GradCase("mul [2,3,4]*[3,1] (strided inner row)", { [normal([2, 3, 4], 5), normal([3, 1], 6)] }) { $0[0] * $0[1] },
    GradCase("mul [4,1]*[4,3] (stretched first operand)", { [normal([4, 1], 5), normal([4, 3], 6)] }) { $0[0] * $0[1] },
    GradCase("div same shape", { [normal([2, 3], 7), positive([2, 3], 8)] }) { $0[0] / $0[1] },
    GradCase("div [2,3]/[3]", { [normal([2, 3], 7), positive([3], 8)] }) { $0[0] / $0[1] },
    GradCase("div [2,1,4]/[3,1]", { [normal([2, 1, 4], 7), positive([3, 1], 8)] }) { $0[0] / $0[1] },
    GradCase("div rank-0 / [2,3]", { [normal([], 7), positive([2, 3], 8)] }) { $0[0] / $0[1] },
    GradCase("scaled", { [normal([2, 3], 9)] }) { $0[0].scaled(-2.5) },
    GradCase("shifted", { [normal([2, 3], 9)] }) { $0[0].shifted(1.5) },
    GradCase("x + c, x - c, c * x, x * c, x / c", { [normal([2, 3], 9)] }) { x in
        ((x[0] + 1) * (x[0] - 2)) + (3 * x[0]) * (x[0] * 0.5) + x[0] / 4
    },
    GradCase("neg", { [normal([2, 3], 10)] }) { -$0[0] },
]

let unaryCases: [GradCase] = [
    GradCase("exp", { [normal([2, 3], 11)] }) { $0[0].exp() },
    GradCase("log", { [positive([2, 3], 12)] }) { $0[0].log() },
    GradCase("sqrt", { [positive([2, 3], 13)] }) { $0[0].sqrt() },
    GradCase("pow 2", { [normal([2, 3], 14)] }) { $0[0].pow(2) },
    GradCase("pow 3", { [normal([2, 3], 15)] }) { $0[0].pow(3) },
    GradCase("pow 0.5", { [positive([2, 3], 16)] }) { $0[0].pow(0.5) },
    GradCase("abs", { [.testAwayFromZero([2, 4], seed: 17)] }) { $0[0].abs() },
    // testDistinct([3, 4], spacing: 0.2) gives the odd tenths -1.1 ... 1.1; the bounds are even tenths.
    GradCase("clamp", { [.testDistinct([3, 4], seed: 18, spacing: 0.2)] }) { $0[0].clamp(min: -0.4, max: 0.6) },
    GradCase("clamp min only", { [.testDistinct([3, 4], seed: 19, spacing: 0.2)] }) { $0[0].clamp(min: -0.2) },
    GradCase("relu", { [.testAwayFromZero([2, 4], seed: 20)] }) { $0[0].relu() },
    GradCase("leakyRelu", { [.testAwayFromZero([2, 4], seed: 21)] }) { $0[0].leakyRelu(slope: 0.1) },
    GradCase("gelu", { [normal([2, 4], 22, scale: 2)] }) { $0[0].gelu() },
    GradCase("sigmoid", { [normal([2, 4], 23, scale: 2)] }) { $0[0].sigmoid() },
    GradCase("tanh", { [normal([2, 4], 24)] }) { $0[0].tanh() },
]

@Test(arguments: arithmeticCases) func arithmeticGradient(_ c: GradCase) { c.run() }
@Test(arguments: unaryCases) func unaryGradient(_ c: GradCase) { c.run() }

@Test func clampInputsAvoidTheBounds() {
    // The clamp cases rely on testDistinct's grid (odd tenths) never coming within ε of -0.4, 0.6
    // or -0.2, while some values fall on each side of every bound.
    for seed: UInt64 in [18, 19] {
        let x = Tensor.testDistinct([3, 4], seed: seed, spacing: 0.2)
        for bound: Float in [-0.4, 0.6, -0.2] {
            for v in x.scalars { #expect(Swift.abs(v - bound) > 0.05, "value \(v) near bound \(bound)") }
            #expect(x.scalars.contains { $0 < bound } && x.scalars.contains { $0 > bound })
        }
    }
}

// MARK: - Reductions and broadcasting

let reductionCases: [GradCase] = [
    GradCase("sum all", { [normal([2, 3, 4], 30)] }) { $0[0].sum() },
    GradCase("sum axis 1", { [normal([2, 3, 4], 31)] }) { $0[0].sum(axis: 1) },
    GradCase("sum axis -1 keepDims", { [normal([2, 3, 4], 32)] }) { $0[0].sum(axis: -1, keepDims: true) },
    GradCase("sum axes [0,2]", { [normal([2, 3, 4], 33)] }) { $0[0].sum(axes: [0, 2]) },
    GradCase("sum axes [0,2] keepDims", { [normal([2, 3, 4], 33)] }) { $0[0].sum(axes: [0, 2], keepDims: true) },
    GradCase("sum axis 0 of [20] (vectorised row)", { [normal([20], 34)] }) { $0[0].sum(axis: 0) },
    GradCase("mean all", { [normal([2, 3, 4], 35)] }) { $0[0].mean() },
    GradCase("mean axis 0", { [normal([2, 3, 4], 36)] }) { $0[0].mean(axis: 0) },
    GradCase("mean axes [1,2] keepDims", { [normal([2, 3, 4], 37)] }) { $0[0].mean(axes: [1, 2], keepDims: true) },
    GradCase("max all", { [.testDistinct([2, 3, 4], seed: 38)] }) { $0[0].max() },
    GradCase("max axis 1", { [.testDistinct([2, 3, 4], seed: 39)] }) { $0[0].max(axis: 1) },
    GradCase("max axis -1 keepDims", { [.testDistinct([2, 3, 4], seed: 40)] }) { $0[0].max(axis: -1, keepDims: true) },
    GradCase("max axes [0,2]", { [.testDistinct([2, 3, 4], seed: 41)] }) { $0[0].max(axes: [0, 2]) },
    GradCase("max axis 0 of [20] (vectorised row)", { [.testDistinct([20], seed: 42)] }) { $0[0].max(axis: 0, keepDims: true) },
    GradCase("expand [3,1] to [2,3,4]", { [normal([3, 1], 43)] }) { $0[0].expand(to: [2, 3, 4]) },
    GradCase("expand [4] to [3,4]", { [normal([4], 44)] }) { $0[0].expand(to: [3, 4]) },
    GradCase("expand [1,3,1] to [2,3,2]", { [normal([1, 3, 1], 45)] }) { $0[0].expand(to: [2, 3, 2]) },
    GradCase("sum(toShape:)", { [normal([2, 3, 4], 46)] }) { $0[0].sum(toShape: [3, 1]) },
]

@Test(arguments: reductionCases) func reductionGradient(_ c: GradCase) { c.run() }

// MARK: - Shape ops

let shapeCases: [GradCase] = [
    GradCase("reshape", { [normal([2, 3, 4], 50)] }) { $0[0].reshaped([4, 6]) },
    GradCase("reshape with -1", { [normal([2, 3, 4], 51)] }) { $0[0].reshaped([-1, 2]) * $0[0].reshaped([-1, 2]).exp() },
    GradCase("permute [2,0,1]", { [normal([2, 3, 4], 52)] }) { $0[0].permuted([2, 0, 1]) },
    GradCase("transposed", { [normal([3, 4], 53)] }) { $0[0].transposed() },
    GradCase("transposed(0,2) rank 3", { [normal([2, 3, 4], 54)] }) { $0[0].transposed(0, 2) },
    GradCase("flattened", { [normal([2, 3, 2, 2], 55)] }) { $0[0].flattened() },
    GradCase("concat axis 0", { [normal([1, 3], 56), normal([2, 3], 57), normal([3, 3], 58)] }) { Tensor.concat($0, axis: 0) },
    GradCase("concat axis 1", { [normal([2, 1, 2], 56), normal([2, 3, 2], 57)] }) { Tensor.concat($0, axis: 1) },
    GradCase("concat axis -1", { [normal([2, 2], 56), normal([2, 3], 57)] }) { Tensor.concat($0, axis: -1) },
    GradCase("slice axis 1", { [normal([2, 5, 3], 59)] }) { $0[0].slice(axis: 1, start: 1, length: 3) },
    GradCase("slice axis 0", { [normal([4, 3], 60)] }) { $0[0].slice(axis: 0, start: 2, length: 2) },
    GradCase("slice axis -1", { [normal([2, 5], 61)] }) { $0[0].slice(axis: -1, start: 0, length: 2) },
    GradCase("indexSelect axis 0 with repeats", { [normal([4, 3], 62)] }) { $0[0].indexSelect(axis: 0, indices: [2, 0, 2, 3, 2]) },
    GradCase("indexSelect axis 1", { [normal([2, 4, 3], 63)] }) { $0[0].indexSelect(axis: 1, indices: [3, 1]) },
    GradCase("gather(classes:)", { [normal([4, 5], 64)] }) { $0[0].gather(classes: [1, 4, 0, 1]) },
]

@Test(arguments: shapeCases) func shapeGradient(_ c: GradCase) { c.run() }

// MARK: - Softmax

let softmaxCases: [GradCase] = [
    GradCase("softmax last axis", { [normal([3, 5], 70, scale: 2)] }) { $0[0].softmax() },
    GradCase("softmax axis 1 of rank 3", { [normal([2, 4, 3], 71, scale: 2)] }) { $0[0].softmax(axis: 1) },
    GradCase("logSoftmax last axis", { [normal([3, 5], 72, scale: 2)] }) { $0[0].logSoftmax() },
    GradCase("logSoftmax axis 1 of rank 3", { [normal([2, 4, 3], 73, scale: 2)] }) { $0[0].logSoftmax(axis: 1) },
    GradCase("softmax of large logits", { [normal([2, 4], 74, scale: 2, shift: 80)] }) { $0[0].softmax() },
    // The fused losses: the teacher is a constant (no requiresGrad), as the op treats it.
    GradCase("softmaxCrossEntropy", { [normal([4, 5], 75, scale: 2)] }) { $0[0].softmaxCrossEntropy(labels: [1, 4, 0, 1]) },
    GradCase("temperedKLDivergence T=1", { [normal([3, 5], 76, scale: 2)] }) {
        $0[0].temperedKLDivergence(teacherLogits: .testNormal([3, 5], seed: 77, scale: 3, requiresGrad: false), temperature: 1)
    },
    GradCase("temperedKLDivergence T=4", { [normal([3, 5], 78, scale: 2)] }) {
        $0[0].temperedKLDivergence(teacherLogits: .testNormal([3, 5], seed: 79, scale: 3, requiresGrad: false), temperature: 4)
    },
]

@Test(arguments: softmaxCases) func softmaxGradient(_ c: GradCase) { c.run() }

// MARK: - Products

let productCases: [GradCase] = [
    GradCase("matmul 2D", { [normal([3, 4], 80), normal([4, 5], 81)] }) { $0[0].matmul($0[1]) },
    GradCase("matmul 3D·3D", { [normal([2, 3, 4], 82), normal([2, 4, 5], 83)] }) { $0[0].matmul($0[1]) },
    GradCase("matmul 3D·2D", { [normal([2, 3, 4], 84), normal([4, 5], 85)] }) { $0[0].matmul($0[1]) },
    GradCase("linear with bias", { [normal([3, 4], 86), normal([5, 4], 87), normal([5], 88)] }) {
        linear($0[0], weight: $0[1], bias: $0[2])
    },
    GradCase("linear without bias", { [normal([3, 4], 89), normal([5, 4], 90)] }) { linear($0[0], weight: $0[1], bias: nil) },
    GradCase("linear of rank-3 input", { [normal([2, 3, 4], 91), normal([2, 4], 92), normal([2], 93)] }) {
        linear($0[0], weight: $0[1], bias: $0[2])
    },
    GradCase("linear of a single vector", { [normal([4], 99), normal([3, 4], 100), normal([3], 101)] }) {
        linear($0[0], weight: $0[1], bias: $0[2])
    },
    GradCase("linear, frozen weight", {
        [normal([3, 4], 94), .testNormal([5, 4], seed: 95, requiresGrad: false), normal([5], 96)]
    }) { linear($0[0], weight: $0[1], bias: $0[2]) },
    GradCase("linear, constant input", {
        [.testNormal([3, 4], seed: 97, requiresGrad: false), normal([5, 4], 98)]
    }) { linear($0[0], weight: $0[1], bias: nil) },
]

@Test(arguments: productCases) func productGradient(_ c: GradCase) { c.run() }

// MARK: - Convolution

private func convCase(_ name: String, n: Int = 2, c: Int, hw: (Int, Int), o: Int, kernel: (Int, Int) = (3, 3),
                      config: Conv2dConfig = .init(), bias: Bool, seed: UInt64,
                      inputGrad: Bool = true, weightGrad: Bool = true, path: ConvolutionPath? = nil) -> GradCase {
    GradCase(name, {
        var t = [Tensor.testNormal([n, c, hw.0, hw.1], seed: seed, requiresGrad: inputGrad),
                 Tensor.testNormal([o, c / config.groups, kernel.0, kernel.1], seed: seed + 1, scale: 0.5, requiresGrad: weightGrad)]
        if bias { t.append(.testNormal([o], seed: seed + 2)) }
        return t
    }) { x in
        guard let path else { return conv2d(x[0], weight: x[1], bias: x.count > 2 ? x[2] : nil, config: config) }
        return conv2d(x[0], weight: x[1], bias: x.count > 2 ? x[2] : nil, config: config, path: path)
    }
}

let convCases: [GradCase] = [
    convCase("conv2d plain, bias", c: 2, hw: (5, 5), o: 3, bias: true, seed: 100),
    convCase("conv2d plain, no bias", c: 2, hw: (5, 4), o: 3, bias: false, seed: 103),
    convCase("conv2d batch of 3 (uneven chunks)", n: 3, c: 2, hw: (4, 4), o: 2, bias: true, seed: 106),
    convCase("conv2d stride 2", c: 2, hw: (7, 6), o: 3, config: .init(stride: (2, 2)), bias: true, seed: 109),
    convCase("conv2d padding 1", c: 2, hw: (4, 5), o: 3, config: .init(padding: (1, 1)), bias: false, seed: 112),
    // Winograd F(2×2, 3×3) (ConvWinograd.swift): 8 channels, odd extents
    convCase("conv2d Winograd", c: 8, hw: (5, 4), o: 8, config: .init(padding: (1, 1)), bias: true, seed: 127, path: .winograd),
    convCase("conv2d stride 2 padding 1", c: 2, hw: (6, 5), o: 2, config: .init(stride: (2, 2), padding: (1, 1)), bias: true, seed: 115),
    convCase("conv2d dilation 2", c: 2, hw: (7, 7), o: 2, config: .init(padding: (1, 1), dilation: (2, 2)), bias: true, seed: 118),
    convCase("conv2d groups 2", c: 4, hw: (4, 4), o: 4, config: .init(padding: (1, 1), groups: 2), bias: true, seed: 121),
    convCase("conv2d depthwise (groups = C)", c: 3, hw: (5, 5), o: 3, config: .init(padding: (1, 1), groups: 3), bias: false, seed: 124),
    convCase("conv2d depthwise multiplier 2", c: 2, hw: (4, 4), o: 4, config: .init(groups: 2), bias: true, seed: 127),
    convCase("conv2d 1x1 pointwise", c: 3, hw: (3, 4), o: 4, kernel: (1, 1), bias: true, seed: 130),
    convCase("conv2d 1x1 stride 2", c: 3, hw: (5, 5), o: 2, kernel: (1, 1), config: .init(stride: (2, 2)), bias: false, seed: 133),
    convCase("conv2d non-square kernel and stride", c: 2, hw: (6, 7), o: 2, kernel: (2, 3),
             config: .init(stride: (1, 2), padding: (1, 0)), bias: true, seed: 136),
    convCase("conv2d frozen weight (input gradient only)", c: 2, hw: (5, 5), o: 3, bias: false, seed: 139, weightGrad: false),
    convCase("conv2d constant input (weight gradient only)", c: 2, hw: (5, 5), o: 3, bias: true, seed: 142, inputGrad: false),
]

@Test(arguments: convCases) func convGradient(_ c: GradCase) { c.run() }

// MARK: - Pooling

let poolCases: [GradCase] = [
    GradCase("maxPool2d 2x2 (fast path)", { [.testDistinct([2, 2, 4, 6], seed: 150)] }) { $0[0].maxPool2d(.init(kernel: (2, 2))) },
    GradCase("maxPool2d 2x2 odd extent", { [.testDistinct([1, 2, 5, 5], seed: 151)] }) { $0[0].maxPool2d(.init(kernel: (2, 2))) },
    GradCase("maxPool2d 3x3 stride 2 padding 1", { [.testDistinct([2, 2, 5, 6], seed: 152)] }) {
        $0[0].maxPool2d(.init(kernel: (3, 3), stride: (2, 2), padding: (1, 1)))
    },
    GradCase("maxPool2d 2x2 stride 1 (overlapping)", { [.testDistinct([1, 2, 4, 4], seed: 153)] }) {
        $0[0].maxPool2d(.init(kernel: (2, 2), stride: (1, 1)))
    },
    GradCase("avgPool2d 2x2", { [normal([2, 2, 4, 4], 154)] }) { $0[0].avgPool2d(.init(kernel: (2, 2))) },
    GradCase("avgPool2d 3x3 stride 2 padding 1", { [normal([2, 2, 5, 6], 155)] }) {
        $0[0].avgPool2d(.init(kernel: (3, 3), stride: (2, 2), padding: (1, 1)))
    },
    GradCase("avgPool2d 3x3 stride 1", { [normal([1, 2, 5, 5], 156)] }) { $0[0].avgPool2d(.init(kernel: (3, 3), stride: (1, 1))) },
    GradCase("avgPool2d 2x3 stride (1,2) padding (1,1)", { [normal([1, 2, 4, 5], 157)] }) {
        $0[0].avgPool2d(.init(kernel: (2, 3), stride: (1, 2), padding: (1, 1)))
    },
    GradCase("globalAvgPool2d", { [normal([2, 3, 3, 4], 158)] }) { $0[0].globalAvgPool2d() },
]

@Test(arguments: poolCases) func poolGradient(_ c: GradCase) { c.run() }

// MARK: - Normalisation, dropout, embedding

private func batchNormCase(_ name: String, shape: [Int], training: Bool, seed: UInt64) -> GradCase {
    let c = shape[1]
    return GradCase(name, {
        [normal(shape, seed, scale: 2, shift: 0.5), positive([c], seed + 1), normal([c], seed + 2)]
    }) { x in
        // Fresh running statistics per call, so evaluation mode always sees the same ones.
        let runningMean = Tensor.testNormal([c], seed: 999, scale: 0.1, requiresGrad: false)
        let runningVar = Tensor.testUniform([c], seed: 998, low: 0.5, high: 2, requiresGrad: false)
        return batchNorm(x[0], weight: x[1], bias: x[2], runningMean: runningMean, runningVar: runningVar, training: training)
    }
}

let normalizationCases: [GradCase] = [
    batchNormCase("batchNorm training [N,C,H,W]", shape: [3, 2, 2, 3], training: true, seed: 160),
    batchNormCase("batchNorm training [N,C]", shape: [5, 3], training: true, seed: 163),
    batchNormCase("batchNorm eval [N,C,H,W]", shape: [2, 3, 2, 2], training: false, seed: 166),
    batchNormCase("batchNorm eval [N,C]", shape: [4, 3], training: false, seed: 169),
    GradCase("dropout p=0.3, fixed seed", { [normal([4, 5], 172)] }) { x in
        var generator = SeededGenerator(seed: 7)
        return x[0].dropout(0.3, training: true, using: &generator)
    },
    GradCase("embedding with repeated indices", { [normal([5, 3], 173)] }) {
        embedding($0[0], indices: [1, 3, 1, 0, 4, 1], indexShape: [2, 3])
    },
    GradCase("composite: mlp with cross-entropy", { [normal([4, 3], 174), normal([5, 3], 175), normal([5], 176)] }) { x in
        -linear(x[0], weight: x[1], bias: x[2]).tanh().logSoftmax().gather(classes: [0, 4, 2, 2]).mean()
    },
]

@Test(arguments: normalizationCases) func normalizationGradient(_ c: GradCase) { c.run() }

@Test func dropoutGradientIsTheRecordedMask() {
    let p: Float = 0.4
    let x = Tensor.testAwayFromZero([10, 20], seed: 180)
    var generator = SeededGenerator(seed: 11)
    let y = x.dropout(p, training: true, using: &generator)
    y.sum().backward()
    let grad = try! #require(x.grad).scalars
    let keep = 1 / (1 - p)
    var dropped = 0
    for i in 0..<x.count {
        // Each element is either dropped (output 0, gradient 0) or kept and scaled by 1/(1-p).
        if y.scalars[i] == 0 {
            dropped += 1
            #expect(grad[i] == 0, "element \(i)")
        } else {
            #expect(grad[i] == keep, "element \(i)")
            #expect(y.scalars[i] == x.scalars[i] * keep, "element \(i)")
        }
    }
    #expect(dropped > 50 && dropped < 110, "dropped \(dropped) of 200 with p = 0.4")

    // The same seed gives the same mask.
    var again = SeededGenerator(seed: 11)
    #expect(x.dropout(p, training: true, using: &again).scalars == y.scalars)
    // Evaluation (or p = 0) is the identity: the very same tensor.
    var unused = SeededGenerator(seed: 11)
    #expect(x.dropout(p, training: false, using: &unused) === x)
    #expect(x.dropout(0, training: true, using: &unused) === x)
}

@Test func batchNormUpdatesRunningStatisticsOnlyInTraining() {
    let x = Tensor.testNormal([4, 2], seed: 181, requiresGrad: false)
    let w = Tensor.ones([2]), b = Tensor.zeros([2])
    let rm = Tensor.zeros([2]), rv = Tensor.ones([2])
    _ = batchNorm(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: false)
    #expect(rm.scalars == [0, 0] && rv.scalars == [1, 1])
    _ = batchNorm(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: true)
    #expect(rm.scalars != [0, 0] && rv.scalars != [1, 1])
}

// MARK: - Autograd semantics

@Test func tensorUsedTwiceGetsBothContributions() {
    let x = Tensor(shape: [3], scalars: [1.5, -2, 0.25], requiresGrad: true)
    (x * x).sum().backward()
    #expect(x.grad?.scalars == [3, -4, 0.5])

    // Two different paths to the same leaf: d/dx Σ (exp(x) + 3x) = exp(x) + 3.
    let y = Tensor(shape: [2], scalars: [0.5, -1], requiresGrad: true)
    (y.exp() + y * 3).sum().backward()
    assertClose(y.grad!.scalars, [Foundation.exp(Float(0.5)) + 3, Foundation.exp(Float(-1)) + 3], atol: 1e-6, rtol: 1e-6)

    // A shared intermediate: z = e² + e with e = exp(x), dz/dx = (2e + 1)·e.
    let v = Tensor(shape: [2], scalars: [0.3, -0.7], requiresGrad: true)
    let e = v.exp()
    (e * e + e).sum().backward()
    let expected = v.scalars.map { (2 * Foundation.exp($0) + 1) * Foundation.exp($0) }
    assertClose(v.grad!.scalars, expected, atol: 1e-6, rtol: 1e-6)
    #expect(e.grad == nil, "intermediate results keep no gradient")
}

@Test func gradientsAccumulateAcrossBackwardCalls() {
    let x = Tensor(shape: [2], scalars: [1, 2], requiresGrad: true)
    (x * 3).sum().backward()
    #expect(x.grad?.scalars == [3, 3])
    (x * x).sum().backward()
    #expect(x.grad?.scalars == [5, 7])
    x.zeroGrad()
    #expect(x.grad == nil)
    (x * 3).sum().backward()
    #expect(x.grad?.scalars == [3, 3])
}

@Test func backwardWithExplicitGradient() {
    let x = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4], requiresGrad: true)
    let y = x * x
    y.backward(Tensor(shape: [2, 2], scalars: [1, 0, -1, 0.5]))
    #expect(x.grad?.scalars == [2, 0, -6, 4])
}

@Test func withNoGradRecordsNothing() {
    let x = Tensor(shape: [2], scalars: [1, 2], requiresGrad: true)
    let y = withNoGrad { (x * x).exp().sum() }
    #expect(!y.requiresGrad)
    #expect(GradMode.isEnabled, "recording is back on after withNoGrad")
    let nested: Bool = withNoGrad { withNoGrad { GradMode.isEnabled } }
    #expect(!nested)
    let z = (x * x).sum()
    #expect(z.requiresGrad)
    // Ops on tensors that need no gradient record nothing either.
    let c = Tensor(shape: [2], scalars: [1, 2])
    #expect(!(c * c).requiresGrad)
}

@Test func detachedBlocksGradientFlow() {
    let x = Tensor(shape: [3], scalars: [1, -2, 3], requiresGrad: true)
    let d = x.detached()
    #expect(!d.requiresGrad)
    #expect(d.scalars == x.scalars)
    (d * x).sum().backward()
    #expect(x.grad?.scalars == [1, -2, 3], "only the non-detached factor contributes")
}

// MARK: - The checker itself

@Suite struct GradientCheckerTests {
    @Test func detectsAWrongGradientAndNamesTheElement() {
        // d/dx (detached(x) · x) is reported by backward() as x, while the true derivative is 2x.
        let x = Tensor(shape: [3], scalars: [1, 2, 3], requiresGrad: true)
        let y = Tensor(shape: [2, 2], scalars: [0.5, -1, 2, 1.5], requiresGrad: true)
        let report = checkGradients(inputs: [x, y]) { $0[0].sum() + ($0[1].detached() * $0[1]).sum() }
        #expect(!report.passed)
        #expect(report.failures == 4 && report.checkedElements == 7)
        #expect(report.worst?.input == 1)
        let worst = report.worst!
        #expect(worst.coordinates == [worst.element / 2, worst.element % 2])
        #expect(Swift.abs(worst.numeric - 2 * worst.analytic) < 1e-3)
        #expect(report.description.contains("input 1 element \(worst.element)"), "\(report)")
        #expect(report.maxAbsError > 0 && Swift.abs(report.maxRelError - 0.5) < 1e-3, "analytic a vs numeric 2a: relative error 0.5")
        // Inputs are restored and their gradients cleared.
        #expect(x.scalars == [1, 2, 3] && y.scalars == [0.5, -1, 2, 1.5])
        #expect(x.grad == nil && y.grad == nil)
    }

    @Test func reportsInputsThatReceiveNoGradient() {
        let used = Tensor([1, 2], requiresGrad: true), unused = Tensor([3], requiresGrad: true)
        let report = checkGradients(inputs: [used, unused]) { $0[0] * 2 }
        #expect(report.passed, "\(report)")
        #expect(report.inputsWithoutGradient == [1])
        #expect(report.description.contains("inputs [1] received no gradient"))
    }

    @Test func nothingToCheckIsNotAPass() {
        let report = checkGradients(inputs: [Tensor([1, 2])]) { $0[0] * 2 }
        #expect(!report.passed && report.checkedElements == 0)
    }

    @Test func compareCloseNamesTheLargestDifference() {
        let r = compareClose([1, 2, 3.5, 4], [1, 2.000001, 3, 4], atol: 1e-5, rtol: 1e-5)
        #expect(!r.passed && r.failures == 1 && r.maxAbsDiffIndex == 2 && r.firstFailureIndex == 2)
        #expect(r.description.contains("at index 2") && r.description.contains("0.5"), "\(r)")
        #expect(compareClose([1, 2], [1, 2, 3]).description.contains("2 vs 3"))
        #expect(!compareClose([.nan], [.nan]).passed)
        #expect(compareClose([.infinity, 1], [.infinity, 1]).passed)
        #expect(compareClose([100.0001], [100], atol: 0, rtol: 1e-5).passed)
        #expect(compareClose([], []).passed)
    }
}
