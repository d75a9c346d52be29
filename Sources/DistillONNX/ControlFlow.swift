import DistillTensor
import Foundation

// Sub-graphs: the graph-valued attributes of If (`then_branch`, `else_branch`), Loop and Scan
// (`body`). Each is checked and ordered once at load, like the main graph, and cached in its
// node. A sub-graph may read values of the enclosing graphs by name; those names become extra
// (implicit) inputs of the control-flow node, after its declared ones, so the enclosing graph's
// checks (every value defined, no cycle) and ordering cover them, and the kernel receives their
// values like any other input.

/// A graph attribute, checked and ordered, ready to run with the enclosing values visible.
final class Subgraph: @unchecked Sendable {
    /// The attribute holding it ("body", "then_branch"), for messages.
    let attribute: String
    /// Its formal inputs, fed positionally (Loop: iteration number, condition, carried values).
    let inputs: [ONNXValueInfo]
    let outputs: [ONNXValueInfo]
    let initializers: [String: ONNXValue]
    /// Nodes in an order where every input is computed before it is read.
    let nodes: [Node]
    /// For each value, the index of the last node that reads it.
    let lastUse: [String: Int]
    /// Values it reads from enclosing graphs, sorted.
    let outerNames: [String]

    init(_ graph: Onnx_GraphProto, attribute: String, opsets: [String: Int], directory: URL?, depth: Int) throws {
        self.attribute = attribute
        guard depth <= ControlFlow.maxDepth else {
            throw ONNXError("sub-graphs are nested more than \(ControlFlow.maxDepth) deep")
        }
        guard graph.sparseInitializer.isEmpty else { throw ONNXError("sparse initializers are not supported") }
        var initializers: [String: ONNXValue] = [:]
        for t in graph.initializer {
            guard !t.name.isEmpty, initializers[t.name] == nil else { throw ONNXError("an initializer is unnamed or defined twice") }
            initializers[t.name] = try ONNXValue.decode(t, directory: directory)
        }
        self.initializers = initializers
        inputs = graph.input.map(ONNXValueInfo.init)
        outputs = graph.output.map(ONNXValueInfo.init)
        for (role, infos) in [("input", inputs), ("output", outputs)] {
            for info in infos {
                if let kind = info.nonTensorKind {
                    throw ONNXError("\(role) \(quoted(info.name)) is a \(kind); DistillKit runs sub-graphs of tensors only (sequences and optionals are not supported)")
                }
                guard !info.name.isEmpty else { throw ONNXError("a sub-graph \(role) has no name") }
            }
        }

        var nodes: [Node] = []
        for (index, p) in graph.node.enumerated() {
            let domain = p.domain == "ai.onnx" ? "" : p.domain
            let plain = Node(index: index, name: p.name, opType: p.opType, domain: domain, inputs: p.input, outputs: p.output,
                             attributes: Attributes(p.attribute, directory: directory),
                             opset: opsets[domain] ?? (domain.isEmpty ? ONNXModel.supportedOpsets.upperBound : 0))
            if opsets[domain] == nil && !domain.isEmpty {
                throw ONNXError("\(plain.label): domain \(quoted(domain)) is not imported by the model")
            }
            let node = try ControlFlow.attachingSubgraphs(to: plain, opsets: opsets, directory: directory, depth: depth + 1)
            if let reason = ONNXOps.unsupportedReason(node) { throw ONNXError("\(node.label): \(reason)") }
            do { try node.attributes.checkTensors() } catch let e as ONNXError { throw e.prefixed(node.label) }
            nodes.append(node)
        }

        // Names read but defined nowhere inside come from the enclosing graphs.
        var defined = Set(inputs.map(\.name)).union(initializers.keys)
        for n in nodes { defined.formUnion(n.outputs.filter { !$0.isEmpty }) }
        let read = nodes.flatMap(\.inputs) + outputs.map(\.name)
        outerNames = Set(read.filter { !$0.isEmpty && !defined.contains($0) }).sorted()

        let available = Set(inputs.map(\.name)).union(initializers.keys).union(outerNames)
        self.nodes = try ONNXModel.ordered(nodes, available: available, fail: { ONNXError($0) })
        var lastUse: [String: Int] = [:]
        for (i, n) in self.nodes.enumerated() { for name in n.inputs where !name.isEmpty { lastUse[name] = i } }
        self.lastUse = lastUse
    }

    /// Runs the sub-graph on `feeds` (its inputs, in order), reading `outer` (the enclosing
    /// graphs' values by name) for what it does not define; returns its outputs in order. Each
    /// node run is charged to the control-flow step budget.
    func run(_ feeds: [ONNXValue], outer: [String: ONNXValue]) throws -> [ONNXValue] {
        guard feeds.count == inputs.count else {
            throw ONNXError("\(attribute) takes \(inputs.count) input\(inputs.count == 1 ? "" : "s"), \(feeds.count) given")
        }
        var env: [String: ONNXValue] = [:]
        for (info, value) in zip(inputs, feeds) { env[info.name] = value }
        let kept = Set(outputs.map(\.name))
        func value(_ name: String) -> ONNXValue? { env[name] ?? initializers[name] ?? outer[name] }
        for (step, node) in nodes.enumerated() {
            try ControlFlow.spend(1)
            let values: [ONNXValue?] = try node.inputs.map { name in
                if name.isEmpty { return nil }
                guard let v = value(name) else { throw ONNXError("\(attribute): \(node.label): input \(quoted(name)) has no value") }
                return v
            }
            guard let kernel = ONNXOps.kernel(for: node) else { throw ONNXError("\(attribute): \(node.label): no implementation") }
            do {
                let results = try kernel(OpContext(node: node, inputs: values))
                for r in results { try checkedElementCount(r.shape, "output", elementBytes: 1) }
                for (i, name) in node.outputs.enumerated() where !name.isEmpty && i < results.count { env[name] = results[i] }
            } catch let e as ONNXError {
                throw ONNXError("\(attribute): node \(node.name.isEmpty ? "#\(node.index)" : quoted(node.name)) (\(shortened(node.opType)), opset \(node.opset)): \(e.message)")
            }
            for name in node.inputs where !name.isEmpty && lastUse[name] == step && !kept.contains(name) { env[name] = nil }
        }
        return try outputs.map { info in
            guard let v = value(info.name) else { throw ONNXError("\(attribute): output \(quoted(info.name)) was not computed") }
            return v
        }
    }

    /// An empty (zero-iteration) stack of output `k`: shape [0] followed by the declared extents
    /// when all are known, of the declared type (FLOAT when undeclared).
    func emptyStack(ofOutput k: Int) -> ONNXValue {
        let info = outputs[k]
        let dims = info.shape?.compactMap(\.value)
        let shape = [0] + (dims != nil && dims!.count == info.shape!.count ? dims! : [])
        switch info.type ?? .float {
        case .float: return .float(Tensor(uninitializedShape: shape))
        case .string: return .string(StringTensor(shape: shape, values: []))
        case let type: return .int(IntTensor(shape: shape, values: [], type: type))
        }
    }
}

/// The sub-graphs of one control-flow node, cached in the node (`Node.prepared`).
final class ControlFlowGraphs: @unchecked Sendable {
    let byAttribute: [String: Subgraph]
    /// How many inputs the node declares; the implicit outer-scope inputs follow them.
    let declaredInputCount: Int
    /// The outer-scope names, in the order their values follow the declared inputs.
    let outerNames: [String]

    init(byAttribute: [String: Subgraph], declaredInputCount: Int, outerNames: [String]) {
        self.byAttribute = byAttribute; self.declaredInputCount = declaredInputCount; self.outerNames = outerNames
    }

    func graph(_ attribute: String) throws -> Subgraph {
        guard let g = byAttribute[attribute] else { throw ONNXError("attribute \(quoted(attribute)) is required") }
        return g
    }
    /// The node's declared inputs (nil where left out).
    func declaredInputs(_ c: OpContext) -> [ONNXValue?] { Array(c.inputs.prefix(declaredInputCount)) }
    /// The enclosing graphs' values the sub-graphs read, by name.
    func outerValues(_ c: OpContext) -> [String: ONNXValue] {
        var values: [String: ONNXValue] = [:]
        for (name, v) in zip(outerNames, c.inputs.dropFirst(declaredInputCount)) { values[name] = v }
        return values
    }
}

/// The limits and step budget of sub-graphs, and the loader's hook.
enum ControlFlow {
    /// Most levels of sub-graphs inside sub-graphs. Real models nest two or three.
    static let maxDepth = 32
    /// Most steps (sub-graph node runs and loop iterations) of one top-level control-flow node,
    /// at most: a Loop whose trip count is 2^62 and whose condition stays true ends with an error
    /// after this much work instead of running for ever. An iteration of a small body costs some
    /// 5 to 45 µs (release, debug), so 2^20 steps end within seconds; 2^24 took minutes.
    static let maxSteps = 1 << 20
    /// The graph attributes of each control-flow operator (ai.onnx).
    static let graphAttributes: [String: [String]] = ["If": ["then_branch", "else_branch"], "Loop": ["body"], "Scan": ["body"]]

    /// Steps left to the outermost control-flow node now running (nil outside one).
    final class Budget: @unchecked Sendable {
        var remaining: Int
        init(_ remaining: Int) { self.remaining = remaining }
    }
    @TaskLocal static var budget: Budget?

    /// Runs a control-flow kernel: the outermost one gets a fresh budget of
    /// min(`maxSteps`, `Limits.maxLoopSteps`) steps (so `ONNXModel.withLimits` lowers it), nested
    /// ones share it.
    static func metered<T>(_ body: () throws -> T) throws -> T {
        if budget != nil { return try body() }
        return try $budget.withValue(Budget(Swift.min(maxSteps, Limits.maxLoopSteps)), operation: body)
    }

    /// Charges `steps` to the budget, or throws when it is spent.
    static func spend(_ steps: Int) throws {
        guard let budget else { return }
        budget.remaining -= steps
        if budget.remaining < 0 {
            let limit = Swift.min(maxSteps, Limits.maxLoopSteps)
            throw ONNXError("the control flow ran more than \(limit) steps (sub-graph nodes and iterations); its trip count or condition is corrupt or hostile")
        }
    }

    /// Checks the whole tree of sub-graphs in `graph` before any is built: nesting at most
    /// `maxDepth` deep, and at most `Limits.maxNodes` nodes in all graphs together.
    static func checkSubgraphSizes(_ graph: Onnx_GraphProto) throws {
        var pending: [(Onnx_GraphProto, Int)] = [(graph, 0)]
        var total = 0
        while let (g, depth) = pending.popLast() {
            total += g.node.count
            guard total <= Limits.maxNodes else {
                throw ONNXError("the graph and its sub-graphs have more than \(Limits.maxNodes) nodes, the most DistillKit runs")
            }
            for n in g.node {
                for a in n.attribute {
                    let subgraphs = (a.hasG ? [a.g] : []) + a.graphs
                    guard subgraphs.isEmpty || depth < maxDepth else {
                        throw ONNXError("sub-graphs are nested more than \(maxDepth) deep (node \(n.name.isEmpty ? n.opType : quoted(n.name)))")
                    }
                    for s in subgraphs { pending.append((s, depth + 1)) }
                }
            }
        }
    }

    /// `node` itself, or for If, Loop and Scan a copy whose sub-graphs are built and cached and
    /// whose inputs end with the outer-scope values they read. `depth` is the nesting level of
    /// the graph holding `node` (0: the main graph).
    static func attachingSubgraphs(to node: Node, opsets: [String: Int], directory: URL?, depth: Int = 0) throws -> Node {
        guard node.domain.isEmpty, let attributes = graphAttributes[node.opType] else { return node }
        var built: [String: Subgraph] = [:]
        for name in attributes {
            guard let proto = try node.attributes.graph(name) else { continue }
            do {
                built[name] = try Subgraph(proto, attribute: name, opsets: opsets, directory: directory, depth: depth + 1)
            } catch let e as ONNXError { throw e.prefixed("\(node.label): \(name)") }
        }
        let outerNames = Set(built.values.flatMap(\.outerNames)).sorted()
        let attached = Node(index: node.index, name: node.name, opType: node.opType, domain: node.domain,
                            inputs: node.inputs + outerNames, outputs: node.outputs, attributes: node.attributes, opset: node.opset)
        let graphs = ControlFlowGraphs(byAttribute: built, declaredInputCount: node.inputs.count, outerNames: outerNames)
        _ = attached.prepared.value("controlflow") { graphs }
        return attached
    }
}

extension Attributes {
    /// A graph attribute (a sub-graph), or nil when absent.
    func graph(_ name: String) throws -> Onnx_GraphProto? {
        guard let a = byName[name] else { return nil }
        guard a.type == .graph || (a.type == .undefined && a.hasG) else {
            throw ONNXError("attribute '\(name)' must be a graph, found \(a.type)")
        }
        return a.g
    }
}

extension OpContext {
    /// The sub-graphs built at load for this node.
    var controlFlow: ControlFlowGraphs {
        get throws {
            try node.prepared.value("controlflow") { () throws -> ControlFlowGraphs in
                throw ONNXError("the node's sub-graphs were not built at load")
            }
        }
    }
}
