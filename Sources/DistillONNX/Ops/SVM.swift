import DistillTensor
import Foundation

// ONNX-ML's support-vector machines (ai.onnx.ml opset 1), as skl2onnx exports scikit-learn's SVC,
// NuSVC, SVR, NuSVR and OneClassSVM, computed the way onnxruntime does (its CPU kernels in
// core/providers/cpu/ml/svmclassifier.cc and svmregressor.cc), including its binary-case quirks.
// Every attribute is checked against the others when the node first runs, and what is derived
// from them (the vectors, also laid out feature by feature for RBF) is kept in `node.prepared`.

/// The kernel of an SVM node, from `kernel_type` and `kernel_params` = [γ, coef0, degree]:
///
///     LINEAR   k(x, v) = x·v
///     POLY     k(x, v) = (γ x·v + coef0)^degree
///     RBF      k(x, v) = exp(−γ ‖x − v‖²)
///     SIGMOID  k(x, v) = tanh(γ x·v + coef0)
struct SVMKernel {
    enum Kind: String { case linear = "LINEAR", poly = "POLY", rbf = "RBF", sigmoid = "SIGMOID" }
    var kind: Kind
    var gamma: Float = 0, coef0: Float = 0, degree: Float = 0

    /// The plain dot product, which models without support vectors use whatever kernel they name.
    static let linear = SVMKernel(kind: .linear)

    init(kind: Kind) { self.kind = kind }

    init(_ a: Attributes) throws {
        let name = try a.string("kernel_type", "LINEAR")
        guard let kind = Kind(rawValue: name) else { throw ONNXError("kernel_type '\(name)' must be LINEAR, POLY, RBF or SIGMOID") }
        self.kind = kind
        let params = try a.floats("kernel_params") ?? []
        guard params.isEmpty || params.count == 3 else {
            throw ONNXError("kernel_params has \(params.count) values; it holds [gamma, coef0, degree]")
        }
        if !params.isEmpty { (gamma, coef0, degree) = (params[0], params[1], params[2]) }
    }
}

/// Row vectors [count, features] a kernel compares the input rows with: support vectors, or one
/// coefficient row per output without them.
struct SVMVectors {
    let values: [Float]
    let count: Int
    let features: Int
    /// The same vectors feature by feature, [features, count], for RBF's distances.
    let byFeature: [Float]

    init(values: [Float], count: Int, features: Int, kernel: SVMKernel) {
        self.values = values
        self.count = count
        self.features = features
        byFeature = kernel.kind != .rbf ? [] : (0..<(features * count)).map { i in values[(i % count) * features + i / count] }
    }

    /// k(xᵣ, vₛ) for each input row r and vector s, [rows, count] row-major. LINEAR, POLY and
    /// SIGMOID start from one matrix product, x·vᵀ (plus `offset`, the bias of models without
    /// support vectors) or γ x·vᵀ + coef0.
    func kernelRows(_ x: [Float], rows: Int, kernel: SVMKernel, offset: Float = 0) throws -> [Float] {
        let total = try checkedElementCount([rows, count], "SVM kernel values", elementBytes: 4)
        guard rows > 0 && count > 0 else { return [Float](repeating: 0, count: total) }
        if kernel.kind == .rbf { return rbfRows(x, rows: rows, gamma: kernel.gamma, total: total) }
        guard rows <= Int(Int32.max), count <= Int(Int32.max), features <= Int(Int32.max) else {
            throw ONNXError("[\(rows), \(count)] kernel values over \(features) features are beyond the matrix product's 32-bit sizes")
        }
        try BLAS.ensureLoaded()
        let (start, alpha) = kernel.kind == .linear ? (offset, Float(1)) : (kernel.coef0, kernel.gamma)
        var out = [Float](repeating: start, count: total)
        x.withUnsafeBufferPointer { xs in
            values.withUnsafeBufferPointer { vs in
                out.withUnsafeMutableBufferPointer { o in
                    BLAS.sgemm(transposeB: true, m: rows, n: count, k: features, alpha: alpha, a: xs.baseAddress!, lda: features,
                               b: vs.baseAddress!, ldb: features, beta: 1, c: o.baseAddress!, ldc: count)
                }
            }
        }
        switch kernel.kind {
        case .linear, .rbf: break
        case .poly:
            let d = kernel.degree
            if d == 2 { for i in out.indices { out[i] *= out[i] } }
            else if d == 3 { for i in out.indices { out[i] = out[i] * out[i] * out[i] } }
            else { for i in out.indices { out[i] = Foundation.pow(out[i], d) } }
        case .sigmoid:
            for i in out.indices { out[i] = Foundation.tanh(out[i]) }
        }
        return out
    }

    /// exp(−γ ‖xᵣ − vₛ‖²) for every row and vector. The squared distance is summed feature by
    /// feature in order, as onnxruntime does (‖x‖² + ‖v‖² − 2x·v would lose small distances, and
    /// another order changes the last bits that Platt scaling and coupling then amplify), for all
    /// vectors at once: the inner loop runs along `byFeature`'s contiguous rows and vectorises.
    private func rbfRows(_ x: [Float], rows: Int, gamma: Float, total: Int) -> [Float] {
        var out = [Float](repeating: 0, count: total)
        let (width, n) = (features, count)
        x.withUnsafeBufferPointer { xs in
            byFeature.withUnsafeBufferPointer { columns in
                out.withUnsafeMutableBufferPointer { o in
                    for r in 0..<rows {
                        let sums = o.baseAddress! + r * n
                        for f in 0..<width {
                            let value = xs[r * width + f], column = columns.baseAddress! + f * n
                            for s in 0..<n {
                                let d = value - column[s]
                                sums[s] += d * d
                            }
                        }
                        for s in 0..<n { sums[s] = Foundation.exp(-gamma * sums[s]) }
                    }
                }
            }
        }
        return out
    }
}

/// The score transforms of `post_transform`.
private let svmPostTransforms: Set<String> = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]

/// An SVMClassifier's attributes, checked against each other.
struct SVMClassifierModel {
    let labels: (ints: [Int]?, strings: [String]?, count: Int)
    let kernel: SVMKernel
    /// The support vectors, or (without them) one coefficient row per class.
    let vectors: SVMVectors
    /// Support vectors per class and the index of each class's first one; empty without them.
    let vectorsPerClass: [Int], firstVector: [Int]
    /// Dual coefficients [classes − 1, support vectors] (libsvm's layout).
    let coefficients: [Float]
    let rho: [Float]
    /// Platt scaling per class pair, P(i | i or j) = 1 / (1 + exp(A·f + B)); empty without probabilities.
    let plattA: [Float], plattB: [Float]
    let coefficientsAreNonNegative: Bool
    let postTransform: String

    var classes: Int { labels.count }
    var pairs: Int { classes * (classes - 1) / 2 }
    var usesSupportVectors: Bool { !vectorsPerClass.isEmpty }
    var hasProbabilities: Bool { !plattA.isEmpty }

    init(_ a: Attributes) throws {
        labels = try ONNXOps.classLabels(a, ints: "classlabels_ints", strings: "classlabels_strings")
        let classes = labels.count
        guard classes < 65536 else { throw ONNXError("\(classes) classes; at most 65535 are supported") }
        guard let coefficients = try a.floats("coefficients"), !coefficients.isEmpty else { throw ONNXError("attribute 'coefficients' is required") }
        guard let rho = try a.floats("rho"), !rho.isEmpty else { throw ONNXError("attribute 'rho' is required") }
        let plattA = try a.floats("prob_a") ?? [], plattB = try a.floats("prob_b") ?? []
        guard plattA.count == plattB.count else { throw ONNXError("prob_a has \(plattA.count) values, prob_b \(plattB.count)") }
        postTransform = try a.string("post_transform", "NONE")
        guard svmPostTransforms.contains(postTransform) else {
            throw ONNXError("post_transform '\(postTransform)' must be NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO or PROBIT")
        }
        let perClass = try a.ints("vectors_per_class") ?? []
        if let bad = perClass.first(where: { $0 < 0 }) { throw ONNXError("vectors_per_class holds \(bad), a negative count") }
        var supportVectors = 0
        var firstVector: [Int] = []
        for n in perClass {
            firstVector.append(supportVectors)
            guard let sum = CheckedSize.add(supportVectors, n) else { throw ONNXError("vectors_per_class sums beyond any size") }
            supportVectors = sum
        }
        let pairs = classes * (classes - 1) / 2
        if supportVectors > 0 {
            guard perClass.count == classes else {
                throw ONNXError("vectors_per_class has \(perClass.count) entries for \(classes) classes")
            }
            let values = try a.floats("support_vectors") ?? []
            guard !values.isEmpty, values.count % supportVectors == 0 else {
                throw ONNXError("support_vectors has \(values.count) values, not \(supportVectors) vectors (vectors_per_class's sum) of the same length")
            }
            guard CheckedSize.multiply(classes - 1, supportVectors) == coefficients.count else {
                throw ONNXError("coefficients has \(coefficients.count) values; \(classes) classes and \(supportVectors) support vectors need (\(classes) − 1) × \(supportVectors)")
            }
            guard rho.count == pairs else { throw ONNXError("rho has \(rho.count) values for \(pairs) class pairs") }
            kernel = try SVMKernel(a)
            vectors = SVMVectors(values: values, count: supportVectors, features: values.count / supportVectors, kernel: kernel)
            vectorsPerClass = perClass
            self.firstVector = firstVector
        } else {
            // No support vectors: one linear score per class, x·wᶜ + rho[0] (liblinear's layout).
            guard coefficients.count % classes == 0 else {
                throw ONNXError("coefficients has \(coefficients.count) values, not one row per class for \(classes) classes")
            }
            guard rho.count == 1 else { throw ONNXError("rho has \(rho.count) values; without support vectors it holds the one bias") }
            _ = try SVMKernel(a)  // checked, though unused: the scores are linear
            kernel = .linear
            vectors = SVMVectors(values: coefficients, count: classes, features: coefficients.count / classes, kernel: .linear)
            vectorsPerClass = []
            self.firstVector = []
        }
        guard plattA.isEmpty || plattA.count == pairs else {
            throw ONNXError("prob_a and prob_b have \(plattA.count) values for \(pairs) class pairs")
        }
        if !plattA.isEmpty { _ = try checkedElementCount([classes, classes], "pairwise probabilities", elementBytes: 4) }
        self.coefficients = coefficients
        self.rho = rho
        self.plattA = plattA
        self.plattB = plattB
        coefficientsAreNonNegative = coefficients.allSatisfy { $0 >= 0 }
    }

    /// One-vs-one decision values fᵢⱼ(x) = Σ_{s∈i} αʲₛ k(x, vₛ) + Σ_{s∈j} αⁱₛ k(x, vₛ) + ρᵢⱼ for
    /// every class pair i < j in order (0-1, 0-2, ..., 1-2, ...), summed in double precision, and
    /// the votes: i wins the pair when fᵢⱼ > 0, j otherwise. Kernel rows are [rows, support vectors].
    func pairwiseDecisions(_ kernelRows: [Float], rows: Int) -> (values: [Float], votes: [Int]) {
        let n = vectors.count
        var values = [Float](repeating: 0, count: rows * pairs)
        var votes = [Int](repeating: 0, count: rows * classes)
        kernelRows.withUnsafeBufferPointer { k in
            coefficients.withUnsafeBufferPointer { alpha in
                for r in 0..<rows {
                    let row = k.baseAddress! + r * n
                    var pair = 0
                    for i in 0..<(classes - 1) {
                        for j in (i + 1)..<classes {
                            var sum: Double = 0
                            // Class i's vectors carry their coefficients against j in row j − 1; j's against i in row i.
                            let fromI = alpha.baseAddress! + (j - 1) * n, fromJ = alpha.baseAddress! + i * n
                            for s in firstVector[i]..<(firstVector[i] + vectorsPerClass[i]) { sum += Double(fromI[s] * row[s]) }
                            for s in firstVector[j]..<(firstVector[j] + vectorsPerClass[j]) { sum += Double(fromJ[s] * row[s]) }
                            sum += Double(rho[pair])
                            values[r * pairs + pair] = Float(sum)
                            votes[r * classes + (sum > 0 ? i : j)] += 1
                            pair += 1
                        }
                    }
                }
            }
        }
        return (values, votes)
    }

    /// Class probabilities of one row from its pair decisions: Platt's rᵢⱼ = 1 / (1 + exp(A·fᵢⱼ + B)),
    /// clipped to [10⁻⁷, 1 − 10⁻⁷], rⱼᵢ = 1 − rᵢⱼ, then coupled into one distribution.
    func probabilities(decisions: ArraySlice<Float>) -> [Float] {
        var r = [Float](repeating: 0, count: classes * classes)
        var pair = 0
        for i in 0..<(classes - 1) {
            for j in (i + 1)..<classes {
                let f = decisions[decisions.startIndex + pair]
                let p = Swift.min(Swift.max(1 - logistic(f * plattA[pair] + plattB[pair]), 1e-7), 1 - 1e-7)
                r[i * classes + j] = p
                r[j * classes + i] = 1 - p
                pair += 1
            }
        }
        return coupledProbabilities(r, classes: classes)
    }
}

/// σ(v) = 1 / (1 + e^(−v)), computed from |v| so that it never overflows.
private func logistic(_ v: Float) -> Float {
    let e = 1 / (1 + Foundation.exp(-Swift.abs(v)))
    return v < 0 ? 1 - e : e
}

/// Pairwise coupling (Wu, Lin & Weng 2004, their second method, as libsvm and onnxruntime do it):
/// the p with Σp = 1 minimising Σᵢ Σ_{j≠i} (rⱼᵢ pᵢ − rᵢⱼ pⱼ)², where r[i·k + j] = P(i | i or j).
/// With Qᵢᵢ = Σ_{j≠i} rⱼᵢ² and Qᵢⱼ = −rⱼᵢ rᵢⱼ, each round updates every pᵢ by ((pᵀQp) − (Qp)ᵢ) / Qᵢᵢ
/// and renormalises, stopping after 100 rounds or once every |(Qp)ᵢ − pᵀQp| < 0.005 / k. In single
/// precision and in onnxruntime's order of operations.
func coupledProbabilities(_ r: [Float], classes k: Int) -> [Float] {
    var q = [Float](repeating: 0, count: k * k)
    for i in 0..<k {
        for j in 0..<k where j != i {
            q[i * k + i] += r[j * k + i] * r[j * k + i]
            q[i * k + j] = -r[j * k + i] * r[i * k + j]
        }
    }
    var p = [Float](repeating: 1 / Float(k), count: k)
    var qp = [Float](repeating: 0, count: k)
    let tolerance = 0.005 / Float(k)
    for _ in 0..<100 {
        var pqp: Float = 0
        for i in 0..<k {
            qp[i] = 0
            for j in 0..<k { qp[i] += q[i * k + j] * p[j] }
            pqp += p[i] * qp[i]
        }
        var largestError: Float = 0
        for i in 0..<k { largestError = Swift.max(largestError, Swift.abs(qp[i] - pqp)) }
        if largestError < tolerance { break }
        for i in 0..<k {
            let step = (-qp[i] + pqp) / q[i * k + i]
            p[i] += step
            pqp = (pqp + step * (step * q[i * k + i] + 2 * qp[i])) / (1 + step) / (1 + step)
            for j in 0..<k {
                qp[j] = (qp[j] + step * q[i * k + j]) / (1 + step)
                p[j] /= (1 + step)
            }
        }
    }
    return p
}

/// An SVMRegressor's attributes, checked against each other.
struct SVMRegressorModel {
    let kernel: SVMKernel
    /// The support vectors, or (without them) the coefficients as one row.
    let vectors: SVMVectors
    let usesSupportVectors: Bool
    let coefficients: [Float]
    let bias: Float
    let oneClass: Bool

    init(_ a: Attributes) throws {
        guard let supportVectors = try a.int("n_supports") else { throw ONNXError("attribute 'n_supports' is required") }
        guard supportVectors >= 0 else { throw ONNXError("n_supports is \(supportVectors), a negative count") }
        guard let coefficients = try a.floats("coefficients"), !coefficients.isEmpty else { throw ONNXError("attribute 'coefficients' is required") }
        guard let rho = try a.floats("rho"), rho.count == 1 else { throw ONNXError("attribute 'rho' must hold the one bias") }
        let targets = try a.int("n_targets", 1)
        guard targets == 1 else { throw ONNXError("n_targets is \(targets); SVMRegressor predicts one target") }
        // onnxruntime ignores post_transform here and the ONNX reference refuses anything else.
        let post = try a.string("post_transform", "NONE")
        guard post == "NONE" else { throw ONNXError("post_transform '\(post)': SVMRegressor supports NONE only (onnxruntime ignores it, the ONNX reference refuses it)") }
        oneClass = try a.int("one_class", 0) != 0
        if supportVectors > 0 {
            let values = try a.floats("support_vectors") ?? []
            guard !values.isEmpty, values.count % supportVectors == 0 else {
                throw ONNXError("support_vectors has \(values.count) values, not \(supportVectors) vectors (n_supports) of the same length")
            }
            guard coefficients.count == supportVectors else {
                throw ONNXError("coefficients has \(coefficients.count) values for \(supportVectors) support vectors")
            }
            kernel = try SVMKernel(a)
            vectors = SVMVectors(values: values, count: supportVectors, features: values.count / supportVectors, kernel: kernel)
        } else {
            _ = try SVMKernel(a)  // checked, though unused: the prediction is linear
            kernel = .linear
            vectors = SVMVectors(values: coefficients, count: 1, features: coefficients.count, kernel: .linear)
        }
        usesSupportVectors = supportVectors > 0
        self.coefficients = coefficients
        bias = rho[0]
    }
}

extension ONNXOps {
    /// The label output of an SVM classifier from each row's class index.
    static func svmLabels(_ classIndex: [Int], labels: (ints: [Int]?, strings: [String]?, count: Int)) -> ONNXValue {
        if let names = labels.strings { return .string(StringTensor(shape: [classIndex.count], values: classIndex.map { names[$0] })) }
        return int64Value([classIndex.count], classIndex.map { Int64(labels.ints![$0]) })
    }

    /// SVMClassifier → (labels [N], scores). The scores are, as onnxruntime gives them:
    /// - without support vectors: [N, classes] linear scores x·wᶜ + rho[0];
    /// - with prob_a/prob_b: [N, classes] coupled Platt probabilities;
    /// - otherwise, three classes or more: [N, pairs] one-vs-one decision values;
    /// - two classes: [N, 2] holding (−f, f) for post_transform NONE, (σ(−f), σ(f)) for LOGISTIC,
    ///   (1 − f, f) for SOFTMAX and SOFTMAX_ZERO (no softmax), and (probit(f), 0) for PROBIT
    ///   (onnxruntime 1.32 leaves that second column unwritten).
    /// The label is the class with most one-vs-one votes (the first on ties); without support
    /// vectors it is the top score's, except for two classes without probabilities, where class 1
    /// wins whenever the top score is positive with mixed-sign coefficients, or ≥ 0.5 with
    /// non-negative ones. post_transform applies to the scores only, after the label is chosen.
    static func SVMClassifier(_ c: OpContext) throws -> [ONNXValue] {
        let model = try c.node.prepared.value("svm-classifier") { try SVMClassifierModel(c.attributes) }
        let (rows, features, x) = try featureRows(try c.input(0))
        guard features == model.vectors.features else {
            throw ONNXError("the input rows have \(features) features, the model \(model.vectors.features)")
        }
        let classes = model.classes
        var scores: [Float], width: Int, winner: [Int]
        if !model.usesSupportVectors {
            width = classes
            scores = try model.vectors.kernelRows(x, rows: rows, kernel: .linear, offset: model.rho[0])
            winner = (0..<rows).map { r in
                var best = 0
                for j in 1..<Swift.max(width, 1) where scores[r * width + j] > scores[r * width + best] { best = j }
                let top = scores[r * width + best]
                guard classes == 2 && !model.hasProbabilities else { return best }
                if model.coefficientsAreNonNegative ? top >= 0.5 : top > 0 { return 1 }
                return best
            }
        } else {
            let kernelRows = try model.vectors.kernelRows(x, rows: rows, kernel: model.kernel)
            let (decisions, votes) = model.pairwiseDecisions(kernelRows, rows: rows)
            winner = (0..<rows).map { r in
                var best = 0
                for j in 1..<classes where votes[r * classes + j] > votes[r * classes + best] { best = j }
                return best
            }
            if model.hasProbabilities {
                width = classes
                _ = try checkedElementCount([rows, width], "scores", elementBytes: 4)
                scores = (0..<rows).flatMap { r in model.probabilities(decisions: decisions[(r * model.pairs)..<((r + 1) * model.pairs)]) }
            } else if classes > 2 {
                width = model.pairs
                scores = decisions
            } else {
                width = 2
                scores = decisions.flatMap { f -> [Float] in
                    switch model.postTransform {
                    case "NONE": return [-f, f]
                    case "LOGISTIC": return [logistic(-f), logistic(f)]
                    case "PROBIT": return [Float(1.41421356 * inverseErf(Double(f) * 2 - 1)), 0]
                    default: return [1 - f, f]
                    }
                }
                return [svmLabels(winner, labels: model.labels), floatValue([rows, width], scores)]
            }
        }
        if width >= 2 {
            try postTransform(&scores, rows: rows, width: width, model.postTransform)
        } else if model.postTransform == "PROBIT" {  // one score per row: only PROBIT applies
            try postTransform(&scores, rows: rows, width: width, "PROBIT")
        }
        return [svmLabels(winner, labels: model.labels), floatValue([rows, width], scores)]
    }

    /// SVMRegressor → [N, 1]: Σₛ αₛ k(x, vₛ) + ρ over the support vectors, or x·w + ρ without them;
    /// with one_class, the sign of that (+1 when positive, −1 otherwise), as OneClassSVM predicts.
    static func SVMRegressor(_ c: OpContext) throws -> [ONNXValue] {
        let model = try c.node.prepared.value("svm-regressor") { try SVMRegressorModel(c.attributes) }
        let (rows, features, x) = try featureRows(try c.input(0))
        guard features == model.vectors.features else {
            throw ONNXError("the input rows have \(features) features, the model \(model.vectors.features)")
        }
        var out: [Float]
        if model.usesSupportVectors {
            let kernelRows = try model.vectors.kernelRows(x, rows: rows, kernel: model.kernel)
            let n = model.vectors.count
            out = [Float](repeating: model.bias, count: rows)
            guard rows <= Int(Int32.max), n <= Int(Int32.max) else {
                throw ONNXError("\(rows) rows over \(n) support vectors are beyond the matrix product's 32-bit sizes")
            }
            if rows > 0 {
                kernelRows.withUnsafeBufferPointer { k in
                    model.coefficients.withUnsafeBufferPointer { alpha in
                        out.withUnsafeMutableBufferPointer { o in
                            BLAS.sgemm(m: rows, n: 1, k: n, a: k.baseAddress!, lda: n, b: alpha.baseAddress!, ldb: 1,
                                       beta: 1, c: o.baseAddress!, ldc: 1)
                        }
                    }
                }
            }
        } else {
            out = try model.vectors.kernelRows(x, rows: rows, kernel: .linear, offset: model.bias)
        }
        if model.oneClass { out = out.map { $0 > 0 ? 1 : -1 } }
        return [floatValue([rows, 1], out)]
    }
}
