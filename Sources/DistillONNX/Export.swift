import DistillNN
import DistillTensor
import Foundation
import SwiftProtobuf

/// Writes a DistillKit model as an ONNX file that onnxruntime (or any ONNX runtime) runs.
///
/// Supported layers: Sequential, Linear, Conv2d, BatchNorm1d/2d (with their running statistics,
/// as in evaluation), ReLU, LeakyReLU, GELU (exact; the `Gelu` operator from opset 20, `Erf`
/// arithmetic before), Sigmoid, Tanh, Flatten, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Dropout
/// (the identity at inference) and ResidualBlock. The batch axis is dynamic (`N`), so the file
/// runs on any batch size; initializers keep the model's state-dict names (`3.weight`).
///
/// A model's own preprocessing travels with it: `Preprocessing.inputMean/inputStd` become a Sub
/// and a Div in front of the layers (a tabular student's standardisation), and `outputScale/
/// outputShift` a Mul and an Add after them (a regression target in its own units), so users of
/// the file feed raw inputs and read raw outputs.
///
/// ```swift
/// let data = try ONNXExport.serialize(model, inputShape: [1, 28, 28], opset: 17)
/// try ONNXModel(data: data)(x)   // runs in DistillKit too
/// ```
public enum ONNXExport {
    /// Affine maps around the model: `(x − inputMean) / inputStd` per feature before it,
    /// `y · outputScale + outputShift` after it.
    public struct Preprocessing: Sendable {
        public var inputMean: [Float]?, inputStd: [Float]?
        public var outputScale: Float?, outputShift: Float?
        public init(inputMean: [Float]? = nil, inputStd: [Float]? = nil, outputScale: Float? = nil, outputShift: Float? = nil) {
            self.inputMean = inputMean; self.inputStd = inputStd; self.outputScale = outputScale; self.outputShift = outputShift
        }
    }

    /// Opsets `export` writes.
    public static let supportedOpsets = 11...21

    /// The ONNX IR version that goes with an opset (onnx/helper.py's VERSION_TABLE).
    static func irVersion(forOpset opset: Int) -> Int64 {
        switch opset {
        case ...12: return 7
        case 13...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        default: return 10
        }
    }

    /// The serialized `ModelProto` of `model` for inputs of `inputShape` (one example, no batch axis).
    public static func serialize(_ model: Module, inputShape: [Int], opset: Int = 17, metadata: [String: String] = [:],
                                 preprocessing: Preprocessing = .init(), inputName: String = "input", outputName: String = "logits") throws -> Data {
        let proto = try modelProto(model, inputShape: inputShape, opset: opset, metadata: metadata, preprocessing: preprocessing,
                                   inputName: inputName, outputName: outputName)
        return try proto.serializedBytes()
    }

    /// Writes `model` to `url` as ONNX, atomically.
    public static func write(_ model: Module, inputShape: [Int], to url: URL, opset: Int = 17, metadata: [String: String] = [:],
                             preprocessing: Preprocessing = .init()) throws {
        let data = try serialize(model, inputShape: inputShape, opset: opset, metadata: metadata, preprocessing: preprocessing)
        do { try AtomicFile.write(data, to: url) } catch let error as TensorError { throw ONNXError(error.message) }
    }

    static func modelProto(_ model: Module, inputShape: [Int], opset: Int, metadata: [String: String], preprocessing: Preprocessing = .init(),
                           inputName: String, outputName: String) throws -> Onnx_ModelProto {
        guard supportedOpsets.contains(opset) else {
            throw ONNXError("opset \(opset) cannot be exported; DistillKit writes opsets \(supportedOpsets.lowerBound) to \(supportedOpsets.upperBound)")
        }
        guard !inputShape.isEmpty, inputShape.allSatisfy({ $0 > 0 }) else { throw ONNXError("input shape \(inputShape) must be positive extents") }
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        let builder = GraphBuilder(opset: opset)
        // A sample of one example travels with the graph, to know every intermediate shape.
        let sample = Tensor.zeros([1] + inputShape)
        var input = inputName
        let features = inputShape.reduce(1, *)
        for (name, values, op) in [("input_mean", preprocessing.inputMean, "Sub"),
                                   ("input_std", preprocessing.inputStd.map { $0.map { $0 < 1e-6 ? 1 : $0 } }, "Div")] {
            guard let values else { continue }
            guard values.count == features || values.count == 1 else {
                throw ONNXError("\(name) has \(values.count) values; inputs have \(features) features")
            }
            let t = Tensor(shape: values.count == 1 ? [] : inputShape, scalars: values)
            input = builder.add(op, [input, try builder.constant("preprocessing.\(name)", t)], path: "preprocessing")
        }
        let (emitted, y) = try withNoGrad { try builder.emit(model, path: "", input: input, sample: sample) }
        var output = emitted
        if let scale = preprocessing.outputScale {
            output = builder.add("Mul", [output, try builder.constant("postprocessing.output_scale", Tensor(scalar: scale))], path: "postprocessing")
        }
        if let shift = preprocessing.outputShift {
            output = builder.add("Add", [output, try builder.constant("postprocessing.output_shift", Tensor(scalar: shift))], path: "postprocessing")
        }
        builder.nodes.append(node("Identity", [output], [outputName], name: "output"))

        return self.model(named: "distillkit", builder: builder, input: (inputName, inputShape), output: (outputName, Array(y.shape.dropFirst())),
                          opset: opset, metadata: metadata)
    }

    /// The model around a built graph: one FLOAT input and output with a dynamic batch axis, the
    /// opset and its IR version, DistillKit as the producer, `metadata` as metadata properties.
    static func model(named name: String, builder: GraphBuilder, input: (name: String, shape: [Int]), output: (name: String, shape: [Int]),
                      opset: Int, metadata: [String: String]) -> Onnx_ModelProto {
        var graph = Onnx_GraphProto()
        graph.name = name
        graph.node = builder.nodes
        graph.initializer = builder.initializers
        graph.input = [valueInfo(input.name, shape: [nil] + input.shape.map { Optional($0) })]
        graph.output = [valueInfo(output.name, shape: [nil] + output.shape.map { Optional($0) })]
        var proto = Onnx_ModelProto()
        proto.irVersion = irVersion(forOpset: opset)
        proto.producerName = "DistillKit"
        proto.producerVersion = "1"
        var set = Onnx_OperatorSetIdProto()
        set.domain = ""
        set.version = Int64(opset)
        proto.opsetImport = [set]
        proto.graph = graph
        proto.metadataProps = metadata.sorted { $0.key < $1.key }.map { key, value in
            var e = Onnx_StringStringEntryProto()
            e.key = key; e.value = value
            return e
        }
        return proto
    }

    /// A FLOAT tensor value-info; nil extents are the dynamic batch axis `N`.
    static func valueInfo(_ name: String, shape: [Int?]) -> Onnx_ValueInfoProto {
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = ONNXDataType.float.rawValue
        var s = Onnx_TensorShapeProto()
        s.dim = shape.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            if let d { dim.dimValue = Int64(d) } else { dim.dimParam = "N" }
            return dim
        }
        tensorType.shape = s
        var type = Onnx_TypeProto()
        type.tensorType = tensorType
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type = type
        return info
    }

    static func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String, _ attributes: [Onnx_AttributeProto] = []) -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.opType = op; n.input = inputs; n.output = outputs; n.name = name; n.attribute = attributes
        return n
    }

    static func attribute(_ name: String, ints: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name; a.type = .ints; a.ints = ints.map(Int64.init)
        return a
    }
    static func attribute(_ name: String, int: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name; a.type = .int; a.i = Int64(int)
        return a
    }
    static func attribute(_ name: String, float: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name; a.type = .float; a.f = float
        return a
    }
    static func attribute(_ name: String, string: String) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name; a.type = .string; a.s = Data(string.utf8)
        return a
    }
}

/// Collects nodes and initializers while walking a module tree.
final class GraphBuilder {
    let opset: Int
    var nodes: [Onnx_NodeProto] = []
    var initializers: [Onnx_TensorProto] = []
    private var counter = 0
    init(opset: Int) { self.opset = opset }

    /// A fresh value name derived from the layer path.
    func value(_ path: String, _ what: String) -> String {
        counter += 1
        return path.isEmpty ? "\(what)_\(counter)" : "\(path).\(what)_\(counter)"
    }

    func add(_ op: String, _ inputs: [String], path: String, _ attributes: [Onnx_AttributeProto] = []) -> String {
        let out = value(path, op.lowercased())
        nodes.append(ONNXExport.node(op, inputs, [out], name: out, attributes))
        return out
    }

    func constant(_ name: String, _ t: Tensor) throws -> String {
        initializers.append(try ONNXValue.float(t.copy()).encoded(name: name))
        return name
    }

    func join(_ path: String, _ leaf: String) -> String { path.isEmpty ? leaf : "\(path).\(leaf)" }

    /// Emits `module` reading value `input`; returns the output value's name and the sample's
    /// output (a batch of one, for shapes). A layer's output value is named by the layer's path
    /// ("3", "4.conv1"), so feature methods name the same layers in a model and in its export.
    func emit(_ module: Module, path: String, input x: String, sample: Tensor) throws -> (String, Tensor) {
        let (name, y) = try emitLayer(module, path: path, input: x, sample: sample)
        guard !path.isEmpty, name != x, !(module is Sequential),
              let i = nodes.lastIndex(where: { $0.output.contains(name) }) else { return (name, y) }
        nodes[i].output = nodes[i].output.map { $0 == name ? path : $0 }
        return (path, y)
    }

    func emitLayer(_ module: Module, path: String, input x: String, sample: Tensor) throws -> (String, Tensor) {
        let y = module(sample)
        switch module {
        case let m as Sequential:
            var name = x, s = sample
            for (i, layer) in m.layers.enumerated() { (name, s) = try emit(layer, path: join(path, "\(i)"), input: name, sample: s) }
            return (name, s)
        case let m as Linear:
            guard sample.rank == 2 else {
                // [N, ..., in]: MatMul with Wᵀ, then the bias.
                let wt = try constant(join(path, "weight.T"), m.weight.transposed())
                var out = add("MatMul", [x, wt], path: path)
                if let b = m.bias { out = add("Add", [out, try constant(join(path, "bias"), b)], path: path) }
                return (out, y)
            }
            var inputs = [x, try constant(join(path, "weight"), m.weight)]
            if let b = m.bias { inputs.append(try constant(join(path, "bias"), b)) }
            return (add("Gemm", inputs, path: path, [ONNXExport.attribute("transB", int: 1)]), y)
        case let m as Conv2d:
            var inputs = [x, try constant(join(path, "weight"), m.weight)]
            if let b = m.bias { inputs.append(try constant(join(path, "bias"), b)) }
            let c = m.config
            return (add("Conv", inputs, path: path, [
                ONNXExport.attribute("kernel_shape", ints: Array(m.weight.shape[2...])),
                ONNXExport.attribute("strides", ints: [c.stride.0, c.stride.1]),
                ONNXExport.attribute("pads", ints: [c.padding.0, c.padding.1, c.padding.0, c.padding.1]),
                ONNXExport.attribute("dilations", ints: [c.dilation.0, c.dilation.1]),
                ONNXExport.attribute("group", int: c.groups),
            ]), y)
        case let m as BatchNorm:
            let inputs = [x, try constant(join(path, "weight"), m.weight), try constant(join(path, "bias"), m.bias),
                          try constant(join(path, "running_mean"), m.runningMean), try constant(join(path, "running_var"), m.runningVar)]
            return (add("BatchNormalization", inputs, path: path, [ONNXExport.attribute("epsilon", float: m.epsilon)]), y)
        case is ReLU: return (add("Relu", [x], path: path), y)
        case is Sigmoid: return (add("Sigmoid", [x], path: path), y)
        case is Tanh: return (add("Tanh", [x], path: path), y)
        case let m as LeakyReLU: return (add("LeakyRelu", [x], path: path, [ONNXExport.attribute("alpha", float: m.slope)]), y)
        case is GELU:
            if opset >= 20 { return (add("Gelu", [x], path: path), y) }
            // x · ½ · (1 + erf(x / √2)), PyTorch's exact GELU as its exporter writes it before opset 20.
            let scaled = add("Mul", [x, try constant(join(path, "inv_sqrt2"), Tensor(scalar: 0.70710678118654752))], path: path)
            let erf = add("Erf", [scaled], path: path)
            let onePlus = add("Add", [erf, try constant(join(path, "one"), Tensor(scalar: 1))], path: path)
            let times = add("Mul", [x, onePlus], path: path)
            return (add("Mul", [times, try constant(join(path, "half"), Tensor(scalar: 0.5))], path: path), y)
        case is Flatten: return (add("Flatten", [x], path: path, [ONNXExport.attribute("axis", int: 1)]), y)
        case let m as MaxPool2d: return (add("MaxPool", [x], path: path, poolAttributes(m.config)), y)
        case let m as AvgPool2d:
            return (add("AveragePool", [x], path: path, poolAttributes(m.config) + [ONNXExport.attribute("count_include_pad", int: 1)]), y)
        case is GlobalAvgPool2d:
            let pooled = add("GlobalAveragePool", [x], path: path)
            return (add("Flatten", [pooled], path: path, [ONNXExport.attribute("axis", int: 1)]), y)
        case is DistillNN.Dropout: return (x, y)
        case let m as ResidualBlock:
            var (h, s) = try emit(m.conv1, path: join(path, "conv1"), input: x, sample: sample)
            (h, s) = try emit(m.bn1, path: join(path, "bn1"), input: h, sample: s)
            h = add("Relu", [h], path: path)
            s = s.relu()
            (h, s) = try emit(m.conv2, path: join(path, "conv2"), input: h, sample: s)
            (h, _) = try emit(m.bn2, path: join(path, "bn2"), input: h, sample: s)
            let shortcut = try m.shortcut.map { try emit($0, path: join(path, "shortcut"), input: x, sample: sample).0 } ?? x
            let sum = add("Add", [h, shortcut], path: path)
            return (add("Relu", [sum], path: path), y)
        default:
            throw ONNXError("cannot export layer \(path.isEmpty ? "(the model)" : "'\(path)'") of type \(type(of: module)) to ONNX")
        }
    }

    func poolAttributes(_ c: Pool2dConfig) -> [Onnx_AttributeProto] {
        [ONNXExport.attribute("kernel_shape", ints: [c.kernel.0, c.kernel.1]),
         ONNXExport.attribute("strides", ints: [c.stride.0, c.stride.1]),
         ONNXExport.attribute("pads", ints: [c.padding.0, c.padding.1, c.padding.0, c.padding.1])]
    }
}
