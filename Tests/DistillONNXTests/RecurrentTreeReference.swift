@testable import DistillONNX
import DistillTensor
import Foundation

// The recurrent cells and tree ensembles as DistillONNX computed them before their fused loops
// (Sources/DistillONNX/Ops/Recurrent.swift) and compact tree arrays (Sources/DistillONNX/Ops/ML.swift):
// direct per-element loops, kept here as the reference the fast paths are compared against.

/// An activation function of the recurrent operators, by its ONNX name.
func referenceRecurrentActivation(_ name: String, alpha: Float?, beta: Float?) throws -> (Float) -> Float {
    switch name.lowercased() {
    case "sigmoid": return { 1 / (1 + Foundation.exp(-$0)) }
    case "tanh": return { Foundation.tanh($0) }
    case "relu": return { Swift.max($0, 0) }
    case "affine": let a = alpha ?? 1, b = beta ?? 0; return { a * $0 + b }
    case "leakyrelu": let a = alpha ?? 0.01; return { $0 >= 0 ? $0 : a * $0 }
    case "thresholdedrelu": let a = alpha ?? 1; return { $0 > a ? $0 : 0 }
    case "scaledtanh": let a = alpha ?? 1, b = beta ?? 1; return { a * Foundation.tanh(b * $0) }
    case "hardsigmoid": let a = alpha ?? 0.2, b = beta ?? 0.5; return { Swift.max(0, Swift.min(1, a * $0 + b)) }
    case "elu": let a = alpha ?? 1; return { $0 >= 0 ? $0 : a * (Foundation.exp($0) - 1) }
    case "softsign": return { $0 / (1 + Swift.abs($0)) }
    case "softplus": return { Foundation.log1p(Foundation.exp($0)) }
    default: throw ONNXError("activation '\(name)' is not supported")
    }
}

/// The former operators, run on the same `OpContext` as the fast ones.
enum ReferenceOps {
    /// The shared driver of RNN, GRU and LSTM: gates G per step (1, 3 or 4 blocks of `hidden`).
    static func recurrent(_ c: OpContext, _ cell: ONNXOps.Cell) throws -> [ONNXValue] {
        let a = c.attributes
        let attributes = try ONNXOps.RecurrentAttributes(a, cell)
        let inputs = try RecurrentInputs(c, cell, attributes)
        let (x, w, r, b, lens, initialH, initialC, peepholes) = (inputs.x, inputs.w, inputs.r, inputs.b, inputs.lens, inputs.initialH, inputs.initialC, inputs.peepholes)
        let (steps, batch, inputSize, hidden, gates) = (inputs.steps, inputs.batch, inputs.inputSize, inputs.hidden, inputs.gates)
        let (direction, directions, layout) = (attributes.direction, attributes.directions, attributes.layout)
        let names = try a.strings("activations") ?? []
        let alphas = try a.floats("activation_alpha") ?? [], betas = try a.floats("activation_beta") ?? []
        let perDirection = cell == .rnn ? 1 : (cell == .gru ? 2 : 3)
        let defaults = cell == .rnn ? ["Tanh"] : (cell == .gru ? ["Sigmoid", "Tanh"] : ["Sigmoid", "Tanh", "Tanh"])
        let clip = try a.float("clip")
        let linearBeforeReset = try a.int("linear_before_reset", 0) == 1
        let inputForget = try a.int("input_forget", 0) == 1

        var y = [Float](repeating: 0, count: steps * directions * batch * hidden)
        var yh = [Float](repeating: 0, count: directions * batch * hidden), yc = yh
        for d in 0..<directions {
            var fs: [(Float) -> Float] = []
            for k in 0..<perDirection {
                let i = d * perDirection + k
                fs.append(try referenceRecurrentActivation(i < names.count ? names[i] : defaults[k], alpha: i < alphas.count ? alphas[i] : nil,
                                                  beta: i < betas.count ? betas[i] : nil))
            }
            let reverse = direction == "reverse" || d == 1
            var h = [Float](repeating: 0, count: batch * hidden), cState = h
            if let initialH { for i in 0..<(batch * hidden) { h[i] = initialH.data[d * batch * hidden + i] } }
            if let initialC { for i in 0..<(batch * hidden) { cState[i] = initialC.data[d * batch * hidden + i] } }
            let wd = w.data + d * gates * hidden * inputSize, rd = r.data + d * gates * hidden * hidden
            let wb = b.map { $0.data + d * 2 * gates * hidden }, rb = wb.map { $0 + gates * hidden }
            for step in 0..<steps {
                let t = reverse ? steps - 1 - step : step
                for n in 0..<batch {
                    let length = lens.map { $0[n] } ?? steps
                    if t >= length { continue }  // past this sequence's end: state frozen, output zero
                    let xt = x.data + (t * batch + n) * inputSize
                    let hPrev = Array(h[(n * hidden)..<((n + 1) * hidden)]), cPrev = Array(cState[(n * hidden)..<((n + 1) * hidden)])
                    // xw[g] = Xt·W_gᵀ + Wb_g, hr[g] = Ht−1·R_gᵀ + Rb_g
                    var xw = [Float](repeating: 0, count: gates * hidden), hr = xw
                    for g in 0..<(gates * hidden) {
                        var s: Float = wb?[g] ?? 0
                        for k in 0..<inputSize { s += xt[k] * wd[g * inputSize + k] }
                        xw[g] = s
                        var q: Float = rb?[g] ?? 0
                        for k in 0..<hidden { q += hPrev[k] * rd[g * hidden + k] }
                        hr[g] = q
                    }
                    func clipped(_ v: Float) -> Float { clip.map { Swift.max(-$0, Swift.min($0, v)) } ?? v }
                    let resetGates = cell == .gru ? (0..<hidden).map { fs[0](clipped(xw[hidden + $0] + hr[hidden + $0])) } : []
                    for j in 0..<hidden {
                        let out: Float
                        switch cell {
                        case .rnn:
                            out = fs[0](clipped(xw[j] + hr[j]))
                        case .gru:  // gates z, r, h
                            let z = fs[0](clipped(xw[j] + hr[j]))
                            var candidate: Float
                            if linearBeforeReset {
                                candidate = xw[2 * hidden + j] + resetGates[j] * hr[2 * hidden + j]
                            } else {  // (r ⊙ Ht−1)·R_hᵀ + Rb_h
                                var q: Float = rb?[2 * hidden + j] ?? 0
                                for k in 0..<hidden { q += resetGates[k] * hPrev[k] * rd[(2 * hidden + j) * hidden + k] }
                                candidate = xw[2 * hidden + j] + q
                            }
                            candidate = fs[1](clipped(candidate))
                            out = (1 - z) * candidate + z * hPrev[j]
                        case .lstm:  // gates i, o, f, c; peepholes i, o, f
                            let p = peepholes.map { $0.data + d * 3 * hidden }
                            let iGate = fs[0](clipped(xw[j] + hr[j] + (p.map { $0[j] * cPrev[j] } ?? 0)))
                            var fGate = fs[0](clipped(xw[2 * hidden + j] + hr[2 * hidden + j] + (p.map { $0[2 * hidden + j] * cPrev[j] } ?? 0)))
                            if inputForget { fGate = 1 - iGate }
                            let candidate = fs[1](clipped(xw[3 * hidden + j] + hr[3 * hidden + j]))
                            let cNew = fGate * cPrev[j] + iGate * candidate
                            let oGate = fs[0](clipped(xw[hidden + j] + hr[hidden + j] + (p.map { $0[hidden + j] * cNew } ?? 0)))
                            cState[n * hidden + j] = cNew
                            out = oGate * fs[2](cNew)
                        }
                        h[n * hidden + j] = out
                        y[((t * directions + d) * batch + n) * hidden + j] = out
                    }
                }
            }
            for i in 0..<(batch * hidden) { yh[d * batch * hidden + i] = h[i]; yc[d * batch * hidden + i] = cState[i] }
        }
        var outY = floatValue([steps, directions, batch, hidden], y)
        var outH = floatValue([directions, batch, hidden], yh), outC = floatValue([directions, batch, hidden], yc)
        if layout == 1 {
            outY = try ONNXOps.transposed(outY, [2, 0, 1, 3])
            outH = try ONNXOps.transposed(outH, [1, 0, 2]); outC = try ONNXOps.transposed(outC, [1, 0, 2])
        }
        return cell == .lstm ? [outY, outH, outC] : [outY, outH]
    }

    /// TreeEnsembleClassifier → (labels [N], scores [N, classes]).
    static func TreeEnsembleClassifier(_ c: OpContext) throws -> [ONNXValue] {
        let a = c.attributes
        let (rows, features, x) = try featureRows(try c.input(0))
        // Everything derived from the attributes (tens of thousands of entries for a forest) once per node.
        let (labels, ensemble, classIDs) = try c.node.prepared.value("reference classifier") {
            let labels = try ONNXOps.classLabels(a, ints: "classlabels_int64s", strings: "classlabels_strings")
            // Class ids index the labels (two columns at least: a binary model votes in one).
            return (labels, try ReferenceTreeEnsemble(a, prefix: "class", columns: Swift.max(labels.count, 2)), Set(try a.ints("class_ids") ?? []))
        }
        var width = labels.count
        // One score column for two classes: the binary case.
        let binary = classIDs.count == 1
        if binary && width == 1 { width = 2 }
        let columns = Swift.max(width, (classIDs.max() ?? 0) + 1)
        try checkedShape([rows, columns], elementBytes: 4)
        var scores = try ensemble.scores(x, rows: rows, features: features, columns: columns)
        if columns != width { scores = (0..<rows).flatMap { r in scores[(r * columns)..<(r * columns + width)] } }
        let base = try a.floats("base_values") ?? a.numbers("base_values_as_tensor")?.map { Float($0) } ?? []
        if !base.isEmpty {
            guard base.count == width || (binary && base.count == 1) else { throw ONNXError("base_values has \(base.count) entries for \(width) classes") }
            for r in 0..<rows { for j in 0..<base.count { scores[r * width + (binary && base.count == 1 ? classIDs.first! : j)] += base[j] } }
        }
        let post = try a.string("post_transform", "NONE")
        if binary && width == 2 {
            let column = classIDs.first!
            for r in 0..<rows {
                let s = scores[r * 2 + column]
                scores[r * 2 + 1] = s
                scores[r * 2] = post == "NONE" || post == "PROBIT" ? 1 - s : -s
            }
        }
        try postTransform(&scores, rows: rows, width: width, post)
        return [ONNXOps.labelOutput(scores, rows: rows, width: width, labels: labels), floatValue([rows, width], scores)]
    }

    /// TreeEnsembleRegressor → [N, n_targets].
    static func TreeEnsembleRegressor(_ c: OpContext) throws -> [ONNXValue] {
        let a = c.attributes
        let (rows, features, x) = try featureRows(try c.input(0))
        let targets = try a.int("n_targets", 1, in: 1...Int.max)!
        try checkedShape([rows, targets], elementBytes: 4)
        let ensemble = try c.node.prepared.value("reference ensemble") { try ReferenceTreeEnsemble(a, prefix: "target", columns: targets) }
        let aggregate = try a.string("aggregate_function", "SUM")
        guard ["SUM", "AVERAGE", "MIN", "MAX"].contains(aggregate) else { throw ONNXError("aggregate_function '\(aggregate)' must be SUM, AVERAGE, MIN or MAX") }
        var scores = try ensemble.scores(x, rows: rows, features: features, columns: targets, aggregate: aggregate)
        let base = try a.floats("base_values") ?? a.numbers("base_values_as_tensor")?.map { Float($0) } ?? []
        if !base.isEmpty {
            guard base.count == targets else { throw ONNXError("base_values has \(base.count) entries for \(targets) targets") }
            for r in 0..<rows { for j in 0..<targets { scores[r * targets + j] += base[j] } }
        }
        try postTransform(&scores, rows: rows, width: targets, try a.string("post_transform", "NONE"))
        return [floatValue([rows, targets], scores)]
    }

}

/// A tree ensemble compiled from the `nodes_*` attributes: flat arrays indexed by node.
struct ReferenceTreeEnsemble {
    enum Rule: Equatable { case leq, lt, gte, gt, eq, neq, leaf }
    var roots: [Int] = []
    var feature: [Int] = [], threshold: [Float] = [], rule: [Rule] = [], whenTrue: [Int] = [], whenFalse: [Int] = []
    var missingTrue: [Bool] = []
    /// (output column, weight) votes of each leaf.
    var votes: [[(Int, Float)]] = []

    /// Reads the ensemble; `prefix` is "class" (classifier) or "target" (regressor). Each vote's
    /// output column must lie in 0..<`columns`.
    init(_ a: Attributes, prefix: String, columns: Int) throws {
        let nodes = try TreeNodes(a, prefix: prefix, columns: columns)
        let n = nodes.count
        var firstNode: [Int: Int] = [:]  // tree → its first node, the root
        for i in 0..<n where firstNode[nodes.treeIDs[i]] == nil { firstNode[nodes.treeIDs[i]] = i }
        roots = firstNode.keys.sorted().map { firstNode[$0]! }
        feature = nodes.features
        threshold = nodes.values.isEmpty ? [Float](repeating: 0, count: n) : nodes.values
        missingTrue = nodes.missing.isEmpty ? [Bool](repeating: false, count: n) : nodes.missing.map { $0 != 0 }
        rule = nodes.rules.map { r -> Rule in
            switch r {
            case .leq: return .leq
            case .lt: return .lt
            case .gte: return .gte
            case .gt: return .gt
            case .eq: return .eq
            case .neq: return .neq
            case nil: return .leaf
            }
        }
        whenTrue = try (0..<n).map { i in
            nodes.rules[i] == nil ? -1 : try nodes.position(tree: nodes.treeIDs[i], node: nodes.trueIDs[i], from: i, side: "true")
        }
        whenFalse = try (0..<n).map { i in
            nodes.rules[i] == nil ? -1 : try nodes.position(tree: nodes.treeIDs[i], node: nodes.falseIDs[i], from: i, side: "false")
        }
        votes = [[(Int, Float)]](repeating: [], count: n)
        for k in 0..<nodes.voteNodes.count {
            votes[try nodes.votePosition(k)].append((nodes.voteColumns[k], nodes.voteWeights[k]))
        }
    }

    /// The leaf that `row` reaches in the tree rooted at `root`.
    func leaf(_ root: Int, _ row: UnsafePointer<Float>, width: Int) throws -> Int {
        var i = root
        var steps = 0
        while rule[i] != .leaf {
            let f = feature[i]
            guard f >= 0 && f < width else { throw ONNXError("a tree tests feature \(f), but rows have \(width) features") }
            let x = row[f], t = threshold[i]
            let go: Bool
            if x.isNaN { go = missingTrue[i] } else {
                switch rule[i] {
                case .leq: go = x <= t
                case .lt: go = x < t
                case .gte: go = x >= t
                case .gt: go = x > t
                case .eq: go = x == t
                case .neq: go = x != t
                case .leaf: go = false
                }
            }
            i = go ? whenTrue[i] : whenFalse[i]
            steps += 1
            guard steps <= rule.count else { throw ONNXError("a tree has a cycle") }
        }
        return i
    }

    /// Sum (or other aggregate) of the votes of every tree's leaf for each row: [rows, width].
    func scores(_ x: [Float], rows: Int, features: Int, columns: Int, aggregate: String = "SUM") throws -> [Float] {
        var out = [Float](repeating: aggregate == "MIN" ? .greatestFiniteMagnitude : (aggregate == "MAX" ? -.greatestFiniteMagnitude : 0),
                          count: rows * columns)
        try x.withUnsafeBufferPointer { xs in
            for r in 0..<rows {
                let row = xs.baseAddress! + r * features
                for root in roots {
                    for (column, weight) in votes[try leaf(root, row, width: features)] {
                        guard column >= 0 && column < columns else { throw ONNXError("a weight is for output \(column) of \(columns)") }
                        let at = r * columns + column
                        switch aggregate {
                        case "MIN": out[at] = Swift.min(out[at], weight)
                        case "MAX": out[at] = Swift.max(out[at], weight)
                        default: out[at] += weight
                        }
                    }
                }
            }
        }
        if aggregate == "AVERAGE" { for i in out.indices { out[i] /= Float(Swift.max(roots.count, 1)) } }
        return out
    }
}

