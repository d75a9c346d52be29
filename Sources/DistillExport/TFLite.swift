import Foundation

/// Writes a lowered student as a LiteRT (TFLite) flatbuffer, float32, for LiteRT's interpreter on
/// Android, iOS, Linux or microcontrollers.
///
/// The file follows TFLite's schema (version 3, identifier "TFL3"); the parts used here, in our
/// own words:
/// - `Model`: schema version, the operator codes used, one subgraph, a description, the buffers
///   (buffer 0 empty by convention), metadata entries and a signature ("serving_default").
/// - `SubGraph`: tensors, the input and output tensor indices, operators in execution order.
/// - `Tensor`: shape (with the batch axis), element type, the buffer holding its constant data (0:
///   none), name, and `shape_signature` with -1 for the batch axis so any batch size runs.
/// - `Operator`: index into the operator codes, input and output tensor indices, and the builtin
///   options table of its kind (padding, strides, fused activation, ...).
///
/// Layout: TFLite's convolutions work on NHWC, so image inputs are `[N, H, W, C]` (for one
/// channel the same floats as DistillKit's `[N, C, H, W]`); feature inputs are `[N, F]`. Flatten
/// transposes back to C, H, W order first, so the dense layers keep DistillKit's weights.
/// Grouped convolutions other than depthwise have no TFLite builtin and are refused.
public enum TFLiteExport {
    public static let format = "TFLite"

    // Builtin operator codes and option-table kinds of the TFLite schema.
    enum Builtin: Int32 {
        case add = 0, averagePool2D = 1, conv2D = 3, depthwiseConv2D = 4, dequantize = 6, fullyConnected = 9, logistic = 14, maxPool2D = 17,
             mul = 18, relu = 19, reshape = 22, softmax = 25, tanh = 28, pad = 34, transpose = 39, mean = 40, sub = 41, cast = 53, padV2 = 60,
             leakyRelu = 98, quantize = 114, gelu = 150

        var name: String { TFLiteExport.operatorNames[rawValue] ?? "BUILTIN_\(rawValue)" }
    }

    /// Names of the builtin operators DistillKit writes (and prints when it reads a file back).
    static let operatorNames: [Int32: String] = [
        0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE", 9: "FULLY_CONNECTED",
        14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX", 28: "TANH", 34: "PAD",
        39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 42: "DIV", 53: "CAST", 60: "PADV2", 98: "LEAKY_RELU", 114: "QUANTIZE", 150: "GELU",
    ]

    enum Options: UInt8 {
        case conv2D = 1, depthwiseConv2D = 2, pool2D = 5, fullyConnected = 8, add = 11, reshape = 17, mul = 21, pad = 22,
             transpose = 26, reducer = 27, sub = 28, padV2 = 43, leakyRelu = 75, gelu = 116
    }

    enum TensorType: Int8 { case float32 = 0, int32 = 2, int64 = 4, int16 = 7, int8 = 9 }
    enum Padding: Int8 { case same = 0, valid = 1 }

    /// What a refusal looks like before anything is written: the first node TFLite cannot express.
    public static func check(_ graph: ExportGraph) throws {
        for node in graph.nodes {
            if case let .convolution(c) = node.operation, c.groups > 1, !c.isDepthwise {
                throw ExportError(format: format, "layer '\(node.layer)' (\(node.layerType)) is a grouped convolution (\(c.groups) groups of \(c.inChannels / c.groups) channels); TFLite has builtins for plain and depthwise convolutions only")
            }
        }
    }

    /// The .tflite bytes for `graph`.
    public static func serialize(_ graph: ExportGraph, classNames: [String]? = nil, description: String = "DistillKit student") throws -> Data {
        try check(graph)
        var builder = Builder()
        let inputTensor = builder.activation(graph.inputShape, name: "input")
        var tensorOf = [Int](repeating: -1, count: graph.shapes.count)
        tensorOf[0] = inputTensor
        for node in graph.nodes {
            tensorOf[node.output] = try builder.lower(node, graph: graph, tensors: tensorOf)
        }
        let output = tensorOf[graph.output]
        builder.tensors[output].name = "output"
        let outputs = graph.outputShape.reduce(1, *)
        let names = classNames ?? (0..<outputs).map(String.init)
        guard names.count == outputs else { throw ExportError(format: format, "\(names.count) class names for \(outputs) outputs") }
        let metadata: [String: Any] = ["producer": "DistillKit", "class_names": names, "input_layout": graph.inputShape.count == 3 ? "NHWC" : "NF",
                                       "input_shape": graph.inputShape]
        let json = try JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys])
        let root = builder.model(input: inputTensor, output: output, metadata: ["distillkit": json], description: description)
        let data = FlatBufferWriter.serialize(root: root, identifier: "TFL3")
        guard data.count < Int(Int32.max) else {
            throw ExportError(format: format, "the model needs \(data.count) bytes; a TFLite flatbuffer holds less than 2 GiB")
        }
        return data
    }

    /// Writes `graph` to `url` atomically (refusals come before any write).
    public static func write(_ graph: ExportGraph, to url: URL, classNames: [String]? = nil, description: String = "DistillKit student") throws {
        let data = try serialize(graph, classNames: classNames, description: description)
        try writeAtomically(data, to: url, format: format)
    }

    /// Collects tensors, buffers and operators while lowering the graph's nodes.
    struct Builder {
        struct TensorEntry {
            var shape: [Int]; var type: TensorType; var buffer: Int; var name: String; var dynamicBatch: Bool
            var quantization: Quantization? = nil
        }
        /// TFLite's `QuantizationParameters`: real = scale · (q − zero point), one pair per tensor
        /// or one per index along `dimension` (per-channel).
        struct Quantization: Equatable { var scales: [Float]; var zeroPoints: [Int64]; var dimension: Int = 0 }
        struct OperatorEntry {
            var code: Builtin; var inputs: [Int]; var outputs: [Int]; var options: (Options, [FlatField?])?
            /// The operator's version: which tensor types its kernel must support (1: float only).
            var version: Int32 = 1
        }
        var tensors: [TensorEntry] = []
        var buffers: [Data] = [Data()]
        var operators: [OperatorEntry] = []
        var codes: [(Builtin, Int32)] = []

        /// NHWC (or [N, F]) with batch 1 in `shape` and -1 in the signature.
        mutating func activation(_ shape: [Int], name: String) -> Int {
            let nhwc = shape.count == 3 ? [1, shape[1], shape[2], shape[0]] : [1] + shape
            tensors.append(TensorEntry(shape: nhwc, type: .float32, buffer: 0, name: name, dynamicBatch: true))
            return tensors.count - 1
        }

        mutating func constant(_ values: [Float], shape: [Int], name: String) -> Int {
            var data = Data(capacity: values.count * 4)
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            buffers.append(data)
            tensors.append(TensorEntry(shape: shape, type: .float32, buffer: buffers.count - 1, name: name, dynamicBatch: false))
            return tensors.count - 1
        }

        mutating func constant(int32 values: [Int], shape: [Int], name: String) -> Int {
            constant(integers: values, type: .int32, shape: shape, name: name)
        }

        /// Integers stored as little-endian int32 or int64 (values must fit the type).
        mutating func constant(integers values: [Int], type: TensorType, shape: [Int], name: String) -> Int {
            precondition(type == .int32 || type == .int64, "integer constants are int32 or int64")
            var data = Data(capacity: values.count * (type == .int64 ? 8 : 4))
            for v in values {
                if type == .int64 { withUnsafeBytes(of: Int64(v).littleEndian) { data.append(contentsOf: $0) } }
                else { withUnsafeBytes(of: Int32(v).littleEndian) { data.append(contentsOf: $0) } }
            }
            buffers.append(data)
            tensors.append(TensorEntry(shape: shape, type: type, buffer: buffers.count - 1, name: name, dynamicBatch: false))
            return tensors.count - 1
        }

        mutating func op(_ code: Builtin, _ inputs: [Int], _ outputs: [Int], _ options: (Options, [FlatField?])? = nil, version: Int32 = 1) {
            operators.append(OperatorEntry(code: code, inputs: inputs, outputs: outputs, options: options, version: version))
        }

        /// An intermediate activation tensor shaped like `shape` (DistillKit layout).
        mutating func value(_ shape: [Int], _ name: String) -> Int { activation(shape, name: name) }

        /// [[0, 0], [ph, ph], [pw, pw], [0, 0]] in front of a VALID window op, padding with `fill`.
        mutating func padded(_ x: Int, shape: [Int], padding: [Int], fill: Float?, name: String) -> Int {
            guard padding.contains(where: { $0 > 0 }) else { return x }
            let paddings = constant(int32: [0, 0, padding[0], padding[0], padding[1], padding[1], 0, 0], shape: [4, 2], name: "\(name).paddings")
            let out = value([shape[0], shape[1] + 2 * padding[0], shape[2] + 2 * padding[1]], "\(name).padded")
            if let fill {
                let value = constant([fill], shape: [], name: "\(name).pad_value")
                op(.padV2, [x, paddings, value], [out], (.padV2, []))
            } else {
                op(.pad, [x, paddings], [out], (.pad, []))
            }
            return out
        }

        /// Lowers one node; returns the tensor holding its output.
        mutating func lower(_ node: ExportGraph.Node, graph: ExportGraph, tensors tensorOf: [Int]) throws -> Int {
            let x = tensorOf[node.inputs[0]]
            let inShape = graph.shapes[node.inputs[0]], outShape = graph.shapes[node.output]
            let name = node.layer
            switch node.operation {
            case let .standardize(mean, scale):
                // Per element of the input, in the tensor's own (NHWC) order.
                let shape = mean.count == 1 ? [1] : (inShape.count == 3 ? [1, inShape[1], inShape[2], inShape[0]] : [1, inShape[0]])
                let m = constant(mean.count == 1 ? mean : toNHWC(mean, inShape), shape: shape, name: "\(name).mean")
                let s = constant(scale.count == 1 ? scale : toNHWC(scale, inShape), shape: shape, name: "\(name).scale")
                let centred = value(inShape, "\(name).centred")
                op(.sub, [x, m], [centred], (.sub, [.int8(0)]))
                let out = value(outShape, name)
                op(.mul, [centred, s], [out], (.mul, [.int8(0)]))
                return out
            case let .affine(scale, shift):
                // Per channel: the last NHWC axis (or the feature axis).
                let s = constant(scale, shape: [scale.count], name: "\(name).scale")
                let b = constant(shift, shape: [shift.count], name: "\(name).shift")
                let scaled = value(inShape, "\(name).scaled")
                op(.mul, [x, s], [scaled], (.mul, [.int8(0)]))
                let out = value(outShape, name)
                op(.add, [scaled, b], [out], (.add, [.int8(0)]))
                return out
            case let .dense(weight, bias, inputs, outputs):
                let w = constant(weight, shape: [outputs, inputs], name: "\(name).weight")
                let b = constant(bias, shape: [outputs], name: "\(name).bias")
                let out = value(outShape, name)
                op(.fullyConnected, [x, w, b], [out], (.fullyConnected, [.int8(0)]))
                return out
            case let .convolution(c):
                let k = c.window
                let (input, padding) = samePaddingOrPad(x, inShape: inShape, window: k, outShape: outShape, name: name)
                let b = constant(c.bias, shape: [c.outChannels], name: "\(name).bias")
                let out = value(outShape, name)
                let (kh, kw) = (k.kernel[0], k.kernel[1])
                if c.isDepthwise {
                    // PyTorch [out, 1, kh, kw] → TFLite [1, kh, kw, out].
                    var w = [Float](repeating: 0, count: c.weight.count)
                    for o in 0..<c.outChannels { for u in 0..<kh { for v in 0..<kw { w[(u * kw + v) * c.outChannels + o] = c.weight[(o * kh + u) * kw + v] } } }
                    let wt = constant(w, shape: [1, kh, kw, c.outChannels], name: "\(name).weight")
                    op(.depthwiseConv2D, [input, wt, b], [out], (.depthwiseConv2D, [
                        .int8(padding.rawValue), .int32(Int32(k.stride[1])), .int32(Int32(k.stride[0])), .int32(Int32(c.outChannels / c.inChannels)),
                        .int8(0), .int32(Int32(k.dilation[1])), .int32(Int32(k.dilation[0])),
                    ]))
                } else {
                    // PyTorch [out, in, kh, kw] → TFLite [out, kh, kw, in].
                    let cin = c.inChannels
                    var w = [Float](repeating: 0, count: c.weight.count)
                    for o in 0..<c.outChannels { for i in 0..<cin { for u in 0..<kh { for v in 0..<kw {
                        w[((o * kh + u) * kw + v) * cin + i] = c.weight[((o * cin + i) * kh + u) * kw + v]
                    } } } }
                    let wt = constant(w, shape: [c.outChannels, kh, kw, cin], name: "\(name).weight")
                    op(.conv2D, [input, wt, b], [out], (.conv2D, [
                        .int8(padding.rawValue), .int32(Int32(k.stride[1])), .int32(Int32(k.stride[0])), .int8(0),
                        .int32(Int32(k.dilation[1])), .int32(Int32(k.dilation[0])),
                    ]))
                }
                return out
            case let .activation(kind):
                let out = value(outShape, name)
                switch kind {
                case .relu: op(.relu, [x], [out])
                case .sigmoid: op(.logistic, [x], [out])
                case .tanh: op(.tanh, [x], [out])
                case .gelu: op(.gelu, [x], [out], (.gelu, [.bool(false)]))
                case let .leakyReLU(slope): op(.leakyRelu, [x], [out], (.leakyRelu, [.float32(slope)]))
                }
                return out
            case let .maxPool(k), let .averagePool(k):
                var isMax = false
                if case .maxPool = node.operation { isMax = true }
                // Padding first (lowest float for max, so it never wins; zeros for the average,
                // whose divisor then counts the padding as DistillKit does), then a VALID window.
                let input = padded(x, shape: inShape, padding: k.padding, fill: isMax ? -Float.greatestFiniteMagnitude : nil, name: name)
                let out = value(outShape, name)
                op(isMax ? .maxPool2D : .averagePool2D, [input], [out], (.pool2D, [
                    .int8(Padding.valid.rawValue), .int32(Int32(k.stride[1])), .int32(Int32(k.stride[0])),
                    .int32(Int32(k.kernel[1])), .int32(Int32(k.kernel[0])), .int8(0),
                ]))
                return out
            case .globalAveragePool:
                let axes = constant(int32: [1, 2], shape: [2], name: "\(name).axes")
                let out = value(outShape, name)
                op(.mean, [x, axes], [out], (.reducer, [.bool(false)]))
                return out
            case .flatten:
                var source = x
                if inShape[0] > 1 && inShape[1] * inShape[2] > 1 {
                    // NHWC → NCHW, so the flattened order is DistillKit's C, H, W.
                    let perm = constant(int32: [0, 3, 1, 2], shape: [4], name: "\(name).perm")
                    source = value([inShape[1], inShape[2], inShape[0]], "\(name).nchw")
                    self.tensors[source].shape = [1, inShape[0], inShape[1], inShape[2]]
                    op(.transpose, [x, perm], [source], (.transpose, []))
                }
                let features = outShape[0]
                let newShape = constant(int32: [-1, features], shape: [2], name: "\(name).shape")
                let out = value(outShape, name)
                op(.reshape, [source, newShape], [out], (.reshape, [.object(.int32s([-1, features]))]))
                return out
            case .add:
                let out = value(outShape, name)
                op(.add, [x, tensorOf[node.inputs[1]]], [out], (.add, [.int8(0)]))
                return out
            }
        }

        /// SAME when TFLite's SAME padding equals the layer's (symmetric, same output size);
        /// otherwise an explicit PAD and VALID.
        mutating func samePaddingOrPad(_ x: Int, inShape: [Int], window k: ExportGraph.Window, outShape: [Int], name: String) -> (Int, Padding) {
            guard k.padding.contains(where: { $0 > 0 }) else { return (x, .valid) }
            var same = true
            for axis in 0..<2 {
                let input = inShape[1 + axis], stride = k.stride[axis]
                let sameOut = (input + stride - 1) / stride
                let effective = (k.kernel[axis] - 1) * k.dilation[axis] + 1
                let total = max((sameOut - 1) * stride + effective - input, 0)
                if sameOut != outShape[1 + axis] || total != 2 * k.padding[axis] { same = false }
            }
            if same { return (x, .same) }
            return (padded(x, shape: inShape, padding: k.padding, fill: nil, name: name), .valid)
        }

        func toNHWC(_ values: [Float], _ chw: [Int]) -> [Float] {
            guard chw.count == 3 else { return values }
            let (c, h, w) = (chw[0], chw[1], chw[2])
            var out = [Float](repeating: 0, count: values.count)
            for k in 0..<c { for i in 0..<h { for j in 0..<w { out[(i * w + j) * c + k] = values[(k * h + i) * w + j] } } }
            return out
        }

        /// The root `Model` table.
        mutating func model(input: Int, output: Int, metadata: [String: Data], description: String) -> FlatObject {
            // One operator code per (builtin, version): a kernel of a higher version accepts more tensor types.
            var codeIndex: [Int64: Int] = [:]
            func key(_ o: OperatorEntry) -> Int64 { Int64(o.code.rawValue) << 32 | Int64(o.version) }
            for o in operators where codeIndex[key(o)] == nil { codeIndex[key(o)] = codes.count; codes.append((o.code, o.version)) }
            let operatorCodes: [FlatObject] = codes.map { code, version in
                // deprecated_builtin_code (byte), custom_code, version, builtin_code.
                .table([.int8(Int8(min(code.rawValue, 127))), nil, .int32(version), .int32(code.rawValue)])
            }
            let tensorTables: [FlatObject] = tensors.map { t in
                // shape, type, buffer, name, quantization, is_variable, sparsity, shape_signature.
                var fields: [FlatField?] = [.object(.int32s(t.shape)), .int8(t.type.rawValue), .uint32(UInt32(t.buffer)), .object(.string(t.name))]
                if let q = t.quantization {
                    // min, max, scale, zero_point, details (type, value), quantized_dimension.
                    fields.append(.object(.table([nil, nil, .object(.floats(q.scales)), .object(.int64s(q.zeroPoints)), nil, nil, .int32(Int32(q.dimension))])))
                } else {
                    fields.append(nil)
                }
                if t.dynamicBatch { fields += [nil, nil, .object(.int32s([-1] + t.shape.dropFirst()))] }
                return .table(fields)
            }
            let operatorTables: [FlatObject] = operators.map { o in
                var fields: [FlatField?] = [.uint32(UInt32(codeIndex[key(o)]!)), .object(.int32s(o.inputs)), .object(.int32s(o.outputs))]
                if let (kind, options) = o.options { fields += [.uint8(kind.rawValue), .object(.table(options))] }
                return .table(fields)
            }
            var allBuffers = buffers
            var metadataTables: [FlatObject] = []
            for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
                allBuffers.append(value)
                metadataTables.append(.table([.object(.string(key)), .uint32(UInt32(allBuffers.count - 1))]))
            }
            let bufferTables: [FlatObject] = allBuffers.map { data in
                data.isEmpty ? .table([]) : .table([.object(.scalars(data, elementSize: 1, alignment: 16))])
            }
            let subgraph = FlatObject.table([
                .object(.tables(tensorTables)), .object(.int32s([input])), .object(.int32s([output])),
                .object(.tables(operatorTables)), .object(.string("main")),
            ])
            let signature = FlatObject.table([
                .object(.tables([.table([.object(.string("input")), .uint32(UInt32(input))])])),
                .object(.tables([.table([.object(.string("output")), .uint32(UInt32(output))])])),
                .object(.string("serving_default")), nil, .uint32(0),
            ])
            return .table([
                .uint32(3), .object(.tables(operatorCodes)), .object(.tables([subgraph])), .object(.string(description)),
                .object(.tables(bufferTables)), nil, .object(.tables(metadataTables)), .object(.tables([signature])),
            ])
        }
    }
}

/// What `distill inspect` reads from a .tflite file.
public struct TFLiteSummary {
    public struct TensorInfo { public var name: String; public var type: String; public var shape: [Int] }
    /// A tensor's quantization parameters: real = scale · (q − zero point), per tensor (one
    /// scale) or per channel along `dimension`.
    public struct QuantizedTensor: Equatable, Sendable {
        public var name: String, type: String, shape: [Int]
        public var scales: [Float], zeroPoints: [Int], dimension: Int
        /// Whether the tensor is constant (a weight or bias), not an activation.
        public var isConstant: Bool

        /// "l0.weight int8 [6, 5, 5, 1] per-channel (axis 0): 6 scales 0.00123 to 0.00456, zero point 0".
        public var description: String {
            func g(_ v: Float) -> String { String(format: "%.6g", Double(v)) }
            let shape = "[\(self.shape.map(String.init).joined(separator: ", "))]"
            if scales.count == 1 {
                return "\(name) \(type) \(shape): scale \(g(scales[0])), zero point \(zeroPoints.first ?? 0)"
            }
            let zeros = Set(zeroPoints)
            let zeroText = zeros.count == 1 ? "zero point \(zeros.first!)" : "zero points \(zeroPoints.min()!) to \(zeroPoints.max()!)"
            return "\(name) \(type) \(shape) per-channel (axis \(dimension)): \(scales.count) scales \(g(scales.min()!)) to \(g(scales.max()!)), \(zeroText)"
        }

        public var json: [String: Any] {
            ["tensor": name, "type": type, "shape": shape, "scales": scales.map(Double.init), "zero_points": zeroPoints, "axis": dimension, "constant": isConstant]
        }
    }
    public var version: Int
    public var description: String
    public var inputs: [TensorInfo], outputs: [TensorInfo]
    /// Operator name → count, in first-use order.
    public var operators: [(name: String, count: Int)]
    /// Elements of the constant float tensors (weights, biases, preprocessing).
    public var parameters: Int
    /// Bytes of all constant buffers.
    public var bytes: Int
    /// Floating-point operations for one example (a multiply-add counts 2), as DistillKit counts ONNX.
    public var flops: Int
    /// Metadata entries whose buffers are UTF-8 text.
    public var metadata: [String: String]
    /// Every tensor with quantization parameters, in the file's tensor order (empty for a float model).
    public var quantized: [QuantizedTensor]

    /// Reads `data` (a .tflite file); `source` names it in errors.
    public init(_ data: Data, source: String) throws {
        let reader = FlatBufferReader(data, source: source)
        guard data.count >= 8, String(decoding: data[data.startIndex + 4..<data.startIndex + 8], as: UTF8.self) == "TFL3" else {
            throw reader.fail("no TFL3 identifier")
        }
        let model = try reader.root()
        version = Int(try model.scalar(0, UInt32.self))
        description = try model.string(3) ?? ""
        let codes = try model.tables(1).map { code -> String in
            let builtin = try code.scalar(3, Int32.self)
            let deprecated = Int32(try code.scalar(0, Int8.self))
            let value = max(builtin, deprecated)
            if value == 32, let custom = try code.string(1) { return "CUSTOM:\(custom)" }
            return TFLiteExport.operatorNames[value] ?? "BUILTIN_\(value)"
        }
        let buffers = try model.tables(4)
        let bufferSizes = try buffers.map { try $0.bytes(0).count }
        guard let subgraph = try model.tables(2).first else { throw reader.fail("no subgraph") }
        let typeNames = [0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16", 9: "int8"]
        var constant: [Bool] = []
        var quantized: [Int: QuantizedTensor] = [:]
        let tensors: [TensorInfo] = try subgraph.tables(0).enumerated().map { index, t in
            let buffer = Int(try t.scalar(2, UInt32.self))
            guard buffer < bufferSizes.count else { throw reader.fail("a tensor names buffer \(buffer) of \(bufferSizes.count)") }
            constant.append(bufferSizes[buffer] > 0)
            let type = Int(try t.scalar(1, Int8.self))
            let info = TensorInfo(name: try t.string(3) ?? "", type: typeNames[type] ?? "type \(type)", shape: try t.int32s(0))
            if let q = try t.table(4), let parameters = try Self.quantization(q, of: info, constant: bufferSizes[buffer] > 0, reader: reader) {
                quantized[index] = parameters
            }
            return info
        }
        self.quantized = quantized.sorted { $0.key < $1.key }.map(\.value)
        func tensor(_ i: Int) throws -> TensorInfo {
            guard i >= 0, i < tensors.count else { throw reader.fail("tensor index \(i) of \(tensors.count)") }
            return tensors[i]
        }
        inputs = try subgraph.int32s(1).map(tensor)
        outputs = try subgraph.int32s(2).map(tensor)
        var counts: [(name: String, count: Int)] = []
        var total = 0
        for op in try subgraph.tables(3) {
            let index = Int(try op.scalar(0, UInt32.self))
            guard index < codes.count else { throw reader.fail("operator code \(index) of \(codes.count)") }
            let name = codes[index]
            if let i = counts.firstIndex(where: { $0.name == name }) { counts[i].count += 1 } else { counts.append((name, 1)) }
            let ins = try op.int32s(1).filter { $0 >= 0 }.map(tensor), outs = try op.int32s(2).map(tensor)
            var window = 1
            if name == "MAX_POOL_2D" || name == "AVERAGE_POOL_2D", let options = try op.table(4) {
                // Pool2DOptions: filter_width (3) and filter_height (4).
                window = Int(try options.scalar(3, Int32.self)) &* Int(try options.scalar(4, Int32.self))
            }
            total = total &+ Self.flops(name, ins, outs, window: window)
        }
        operators = counts
        flops = total
        // Parameters: constant float tensors, and the quantized weights and biases of the layers.
        var parameterTensors = Set(tensors.indices.filter { constant[$0] && tensors[$0].type == "float32" })
        for op in try subgraph.tables(3) {
            let name = codes[Int(try op.scalar(0, UInt32.self))]
            guard ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"].contains(name) else { continue }
            for i in try op.int32s(1).dropFirst() where i >= 0 && i < constant.count && constant[i] && quantized[i] != nil { parameterTensors.insert(i) }
        }
        parameters = parameterTensors.reduce(0) { $0 + tensors[$1].shape.reduce(1) { $0 &* Swift.max($1, 0) } }
        var metadata: [String: String] = [:]
        for entry in try model.tables(6) {
            let buffer = Int(try entry.scalar(1, UInt32.self))
            guard buffer < buffers.count, let key = try entry.string(0) else { continue }
            metadata[key] = String(decoding: try buffers[buffer].bytes(0), as: UTF8.self)
        }
        self.metadata = metadata
        // Constant buffers of the graph (metadata buffers are not model bytes).
        let metadataBuffers = Set(try model.tables(6).map { Int(try $0.scalar(1, UInt32.self)) })
        bytes = bufferSizes.enumerated().filter { !metadataBuffers.contains($0.offset) }.reduce(0) { $0 + $1.element }
    }

    /// The quantization parameters in table `q` of tensor `info`, nil when the table holds no
    /// scales (TFLite's "not quantized"); throws when they cannot describe the tensor (a scale that is
    /// not positive and finite, a zero point outside the type's range, per-channel parameters that do
    /// not match the tensor's extent along their axis).
    static func quantization(_ q: FlatTable, of info: TensorInfo, constant: Bool, reader: FlatBufferReader) throws -> QuantizedTensor? {
        let scales = try q.floats(2), zeroPoints = try q.int64s(3)
        guard !scales.isEmpty else { return nil }
        let dimension = Int(try q.scalar(6, Int32.self))
        func bad(_ why: String) -> ExportError { reader.fail("tensor '\(info.name.prefix(80))': \(why)") }
        guard scales.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw bad("a quantization scale is not positive and finite") }
        guard zeroPoints.isEmpty || zeroPoints.count == scales.count else {
            throw bad("\(scales.count) quantization scales but \(zeroPoints.count) zero points")
        }
        if scales.count > 1 {
            guard dimension >= 0, dimension < info.shape.count, info.shape[dimension] == scales.count else {
                throw bad("\(scales.count) per-channel scales on axis \(dimension) of a tensor of shape \(info.shape)")
            }
        }
        let range: ClosedRange<Int64>? = ["int8": -128...127, "uint8": 0...255, "int16": -32768...32767][info.type]
        if let range, let outside = zeroPoints.first(where: { !range.contains($0) }) {
            throw bad("zero point \(outside) is outside the \(info.type) range \(range.lowerBound)...\(range.upperBound)")
        }
        return QuantizedTensor(name: info.name, type: info.type, shape: info.shape, scales: scales,
                               zeroPoints: zeroPoints.isEmpty ? [0] : zeroPoints.map { Int($0) }, dimension: dimension, isConstant: constant)
    }

    /// FLOPs of one operator for a batch of one, counted like DistillKit's ONNX inspector: a
    /// multiply-add is 2, a bias add 1 per output, a window op its window per output, elementwise 1
    /// per output, moving data 0.
    static func flops(_ op: String, _ inputs: [TensorInfo], _ outputs: [TensorInfo], window: Int) -> Int {
        func perExample(_ shape: [Int]) -> Int { shape.dropFirst().reduce(1) { $0 &* Swift.max($1, 0) } }
        let out = outputs.first.map { perExample($0.shape) } ?? 0
        switch op {
        case "CONV_2D":
            guard inputs.count >= 2, inputs[1].shape.count == 4 else { return 0 }
            return out &* 2 &* inputs[1].shape.dropFirst().reduce(1, &*) &+ (inputs.count > 2 ? out : 0)
        case "DEPTHWISE_CONV_2D":
            guard inputs.count >= 2, inputs[1].shape.count == 4 else { return 0 }
            return out &* 2 &* inputs[1].shape[1] &* inputs[1].shape[2] &+ (inputs.count > 2 ? out : 0)
        case "FULLY_CONNECTED":
            guard inputs.count >= 2, inputs[1].shape.count == 2 else { return 0 }
            return out &* 2 &* inputs[1].shape[1] &+ (inputs.count > 2 ? out : 0)
        case "MAX_POOL_2D", "AVERAGE_POOL_2D": return out &* Swift.max(window, 0)
        case "MEAN": return inputs.first.map { perExample($0.shape) } ?? 0
        case "RESHAPE", "TRANSPOSE", "PAD", "PADV2": return 0
        default: return out
        }
    }
}
