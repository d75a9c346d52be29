import DistillTensor
import Foundation

/// How an activation tensor is stored in int8 students: `x ≈ scale · (q − zeroPoint)` with q an
/// unsigned byte (0...255). The range always includes 0, so zero (padding, a ReLU's floor) is
/// exactly representable: it is the byte `zeroPoint`.
public struct ActivationQuantization: Sendable, Equatable {
    public var scale: Float
    public var zeroPoint: Int32

    public init(scale: Float, zeroPoint: Int32) { self.scale = scale; self.zeroPoint = zeroPoint }

    /// The bytes covering [low, high], widened to include 0 (an empty range gets scale 1/255).
    public init(low: Float, high: Float) {
        let lo = Swift.min(low, 0), hi = Swift.max(high, 0)
        let span = hi - lo
        scale = span > 0 && span.isFinite ? span / 255 : 1 / 255
        zeroPoint = Int32(Swift.max(0, Swift.min(255, (-lo / scale).rounded(.toNearestOrEven))))
    }

    /// Whether the scale is positive and finite and the zero point a byte.
    var isValid: Bool { scale > 0 && scale.isFinite && (0...255).contains(zeroPoint) }
}

/// How activation ranges are calibrated.
public enum CalibrationMethod: String, CaseIterable, Sendable {
    /// The smallest and largest value seen: nothing clips, but one outlier widens every step.
    case minMax = "minmax"
    /// The 0.01th and 99.99th percentiles: the rare outliers clip, the other values get finer steps.
    case percentile
}

/// How weights are rounded to int8.
public enum WeightRounding: String, CaseIterable, Sendable {
    /// Each weight to its nearest step.
    case nearest
    /// Rounding errors compensated along the calibration data (GPTQ) and biases corrected for the
    /// mean shift (ErrorCompensatingQuantization.swift): the int8 layer's outputs, not its weights,
    /// kept close to the float layer's.
    case compensated
}

/// A weight quantized per output channel, symmetric: `w[o][...] ≈ scales[o] · values[o][...]`
/// with values in −127...127 (−128 is never used, so the range is symmetric).
public struct QuantizedWeight: Sendable, Equatable {
    /// [out, in] for a linear layer, [out, in, kh, kw] for a convolution.
    public var shape: [Int]
    public var values: [Int8]
    public var scales: [Float]

    public init(shape: [Int], values: [Int8], scales: [Float]) { self.shape = shape; self.values = values; self.scales = scales }

    /// Quantizes `weight` (any rank ≥ 1; the first axis is the output channel): each channel's
    /// scale is its largest magnitude / 127 (1 for an all-zero channel).
    public init(quantizing weight: Tensor) {
        let outs = weight.shape[0], per = weight.count / Swift.max(outs, 1), w = weight.scalars
        var values = [Int8](repeating: 0, count: weight.count), scales = [Float](repeating: 1, count: outs)
        for o in 0..<outs {
            let row = w[(o * per)..<((o + 1) * per)]
            let largest = row.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) }
            let scale = largest > 0 ? largest / 127 : 1
            scales[o] = scale
            for (j, v) in row.enumerated() {
                values[o * per + j] = Int8(Swift.max(-127, Swift.min(127, (v / scale).rounded(.toNearestOrEven))))
            }
        }
        self.init(shape: weight.shape, values: values, scales: scales)
    }

    /// The float weight the integers stand for.
    public var dequantized: Tensor {
        let per = values.count / Swift.max(shape[0], 1)
        return Tensor(shape: shape, scalars: values.enumerated().map { Float($0.element) * scales[$0.offset / per] })
    }
}

/// One layer of an int8 student, in the order the float model runs them (batch norms already
/// folded into their convolutions, ReLUs into the layer before, dropout gone).
public enum QuantizedLayer: Sendable, Equatable {
    /// `y = x · Wᵀ + b` then ReLU when `relu`; `output` is how y is stored as bytes, nil for the
    /// last layer, whose floats are the model's output.
    case linear(weight: QuantizedWeight, bias: [Float]?, relu: Bool, output: ActivationQuantization?)
    /// A convolution (groups 1, dilation 1) then ReLU when `relu`.
    case convolution(weight: QuantizedWeight, bias: [Float]?, stride: [Int], padding: [Int], relu: Bool, output: ActivationQuantization)
    case maxPool(kernel: [Int], stride: [Int], padding: [Int])
    /// Padding counts as zeros, as `Tensor.avgPool2d` defines it.
    case avgPool(kernel: [Int], stride: [Int], padding: [Int])
    case globalAvgPool
    case flatten

    var isComputational: Bool {
        switch self { case .linear, .convolution: return true; default: return false }
    }
}

/// A student quantized to int8: its layers, how its input is stored, and what the float model
/// it came from was (spec, shapes, preprocessing), so that a file of it runs and exports alone.
public struct QuantizedStudent: Sendable, Equatable {
    /// The float model's spec, input shape and class count, and its other metadata (a tabular
    /// student's standardisation statistics, the task).
    public var info: SavedModelDescription
    public var input: ActivationQuantization
    public var layers: [QuantizedLayer]
    /// How the activation ranges were chosen.
    public var calibration: CalibrationMethod

    public init(info: SavedModelDescription, input: ActivationQuantization, layers: [QuantizedLayer], calibration: CalibrationMethod) {
        self.info = info; self.input = input; self.layers = layers; self.calibration = calibration
    }

    /// Weights and biases: the number the float model has.
    public var parameterCount: Int {
        layers.reduce(0) { total, layer in
            switch layer {
            case .linear(let w, let b, _, _), .convolution(let w, let b, _, _, _, _): return total + w.values.count + (b?.count ?? 0)
            default: return total
            }
        }
    }

    /// Bytes of the model's state: one per weight, four per weight scale and bias, eight per
    /// stored activation quantization (scale and zero point).
    public var stateBytes: Int {
        8 + layers.reduce(0) { total, layer in
            switch layer {
            case .linear(let w, let b, _, let out):
                return total + w.values.count + 4 * w.scales.count + 4 * (b?.count ?? 0) + (out == nil ? 0 : 8)
            case .convolution(let w, let b, _, _, _, _):
                return total + w.values.count + 4 * w.scales.count + 4 * (b?.count ?? 0) + 8
            default: return total
            }
        }
    }
}

/// What a saved model file says about the float model (the `SavedModel` fields, as a value that
/// can be compared and sent across threads).
public struct SavedModelDescription: Sendable, Equatable {
    public var spec: String
    public var inputShape: [Int]
    public var numClasses: Int
    public var extra: [String: String]

    public init(spec: String, inputShape: [Int], numClasses: Int, extra: [String: String]) {
        self.spec = spec; self.inputShape = inputShape; self.numClasses = numClasses; self.extra = extra
    }
    public init(_ info: SavedModel) { self.init(spec: info.spec, inputShape: info.inputShape, numClasses: info.numClasses, extra: info.extra) }
    public var savedModel: SavedModel { SavedModel(spec: spec, inputShape: inputShape, numClasses: numClasses, extra: extra) }
}

/// Post-training quantization of MLP and CNN students: weights per output channel (symmetric
/// int8), activations per tensor (asymmetric uint8) with ranges calibrated on training data.
public enum Quantizer {
    /// A float layer after folding: what quantization and calibration work on.
    enum FoldedLayer {
        case linear(weight: Tensor, bias: Tensor?, relu: Bool)
        case convolution(weight: Tensor, bias: Tensor?, config: Conv2dConfig, relu: Bool)
        case maxPool(Pool2dConfig), avgPool(Pool2dConfig), globalAvgPool, flatten
    }

    /// `model`'s layers with batch norms folded into the convolution before them and ReLUs into
    /// the layer before them (a ReLU after a max pooling moves before it: the two commute). Throws
    /// naming the first layer int8 students do not cover (residual blocks, grouped or dilated
    /// convolutions, other activations).
    static func fold(_ model: Module) throws -> [FoldedLayer] {
        var modules: [(String, Module)] = []
        func collect(_ m: Module, _ path: String) {
            if let s = m as? Sequential {
                for (i, child) in s.layers.enumerated() { collect(child, path.isEmpty ? "\(i)" : "\(path).\(i)") }
            } else {
                modules.append((path, m))
            }
        }
        collect(model, "")
        var layers: [FoldedLayer] = []
        for (path, module) in modules {
            func unsupported(_ why: String) -> TensorError {
                TensorError("layer \(path) (\(type(of: module))): \(why); int8 students cover Linear, Conv2d, BatchNorm2d after a convolution, ReLU, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Flatten and Dropout")
            }
            switch module {
            case let linear as Linear:
                layers.append(.linear(weight: linear.weight, bias: linear.bias, relu: false))
            case let conv as Conv2d:
                guard conv.config.groups == 1, conv.config.dilation == (1, 1) else { throw unsupported("grouped or dilated convolution") }
                layers.append(.convolution(weight: conv.weight, bias: conv.bias, config: conv.config, relu: false))
            case let norm as BatchNorm2d:
                guard case .convolution(let w, let b, let config, false)? = layers.last, norm.weight.count == w.shape[0] else {
                    throw unsupported("a batch norm must follow a convolution directly")
                }
                let outs = w.shape[0], per = w.count / outs
                var weight = w.scalars, bias = b?.scalars ?? [Float](repeating: 0, count: outs)
                for o in 0..<outs {
                    let scale = norm.weight.data[o] / (norm.runningVar.data[o] + norm.epsilon).squareRoot()
                    for j in 0..<per { weight[o * per + j] *= scale }
                    bias[o] = (bias[o] - norm.runningMean.data[o]) * scale + norm.bias.data[o]
                }
                layers[layers.count - 1] = .convolution(weight: Tensor(shape: w.shape, scalars: weight), bias: Tensor(bias), config: config, relu: false)
            case is ReLU:
                var k = layers.count - 1
                while k >= 0, case .maxPool = layers[k] { k -= 1 }
                switch k >= 0 ? layers[k] : nil {
                case .linear(let w, let b, _)?: layers[k] = .linear(weight: w, bias: b, relu: true)
                case .convolution(let w, let b, let c, _)?: layers[k] = .convolution(weight: w, bias: b, config: c, relu: true)
                default: throw unsupported("a ReLU must follow a Linear or Conv2d (max poolings between are fine)")
                }
            case let pool as MaxPool2d: layers.append(.maxPool(pool.config))
            case let pool as AvgPool2d: layers.append(.avgPool(pool.config))
            case is GlobalAvgPool2d: layers.append(.globalAvgPool)
            case is Flatten: layers.append(.flatten)
            case is Dropout: break
            default: throw unsupported("not covered")
            }
        }
        guard let last = layers.last(where: { if case .linear = $0 { return true }; if case .convolution = $0 { return true }; return false }),
              case .linear(_, _, false) = last else {
            throw TensorError("an int8 student must end with a Linear layer without ReLU (its float logits are the output)")
        }
        return layers
    }

    /// Runs the first `count` of `layers` (all when nil) on `x` ([N, ...]): in float, or along the
    /// int8 path simulated in float when `int8` is given (the input and each stored activation
    /// rounded to their bytes, average poolings re-rounded to the last range as the int8 plan does,
    /// `int8`'s weights and biases where it has them). Calls `record(k, y)` with the output of each
    /// linear or convolution layer k (after its ReLU and rounding).
    static func forward(_ layers: [FoldedLayer], _ x: Tensor, count: Int? = nil, int8: SimulatedInt8? = nil,
                        record: (Int, Tensor) -> Void = { _, _ in }) -> Tensor {
        func rounded(_ t: Tensor, _ q: ActivationQuantization?) -> Tensor {
            guard let q else { return t }
            return t.fakeQuantized(scale: q.scale, zeroPoint: q.zeroPoint)
        }
        return withNoGrad {
            var range = int8?.input
            var y = rounded(x, range)
            for (k, layer) in layers.prefix(count ?? layers.count).enumerated() {
                switch layer {
                case .linear(let w, let b, let relu):
                    if y.rank > 2 { y = y.flattened() }
                    y = linear(y, weight: int8?.weights[k] ?? w, bias: int8?.biases[k] ?? b)
                    if relu { y = y.relu() }
                    range = int8?.ranges[k]
                    y = rounded(y, range)
                    record(k, y)
                case .convolution(let w, let b, let config, let relu):
                    y = conv2d(y, weight: int8?.weights[k] ?? w, bias: int8?.biases[k] ?? b, config: config)
                    if relu { y = y.relu() }
                    range = int8?.ranges[k]
                    y = rounded(y, range)
                    record(k, y)
                case .maxPool(let c): y = y.maxPool2d(c)
                case .avgPool(let c): y = rounded(y.avgPool2d(c), range)
                case .globalAvgPool: y = rounded(y.globalAvgPool2d(), range)
                case .flatten: y = y.flattened()
                }
            }
            return y
        }
    }

    /// The values of one activation seen during calibration: exact extremes and a sample for percentiles.
    struct RangeObserver {
        var low = Float.infinity, high = -Float.infinity
        var sample: [Float] = []
        /// Values kept for the percentiles (an even stride through everything seen beyond it).
        static let sampleLimit = 2_000_000

        mutating func observe(_ t: Tensor) {
            let n = t.count, p = t.data
            for i in 0..<n { let v = p[i]; if v < low { low = v }; if v > high { high = v } }
            let stride = Swift.max(1, (sample.count + n) / Self.sampleLimit)
            var i = 0
            while i < n { sample.append(p[i]); i += stride }
        }

        func quantization(_ method: CalibrationMethod) -> ActivationQuantization {
            switch method {
            case .minMax: return ActivationQuantization(low: low, high: high)
            case .percentile:
                let sorted = sample.sorted()
                guard !sorted.isEmpty else { return ActivationQuantization(low: low, high: high) }
                let lowIndex = Int(Double(sorted.count - 1) * 0.0001), highIndex = Int((Double(sorted.count - 1) * 0.9999).rounded(.up))
                return ActivationQuantization(low: sorted[lowIndex], high: sorted[highIndex])
            }
        }
    }

    /// What `quantize` measured for each calibration method.
    public struct Calibration: Sendable {
        public var method: CalibrationMethod
        /// Top-1 accuracy of the int8 student on the calibration samples.
        public var accuracy: Double
    }

    /// Quantizes `model` (evaluation mode) for examples of `exampleShape`, calibrating activation
    /// ranges on `samples` ([N, ...exampleShape], already standardised for a tabular model) with
    /// both methods and keeping the one whose int8 student classifies `labels` best (min/max on a
    /// tie). Weights are rounded as `rounding` says. Returns the student and each method's calibration
    /// accuracy. Throws for a layer int8 students do not cover or samples of the wrong shape.
    public static func quantize(_ model: Module, info: SavedModelDescription, samples: Tensor, labels: [Int],
                                rounding: WeightRounding = .compensated) throws
        -> (student: QuantizedStudent, calibrations: [Calibration]) {
        guard samples.rank >= 2, Array(samples.shape.dropFirst()) == info.inputShape || samples.count == samples.shape[0] * info.inputShape.reduce(1, *) else {
            throw TensorError("calibration samples of shape \(Array(samples.shape.dropFirst())) do not fit a model taking \(info.inputShape)")
        }
        guard labels.count == samples.shape[0], samples.shape[0] > 0 else {
            throw TensorError("calibration needs one label per sample (\(samples.shape[0]) samples, \(labels.count) labels)")
        }
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        let layers = try fold(model)
        let x = samples.reshaped([samples.shape[0]] + info.inputShape)
        var input = RangeObserver()
        input.observe(x)
        var observers = [Int: RangeObserver]()
        let batch = 250
        var start = 0
        while start < x.shape[0] {
            let rows = x.slice(axis: 0, start: start, length: Swift.min(batch, x.shape[0] - start))
            _ = forward(layers, rows) { k, y in observers[k, default: RangeObserver()].observe(y) }
            start += batch
        }
        var candidates: [(QuantizedStudent, Calibration)] = []
        for method in CalibrationMethod.allCases {
            let ranges = observers.mapValues { $0.quantization(method) }, inputRange = input.quantization(method)
            let refined = rounding == .compensated ? refinedWeights(layers, input: inputRange, ranges: ranges, samples: x) : [:]
            let student = QuantizedStudent(info: info, input: inputRange, layers: quantizedLayers(layers, ranges: ranges, refined: refined),
                                           calibration: method)
            let plan = try QuantizedPlan(student)
            let logits = plan(x)
            let predictions = logits.argmaxLastAxis()
            let correct = zip(predictions, labels).filter { $0 == $1 }.count
            candidates.append((student, Calibration(method: method, accuracy: Double(correct) / Double(labels.count))))
        }
        let best = candidates.max { $0.1.accuracy < $1.1.accuracy || ($0.1.accuracy == $1.1.accuracy && $1.0.calibration == .minMax) }!
        return (best.0, candidates.map(\.1))
    }

    /// The folded layers with their weights quantized (`refined[k]`'s weight and bias where given,
    /// nearest rounding otherwise) and each computational layer's output stored as `ranges[k]`
    /// (the last linear layer keeps float output).
    static func quantizedLayers(_ layers: [FoldedLayer], ranges: [Int: ActivationQuantization],
                                refined: [Int: (weight: QuantizedWeight, bias: [Float])] = [:]) -> [QuantizedLayer] {
        let lastComputational = layers.lastIndex { if case .linear = $0 { return true }; if case .convolution = $0 { return true }; return false }
        return layers.enumerated().map { k, layer in
            let output = ranges[k] ?? ActivationQuantization(low: 0, high: 1)
            switch layer {
            case .linear(let w, let b, let relu):
                return .linear(weight: refined[k]?.weight ?? QuantizedWeight(quantizing: w), bias: refined[k]?.bias ?? b?.scalars, relu: relu,
                               output: k == lastComputational ? nil : output)
            case .convolution(let w, let b, let c, let relu):
                return .convolution(weight: refined[k]?.weight ?? QuantizedWeight(quantizing: w), bias: refined[k]?.bias ?? b?.scalars,
                                    stride: [c.stride.0, c.stride.1],
                                    padding: [c.padding.0, c.padding.1], relu: relu, output: output)
            case .maxPool(let c): return .maxPool(kernel: [c.kernel.0, c.kernel.1], stride: [c.stride.0, c.stride.1], padding: [c.padding.0, c.padding.1])
            case .avgPool(let c): return .avgPool(kernel: [c.kernel.0, c.kernel.1], stride: [c.stride.0, c.stride.1], padding: [c.padding.0, c.padding.1])
            case .globalAvgPool: return .globalAvgPool
            case .flatten: return .flatten
            }
        }
    }
}
