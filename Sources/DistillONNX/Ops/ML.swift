import DistillTensor
import Foundation

// ONNX-ML operators, the ones scikit-learn's exporter (skl2onnx) emits for tree ensembles, linear
// models and their preprocessing. Semantics follow the ONNX reference implementation
// (onnx/reference/ops/aionnxml), which onnxruntime matches: class scores are summed over the
// trees, base values added, then `post_transform` applied (NONE, LOGISTIC, SOFTMAX,
// SOFTMAX_ZERO, PROBIT). ZipMap (probabilities as a list of dictionaries) is refused at load
// with the export option that leaves it out.

/// An [N, F] matrix of features from a FLOAT or integer input ([F] is one row).
func featureRows(_ v: ONNXValue) throws -> (rows: Int, width: Int, values: [Float]) {
    let values: [Float]
    switch v {
    case .float(let t): values = t.scalars
    case .int(let t): values = t.values.map { Float($0) }
    case .string: throw ONNXError("features must be numbers, got STRING")
    }
    switch v.shape.count {
    case 1: return (1, v.shape[0], values)
    case 2: return (v.shape[0], v.shape[1], values)
    default: throw ONNXError("features must be [N, F], got \(v.typeDescription)")
    }
}

/// The ML operators' score transforms, applied to each row of [rows, width] scores in place.
func postTransform(_ scores: inout [Float], rows: Int, width: Int, _ kind: String) throws {
    switch kind {
    case "NONE", "": return
    case "LOGISTIC":
        for i in scores.indices {
            let v = scores[i]
            let e = 1 / (1 + Foundation.exp(-Swift.abs(v)))
            scores[i] = v < 0 ? 1 - e : e
        }
    case "SOFTMAX":
        for r in 0..<rows {
            let row = r * width
            var m = -Float.infinity
            for j in 0..<width { m = Swift.max(m, scores[row + j]) }
            var total: Float = 0
            for j in 0..<width { scores[row + j] = Foundation.exp(scores[row + j] - m); total += scores[row + j] }
            for j in 0..<width { scores[row + j] /= total }
        }
    case "SOFTMAX_ZERO":  // softmax that leaves exact zeros at zero
        for r in 0..<rows {
            let row = r * width
            var m = -Float.infinity
            for j in 0..<width { m = Swift.max(m, scores[row + j]) }
            let scale = Foundation.exp(-m)
            var total: Float = 0
            for j in 0..<width {
                let v = scores[row + j]
                scores[row + j] = (v > 0.0000001 || v < -0.0000001) ? Foundation.exp(v - m) : v * scale
                total += scores[row + j]
            }
            for j in 0..<width { scores[row + j] = total == 0 ? 0.5 : scores[row + j] / total }
        }
    case "PROBIT":
        for i in scores.indices { scores[i] = Float(1.41421356 * inverseErf(Double(scores[i]) * 2 - 1)) }
    default:
        throw ONNXError("post_transform '\(kind)' must be NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO or PROBIT")
    }
}

/// The approximation of erf⁻¹ the ONNX reference uses for PROBIT (Winitzki's, a = 0.147).
func inverseErf(_ x: Double) -> Double {
    let sign: Double = x < 0 ? -1 : 1
    let t = (1 - x) * (1 + x)
    if t == 0 { return 0 }
    let l = Foundation.log(t)
    let v = 2 / (Double.pi * 0.147) + 0.5 * l
    return sign * (-v + (v * v - l / 0.147).squareRoot()).squareRoot()
}

/// A tree ensemble compiled from the `nodes_*` attributes: flat arrays indexed by node.
struct TreeEnsemble {
    enum Rule: Equatable { case leq, lt, gte, gt, eq, neq, leaf }
    var roots: [Int] = []
    var feature: [Int] = [], threshold: [Float] = [], rule: [Rule] = [], whenTrue: [Int] = [], whenFalse: [Int] = []
    var missingTrue: [Bool] = []
    /// (output column, weight) votes of each leaf.
    var votes: [[(Int, Float)]] = []

    /// Reads the ensemble; `prefix` is "class" (classifier) or "target" (regressor). Each vote's
    /// output column must lie in 0..<`columns`.
    init(_ a: Attributes, prefix: String, columns: Int) throws {
        let treeIDs = try a.ints("nodes_treeids") ?? [], nodeIDs = try a.ints("nodes_nodeids") ?? []
        let features = try a.ints("nodes_featureids") ?? []
        let modes = try a.strings("nodes_modes") ?? []
        let values = try a.floats("nodes_values") ?? a.numbers("nodes_values_as_tensor")?.map { Float($0) } ?? []
        let trueIDs = try a.ints("nodes_truenodeids") ?? [], falseIDs = try a.ints("nodes_falsenodeids") ?? []
        let missing = try a.ints("nodes_missing_value_tracks_true") ?? []
        let n = nodeIDs.count
        guard n > 0 else { throw ONNXError("the ensemble has no nodes") }
        for (name, count) in [("nodes_treeids", treeIDs.count), ("nodes_featureids", features.count), ("nodes_modes", modes.count),
                              ("nodes_truenodeids", trueIDs.count), ("nodes_falsenodeids", falseIDs.count)] where count != n {
            throw ONNXError("\(name) has \(count) entries, nodes_nodeids \(n)")
        }
        guard values.count == n || values.isEmpty, missing.isEmpty || missing.count == n else {
            throw ONNXError("nodes_values and nodes_missing_value_tracks_true must have \(n) entries")
        }
        var index: [Int: [Int: Int]] = [:]  // tree → node id → position
        var firstNode: [Int: Int] = [:]  // tree → its first node, the root
        for i in 0..<n {
            index[treeIDs[i], default: [:]][nodeIDs[i]] = i
            if firstNode[treeIDs[i]] == nil { firstNode[treeIDs[i]] = i }
        }
        roots = firstNode.keys.sorted().map { firstNode[$0]! }
        feature = features
        threshold = values.isEmpty ? [Float](repeating: 0, count: n) : values
        missingTrue = missing.isEmpty ? [Bool](repeating: false, count: n) : missing.map { $0 != 0 }
        rule = try modes.map { m in
            switch m {
            case "BRANCH_LEQ": return .leq
            case "BRANCH_LT": return .lt
            case "BRANCH_GTE": return .gte
            case "BRANCH_GT": return .gt
            case "BRANCH_EQ": return .eq
            case "BRANCH_NEQ": return .neq
            case "LEAF": return .leaf
            default: throw ONNXError("unknown node mode '\(m)'")
            }
        }
        whenTrue = try (0..<n).map { i in
            guard rule[i] != .leaf else { return -1 }
            guard let j = index[treeIDs[i]]?[trueIDs[i]] else { throw ONNXError("tree \(treeIDs[i]) node \(nodeIDs[i]): true branch \(trueIDs[i]) does not exist") }
            return j
        }
        whenFalse = try (0..<n).map { i in
            guard rule[i] != .leaf else { return -1 }
            guard let j = index[treeIDs[i]]?[falseIDs[i]] else { throw ONNXError("tree \(treeIDs[i]) node \(nodeIDs[i]): false branch \(falseIDs[i]) does not exist") }
            return j
        }
        let vTrees = try a.ints("\(prefix)_treeids") ?? [], vNodes = try a.ints("\(prefix)_nodeids") ?? []
        let vIDs = try a.ints("\(prefix)_ids") ?? []
        let vWeights = try a.floats("\(prefix)_weights") ?? a.numbers("\(prefix)_weights_as_tensor")?.map { Float($0) } ?? []
        guard vTrees.count == vNodes.count, vIDs.count == vNodes.count, vWeights.count == vNodes.count else {
            throw ONNXError("\(prefix)_treeids, \(prefix)_nodeids, \(prefix)_ids and \(prefix)_weights differ in length")
        }
        if let bad = vIDs.first(where: { $0 < 0 || $0 >= columns }) {
            throw ONNXError("\(prefix)_ids holds \(bad), outside 0..<\(columns)")
        }
        votes = [[(Int, Float)]](repeating: [], count: n)
        for k in 0..<vNodes.count {
            guard let i = index[vTrees[k]]?[vNodes[k]] else { throw ONNXError("a weight refers to tree \(vTrees[k]) node \(vNodes[k]), which does not exist") }
            votes[i].append((vIDs[k], vWeights[k]))
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

extension ONNXOps {
    /// Class labels of a classifier: (int64 labels, string labels), exactly one present.
    static func classLabels(_ a: Attributes, ints: String, strings: String) throws -> (ints: [Int]?, strings: [String]?, count: Int) {
        let i = try a.ints(ints), s = try a.strings(strings)
        guard i == nil || s == nil else { throw ONNXError("\(ints) and \(strings) are both given; one names the classes") }
        guard let count = i?.count ?? s?.count, count > 0 else { throw ONNXError("\(ints) or \(strings) is required") }
        return (i, s, count)
    }

    /// The label output: the class of the highest score in each row.
    static func labelOutput(_ scores: [Float], rows: Int, width: Int, labels: (ints: [Int]?, strings: [String]?, count: Int)) -> ONNXValue {
        let best = (0..<rows).map { r -> Int in
            var b = 0
            for j in 1..<Swift.max(width, 1) where scores[r * width + j] > scores[r * width + b] { b = j }
            return b
        }
        if let s = labels.strings { return .string(StringTensor(shape: [rows], values: best.map { s[Swift.min($0, s.count - 1)] })) }
        let ints = labels.ints!
        return int64Value([rows], best.map { Int64(ints.count == 1 ? ($0 == 1 ? ints[0] : 0) : ints[Swift.min($0, ints.count - 1)]) })
    }

    /// TreeEnsembleClassifier → (labels [N], scores [N, classes]).
    static func TreeEnsembleClassifier(_ c: OpContext) throws -> [ONNXValue] {
        let a = c.attributes
        let (rows, features, x) = try featureRows(try c.input(0))
        // Everything derived from the attributes (tens of thousands of entries for a forest) once per node.
        let (labels, ensemble, classIDs) = try c.node.prepared.value("classifier") {
            let labels = try classLabels(a, ints: "classlabels_int64s", strings: "classlabels_strings")
            // Class ids index the labels (two columns at least: a binary model votes in one).
            return (labels, try TreeEnsemble(a, prefix: "class", columns: Swift.max(labels.count, 2)), Set(try a.ints("class_ids") ?? []))
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
        return [labelOutput(scores, rows: rows, width: width, labels: labels), floatValue([rows, width], scores)]
    }

    /// TreeEnsembleRegressor → [N, n_targets].
    static func TreeEnsembleRegressor(_ c: OpContext) throws -> [ONNXValue] {
        let a = c.attributes
        let (rows, features, x) = try featureRows(try c.input(0))
        let targets = try a.int("n_targets", 1, in: 1...Int.max)!
        try checkedShape([rows, targets], elementBytes: 4)
        let ensemble = try c.node.prepared.value("ensemble") { try TreeEnsemble(a, prefix: "target", columns: targets) }
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

    /// scores = X · coefficientsᵀ + intercepts, coefficients stored [outputs, F] row-major.
    static func linearScores(_ c: OpContext, outputs: Int? = nil) throws -> (rows: Int, width: Int, scores: [Float]) {
        let a = c.attributes
        let (rows, features, x) = try featureRows(try c.input(0))
        guard let coefficients = try a.floats("coefficients") else { throw ONNXError("attribute 'coefficients' is required") }
        guard features > 0 else { throw ONNXError("the input rows have no features") }
        let width = outputs ?? coefficients.count / features
        guard width > 0, CheckedSize.multiply(width, features) == coefficients.count else {
            throw ONNXError("\(coefficients.count) coefficients do not fit \(features) features\(outputs.map { " and \($0) targets" } ?? "")")
        }
        let intercepts = try a.floats("intercepts") ?? []
        guard intercepts.isEmpty || intercepts.count == width else { throw ONNXError("\(intercepts.count) intercepts for \(width) outputs") }
        var scores = [Float](repeating: 0, count: rows * width)
        for r in 0..<rows { for j in 0..<width {
            var s: Float = intercepts.isEmpty ? 0 : intercepts[j]
            for f in 0..<features { s += x[r * features + f] * coefficients[j * features + f] }
            scores[r * width + j] = s
        } }
        return (rows, width, scores)
    }

    /// LinearClassifier → (labels [N], scores [N, classes]); one coefficient row for two classes
    /// gives scores (−s, s), as the reference does.
    static func LinearClassifier(_ c: OpContext) throws -> [ONNXValue] {
        let a = c.attributes
        var (rows, width, scores) = try linearScores(c)
        let labels = try classLabels(a, ints: "classlabels_ints", strings: "classlabels_strings")
        if width == 1 && labels.count == 2 {
            scores = scores.flatMap { [-$0, $0] }
            width = 2
        }
        let post = try a.string("post_transform", "NONE")
        try postTransform(&scores, rows: rows, width: width, post)
        if width == 1 {
            let threshold: Float = post == "NONE" ? 0 : 0.5
            let yes = scores.map { $0 >= threshold }
            let label: ONNXValue = labels.strings.map { s in .string(StringTensor(shape: [rows], values: yes.map { $0 ? s[0] : "" })) }
                ?? int64Value([rows], yes.map { $0 ? Int64(labels.ints![0]) : 0 })
            return [label, floatValue([rows, 1], scores)]
        }
        return [labelOutput(scores, rows: rows, width: width, labels: labels), floatValue([rows, width], scores)]
    }

    /// LinearRegressor → [N, targets].
    static func LinearRegressor(_ c: OpContext) throws -> [ONNXValue] {
        var (rows, width, scores) = try linearScores(c, outputs: try c.attributes.int("targets", 1))
        try postTransform(&scores, rows: rows, width: width, try c.attributes.string("post_transform", "NONE"))
        return [floatValue([rows, width], scores)]
    }

    /// Scaler: (X − offset) · scale, per feature (or one value for all).
    static func Scaler(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let values = try x.doubles().map { Float($0) }
        let offset = try c.attributes.floats("offset") ?? [0], scale = try c.attributes.floats("scale") ?? [1]
        let width = x.shape.last ?? 1
        for (name, v) in [("offset", offset), ("scale", scale)] where v.count != 1 && v.count != width {
            throw ONNXError("\(name) has \(v.count) values for \(width) features")
        }
        let out = values.enumerated().map { i, v in
            let f = i % Swift.max(width, 1)
            return (v - offset[offset.count == 1 ? 0 : f]) * scale[scale.count == 1 ? 0 : f]
        }
        return [floatValue(x.shape, out)]
    }

    /// Normalizer: each row divided by its MAX, L1 or L2 norm.
    static func Normalizer(_ c: OpContext) throws -> [ONNXValue] {
        let (rows, width, x) = try featureRows(try c.input(0))
        let norm = try c.attributes.string("norm", "MAX")
        var out = x
        for r in 0..<rows {
            let row = x[(r * width)..<((r + 1) * width)]
            let d: Float
            switch norm {
            case "MAX": d = row.map { Swift.abs($0) }.max() ?? 0
            case "L1": d = row.reduce(0) { $0 + Swift.abs($1) }
            case "L2": d = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            default: throw ONNXError("norm '\(norm)' must be MAX, L1 or L2")
            }
            for j in 0..<width { out[r * width + j] = x[r * width + j] / Swift.max(d, 1e-30) }
        }
        return [floatValue(try c.input(0).shape, out)]
    }

    /// ArrayFeatureExtractor: the columns `Y` of X's last axis.
    static func ArrayFeatureExtractor(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0), columns = try c.ints(1)
        let width = x.shape.last ?? 0
        if let bad = columns.first(where: { $0 < 0 || $0 >= width }) { throw ONNXError("column index \(bad) is outside 0..<\(width)") }
        let rows = x.count / Swift.max(width, 1)
        let shape = try checkedShape(x.shape.count <= 1 ? [1, columns.count] : Array(x.shape.dropLast()) + [columns.count])
        let sources = (0..<rows).flatMap { r in columns.map { r * width + $0 } }
        return [x.picking(sources, shape: shape)]
    }

    /// Binarizer: 1 where X > threshold, else 0.
    static func Binarizer(_ c: OpContext) throws -> [ONNXValue] {
        let threshold = try c.attributes.float("threshold", 0)
        return try unary(c) { $0 > threshold ? 1 : 0 }
    }
}
