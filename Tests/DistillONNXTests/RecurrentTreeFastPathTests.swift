import CKernels
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

@testable import DistillONNX

/// The fused recurrent loops and the compact tree ensembles against the direct loops they replaced
/// (Tests/DistillONNXTests/RecurrentTreeReference.swift), on random weights and inputs covering
/// every path: directions, sequence lengths, initial states, peepholes, clipping, layouts, other
/// activations, rows split across cores and hidden units split across cores; tree rules of every
/// kind, missing values, aggregates, binary classifiers and batches split across cores.
@Suite("Recurrent and tree-ensemble fast paths")
struct RecurrentTreeFastPathTests {
    /// A seeded generator (SplitMix64), so every failure reproduces.
    struct Numbers {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * Float(next() >> 40) / Float(1 << 24) }
        mutating func floats(_ count: Int, _ scale: Float = 1) -> [Float] { (0..<count).map { _ in uniform(-scale, scale) } }
        mutating func int(_ range: Range<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    }

    /// One recurrent configuration: everything the operator reads.
    struct Recurrent {
        var op = "LSTM", steps = 5, batch = 2, inputSize = 3, hidden = 4
        var direction = "forward", layout = 0
        var bias = true, initialStates = false, lengths: [Int]? = nil, peepholes = false
        var clip: Float? = nil, inputForget = false, linearBeforeReset = 0
        var activations: [String]? = nil
    }

    /// Runs `config` through the fast operator and the reference on the same node and inputs.
    func compare(_ config: Recurrent, seed: UInt64, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var numbers = Numbers(state: seed)
        let gates = config.op == "LSTM" ? 4 : (config.op == "GRU" ? 3 : 1)
        let directions = config.direction == "bidirectional" ? 2 : 1
        let (s, b, i, h) = (config.steps, config.batch, config.inputSize, config.hidden)
        let scale = 1 / Float(h).squareRoot()
        func tensor(_ shape: [Int], _ scale: Float) -> ONNXValue { .float(Tensor(shape: shape, scalars: numbers.floats(shape.reduce(1, *), scale))) }
        let xShape = config.layout == 0 ? [s, b, i] : [b, s, i]
        let stateShape = config.layout == 0 ? [directions, b, h] : [b, directions, h]
        var inputs: [ONNXValue?] = [tensor(xShape, 1), tensor([directions, gates * h, i], scale), tensor([directions, gates * h, h], scale)]
        inputs.append(config.bias ? tensor([directions, 2 * gates * h], scale) : nil)
        inputs.append(config.lengths.map { .int(IntTensor(shape: [b], values: $0.map(Int64.init), type: .int32)) })
        inputs.append(config.initialStates ? tensor(stateShape, 1) : nil)
        if config.op == "LSTM" {
            inputs.append(config.initialStates ? tensor(stateShape, 1) : nil)
            inputs.append(config.peepholes ? tensor([directions, 3 * h], 0.5) : nil)
        }
        var attributes = [intAttribute("hidden_size", h), stringAttribute("direction", config.direction), intAttribute("layout", config.layout)]
        if let clip = config.clip { attributes.append(floatAttribute("clip", clip)) }
        if config.inputForget { attributes.append(intAttribute("input_forget", 1)) }
        if config.op == "GRU" { attributes.append(intAttribute("linear_before_reset", config.linearBeforeReset)) }
        if let names = config.activations {
            attributes.append(stringsAttribute("activations", names))
            attributes.append(floatsAttribute("activation_alpha", names.map { _ in 0.7 }))
            attributes.append(floatsAttribute("activation_beta", names.map { _ in 0.3 }))
        }
        let outputs = config.op == "LSTM" ? ["Y", "Y_h", "Y_c"] : ["Y", "Y_h"]
        let proto = makeNode(config.op, inputs.indices.map { inputs[$0] == nil ? "" : "in\($0)" }, outputs, attributes)
        let node = Node(index: 0, name: "cell", opType: config.op, domain: "", inputs: proto.input, outputs: proto.output,
                        attributes: Attributes(proto.attribute, directory: nil), opset: 14)
        let context = OpContext(node: node, inputs: inputs)
        let cell: ONNXOps.Cell = config.op == "LSTM" ? .lstm : (config.op == "GRU" ? .gru : .rnn)
        // Twice: the second run reuses the packed weights.
        for _ in 0..<2 {
            let fast = try ONNXOps.recurrent(context, cell), reference = try ReferenceOps.recurrent(context, cell)
            #expect(fast.count == reference.count, sourceLocation: sourceLocation)
            for (k, (a, e)) in zip(fast, reference).enumerated() {
                assertClose(a.floatTensor!, e.floatTensor!, atol: 2e-5, rtol: 2e-5, "\(config) output \(k)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("LSTM, GRU and RNN equal the direct loops in every direction and layout, with and without biases and initial states")
    func recurrentBasics() throws {
        var seed: UInt64 = 1
        for op in ["LSTM", "GRU", "RNN"] {
            for direction in ["forward", "reverse", "bidirectional"] {
                for layout in [0, 1] {
                    for (bias, initial) in [(true, false), (false, true), (true, true)] {
                        seed += 1
                        try compare(Recurrent(op: op, direction: direction, layout: layout, bias: bias, initialStates: initial,
                                              linearBeforeReset: Int(seed % 2)), seed: seed)
                    }
                }
            }
        }
    }

    @Test("sequence_lens (zero, partial, full), peepholes, clip, input_forget and other activations")
    func recurrentOptions() throws {
        let lengths = [0, 3, 5, 1]
        try compare(Recurrent(op: "LSTM", batch: 4, direction: "bidirectional", initialStates: true, lengths: lengths, peepholes: true), seed: 11)
        try compare(Recurrent(op: "LSTM", batch: 4, direction: "reverse", lengths: lengths, clip: 0.4, inputForget: true), seed: 12)
        try compare(Recurrent(op: "LSTM", activations: ["HardSigmoid", "ScaledTanh", "Softsign"]), seed: 13)
        try compare(Recurrent(op: "LSTM", direction: "bidirectional",
                              activations: ["Sigmoid", "Tanh", "Tanh", "Affine", "LeakyRelu", "Elu"]), seed: 14)
        for lbr in [0, 1] {
            try compare(Recurrent(op: "GRU", batch: 4, direction: "bidirectional", initialStates: true, lengths: lengths, clip: 0.5,
                                  linearBeforeReset: lbr), seed: 15)
            try compare(Recurrent(op: "GRU", linearBeforeReset: lbr, activations: ["Softplus", "ThresholdedRelu"]), seed: 16)
        }
        try compare(Recurrent(op: "RNN", batch: 4, direction: "bidirectional", lengths: lengths, activations: ["Relu", "Sigmoid"]), seed: 17)
    }

    @Test("a batch of one splits its hidden units across the cores; a large batch splits its rows")
    func recurrentSplits() throws {
        // 128 hidden units: R is large enough for the unit split at batch 1 (with two or more workers).
        for op in ["LSTM", "GRU", "RNN"] {
            try compare(Recurrent(op: op, steps: 6, batch: 1, inputSize: 16, hidden: 128, direction: "bidirectional",
                                  initialStates: true, peepholes: op == "LSTM", linearBeforeReset: 1), seed: 21)
        }
        try compare(Recurrent(op: "GRU", steps: 4, batch: 1, inputSize: 8, hidden: 128, linearBeforeReset: 0), seed: 22)
        // Rows split: batch × per-row work above 2^21 multiply-adds; odd sizes and a ragged batch.
        try compare(Recurrent(op: "LSTM", steps: 12, batch: 9, inputSize: 40, hidden: 70, direction: "bidirectional",
                              lengths: [12, 0, 5, 12, 1, 7, 12, 3, 11]), seed: 23)
        try compare(Recurrent(op: "GRU", steps: 12, batch: 7, inputSize: 40, hidden: 90, linearBeforeReset: 0), seed: 24)
    }

    @Test("vector sigmoid, tanh and SiLU equal libm's to a few ulp at every instruction set, NaN and infinities included")
    func activationKernels() {
        var numbers = Numbers(state: 5)
        let inputs = numbers.floats(997, 30) + numbers.floats(300, 0.7) + [0, -0, .nan, .infinity, -.infinity, 1e-30, -1e-30, 88, -88, 100, -100]
        for level in 0...2 {
            for kind in 0...2 {
                var values = inputs
                guard dk_activation_level(Int32(level), Int32(kind), &values, values.count) == 0 else { continue }
                for (x, v) in zip(inputs, values) {
                    let sigmoid = 1 / (1 + Foundation.exp(-Double(x)))
                    // SiLU at -infinity is -inf/(1 + inf): NaN, as x·sigmoid(x) gives in float.
                    let expected = kind == 0 ? Float(sigmoid) : kind == 1 ? Float(Foundation.tanh(Double(x)))
                        : x == -.infinity ? .nan : Float(Double(x) * sigmoid)
                    if expected.isNaN { #expect(v.isNaN); continue }
                    if expected.isInfinite { #expect(v == expected); continue }
                    #expect(Swift.abs(v - expected) <= 4 * expected.ulp + 1e-37, "level \(level) kind \(kind) x \(x): \(v) vs \(expected)")
                }
            }
        }
    }

    /// A random ensemble of `trees` trees as the `nodes_*` and vote attributes; `plain` keeps to
    /// BRANCH_LEQ with missing values going false (the fast path).
    func randomEnsemble(_ numbers: inout Numbers, trees: Int, features: Int, columns: Int, prefix: String, plain: Bool) -> [Onnx_AttributeProto] {
        var treeIDs: [Int] = [], nodeIDs: [Int] = [], featureIDs: [Int] = [], modes: [String] = [], values: [Float] = []
        var trueIDs: [Int] = [], falseIDs: [Int] = [], missing: [Int] = []
        var vTrees: [Int] = [], vNodes: [Int] = [], vIDs: [Int] = [], vWeights: [Float] = []
        let rules = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
        for tree in 0..<trees {
            // Node ids shuffled (not positions), a tree of up to 31 nodes, built breadth first.
            let count = 2 * numbers.int(0..<16) + 1
            let ids = (0..<count).map { ($0 * 7 + tree) % count + 100 }
            for k in 0..<count {
                let leaf = 2 * k + 2 >= count
                treeIDs.append(tree); nodeIDs.append(ids[k])
                featureIDs.append(leaf ? 0 : numbers.int(0..<features))
                modes.append(leaf ? "LEAF" : (plain ? "BRANCH_LEQ" : rules[numbers.int(0..<rules.count)]))
                values.append(leaf ? 0 : Float(numbers.int(-4..<5)) / 4)  // on the grid the inputs use, so EQ and NEQ both happen
                trueIDs.append(leaf ? 0 : ids[2 * k + 1]); falseIDs.append(leaf ? 0 : ids[2 * k + 2])
                missing.append(plain ? 0 : numbers.int(0..<2))
                if leaf {
                    for _ in 0..<numbers.int(1..<3) {
                        vTrees.append(tree); vNodes.append(ids[k]); vIDs.append(numbers.int(0..<columns)); vWeights.append(numbers.uniform(-1, 1))
                    }
                }
            }
        }
        return [intsAttribute("nodes_treeids", treeIDs), intsAttribute("nodes_nodeids", nodeIDs), intsAttribute("nodes_featureids", featureIDs),
                stringsAttribute("nodes_modes", modes), floatsAttribute("nodes_values", values), intsAttribute("nodes_truenodeids", trueIDs),
                intsAttribute("nodes_falsenodeids", falseIDs), intsAttribute("nodes_missing_value_tracks_true", missing),
                intsAttribute("\(prefix)_treeids", vTrees), intsAttribute("\(prefix)_nodeids", vNodes), intsAttribute("\(prefix)_ids", vIDs),
                floatsAttribute("\(prefix)_weights", vWeights)]
    }

    /// Feature rows on a quarter grid with some NaNs, so that every comparison and missing branch is taken.
    func rows(_ numbers: inout Numbers, _ rows: Int, _ features: Int) -> ONNXValue {
        .float(Tensor(shape: [rows, features], scalars: (0..<(rows * features)).map { _ in
            numbers.int(0..<10) == 0 ? .nan : Float(numbers.int(-5..<6)) / 4
        }))
    }

    func compareTrees(_ op: String, _ attributes: [Onnx_AttributeProto], _ x: ONNXValue, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let outputs = op == "TreeEnsembleClassifier" ? ["label", "scores"] : ["y"]
        func context() -> OpContext {
            let node = Node(index: 0, name: "trees", opType: op, domain: "ai.onnx.ml", inputs: ["x"], outputs: outputs,
                            attributes: Attributes(attributes, directory: nil), opset: 3)
            return OpContext(node: node, inputs: [x])
        }
        let fast = op == "TreeEnsembleClassifier" ? try ONNXOps.TreeEnsembleClassifier(context()) : try ONNXOps.TreeEnsembleRegressor(context())
        let reference = op == "TreeEnsembleClassifier" ? try ReferenceOps.TreeEnsembleClassifier(context()) : try ReferenceOps.TreeEnsembleRegressor(context())
        #expect(fast.count == reference.count, sourceLocation: sourceLocation)
        for (a, e) in zip(fast, reference) {
            switch (a, e) {
            case (.float(let a), .float(let e)): assertClose(a, e, atol: 1e-6, rtol: 1e-6, op, sourceLocation: sourceLocation)
            case (.int(let a), .int(let e)): #expect(a == e, sourceLocation: sourceLocation)
            case (.string(let a), .string(let e)): #expect(a == e, sourceLocation: sourceLocation)
            default: Issue.record("\(op): output types differ: \(a) and \(e)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("tree classifiers and regressors equal the direct walk: every rule, missing values, aggregates, transforms, batch splits")
    func treeEnsembles() throws {
        var numbers = Numbers(state: 31)
        for plain in [true, false] {
            for batch in [1, 7, 300] {
                let x = rows(&numbers, batch, 6)
                for (post, labels) in [("NONE", 4), ("SOFTMAX", 3), ("LOGISTIC", 5), ("SOFTMAX_ZERO", 3)] {
                    var classifier = randomEnsemble(&numbers, trees: 12, features: 6, columns: labels, prefix: "class", plain: plain)
                    classifier += [intsAttribute("classlabels_int64s", (0..<labels).map { $0 * 10 }), stringAttribute("post_transform", post),
                                   floatsAttribute("base_values", numbers.floats(labels))]
                    try compareTrees("TreeEnsembleClassifier", classifier, x)
                }
                for aggregate in ["SUM", "AVERAGE", "MIN", "MAX"] {
                    let regressor = randomEnsemble(&numbers, trees: 9, features: 6, columns: 2, prefix: "target", plain: plain)
                        + [intAttribute("n_targets", 2), stringAttribute("aggregate_function", aggregate), floatsAttribute("base_values", [0.5, -1])]
                    try compareTrees("TreeEnsembleRegressor", regressor, x)
                }
                // Binary: every vote in class 1, one score column, string labels.
                var binary = randomEnsemble(&numbers, trees: 5, features: 6, columns: 1, prefix: "class", plain: plain)
                binary = binary.map { a in a.name == "class_ids" ? intsAttribute("class_ids", a.ints.map { _ in 1 }) : a }
                binary += [stringsAttribute("classlabels_strings", ["no", "yes"]), stringAttribute("post_transform", "LOGISTIC")]
                try compareTrees("TreeEnsembleClassifier", binary, x)
            }
        }
    }

    @Test("a tree whose branches loop back is an error at the first run, as before")
    func treeCycle() throws {
        let attributes = [intsAttribute("nodes_treeids", [0, 0, 0]), intsAttribute("nodes_nodeids", [0, 1, 2]), intsAttribute("nodes_featureids", [0, 0, 0]),
                          stringsAttribute("nodes_modes", ["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"]), floatsAttribute("nodes_values", [0.5, 0.5, 0]),
                          intsAttribute("nodes_truenodeids", [1, 0, 0]), intsAttribute("nodes_falsenodeids", [2, 0, 0]),
                          intsAttribute("target_treeids", [0]), intsAttribute("target_nodeids", [2]), intsAttribute("target_ids", [0]),
                          floatsAttribute("target_weights", [1])]
        let node = Node(index: 0, name: "trees", opType: "TreeEnsembleRegressor", domain: "ai.onnx.ml", inputs: ["x"], outputs: ["y"],
                        attributes: Attributes(attributes, directory: nil), opset: 3)
        let message = errorMessage { _ = try ONNXOps.TreeEnsembleRegressor(OpContext(node: node, inputs: [.float(Tensor(shape: [1, 1], scalars: [0]))])) }
        #expect(message.contains("cycle"), "\(message)")
    }
}
