import CKernels
import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// The transformer layers (Sources/DistillNN/Transformer.swift): central-difference gradient checks
// of each layer for its input and every parameter, Hugging Face parameter names, padding that
// changes nothing, the inference plan against the autograd path, the vector kernels against
// their formulas, and copying a teacher's layers into a student.

/// A tiny encoder: 11 token ids, width 4, 2 heads, 2 layers, 6 positions.
private let tinyConfig = TransformerConfig(vocabularySize: 11, hiddenSize: 4, layers: 2, heads: 2, intermediateSize: 6, maxPositions: 6)

/// Every parameter of `module` redrawn from N(0, 0.5²) (LayerNorm weights around 1), so that the
/// layer norms see inputs of unit scale and central differences with ε = 1e-2 stay in the linear
/// regime (BERT's N(0, 0.02²) would make them divide by a tiny standard deviation).
private func spreadWeights(_ module: Module, seed: UInt64) {
    for (i, (name, t)) in module.namedParameters().enumerated() {
        let shift: Float = name.hasSuffix("LayerNorm.weight") ? 1 : 0
        t.assign(Tensor.testNormal(t.shape, seed: seed + UInt64(i), scale: 0.5, shift: shift, requiresGrad: false))
    }
}

/// Checks the gradients of `f` for `input` (when it requires one) and every parameter of `module`.
private func expectLayerGradients(_ label: String, _ module: Module, input: Tensor?, epsilon: Float = 1e-2,
                                  _ f: @escaping (Tensor?) -> Tensor, sourceLocation: SourceLocation = #_sourceLocation) {
    let parameters = module.namedParameters()
    let inputs = (input.map { [$0] } ?? []) + parameters.map(\.tensor)
    let report = expectGradients(label, inputs: inputs, epsilon: epsilon, sourceLocation: sourceLocation) { _ in f(input) }
    #expect(report.checkedElements == inputs.reduce(0) { $0 + $1.count }, "\(label): \(report)", sourceLocation: sourceLocation)
    let offset = input == nil ? 0 : 1
    let without = report.inputsWithoutGradient.map { $0 < offset ? "input" : parameters[$0 - offset].name }
    #expect(without.isEmpty, "\(label): no gradient reached \(without)", sourceLocation: sourceLocation)
}

@Suite struct TransformerLayerGradientTests {
    @Test func layerNorm() {
        let norm = LayerNorm(5, epsilon: 1e-5)
        spreadWeights(norm, seed: 400)
        let x = Tensor.testNormal([2, 3, 5], seed: 401)
        expectLayerGradients("LayerNorm", norm, input: x) { norm($0!) }
    }

    @Test func multiHeadSelfAttentionWithPadding() {
        var g = SeededGenerator(seed: 402)
        let attention = MultiHeadSelfAttention(hidden: 4, heads: 2, epsilon: 1e-5, generator: &g)
        spreadWeights(attention, seed: 403)
        let x = Tensor.testNormal([2, 3, 4], seed: 404)
        let mask = additiveAttentionMask([1, 1, 1, 1, 1, 0], batch: 2, length: 3)
        expectLayerGradients("MultiHeadSelfAttention", attention, input: x) { attention.forward($0!, additiveMask: mask) }
    }

    @Test func encoderLayerWithPadding() {
        var g = SeededGenerator(seed: 405)
        let layer = TransformerEncoderLayer(hidden: 4, heads: 2, intermediate: 6, epsilon: 1e-5, generator: &g)
        spreadWeights(layer, seed: 406)
        let x = Tensor.testNormal([2, 3, 4], seed: 407)
        let mask = additiveAttentionMask([1, 1, 0, 1, 1, 1], batch: 2, length: 3)
        expectLayerGradients("TransformerEncoderLayer", layer, input: x) { layer($0!, additiveMask: mask) }
    }

    @Test func embeddings() throws {
        var g = SeededGenerator(seed: 408)
        let embeddings = BertEmbeddings(tinyConfig, generator: &g)
        spreadWeights(embeddings, seed: 409)
        expectLayerGradients("BertEmbeddings", embeddings, input: nil) { _ in
            embeddings.forward(ids: [2, 5, 7, 3, 3, 1], tokenTypes: [0, 0, 1, 0, 1, 1], batch: 2, length: 3)
        }
    }

    @Test func wholeEncoderWithPoolingAndNormalisation() throws {
        let encoder = try BertEncoder(tinyConfig, seed: 410)
        spreadWeights(encoder, seed: 411)
        // The second row is padded (id 0, mask 0) after two tokens. Two layer norms, attention and
        // the L2 norm in a row curve more than one layer: a smaller step keeps the differences linear.
        expectLayerGradients("BertEncoder", encoder, input: nil, epsilon: 3e-3) { _ in
            encoder.embed(ids: [2, 5, 7, 3, 4, 9, 0, 0], mask: [1, 1, 1, 1, 1, 1, 0, 0], batch: 2, length: 4)
        }
    }
}

@Suite struct TransformerLayerBehaviourTests {
    @Test func parameterNamesAreHuggingFaces() throws {
        let names = Set(try BertEncoder(tinyConfig).namedParameters().map(\.name))
        let expected = Set<String>([
            "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight",
            "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
        ]).union((0..<2).flatMap { i in
            ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "attention.output.LayerNorm",
             "intermediate.dense", "output.dense", "output.LayerNorm"].flatMap { ["encoder.layer.\(i).\($0).weight", "encoder.layer.\(i).\($0).bias"] }
        })
        #expect(names == expected, "extra: \(names.subtracting(expected).sorted()); missing: \(expected.subtracting(names).sorted())")
        let shapes = Dictionary(uniqueKeysWithValues: try BertEncoder(tinyConfig).namedParameters().map { ($0.name, $0.tensor.shape) })
        #expect(shapes["encoder.layer.1.intermediate.dense.weight"] == [6, 4])
        #expect(shapes["encoder.layer.1.output.dense.weight"] == [4, 6])
        #expect(shapes["embeddings.position_embeddings.weight"] == [6, 4])
    }

    @Test func paddingDoesNotChangeASentence() throws {
        let encoder = try BertEncoder(tinyConfig, seed: 412)
        spreadWeights(encoder, seed: 413)
        let alone = encoder.embed(ids: [2, 5, 7], mask: [1, 1, 1], batch: 1, length: 3)
        let padded = encoder.embed(ids: [2, 5, 7, 0, 0, 3, 4, 9, 8, 1], mask: [1, 1, 1, 0, 0, 1, 1, 1, 1, 1], batch: 2, length: 5)
        assertClose(Array(padded.scalars.prefix(4)), alone.scalars, atol: 1e-6, rtol: 1e-5, "padded row")
        let norms = (0..<2).map { r in (0..<4).reduce(Float(0)) { $0 + padded.data[r * 4 + $1] * padded.data[r * 4 + $1] } }
        assertClose(norms, [1, 1], atol: 1e-6, rtol: 0, "unit norms")
        // forward(_:) reads id 0 as padding.
        let viaForward = encoder(Tensor(shape: [2, 5], scalars: [2, 5, 7, 0, 0, 3, 4, 9, 8, 1]))
        assertClose(viaForward, padded, atol: 0, rtol: 0, "forward with id 0 as padding")
    }

    @Test func inferencePlanMatchesTheAutogradPath() throws {
        let config = TransformerConfig(vocabularySize: 50, hiddenSize: 32, layers: 2, heads: 4, intermediateSize: 48, maxPositions: 40)
        let encoder = try BertEncoder(config, seed: 414)
        spreadWeights(encoder, seed: 415)
        var g = SeededGenerator(seed: 416)
        // Lengths 1 to 37 (longer than a vector of 16, odd sizes) and an empty sequence.
        let sequences: [[Int]] = [1, 5, 17, 37, 0, 2].map { n in (0..<n).map { _ in 1 + g.nextInt(below: 49) } }
        let length = sequences.map(\.count).max()!
        var ids: [Int] = [], mask: [Float] = []
        for s in sequences { ids += s + [Int](repeating: 0, count: length - s.count); mask += s.map { _ in 1 } + [Float](repeating: 0, count: length - s.count) }
        let reference = withNoGrad { encoder.embed(ids: ids, mask: mask, batch: sequences.count, length: length) }
        let plan = TransformerInferencePlan(encoder)
        let fast = plan.embed(sequences: sequences)
        assertClose(fast, reference, atol: 2e-5, rtol: 1e-4, "plan vs module")
        #expect(Array(fast.scalars[(4 * 32)..<(5 * 32)]) == [Float](repeating: 0, count: 32), "an empty sequence gives zeros")
        #expect(throws: TensorError.self) { try plan.validate(sequences: [[1, 50]]) }
        #expect(throws: TensorError.self) { try plan.validate(sequences: [[Int](repeating: 1, count: 41)]) }
        #expect(throws: TensorError.self) { try encoder.validate(ids: [1, -1], mask: [1, 1], batch: 1, length: 2) }
        try plan.validate(sequences: sequences)
    }

    @Test func copyLayersFromATeacher() throws {
        let teacher = try BertEncoder(TransformerConfig(vocabularySize: 11, hiddenSize: 4, layers: 4, heads: 2, intermediateSize: 6, maxPositions: 6), seed: 417)
        let student = try BertEncoder(TransformerConfig(vocabularySize: 11, hiddenSize: 4, layers: 2, heads: 2, intermediateSize: 3, maxPositions: 6), seed: 418)
        let (copied, skipped) = try student.copyLayers(from: teacher, layerMap: [0: 1, 1: 3])
        let t = teacher.stateDict(), s = student.stateDict()
        #expect(s["encoder.layer.1.attention.self.query.weight"]!.scalars == t["encoder.layer.3.attention.self.query.weight"]!.scalars)
        #expect(s["encoder.layer.0.output.LayerNorm.bias"]!.scalars == t["encoder.layer.1.output.LayerNorm.bias"]!.scalars)
        #expect(s["embeddings.word_embeddings.weight"]!.scalars == t["embeddings.word_embeddings.weight"]!.scalars)
        // The narrower feed-forward block keeps its own initialisation.
        #expect(skipped.sorted() == ["encoder.layer.0.intermediate.dense.bias", "encoder.layer.0.intermediate.dense.weight",
                                     "encoder.layer.0.output.dense.weight", "encoder.layer.1.intermediate.dense.bias",
                                     "encoder.layer.1.intermediate.dense.weight", "encoder.layer.1.output.dense.weight"])
        #expect(copied.count == student.namedParameters().count - skipped.count)
        #expect(throws: TensorError.self) { try student.copyLayers(from: teacher, layerMap: [2: 0]) }
        #expect(throws: TensorError.self) { try student.copyLayers(from: teacher, layerMap: [0: 4]) }
    }

    @Test func configurationsThatCannotWorkAreErrors() {
        #expect(throws: TensorError.self) { try BertEncoder(TransformerConfig(vocabularySize: 10, hiddenSize: 6, layers: 1, heads: 4, intermediateSize: 8)) }
        #expect(throws: TensorError.self) { try BertEncoder(TransformerConfig(vocabularySize: 0, hiddenSize: 4, layers: 1, heads: 2, intermediateSize: 8)) }
    }
}

@Suite struct TransformerKernelTests {
    /// GELU, layer norm with residual, and softmax at every instruction set this CPU has, against
    /// the scalar formulas (erf from libm, sums in Double).
    @Test func vectorKernelsMatchTheFormulas() {
        let values = Tensor.testNormal([3, 37], seed: 420, scale: 3, requiresGrad: false).scalars + [0, -0, 40, -40, 1e-8]
        let residual = Tensor.testNormal([3, 37], seed: 421, requiresGrad: false).scalars
        let gamma = Tensor.testNormal([37], seed: 422, requiresGrad: false).scalars, beta = Tensor.testNormal([37], seed: 423, requiresGrad: false).scalars
        var levels = 0
        for level: Int32 in 0...2 {
            var gelu = values
            guard dk_transformer_kernel_level(level, 0, &gelu, nil, 1, gelu.count, nil, nil, 0) == 0 else { continue }
            levels += 1
            let expected = values.map { v in Float(0.5 * Double(v) * (1 + erf(Double(v) / 2.0.squareRoot()))) }
            assertClose(gelu, expected, atol: 3e-7, rtol: 1e-6, "gelu level \(level)")

            var norm = Array(values.prefix(3 * 37))
            _ = dk_transformer_kernel_level(level, 1, &norm, residual, 3, 37, gamma, beta, 1e-12)
            var expectedNorm: [Float] = []
            for r in 0..<3 {
                let row = (0..<37).map { Double(values[r * 37 + $0]) + Double(residual[r * 37 + $0]) }
                let mean = row.reduce(0, +) / 37, variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 37
                expectedNorm += (0..<37).map { Float((row[$0] - mean) / (variance + 1e-12).squareRoot() * Double(gamma[$0]) + Double(beta[$0])) }
            }
            assertClose(norm, expectedNorm, atol: 2e-6, rtol: 1e-5, "layer norm level \(level)")

            var soft = Array(values.prefix(3 * 37))
            _ = dk_transformer_kernel_level(level, 2, &soft, nil, 3, 37, nil, nil, 0)
            var expectedSoft: [Float] = []
            for r in 0..<3 {
                let row = (0..<37).map { Double(values[r * 37 + $0]) }
                let top = row.max()!, total = row.map { Foundation.exp($0 - top) }.reduce(0, +)
                expectedSoft += row.map { Float(Foundation.exp($0 - top) / total) }
            }
            assertClose(soft, expectedSoft, atol: 1e-7, rtol: 1e-5, "softmax level \(level)")
        }
        #expect(levels >= 1)
    }
}

/// A transformer's size comes from a config file: products are checked, and the whole model's
/// weights must fit the memory budget before a layer is built (a billion layers grew memory).
@Suite struct TransformerConfigLimitTests {
    @Test func hugeConfigsAreRefusedBeforeBuilding() {
        var config = TransformerConfig.miniLML6
        #expect((try? config.validate()) != nil)
        config.layers = 1_000_000_000
        #expect(throws: TensorError.self) { try config.validate() }
        config = .miniLML6
        config.typeVocabularySize = Int.max / 2
        #expect(throws: TensorError.self) { try config.validate() }
        config = .miniLML6
        config.vocabularySize = 1 << 62
        #expect(throws: TensorError.self) { try config.validate() }
    }
}
