import DistillNN
import Foundation

/// Writes a lowered student as a Core ML model (`.mlmodel`, the `Model.proto` protobuf) for
/// iOS 14 / macOS 11 and later (specification version 4): a `NeuralNetworkClassifier` with the
/// class labels, inputs and outputs named, and the model's preprocessing as its first layers; or a
/// `NeuralNetworkRegressor` for a regression model.
///
/// Features: input `input`, a float32 array `[C, H, W]` (images) or `[F]` (features), raw values.
/// A classifier outputs `classLabel` (the predicted class's name), `classProbability` (name →
/// softmax probability) and `logits` (the model's outputs); a regressor outputs `prediction`.
///
/// Layers: batch norm is folded into the convolution or inner product before it; Core ML's
/// `valid` padding with explicit amounts gives DistillKit's symmetric zero padding, and its average
/// pooling counts the padding, as DistillKit does.
///
/// An int8 student (`distill quantize`) is written with 8-bit weights by
/// `serialize(_:preprocessing:options:)` in CoreMLInt8.swift, through the same layer writers.
public enum CoreMLExport {
    public static let format = "Core ML"
    public static let specificationVersion = 4

    // Field numbers of the Core ML specification (coremltools' .proto files).
    enum Field {
        // Model
        static let specVersion = 1, description = 2, regressor = 303, classifier = 403
        // ModelDescription
        static let input = 1, output = 10, predictedFeatureName = 11, predictedProbabilitiesName = 12, metadata = 100
        // FeatureDescription: name, shortDescription, type
        static let name = 1, shortDescription = 2, type = 3
        // FeatureType
        static let int64Type = 1, stringType = 3, multiArrayType = 5, dictionaryType = 6
        // ArrayFeatureType: shape, dataType (FLOAT32 = 65568)
        static let arrayShape = 1, arrayDataType = 2, float32 = 65568
        // DictionaryFeatureType.stringKeyType
        static let stringKeyType = 2
        // Metadata: shortDescription, versionString, author, userDefined (map entries: key 1, value 2)
        static let metaShortDescription = 1, metaVersion = 2, metaAuthor = 3, metaUserDefined = 100
        // NeuralNetworkClassifier / Regressor: layers, stringClassLabels (StringVector.vector = 1), labelProbabilityLayerName
        static let layers = 1, stringClassLabels = 100, labelProbabilityLayerName = 200
        // NeuralNetworkLayer: name, input, output, then one of the parameter messages
        static let layerName = 1, layerInput = 2, layerOutput = 3
        static let convolution = 100, pooling = 120, activation = 130, innerProduct = 140, batchnorm = 160, softmax = 175,
                   padding = 200, add = 230, scale = 245, bias = 250, loadConstant = 290, reshape = 300, flatten = 301,
                   permute = 310, gelu = 795
        // WeightParams: floatValue 1, float16Value 2, rawValue 30 (unsigned `numberOfBits`-bit integers),
        // int8RawValue 31 (only with a layer's int8DynamicQuantize), quantization 40
        static let floatValue = 1, float16Value = 2, rawValue = 30, int8RawValue = 31, quantization = 40
        // QuantizationParams: numberOfBits 1, linearQuantization 101 (LinearQuantizationParams: scale 1,
        // bias 2), lookupTableQuantization 102
        static let numberOfBits = 1, linearQuantization = 101, lookupTableQuantization = 102
        static let linearScale = 1, linearBias = 2
    }

    /// Names of the layer kinds by field number, for reading files back.
    static let layerKinds: [Int: String] = [
        Field.convolution: "convolution", Field.pooling: "pooling", Field.activation: "activation", Field.innerProduct: "innerProduct",
        Field.batchnorm: "batchnorm", Field.softmax: "softmax", Field.padding: "padding", Field.add: "add", Field.scale: "scale",
        Field.bias: "bias", Field.loadConstant: "loadConstant", Field.reshape: "reshape", Field.flatten: "flatten",
        Field.permute: "permute", Field.gelu: "gelu",
    ]

    public struct Options: Sendable {
        public var classNames: [String]?
        /// A regressor (output `prediction`) instead of a classifier.
        public var isRegressor: Bool
        public var shortDescription: String
        /// Extra key/value pairs for the model's metadata (shown by Xcode).
        public var metadata: [String: String]
        public init(classNames: [String]? = nil, isRegressor: Bool = false, shortDescription: String = "DistillKit student", metadata: [String: String] = [:]) {
            self.classNames = classNames; self.isRegressor = isRegressor; self.shortDescription = shortDescription; self.metadata = metadata
        }
    }

    /// The .mlmodel bytes for `graph`.
    public static func serialize(_ graph: ExportGraph, options: Options = .init()) throws -> Data {
        if graph.output == 0 { throw ExportError(format: format, "the model has no layers to export") }
        let resultName = options.isRegressor ? "prediction" : "logits"
        // Blob names: the input, then one per value (its layer's path), the model's output named resultName.
        var blob = [String](repeating: "", count: graph.shapes.count)
        blob[0] = "input"
        var used: Set<String> = ["input", "classLabel", "classProbability", resultName]
        var layers: [Data] = []
        for node in graph.nodes {
            var candidate = node.layer.isEmpty ? "value" : node.layer
            if used.contains(candidate) { candidate += "_\(node.output)" }
            used.insert(candidate)
            blob[node.output] = node.output == graph.output ? resultName : candidate
            layers += try layerMessages(node, graph: graph, blob: blob)
        }
        return try model(layers, inputShape: graph.inputShape, outputShape: graph.outputShape, options: options)
    }

    /// Writes `graph` to `url` atomically (refusals come before any write).
    public static func write(_ graph: ExportGraph, to url: URL, options: Options = .init()) throws {
        let data = try serialize(graph, options: options)
        try writeAtomically(data, to: url, format: format)
    }

    /// The Model message around `layers`, which read the blob `input` and write `logits` (a
    /// classifier, followed here by the softmax into `classProbability`) or `prediction` (a regressor):
    /// the feature descriptions, metadata and class labels. Shared by the float and int8 exports.
    static func model(_ layers: [Data], inputShape: [Int], outputShape: [Int], options: Options) throws -> Data {
        let outputs = outputShape.reduce(1, *)
        let names = options.classNames ?? (0..<outputs).map(String.init)
        guard options.isRegressor || names.count == outputs else {
            throw ExportError(format: format, "\(names.count) class names for \(outputs) outputs")
        }
        let resultName = options.isRegressor ? "prediction" : "logits"
        var layers = layers
        if !options.isRegressor {
            layers.append(layer("softmax", [resultName], "classProbability", Field.softmax) { _ in })
        }

        var model = ProtobufWriter()
        model.int(Field.specVersion, specificationVersion)
        model.message(Field.description) { d in
            d.message(Field.input) { f in
                f.string(Field.name, "input")
                f.string(Field.shortDescription, inputShape.count == 3
                         ? "One image, \(inputShape.map(String.init).joined(separator: "×")) (C, H, W), raw values as DistillKit saw them in training"
                         : "One row of \(inputShape[0]) raw features (the standardisation is inside the model)")
                f.message(Field.type) { t in arrayType(&t, shape: inputShape) }
            }
            if options.isRegressor {
                d.message(Field.output) { f in
                    f.string(Field.name, resultName)
                    f.string(Field.shortDescription, "The model's output, in the target's units")
                    f.message(Field.type) { t in arrayType(&t, shape: outputShape) }
                }
                d.string(Field.predictedFeatureName, resultName)
            } else {
                d.message(Field.output) { f in
                    f.string(Field.name, "classLabel")
                    f.string(Field.shortDescription, "The predicted class")
                    f.message(Field.type) { t in t.message(Field.stringType) { _ in } }
                }
                d.message(Field.output) { f in
                    f.string(Field.name, "classProbability")
                    f.string(Field.shortDescription, "Probability of each class (softmax of the logits)")
                    f.message(Field.type) { t in t.message(Field.dictionaryType) { k in k.message(Field.stringKeyType) { _ in } } }
                }
                d.message(Field.output) { f in
                    f.string(Field.name, resultName)
                    f.string(Field.shortDescription, "The model's outputs before the softmax")
                    f.message(Field.type) { t in arrayType(&t, shape: outputShape) }
                }
                d.string(Field.predictedFeatureName, "classLabel")
                d.string(Field.predictedProbabilitiesName, "classProbability")
            }
            d.message(Field.metadata) { m in
                m.string(Field.metaShortDescription, options.shortDescription)
                m.string(Field.metaAuthor, "DistillKit")
                for (key, value) in options.metadata.sorted(by: { $0.key < $1.key }) {
                    m.message(Field.metaUserDefined) { e in e.string(1, key); e.string(2, value) }
                }
            }
        }
        model.message(options.isRegressor ? Field.regressor : Field.classifier) { n in
            for layer in layers { n.bytes(Field.layers, layer) }
            if !options.isRegressor {
                n.message(Field.stringClassLabels) { v in for name in names { v.string(1, name) } }
                n.string(Field.labelProbabilityLayerName, "classProbability")
            }
        }
        return model.data
    }

    static func arrayType(_ t: inout ProtobufWriter, shape: [Int]) {
        t.message(Field.multiArrayType) { a in
            a.ints(Field.arrayShape, shape)
            a.int(Field.arrayDataType, Field.float32)
        }
    }

    /// A weight blob of an inner product or convolution, as the file stores it.
    enum Weights {
        case float([Float])
        /// DistillKit's symmetric int8 weights with one scale per output channel (axis 0), written
        /// as Core ML's 8-bit linear quantization (see `weights(_:_:_:)`).
        case int8(QuantizedWeight)
    }

    /// WeightParams with float32 values.
    static func weights(_ w: inout ProtobufWriter, _ field: Int, _ values: [Float]) {
        w.message(field) { p in p.floats(Field.floatValue, values) }
    }

    /// WeightParams for `blob`. Core ML's 8-bit linear quantization stores unsigned bytes u, each
    /// standing for `scale[o] · u + bias[o]` in output channel o (one scale and bias per channel, or
    /// one for all). A DistillKit weight `scale[o] · q` with q in −128...127 is u = q + 128 with
    /// bias = −128 · scale[o]: the same integers shifted and the same scales, nothing requantized
    /// (coremltools' own `linear_symmetric` mode writes this form). Core ML dequantizes at load.
    static func weights(_ w: inout ProtobufWriter, _ field: Int, _ blob: Weights) {
        switch blob {
        case let .float(values): weights(&w, field, values)
        case let .int8(q):
            w.message(field) { p in
                p.bytes(Field.rawValue, Data(q.values.map { UInt8(Int($0) + 128) }))
                p.message(Field.quantization) { qp in
                    qp.int(Field.numberOfBits, 8)
                    qp.message(Field.linearQuantization) { l in
                        l.floats(Field.linearScale, q.scales)
                        l.floats(Field.linearBias, q.scales.map { -128 * $0 })
                    }
                }
            }
        }
    }

    /// BorderAmounts (borderAmounts = 10, each EdgeSizes start = 1, end = 2) for [top/bottom, left/right].
    static func borders(_ w: inout ProtobufWriter, _ padding: [Int]) {
        w.message(1) { amounts in
            for p in padding { amounts.message(10) { e in e.int(1, p); e.int(2, p) } }
        }
    }

    /// A NeuralNetworkLayer: name, input and output blobs, and its parameter message in `field`.
    static func layer(_ name: String, _ inputs: [String], _ output: String, _ field: Int, _ params: (inout ProtobufWriter) -> Void) -> Data {
        var w = ProtobufWriter()
        w.string(Field.layerName, name)
        for i in inputs { w.string(Field.layerInput, i) }
        w.string(Field.layerOutput, output)
        w.message(field, params)
        return w.data
    }

    /// `(x + (−mean)) · scale` per element (one value: shared): a bias layer, then a scale layer
    /// (BiasLayerParams: shape 1, bias 2; ScaleLayerParams: shapeScale 1, scale 2).
    static func standardize(_ name: String, _ input: String, _ output: String, mean: [Float], scale: [Float], shape: [Int]) -> [Data] {
        let shape = mean.count == 1 ? [1] : shape
        let centred = name + ".centred"
        return [
            layer(centred, [input], centred, Field.bias) { p in p.ints(1, shape); weights(&p, 2, mean.map { -$0 }) },
            layer(name, [centred], output, Field.scale) { p in p.ints(1, shape); weights(&p, 2, scale) },
        ]
    }

    /// InnerProductLayerParams: inputChannels 1, outputChannels 2, hasBias 10, weights 20, bias 21.
    static func innerProduct(_ name: String, _ input: String, _ output: String, inputs: Int, outputs: Int, weight: Weights, bias: [Float]) -> Data {
        layer(name, [input], output, Field.innerProduct) { p in
            p.int(1, inputs); p.int(2, outputs); p.bool(10, true); weights(&p, 20, weight); weights(&p, 21, bias)
        }
    }

    /// ConvolutionLayerParams: outputChannels 1, kernelChannels 2, nGroups 10, kernelSize 20, stride 30,
    /// dilationFactor 40, valid 50 (ValidPadding.paddingAmounts 1), hasBias 70, weights 90, bias 91.
    /// Weights [outChannels, inChannels / groups, kh, kw], as DistillKit's.
    static func convolution(_ name: String, _ input: String, _ output: String, inChannels: Int, outChannels: Int, groups: Int,
                            window k: ExportGraph.Window, weight: Weights, bias: [Float]) -> Data {
        layer(name, [input], output, Field.convolution) { p in
            p.int(1, outChannels); p.int(2, inChannels / groups); p.int(10, groups)
            p.ints(20, k.kernel); p.ints(30, k.stride); p.ints(40, k.dilation)
            p.message(50) { v in borders(&v, k.padding) }
            p.bool(70, true); weights(&p, 90, weight); weights(&p, 91, bias)
        }
    }

    /// PoolingLayerParams: type 1 (MAX 0, AVERAGE 1), kernelSize 10, stride 20, valid 30,
    /// avgPoolExcludePadding 50 (false: padding counts, as in DistillKit), globalPooling 60.
    /// `window` nil: global average pooling over an `extent` [H, W].
    static func pooling(_ name: String, _ input: String, _ output: String, max isMax: Bool, window k: ExportGraph.Window?, extent: [Int] = []) -> Data {
        layer(name, [input], output, Field.pooling) { p in
            p.int(1, isMax ? 0 : 1)
            p.ints(10, k?.kernel ?? extent); p.ints(20, k?.stride ?? [1, 1])
            p.message(30) { v in borders(&v, k?.padding ?? [0, 0]) }
            if k == nil { p.bool(60, true) } else { p.bool(50, false) }
        }
    }

    /// An activation layer (GELU: its own layer kind, mode EXACT = 0).
    static func activation(_ name: String, _ input: String, _ output: String, _ kind: ExportGraph.Activation) -> Data {
        if kind == .gelu { return layer(name, [input], output, Field.gelu) { p in p.int(1, 0) } }
        // ActivationParams: ReLU 10, leakyReLU 15 (alpha 1), tanh 30, sigmoid 40.
        return layer(name, [input], output, Field.activation) { p in
            switch kind {
            case .relu: p.message(10) { _ in }
            case let .leakyReLU(slope): p.message(15) { a in a.float(1, slope) }
            case .tanh: p.message(30) { _ in }
            case .sigmoid: p.message(40) { _ in }
            case .gelu: break
            }
        }
    }

    /// FlattenLayerParams.mode: CHANNEL_FIRST = 0 (C, H, W order, DistillKit's).
    static func flatten(_ name: String, _ input: String, _ output: String) -> Data {
        layer(name, [input], output, Field.flatten) { p in p.int(1, 0) }
    }

    /// The NeuralNetworkLayer messages for one lowered node.
    static func layerMessages(_ node: ExportGraph.Node, graph: ExportGraph, blob: [String]) throws -> [Data] {
        let input = blob[node.inputs[0]], output = blob[node.output]
        let inShape = graph.shapes[node.inputs[0]]
        let name = output
        switch node.operation {
        case let .standardize(mean, scale):
            return standardize(name, input, output, mean: mean, scale: scale, shape: inShape)
        case let .affine(scale, shift):
            // ScaleLayerParams: shapeScale 1, scale 2, hasBias 3, shapeBias 4, bias 5.
            return [layer(name, [input], output, Field.scale) { p in
                p.ints(1, [scale.count]); weights(&p, 2, scale); p.bool(3, true); p.ints(4, [shift.count]); weights(&p, 5, shift)
            }]
        case let .dense(weight, bias, inputs, outputs):
            return [innerProduct(name, input, output, inputs: inputs, outputs: outputs, weight: .float(weight), bias: bias)]
        case let .convolution(c):
            return [convolution(name, input, output, inChannels: c.inChannels, outChannels: c.outChannels, groups: c.groups,
                                window: c.window, weight: .float(c.weight), bias: c.bias)]
        case let .activation(kind):
            return [activation(name, input, output, kind)]
        case let .maxPool(k):
            return [pooling(name, input, output, max: true, window: k)]
        case let .averagePool(k):
            return [pooling(name, input, output, max: false, window: k)]
        case .globalAveragePool:
            return [pooling(name, input, output, max: false, window: nil, extent: [inShape[1], inShape[2]])]
        case .flatten:
            return [flatten(name, input, output)]
        case .add:
            return [layer(name, [input, blob[node.inputs[1]]], output, Field.add) { _ in }]
        }
    }
}

/// What `distill inspect` reads from a .mlmodel file.
public struct CoreMLSummary {
    public struct FeatureInfo { public var name: String; public var type: String; public var shape: [Int]? }
    public var specificationVersion: Int
    /// "neuralNetworkClassifier", "neuralNetworkRegressor" or "neuralNetwork".
    public var kind: String
    public var inputs: [FeatureInfo], outputs: [FeatureInfo]
    public var layers: [(name: String, count: Int)]
    /// Weights, biases and other constants, counted as values (a quantized weight: one per stored integer).
    public var parameters: Int
    /// Bytes the constants take in the file: 4 per float32, 2 per float16, the packed integers of a
    /// quantized weight plus 4 per scale, bias or lookup-table entry.
    public var parameterBytes: Int
    /// The quantized weight blobs, in layer order (empty for a float model).
    public var quantized: [QuantizedWeights]
    public var classLabels: [String]
    /// FLOPs for one example, counted like DistillKit's ONNX inspector, when every layer's shape could be followed.
    public var flops: Int?
    public var metadata: [String: String]

    public init(_ data: Data, source: String) throws {
        let model = try ProtobufMessage(data, source: source)
        typealias F = CoreMLExport.Field
        specificationVersion = model.int(F.specVersion)
        guard let description = try model.message(F.description) else {
            throw ExportError(format: "Core ML", "\(source): not a Core ML model (no model description)")
        }
        func feature(_ m: ProtobufMessage) throws -> FeatureInfo {
            let name = m.string(F.name) ?? "?"
            guard let type = try m.message(F.type) else { return FeatureInfo(name: name, type: "?", shape: nil) }
            if let array = try type.message(F.multiArrayType) {
                let dataType = array.int(F.arrayDataType)
                let typeName = [65568: "float32", 65600: "double", 131104: "int32", 65552: "float16", 131080: "int8"][dataType] ?? "array"
                return FeatureInfo(name: name, type: typeName, shape: try array.ints(F.arrayShape))
            }
            if type.has(F.stringType) { return FeatureInfo(name: name, type: "string", shape: nil) }
            if type.has(F.int64Type) { return FeatureInfo(name: name, type: "int64", shape: nil) }
            if type.has(F.dictionaryType) { return FeatureInfo(name: name, type: "dictionary", shape: nil) }
            return FeatureInfo(name: name, type: "other", shape: nil)
        }
        inputs = try description.messages(F.input).map(feature)
        outputs = try description.messages(F.output).map(feature)
        var metadata: [String: String] = [:]
        if let m = try description.message(F.metadata) {
            if let s = m.string(F.metaShortDescription) { metadata["shortDescription"] = s }
            if let s = m.string(F.metaAuthor) { metadata["author"] = s }
            for entry in try m.messages(F.metaUserDefined) { if let k = entry.string(1) { metadata[k] = entry.string(2) ?? "" } }
        }
        self.metadata = metadata
        let network: ProtobufMessage
        if let n = try model.message(F.classifier) { network = n; kind = "neuralNetworkClassifier" }
        else if let n = try model.message(F.regressor) { network = n; kind = "neuralNetworkRegressor" }
        else if let n = try model.message(500) { network = n; kind = "neuralNetwork" }
        else { throw ExportError(format: "Core ML", "\(source): DistillKit reads Core ML neural networks; this model is of another kind") }
        classLabels = try network.message(F.stringClassLabels)?.strings(1) ?? []

        var counts: [(name: String, count: Int)] = []
        var parameters = 0, parameterBytes = 0
        var quantized: [QuantizedWeights] = []
        // Shapes as [C, H, W] by blob name, followed layer by layer for the FLOP count.
        var shapes: [String: [Int]] = [:]
        for input in inputs {
            guard let s = input.shape else { continue }
            shapes[input.name] = s.count == 1 ? [s[0], 1, 1] : s
        }
        var flops: Int? = 0
        for layer in try network.messages(F.layers) {
            let kindField = layer.fields.map(\.number).first { $0 > 3 } ?? 0
            let params = try layer.message(kindField)
            var name = CoreMLExport.layerKinds[kindField] ?? "layer \(kindField)"
            if kindField == F.activation, let p = params {
                name = [10: "ReLU", 15: "leakyReLU", 30: "tanh", 40: "sigmoid", 5: "linear"][p.fields.first?.number ?? 0] ?? "activation"
            }
            if let i = counts.firstIndex(where: { $0.name == name }) { counts[i].count += 1 } else { counts.append((name, 1)) }
            if let p = params {
                let stored = try Self.storedWeights(of: p, kind: kindField, layer: layer.string(F.layerName) ?? "layer \(counts.reduce(0) { $0 + $1.count })", source: source)
                for blob in stored {
                    parameters += blob.count
                    parameterBytes += blob.bytes
                    if let q = blob.quantized { quantized.append(q) }
                }
            }
            // Shape and FLOPs.
            let inputNames = layer.strings(F.layerInput), outputNames = layer.strings(F.layerOutput)
            guard flops != nil, let first = inputNames.first, let x = shapes[first], x.count == 3, let out = outputNames.first, let p = params else {
                flops = nil; continue
            }
            let elements = x.reduce(1, *)
            var y = x
            var cost = elements
            switch kindField {
            case F.convolution:
                let k = try p.ints(20), s = try p.ints(30), d = try p.ints(40)
                let pads = try p.message(50)?.message(1)?.messages(10).map { $0.int(1) } ?? [0, 0]
                let kernelChannels = p.int(2), outChannels = p.int(1)
                guard k.count == 2, pads.count == 2 else { flops = nil; continue }
                let dil = d.count == 2 ? d : [1, 1], st = s.count == 2 ? s : [1, 1]
                let oh = (x[1] + 2 * pads[0] - dil[0] * (k[0] - 1) - 1) / max(st[0], 1) + 1
                let ow = (x[2] + 2 * pads[1] - dil[1] * (k[1] - 1) - 1) / max(st[1], 1) + 1
                y = [outChannels, oh, ow]
                let outCount = y.reduce(1, *)
                cost = outCount &* 2 &* kernelChannels &* k[0] &* k[1] &+ (p.int(70) != 0 ? outCount : 0)
            case F.innerProduct:
                y = [p.int(2), 1, 1]
                cost = p.int(2) &* 2 &* p.int(1) &+ (p.int(10) != 0 ? p.int(2) : 0)
            case F.pooling:
                if p.int(60) != 0 { y = [x[0], 1, 1]; cost = elements; break }
                let k = try p.ints(10), s = try p.ints(20)
                let pads = try p.message(30)?.message(1)?.messages(10).map { $0.int(1) } ?? [0, 0]
                guard k.count == 2, s.count == 2, pads.count == 2 else { flops = nil; continue }
                y = [x[0], (x[1] + 2 * pads[0] - k[0]) / max(s[0], 1) + 1, (x[2] + 2 * pads[1] - k[1]) / max(s[1], 1) + 1]
                cost = y.reduce(1, *) &* k[0] &* k[1]
            case F.flatten: y = [elements, 1, 1]; cost = 0
            case F.softmax: cost = 3 &* elements
            default: break
            }
            shapes[out] = y
            flops = flops.map { $0 &+ cost }
        }
        layers = counts
        self.parameters = parameters
        self.parameterBytes = parameterBytes
        self.quantized = quantized
        self.flops = flops
    }
}
