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

/// The `nodes_*` and `<prefix>_*` vote attributes of a tree-ensemble operator, read and checked
/// (equal lengths, known modes, vote columns in range), before any evaluation layout is built.
struct TreeNodes {
    enum Rule: UInt8 { case leq, lt, gte, gt, eq, neq }
    let treeIDs: [Int], nodeIDs: [Int], features: [Int], trueIDs: [Int], falseIDs: [Int]
    /// Per node: its test, nil for a leaf.
    let rules: [Rule?]
    /// Thresholds (empty: all 0) and NaN-goes-true flags (empty: none).
    let values: [Float], missing: [Int]
    /// tree → node id → position.
    let index: [Int: [Int: Int]]
    /// The votes: (tree, node) → (output column, weight).
    let voteTrees: [Int], voteNodes: [Int], voteColumns: [Int], voteWeights: [Float]
    var count: Int { nodeIDs.count }

    /// `prefix` is "class" (classifier) or "target" (regressor); vote columns must lie in 0..<`columns`.
    init(_ a: Attributes, prefix: String, columns: Int) throws {
        treeIDs = try a.ints("nodes_treeids") ?? []; nodeIDs = try a.ints("nodes_nodeids") ?? []
        features = try a.ints("nodes_featureids") ?? []
        let modes = try a.strings("nodes_modes") ?? []
        values = try a.floats("nodes_values") ?? a.numbers("nodes_values_as_tensor")?.map { Float($0) } ?? []
        trueIDs = try a.ints("nodes_truenodeids") ?? []; falseIDs = try a.ints("nodes_falsenodeids") ?? []
        missing = try a.ints("nodes_missing_value_tracks_true") ?? []
        let n = nodeIDs.count
        guard n > 0 else { throw ONNXError("the ensemble has no nodes") }
        guard n < Int(Int32.max) else { throw ONNXError("the ensemble has \(n) nodes, more than 2^31") }
        for (name, count) in [("nodes_treeids", treeIDs.count), ("nodes_featureids", features.count), ("nodes_modes", modes.count),
                              ("nodes_truenodeids", trueIDs.count), ("nodes_falsenodeids", falseIDs.count)] where count != n {
            throw ONNXError("\(name) has \(count) entries, nodes_nodeids \(n)")
        }
        guard values.count == n || values.isEmpty, missing.isEmpty || missing.count == n else {
            throw ONNXError("nodes_values and nodes_missing_value_tracks_true must have \(n) entries")
        }
        rules = try modes.map { m in
            switch m {
            case "BRANCH_LEQ": return .leq
            case "BRANCH_LT": return .lt
            case "BRANCH_GTE": return .gte
            case "BRANCH_GT": return .gt
            case "BRANCH_EQ": return .eq
            case "BRANCH_NEQ": return .neq
            case "LEAF": return nil
            default: throw ONNXError("unknown node mode '\(m)'")
            }
        }
        var index: [Int: [Int: Int]] = [:]
        for i in 0..<n { index[treeIDs[i], default: [:]][nodeIDs[i]] = i }
        self.index = index
        voteTrees = try a.ints("\(prefix)_treeids") ?? []; voteNodes = try a.ints("\(prefix)_nodeids") ?? []
        voteColumns = try a.ints("\(prefix)_ids") ?? []
        voteWeights = try a.floats("\(prefix)_weights") ?? a.numbers("\(prefix)_weights_as_tensor")?.map { Float($0) } ?? []
        guard voteTrees.count == voteNodes.count, voteColumns.count == voteNodes.count, voteWeights.count == voteNodes.count else {
            throw ONNXError("\(prefix)_treeids, \(prefix)_nodeids, \(prefix)_ids and \(prefix)_weights differ in length")
        }
        if let bad = voteColumns.first(where: { $0 < 0 || $0 >= columns }) {
            throw ONNXError("\(prefix)_ids holds \(bad), outside 0..<\(columns)")
        }
    }

    /// The position of `tree`'s node `id`, or an error naming the node that refers to it.
    func position(tree: Int, node id: Int, from i: Int, side: String) throws -> Int {
        guard let j = index[tree]?[id] else { throw ONNXError("tree \(treeIDs[i]) node \(nodeIDs[i]): \(side) branch \(id) does not exist") }
        return j
    }

    /// The position of the node vote `k` is cast in.
    func votePosition(_ k: Int) throws -> Int {
        guard let i = index[voteTrees[k]]?[voteNodes[k]] else {
            throw ONNXError("a weight refers to tree \(voteTrees[k]) node \(voteNodes[k]), which does not exist")
        }
        return i
    }
}

/// A tree ensemble compiled once from the `nodes_*` attributes into flat arrays: each tree's
/// branch nodes contiguous, 16 bytes each, children as indices (a leaf as ~leaf number), and each
/// leaf's votes as one run of (column, weight) pairs.
struct TreeEnsemble: Sendable {
    /// A test `feature` against `threshold`; children are branch indices, or ~leaf for a leaf.
    struct Branch: Sendable { var feature: Int32; var threshold: Float; var whenTrue: Int32; var whenFalse: Int32 }
    typealias Rule = TreeNodes.Rule
    enum Aggregate: Sendable { case sum, average, min, max }
    /// Set in `rules` when a NaN feature takes the true branch.
    static let missingGoesTrue: UInt8 = 0x80

    /// Each tree's first node (trees in id order): a branch index, or ~leaf for a one-leaf tree.
    private(set) var roots: [Int32] = []
    private(set) var branches: [Branch] = []
    /// Per branch: its `Rule`, with `missingGoesTrue`; empty when every branch is BRANCH_LEQ and
    /// sends NaN to the false branch (scikit-learn's exports), the fast path.
    private(set) var rules: [UInt8] = []
    /// Leaf k's votes are entries voteStart[k]..<voteStart[k + 1] of voteColumn and voteWeight.
    private(set) var voteStart: [Int32] = [], voteColumn: [Int32] = [], voteWeight: [Float] = []
    /// The highest feature index a branch tests (-1 without branches).
    private(set) var maxFeature = -1

    /// Reads the ensemble; `prefix` is "class" (classifier) or "target" (regressor). Each vote's
    /// output column must lie in 0..<`columns`.
    init(_ a: Attributes, prefix: String, columns: Int) throws {
        let nodes = try TreeNodes(a, prefix: prefix, columns: columns)
        let (n, treeIDs, nodeIDs, features, values, missing) = (nodes.count, nodes.treeIDs, nodes.nodeIDs, nodes.features, nodes.values, nodes.missing)
        let (rule, trueIDs, falseIDs) = (nodes.rules, nodes.trueIDs, nodes.falseIDs)
        var nodesOfTree: [Int: [Int]] = [:]  // tree → its positions, the first one its root
        for i in 0..<n { nodesOfTree[treeIDs[i], default: []].append(i) }
        // Compact numbers: trees in id order, each tree's branches (and leaves) in file order.
        var compact = [Int32](repeating: 0, count: n)  // branch index, or ~leaf number
        var order: [Int] = []  // positions of the branches, in compact order
        var leafCount: Int32 = 0
        for tree in nodesOfTree.keys.sorted() {
            for i in nodesOfTree[tree]! {
                if rule[i] == nil { compact[i] = ~leafCount; leafCount += 1 } else { compact[i] = Int32(order.count); order.append(i) }
            }
            roots.append(compact[nodesOfTree[tree]![0]])
        }
        func child(_ i: Int, _ ids: [Int], _ side: String) throws -> Int32 {
            compact[try nodes.position(tree: treeIDs[i], node: ids[i], from: i, side: side)]
        }
        branches.reserveCapacity(order.count)
        var allPlain = true
        var ruleBytes: [UInt8] = []
        ruleBytes.reserveCapacity(order.count)
        for i in order {
            guard features[i] >= 0 && features[i] < Int(Int32.max) else { throw ONNXError("tree \(treeIDs[i]) node \(nodeIDs[i]) tests feature \(features[i])") }
            maxFeature = Swift.max(maxFeature, features[i])
            branches.append(Branch(feature: Int32(features[i]), threshold: values.isEmpty ? 0 : values[i],
                                   whenTrue: try child(i, trueIDs, "true"), whenFalse: try child(i, falseIDs, "false")))
            let nanTrue = !missing.isEmpty && missing[i] != 0
            ruleBytes.append(rule[i]!.rawValue | (nanTrue ? Self.missingGoesTrue : 0))
            if rule[i] != .leq || nanTrue { allPlain = false }
        }
        rules = allPlain ? [] : ruleBytes
        try Self.checkAcyclic(branches)

        let (vNodes, vIDs, vWeights) = (nodes.voteNodes, nodes.voteColumns, nodes.voteWeights)
        // Votes grouped by leaf, each leaf's in file order (votes on branch nodes are never reached).
        var leafOfVote = [Int32](repeating: -1, count: vNodes.count)
        var counts = [Int32](repeating: 0, count: Int(leafCount) + 1)
        for k in 0..<vNodes.count {
            let i = try nodes.votePosition(k)
            guard compact[i] < 0 else { continue }
            leafOfVote[k] = ~compact[i]
            counts[Int(~compact[i]) + 1] += 1
        }
        for k in 0..<Int(leafCount) { counts[k + 1] += counts[k] }
        voteStart = counts
        var fill = counts
        voteColumn = [Int32](repeating: 0, count: Int(counts.last!))
        voteWeight = [Float](repeating: 0, count: Int(counts.last!))
        for k in 0..<vNodes.count where leafOfVote[k] >= 0 {
            let at = Int(fill[Int(leafOfVote[k])])
            voteColumn[at] = Int32(vIDs[k]); voteWeight[at] = vWeights[k]
            fill[Int(leafOfVote[k])] += 1
        }
    }

    /// Throws when following children from some branch can come back to it (a corrupt file would
    /// make a walk endless). Kahn's algorithm over the branch-to-branch edges.
    private static func checkAcyclic(_ branches: [Branch]) throws {
        var parents = [Int32](repeating: 0, count: branches.count)
        for b in branches {
            if b.whenTrue >= 0 { parents[Int(b.whenTrue)] += 1 }
            if b.whenFalse >= 0 { parents[Int(b.whenFalse)] += 1 }
        }
        var ready = (0..<branches.count).filter { parents[$0] == 0 }
        var done = 0
        while let i = ready.popLast() {
            done += 1
            for c in [branches[i].whenTrue, branches[i].whenFalse] where c >= 0 {
                parents[Int(c)] -= 1
                if parents[Int(c)] == 0 { ready.append(Int(c)) }
            }
        }
        guard done == branches.count else { throw ONNXError("a tree has a cycle") }
    }

    /// Whether `x` takes the true branch of a node with rule byte `rule` and `threshold`.
    @inline(__always) static func goesTrue(_ x: Float, _ threshold: Float, rule: UInt8) -> Bool {
        if x.isNaN { return rule & missingGoesTrue != 0 }
        switch Rule(rawValue: rule & ~missingGoesTrue)! {
        case .leq: return x <= threshold
        case .lt: return x < threshold
        case .gte: return x >= threshold
        case .gt: return x > threshold
        case .eq: return x == threshold
        case .neq: return x != threshold
        }
    }

    /// The aggregate of the votes of every tree's leaf for each row of x ([rows, features]):
    /// [rows, columns], each row's votes added in tree order. Large batches split their rows
    /// across the cores.
    func scores(_ x: UnsafePointer<Float>, rows: Int, features: Int, columns: Int, aggregate: Aggregate = .sum) throws -> [Float] {
        guard maxFeature < features else { throw ONNXError("a tree tests feature \(maxFeature), but rows have \(features) features") }
        let initial: Float = aggregate == .min ? .greatestFiniteMagnitude : (aggregate == .max ? -.greatestFiniteMagnitude : 0)
        var out = [Float](repeating: initial, count: rows * columns)
        // Two cores pay once a call walks a few thousand trees (measured at 100 trees × 256 rows).
        let chunks = rows >= 2 && rows * roots.count >= 2048 ? Swift.min(Parallel.workers, rows) : 1
        out.withUnsafeMutableBufferPointer { o in
            let input = SharedPointer(UnsafeMutablePointer(mutating: x)), output = SharedPointer(o.baseAddress!)
            Parallel.forEachChunk(rows, chunks: chunks) { _, part in
                self.accumulate(input.p, rows: part, features: features, columns: columns, aggregate: aggregate, into: output.p)
            }
        }
        if aggregate == .average { for i in out.indices { out[i] /= Float(Swift.max(roots.count, 1)) } }
        return out
    }

    /// Adds the votes for rows `part`, in blocks of 8 rows tree by tree: a tree's nodes stay in
    /// cache, and on the fast path the block's 8 walks advance in lockstep, so their dependent
    /// loads overlap instead of waiting on each other.
    private func accumulate(_ x: UnsafePointer<Float>, rows part: Range<Int>, features: Int, columns: Int,
                            aggregate: Aggregate, into out: UnsafeMutablePointer<Float>) {
        roots.withUnsafeBufferPointer { roots in branches.withUnsafeBufferPointer { nodes in rules.withUnsafeBufferPointer { rules in
        voteStart.withUnsafeBufferPointer { start in voteColumn.withUnsafeBufferPointer { column in voteWeight.withUnsafeBufferPointer { weight in
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 8) { cursor in
            for first in stride(from: part.lowerBound, to: part.upperBound, by: 8) {
                let count = Swift.min(8, part.upperBound - first)
                for root in roots {
                    if rules.isEmpty {
                        for k in 0..<count { cursor[k] = root }
                        var walking = root >= 0
                        while walking {
                            walking = false
                            for k in 0..<count where cursor[k] >= 0 {
                                let node = nodes[Int(cursor[k])]
                                let next = x[(first + k) * features + Int(node.feature)] <= node.threshold ? node.whenTrue : node.whenFalse
                                cursor[k] = next
                                walking = walking || next >= 0
                            }
                        }
                    } else {
                        for k in 0..<count {
                            let row = x + (first + k) * features
                            var i = root
                            while i >= 0 {
                                let node = nodes[Int(i)]
                                i = Self.goesTrue(row[Int(node.feature)], node.threshold, rule: rules[Int(i)]) ? node.whenTrue : node.whenFalse
                            }
                            cursor[k] = i
                        }
                    }
                    for k in 0..<count {
                        let leaf = Int(~cursor[k]), scores = out + (first + k) * columns
                        for v in Int(start[leaf])..<Int(start[leaf + 1]) {
                            let at = Int(column[v])
                            switch aggregate {
                            case .sum, .average: scores[at] += weight[v]
                            case .min: scores[at] = Swift.min(scores[at], weight[v])
                            case .max: scores[at] = Swift.max(scores[at], weight[v])
                            }
                        }
                    }
                }
            }
        } } } } } } }
    }
}

/// Runs `body` on the rows of a FLOAT or integer feature input ([N, F], or [F] for one row)
/// without copying a FLOAT one.
func withFeatureRows<T>(_ v: ONNXValue, _ body: (_ rows: Int, _ width: Int, UnsafePointer<Float>) throws -> T) throws -> T {
    if case .float(let t) = v, t.rank == 1 || t.rank == 2 {
        return try withExtendedLifetime(t) { try body(t.rank == 1 ? 1 : t.shape[0], t.shape[t.rank - 1], t.data) }
    }
    let (rows, width, values) = try featureRows(v)
    return try values.withUnsafeBufferPointer { try body(rows, width, $0.baseAddress!) }
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

    /// What a TreeEnsembleClassifier node derives from its attributes, once.
    struct TreeClassifier: Sendable {
        let labels: (ints: [Int]?, strings: [String]?, count: Int)
        let ensemble: TreeEnsemble
        /// Scores per row, and the columns the trees vote in (more when class ids exceed the labels).
        let width: Int, columns: Int
        /// The one class id of a binary model that votes in one column.
        let binaryColumn: Int?
        let base: [Float]
        let post: String

        init(_ a: Attributes) throws {
            labels = try ONNXOps.classLabels(a, ints: "classlabels_int64s", strings: "classlabels_strings")
            // Class ids index the labels (two columns at least: a binary model votes in one).
            ensemble = try TreeEnsemble(a, prefix: "class", columns: Swift.max(labels.count, 2))
            let classIDs = Set(try a.ints("class_ids") ?? [])
            binaryColumn = classIDs.count == 1 ? classIDs.first! : nil
            // One score column for two classes: the binary case.
            width = binaryColumn != nil && labels.count == 1 ? 2 : labels.count
            columns = Swift.max(width, (classIDs.max() ?? 0) + 1)
            base = try a.floats("base_values") ?? a.numbers("base_values_as_tensor")?.map { Float($0) } ?? []
            guard base.isEmpty || base.count == width || (binaryColumn != nil && base.count == 1) else {
                throw ONNXError("base_values has \(base.count) entries for \(width) classes")
            }
            post = try a.string("post_transform", "NONE")
        }
    }

    /// TreeEnsembleClassifier → (labels [N], scores [N, classes]).
    static func TreeEnsembleClassifier(_ c: OpContext) throws -> [ONNXValue] {
        let model = try c.node.prepared.value("classifier") { try TreeClassifier(c.attributes) }
        let width = model.width
        return try withFeatureRows(try c.input(0)) { rows, features, x in
            try checkedShape([rows, model.columns], elementBytes: 4)
            var scores = try model.ensemble.scores(x, rows: rows, features: features, columns: model.columns)
            if model.columns != width { scores = (0..<rows).flatMap { r in scores[(r * model.columns)..<(r * model.columns + width)] } }
            let binary = model.binaryColumn != nil
            if !model.base.isEmpty {
                for r in 0..<rows { for j in 0..<model.base.count { scores[r * width + (binary && model.base.count == 1 ? model.binaryColumn! : j)] += model.base[j] } }
            }
            if let column = model.binaryColumn, width == 2 {
                for r in 0..<rows {
                    let s = scores[r * 2 + column]
                    scores[r * 2 + 1] = s
                    scores[r * 2] = model.post == "NONE" || model.post == "PROBIT" ? 1 - s : -s
                }
            }
            try postTransform(&scores, rows: rows, width: width, model.post)
            return [labelOutput(scores, rows: rows, width: width, labels: model.labels), floatValue([rows, width], scores)]
        }
    }

    /// What a TreeEnsembleRegressor node derives from its attributes, once.
    struct TreeRegressor: Sendable {
        let targets: Int
        let ensemble: TreeEnsemble
        let aggregate: TreeEnsemble.Aggregate
        let base: [Float]
        let post: String

        init(_ a: Attributes) throws {
            targets = try a.int("n_targets", 1, in: 1...Int.max)!
            try checkedShape([targets], elementBytes: 4)
            ensemble = try TreeEnsemble(a, prefix: "target", columns: targets)
            switch try a.string("aggregate_function", "SUM") {
            case "SUM": aggregate = .sum
            case "AVERAGE": aggregate = .average
            case "MIN": aggregate = .min
            case "MAX": aggregate = .max
            case let other: throw ONNXError("aggregate_function '\(other)' must be SUM, AVERAGE, MIN or MAX")
            }
            base = try a.floats("base_values") ?? a.numbers("base_values_as_tensor")?.map { Float($0) } ?? []
            guard base.isEmpty || base.count == targets else { throw ONNXError("base_values has \(base.count) entries for \(targets) targets") }
            post = try a.string("post_transform", "NONE")
        }
    }

    /// TreeEnsembleRegressor → [N, n_targets].
    static func TreeEnsembleRegressor(_ c: OpContext) throws -> [ONNXValue] {
        let targets = try c.attributes.int("n_targets", 1, in: 1...Int.max)!
        let input = try c.input(0)
        try checkedShape([input.shape.first ?? 1, targets], elementBytes: 4)
        let model = try c.node.prepared.value("regressor") { try TreeRegressor(c.attributes) }
        return try withFeatureRows(input) { rows, features, x in
            try checkedShape([rows, targets], elementBytes: 4)
            var scores = try model.ensemble.scores(x, rows: rows, features: features, columns: targets, aggregate: model.aggregate)
            if !model.base.isEmpty {
                for r in 0..<rows { for j in 0..<targets { scores[r * targets + j] += model.base[j] } }
            }
            try postTransform(&scores, rows: rows, width: targets, model.post)
            return [floatValue([rows, targets], scores)]
        }
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
