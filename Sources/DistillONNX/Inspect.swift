import DistillNN
import DistillTensor
import Foundation

/// What `distill inspect` prints about a model: its inputs and outputs, operators, parameters,
/// bytes and FLOPs for one example.
public struct InspectionSummary: @unchecked Sendable {
    public var source: String
    /// "ONNX (IR 8, opset 17)" or "DistillKit safetensors (cnn-small)".
    public var format: String
    public var producer: String
    public var inputs: [ONNXValueInfo]
    public var outputs: [ONNXValueInfo]
    /// Operator → number of nodes, most used first.
    public var operators: [(name: String, count: Int)]
    public var parameters: Int
    public var bytes: Int
    /// Floating-point operations for a batch of one (a multiply-add counts 2), or nil with `flopsNote`.
    public var flops: Int?
    public var flopsNote: String?

    public init(source: String, format: String, producer: String, inputs: [ONNXValueInfo], outputs: [ONNXValueInfo],
                operators: [(name: String, count: Int)], parameters: Int, bytes: Int, flops: Int?, flopsNote: String?) {
        self.source = source; self.format = format; self.producer = producer; self.inputs = inputs; self.outputs = outputs
        self.operators = operators; self.parameters = parameters; self.bytes = bytes; self.flops = flops; self.flopsNote = flopsNote
    }

    public var nodeCount: Int { operators.reduce(0) { $0 + $1.count } }

    public var text: String {
        var lines = ["\(source): \(format)\(producer.isEmpty ? "" : ", produced by \(producer)")"]
        lines.append("inputs:  " + inputs.map(\.description).joined(separator: "; "))
        lines.append("outputs: " + outputs.map(\.description).joined(separator: "; "))
        lines.append("operators (\(nodeCount) nodes): " + operators.map { "\($0.name) \($0.count)" }.joined(separator: ", "))
        lines.append("parameters: \(grouped(parameters)) (\(grouped(bytes)) bytes)")
        if let flops { lines.append("FLOPs per example: \(grouped(flops)) (\(scaled(Double(flops))))") }
        else { lines.append("FLOPs per example: unknown (\(flopsNote ?? "not computed"))") }
        return lines.joined(separator: "\n")
    }

    public var json: [String: Any] {
        var j: [String: Any] = [
            "source": source, "format": format, "producer": producer,
            "inputs": inputs.map { ["name": $0.name, "type": $0.type.map(String.init(describing:)) ?? "?", "shape": $0.shapeDescription] },
            "outputs": outputs.map { ["name": $0.name, "type": $0.type.map(String.init(describing:)) ?? "?", "shape": $0.shapeDescription] },
            "operators": Dictionary(operators.map { ($0.name, $0.count) }, uniquingKeysWith: +),
            "nodes": nodeCount, "parameters": parameters, "bytes": bytes,
        ]
        if let flops { j["flops"] = flops }
        if let flopsNote { j["flops_note"] = flopsNote }
        return j
    }
}

/// 1,234,567.
func grouped(_ n: Int) -> String {
    let digits = String(Swift.abs(n))
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return (n < 0 ? "-" : "") + out
}

/// 12.3 MFLOPs.
func scaled(_ v: Double) -> String {
    for (limit, unit) in [(1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs"), (1e3, "kFLOPs")] where v >= limit {
        return String(format: "%.2f %@", v / limit, unit)
    }
    return String(format: "%.0f FLOPs", v)
}

/// Summaries of ONNX files and DistillKit models.
public enum ModelInspector {
    /// Summarises a loaded ONNX model; FLOPs come from running it once on a batch of one zeros
    /// example (symbolic extents set to 1).
    public static func summary(_ model: ONNXModel) -> InspectionSummary {
        let opset = model.opsets[""].map { "opset \($0)" } ?? ""
        let ml = model.opsets["ai.onnx.ml"].map { "ai.onnx.ml \($0)" }
        let format = "ONNX (IR \(model.irVersion)\([opset, ml ?? ""].filter { !$0.isEmpty }.map { ", " + $0 }.joined()))"
        var flops: Int?, note: String?
        do { flops = try countFlops(model) } catch { note = "\(error)" }
        return InspectionSummary(source: model.source, format: format, producer: model.producer, inputs: model.inputs, outputs: model.outputs,
                            operators: model.operatorCounts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { ($0.key, $0.value) },
                            parameters: model.parameterCount, bytes: model.parameterBytes, flops: flops, flopsNote: note)
    }

    /// Summarises a DistillKit model through its ONNX export, so FLOPs are counted the same way;
    /// an int8 student through its QDQ export (`distill export q.safetensors --onnx`), whose
    /// operators show the quantization.
    public static func summary(_ model: Module, spec: String, inputShape: [Int], source: String) -> InspectionSummary {
        // `SavedModel.load` returns an int8 file as a Sequential holding its QuantizedModel.
        let int8 = (model as? QuantizedModel) ?? ((model as? Sequential)?.layers.count == 1 ? (model as? Sequential)?.layers[0] as? QuantizedModel : nil)
        var summary: InspectionSummary
        do {
            let graph = try int8.map { try ONNXExport.serializeQDQ($0.student) }
                ?? ONNXExport.serialize(model, inputShape: inputShape)
            let onnx = try ONNXModel(data: graph, source: source)
            summary = self.summary(onnx)
        } catch {
            summary = InspectionSummary(source: source, format: "", producer: "", inputs: [ONNXValueInfo(name: "input", type: .float, shape: [.named("N")] + inputShape.map { .fixed($0) })],
                                   outputs: [], operators: [], parameters: 0, bytes: 0, flops: nil, flopsNote: "\(error)")
        }
        summary.format = int8 == nil ? "DistillKit model (\(spec))" : "DistillKit int8 model (\(spec))"
        summary.producer = ""
        summary.parameters = int8?.student.parameterCount ?? model.parameterCount
        summary.bytes = int8?.student.stateBytes ?? model.stateBytes
        return summary
    }

    /// Most bytes of one zeros input that `countFlops` makes: FLOPs are an estimate for one
    /// example, not worth a huge allocation when a model declares a huge extent.
    static let maxFlopsInputBytes = 1 << 30

    /// Floating-point operations of one run on a batch of one.
    public static func countFlops(_ model: ONNXModel) throws -> Int {
        var feeds: [String: ONNXValue] = [:]
        for info in model.inputs {
            guard let shape = info.shape else { throw ONNXError("input \(quoted(info.name)) has no declared shape") }
            let dims = shape.map { $0.value ?? 1 }
            let count = try checkedElementCount(dims, "input \(quoted(info.name))", elementBytes: 8)
            guard count <= maxFlopsInputBytes / 8 else {
                throw ONNXError("input \(quoted(info.name)) \(describeShape(dims)) is too large to run for a FLOP count")
            }
            switch info.type {
            case .float?: feeds[info.name] = .float(Tensor.zeros(dims))
            case let t? where t.isInteger: feeds[info.name] = .int(IntTensor(shape: dims, values: [Int64](repeating: 0, count: dims.reduce(1, *)), type: t))
            default: throw ONNXError("input '\(info.name)' is not a FLOAT or integer tensor")
            }
        }
        var total = 0
        _ = try model.run(feeds, extra: [], observe: { node, inputs, outputs in
            total = CheckedSize.add(total, flops(node, inputs, outputs)) ?? Int.max
        })
        return total
    }

    /// The product of FLOP factors, saturating at Int.max (a count, never a trap).
    static func product(_ factors: Int...) -> Int { CheckedSize.product(factors.map { Swift.max($0, 0) }) ?? Int.max }

    /// FLOPs of one node from its actual operands (multiply-adds count 2; elementwise ops 1 per element).
    static func flops(_ node: Node, _ inputs: [ONNXValue?], _ outputs: [ONNXValue]) -> Int {
        let out = outputs.first?.count ?? 0
        func shape(_ i: Int) -> [Int] { i < inputs.count ? inputs[i]?.shape ?? [] : [] }
        switch node.opType {
        case "Conv":
            let w = shape(1)
            guard w.count >= 2 else { return 0 }
            return product(out, 2, w[1...].reduce(1, *)) &+ (inputs.count > 2 && inputs[2] != nil ? out : 0)
        case "Gemm":
            let a = shape(0)
            guard a.count == 2 else { return 0 }
            let k = (try? node.attributes.int("transA", 0)) == 1 ? a[0] : a[1]
            return product(out, 2, k) &+ (inputs.count > 2 && inputs[2] != nil ? out : 0)
        case "MatMul": return product(out, 2, shape(0).last ?? 0)
        case "BatchNormalization": return 2 * out
        case "InstanceNormalization", "LayerNormalization", "LRN": return 5 * out
        case "MaxPool", "AveragePool":
            let kernel = ((try? node.attributes.ints("kernel_shape")) ?? nil ?? []).map { Swift.max($0, 0) }
            return product(out, CheckedSize.product(kernel) ?? Int.max)
        case "GlobalAveragePool", "GlobalMaxPool": return inputs.first??.count ?? 0
        case "Softmax", "LogSoftmax": return 3 * out
        case let op where op.hasPrefix("Reduce") || op.hasPrefix("Arg"): return inputs.first??.count ?? 0
        case "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Shape", "Size", "Gather",
             "GatherElements", "Slice", "Pad", "Expand", "Tile", "Constant", "ConstantOfShape", "Identity", "Dropout",
             "Cast", "CastLike", "Range", "DepthToSpace", "SpaceToDepth", "Trilu", "ArrayFeatureExtractor":
            return 0
        case "LinearClassifier", "LinearRegressor":
            let x = shape(0)
            return product(2, x.first ?? 0, x.last ?? 0, outputs.last?.shape.last ?? 1)
        case "TreeEnsembleClassifier", "TreeEnsembleRegressor":
            // One comparison per level of every tree: trees × log2(nodes per tree + 1) per row.
            let rows = shape(0).first ?? 1
            let nodes = ((try? node.attributes.ints("nodes_nodeids")) ?? nil)?.count ?? 0
            let trees = Set(((try? node.attributes.ints("nodes_treeids")) ?? nil) ?? []).count
            guard trees > 0 else { return 0 }
            return product(rows, trees, Int(Foundation.log2(Double(nodes / trees + 1)).rounded(.up)))
        case "LSTM", "GRU", "RNN":
            // Per step, row and direction: the input and recurrent products 2·G·H·(I + H), their
            // biases 2·G·H, and the gates' elementwise work (about 10·H for LSTM, 8·H for GRU, 2·H for RNN).
            let x = shape(0), w = shape(1), r = shape(2)
            guard x.count == 3, w.count == 3, r.count == 3 else { return 0 }
            let batchFirst = (try? node.attributes.int("layout", 0)) == 1
            let (steps, rows) = batchFirst ? (x[1], x[0]) : (x[0], x[1])
            let (directions, gatesTimesHidden, inputs, hidden) = (w[0], w[1], w[2], r[2])
            let elementwise = node.opType == "LSTM" ? 10 : node.opType == "GRU" ? 8 : 2
            let perStep = CheckedSize.add(product(2, gatesTimesHidden, inputs &+ hidden), product(2, gatesTimesHidden))
                .flatMap { CheckedSize.add($0, product(elementwise, hidden)) } ?? Int.max
            return product(steps, rows, directions, perStep)
        default: return outputs.reduce(0) { $0 + $1.count }
        }
    }
}
