import CKernels
import DistillTensor
import Foundation

/// An activation applied in a convolution's output pass instead of by a node of its own: the
/// Relu, Clip, Sigmoid, x·Sigmoid(x) (SiLU) or HardSwish that follows a Conv in CNN exports.
struct FusedActivation: Equatable, CustomStringConvertible {
    /// A `dk_activation` value (Sources/CKernels/include/dk_conv_depthwise.h).
    let kind: Int32
    /// Clip's limits (unused by the other kinds).
    var lo: Float = -.infinity, hi: Float = .infinity

    static let relu = FusedActivation(kind: Int32(DK_ACTIVATION_RELU.rawValue))
    static let sigmoid = FusedActivation(kind: Int32(DK_ACTIVATION_SIGMOID.rawValue))
    static let silu = FusedActivation(kind: Int32(DK_ACTIVATION_SILU.rawValue))
    static let hardSwish = FusedActivation(kind: Int32(DK_ACTIVATION_HARDSWISH.rawValue))
    static func clip(_ lo: Float, _ hi: Float) -> FusedActivation { FusedActivation(kind: Int32(DK_ACTIVATION_CLIP.rawValue), lo: lo, hi: hi) }

    var description: String {
        switch kind {
        case Int32(DK_ACTIVATION_RELU.rawValue): return "Relu"
        case Int32(DK_ACTIVATION_CLIP.rawValue): return "Clip"
        case Int32(DK_ACTIVATION_SIGMOID.rawValue): return "Sigmoid"
        case Int32(DK_ACTIVATION_SILU.rawValue): return "SiLU"
        case Int32(DK_ACTIVATION_HARDSWISH.rawValue): return "HardSwish"
        default: return "none"
        }
    }

    /// Applies the activation to `count` floats in place, split across the worker threads.
    func apply(_ data: UnsafeMutablePointer<Float>, count: Int) {
        let shared = SharedPointer(data), kind = kind, lo = lo, hi = hi
        Parallel.forChunks(count, costPerItem: 4) { range in
            dk_activation_inplace(shared.p + range.lowerBound, range.count, kind, lo, hi)
        }
    }
}

/// One node of the optimised graph, with the activation fused into its output pass (a Conv's).
struct PlannedStep {
    let node: Node
    var activation: FusedActivation?
    /// A Mul folded into this Conv, whose input is the product of inputs 0 and 3 (a feature map
    /// and a per-image, per-channel gate: squeeze-excitation). The Mul node runs as written when
    /// the shapes turn out otherwise.
    var gate: Node? = nil
    /// An Add folded into this Conv (a residual connection): input 4 is the Add's other operand,
    /// added in the Conv's output pass before `activation`. The Add runs as written when the
    /// shapes turn out otherwise (broadcasting).
    var residual: Node? = nil
    /// The layers of an inverted residual block this step runs as one (`node` is then the
    /// block's, see `InvertedResidualBlock`).
    var block: InvertedResidualBlock? = nil
    /// "Conv+Relu", "Conv+Add+Relu" and the like: the profile's key.
    var label: String {
        if let block { return "[" + block.layers.map(\.label).joined(separator: " → ") + "]" }
        let grouped = node.opType == "Conv" && ((try? node.attributes.int("group", 1)) ?? 1) != 1
        let op = (gate == nil ? "" : "Mul+") + (grouped ? "Conv[grouped]" : node.opType) + (residual == nil ? "" : "+Add")
        return activation.map { "\(op)+\($0)" } ?? op
    }
    /// Whether the step runs a Conv with something folded into it.
    var isFused: Bool { activation != nil || gate != nil || residual != nil }
    /// Whether input `i` of the step's node is an image (batch-major) rather than a constant, for
    /// a step that is not an operator as written: a fused Conv's gate (3) and residual (4), a
    /// block's input (0) and residual.
    func readsImage(at i: Int) -> Bool {
        if block != nil { return i == 0 || i == InvertedResidualBlock.residualInput }
        return i == 0 || (i >= 3 && isFused)
    }
}

/// The graph as it runs: nodes after the load-time optimisations, the values computed at load
/// (constant folding), and for each value the last step that reads it.
struct ExecutionPlan {
    let steps: [PlannedStep]
    /// Values the graph computes from initializers alone, computed once at load.
    let constants: [String: ONNXValue]
    let lastUse: [String: Int]
    /// Every value the plan computes or holds (to tell whether `run(extra:)` can be served).
    let available: Set<String>

    init(steps: [PlannedStep], constants: [String: ONNXValue], inputs: [String], initializers: [String: ONNXValue]) {
        self.steps = steps; self.constants = constants
        var lastUse: [String: Int] = [:]
        var available = Set(inputs).union(initializers.keys).union(constants.keys)
        for (i, s) in steps.enumerated() {
            for name in s.node.inputs where !name.isEmpty { lastUse[name] = i }
            for name in s.node.outputs where !name.isEmpty { available.insert(name) }
        }
        self.lastUse = lastUse; self.available = available
    }
}

/// The optimisations every inference runtime makes, run once when a model is loaded. Each keeps
/// the graph's results (within float rounding) and only rewrites what it can prove safe:
/// - constant folding: nodes whose inputs are all initializers (or folded values) run at load,
///   with tight size limits, and their outputs become constants (a node that fails or grows
///   too large stays in the graph, so its error still comes at run time as before);
/// - Identity and inference-mode Dropout nodes removed, their readers reading the source;
/// - BatchNormalization after a Conv folded into the Conv's weight and bias;
/// - the Relu, Clip (constant limits), Sigmoid, x·Sigmoid(x) or HardSwish after a Conv fused
///   into the Conv's output pass (no extra pass over memory, no extra tensor);
/// - a Mul read only by a 1×1 Conv folded into it: when one factor holds one value per image and
///   channel (squeeze-excitation's gate), it scales the Conv's weight per image instead of the
///   feature map.
/// - an Add after a Conv (with no activation of its own) whose other operand is computed before
///   the Conv folded into its output pass (ResNet's, MobileNet's and EfficientNet's residual
///   connections), and the Relu or other activation after that Add with it: y = act(conv + r).
/// Values a rewrite removes (a Conv's output before its activation) cannot be asked for with
/// `run(extra:)`; the model then runs its graph as written.
enum GraphOptimizer {
    /// Most elements of one value computed by constant folding at load.
    static let maxFoldedElements = 1 << 20

    static func plan(nodes: [Node], inputs: [String], initializers: [String: ONNXValue], outputs: [String]) -> ExecutionPlan {
        let keep = Set(outputs)
        var constants: [String: ONNXValue] = [:]
        func constant(_ name: String) -> ONNXValue? { constants[name] ?? initializers[name] }

        // Constant folding and Identity/Dropout removal, in one walk in execution order.
        // A control-flow node keeps its inputs' names: its sub-graphs, prepared at load in the
        // node's cache, would be lost with a rebuilt node.
        let readByControlFlow = Set(nodes.filter { $0.attributes.hasSubgraph }.flatMap(\.inputs))
        var rename: [String: String] = [:]
        var steps: [Node] = []
        for original in nodes {
            let node = renamingInputs(original, rename)
            if let source = passThroughSource(node), let output = node.outputs.first, !output.isEmpty, !keep.contains(output),
               !readByControlFlow.contains(output) {
                rename[output] = source
                continue
            }
            if let folded = fold(node, constant) {
                for (name, value) in zip(node.outputs, folded) where !name.isEmpty { constants[name] = value }
                continue
            }
            steps.append(node)
        }

        // Readers of each value (graph outputs count as a reader).
        var readers: [String: [Int]] = [:]
        for (i, n) in steps.enumerated() { for name in n.inputs where !name.isEmpty { readers[name, default: []].append(i) } }
        func soleReader(_ value: String) -> Int? {
            guard !keep.contains(value), let r = readers[value], r.count == 1 else { return nil }
            return r[0]
        }

        var planned = steps.map { PlannedStep(node: $0, activation: nil) }
        var removed = Set<Int>()
        for i in planned.indices where planned[i].node.opType == "Conv" && planned[i].node.domain.isEmpty {
            var conv = planned[i].node
            guard conv.outputs.count == 1, var output = conv.outputs.first, !output.isEmpty else { continue }
            // Conv + BatchNormalization → Conv with scaled weights and a shifted bias.
            if let j = soleReader(output), !removed.contains(j),
               let (folded, newConstants) = foldBatchNorm(conv: conv, batchNorm: planned[j].node, output: output, constant) {
                constants.merge(newConstants) { $1 }
                conv = folded
                planned[i] = PlannedStep(node: conv, activation: nil)
                removed.insert(j)
                output = conv.outputs[0]
            }
            // Conv + activation.
            if let (activation, result, absorbed) = fusableActivation(after: output, steps: steps, readers: readers,
                                                                       keep: keep, constant), absorbed.allSatisfy({ !removed.contains($0) }) {
                planned[i] = PlannedStep(node: withOutputs(conv, [result]), activation: activation)
                removed.formUnion(absorbed)
            }
        }
        // Mul(x, gate) read only by a 1×1 Conv: the gate scales the Conv's weight per image instead.
        for i in planned.indices where !removed.contains(i) {
            let mul = planned[i].node
            guard mul.opType == "Mul", mul.domain.isEmpty, mul.opset >= 7, mul.inputs.count == 2, mul.outputs.count == 1,
                  mul.inputs.allSatisfy({ !$0.isEmpty }), let j = soleReader(mul.outputs[0]), !removed.contains(j) else { continue }
            let conv = planned[j].node
            guard conv.opType == "Conv", conv.domain.isEmpty, planned[j].gate == nil, conv.inputs.count >= 2, conv.inputs.count <= 3,
                  conv.inputs[0] == mul.outputs[0], !conv.inputs.dropFirst().contains(mul.outputs[0]),
                  case .float(let w)? = constant(conv.inputs[1]), w.rank == 4, w.shape[2] == 1, w.shape[3] == 1,
                  (try? conv.attributes.int("group", 1)) == 1 else { continue }
            let inputs = [mul.inputs[0], conv.inputs[1], conv.inputs.count == 3 ? conv.inputs[2] : "", mul.inputs[1]]
            let gated = Node(index: conv.index, name: conv.name, opType: conv.opType, domain: conv.domain, inputs: inputs,
                             outputs: conv.outputs, attributes: conv.attributes, opset: conv.opset)
            planned[j] = PlannedStep(node: gated, activation: planned[j].activation, gate: mul)
            removed.insert(i)
        }
        // Conv + Add(conv, r) [+ activation], r computed before the Conv: r added in the Conv's output pass.
        var producerStep: [String: Int] = [:]
        for (i, n) in steps.enumerated() { for name in n.outputs where !name.isEmpty { producerStep[name] = i } }
        for i in planned.indices where !removed.contains(i) && planned[i].node.opType == "Conv" && planned[i].activation == nil {
            let conv = planned[i].node
            guard conv.domain.isEmpty, conv.outputs.count == 1, conv.inputs.count <= 4, let j = soleReader(conv.outputs[0]),
                  !removed.contains(j) else { continue }
            let add = planned[j].node
            guard add.opType == "Add", add.domain.isEmpty, add.opset >= 7, add.inputs.count == 2, add.outputs.count == 1,
                  !add.outputs[0].isEmpty, add.inputs.allSatisfy({ !$0.isEmpty }), add.inputs[0] != add.inputs[1],
                  let other = add.inputs.first(where: { $0 != conv.outputs[0] }),
                  producerStep[other].map({ $0 < i }) ?? true else { continue }
            var inputs = conv.inputs
            while inputs.count < 4 { inputs.append("") }
            inputs.append(other)
            var step = PlannedStep(node: Node(index: conv.index, name: conv.name, opType: conv.opType, domain: conv.domain,
                                              inputs: inputs, outputs: add.outputs, attributes: conv.attributes, opset: conv.opset),
                                   activation: nil, gate: planned[i].gate, residual: add)
            removed.insert(j)
            if let (activation, result, absorbed) = fusableActivation(after: add.outputs[0], steps: steps, readers: readers,
                                                                       keep: keep, constant), absorbed.allSatisfy({ !removed.contains($0) }) {
                step = PlannedStep(node: withOutputs(step.node, [result]), activation: activation, gate: step.gate, residual: add)
                removed.formUnion(absorbed)
            }
            planned[i] = step
        }
        fuseInvertedResiduals(&planned, removed: &removed, soleReader: soleReader, constant)
        let kept = planned.indices.filter { !removed.contains($0) }.map { planned[$0] }
        return ExecutionPlan(steps: kept, constants: constants, inputs: inputs, initializers: initializers)
    }

    /// [1×1 Conv →] depthwise Conv [→ 1×1 Conv], each reading only the one before, at least two of
    /// them (MobileNet v2's inverted residual block, and EfficientNet's expansion and depthwise
    /// layers, whose output squeeze-excitation reads), with what the passes above folded into
    /// each (activations, the projection's residual Add): one step, run band by band
    /// (`ONNXOps.invertedResidual`). The shapes that decide whether the fused kernel applies are
    /// known only at run time; the step runs the layers one by one otherwise.
    static func fuseInvertedResiduals(_ planned: inout [PlannedStep], removed: inout Set<Int>, soleReader: (String) -> Int?,
                                      _ constant: (String) -> ONNXValue?) {
        var producer: [String: Int] = [:]
        for i in planned.indices where !removed.contains(i) { for name in planned[i].node.outputs where !name.isEmpty { producer[name] = i } }
        /// The step's constant 4-D weight when it is a plain or fused Conv with no gate, reading one image input.
        func convWeight(_ i: Int) -> Tensor? {
            let step = planned[i], node = step.node
            guard !removed.contains(i), step.block == nil, step.gate == nil, node.opType == "Conv", node.domain.isEmpty,
                  node.outputs.count == 1, !node.outputs[0].isEmpty, node.inputs.count >= 2, !node.inputs[0].isEmpty,
                  node.inputs.count <= 3 || (node.inputs.count == 5 && node.inputs[3].isEmpty && step.residual != nil),
                  case .float(let w)? = constant(node.inputs[1]), w.rank == 4,
                  node.inputs.count < 3 || node.inputs[2].isEmpty || constant(node.inputs[2]) != nil else { return nil }
            return w
        }
        func isOneByOne(_ w: Tensor) -> Bool { w.shape[2] == 1 && w.shape[3] == 1 }
        func bias(_ node: Node) -> String { node.inputs.count >= 3 ? node.inputs[2] : "" }
        for d in planned.indices {
            guard let wd = convWeight(d), planned[d].residual == nil, wd.shape[1] == 1,
                  (try? planned[d].node.attributes.int("group", 1)) == wd.shape[0] else { continue }
            let depthwise = planned[d], output = depthwise.node.outputs[0], input = depthwise.node.inputs[0]
            var project: Int?, expand: Int?
            if let p = soleReader(output), let wp = convWeight(p), isOneByOne(wp), planned[p].node.inputs[0] == output { project = p }
            if let x = producer[input], let we = convWeight(x), planned[x].residual == nil, isOneByOne(we), soleReader(input) == d { expand = x }
            guard project != nil || expand != nil else { continue }
            let expandNode = expand.map { planned[$0].node }, projectNode = project.map { planned[$0].node }
            let residual = project.flatMap { planned[$0].residual == nil ? nil : projectNode!.inputs[4] } ?? ""
            let inputs = [expandNode?.inputs[0] ?? input, expandNode?.inputs[1] ?? "", expandNode.map(bias) ?? "",
                          depthwise.node.inputs[1], bias(depthwise.node), projectNode?.inputs[1] ?? "", projectNode.map(bias) ?? "", residual]
            let node = Node(index: depthwise.node.index, name: depthwise.node.name, opType: InvertedResidualBlock.opType, domain: "",
                            inputs: inputs, outputs: projectNode?.outputs ?? depthwise.node.outputs, attributes: depthwise.node.attributes,
                            opset: depthwise.node.opset)
            let block = InvertedResidualBlock(expand: expand.map { planned[$0] }, depthwise: depthwise, project: project.map { planned[$0] })
            // The step runs where the last layer did (a residual is computed before it).
            let last = project ?? d
            planned[last] = PlannedStep(node: node, activation: nil, block: block)
            removed.formUnion([expand, project == nil ? nil : d].compactMap { $0 })
        }
    }

    // MARK: Rewrites

    /// `node` with its inputs renamed through `rename` (the sources of removed Identity nodes).
    static func renamingInputs(_ node: Node, _ rename: [String: String]) -> Node {
        guard !node.attributes.hasSubgraph, node.inputs.contains(where: { rename[$0] != nil }) else { return node }
        return Node(index: node.index, name: node.name, opType: node.opType, domain: node.domain,
                    inputs: node.inputs.map { rename[$0] ?? $0 }, outputs: node.outputs,
                    attributes: node.attributes, opset: node.opset)
    }

    static func withOutputs(_ node: Node, _ outputs: [String]) -> Node {
        Node(index: node.index, name: node.name, opType: node.opType, domain: node.domain, inputs: node.inputs,
             outputs: outputs, attributes: node.attributes, opset: node.opset)
    }

    /// The value an Identity, or a Dropout at inference (no training_mode input, no mask used),
    /// passes through unchanged.
    static func passThroughSource(_ node: Node) -> String? {
        guard node.domain.isEmpty, node.outputs.count >= 1, let source = node.inputs.first, !source.isEmpty else { return nil }
        switch node.opType {
        case "Identity":
            return node.inputs.count == 1 && node.outputs.count == 1 ? source : nil
        case "Dropout":
            let noTraining = node.inputs.count < 3 || node.inputs[2].isEmpty
            let noMask = node.outputs.dropFirst().allSatisfy(\.isEmpty)
            return noTraining && noMask ? source : nil
        default:
            return nil
        }
    }

    /// The outputs of `node` when every input is a constant and running it at load succeeds
    /// within small limits; nil otherwise (the node then runs with the graph).
    static func fold(_ node: Node, _ constant: (String) -> ONNXValue?) -> [ONNXValue]? {
        guard !node.attributes.hasSubgraph, node.domain.isEmpty || node.domain == "ai.onnx.ml",
              node.outputs.allSatisfy({ !$0.isEmpty }), let kernel = ONNXOps.kernel(for: node) else { return nil }
        var values: [ONNXValue?] = []
        for name in node.inputs {
            if name.isEmpty { values.append(nil); continue }
            guard let v = constant(name) else { return nil }
            values.append(v)
        }
        guard let results = try? ONNXModel.withLimits(maxElements: maxFoldedElements, maxSteps: maxFoldedElements * 16, {
            try withNoGrad { try kernel(OpContext(node: node, inputs: values)) }
        }) else { return nil }
        guard results.count >= node.outputs.count, results.allSatisfy({ $0.count <= maxFoldedElements }) else { return nil }
        return Array(results.prefix(node.outputs.count))
    }

    /// A Conv with constant weight (and bias) followed by an inference BatchNormalization with
    /// constant per-channel parameters: the Conv with W·s and (B − mean)·s + β, s = γ/√(var + ε),
    /// writing the BatchNormalization's output; with the new weight and bias, by name.
    static func foldBatchNorm(conv: Node, batchNorm bn: Node, output: String,
                              _ constant: (String) -> ONNXValue?) -> (Node, [String: ONNXValue])? {
        guard bn.opType == "BatchNormalization", bn.domain.isEmpty, bn.inputs.count == 5, bn.inputs[0] == output,
              bn.outputs.count >= 1, !bn.outputs[0].isEmpty, bn.outputs.dropFirst().allSatisfy(\.isEmpty),
              (try? bn.attributes.int("training_mode", 0)) == 0,
              bn.opset >= 9 || (try? bn.attributes.int("spatial", 1)) == 1,
              conv.inputs.count >= 2, case .float(let w)? = constant(conv.inputs[1]), w.rank >= 3 else { return nil }
        let m = w.shape[0]
        var params: [Tensor] = []
        for name in bn.inputs[1...] {
            guard case .float(let t)? = constant(name), t.shape == [m] else { return nil }
            params.append(t)
        }
        var bias: Tensor?
        if conv.inputs.count >= 3, !conv.inputs[2].isEmpty {
            guard case .float(let b)? = constant(conv.inputs[2]), b.shape == [m] else { return nil }
            bias = b
        }
        guard let eps = try? bn.attributes.float("epsilon", 1e-5) else { return nil }
        let (gamma, beta, mean, variance) = (params[0], params[1], params[2], params[3])
        let perChannel = w.count / Swift.max(m, 1)
        let newWeight = Tensor(uninitializedShape: w.shape), newBias = Tensor(uninitializedShape: [m])
        for o in 0..<m {
            let s = gamma.data[o] / (variance.data[o] + eps).squareRoot()
            for j in 0..<perChannel { newWeight.data[o * perChannel + j] = w.data[o * perChannel + j] * s }
            newBias.data[o] = ((bias?.data[o] ?? 0) - mean.data[o]) * s + beta.data[o]
        }
        let result = bn.outputs[0]
        let weightName = "\(result)::folded_weight", biasName = "\(result)::folded_bias"
        let node = Node(index: conv.index, name: conv.name, opType: conv.opType, domain: conv.domain,
                        inputs: [conv.inputs[0], weightName, biasName], outputs: [result], attributes: conv.attributes, opset: conv.opset)
        return (node, [weightName: .float(newWeight), biasName: .float(newBias)])
    }

    /// The activation reading `value` that can run in its producer's output pass: (activation,
    /// the value it computes, the steps it replaces). Covers Relu, Clip with constant limits,
    /// HardSwish, Sigmoid, and x·Sigmoid(x) (a Sigmoid and a Mul both reading `value`).
    static func fusableActivation(after value: String, steps: [Node], readers: [String: [Int]], keep: Set<String>,
                                  _ constant: (String) -> ONNXValue?) -> (FusedActivation, String, [Int])? {
        guard !keep.contains(value), let users = readers[value] else { return nil }
        func single(_ j: Int) -> String? {
            let n = steps[j]
            guard n.domain.isEmpty, n.outputs.count == 1, !n.outputs[0].isEmpty else { return nil }
            return n.outputs[0]
        }
        if users.count == 1, let out = single(users[0]) {
            let n = steps[users[0]]
            guard n.inputs.first == value else { return nil }
            switch n.opType {
            case "Relu" where n.inputs.count == 1: return (.relu, out, [users[0]])
            case "Sigmoid" where n.inputs.count == 1: return (.sigmoid, out, [users[0]])
            case "HardSwish" where n.inputs.count == 1: return (.hardSwish, out, [users[0]])
            case "Clip":
                guard let (lo, hi) = clipLimits(n, constant) else { return nil }
                return (.clip(lo, hi), out, [users[0]])
            default: return nil
            }
        }
        // x · Sigmoid(x): exactly two readers, a Sigmoid whose only reader is the Mul.
        guard users.count == 2 else { return nil }
        let (a, b) = (steps[users[0]], steps[users[1]])
        let (sig, mul, sigIndex, mulIndex) = a.opType == "Sigmoid" ? (a, b, users[0], users[1]) : (b, a, users[1], users[0])
        guard sig.opType == "Sigmoid", mul.opType == "Mul", single(sigIndex) != nil, let out = single(mulIndex),
              sig.inputs == [value], mul.inputs.count == 2, !keep.contains(sig.outputs[0]),
              readers[sig.outputs[0]]?.count == 1,
              Set(mul.inputs) == [value, sig.outputs[0]], mul.opset >= 7 else { return nil }
        return (.silu, out, [sigIndex, mulIndex])
    }

    /// Clip's limits when they are constant inputs (opset 11 on).
    static func clipLimits(_ n: Node, _ constant: (String) -> ONNXValue?) -> (Float, Float)? {
        guard n.opset >= 11 else { return nil }  // attribute limits, and no NaN rule: left as written
        /// The limit in input `i` (`fallback` when left out), or nil when it is not a constant.
        func limit(_ i: Int, _ fallback: Float) -> Float? {
            guard i < n.inputs.count, !n.inputs[i].isEmpty else { return fallback }
            guard case .float(let t)? = constant(n.inputs[i]), t.count == 1 else { return nil }
            return t.data[0]
        }
        guard n.inputs.count <= 3, let lo = limit(1, -.infinity), let hi = limit(2, .infinity) else { return nil }
        return (lo, hi)
    }
}
