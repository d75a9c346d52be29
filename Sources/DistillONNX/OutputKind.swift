import DistillTensor
import Foundation

/// What a classifier's output holds. Distillation needs logits (or anything whose softmax is the
/// teacher's distribution): probabilities read as logits are a different, flatter distribution,
/// and nothing would say so. scikit-learn, XGBoost and LightGBM exports end in probabilities,
/// PyTorch exports in logits, some in a LogSoftmax, Keras binary and multi-label heads in a Sigmoid.
public enum ONNXOutputKind: String, Sendable, CaseIterable {
    case logits
    case probabilities = "probs"
    case logProbabilities = "logprobs"
    /// One probability per class from its own sigmoid, each in [0, 1] without summing to 1: a
    /// one-vs-rest head, or a binary classifier's single column (the positive class).
    case sigmoid
    /// An ONNX-ML SVMClassifier's decision values without probabilities (scikit-learn's SVC
    /// without probability=True): for two classes (−f, f), where f > 0 means class 0; for K ≥ 3
    /// classes the K(K−1)/2 one-vs-one values f₀₁, f₀₂, …, f₁₂, …, where fᵢⱼ > 0 votes for i.
    case svmDecisions = "svm"

    /// "logits", "probabilities", ... for messages.
    public var phrase: String {
        switch self {
        case .logits: return "logits"
        case .probabilities: return "probabilities"
        case .logProbabilities: return "log-probabilities"
        case .sigmoid: return "per-class sigmoid probabilities"
        case .svmDecisions: return "SVM decision values"
        }
    }

    /// How many classes an output `width` values wide stands for, nil when none: one column is a
    /// binary classifier's positive class; SVM decisions hold a value per pair of classes.
    public func classes(forWidth width: Int) -> Int? {
        if self == .svmDecisions {
            guard width >= 2 else { return nil }
            if width == 2 { return 2 }
            var k = 3
            while k * (k - 1) / 2 < width { k += 1 }
            return k * (k - 1) / 2 == width ? k : nil
        }
        return width == 1 ? 2 : width
    }
}

/// The output kind the graph implies for one output, and the node that decided it.
public struct ONNXOutputKindEvidence: Sendable, Equatable {
    /// nil when the graph does not say (a tree ensemble without post_transform sums leaf
    /// weights: probabilities for a random forest, raw scores for boosting); the numbers decide.
    public var kind: ONNXOutputKind?
    /// "Softmax", "LinearClassifier (post_transform SOFTMAX) → Normalizer (L1)", ...
    public var reason: String
}

extension ONNXModel {
    /// Operators that pass their input's meaning through unchanged (a probability stays a probability).
    static let meaningPreserving: Set<String> = ["Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout", "Mul", "Div"]

    /// Operators that exporters end a probability computation with as often as a score one:
    /// scikit-learn's GaussianNB (Exp), binary MLPClassifier and SGDClassifier ([1 − p, p]:
    /// Concat), AdaBoost (Div), CalibratedClassifierCV (Sum). The graph does not say; the numbers do.
    static let arithmetic: Set<String> = ["Add", "Sub", "Mul", "Div", "Sum", "Mean", "Exp", "Concat", "Clip", "Max", "Min", "Abs",
                                          "Reciprocal", "Pow", "Where", "Slice", "Gather", "Transpose", "Expand", "Tile"]

    /// What output `value` holds by the graph's semantics: walks back from it through operators
    /// that keep the meaning (Identity, Cast, reshapes, Mul/Div by a constant) to the one that
    /// decides (Softmax, LogSoftmax, Sigmoid, Log of a Softmax or Sigmoid, Normalizer L1, an
    /// ONNX-ML classifier's post_transform; arithmetic leaves it to the numbers; any other
    /// operator, a Gemm or a Conv, gives logits).
    public func outputKind(of value: String) -> ONNXOutputKindEvidence { walkToDecidingNode(from: value, path: [], underLog: false) }

    /// `outputKind`'s walk; `underLog`: the walk passed one Log, and the kind is that of its input's
    /// logarithm (probabilities become log-probabilities; anything else is for the numbers to decide).
    private func walkToDecidingNode(from value: String, path start: [String], underLog: Bool) -> ONNXOutputKindEvidence {
        var name = value
        var path = start
        func decided(_ kind: ONNXOutputKind?, _ reason: String) -> ONNXOutputKindEvidence {
            guard underLog else { return ONNXOutputKindEvidence(kind: kind, reason: reason) }
            return ONNXOutputKindEvidence(kind: kind == .probabilities || kind == .sigmoid ? .logProbabilities : nil, reason: reason)
        }
        for _ in 0...nodes.count {
            guard let index = producerIndex[name] else {
                return decided(.logits, path.isEmpty ? "a graph input or constant" : chainDescription(path.reversed()))
            }
            let node = nodes[index]
            let describe = { (what: String) in chainDescription(([what] + path).reversed()) }
            if node.domain.isEmpty, node.opType == "Div", node.inputs.count == 2, dividesByOwnSum(node.inputs[0], node.inputs[1]) {
                // x / ReduceSum(x): a row normalisation, as a hand-written softmax or scikit-learn's KNN export ends.
                return decided(.probabilities, describe("Div by its own ReduceSum"))
            }
            if Self.meaningPreserving.contains(node.opType) && node.domain.isEmpty {
                // Mul and Div keep the meaning only by a constant (LightGBM's "× 1"); by a computed value they are arithmetic.
                if node.opType == "Mul" || node.opType == "Div" {
                    guard node.inputs.count == 2, let constant = node.inputs.firstIndex(where: { isConstant($0) }), node.opType == "Mul" || constant == 1 else {
                        return decided(nil, describe(node.opType))
                    }
                    path.append(node.opType)
                    name = node.inputs[1 - constant]
                    continue
                }
                path.append(node.opType)
                name = node.inputs.first ?? ""
                continue
            }
            switch (node.domain, node.opType) {
            case ("", "Softmax"): return decided(.probabilities, describe("Softmax"))
            case ("", "LogSoftmax"): return decided(.logProbabilities, describe("LogSoftmax"))
            case ("", "Sigmoid"): return decided(.sigmoid, describe("Sigmoid"))
            case ("", "Log"):
                // log σ(z) (PyTorch's logsigmoid, one column: log P(positive)) and log softmax(z) are log-probabilities.
                guard !underLog else { return decided(nil, describe("Log")) }
                return walkToDecidingNode(from: node.inputs.first ?? "", path: path + ["Log"], underLog: true)
            case ("ai.onnx.ml", "ArrayFeatureExtractor"):
                return decided(nil, describe("ai.onnx.ml.ArrayFeatureExtractor"))
            case ("", _) where Self.arithmetic.contains(node.opType):
                return decided(nil, describe(node.opType))
            case ("ai.onnx.ml", "Normalizer"):
                let norm = (try? node.attributes.string("norm", "MAX")) ?? "MAX"
                return decided(norm == "L1" ? .probabilities : .logits, describe("Normalizer (\(norm))"))
            case ("ai.onnx.ml", "LinearClassifier"), ("ai.onnx.ml", "TreeEnsembleClassifier"), ("ai.onnx.ml", "SVMClassifier"):
                let transform = (try? node.attributes.string("post_transform", "NONE")) ?? "NONE"
                let what = describe("\(node.opType) (post_transform \(transform))")
                // Support vectors without Platt coefficients: pairwise decision values, not a score per class.
                if node.opType == "SVMClassifier", transform == "NONE", ((try? node.attributes.ints("vectors_per_class")) ?? nil)?.isEmpty == false,
                   ((try? node.attributes.floats("prob_a")) ?? nil)?.isEmpty ?? true {
                    return decided(.svmDecisions, what)
                }
                switch transform {
                case "SOFTMAX", "SOFTMAX_ZERO", "LOGISTIC": return decided(.probabilities, what)
                case "NONE":
                    // Linear scores are logits; summed tree leaves or SVM votes are whatever was stored.
                    return decided(node.opType == "LinearClassifier" ? .logits : nil, what)
                default: return decided(.logits, what)
                }
            default:
                return decided(.logits, describe(node.domain.isEmpty ? node.opType : "\(node.domain).\(node.opType)"))
            }
        }
        return ONNXOutputKindEvidence(kind: nil, reason: "a cycle of meaning-preserving nodes")
    }

    /// The class labels of the graph's ONNX-ML classifier (`classlabels_ints` or
    /// `classlabels_strings`, in its output's column order), when it has one: scikit-learn keeps
    /// the labels it was trained on (1, 2, 3; "ant", "bee").
    public var classifierLabels: [String]? {
        let classifiers: Set<String> = ["LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier"]
        guard let node = nodes.first(where: { $0.domain == "ai.onnx.ml" && classifiers.contains($0.opType) }) else { return nil }
        if let ints = (try? node.attributes.ints("classlabels_ints")) ?? nil { return ints.map(String.init) }
        return (try? node.attributes.strings("classlabels_strings")) ?? nil
    }

    /// Whether `divisor` is ReduceSum(`numerator`) (looking through Identity, Cast and reshapes on both sides).
    func dividesByOwnSum(_ numerator: String, _ divisor: String) -> Bool {
        func source(_ name: String) -> String {
            var name = name
            for _ in 0..<64 {
                guard let index = producerIndex[name], ["Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze"].contains(nodes[index].opType),
                      nodes[index].domain.isEmpty, let input = nodes[index].inputs.first else { return name }
                name = input
            }
            return name
        }
        guard let index = producerIndex[source(divisor)], nodes[index].opType == "ReduceSum", nodes[index].domain.isEmpty,
              let summed = nodes[index].inputs.first else { return false }
        return source(summed) == source(numerator)
    }

    /// Whether `name` is an initializer or the output of a Constant node.
    func isConstant(_ name: String) -> Bool {
        if initializers[name] != nil { return true }
        guard let index = producerIndex[name] else { return false }
        return nodes[index].opType == "Constant"
    }
}

/// "MatMul → Identity ×200000 → Softmax": operators along a path, runs of one operator counted
/// and at most 12 shown (a hostile graph can chain a million Identity nodes).
func chainDescription<S: Sequence>(_ ops: S) -> String where S.Element == String {
    var runs: [(op: String, count: Int)] = []
    for op in ops {
        if let last = runs.last, last.op == op { runs[runs.count - 1].count += 1 } else { runs.append((op, 1)) }
    }
    var parts = runs.map { $0.count == 1 ? $0.op : "\($0.op) ×\($0.count)" }
    if parts.count > 12 { parts = Array(parts.prefix(6)) + ["... (\(parts.count - 12) more)"] + Array(parts.suffix(6)) }
    return parts.joined(separator: " → ")
}

extension ONNXOutputKind {
    /// What rows of `values` ([N, C]) look like: probabilities (each in [0, 1], summing to 1,
    /// both within `tolerance`: summed tree leaves reach 1.0000001), log-probabilities (each ≤ 0,
    /// exponentials summing to 1), or neither.
    public static func observed(in values: Tensor, tolerance: Double = 1e-3) -> ONNXOutputKind? {
        guard values.rank == 2, values.shape[0] > 0, values.shape[1] >= 2 else { return nil }
        let n = values.shape[0], c = values.shape[1]
        var probabilities = true, logProbabilities = true
        for r in 0..<n {
            var sum = 0.0, expSum = 0.0
            for j in 0..<c {
                let v = Double(values.data[r * c + j])
                if !(v >= -tolerance && v <= 1 + tolerance) { probabilities = false }
                if !(v <= tolerance) { logProbabilities = false }
                sum += v
                expSum += v.isFinite ? Foundation.exp(v) : 0
            }
            if abs(sum - 1) > tolerance { probabilities = false }
            if abs(expSum - 1) > tolerance { logProbabilities = false }
            if !probabilities && !logProbabilities { return nil }
        }
        return probabilities ? .probabilities : .logProbabilities
    }

    /// Whether every value of `values` lies in [0, 1] (within `tolerance`), as a sigmoid's do.
    public static func allInUnitInterval(_ values: Tensor, tolerance: Double = 1e-3) -> Bool {
        values.scalars.allSatisfy { Double($0) >= -tolerance && Double($0) <= 1 + tolerance }
    }

    /// Logits of the distribution `output` ([N, C]) of this kind stands for, as DistillKit's
    /// losses read them: log p for probabilities and per-class sigmoids (softmax(log p) = p / Σp,
    /// the one-vs-rest scores made a distribution), the values as they are otherwise. One column
    /// is a binary classifier's positive class and becomes two, [negative, positive]: [0, z] for a
    /// logit z (softmax gives [1 − σ(z), σ(z)]), [log(1 − p), log p] for a probability p.
    ///
    /// SVM decisions become a score per class whose argmax is the SVM's own label: (f, −f) for two
    /// classes; for more, scikit-learn's one-vs-rest decision function from the one-vs-one values,
    /// votes + c / (3(|c| + 1)) with cᵢ the sum of i's signed decisions (a tie in votes goes to the
    /// more confident class). They rank the classes; they are not calibrated probabilities.
    public func logits(from output: Tensor) -> Tensor {
        precondition(output.rank == 2, "logits(from:) takes [N, C]")
        let n = output.shape[0]
        if self == .svmDecisions, let classes = classes(forWidth: output.shape[1]) {
            let pairs = output.shape[1]
            let out = Tensor(shape: [n, classes], scalars: [Float](repeating: 0, count: n * classes))
            var confidence = [Double](repeating: 0, count: classes)
            for r in 0..<n {
                if classes == 2 {
                    out.data[2 * r] = output.data[2 * r + 1]; out.data[2 * r + 1] = output.data[2 * r]
                    continue
                }
                for i in 0..<classes { confidence[i] = 0 }
                var pair = 0
                for i in 0..<classes {
                    for j in (i + 1)..<classes {
                        let f = Double(output.data[r * pairs + pair])
                        out.data[r * classes + (f > 0 ? i : j)] += 1
                        confidence[i] += f; confidence[j] -= f
                        pair += 1
                    }
                }
                for i in 0..<classes { out.data[r * classes + i] += Float(confidence[i] / (3 * (abs(confidence[i]) + 1))) }
            }
            return out
        }
        if output.shape[1] == 1 {
            let out = Tensor(uninitializedShape: [n, 2])
            for r in 0..<n {
                let v = output.data[r]
                switch self {
                case .logits, .svmDecisions: out.data[2 * r] = 0; out.data[2 * r + 1] = v
                case .probabilities, .sigmoid, .logProbabilities:
                    let p = Swift.min(Swift.max(self == .logProbabilities ? Foundation.exp(v) : v, 1e-12), 1 - 1e-7)
                    out.data[2 * r] = Foundation.log(1 - p); out.data[2 * r + 1] = Foundation.log(p)
                }
            }
            return out
        }
        switch self {
        case .probabilities, .sigmoid: return withNoGrad { output.clamp(min: 1e-12).log() }
        case .logits, .logProbabilities, .svmDecisions: return output
        }
    }
}
