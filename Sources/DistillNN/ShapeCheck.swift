import DistillTensor

/// Checks a model description as a whole against the data it will see, before any tensor of that
/// data is made: each layer's output shape for one example is computed with checked arithmetic,
/// pooling and convolution parameters must be in range, each layer must accept what the previous
/// one gives, and the last must give one value per class. Model descriptions come from files (a
/// saved model's metadata, a YAML experiment, a `--model` option), so a description that does not
/// fit is an error naming the layer, not a precondition failure in the middle of training.
public enum ModelShapes {
    /// Most dimensions an example may have, and the largest extent of one dimension.
    public static let maxRank = 4
    public static let maxExtent = 1 << 24

    /// Throws unless `shape` is a plausible example shape: rank 1...4, every extent 1...2^24,
    /// the element count within the memory budget.
    public static func checkExampleShape(_ shape: [Int], what: String) throws {
        guard (1...maxRank).contains(shape.count), shape.allSatisfy({ (1...maxExtent).contains($0) }) else {
            throw TensorError("\(what): input shape \(shape) is not an example shape (1 to \(maxRank) dimensions, each 1...\(maxExtent))")
        }
        try MemoryBudget.check(shape: shape, for: "\(what): one example of shape \(shape)")
    }

    /// The output shape of `model` for one example of `inputShape` (no batch axis); throws naming
    /// the first layer that cannot take what it is given, or whose output would be empty.
    @discardableResult
    public static func check(_ model: Module, inputShape: [Int], numClasses: Int? = nil, what: String = "model") throws -> [Int] {
        try checkExampleShape(inputShape, what: what)
        let output = try outputShape(of: model, path: "", input: inputShape, orThrowFor: what)
        if let numClasses, output != [numClasses] {
            throw TensorError("\(what): gives outputs of shape \(output) per example, but it is described as having \(numClasses) classes")
        }
        return output
    }

    /// `model`'s output shape for one example of `input`, or an error that starts with `name`
    /// (the file the model came from) and says which layer does not take that input.
    public static func outputShape(of model: Module, path: String, input: [Int], orThrowFor name: String) throws -> [Int] {
        do { return try outputShape(of: model, path: path, input: input) } catch let error as TensorError {
            throw TensorError("\(name): does not take examples of shape \(input): \(error.message)")
        }
    }

    /// Whether `outputShape` knows every layer of `model` (DistillKit's own layers, in
    /// `Sequential`s): only then is its answer the model's. A module of another kind (an ONNX graph
    /// seen as a module, a transformer, a user's own layer) is run without the check.
    public static func understands(_ model: Module) -> Bool {
        switch model {
        case let s as Sequential: return s.children.allSatisfy { understands($0.module) }
        case is Linear, is Conv2d, is MaxPool2d, is AvgPool2d, is GlobalAvgPool2d, is Flatten, is BatchNorm, is ResidualBlock,
             is QuantizedModel, is TokenBag, is ReLU, is GELU, is Sigmoid, is Tanh, is LeakyReLU, is Dropout:
            return true
        default: return false
        }
    }

    /// One layer's (or container's) output shape for an example shape.
    static func outputShape(of module: Module, path: String, input: [Int]) throws -> [Int] {
        func fail(_ why: String) -> TensorError {
            TensorError("layer \(path.isEmpty ? "0" : path) (\(layerName(module))): \(why)")
        }
        let output: [Int]
        switch module {
        case let s as Sequential:
            var shape = input
            for (name, layer) in s.children { shape = try outputShape(of: layer, path: path.isEmpty ? name : "\(path).\(name)", input: shape) }
            output = shape
        case let l as Linear:
            let inFeatures = l.weight.shape[1]
            guard input.count == 1 else { throw fail("takes [\(inFeatures)] features per example, gets shape \(input) (add a flatten layer before it)") }
            guard input[0] == inFeatures else { throw fail("takes \(inFeatures) features, gets \(input[0])") }
            output = [l.weight.shape[0]]
        case let c as Conv2d:
            let inChannels = c.weight.shape[1] * c.config.groups
            guard input.count == 3 else { throw fail("takes images [C, H, W], gets shape \(input)") }
            guard input[0] == inChannels else { throw fail("takes \(inChannels) channels, gets \(input[0])") }
            let k = (c.weight.shape[2], c.weight.shape[3])
            let h = try extent(input[1], kernel: k.0, stride: c.config.stride.0, padding: c.config.padding.0, dilation: c.config.dilation.0, fail)
            let w = try extent(input[2], kernel: k.1, stride: c.config.stride.1, padding: c.config.padding.1, dilation: c.config.dilation.1, fail)
            output = [c.weight.shape[0], h, w]
        case let p as MaxPool2d: output = try poolShape(p.config, input, fail)
        case let p as AvgPool2d: output = try poolShape(p.config, input, fail)
        case is GlobalAvgPool2d:
            guard input.count == 3 else { throw fail("takes images [C, H, W], gets shape \(input)") }
            output = [input[0]]
        case is Flatten:
            guard let n = CheckedSize.product(input) else { throw fail("input shape \(input) overflows") }
            output = [n]
        case let b as BatchNorm:
            let features = b.weight.shape[0]
            let expectedRank = b is BatchNorm1d ? 1 : 3
            guard input.count == expectedRank, input[0] == features else {
                throw fail("normalises \(features) \(expectedRank == 1 ? "features [F]" : "channels [C, H, W]"), gets shape \(input)")
            }
            output = input
        case let r as ResidualBlock:
            let main = try outputShape(of: Sequential([r.conv1, r.bn1, r.conv2, r.bn2]), path: path, input: input)
            let skip = try r.shortcut.map { try outputShape(of: $0, path: "\(path).shortcut", input: input) } ?? input
            guard main == skip else { throw fail("its two paths give shapes \(main) and \(skip)") }
            output = main
        case let q as QuantizedModel:  // an int8 student: the shapes its file declares
            let expected = q.student.info.inputShape
            guard CheckedSize.product(input) == CheckedSize.product(expected) else { throw fail("takes examples of shape \(expected), gets \(input)") }
            var classes = q.student.info.numClasses
            if case .linear(let w, _, _, _)? = q.student.layers.last { classes = w.shape[0] }
            output = [classes]
        case let t as TokenBag:  // token ids [L] → one vector
            guard input.count == 1 else { throw fail("takes token ids [length], gets \(input)") }
            output = [t.projection.weight.shape[0]]
        default:
            output = input  // elementwise layers: activations, dropout
        }
        guard output.allSatisfy({ $0 >= 1 }) else { throw fail("gives an empty output \(output) for input \(input)") }
        try MemoryBudget.check(shape: output, for: "layer \(path) (\(layerName(module))) output \(output)")
        return output
    }

    /// Output extent of a convolution along one axis, `(in + 2·pad − dilation·(k − 1) − 1) / stride + 1`, checked.
    static func extent(_ input: Int, kernel: Int, stride: Int, padding: Int, dilation: Int, _ fail: (String) -> TensorError) throws -> Int {
        guard stride >= 1, padding >= 0, dilation >= 1, kernel >= 1 else {
            throw fail("stride \(stride), padding \(padding), dilation \(dilation), kernel \(kernel): stride, dilation and kernel must be positive, padding non-negative")
        }
        guard let padded = CheckedSize.multiply(padding, 2).flatMap({ CheckedSize.add(input, $0) }),
              let reach = CheckedSize.multiply(dilation, kernel - 1).flatMap({ CheckedSize.add($0, 1) }) else {
            throw fail("padding \(padding) or dilation \(dilation) overflows")
        }
        guard padded >= reach else { throw fail("kernel \(kernel) (dilation \(dilation)) is larger than the input extent \(input) plus padding") }
        return (padded - reach) / stride + 1
    }

    static func poolShape(_ config: Pool2dConfig, _ input: [Int], _ fail: (String) -> TensorError) throws -> [Int] {
        guard input.count == 3 else { throw fail("takes images [C, H, W], gets shape \(input)") }
        guard config.padding.0 * 2 <= config.kernel.0 && config.padding.1 * 2 <= config.kernel.1 else {
            throw fail("padding \(config.padding) is more than half the kernel \(config.kernel)")
        }
        let h = try extent(input[1], kernel: config.kernel.0, stride: config.stride.0, padding: config.padding.0, dilation: 1, fail)
        let w = try extent(input[2], kernel: config.kernel.1, stride: config.stride.1, padding: config.padding.1, dilation: 1, fail)
        return [input[0], h, w]
    }

    static func layerName(_ module: Module) -> String {
        switch module {
        case let l as Linear: return "linear \(l.weight.shape[1])→\(l.weight.shape[0])"
        case let c as Conv2d: return "conv2d \(c.weight.shape[1] * c.config.groups)→\(c.weight.shape[0])"
        default: return "\(type(of: module))".lowercased()
        }
    }

    /// Throws naming the first tensor of `model` that holds NaN or ±Inf: a model with one cannot
    /// give meaningful outputs, and a teacher with one would silently teach NaN.
    public static func checkFinite(_ model: Module, what: String) throws {
        for (name, tensor, _) in model.namedTensors() {
            if let i = tensor.firstNonFiniteIndex {
                throw TensorError("\(what): tensor '\(name)' holds \(tensor.data[i]) at index \(i); a model's weights must be finite")
            }
        }
    }
}
