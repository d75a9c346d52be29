import DistillNN
import DistillTensor
import Foundation

/// What a saved model carries around its layers: the input standardisation of a tabular model
/// and the target scaling of a regression model, both applied inside every exported file so that
/// users feed raw inputs and read outputs in the target's units.
public struct ExportPreprocessing: Sendable {
    /// Per-feature (or one shared) mean and standard deviation of the training inputs.
    public var inputMean: [Float]?, inputStd: [Float]?
    /// `y = output · outputScale + outputShift` (a regression target's std and mean).
    public var outputScale: Float?, outputShift: Float?
    public init(inputMean: [Float]? = nil, inputStd: [Float]? = nil, outputScale: Float? = nil, outputShift: Float? = nil) {
        self.inputMean = inputMean; self.inputStd = inputStd; self.outputScale = outputScale; self.outputShift = outputShift
    }
}

/// A student lowered once for every export format: batch norm folded into the convolution or
/// linear layer before it, dropout gone, the preprocessing written as explicit steps, every value's
/// shape known. The C, TFLite and Core ML writers walk the same nodes, so a DistillKit layer is
/// understood in one place and each format only says how to write a step (or refuses it).
///
/// Shapes leave out the batch axis and follow DistillKit's layout: `[F]` for feature vectors,
/// `[C, H, W]` for images.
public struct ExportGraph {
    public enum Activation: Equatable, Sendable {
        case relu, gelu, sigmoid, tanh
        case leakyReLU(slope: Float)
    }

    /// A 2-D window: kernel, stride, padding (the same on both sides) and dilation, as [height, width].
    public struct Window: Equatable, Sendable {
        public var kernel: [Int], stride: [Int], padding: [Int], dilation: [Int]
    }

    public struct Convolution: Sendable {
        /// [outChannels, inChannels / groups, kernelH, kernelW], as in PyTorch.
        public var weight: [Float]
        public var bias: [Float]
        public var inChannels: Int, outChannels: Int, groups: Int
        public var window: Window
        public var isDepthwise: Bool { groups == inChannels && groups > 1 && outChannels % inChannels == 0 }
    }

    public enum Operation: Sendable {
        /// `(x − mean) · scale` per element of the input (one value: shared by all), scale = 1/std,
        /// exactly as DistillKit's `FeatureStatistics.apply`.
        case standardize(mean: [Float], scale: [Float])
        /// `x · scale + shift`, one pair per channel (axis 0 of the value), or one pair for all.
        case affine(scale: [Float], shift: [Float])
        /// `y = W·x + b`, weight [outputs, inputs].
        case dense(weight: [Float], bias: [Float], inputs: Int, outputs: Int)
        case convolution(Convolution)
        case activation(Activation)
        /// Padding never wins a max.
        case maxPool(Window)
        /// Padding counts as zeros in the divisor (the kernel's area), as DistillKit and PyTorch's default.
        case averagePool(Window)
        /// [C, H, W] → [C].
        case globalAveragePool
        /// [C, H, W] → [C·H·W] in C, H, W order.
        case flatten
        /// The sum of the node's two inputs (a residual connection).
        case add
    }

    public struct Node: Sendable {
        public var operation: Operation
        public var inputs: [Int]
        public var output: Int
        /// The layer's path in the model ("3", "4.conv1", "preprocessing"), for names and messages.
        public var layer: String
        /// The DistillKit layer type it came from ("Conv2d", "BatchNorm2d", ...).
        public var layerType: String
    }

    /// Shape of every value; value 0 is the input.
    public private(set) var shapes: [[Int]]
    public private(set) var nodes: [Node] = []
    public let input = 0
    public var output: Int { nodes.last?.output ?? 0 }
    public var outputShape: [Int] { shapes[output] }
    public var inputShape: [Int] { shapes[0] }

    /// Parameters after folding (weights, biases, preprocessing constants).
    public var parameterCount: Int {
        nodes.reduce(0) { total, node in
            switch node.operation {
            case let .standardize(mean, scale): return total + mean.count + scale.count
            case let .affine(scale, shift): return total + scale.count + shift.count
            case let .dense(weight, bias, _, _): return total + weight.count + bias.count
            case let .convolution(c): return total + c.weight.count + c.bias.count
            default: return total
            }
        }
    }

    /// Lowers `model` (a `Sequential` of DistillKit layers) for `format`; a layer it cannot lower
    /// is an `ExportError` naming the layer and the format.
    public static func lower(_ model: Module, inputShape: [Int], preprocessing: ExportPreprocessing = .init(), format: String) throws -> ExportGraph {
        guard inputShape.count == 1 || inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 }) else {
            throw ExportError(format: format, "inputs of shape \(inputShape): DistillKit exports feature vectors [F] and images [C, H, W]")
        }
        var graph = ExportGraph(shapes: [inputShape])
        var x = 0
        let features = inputShape.reduce(1, *)
        if let mean = preprocessing.inputMean, let std = preprocessing.inputStd {
            guard mean.count == std.count, mean.count == features || mean.count == 1 else {
                throw ExportError(format: format, "the input statistics have \(mean.count) means and \(std.count) standard deviations; the model takes \(features) features")
            }
            // The factor DistillKit's FeatureStatistics.apply uses, so the exported arithmetic is the same.
            let scale = std.map { $0 < 1e-6 ? 1 : 1 / $0 }
            x = graph.append(.standardize(mean: mean, scale: scale), [x], shape: inputShape, layer: "preprocessing", type: "Standardize")
        }
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        x = try graph.emit(model, path: "", input: x, format: format)
        if preprocessing.outputScale != nil || preprocessing.outputShift != nil {
            x = graph.append(.affine(scale: [preprocessing.outputScale ?? 1], shift: [preprocessing.outputShift ?? 0]), [x],
                             shape: graph.shapes[x], layer: "postprocessing", type: "TargetScaling")
        }
        guard !graph.nodes.isEmpty else { throw ExportError(format: format, "the model has no layers to export") }
        return graph
    }

    private init(shapes: [[Int]]) { self.shapes = shapes }

    private mutating func append(_ operation: Operation, _ inputs: [Int], shape: [Int], layer: String, type: String) -> Int {
        shapes.append(shape)
        nodes.append(Node(operation: operation, inputs: inputs, output: shapes.count - 1, layer: layer, layerType: type))
        return shapes.count - 1
    }

    private func join(_ path: String, _ leaf: String) -> String { path.isEmpty ? leaf : "\(path).\(leaf)" }

    private mutating func emit(_ module: Module, path: String, input x: Int, format: String) throws -> Int {
        let shape = shapes[x]
        let name = path.isEmpty ? "(the model)" : "'\(path)'"
        let type = String(describing: Swift.type(of: module))
        func refuse(_ why: String) -> ExportError { ExportError(format: format, "layer \(name) (\(type)) \(why)") }
        switch module {
        case let m as Sequential:
            var value = x
            for (i, layer) in m.layers.enumerated() { value = try emit(layer, path: join(path, "\(i)"), input: value, format: format) }
            return value
        case let m as Linear:
            guard shape.count == 1 else { throw refuse("takes a \(shape) value; DistillKit exports Linear layers on feature vectors (put a Flatten before it)") }
            let outputs = m.weight.shape[0], inputs = m.weight.shape[1]
            guard inputs == shape[0] else { throw refuse("expects \(inputs) features, gets \(shape[0])") }
            let bias = m.bias?.scalars ?? [Float](repeating: 0, count: outputs)
            return append(.dense(weight: m.weight.scalars, bias: bias, inputs: inputs, outputs: outputs), [x], shape: [outputs], layer: path, type: type)
        case let m as Conv2d:
            guard shape.count == 3 else { throw refuse("takes a \(shape) value; convolutions take images [C, H, W]") }
            let c = m.config, w = m.weight.shape
            let window = Window(kernel: [w[2], w[3]], stride: [c.stride.0, c.stride.1], padding: [c.padding.0, c.padding.1],
                                dilation: [c.dilation.0, c.dilation.1])
            let outH = Self.outputExtent(shape[1], window, axis: 0), outW = Self.outputExtent(shape[2], window, axis: 1)
            guard shape[0] == w[1] * c.groups, outH > 0, outW > 0 else { throw refuse("does not fit its input \(shape)") }
            let conv = Convolution(weight: m.weight.scalars, bias: m.bias?.scalars ?? [Float](repeating: 0, count: w[0]),
                                   inChannels: shape[0], outChannels: w[0], groups: c.groups, window: window)
            return append(.convolution(conv), [x], shape: [w[0], outH, outW], layer: path, type: type)
        case let m as BatchNorm:
            let channels = m.weight.count
            guard shape.first == channels else { throw refuse("normalises \(channels) channels, its input is \(shape)") }
            let (gamma, beta, mean, variance) = (m.weight.scalars, m.bias.scalars, m.runningMean.scalars, m.runningVar.scalars)
            let scale = (0..<channels).map { gamma[$0] / (variance[$0] + m.epsilon).squareRoot() }
            let shift = (0..<channels).map { beta[$0] - mean[$0] * scale[$0] }
            if foldIntoLast(x, scale: scale, shift: shift) {
                nodes[nodes.count - 1].layerType += "+" + type
                return x
            }
            return append(.affine(scale: scale, shift: shift), [x], shape: shape, layer: path, type: type)
        case is ReLU: return append(.activation(.relu), [x], shape: shape, layer: path, type: type)
        case is GELU: return append(.activation(.gelu), [x], shape: shape, layer: path, type: type)
        case is Sigmoid: return append(.activation(.sigmoid), [x], shape: shape, layer: path, type: type)
        case is Tanh: return append(.activation(.tanh), [x], shape: shape, layer: path, type: type)
        case let m as LeakyReLU: return append(.activation(.leakyReLU(slope: m.slope)), [x], shape: shape, layer: path, type: type)
        case is DistillNN.Dropout: return x
        case is Flatten:
            guard shape.count > 1 else { return x }
            return append(.flatten, [x], shape: [shape.reduce(1, *)], layer: path, type: type)
        case let m as MaxPool2d:
            return try pool(m.config, x, path: path, type: type, average: false, refuse: refuse)
        case let m as AvgPool2d:
            return try pool(m.config, x, path: path, type: type, average: true, refuse: refuse)
        case is GlobalAvgPool2d:
            guard shape.count == 3 else { throw refuse("takes a \(shape) value; global pooling takes images [C, H, W]") }
            return append(.globalAveragePool, [x], shape: [shape[0]], layer: path, type: type)
        case let m as ResidualBlock:
            var h = try emit(m.conv1, path: join(path, "conv1"), input: x, format: format)
            h = try emit(m.bn1, path: join(path, "bn1"), input: h, format: format)
            h = append(.activation(.relu), [h], shape: shapes[h], layer: join(path, "relu1"), type: "ReLU")
            h = try emit(m.conv2, path: join(path, "conv2"), input: h, format: format)
            h = try emit(m.bn2, path: join(path, "bn2"), input: h, format: format)
            let shortcut = try m.shortcut.map { try emit($0, path: join(path, "shortcut"), input: x, format: format) } ?? x
            guard shapes[h] == shapes[shortcut] else { throw refuse("adds values of shapes \(shapes[h]) and \(shapes[shortcut])") }
            let sum = append(.add, [h, shortcut], shape: shapes[h], layer: join(path, "add"), type: type)
            return append(.activation(.relu), [sum], shape: shapes[h], layer: join(path, "relu2"), type: "ReLU")
        default:
            throw refuse("has no \(format) equivalent: DistillKit exports Linear, Conv2d, BatchNorm, ReLU, GELU, Sigmoid, Tanh, LeakyReLU, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Flatten, Dropout and ResidualBlock layers")
        }
    }

    private mutating func pool(_ c: Pool2dConfig, _ x: Int, path: String, type: String, average: Bool, refuse: (String) -> ExportError) throws -> Int {
        let shape = shapes[x]
        guard shape.count == 3 else { throw refuse("takes a \(shape) value; pooling takes images [C, H, W]") }
        let window = Window(kernel: [c.kernel.0, c.kernel.1], stride: [c.stride.0, c.stride.1], padding: [c.padding.0, c.padding.1], dilation: [1, 1])
        guard window.padding[0] * 2 <= window.kernel[0], window.padding[1] * 2 <= window.kernel[1] else {
            throw refuse("pads by more than half its window")
        }
        let outH = Self.outputExtent(shape[1], window, axis: 0), outW = Self.outputExtent(shape[2], window, axis: 1)
        guard outH > 0, outW > 0 else { throw refuse("does not fit its input \(shape)") }
        return append(average ? .averagePool(window) : .maxPool(window), [x], shape: [shape[0], outH, outW], layer: path, type: type)
    }

    /// Folds a per-channel `x · scale + shift` into the convolution or linear layer that produced
    /// `value`, when nothing else reads that value.
    private mutating func foldIntoLast(_ value: Int, scale: [Float], shift: [Float]) -> Bool {
        guard let last = nodes.last, last.output == value, !nodes.dropLast().contains(where: { $0.inputs.contains(value) }) else { return false }
        switch last.operation {
        case var .convolution(c):
            let perChannel = c.weight.count / c.outChannels
            for o in 0..<c.outChannels {
                for k in 0..<perChannel { c.weight[o * perChannel + k] *= scale[o] }
                c.bias[o] = c.bias[o] * scale[o] + shift[o]
            }
            nodes[nodes.count - 1].operation = .convolution(c)
        case .dense(var weight, var bias, let inputs, let outputs):
            for o in 0..<outputs {
                for i in 0..<inputs { weight[o * inputs + i] *= scale[o] }
                bias[o] = bias[o] * scale[o] + shift[o]
            }
            nodes[nodes.count - 1].operation = .dense(weight: weight, bias: bias, inputs: inputs, outputs: outputs)
        default: return false
        }
        return true
    }

    /// Output extent along `axis` (0 height, 1 width), flooring as DistillKit and PyTorch do.
    public static func outputExtent(_ input: Int, _ w: Window, axis: Int) -> Int {
        let span = input + 2 * w.padding[axis] - w.dilation[axis] * (w.kernel[axis] - 1) - 1
        return span < 0 ? 0 : span / w.stride[axis] + 1
    }

    /// Runs the lowered steps on `x` ([N] + input shape) with DistillKit's own kernels: the check
    /// that lowering (folding, preprocessing) kept the model's function, before any file is written.
    public func run(_ x: Tensor) -> Tensor {
        var values: [Tensor?] = Array(repeating: nil, count: shapes.count)
        values[0] = x
        withNoGrad {
            for node in nodes {
                let a = values[node.inputs[0]]!
                let n = a.shape[0]
                let y: Tensor
                switch node.operation {
                case let .standardize(mean, scale):
                    let f = shapes[0].reduce(1, *), src = a.scalars
                    y = Tensor(shape: a.shape, scalars: src.indices.map { i in
                        let j = mean.count == 1 ? 0 : i % f
                        return (src[i] - mean[j]) * scale[j]
                    })
                case let .affine(scale, shift):
                    let perSample = a.count / Swift.max(n, 1), channels = scale.count
                    let inner = channels == 1 ? perSample : perSample / channels, src = a.scalars
                    y = Tensor(shape: a.shape, scalars: src.indices.map { i in
                        let c = channels == 1 ? 0 : (i % perSample) / inner
                        return src[i] * scale[c] + shift[c]
                    })
                case let .dense(weight, bias, inputs, outputs):
                    y = linear(a, weight: Tensor(shape: [outputs, inputs], scalars: weight), bias: Tensor(shape: [outputs], scalars: bias))
                case let .convolution(c):
                    let w = c.window
                    y = conv2d(a, weight: Tensor(shape: [c.outChannels, c.inChannels / c.groups, w.kernel[0], w.kernel[1]], scalars: c.weight),
                               bias: Tensor(shape: [c.outChannels], scalars: c.bias),
                               config: Conv2dConfig(stride: (w.stride[0], w.stride[1]), padding: (w.padding[0], w.padding[1]),
                                                    dilation: (w.dilation[0], w.dilation[1]), groups: c.groups))
                case let .activation(kind):
                    switch kind {
                    case .relu: y = a.relu()
                    case .gelu: y = a.gelu()
                    case .sigmoid: y = a.sigmoid()
                    case .tanh: y = a.tanh()
                    case let .leakyReLU(slope): y = a.leakyRelu(slope: slope)
                    }
                case let .maxPool(w):
                    y = a.maxPool2d(Pool2dConfig(kernel: (w.kernel[0], w.kernel[1]), stride: (w.stride[0], w.stride[1]), padding: (w.padding[0], w.padding[1])))
                case let .averagePool(w):
                    y = a.avgPool2d(Pool2dConfig(kernel: (w.kernel[0], w.kernel[1]), stride: (w.stride[0], w.stride[1]), padding: (w.padding[0], w.padding[1])))
                case .globalAveragePool: y = a.globalAvgPool2d()
                case .flatten: y = a.flattened()
                case .add: y = a + values[node.inputs[1]]!
                }
                values[node.output] = y
            }
        }
        return values[output]!
    }
}

/// Writes `data` to `url` through a temporary file in the same folder and a rename, so a reader
/// sees the old file or the new one, never half of one.
func writeAtomically(_ data: Data, to url: URL, format: String) throws {
    do { try AtomicFile.write(data, to: url) } catch let error as TensorError { throw ExportError(format: format, error.message) }
}
