import DistillNN
import Foundation

// MARK: - Writing an int8 student

extension CoreMLExport {
    /// The .mlmodel bytes of an int8 student (`distill quantize`): a neural-network classifier whose
    /// inner products and convolutions hold DistillKit's own int8 weights as Core ML's 8-bit linear
    /// quantized weights (the same integers and per-output-channel scales, nothing requantized; see
    /// `weights(_:_:_:)`), their biases in float32, at the float export's specification version
    /// (quantized weights need 3, iOS 12).
    ///
    /// What Core ML does with it: a neural network dequantizes 8-bit weights when the model loads and
    /// computes in floating point (float32 on the CPU, float16 on the GPU and Neural Engine). The
    /// file is about four times smaller than a float32 export, but its activations are not
    /// quantized: its outputs are those of the int8 weights with float activations, which are close
    /// to DistillKit's int8 path (it also rounds every activation to a byte) but not the same
    /// numbers. For integer arithmetic end to end, export the student with `--c` or `--tflite`.
    ///
    /// Layers: a tabular model's input standardisation first (bias, scale: `preprocessing`, as in
    /// the float export); then for int8 layer k one Core ML layer named `layers.k`, as the int8
    /// safetensors file names its tensors, its ReLU as `layers.k.relu`, a flatten before a dense layer
    /// that reads an image; the last dense layer writes `logits`. A layer list that does not chain
    /// (a corrupt file) is an `ExportError` naming the layer, before anything is written.
    public static func serialize(_ student: QuantizedStudent, preprocessing: ExportPreprocessing = .init(), options: Options = .init()) throws -> Data {
        let shape = student.info.inputShape
        guard shape.count == 1 || shape.count == 3, shape.allSatisfy({ $0 > 0 }) else {
            throw ExportError(format: format, "int8 inputs of shape \(shape): DistillKit exports feature vectors [F] and images [C, H, W]")
        }
        guard preprocessing.outputScale == nil, preprocessing.outputShift == nil else {
            throw ExportError(format: format, "int8 students are classifiers; a regression target scaling cannot be exported")
        }
        var layers: [Data] = []
        var current = shape, blob = "input"
        if let mean = preprocessing.inputMean, let std = preprocessing.inputStd {
            let features = shape.reduce(1, *)
            guard mean.count == std.count, mean.count == features || mean.count == 1 else {
                throw ExportError(format: format, "the input statistics have \(mean.count) means and \(std.count) standard deviations; the model takes \(features) features")
            }
            // DistillKit's FeatureStatistics.apply: (x − mean) · (1 / std), a tiny std only centring.
            layers += standardize("preprocessing", blob, "preprocessing", mean: mean, scale: std.map { $0 < 1e-6 ? 1 : 1 / $0 }, shape: shape)
            blob = "preprocessing"
        }
        let resultName = options.isRegressor ? "prediction" : "logits"
        var wroteResult = false
        func fail(_ index: Int, _ why: String) -> ExportError { ExportError(format: format, "int8 layer \(index): \(why)") }
        /// Appends a ReLU after the layer that wrote `blob` when `relu`; the blob it writes is `output` (or the ReLU's name).
        func relu(_ relu: Bool, after name: String, output: String? = nil) {
            guard relu else { return }
            let out = output ?? name + ".relu"
            layers.append(activation(name + ".relu", blob, out, .relu))
            blob = out
        }
        for (index, layer) in student.layers.enumerated() {
            let name = "layers.\(index)"
            guard !wroteResult else {
                throw fail(index, "follows the layer that writes the logits; the last layer must be the only one without an output quantization")
            }
            switch layer {
            case let .convolution(w, bias, stride, padding, applyReLU, _):
                guard current.count == 3, w.shape.count == 4, w.shape[0] > 0, w.shape[1] == current[0], w.scales.count == w.shape[0],
                      w.values.count == w.shape.reduce(1, *), bias.map({ $0.count == w.shape[0] }) ?? true,
                      stride.count == 2, padding.count == 2, stride.allSatisfy({ $0 > 0 }), padding.allSatisfy({ $0 >= 0 }) else {
                    throw fail(index, "a convolution \(w.shape) does not fit its input \(current)")
                }
                let window = ExportGraph.Window(kernel: [w.shape[2], w.shape[3]], stride: stride, padding: padding, dilation: [1, 1])
                let out = [w.shape[0], ExportGraph.outputExtent(current[1], window, axis: 0), ExportGraph.outputExtent(current[2], window, axis: 1)]
                guard out[1] > 0, out[2] > 0 else { throw fail(index, "kernel \(window.kernel) larger than its padded input \(current)") }
                layers.append(convolution(name, blob, name, inChannels: current[0], outChannels: w.shape[0], groups: 1, window: window,
                                          weight: .int8(w), bias: bias ?? [Float](repeating: 0, count: w.shape[0])))
                blob = name
                relu(applyReLU, after: name)
                current = out
            case let .maxPool(k, s, p), let .avgPool(k, s, p):
                guard current.count == 3, k.count == 2, s.count == 2, p.count == 2, k.allSatisfy({ $0 > 0 }), s.allSatisfy({ $0 > 0 }),
                      p.allSatisfy({ $0 >= 0 }), p[0] * 2 <= k[0], p[1] * 2 <= k[1] else {
                    throw fail(index, "pooling window \(k), stride \(s), padding \(p) on a \(current) value (padding at most half the window)")
                }
                var isMax = false
                if case .maxPool = layer { isMax = true }
                let window = ExportGraph.Window(kernel: k, stride: s, padding: p, dilation: [1, 1])
                let out = [current[0], ExportGraph.outputExtent(current[1], window, axis: 0), ExportGraph.outputExtent(current[2], window, axis: 1)]
                guard out[1] > 0, out[2] > 0 else { throw fail(index, "pooling window \(k) larger than its padded input \(current)") }
                layers.append(pooling(name, blob, name, max: isMax, window: window))
                blob = name
                current = out
            case .globalAvgPool:
                guard current.count == 3 else { throw fail(index, "global pooling on a \(current) value") }
                layers.append(pooling(name, blob, name, max: false, window: nil, extent: [current[1], current[2]]))
                blob = name
                current = [current[0]]  // [C, 1, 1] in Core ML: an inner product reads it as it is
            case .flatten:
                guard current.count == 3 else { continue }
                layers.append(flatten(name, blob, name))
                blob = name
                current = [current.reduce(1, *)]
            case let .linear(w, bias, applyReLU, output):
                if current.count == 3 {
                    // A dense layer straight after the convolutions (QuantizedPlan accepts it) flattens first, in C, H, W order.
                    layers.append(flatten(name + ".flatten", blob, name + ".flatten"))
                    blob = name + ".flatten"
                    current = [current.reduce(1, *)]
                }
                let inputs = current[0]
                guard w.shape.count == 2, w.shape[0] > 0, w.shape[1] == inputs, w.scales.count == w.shape[0], w.values.count == w.shape[0] * inputs,
                      bias.map({ $0.count == w.shape[0] }) ?? true else {
                    throw fail(index, "a linear layer \(w.shape) does not fit its \(inputs) inputs")
                }
                wroteResult = output == nil
                let out = wroteResult && !applyReLU ? resultName : name
                layers.append(innerProduct(name, blob, out, inputs: inputs, outputs: w.shape[0], weight: .int8(w),
                                           bias: bias ?? [Float](repeating: 0, count: w.shape[0])))
                blob = out
                relu(applyReLU, after: name, output: wroteResult ? resultName : nil)
                current = [w.shape[0]]
            }
        }
        guard wroteResult else {
            throw ExportError(format: format, "the int8 student does not end with a linear layer writing the logits")
        }
        return try model(layers, inputShape: shape, outputShape: current, options: options)
    }

    /// Writes the int8 `student` to `url` atomically (refusals come before any write).
    public static func write(_ student: QuantizedStudent, preprocessing: ExportPreprocessing = .init(), to url: URL, options: Options = .init()) throws {
        let data = try serialize(student, preprocessing: preprocessing, options: options)
        try writeAtomically(data, to: url, format: format)
    }
}

// MARK: - Reading weights back

extension CoreMLSummary {
    /// One quantized weight blob of a Core ML neural network: `bits`-bit unsigned integers u
    /// (`rawValue`), each standing for `scales[c] · u + biases[c]` in output channel c (linear
    /// quantization; one scale and bias for all when there is one), or for entry u of a lookup
    /// table of 2^bits floats. (`int8RawValue`, for a layer's dynamic int8 mode, holds signed
    /// integers with one scale.) DistillKit's int8 export writes 8-bit linear weights per channel
    /// whose biases are −128 · scale: `symmetric`, the signed int8 value being u − 128.
    public struct QuantizedWeights: Sendable, Equatable {
        /// The layer's name ("layers.0" in DistillKit's int8 export).
        public var layer: String
        /// The layer's kind ("convolution", "innerProduct") and which of its blobs ("weights", "bias").
        public var kind: String, blob: String
        /// [out, in] for an inner product, [out, in / groups, kh, kw] for a convolution, else [count].
        public var shape: [Int]
        public var bits: Int
        /// Linear quantization (empty for a lookup table).
        public var scales: [Float], biases: [Float]
        /// Entries of the lookup table (0 for linear quantization).
        public var lookupTableEntries: Int
        /// `int8RawValue`: signed integers.
        public var signed: Bool

        /// Linear with every bias −2^(bits−1) · scale: the integers are signed values u − 2^(bits−1) times the scale.
        public var isSymmetric: Bool {
            !scales.isEmpty && (signed ? biases.allSatisfy { $0 == 0 } : zip(scales, biases).allSatisfy { $1 == -Float(1 << (bits - 1)) * $0 })
        }

        /// "layers.0 convolution weights [6, 1, 5, 5]: 8-bit linear per channel (axis 0), 6 scales 0.00123 to 0.00456, symmetric (bias −128 · scale)".
        public var description: String {
            func g(_ v: Float) -> String { String(format: "%.6g", Double(v)) }
            let head = "\(layer) \(kind) \(blob) [\(shape.map(String.init).joined(separator: ", "))]: \(bits)-bit"
            if lookupTableEntries > 0 { return "\(head) lookup table of \(lookupTableEntries) values" }
            let scaleText = scales.count == 1 ? "one scale \(g(scales[0]))" : "per channel (axis 0), \(scales.count) scales \(g(scales.min()!)) to \(g(scales.max()!))"
            let biasText: String
            if isSymmetric { biasText = signed ? "signed, no bias" : "symmetric (bias −\(1 << (bits - 1)) · scale)" }
            else if biases.isEmpty { biasText = "no bias" }
            else { biasText = "biases \(g(biases.min()!)) to \(g(biases.max()!))" }
            return "\(head) linear \(scaleText), \(biasText)"
        }

        public var json: [String: Any] {
            ["layer": layer, "kind": kind, "blob": blob, "shape": shape, "bits": bits, "scales": scales.map(Double.init),
             "biases": biases.map(Double.init), "lookup_table_entries": lookupTableEntries, "signed": signed, "symmetric": isSymmetric]
        }
    }

    /// A short account of the quantized weights for `distill inspect`'s format line ("8-bit linear
    /// weights in 5 layers, 84 per-channel scales"), nil for a float model.
    public var quantizationSummary: String? {
        guard !quantized.isEmpty else { return nil }
        let bits = Set(quantized.map(\.bits)).sorted().map { "\($0)" }.joined(separator: "/")
        let linear = quantized.allSatisfy { $0.lookupTableEntries == 0 }
        let layers = Set(quantized.map(\.layer)).count
        let scales = quantized.reduce(0) { $0 + $1.scales.count }
        let perChannel = quantized.allSatisfy { $0.scales.count > 1 }
        return "\(bits)-bit \(linear ? "linear" : "quantized") weights in \(layers) layer\(layers == 1 ? "" : "s")"
            + (linear ? ", \(scales)\(perChannel ? " per-channel" : "") scales" : "")
    }

    /// One WeightParams blob as stored: values, bytes, and its quantization if it has one.
    struct StoredWeights { var count: Int; var bytes: Int; var quantized: QuantizedWeights? }

    /// The WeightParams of a layer's parameters `p` (layer kind by field number). A quantized blob is
    /// checked against the layer: 1 to 8 bits, the integers' bytes for the layer's shape, one scale
    /// (and bias) or one per output channel, finite; anything else is an error naming the file and layer.
    static func storedWeights(of p: ProtobufMessage, kind: Int, layer: String, source: String) throws -> [StoredWeights] {
        typealias F = CoreMLExport.Field
        // The blob fields of each layer kind that has them, with the shape each must have when known.
        var blobs: [(field: Int, name: String, shape: [Int]?)] = []
        var channels: Int?
        switch kind {
        case F.innerProduct:
            let (inputs, outputs) = (p.int(1), p.int(2))
            channels = outputs
            blobs = [(20, "weights", [outputs, inputs]), (21, "bias", [outputs])]
        case F.convolution:
            let k = try p.ints(20), outputs = p.int(1)
            channels = outputs
            blobs = [(90, "weights", k.count == 2 ? [outputs, p.int(2), k[0], k[1]] : nil), (91, "bias", [outputs])]
        case F.scale: blobs = [(2, "scale", nil), (5, "bias", nil)]
        case F.bias: blobs = [(2, "bias", nil)]
        default: return []
        }
        let kindName = CoreMLExport.layerKinds[kind] ?? "layer"
        var out: [StoredWeights] = []
        for (field, blobName, shape) in blobs {
            for w in try p.messages(field) {
                func fail(_ why: String) -> ExportError {
                    ExportError(format: CoreMLExport.format, "\(source): not a valid Core ML model (layer '\(layer)' \(blobName): \(why))")
                }
                let floats = w.floatCount(F.floatValue), halves = (w.data(F.float16Value)?.count ?? 0) / 2
                var stored = StoredWeights(count: floats + halves, bytes: 4 * floats + 2 * halves, quantized: nil)
                if let q = try w.message(F.quantization) {
                    let bits = q.int(F.numberOfBits)
                    guard (1...8).contains(bits) else { throw fail("\(bits)-bit quantization; Core ML quantizes weights to 1 to 8 bits") }
                    let raw = w.data(F.rawValue), signed = w.data(F.int8RawValue)
                    guard let integers = raw ?? signed, (raw == nil) != (signed == nil) else {
                        throw fail("quantization parameters need the integers in rawValue or int8RawValue, exactly one of them")
                    }
                    guard signed == nil || bits == 8 else { throw fail("int8RawValue with \(bits)-bit quantization") }
                    var count = integers.count * 8 / bits
                    if let shape {
                        let expected = shape.reduce(1, *)
                        guard integers.count == (expected * bits + 7) / 8 else {
                            throw fail("\(integers.count) bytes of \(bits)-bit integers; its shape \(shape) needs \((expected * bits + 7) / 8)")
                        }
                        count = expected
                    }
                    var info = QuantizedWeights(layer: layer, kind: kindName, blob: blobName, shape: shape ?? [count], bits: bits,
                                                scales: [], biases: [], lookupTableEntries: 0, signed: signed != nil)
                    if let linear = try q.message(F.linearQuantization) {
                        info.scales = linear.floats(F.linearScale)
                        info.biases = linear.floats(F.linearBias)
                        guard !info.scales.isEmpty, info.biases.count == info.scales.count || (signed != nil && info.biases.isEmpty) else {
                            throw fail("\(info.scales.count) scales and \(info.biases.count) biases (linear quantization needs as many of each, at least one)")
                        }
                        guard info.scales.count == 1 || info.scales.count == channels, signed == nil || info.scales.count == 1 else {
                            throw fail("\(info.scales.count) scales; give one, or one per output channel (\(channels ?? 1))")
                        }
                        guard (info.scales + info.biases).allSatisfy(\.isFinite) else { throw fail("a quantization scale or bias is not finite") }
                    } else if let table = try q.message(F.lookupTableQuantization) {
                        info.lookupTableEntries = table.floatCount(1)
                        guard info.lookupTableEntries == 1 << bits else {
                            throw fail("a lookup table of \(info.lookupTableEntries) values for \(bits)-bit integers (needs \(1 << bits))")
                        }
                    } else {
                        throw fail("quantization parameters without linear or lookup-table quantization")
                    }
                    stored.count += count
                    stored.bytes += integers.count + 4 * (info.scales.count + info.biases.count + info.lookupTableEntries)
                    stored.quantized = info
                }
                out.append(stored)
            }
        }
        return out
    }
}

extension ProtobufMessage {
    /// The last length-delimited value of field `number` (a `bytes` field such as WeightParams.rawValue).
    func data(_ number: Int) -> Data? {
        for f in fields.reversed() where f.number == number { if case let .bytes(d) = f.value { return d } }
        return nil
    }
}
