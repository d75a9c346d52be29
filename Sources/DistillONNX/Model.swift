import DistillTensor
import Foundation
import SwiftProtobuf

/// DistillONNX: ONNX models as DistillKit teachers, and DistillKit students as ONNX files.
///
/// `ONNXModel` reads a `.onnx` file (with external-data files beside it), checks it completely
/// before anything runs (IR and opset versions, every operator supported, every input defined,
/// no cycles, tensor sizes that agree with their data), and runs it on the DistillTensor engine in
/// inference mode. Operators are functions named after the ONNX operator (`ONNXOps.Conv`), listed
/// in one table (`ONNXOps.kernels`). `ONNXExport` writes a DistillKit `Sequential` as ONNX, and
/// `ONNXInspector` summarises either kind of model.
///
/// Values flowing through the graph are `ONNXValue`s: Float32 engine tensors for the model's
/// arithmetic, Int64-backed integer tensors for shapes and indices (ONNX computes shapes inside
/// the graph), and strings for class labels.

/// One extent of a declared shape: a number, a symbolic name (`N`, `batch_size`) or unknown.
public enum ONNXDim: Equatable, Sendable, CustomStringConvertible {
    case fixed(Int)
    case named(String)
    case unknown
    public var description: String {
        switch self {
        case .fixed(let n): return String(n)
        case .named(let s): return s
        case .unknown: return "?"
        }
    }
    public var value: Int? { if case .fixed(let n) = self { return n }; return nil }
}

/// A graph input or output as the model declares it.
public struct ONNXValueInfo: Sendable, CustomStringConvertible {
    public var name: String
    /// The element type, when the value is a tensor with a known type.
    public var type: ONNXDataType?
    /// The declared shape, when there is one.
    public var shape: [ONNXDim]?
    /// Set when the value is not a tensor (a sequence, map or optional): "sequence", "map", ...
    public var nonTensorKind: String?

    /// "[N,1,28,28]" (or "[?]" when the rank is unknown).
    public var shapeDescription: String { shape.map { "[" + $0.map(\.description).joined(separator: ",") + "]" } ?? "[?]" }
    public var description: String {
        if let k = nonTensorKind { return "\(name): \(k)" }
        return "\(name): \(type.map(String.init(describing:)) ?? "?")\(shapeDescription)"
    }

    init(_ p: Onnx_ValueInfoProto) {
        name = p.name
        switch p.type.value {
        case .tensorType(let t)?:
            type = ONNXDataType(rawValue: t.elemType)
            shape = t.hasShape ? t.shape.dim.map { d in
                switch d.value {
                case .dimValue(let v)?: return .fixed(Int(v))
                case .dimParam(let s)? where !s.isEmpty: return .named(s)
                default: return .unknown
                }
            } : nil
        case .sequenceType?: nonTensorKind = "sequence"
        case .mapType?: nonTensorKind = "map"
        case .optionalType?: nonTensorKind = "optional"
        case .sparseTensorType?: nonTensorKind = "sparse tensor"
        case nil: break
        }
    }
    public init(name: String, type: ONNXDataType?, shape: [ONNXDim]?) {
        self.name = name; self.type = type; self.shape = shape
    }

    /// What is wrong with the declared shape (a negative extent, too many axes), or nil. `role`
    /// is "input" or "output". A huge extent is legal here; feeding or allocating it is checked later.
    func checkDeclaredShape(_ role: String) -> String? {
        guard let shape else { return nil }
        guard shape.count <= Limits.maxRank else {
            return "\(role) \(quoted(name)) declares \(shape.count) axes, more than the \(Limits.maxRank) DistillKit allows"
        }
        for (axis, d) in shape.enumerated() {
            if let n = d.value, n < 0 {
                return "\(role) \(quoted(name)) declares extent \(n) for axis \(axis); extents are non-negative (leave an extent unknown with a name such as 'N')"
            }
        }
        return nil
    }
}

/// A loaded, checked ONNX model, ready to run.
public final class ONNXModel: @unchecked Sendable {
    /// Where the model came from (its path, or the name given to `init(data:)`), for messages.
    public let source: String
    public let irVersion: Int
    /// Imported opsets by domain ("" is ai.onnx, the default domain).
    public let opsets: [String: Int]
    public let producer: String
    /// `metadata_props` of the model.
    public let metadata: [String: String]
    /// The inputs to feed (graph inputs that are not initializers).
    public let inputs: [ONNXValueInfo]
    public let outputs: [ONNXValueInfo]
    /// Constant tensors (weights) by name.
    let initializers: [String: ONNXValue]
    /// Nodes in an order where every input is computed before it is read.
    let nodes: [Node]
    /// For each value, the index (in `nodes`) of the last node that reads it.
    let lastUse: [String: Int]
    /// For each value a node computes, that node's index in `nodes`.
    let producerIndex: [String: Int]
    /// The graph as it runs: after constant folding, Identity removal and Conv fusions
    /// (`GraphOptimizer`), made once here.
    let optimizedPlan: ExecutionPlan
    /// The graph as written, for `run(extra:)` asking for a value the optimised plan no longer
    /// computes, and for `observe` (FLOP counts per node as written).
    let writtenPlan: ExecutionPlan
    /// Whether the optimised plan may run a batch a few images at a time (`BatchChunks`).
    let chunkable: Bool

    /// The opset range of the default domain this importer implements.
    public static let supportedOpsets = 1...22
    /// The opset range of ai.onnx.ml.
    public static let supportedMLOpsets = 1...5
    /// IR versions this importer reads. Later IR versions only add features (new types, fields);
    /// a model that uses one of them fails the type or operator checks with its own message.
    public static let supportedIRVersions = 3...Int.max

    /// Reads and checks a `.onnx` file; external-data files are looked up beside it. Only a
    /// regular file is read (a FIFO, a device or a folder is an error that says which).
    public convenience init(contentsOf url: URL) throws {
        let data: Data
        do { data = try InputFile.read(url, what: "the model") } catch let e as TensorError {
            throw ONNXError(e.message)
        }
        try self.init(data: data, directory: url.deletingLastPathComponent(), source: url.path)
    }

    /// Parses and checks a serialized `ModelProto`. `directory` is where external data lives.
    public convenience init(data: Data, directory: URL? = nil, source: String = "model") throws {
        guard !data.isEmpty else { throw ONNXError("\(source): the file is empty, not an ONNX model") }
        let proto: Onnx_ModelProto
        do {
            proto = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw ONNXError("\(source): not a valid ONNX model: the protobuf is truncated or corrupt (\(error))")
        }
        try self.init(proto: proto, directory: directory, source: source)
    }

    init(proto: Onnx_ModelProto, directory: URL?, source: String) throws {
        self.source = source
        func fail(_ message: String) -> ONNXError { ONNXError("\(source): \(message)") }
        guard proto.hasGraph, proto.irVersion != 0 || !proto.opsetImport.isEmpty else {
            throw fail("not an ONNX model (no graph and no IR version); is this really a .onnx file?")
        }
        guard Self.supportedIRVersions.contains(Int(proto.irVersion)) else {
            throw fail("IR version \(proto.irVersion) is not supported (DistillKit reads IR version \(Self.supportedIRVersions.lowerBound) and later)")
        }
        irVersion = Int(proto.irVersion)
        producer = [proto.producerName, proto.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        var meta: [String: String] = [:]
        for p in proto.metadataProps { meta[p.key] = p.value }
        metadata = meta

        var opsets: [String: Int] = [:]
        for o in proto.opsetImport {
            let domain = o.domain == "ai.onnx" ? "" : o.domain
            opsets[domain] = Int(clamping: o.version)
        }
        self.opsets = opsets
        if let v = opsets[""], !Self.supportedOpsets.contains(v) {
            throw fail("opset \(v) of the default domain is not supported (DistillKit runs opsets \(Self.supportedOpsets.lowerBound) to \(Self.supportedOpsets.upperBound)); re-export the model with opset_version=17")
        }
        if let v = opsets["ai.onnx.ml"], !Self.supportedMLOpsets.contains(v) {
            throw fail("ai.onnx.ml opset \(v) is not supported (DistillKit runs \(Self.supportedMLOpsets.lowerBound) to \(Self.supportedMLOpsets.upperBound))")
        }

        let graph = proto.graph
        guard graph.sparseInitializer.isEmpty else { throw fail("sparse initializers are not supported") }
        var initializers: [String: ONNXValue] = [:]
        for t in graph.initializer {
            guard !t.name.isEmpty else { throw fail("an initializer has no name") }
            guard initializers[t.name] == nil else { throw fail("initializer '\(t.name)' is defined twice") }
            do { initializers[t.name] = try ONNXValue.decode(t, directory: directory) } catch let e as ONNXError {
                throw fail("initializer: \(e.message)")
            }
        }
        self.initializers = initializers

        var seenInputs = Set<String>()
        var inputs: [ONNXValueInfo] = []
        for i in graph.input where initializers[i.name] == nil {
            guard !i.name.isEmpty else { throw fail("a graph input has no name") }
            guard seenInputs.insert(i.name).inserted else { throw fail("graph input '\(i.name)' is declared twice") }
            inputs.append(ONNXValueInfo(i))
        }
        self.inputs = inputs
        outputs = graph.output.map(ONNXValueInfo.init)
        guard !outputs.isEmpty else { throw fail("the graph declares no outputs") }
        for (role, infos) in [("input", inputs), ("output", outputs)] {
            for info in infos { try info.checkDeclaredShape(role).map { throw fail($0) } }
        }

        // Nodes: resolve each operator's opset and implementation; list everything unsupported at once.
        guard graph.node.count <= Limits.maxNodes else {
            throw fail("the graph has \(graph.node.count) nodes, more than the \(Limits.maxNodes) DistillKit runs")
        }
        do { try ControlFlow.checkSubgraphSizes(graph) } catch let e as ONNXError { throw fail(e.message) }
        var nodes: [Node] = []
        nodes.reserveCapacity(graph.node.count)
        var unsupported: [(Node, String)] = []
        for (index, p) in graph.node.enumerated() {
            let domain = p.domain == "ai.onnx" ? "" : p.domain
            let plain = Node(index: index, name: p.name, opType: p.opType, domain: domain, inputs: p.input, outputs: p.output,
                             attributes: Attributes(p.attribute, directory: directory),
                             opset: opsets[domain] ?? (domain.isEmpty ? Self.supportedOpsets.upperBound : 0))
            // If, Loop and Scan: sub-graphs built and checked now; their outer-scope reads become inputs.
            let node: Node
            do { node = try ControlFlow.attachingSubgraphs(to: plain, opsets: opsets, directory: directory) } catch let e as ONNXError { throw fail(e.message) }
            if opsets[domain] == nil && !domain.isEmpty {
                unsupported.append((node, "domain \(quoted(domain)) is not imported by the model"))
            } else if let reason = ONNXOps.unsupportedReason(node) {
                unsupported.append((node, reason))
            } else {
                do { try node.attributes.checkTensors() } catch let e as ONNXError { throw fail("\(node.label): \(e.message)") }
            }
            nodes.append(node)
        }
        if !unsupported.isEmpty {
            let shown = 10
            func opName(_ node: Node) -> String { node.opType.isEmpty ? "(no operator name)" : shortened(node.opType) }
            var lines = unsupported.prefix(shown).map { node, reason in
                "  \(opName(node)) (node \(node.name.isEmpty ? "#\(node.index)" : quoted(node.name)), \(node.domain.isEmpty ? "ai.onnx" : shortened(node.domain)) opset \(node.opset)): \(reason)"
            }
            if unsupported.count > shown { lines.append("  ... and \(unsupported.count - shown) more") }
            let ops = Set(unsupported.map { opName($0.0) }).sorted()
            throw fail("""
                \(unsupported.count) node\(unsupported.count == 1 ? "" : "s") cannot run (nothing was run), unsupported: \(ops.prefix(shown).joined(separator: ", "))\(ops.count > shown ? " and \(ops.count - shown) more" : "")
                \(lines.joined(separator: "\n"))
                Supported operators: \(ONNXOps.supportedOperators.joined(separator: ", ")).
                """)
        }

        let available = Set(inputs.map(\.name)).union(initializers.keys)
        self.nodes = try Self.ordered(nodes, available: available, fail: fail)
        var producers: [String: Int] = [:]
        var lastUse: [String: Int] = [:]
        for (i, n) in self.nodes.enumerated() {
            for name in n.inputs where !name.isEmpty { lastUse[name] = i }
            for name in n.outputs where !name.isEmpty { producers[name] = i }
        }
        for o in outputs where !available.contains(o.name) && producers[o.name] == nil {
            throw fail("graph output \(quoted(o.name)) is not computed by any node")
        }
        self.lastUse = lastUse
        producerIndex = producers
        let inputNames = inputs.map(\.name)
        writtenPlan = ExecutionPlan(steps: self.nodes.map { PlannedStep(node: $0, activation: nil) }, constants: [:],
                                    inputs: inputNames, initializers: initializers)
        optimizedPlan = Self.optimizing ? GraphOptimizer.plan(nodes: self.nodes, inputs: inputNames, initializers: initializers,
                                                              outputs: outputs.map(\.name)) : writtenPlan
        let plan = optimizedPlan
        chunkable = BatchChunks.separable(plan, inputs: inputs, outputs: outputs.map(\.name),
                                          constant: { initializers[$0] ?? plan.constants[$0] })
    }

    /// Whether models are optimised at load: on unless `DISTILL_ONNX_OPTIMIZE=0` (to compare).
    static let optimizing = ProcessInfo.processInfo.environment["DISTILL_ONNX_OPTIMIZE"] != "0"

    /// Images per chunk when a batch runs in chunks (`BatchChunks`): `DISTILL_ONNX_CHUNK`, or
    /// the default measured on MobileNet v2, EfficientNet-B0 and ResNet-18 (BENCHMARKS.md);
    /// 0 turns chunking off. A task-local so that tests can compare both ways in one process.
    @TaskLocal static var chunkImages: Int = ProcessInfo.processInfo.environment["DISTILL_ONNX_CHUNK"].flatMap(Int.init) ?? 8

    /// Which kernel runs 1×1 convolutions: -1 the direct one (`dk_pointwise_conv_level`,
    /// Sources/CKernels/conv_pointwise.c) at the best level this CPU has, AVX-512 or AVX2 + FMA; 2
    /// or 1 that level (for tests; BLAS where the CPU lacks it); 0 BLAS GEMMs, the path before,
    /// also chosen by `DISTILL_ONNX_POINTWISE=blas` to compare. A task-local so that tests can
    /// compare the paths in one process.
    @TaskLocal static var pointwiseKernel: Int32 = ProcessInfo.processInfo.environment["DISTILL_ONNX_POINTWISE"] == "blas" ? 0 : -1

    /// Whether `name` is an initializer or a value `plan` computed at load.
    func isConstant(_ name: String, _ plan: ExecutionPlan) -> Bool { initializers[name] != nil || plan.constants[name] != nil }

    /// Checks that every node input is defined, no value is computed twice and there is no cycle;
    /// returns the nodes in an order where each runs after the nodes it reads from (the file's
    /// own order when that already holds, as the ONNX spec requires). O((nodes + edges) log nodes).
    static func ordered(_ nodes: [Node], available: Set<String>, fail: (String) -> ONNXError) throws -> [Node] {
        var producer: [String: Int] = [:]
        for (i, n) in nodes.enumerated() {
            for o in n.outputs where !o.isEmpty {
                if available.contains(o) { throw fail("\(n.label) writes \(quoted(o)), which is already a graph input or initializer") }
                if let j = producer[o] { throw fail("\(quoted(o)) is computed twice, by \(nodes[j].label) and \(n.label)") }
                producer[o] = i
            }
        }
        // Each node's distinct producers: the edges of the graph.
        var dependencies: [[Int]] = []
        dependencies.reserveCapacity(nodes.count)
        var inOrder = true
        var lastReader = [Int](repeating: -1, count: nodes.count)  // the node that last listed each producer
        for (i, n) in nodes.enumerated() {
            var deps: [Int] = []
            for name in n.inputs where !name.isEmpty && !available.contains(name) {
                guard let p = producer[name] else {
                    throw fail("\(n.label) reads \(quoted(name)), which no node, graph input or initializer defines (a missing initializer?)")
                }
                if lastReader[p] != i { lastReader[p] = i; deps.append(p) }
                if p >= i { inOrder = false }
            }
            dependencies.append(deps)
        }
        if inOrder { return nodes }

        // Kahn's algorithm, taking the earliest ready node each time (a min-heap of indices) so the
        // file's order is kept where it can be.
        var remaining = dependencies.map(\.count)
        var consumers = [[Int]](repeating: [], count: nodes.count)
        for (i, deps) in dependencies.enumerated() { for d in deps { consumers[d].append(i) } }
        var ready = MinHeap((0..<nodes.count).filter { remaining[$0] == 0 })
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        while let i = ready.pop() {
            order.append(i)
            for c in consumers[i] {
                remaining[c] -= 1
                if remaining[c] == 0 { ready.push(c) }
            }
        }
        if order.count < nodes.count {
            // Walk back along unresolved dependencies from a stuck node until a node repeats.
            var path: [Int] = []
            var seen: [Int: Int] = [:]
            var current = (0..<nodes.count).first { remaining[$0] > 0 }!
            while seen[current] == nil {
                seen[current] = path.count
                path.append(current)
                current = dependencies[current].first { remaining[$0] > 0 }!
            }
            let cycle = Array(path[seen[current]!...].reversed()) + [path[seen[current]!...].last!]
            let shown = cycle.count > 12 ? cycle.prefix(6).map { nodes[$0].label } + ["... (\(cycle.count - 12) more)"] + cycle.suffix(6).map { nodes[$0].label }
                                         : cycle.map { nodes[$0].label }
            throw fail("the graph has a cycle: \(shown.joined(separator: " → "))")
        }
        return order.map { nodes[$0] }
    }

    /// Runs `body` with tighter limits than the defaults on the elements of one tensor and the
    /// steps of one node: for fuzzing, where every input must finish in milliseconds. Memory stays
    /// bounded by `MemoryBudget` (DISTILL_MAX_MEMORY) as always.
    public static func withLimits<T>(maxElements: Int, maxSteps: Int, _ body: () throws -> T) rethrows -> T {
        try Limits.$maxElements.withValue(Swift.min(maxElements, Limits.maxElements)) {
            try Limits.$maxLoopSteps.withValue(Swift.min(maxSteps, Limits.maxLoopSteps)) {
                try Limits.$maxMultiplyAdds.withValue(Swift.min(maxSteps, Limits.maxMultiplyAdds), operation: body)
            }
        }
    }

    // MARK: Facts

    /// Names of every value a node computes, in execution order (for feature taps).
    public var valueNames: [String] { nodes.flatMap { $0.outputs.filter { !$0.isEmpty } } }
    /// Learned numbers held in node attributes: the thresholds, leaf weights and coefficients of
    /// the ONNX-ML operators (tree ensembles and linear models keep their parameters there).
    var attributeParameters: Int {
        nodes.filter { $0.domain == "ai.onnx.ml" }.reduce(0) { total, node in
            // Tensor attributes were checked at load (checkTensors), so their element counts are known to fit.
            total + node.attributes.byName.values.reduce(0) { $0 + $1.floats.count + ($1.hasT ? CheckedSize.product($1.t.dims.map { Int($0) }) ?? 0 : 0) }
        }
    }
    /// Elements in all FLOAT initializers (the weights), plus the ONNX-ML operators' learned attributes.
    public var parameterCount: Int { initializers.values.reduce(0) { $0 + ($1.floatTensor?.count ?? 0) } + attributeParameters }
    /// Bytes of all initializers (and of the ONNX-ML operators' learned attributes, 4 per number).
    public var parameterBytes: Int {
        initializers.values.reduce(0) { total, v in
            switch v {
            case .float(let t): return total + t.count * 4
            case .int(let t): return total + t.count * (t.type.byteWidth ?? 8)
            case .string(let t): return total + t.values.reduce(0) { $0 + $1.utf8.count }
            }
        } + 4 * attributeParameters
    }
    /// How many nodes use each operator.
    public var operatorCounts: [String: Int] {
        var counts: [String: Int] = [:]
        for n in nodes { counts[n.domain.isEmpty ? n.opType : "\(n.domain).\(n.opType)", default: 0] += 1 }
        return counts
    }
    /// Number of nodes.
    public var nodeCount: Int { nodes.count }
    /// The operator that computes `value`, when a node does.
    public func producingOperator(of value: String) -> String? { producer(of: value)?.opType }

    /// The node computing `value`, looking through Identity nodes.
    func producer(of value: String) -> Node? {
        var name = value
        for _ in 0...nodes.count {
            guard let index = producerIndex[name] else { return nil }
            let node = nodes[index]
            guard node.opType == "Identity", let source = node.inputs.first else { return node }
            name = source
        }
        return nil
    }

    /// The `post_transform` of the ONNX-ML classifier or regressor computing `value` ("NONE" by default).
    public func postTransform(of value: String) -> String? {
        guard let node = producer(of: value), node.domain == "ai.onnx.ml" else { return nil }
        return (try? node.attributes.string("post_transform", "NONE")) ?? "NONE"
    }

    // MARK: Running

    /// Runs the graph on `feeds` (by input name) and returns the graph outputs plus any other
    /// values named in `extra` (intermediate values, by ONNX name). No gradients are recorded.
    /// Inputs are checked against the declared types and shapes first.
    public func run(_ feeds: [String: ONNXValue], extra: [String] = []) throws -> [String: ONNXValue] {
        try run(feeds, extra: extra, observe: nil)
    }

    /// `run`, calling `observe(node, inputs, outputs)` after each node as written (for FLOP
    /// counts). `optimized: false` runs the graph as written (tests compare the two).
    func run(_ feeds: [String: ONNXValue], extra: [String], observe: ((Node, [ONNXValue?], [ONNXValue]) -> Void)?,
             optimized: Bool = true) throws -> [String: ONNXValue] {
        try check(feeds)
        for name in extra where producerIndex[name] == nil && initializers[name] == nil && !inputs.contains(where: { $0.name == name }) {
            throw ONNXError("\(source): no value named \(quoted(name)); values are: \(valueNames.prefix(50).map(quoted).joined(separator: ", "))\(valueNames.count > 50 ? ", ..." : "")")
        }
        let useOptimized = optimized && observe == nil && extra.allSatisfy(optimizedPlan.available.contains)
        let plan = useOptimized ? optimizedPlan : writtenPlan
        let wanted = Set(outputs.map(\.name)).union(extra)
        return try withNoGrad {
            if useOptimized, extra.isEmpty, chunkable, let out = runInChunks(feeds, plan: plan, wanted: wanted) {
                return out
            }
            return try execute(plan, feeds: feeds, wanted: wanted, observe: observe, images: nil)
        }
    }

    /// The whole batch `ONNXModel.chunkImages` images at a time, the outputs gathered; nil when
    /// the model or batch does not allow it, or when a chunk fails or breaks the per-image
    /// conditions (`BatchChunks`): the caller then runs the batch whole.
    private func runInChunks(_ feeds: [String: ONNXValue], plan: ExecutionPlan, wanted: Set<String>) -> [String: ONNXValue]? {
        let k = Self.chunkImages
        guard k > 0, let n = feeds.values.first?.shape.first, n >= 2 * k,
              feeds.values.allSatisfy({ $0.shape.first == n }) else { return nil }
        var gathered: [String: Tensor] = [:]
        for start in stride(from: 0, to: n, by: k) {
            let count = Swift.min(k, n - start)
            var chunk: [String: ONNXValue] = [:]
            for (name, value) in feeds {
                guard let part = BatchChunks.rows(value, start, count) else { return nil }
                chunk[name] = part
            }
            guard let env = try? execute(plan, feeds: chunk, wanted: wanted, observe: nil, images: count) else { return nil }
            for name in wanted {
                guard case .float(let t)? = env[name], t.shape.first == count else { return nil }
                let perImage = Array(t.shape.dropFirst())
                if gathered[name] == nil { gathered[name] = Tensor(uninitializedShape: [n] + perImage) }
                let whole = gathered[name]!
                guard Array(whole.shape.dropFirst()) == perImage else { return nil }
                let size = t.count / Swift.max(count, 1)
                (whole.data + start * size).update(from: t.data, count: t.count)
            }
        }
        return gathered.mapValues { .float($0) }
    }

    /// Runs `plan`'s steps on `feeds` and returns the values in `wanted`. With `images`, every
    /// step must keep that many images on its outputs' leading axis (`BatchChunks.keepsImages`),
    /// else this throws.
    private func execute(_ plan: ExecutionPlan, feeds: [String: ONNXValue], wanted: Set<String>,
                         observe: ((Node, [ONNXValue?], [ONNXValue]) -> Void)?, images: Int?) throws -> [String: ONNXValue] {
        var env = feeds
        for (step, planned) in plan.steps.enumerated() {
            let node = planned.node
            let values: [ONNXValue?] = try node.inputs.map { name in
                if name.isEmpty { return nil }
                if let v = env[name] ?? initializers[name] ?? plan.constants[name] { return v }
                throw ONNXError("\(source): \(node.label): input \(quoted(name)) has no value (an output its producer did not compute)")
            }
            let results: [ONNXValue]
            do {
                let started = ONNXProfile.enabled ? DispatchTime.now().uptimeNanoseconds : 0
                let context = OpContext(node: node, inputs: values)
                if let block = planned.block {
                    results = try ONNXOps.invertedResidual(context, block: block)
                } else if planned.isFused {
                    results = try ONNXOps.fusedConvolution(context, step: planned)
                } else {
                    guard let kernel = ONNXOps.kernel(for: node) else {
                        throw ONNXError("no implementation")  // unreachable: checked at load
                    }
                    results = try kernel(context)
                }
                if ONNXProfile.enabled { ONNXProfile.record(planned.label, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9) }
                // Every value downstream operators see has a checked shape (rank, extents, no
                // overflow hidden behind a zero extent): O(rank) per output.
                for r in results { try checkedElementCount(r.shape, "output", elementBytes: 1) }
            } catch let e as ONNXError {
                let name = node.name.isEmpty ? "#\(node.index)" : quoted(node.name)
                throw ONNXError("\(source): node \(name) (\(node.opType), opset \(node.opset)): \(e.message)")
            }
            if let images, !BatchChunks.keepsImages(node, inputs: values, outputs: results, images: images,
                                                    isConstant: { isConstant($0, plan) }) {
                throw ONNXError("\(source): \(node.label) does not keep the images apart")
            }
            for (i, name) in node.outputs.enumerated() where !name.isEmpty {
                if i < results.count { env[name] = results[i] }
            }
            observe?(node, values, results)
            // Free what no later node reads.
            for name in node.inputs where !name.isEmpty && plan.lastUse[name] == step && !wanted.contains(name) {
                env[name] = nil
            }
        }
        var out: [String: ONNXValue] = [:]
        for name in wanted {
            guard let v = env[name] ?? initializers[name] ?? plan.constants[name] else {
                throw ONNXError("\(source): output \(quoted(name)) was not computed")
            }
            out[name] = v
        }
        return out
    }

    /// Runs a single-input model on a FLOAT batch and returns its first output.
    public func callAsFunction(_ x: Tensor) throws -> ONNXValue {
        guard inputs.count == 1 else {
            throw ONNXError("\(source): the model takes \(inputs.count) inputs (\(inputs.map(\.name).joined(separator: ", "))); use run(_:)")
        }
        return try run([inputs[0].name: .float(x)])[outputs[0].name]!
    }

    /// Checks `feeds` against the declared inputs: every input present, nothing unknown, and
    /// each value of the declared type, rank and fixed extents.
    public func check(_ feeds: [String: ONNXValue]) throws {
        let declared = Set(inputs.map(\.name))
        let missing = inputs.map(\.name).filter { feeds[$0] == nil }
        guard missing.isEmpty else { throw ONNXError("\(source): missing input\(missing.count == 1 ? "" : "s") \(missing.map { "'\($0)'" }.joined(separator: ", ")) (the model takes \(inputs.map(\.description).joined(separator: "; ")))") }
        let unknown = feeds.keys.filter { !declared.contains($0) }.sorted()
        guard unknown.isEmpty else { throw ONNXError("\(source): unknown input\(unknown.count == 1 ? "" : "s") \(unknown.map { "'\($0)'" }.joined(separator: ", ")) (the model takes \(inputs.map(\.name).joined(separator: ", ")))") }
        for info in inputs {
            let v = feeds[info.name]!
            if let kind = info.nonTensorKind { throw ONNXError("\(source): input '\(info.name)' is a \(kind); DistillKit feeds tensors only") }
            if let t = info.type, t != v.dataType {
                throw ONNXError("\(source): input '\(info.name)': \(v.dataType) given, \(t) expected")
            }
            if let shape = info.shape {
                let fits = shape.count == v.shape.count && zip(shape, v.shape).allSatisfy { d, n in d.value.map { $0 == n } ?? true }
                guard fits else {
                    throw ONNXError("\(source): input '\(info.name)': \(describe(v.shape, like: shape)) given, \(info.shapeDescription) expected")
                }
            }
        }
    }
}

/// `[64,784]` written with the declared shape's names where those axes are symbolic (`[N,784]`).
func describe(_ shape: [Int], like declared: [ONNXDim]) -> String {
    let parts = shape.enumerated().map { i, n -> String in
        if i < declared.count, case .named(let s) = declared[i] { return s }
        return String(n)
    }
    return "[" + parts.joined(separator: ",") + "]"
}

/// A binary min-heap of node indices: Kahn's algorithm takes the earliest ready node in
/// O(log n) instead of re-sorting the ready list per insertion (200,000 nodes fed by one value
/// took 106 s that way).
struct MinHeap {
    private var items: [Int]
    init(_ initial: [Int]) { items = initial.sorted() }  // a sorted array is a valid heap
    mutating func push(_ value: Int) {
        items.append(value)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }
    mutating func pop() -> Int? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        guard !items.isEmpty else { return first }
        items[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count && items[left] < items[smallest] { smallest = left }
            if right < items.count && items[right] < items[smallest] { smallest = right }
            guard smallest != parent else { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }
}
