import DistillNN
import DistillTensor
import DistillTestSupport
import Testing

// Central-difference checks (DistillTestSupport.checkGradients: objective Σ y·R accumulated in
// Double, ε = 1e-2, |analytic − numeric| ≤ 1e-3 + 1e-2·max) of every layer, for its input and for
// each of its parameters. The parameters are passed to the checker as extra inputs: it perturbs
// them in place, and the layer reads the same tensors. Inputs sit away from kinks (ReLU at 0,
// ties in max-pool), as GradientCheck.swift asks.

/// One layer under test: how to build it (fresh each run: modules are reference types), its
/// input, and the mode it runs in.
struct LayerCase: Sendable, CustomTestStringConvertible {
    let name: String
    let training: Bool
    let layer: @Sendable () -> Module
    let input: @Sendable () -> Tensor
    var epsilon: Float = 1e-2
    /// For layers with kinks inside (ReLU, max-pool): the distance of the unperturbed forward pass
    /// from its nearest kink, which must be at least `kinkMargin` for central differences to hold.
    var kinkDistance: (@Sendable (Module, Tensor) -> Float)?
    var kinkMargin: Float = 0
    var testDescription: String { name }

    init(_ name: String, training: Bool = true, epsilon: Float = 1e-2,
         kinkDistance: (@Sendable (Module, Tensor) -> Float)? = nil, kinkMargin: Float = 0,
         _ layer: @escaping @Sendable () -> Module, input: @escaping @Sendable () -> Tensor) {
        self.name = name; self.training = training; self.epsilon = epsilon; self.layer = layer; self.input = input
        self.kinkDistance = kinkDistance; self.kinkMargin = kinkMargin
    }

    func run(sourceLocation: SourceLocation = #_sourceLocation) {
        let module = layer()
        if training { module.train() } else { module.eval() }
        let x = input()
        if let kinkDistance {
            let d = kinkDistance(module, x)
            #expect(d >= kinkMargin, "\(name): the case sits \(d) from a ReLU/max-pool kink (needs \(kinkMargin)); pick other seeds",
                    sourceLocation: sourceLocation)
        }
        let parameters = module.namedParameters()
        let inputs = [x] + parameters.map(\.tensor)
        let report = expectGradients(name, inputs: inputs, epsilon: epsilon, sourceLocation: sourceLocation) { module($0[0]) }
        #expect(report.checkedElements == inputs.reduce(0) { $0 + $1.count }, "\(name): \(report)", sourceLocation: sourceLocation)
        let without = report.inputsWithoutGradient.map { $0 == 0 ? "input" : parameters[$0 - 1].name }
        #expect(without.isEmpty, "\(name): no gradient reached \(without)", sourceLocation: sourceLocation)
    }
}

private func gen(_ seed: UInt64) -> SeededGenerator { SeededGenerator(seed: seed) }
private func normal(_ shape: [Int], _ seed: UInt64) -> Tensor { .testNormal(shape, seed: seed) }

/// A batch-norm layer with non-trivial affine parameters and running statistics, so evaluation
/// mode is not the identity.
private func batchNorm(_ dims: Int, _ features: Int, seed: UInt64) -> BatchNorm {
    let bn: BatchNorm = dims == 1 ? BatchNorm1d(features) : BatchNorm2d(features)
    var g = gen(seed)
    bn.weight.assign(Tensor.randomUniform([features], low: 0.5, high: 1.5, using: &g))
    bn.bias.assign(Tensor.randomUniform([features], low: -0.5, high: 0.5, using: &g))
    bn.runningMean.assign(Tensor.randomUniform([features], low: -0.3, high: 0.3, using: &g))
    bn.runningVar.assign(Tensor.randomUniform([features], low: 0.5, high: 2, using: &g))
    return bn
}

let linearCases: [LayerCase] = [
    LayerCase("Linear 4→3 with bias", { var g = gen(1); return Linear(4, 3, generator: &g) }, input: { normal([2, 4], 11) }),
    LayerCase("Linear 4→3 without bias", { var g = gen(2); return Linear(4, 3, bias: false, generator: &g) }, input: { normal([3, 4], 12) }),
    LayerCase("Linear 5→1", { var g = gen(3); return Linear(5, 1, generator: &g) }, input: { normal([4, 5], 13) }),
]

let convCases: [LayerCase] = [
    LayerCase("Conv2d 2→3 k3", { var g = gen(4); return Conv2d(2, 3, kernel: 3, generator: &g) }, input: { normal([2, 2, 5, 5], 14) }),
    LayerCase("Conv2d 2→3 k3 stride 2 padding 1", { var g = gen(5); return Conv2d(2, 3, kernel: 3, stride: 2, padding: 1, generator: &g) },
              input: { normal([2, 2, 5, 5], 15) }),
    LayerCase("Conv2d 2→2 k2 stride 2 no bias", { var g = gen(6); return Conv2d(2, 2, kernel: 2, stride: 2, bias: false, generator: &g) },
              input: { normal([1, 2, 4, 6], 16) }),
    LayerCase("Conv2d 4→6 k3 padding 1 groups 2", { var g = gen(7); return Conv2d(4, 6, kernel: 3, padding: 1, groups: 2, generator: &g) },
              input: { normal([1, 4, 4, 4], 17) }),
    LayerCase("Conv2d depthwise 3→3 k3 stride 2 padding 1 groups 3",
              { var g = gen(8); return Conv2d(3, 3, kernel: 3, stride: 2, padding: 1, groups: 3, bias: false, generator: &g) },
              input: { normal([2, 3, 5, 5], 18) }),
    LayerCase("Conv2d depthwise multiplier 2→4 groups 2", { var g = gen(9); return Conv2d(2, 4, kernel: 3, padding: 1, groups: 2, generator: &g) },
              input: { normal([1, 2, 3, 3], 19) }),
    LayerCase("Conv2d 2→3 k3 dilation 2", { var g = gen(10); return Conv2d(2, 3, kernel: 3, padding: 2, dilation: 2, generator: &g) },
              input: { normal([1, 2, 5, 5], 20) }),
    LayerCase("Conv2d pointwise 3→2 k1", { var g = gen(11); return Conv2d(3, 2, kernel: 1, generator: &g) }, input: { normal([2, 3, 3, 3], 21) }),
]

let batchNormCases: [LayerCase] = [
    LayerCase("BatchNorm1d training", { batchNorm(1, 3, seed: 30) }, input: { .testNormal([5, 3], seed: 31, scale: 2, shift: 0.5) }),
    LayerCase("BatchNorm1d eval", training: false, { batchNorm(1, 3, seed: 32) }, input: { normal([4, 3], 33) }),
    LayerCase("BatchNorm2d training", { batchNorm(2, 3, seed: 34) }, input: { .testNormal([2, 3, 3, 3], seed: 35, scale: 1.5, shift: -0.2) }),
    LayerCase("BatchNorm2d eval", training: false, { batchNorm(2, 3, seed: 36) }, input: { normal([2, 3, 2, 3], 37) }),
]

let activationCases: [LayerCase] = [
    LayerCase("ReLU", { ReLU() }, input: { .testAwayFromZero([3, 4], seed: 40) }),
    LayerCase("LeakyReLU default slope", { LeakyReLU() }, input: { .testAwayFromZero([3, 4], seed: 41) }),
    LayerCase("LeakyReLU slope 0.2", { LeakyReLU(slope: 0.2) }, input: { .testAwayFromZero([2, 2, 3], seed: 42) }),
    LayerCase("GELU", { GELU() }, input: { .testNormal([3, 4], seed: 43, scale: 2) }),
    LayerCase("Sigmoid", { Sigmoid() }, input: { .testNormal([3, 4], seed: 44, scale: 2) }),
    LayerCase("Tanh", { Tanh() }, input: { .testNormal([3, 4], seed: 45, scale: 1.5) }),
]

let shapeAndPoolCases: [LayerCase] = [
    LayerCase("MaxPool2d 2", { MaxPool2d(2) }, input: { .testDistinct([2, 2, 4, 4], seed: 50) }),
    LayerCase("MaxPool2d 3 stride 2 padding 1", { MaxPool2d(3, stride: 2, padding: 1) }, input: { .testDistinct([1, 2, 5, 5], seed: 51) }),
    LayerCase("MaxPool2d 2 stride 1 (overlapping)", { MaxPool2d(2, stride: 1) }, input: { .testDistinct([1, 2, 4, 3], seed: 52) }),
    LayerCase("AvgPool2d 2", { AvgPool2d(2) }, input: { normal([2, 2, 4, 4], 53) }),
    LayerCase("AvgPool2d 3 stride 2 padding 1", { AvgPool2d(3, stride: 2, padding: 1) }, input: { normal([1, 2, 5, 5], 54) }),
    LayerCase("GlobalAvgPool2d", { GlobalAvgPool2d() }, input: { normal([2, 3, 3, 4], 55) }),
    LayerCase("Flatten", { Flatten() }, input: { normal([2, 3, 2, 2], 56) }),
    LayerCase("Dropout eval (identity)", training: false, { Dropout(0.5, seed: 1) }, input: { normal([3, 5], 57) }),
]

/// Distance from a ReLU kink inside a residual block: the smallest |pre-activation| of its two ReLUs.
@Sendable private func residualKinkDistance(_ module: Module, _ x: Tensor) -> Float {
    let block = module as! ResidualBlock
    return withNoGrad {
        let a = block.bn1.forward(block.conv1.forward(x))
        let y = block.bn2.forward(block.conv2.forward(a.relu())) + (block.shortcut?.forward(x) ?? x)
        return (a.scalars + y.scalars).map(abs).min() ?? .infinity
    }
}

/// Distance from a kink of conv → ReLU → 2×2 max-pool: the smallest |conv output| and the smallest
/// gap between the two largest values of a pooling window.
@Sendable private func convPoolKinkDistance(_ module: Module, _ x: Tensor) -> Float {
    let c = withNoGrad { (module as! Sequential).layers[0].forward(x) }
    let (planes, h, w) = (c.shape[0] * c.shape[1], c.shape[2], c.shape[3])
    let v = c.scalars
    var distance = v.map(abs).min() ?? .infinity
    for p in 0..<planes { for oy in 0..<(h / 2) { for ox in 0..<(w / 2) {
        let window = [0, 1, w, w + 1].map { v[p * h * w + 2 * oy * w + 2 * ox + $0] }.sorted(by: >)
        distance = min(distance, window[0] - window[1])
    } } }
    return distance
}

// Composites use ε = 1e-3 and seeds whose forward pass stays clear of the ReLU and max-pool kinks
// (checked by `kinkDistance`): kinks sit at data-dependent points, and batch-norm over a small
// batch in training mode is strongly curved, so with ε = 1e-2 or near a kink the central
// difference is wrong even though the layer is right (the same blocks without ReLUs pass at 1e-2).
// A weight perturbation of 1e-3 moves a pre-activation by about 1e-3·|input| (more after
// training-mode batch-norm), well inside the margins.
let compositeCases: [LayerCase] = [
    // An even element count: testDistinct's values are then odd multiples of 0.05, never 0.
    LayerCase("Sequential ReLU→MaxPool2d (reordered)", { Sequential([ReLU(), MaxPool2d(2)]) }, input: { .testDistinct([2, 2, 4, 4], seed: 60) }),
    LayerCase("Sequential conv→ReLU→MaxPool2d→Flatten→Linear", epsilon: 1e-3, kinkDistance: convPoolKinkDistance, kinkMargin: 0.01, {
        var g = gen(32)
        return Sequential([Conv2d(1, 2, kernel: 3, padding: 1, generator: &g), ReLU(), MaxPool2d(2), Flatten(), Linear(8, 3, generator: &g)])
    }, input: { normal([2, 1, 4, 4], 132) }),
    LayerCase("ResidualBlock 2→2 identity shortcut, training", epsilon: 1e-3, kinkDistance: residualKinkDistance, kinkMargin: 0.02,
              { var g = gen(26); return ResidualBlock(2, 2, generator: &g) }, input: { normal([2, 2, 3, 3], 126) }),
    LayerCase("ResidualBlock 2→3 stride 2 projection shortcut, training", epsilon: 1e-3, kinkDistance: residualKinkDistance, kinkMargin: 0.02,
              { var g = gen(1); return ResidualBlock(2, 3, stride: 2, generator: &g) }, input: { normal([2, 2, 4, 4], 101) }),
    LayerCase("ResidualBlock 2→2 identity shortcut, eval", training: false, epsilon: 1e-3, kinkDistance: residualKinkDistance, kinkMargin: 0.02,
              { var g = gen(0); return ResidualBlock(2, 2, generator: &g) }, input: { normal([1, 2, 3, 3], 100) }),
    LayerCase("ResidualBlock 2→4 projection shortcut, eval", training: false, epsilon: 1e-3, kinkDistance: residualKinkDistance, kinkMargin: 0.02,
              { var g = gen(28); return ResidualBlock(2, 4, generator: &g) }, input: { normal([1, 2, 3, 3], 128) }),
]

@Suite("Layer gradients")
struct LayerGradientTests {
    @Test(arguments: linearCases) func linear(_ c: LayerCase) { c.run() }
    @Test(arguments: convCases) func conv2d(_ c: LayerCase) { c.run() }
    @Test(arguments: batchNormCases) func batchNorm(_ c: LayerCase) { c.run() }
    @Test(arguments: activationCases) func activation(_ c: LayerCase) { c.run() }
    @Test(arguments: shapeAndPoolCases) func shapeAndPooling(_ c: LayerCase) { c.run() }
    @Test(arguments: compositeCases) func composite(_ c: LayerCase) { c.run() }
}
