import DistillTensor
import Foundation
import Testing

@testable import DistillONNX

/// SVMClassifier and SVMRegressor (ai.onnx.ml opset 1). Expected values are worked out by hand
/// where that is short, and otherwise are onnxruntime 1.32's outputs for the same single node
/// (`helper.make_node(op, ['X'], outputs, domain='ai.onnx.ml', **attributes)`) on the same X.
@Suite("SVM operators")
struct SVMTests {
    static let x = Tensor(shape: [3, 2], scalars: [0.2, -1.0, 1.5, 0.5, -0.7, 2.0])
    static let supportVectors: [Float] = [0, 0, 1, 1, -1, 1.5, 2, -0.5]

    /// The attributes of a 3-class model with 2 + 1 + 1 support vectors.
    static func threeClasses(_ kernel: String, _ params: [Float], extra: [Onnx_AttributeProto] = []) -> [Onnx_AttributeProto] {
        [intsAttribute("vectors_per_class", [2, 1, 1]), floatsAttribute("support_vectors", supportVectors),
         floatsAttribute("coefficients", [0.5, -0.25, 1.0, -0.75, 0.3, 0.2, -0.6, 0.4]), floatsAttribute("rho", [0.1, -0.2, 0.05]),
         intsAttribute("classlabels_ints", [10, 20, 30]), stringAttribute("kernel_type", kernel), floatsAttribute("kernel_params", params)] + extra
    }

    /// The attributes of a binary model with 1 + 2 support vectors.
    static func twoClasses(_ kernel: String, _ params: [Float], labels: Onnx_AttributeProto = intsAttribute("classlabels_ints", [5, 7]),
                           extra: [Onnx_AttributeProto] = []) -> [Onnx_AttributeProto] {
        [intsAttribute("vectors_per_class", [1, 2]), floatsAttribute("support_vectors", Array(supportVectors[..<6])),
         floatsAttribute("coefficients", [0.7, -0.4, -0.3]), floatsAttribute("rho", [0.2]), labels,
         stringAttribute("kernel_type", kernel), floatsAttribute("kernel_params", params)] + extra
    }

    static func classifier(_ attributes: [Onnx_AttributeProto], stringLabels: Bool = false) throws -> ONNXModel {
        let node = makeNode("SVMClassifier", ["X"], ["label", "scores"], name: "svm", domain: "ai.onnx.ml", attributes)
        return try load(makeModel(nodes: [node], inputs: [tensorInfo("X", [nil, 2])],
                                  outputs: [tensorInfo("label", [nil], type: stringLabels ? .string : .int64), tensorInfo("scores", [nil, nil])],
                                  mlOpset: 1))
    }

    static func regressor(_ attributes: [Onnx_AttributeProto]) throws -> ONNXModel {
        let node = makeNode("SVMRegressor", ["X"], ["y"], name: "svr", domain: "ai.onnx.ml", attributes)
        return try load(makeModel(nodes: [node], inputs: [tensorInfo("X", [nil, 2])], outputs: [tensorInfo("y", [nil, 1])], mlOpset: 1))
    }

    /// (labels, scores) of a classifier on `x`.
    static func classify(_ attributes: [Onnx_AttributeProto], _ input: Tensor = x) throws -> (labels: [Int64], scores: [Float]) {
        let out = try classifier(attributes).run(["X": .float(input)])
        return (out["label"]!.intTensor!.values.map { Int64($0) }, out["scores"]!.floatTensor!.scalars)
    }

    static func expectNear(_ actual: [Float], _ expected: [Float], tolerance: Float = 2e-6) {
        #expect(actual.count == expected.count, "\(actual) vs \(expected)")
        for (a, e) in zip(actual, expected) { #expect(Swift.abs(a - e) <= tolerance, "\(actual) vs \(expected)") }
    }

    /// exp(−γ‖a − b‖²) for two 2-vectors, the RBF kernel written out.
    static func rbf(_ a: [Float], _ b: [Float], gamma: Float) -> Float {
        Foundation.exp(-gamma * ((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])))
    }

    @Test("RBF regressor: Σ αₛ exp(−γ‖x − vₛ‖²) + ρ, by hand; one_class gives its sign")
    func rbfRegressor() throws {
        let attributes = [intAttribute("n_supports", 2), floatsAttribute("support_vectors", [0, 0, 1, 1]), floatsAttribute("coefficients", [1.5, -0.5]),
                          stringAttribute("kernel_type", "RBF"), floatsAttribute("kernel_params", [0.5, 0, 3])]
        let rows: [[Float]] = [[0.2, -1], [1.5, 0.5], [-0.7, 2]]
        let byHand = rows.map { 1.5 * Self.rbf($0, [0, 0], gamma: 0.5) - 0.5 * Self.rbf($0, [1, 1], gamma: 0.5) + 0.25 }
        let y = try Self.regressor(attributes + [floatsAttribute("rho", [0.25])])(Self.x).floatTensor!
        #expect(y.shape == [3, 1])
        Self.expectNear(y.scalars, byHand)
        Self.expectNear(y.scalars, [1.0926439762115479, 0.2903568148612976, 0.3373976945877075])  // onnxruntime
        let oneClass = try Self.regressor(attributes + [floatsAttribute("rho", [-0.5]), intAttribute("one_class", 1)])(Self.x).floatTensor!
        #expect(oneClass.scalars == [1, -1, -1])
    }

    @Test("linear regressor without support vectors: x·w + ρ")
    func linearRegressor() throws {
        let y = try Self.regressor([intAttribute("n_supports", 0), floatsAttribute("coefficients", [2, -1]), floatsAttribute("rho", [0.5])])(Self.x)
        Self.expectNear(y.floatTensor!.scalars, [2 * 0.2 + 1 + 0.5, 3 + -0.5 + 0.5, -1.4 - 2 + 0.5])
    }

    @Test("POLY, binary: scores (−f, f) with f = Σ αₛ (γ x·vₛ + coef0)² + ρ; class 0 wins when f > 0")
    func polyBinary() throws {
        let (labels, scores) = try Self.classify(Self.twoClasses("POLY", [0.5, 1, 2]))
        // Row 0, x = (0.2, −1): x·v = 0, −0.8, −1.7 → kernels 1, 0.36, 0.0225.
        let f0: Float = 0.7 * 1 - 0.4 * 0.36 - 0.3 * 0.0225 + 0.2
        Self.expectNear(Array(scores[0..<2]), [-f0, f0])
        Self.expectNear(scores, [-0.7492499947547913, 0.7492499947547913, 0.8171875476837158, -0.8171875476837158,
                                 2.6257498264312744, -2.6257498264312744])  // onnxruntime
        #expect(labels == [5, 7, 7])
    }

    @Test("POLY with a fractional degree: binary scores (σ(−f), σ(f)) for LOGISTIC, (1 − f, f) for SOFTMAX, as onnxruntime")
    func polyBinaryTransforms() throws {
        let (labels, scores) = try Self.classify(Self.twoClasses("POLY", [0.5, 3, 1.5], extra: [stringAttribute("post_transform", "LOGISTIC")]))
        Self.expectNear(scores, [0.22888785600662231, 0.7711121439933777, 0.6544344425201416, 0.3455655574798584,
                                 0.8962583541870117, 0.10374164581298828])
        #expect(labels == [5, 7, 7])
        for transform in ["SOFTMAX", "SOFTMAX_ZERO"] {
            let (_, raw) = try Self.classify(Self.twoClasses("POLY", [0.5, 3, 1.5], extra: [stringAttribute("post_transform", transform)]))
            Self.expectNear(raw, [-0.21460175514221191, 1.214601755142212, 1.6385889053344727, -0.6385889649391174,
                                  3.156324625015259, -2.156324625015259])
        }
    }

    @Test("SIGMOID with string labels: tanh(γ x·v + coef0)")
    func sigmoidStrings() throws {
        let model = try Self.classifier(Self.twoClasses("SIGMOID", [0.3, -0.5, 0], labels: stringsAttribute("classlabels_strings", ["no", "yes"])),
                                        stringLabels: true)
        let out = try model.run(["X": .float(Self.x)])
        guard case .string(let labels) = out["label"]! else { Issue.record("labels are not strings"); return }
        #expect(labels.values == ["no", "no", "yes"])
        Self.expectNear(out["scores"]!.floatTensor!.scalars, [-0.35790470242500305, 0.35790470242500305, -0.022649887949228287,
                                                              0.022649887949228287, 0.24289676547050476, -0.24289676547050476])
    }

    @Test("RBF, three classes: one-vs-one decision values and majority vote")
    func rbfThreeClasses() throws {
        let (labels, scores) = try Self.classify(Self.threeClasses("RBF", [0.5, 0, 3]))
        // Pair (0, 1) of row 0 by hand: class 0's vectors weighted by coefficient row 0, class 1's by row 0 too.
        let row: [Float] = [0.2, -1]
        let k = (0..<4).map { Self.rbf(row, Array(Self.supportVectors[(2 * $0)..<(2 * $0 + 2)]), gamma: 0.5) }
        let f01 = 0.5 * k[0] - 0.25 * k[1] + 1.0 * k[2] + 0.1
        Self.expectNear([scores[0]], [f01])
        Self.expectNear(scores, [0.3940782845020294, -0.1329728662967682, 0.10702616721391678, 0.07520130276679993, -0.35973450541496277,
                                 0.24811512231826782, 0.960881769657135, -0.14048506319522858, -0.4557398557662964])
        #expect(labels == [10, 10, 30])
        let (_, logistic) = try Self.classify(Self.threeClasses("RBF", [0.5, 0, 3], extra: [stringAttribute("post_transform", "LOGISTIC")]))
        Self.expectNear(logistic, [0.5972640514373779, 0.46680569648742676, 0.526731014251709, 0.5187914967536926, 0.4110238552093506,
                                   0.5617125034332275, 0.7232983112335205, 0.46493637561798096, 0.38799694180488586])
        let (_, softmax) = try Self.classify(Self.threeClasses("RBF", [0.5, 0, 3], extra: [stringAttribute("post_transform", "SOFTMAX")]))
        Self.expectNear(softmax, [0.4272014796733856, 0.2521955072879791, 0.32060301303863525, 0.3526006042957306, 0.22824057936668396,
                                  0.41915878653526306, 0.6349413990974426, 0.21106494963169098, 0.1539936065673828])
    }

    @Test("RBF with prob_a/prob_b: Platt probabilities coupled into one distribution per row")
    func rbfProbabilities() throws {
        let (labels, scores) = try Self.classify(Self.threeClasses("RBF", [0.5, 0, 3], extra: [floatsAttribute("prob_a", [-1.5, -2, -0.8]),
                                                                                              floatsAttribute("prob_b", [0.1, -0.2, 0.05])]))
        Self.expectNear(scores, [0.37580931186676025, 0.2835487425327301, 0.3406420648097992, 0.2784123122692108, 0.3538726568222046,
                                 0.36771512031555176, 0.4282069802284241, 0.17346826195716858, 0.39832472801208496])
        #expect(labels == [10, 10, 30])  // the votes decide, not the probabilities
        for r in 0..<3 { #expect(Swift.abs(scores[(3 * r)..<(3 * r + 3)].reduce(0, +) - 1) < 1e-5) }
    }

    @Test("coupling two classes gives back the pairwise probability")
    func couplingTwoClasses() {
        let p = coupledProbabilities([0, 0.8, 0.2, 0], classes: 2)
        Self.expectNear(p, [0.8, 0.2], tolerance: 1e-3)
    }

    @Test("LINEAR kernel, binary with probabilities: [P(class 0), P(class 1)]")
    func linearProbabilities() throws {
        let (labels, scores) = try Self.classify(Self.twoClasses("LINEAR", [0, 0, 0], extra: [floatsAttribute("prob_a", [-2]), floatsAttribute("prob_b", [0.3])]))
        Self.expectNear(scores, [0.853209376335144, 0.14679063856601715, 0.2592224180698395, 0.7407774329185486, 0.040662430226802826, 0.959337592124939])
        #expect(labels == [5, 7, 7])
    }

    @Test("without support vectors: x·wᶜ + rho[0] per class; two classes with mixed-sign weights pick class 1 for any positive top score")
    func liblinearMode() throws {
        let (labels, scores) = try Self.classify([floatsAttribute("coefficients", [1, -1, 0.5, 0.5, -1, 2]), floatsAttribute("rho", [0.25]),
                                                  intsAttribute("classlabels_ints", [0, 1, 2])])
        Self.expectNear(scores, [1.45, -0.15, -1.95, 1.25, 1.25, -0.25, -2.45, 0.9, 4.95])
        #expect(labels == [0, 0, 2])
        let binary = try Self.classify([floatsAttribute("coefficients", [-1, 0.2, 0.3, 0.1]), floatsAttribute("rho", [0]), intsAttribute("classlabels_ints", [0, 1])])
        Self.expectNear(binary.scores, [-0.4, -0.04, -1.4, 0.5, 1.1, -0.01])
        #expect(binary.labels == [1, 1, 1])
        // Non-negative weights: class 1 once the top score reaches 0.5, whichever class has it.
        let positive = try Self.classify([floatsAttribute("coefficients", [1, 0.2, 0.3, 0.1]), floatsAttribute("rho", [0]), intsAttribute("classlabels_ints", [0, 1])])
        Self.expectNear(positive.scores, [0, -0.04, 1.6, 0.5, -0.3, -0.01])
        #expect(positive.labels == [0, 1, 1])
        let single = try Self.classify([floatsAttribute("coefficients", [1, -0.5]), floatsAttribute("rho", [0.1]), intsAttribute("classlabels_ints", [4])])
        Self.expectNear(single.scores, [0.8, 1.35, -1.6])
        #expect(single.labels == [4, 4, 4])
    }

    @Test("a 1,000-vector RBF SVC on 64 features scores 450 rows quickly")
    func speed() throws {
        let vectors = 1000, features = 64, classes = 10
        var generator = SystemRandomNumberGenerator()
        let sv = (0..<(vectors * features)).map { _ in Float.random(in: -1...1, using: &generator) }
        let attributes = [intsAttribute("vectors_per_class", [Int](repeating: vectors / classes, count: classes)), floatsAttribute("support_vectors", sv),
                          floatsAttribute("coefficients", (0..<((classes - 1) * vectors)).map { _ in Float.random(in: -1...1, using: &generator) }),
                          floatsAttribute("rho", [Float](repeating: 0.1, count: classes * (classes - 1) / 2)),
                          floatsAttribute("prob_a", [Float](repeating: -1, count: 45)), floatsAttribute("prob_b", [Float](repeating: 0, count: 45)),
                          intsAttribute("classlabels_ints", Array(0..<classes)), stringAttribute("kernel_type", "RBF"), floatsAttribute("kernel_params", [0.02, 0, 3])]
        let node = makeNode("SVMClassifier", ["X"], ["label", "scores"], name: "svm", domain: "ai.onnx.ml", attributes)
        let model = try load(makeModel(nodes: [node], inputs: [tensorInfo("X", [nil, features])],
                                       outputs: [tensorInfo("label", [nil], type: .int64), tensorInfo("scores", [nil, classes])], mlOpset: 1))
        let input = Tensor(shape: [450, features], scalars: (0..<(450 * features)).map { _ in Float.random(in: -1...1, using: &generator) })
        _ = try model.run(["X": .float(input)])  // prepares the node
        let start = Date()
        let out = try model.run(["X": .float(input)])
        let seconds = Date().timeIntervalSince(start)
        #expect(out["scores"]!.floatTensor!.shape == [450, classes])
        // 15-25 ms optimised on a busy 2-core machine (kernel rows ~10 ms, a third of the time of the per-pair
        // loop onnxruntime runs), under 0.4 s in a debug build.
        #expect(seconds < 2, "450 rows took \(seconds) s")
    }

    /// Attributes that contradict each other, each with a phrase the error must hold.
    static let malformed: [(String, [Onnx_AttributeProto], String)] = [
        ("vectors_per_class sums to more vectors than given", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "vectors_per_class" } + [intsAttribute("vectors_per_class", [2, 2, 1])], "support_vectors has 8 values"),
        ("counts that overflow", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "vectors_per_class" } + [intsAttribute("vectors_per_class", [Int.max, 1, 1])], "sums beyond any size"),
        ("a negative count", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "vectors_per_class" } + [intsAttribute("vectors_per_class", [3, -1, 2])], "negative"),
        ("counts for two classes of three", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "vectors_per_class" } + [intsAttribute("vectors_per_class", [2, 2])], "vectors_per_class has 2 entries"),
        ("coefficients short", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "coefficients" } + [floatsAttribute("coefficients", [1, 2, 3])], "coefficients has 3 values"),
        ("rho short", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "rho" } + [floatsAttribute("rho", [0.1])], "rho has 1 values for 3 class pairs"),
        ("prob_a short", threeClasses("RBF", [0.5, 0, 3], extra: [floatsAttribute("prob_a", [1]), floatsAttribute("prob_b", [1])]), "prob_a and prob_b have 1 values"),
        ("prob_a without prob_b", threeClasses("RBF", [0.5, 0, 3], extra: [floatsAttribute("prob_a", [1, 2, 3])]), "prob_b 0"),
        ("kernel_params short", threeClasses("RBF", [0.5]), "kernel_params has 1 values"),
        ("unknown kernel", threeClasses("CUBIC", [0.5, 0, 3]), "kernel_type 'CUBIC'"),
        ("unknown transform", threeClasses("RBF", [0.5, 0, 3], extra: [stringAttribute("post_transform", "EXP")]), "post_transform 'EXP'"),
        ("no labels", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "classlabels_ints" }, "classlabels_ints or classlabels_strings"),
        ("no rho", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "rho" }, "'rho' is required"),
        ("linear rows uneven", [floatsAttribute("coefficients", [1, 2, 3, 4, 5]), floatsAttribute("rho", [0]), intsAttribute("classlabels_ints", [0, 1])], "not one row per class"),
        ("vectors of another width", threeClasses("RBF", [0.5, 0, 3]).filter { $0.name != "support_vectors" } + [floatsAttribute("support_vectors", [Float](repeating: 0, count: 12))], "the model 3"),
    ]

    @Test("contradictory classifier attributes are errors naming the node", arguments: 0..<malformed.count)
    func malformedClassifier(_ index: Int) throws {
        let (what, attributes, phrase) = Self.malformed[index]
        let message = errorMessage { _ = try Self.classify(attributes) }
        #expect(message.contains("'svm'") && message.contains(phrase), "\(what): \(message)")
    }

    @Test("contradictory regressor attributes are errors naming the node")
    func malformedRegressor() throws {
        let base: [Onnx_AttributeProto] = [floatsAttribute("support_vectors", [0, 0, 1, 1]), floatsAttribute("rho", [0.25]),
                                           stringAttribute("kernel_type", "RBF"), floatsAttribute("kernel_params", [0.5, 0, 3])]
        let cases: [([Onnx_AttributeProto], String)] = [
            (base + [intAttribute("n_supports", 3), floatsAttribute("coefficients", [1, 2, 3])], "support_vectors has 4 values"),
            (base + [intAttribute("n_supports", 2), floatsAttribute("coefficients", [1, 2, 3])], "coefficients has 3 values for 2 support vectors"),
            (base + [intAttribute("n_supports", -2), floatsAttribute("coefficients", [1, 2])], "negative"),
            (base + [intAttribute("n_supports", Int.max), floatsAttribute("coefficients", [1, 2])], "support_vectors has 4 values"),
            (base + [floatsAttribute("coefficients", [1, 2])], "'n_supports' is required"),
            (base + [intAttribute("n_supports", 2), floatsAttribute("coefficients", [1, 2]), stringAttribute("post_transform", "LOGISTIC")], "NONE only"),
            ([intAttribute("n_supports", 0), floatsAttribute("coefficients", [1, 2, 3]), floatsAttribute("rho", [0])], "the model 3"),
            ([intAttribute("n_supports", 0), floatsAttribute("coefficients", [1, 2]), floatsAttribute("rho", [0, 1])], "'rho' must hold the one bias"),
        ]
        for (attributes, phrase) in cases {
            let message = errorMessage { _ = try Self.regressor(attributes)(Self.x) }
            #expect(message.contains("'svr'") && message.contains(phrase), "\(message)")
        }
    }
}
