import DistillTensor

// The standard layers. Default initialisations follow PyTorch (`reset_parameters`), so results
// are comparable with the field's numbers: weights Kaiming-uniform with a = √5, which reduces to
// U(±1/√fan_in), and biases U(±1/√fan_in).

/// U(±1/√fanIn): PyTorch's default for Linear and Conv weights (kaiming_uniform_, a = √5) and biases.
func defaultUniform(_ shape: [Int], fanIn: Int, _ generator: inout SeededGenerator) -> Tensor {
    let bound = 1 / Float(fanIn).squareRoot()
    return Tensor.randomUniform(shape, low: -bound, high: bound, using: &generator, requiresGrad: true)
}

/// Fully connected layer `y = x·Wᵀ + b`; weight [out, in].
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: inout SeededGenerator) {
        weight = defaultUniform([outFeatures, inFeatures], fanIn: inFeatures, &generator)
        self.bias = bias ? defaultUniform([outFeatures], fanIn: inFeatures, &generator) : nil
    }
    public override func forward(_ x: Tensor) -> Tensor { linear(x, weight: weight, bias: bias) }
}

/// 2-D convolution layer; weight [out, in/groups, kh, kw].
public final class Conv2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let config: Conv2dConfig
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true, generator: inout SeededGenerator) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0, "Conv2d: groups \(groups) must divide \(inChannels) and \(outChannels)")
        let fanIn = inChannels / groups * kernel * kernel
        weight = defaultUniform([outChannels, inChannels / groups, kernel, kernel], fanIn: fanIn, &generator)
        self.bias = bias ? defaultUniform([outChannels], fanIn: fanIn, &generator) : nil
        config = Conv2dConfig(stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation), groups: groups)
    }
    public override func forward(_ x: Tensor) -> Tensor { conv2d(x, weight: weight, bias: bias, config: config) }
}

/// Batch normalisation over [N, C] (BatchNorm1d) or [N, C, H, W] (BatchNorm2d) inputs.
public class BatchNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let runningMean: Tensor
    public let runningVar: Tensor
    public let numBatchesTracked: Tensor
    public let momentum: Float, epsilon: Float
    public init(_ features: Int, momentum: Float = 0.1, epsilon: Float = 1e-5) {
        weight = Tensor.ones([features], requiresGrad: true)
        bias = Tensor.zeros([features], requiresGrad: true)
        runningMean = Tensor.zeros([features])
        runningVar = Tensor.ones([features])
        numBatchesTracked = Tensor.zeros([])
        self.momentum = momentum; self.epsilon = epsilon
    }
    public override var bufferNames: Set<String> { ["runningMean", "runningVar", "numBatchesTracked"] }
    public override func forward(_ x: Tensor) -> Tensor {
        if isTraining { numBatchesTracked.data[0] += 1 }
        return batchNorm(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                         training: isTraining, momentum: momentum, epsilon: epsilon)
    }
}
public final class BatchNorm1d: BatchNorm {}
public final class BatchNorm2d: BatchNorm {}

public final class ReLU: Module { public override func forward(_ x: Tensor) -> Tensor { x.relu() } }
public final class GELU: Module { public override func forward(_ x: Tensor) -> Tensor { x.gelu() } }
public final class Sigmoid: Module { public override func forward(_ x: Tensor) -> Tensor { x.sigmoid() } }
public final class Tanh: Module { public override func forward(_ x: Tensor) -> Tensor { x.tanh() } }
public final class LeakyReLU: Module {
    public let slope: Float
    public init(slope: Float = 0.01) { self.slope = slope }
    public override func forward(_ x: Tensor) -> Tensor { x.leakyRelu(slope: slope) }
}

/// [N, ...] → [N, prod(...)].
public final class Flatten: Module { public override func forward(_ x: Tensor) -> Tensor { x.flattened() } }

public final class MaxPool2d: Module {
    public let config: Pool2dConfig
    public init(_ kernel: Int, stride: Int? = nil, padding: Int = 0) {
        config = Pool2dConfig(kernel: (kernel, kernel), stride: stride.map { ($0, $0) }, padding: (padding, padding))
    }
    public override func forward(_ x: Tensor) -> Tensor { x.maxPool2d(config) }
}

public final class AvgPool2d: Module {
    public let config: Pool2dConfig
    public init(_ kernel: Int, stride: Int? = nil, padding: Int = 0) {
        config = Pool2dConfig(kernel: (kernel, kernel), stride: stride.map { ($0, $0) }, padding: (padding, padding))
    }
    public override func forward(_ x: Tensor) -> Tensor { x.avgPool2d(config) }
}

/// [N, C, H, W] → [N, C].
public final class GlobalAvgPool2d: Module { public override func forward(_ x: Tensor) -> Tensor { x.globalAvgPool2d() } }

/// Inverted dropout with its own seeded generator (reproducible runs).
public final class Dropout: Module {
    public let probability: Float
    var _generator: SeededGenerator
    public init(_ probability: Float, seed: UInt64 = 0) {
        precondition(probability >= 0 && probability < 1, "Dropout: probability \(probability) must be in [0, 1)")
        self.probability = probability
        _generator = SeededGenerator(seed: seed)
    }
    public override func forward(_ x: Tensor) -> Tensor { x.dropout(probability, training: isTraining, using: &_generator) }
    /// Restarts the mask generator; the trainer reseeds it from (seed, step) so that a resumed
    /// run draws the same masks as one never interrupted.
    public func reseed(_ seed: UInt64) { _generator = SeededGenerator(seed: seed) }
}

/// Layers applied in order; children are named "0", "1", ... as in PyTorch.
public final class Sequential: Module {
    public let layers: [Module]
    public init(_ layers: [Module]) { self.layers = layers }
    public override var children: [(name: String, module: Module)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }
    public override func forward(_ x: Tensor) -> Tensor {
        var y = x
        var i = 0
        while i < layers.count {
            // conv → ReLU → max-pool in one kernel that never stores the convolution's output,
            // where it applies (a first layer with few input channels, whose input is data:
            // `FusedConvolutionPool` in DistillTensor), and as the two steps below otherwise.
            if i + 2 < layers.count, let conv = layers[i] as? Conv2d, layers[i + 1] is ReLU, let pool = layers[i + 2] as? MaxPool2d,
               conv.tap == nil, layers[i + 1].tap == nil, pool.tap == nil {
                y = conv2dReLUMaxPool2d(y, weight: conv.weight, bias: conv.bias, config: conv.config, pool: pool.config)
                i += 3
                continue
            }
            // ReLU then max-pool equals max-pool then ReLU (max commutes with a monotone
            // function, and so do their gradients); one pass does both, on the pooled values.
            if i + 1 < layers.count, layers[i] is ReLU, let pool = layers[i + 1] as? MaxPool2d,
               layers[i].tap == nil, pool.tap == nil {
                y = y.maxPool2dReLU(pool.config)
                i += 2
                continue
            }
            y = layers[i](y)
            i += 1
        }
        return y
    }
}

/// The basic residual block of He et al. 2016 (arXiv:1512.03385):
/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, where the shortcut is a 1×1 strided
/// convolution with batch-norm when the shape changes, and the identity otherwise.
public final class ResidualBlock: Module {
    public let conv1: Conv2d, bn1: BatchNorm2d, conv2: Conv2d, bn2: BatchNorm2d
    public let shortcut: Sequential?
    public init(_ inChannels: Int, _ outChannels: Int, stride: Int = 1, generator: inout SeededGenerator) {
        conv1 = Conv2d(inChannels, outChannels, kernel: 3, stride: stride, padding: 1, bias: false, generator: &generator)
        bn1 = BatchNorm2d(outChannels)
        conv2 = Conv2d(outChannels, outChannels, kernel: 3, padding: 1, bias: false, generator: &generator)
        bn2 = BatchNorm2d(outChannels)
        shortcut = (stride != 1 || inChannels != outChannels)
            ? Sequential([Conv2d(inChannels, outChannels, kernel: 1, stride: stride, bias: false, generator: &generator), BatchNorm2d(outChannels)])
            : nil
    }
    public override var children: [(name: String, module: Module)] {
        var c: [(String, Module)] = [("conv1", conv1), ("bn1", bn1), ("conv2", conv2), ("bn2", bn2)]
        if let shortcut { c.append(("shortcut", shortcut)) }
        return c
    }
    public override func forward(_ x: Tensor) -> Tensor {
        let y = bn2(conv2(bn1(conv1(x)).relu()))
        return (y + (shortcut?(x) ?? x)).relu()
    }
}
