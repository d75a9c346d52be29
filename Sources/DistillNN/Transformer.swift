import DistillTensor
import Foundation

// BERT-style transformer encoders (Devlin et al. 2019, arXiv:1810.04805; Vaswani et al. 2017,
// arXiv:1706.03762): the teacher all-MiniLM-L6-v2 and the smaller students distilled from it.
// Post-LN layers as in BERT: attention → add & norm → feed-forward (GELU) → add & norm.
//
// Parameter names are Hugging Face's (`embeddings.word_embeddings.weight`,
// `encoder.layer.0.attention.self.query.weight`, `encoder.layer.0.attention.output.LayerNorm.bias`,
// ...), so a `BertModel` checkpoint loads by name; the modules mirror its nesting for that reason
// (the attention block's add & norm lives in `attention.output`, as in `BertSelfOutput`). Each
// module lists its children explicitly, since names like `self` and `LayerNorm` are not what
// Module's reflection would derive from Swift property names.
//
// Inputs are token ids with an attention mask (1 for a real token, 0 for padding). Padding keys
// get a large negative score (−1e9) before the softmax, so no real token attends to them; the
// sentence vector is the mean over real tokens, optionally L2-normalised (sentence-transformers).
// `TransformerInferencePlan` (TransformerInference.swift) runs the same network without the
// autograd graph and without padding, for speed.

/// The sizes of a BERT-style encoder.
public struct TransformerConfig: Codable, Equatable, Sendable {
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    public var typeVocabularySize: Int
    public var layerNormEpsilon: Float
    /// Whether the sentence vector is divided by its Euclidean norm (sentence-transformers' Normalize).
    public var normalizesEmbeddings: Bool

    public init(vocabularySize: Int, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int,
                maxPositions: Int = 512, typeVocabularySize: Int = 2, layerNormEpsilon: Float = 1e-12,
                normalizesEmbeddings: Bool = true) {
        self.vocabularySize = vocabularySize; self.hiddenSize = hiddenSize; self.layers = layers
        self.heads = heads; self.intermediateSize = intermediateSize; self.maxPositions = maxPositions
        self.typeVocabularySize = typeVocabularySize; self.layerNormEpsilon = layerNormEpsilon
        self.normalizesEmbeddings = normalizesEmbeddings
    }

    /// all-MiniLM-L6-v2: 6 layers, 384 wide, 12 heads, 1536 in the feed-forward block.
    public static let miniLML6 = TransformerConfig(vocabularySize: 30522, hiddenSize: 384, layers: 6, heads: 12,
                                                   intermediateSize: 1536)

    /// Width of one attention head.
    public var headSize: Int { hiddenSize / max(heads, 1) }

    /// Throws, naming the field, when the sizes cannot make an encoder.
    public func validate() throws {
        let positive: [(String, Int)] = [("vocabulary size", vocabularySize), ("hidden size", hiddenSize), ("layers", layers),
                                         ("heads", heads), ("intermediate size", intermediateSize),
                                         ("max positions", maxPositions), ("token type vocabulary size", typeVocabularySize)]
        for (name, value) in positive where value < 1 { throw TensorError("transformer: \(name) must be at least 1, got \(value)") }
        guard hiddenSize % heads == 0 else {
            throw TensorError("transformer: hidden size \(hiddenSize) is not divisible by \(heads) heads")
        }
        guard layerNormEpsilon > 0, layerNormEpsilon.isFinite else {
            throw TensorError("transformer: layer norm epsilon must be positive, got \(layerNormEpsilon)")
        }
        let limit = 1 << 28
        for (name, a, b) in [("vocabulary × hidden", vocabularySize, hiddenSize), ("hidden × intermediate", hiddenSize, intermediateSize),
                             ("positions × hidden", maxPositions, hiddenSize)] {
            guard let value = CheckedSize.product([a, b]), value <= limit else {
                throw TensorError("transformer: \(name) = \(a) × \(b) parameters in one matrix, over the \(limit) limit")
            }
        }
        // The whole model's weights (per layer: attention 4h² + 4h, feed-forward 2·h·i + h + i, two
        // layer norms 4h), as float32, within the memory budget: a config saying a billion layers is
        // an error here, not memory growing layer by layer.
        let h = hiddenSize, i = intermediateSize
        let tables = [vocabularySize, maxPositions, typeVocabularySize, 2].reduce(Optional(0)) { sum, n in sum.flatMap { CheckedSize.add($0, n) } }
        let embeddings = tables.flatMap { CheckedSize.product([$0, h]) }
        let perLayer = 4 * h * h + 2 * h * i + 9 * h + i  // h² and h·i are within the limit above
        guard let embeddings, let total = CheckedSize.add(embeddings, CheckedSize.product([layers, perLayer]) ?? Int.max),
              let bytes = CheckedSize.product([total, 4]), bytes <= MemoryBudget.limitBytes else {
            throw TensorError("transformer: \(layers) layers of width \(h) need more than the memory budget of \(MemoryBudget.describe(MemoryBudget.limitBytes)) for their weights (set DISTILL_MAX_MEMORY to raise it)")
        }
    }
}

/// N(0, 0.02²) weights and zero biases, BERT's initialisation (`initializer_range`).
private func bertLinear(_ inFeatures: Int, _ outFeatures: Int, _ generator: inout SeededGenerator) -> Linear {
    let layer = Linear(inFeatures, outFeatures, generator: &generator)
    layer.weight.assign(Tensor.randomNormal(layer.weight.shape, std: 0.02, using: &generator))
    layer.bias?.assign(Tensor.zeros([outFeatures]))
    return layer
}

/// Layer normalisation over the last axis with a learned affine map (`nn.LayerNorm(d)`).
public final class LayerNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let epsilon: Float
    public init(_ features: Int, epsilon: Float = 1e-12) {
        weight = Tensor.ones([features], requiresGrad: true)
        bias = Tensor.zeros([features], requiresGrad: true)
        self.epsilon = epsilon
    }
    public override func forward(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, epsilon: epsilon) }
}

/// The query, key and value projections (Hugging Face's `attention.self`).
public final class AttentionProjections: Module {
    public let query: Linear, key: Linear, value: Linear
    init(_ hidden: Int, _ generator: inout SeededGenerator) {
        query = bertLinear(hidden, hidden, &generator)
        key = bertLinear(hidden, hidden, &generator)
        value = bertLinear(hidden, hidden, &generator)
    }
    public override var children: [(name: String, module: Module)] { [("query", query), ("key", key), ("value", value)] }
    /// The three projections side by side: [..., D] → [..., 3D] (queries, keys, values).
    public override func forward(_ x: Tensor) -> Tensor { Tensor.concat([query(x), key(x), value(x)], axis: -1) }
}

/// A dense layer, then add & norm: `LayerNorm(dense(x) + residual)` (Hugging Face's
/// `BertSelfOutput` and `BertOutput`, named `output` in both places).
public final class DenseAddNorm: Module {
    public let dense: Linear
    public let layerNorm: LayerNorm
    init(_ inFeatures: Int, _ outFeatures: Int, epsilon: Float, _ generator: inout SeededGenerator) {
        dense = bertLinear(inFeatures, outFeatures, &generator)
        layerNorm = LayerNorm(outFeatures, epsilon: epsilon)
    }
    public override var children: [(name: String, module: Module)] { [("dense", dense), ("LayerNorm", layerNorm)] }
    public func forward(_ x: Tensor, residual: Tensor) -> Tensor { layerNorm(dense(x) + residual) }
    /// Without a residual: `LayerNorm(dense(x))`.
    public override func forward(_ x: Tensor) -> Tensor { layerNorm(dense(x)) }
}

/// The first half of the feed-forward block: `gelu(dense(x))` (Hugging Face's `intermediate`).
public final class FeedForwardIntermediate: Module {
    public let dense: Linear
    init(_ hidden: Int, _ intermediate: Int, _ generator: inout SeededGenerator) {
        dense = bertLinear(hidden, intermediate, &generator)
    }
    public override var children: [(name: String, module: Module)] { [("dense", dense)] }
    public override func forward(_ x: Tensor) -> Tensor { dense(x).gelu() }
}

/// Additive attention mask for [B, L] keep-weights: [B, 1, 1, L], 0 where a token is kept and
/// −1e9 where it is padding (exp of the shifted score underflows to exactly 0).
public func additiveAttentionMask(_ mask: [Float], batch: Int, length: Int) -> Tensor {
    precondition(mask.count == batch * length, "additiveAttentionMask: \(mask.count) values for [\(batch), \(length)]")
    return Tensor(shape: [batch, 1, 1, length], scalars: mask.map { $0 > 0 ? 0 : -1e9 })
}

/// The attention scores of a `MultiHeadSelfAttention` as a module of its own (the identity, no
/// parameters), so that a feature tap on `….attention.scores` records them: [B, A, L, L], the
/// logits of each head's attention distribution over the keys, padding keys already at −1e9
/// (attention transfer reads them).
public final class AttentionScores: Module {
    public override func forward(_ x: Tensor) -> Tensor { x }
}

/// Multi-head self-attention with its output projection and add & norm (Hugging Face's
/// `BertAttention`: `self.{query,key,value}`, `output.{dense,LayerNorm}`):
/// per head h, `softmax(Q_h·K_hᵀ/√d_h + mask)·V_h`; the heads are concatenated, projected by
/// `output.dense`, added to the input and layer-normalised.
public final class MultiHeadSelfAttention: Module {
    public let projections: AttentionProjections
    public let output: DenseAddNorm
    /// Passes the scores through, for feature taps (`AttentionScores`).
    public let scores = AttentionScores()
    public let heads: Int
    public init(hidden: Int, heads: Int, epsilon: Float = 1e-12, generator: inout SeededGenerator) {
        precondition(heads >= 1 && hidden % heads == 0, "MultiHeadSelfAttention: hidden size \(hidden) is not divisible by \(heads) heads")
        projections = AttentionProjections(hidden, &generator)
        output = DenseAddNorm(hidden, hidden, epsilon: epsilon, &generator)
        self.heads = heads
    }
    public override var children: [(name: String, module: Module)] { [("self", projections), ("output", output), ("scores", scores)] }

    /// x [B, L, D] and an additive mask [B, 1, 1, L] (`additiveAttentionMask`, or nil: no
    /// padding) → [B, L, D].
    public func forward(_ x: Tensor, additiveMask: Tensor?) -> Tensor {
        precondition(x.rank == 3, "MultiHeadSelfAttention: input must be [batch, length, hidden], got \(x.shape)")
        let b = x.shape[0], l = x.shape[1], d = x.shape[2], dh = d / heads
        func split(_ t: Tensor, _ order: [Int]) -> Tensor { t.reshaped([b, l, heads, dh]).permuted(order) }
        let q = split(projections.query(x), [0, 2, 1, 3])    // [B, H, L, dh]
        let kT = split(projections.key(x), [0, 2, 3, 1])     // [B, H, dh, L]
        let v = split(projections.value(x), [0, 2, 1, 3])    // [B, H, L, dh]
        var logits = q.matmul(kT).scaled(1 / Float(dh).squareRoot())
        if let additiveMask { logits = logits + additiveMask }
        let context = scores(logits).softmax(axis: -1).matmul(v).permuted([0, 2, 1, 3]).reshaped([b, l, d])
        return output.forward(context, residual: x)
    }
    public override func forward(_ x: Tensor) -> Tensor { forward(x, additiveMask: nil) }
}

/// One post-LN encoder layer (Hugging Face's `BertLayer`): attention with add & norm, then
/// `LayerNorm(dense₂(gelu(dense₁(h))) + h)`.
public final class TransformerEncoderLayer: Module {
    public let attention: MultiHeadSelfAttention
    public let intermediate: FeedForwardIntermediate
    public let output: DenseAddNorm
    public init(hidden: Int, heads: Int, intermediate intermediateSize: Int, epsilon: Float = 1e-12, generator: inout SeededGenerator) {
        attention = MultiHeadSelfAttention(hidden: hidden, heads: heads, epsilon: epsilon, generator: &generator)
        intermediate = FeedForwardIntermediate(hidden, intermediateSize, &generator)
        output = DenseAddNorm(intermediateSize, hidden, epsilon: epsilon, &generator)
    }
    public override var children: [(name: String, module: Module)] {
        [("attention", attention), ("intermediate", intermediate), ("output", output)]
    }
    /// x [B, L, D], additive mask [B, 1, 1, L] or nil → [B, L, D]. Records a feature tap like
    /// `callAsFunction` does, so hidden-state transfer can tap `encoder.layer.N`.
    public func callAsFunction(_ x: Tensor, additiveMask: Tensor?) -> Tensor {
        let h = attention.forward(x, additiveMask: additiveMask)
        let y = output.forward(intermediate(h), residual: h)
        if let tap { tap.taps.outputs[tap.name] = y }
        return y
    }
    /// Without padding.
    public override func forward(_ x: Tensor) -> Tensor { self(x, additiveMask: nil) }
}

/// One embedding table as a module with a single `weight` [vocabulary, D], so that Hugging
/// Face's `embeddings.word_embeddings.weight` names come out of the usual traversal.
public final class EmbeddingTable: Module {
    public let weight: Tensor
    public init(_ rows: Int, _ width: Int, generator: inout SeededGenerator) {
        weight = Tensor.randomNormal([rows, width], std: 0.02, using: &generator, requiresGrad: true)
    }
    /// Ids [...] → [..., D].
    public func lookup(_ ids: [Int], shape: [Int]) -> Tensor { embedding(weight, indices: ids, indexShape: shape) }
    /// x: ids as floats.
    public override func forward(_ x: Tensor) -> Tensor { lookup(x.scalars.map { Int($0) }, shape: x.shape) }
}

/// Word, position and token-type embeddings, summed and layer-normalised (`BertEmbeddings`).
public final class BertEmbeddings: Module {
    public let wordEmbeddings: EmbeddingTable
    public let positionEmbeddings: EmbeddingTable
    public let tokenTypeEmbeddings: EmbeddingTable
    public let layerNorm: LayerNorm
    public init(_ config: TransformerConfig, generator: inout SeededGenerator) {
        wordEmbeddings = EmbeddingTable(config.vocabularySize, config.hiddenSize, generator: &generator)
        positionEmbeddings = EmbeddingTable(config.maxPositions, config.hiddenSize, generator: &generator)
        tokenTypeEmbeddings = EmbeddingTable(config.typeVocabularySize, config.hiddenSize, generator: &generator)
        layerNorm = LayerNorm(config.hiddenSize, epsilon: config.layerNormEpsilon)
    }
    public override var children: [(name: String, module: Module)] {
        [("word_embeddings", wordEmbeddings), ("position_embeddings", positionEmbeddings),
         ("token_type_embeddings", tokenTypeEmbeddings), ("LayerNorm", layerNorm)]
    }

    /// Token ids [B·L] (row-major [B, L]) and optional token types → [B, L, D]. Positions are
    /// 0..<L for every row, as BERT's absolute position embeddings.
    public func forward(ids: [Int], tokenTypes: [Int]? = nil, batch: Int, length: Int) -> Tensor {
        let types = tokenTypes ?? [Int](repeating: 0, count: ids.count)
        let sum = wordEmbeddings.lookup(ids, shape: [batch, length])
            + positionEmbeddings.lookup(Array(0..<length), shape: [length])
            + tokenTypeEmbeddings.lookup(types, shape: [batch, length])
        return layerNorm(sum)
    }
    /// x: token ids as floats, [B, L].
    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2, "BertEmbeddings: token ids must be [batch, length], got \(x.shape)")
        return forward(ids: x.scalars.map { Int($0) }, batch: x.shape[0], length: x.shape[1])
    }
}

/// The stack of encoder layers (`encoder.layer.N`).
public final class TransformerLayerStack: Module {
    public let layer: Sequential
    public var layers: [TransformerEncoderLayer] { layer.layers.map { $0 as! TransformerEncoderLayer } }
    init(_ layers: [TransformerEncoderLayer]) { layer = Sequential(layers) }
    public override var children: [(name: String, module: Module)] { [("layer", layer)] }
    public override func forward(_ x: Tensor) -> Tensor { layer(x) }
}

/// A BERT-style sentence encoder: embeddings, N encoder layers, mean pooling over real tokens and
/// (when the configuration says so) L2 normalisation. A student is the same class with smaller
/// sizes; `copyLayers(from:layerMap:)` initialises it from a teacher where shapes match.
public final class BertEncoder: Module {
    public let config: TransformerConfig
    public let embeddings: BertEmbeddings
    public let encoder: TransformerLayerStack

    public init(_ config: TransformerConfig, seed: UInt64 = 0) throws {
        try config.validate()
        self.config = config
        var generator = SeededGenerator(seed: seed)
        embeddings = BertEmbeddings(config, generator: &generator)
        encoder = TransformerLayerStack((0..<config.layers).map { _ in
            TransformerEncoderLayer(hidden: config.hiddenSize, heads: config.heads, intermediate: config.intermediateSize,
                                    epsilon: config.layerNormEpsilon, generator: &generator)
        })
    }
    public override var children: [(name: String, module: Module)] { [("embeddings", embeddings), ("encoder", encoder)] }

    /// Checks a batch of token ids before it reaches the tables: ids inside the vocabulary,
    /// lengths within the position table, one mask value per id.
    public func validate(ids: [Int], mask: [Float], batch: Int, length: Int) throws {
        guard batch >= 0, length >= 0, ids.count == batch * length, mask.count == ids.count else {
            throw TensorError("encoder: \(ids.count) token ids and \(mask.count) mask values for a [\(batch), \(length)] batch")
        }
        guard length <= config.maxPositions else {
            throw TensorError("encoder: sequences of \(length) tokens are longer than the model's \(config.maxPositions) positions (truncate them)")
        }
        if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabularySize }) {
            throw TensorError("encoder: token id \(bad) is outside the vocabulary of \(config.vocabularySize)")
        }
    }

    /// The last layer's token vectors [B, L, D] for token ids [B·L] (row-major) and a mask of
    /// B·L values (1: token, 0: padding). Call `validate` first on untrusted ids.
    public func hiddenStates(ids: [Int], mask: [Float], batch: Int, length: Int, tokenTypes: [Int]? = nil) -> Tensor {
        var h = embeddings.forward(ids: ids, tokenTypes: tokenTypes, batch: batch, length: length)
        let additive = mask.allSatisfy { $0 > 0 } ? nil : additiveAttentionMask(mask, batch: batch, length: length)
        for layer in encoder.layers { h = layer(h, additiveMask: additive) }
        return h
    }

    /// Sentence vectors [B, D]: the mean of the real tokens' last hidden states, L2-normalised
    /// when `config.normalizesEmbeddings`.
    public func embed(ids: [Int], mask: [Float], batch: Int, length: Int) -> Tensor {
        let pooled = hiddenStates(ids: ids, mask: mask, batch: batch, length: length).maskedMeanPool(mask: mask)
        return config.normalizesEmbeddings ? pooled.l2Normalized() : pooled
    }

    /// x: token ids as floats, [B, L], padded with id 0 (`[PAD]` in BERT vocabularies), which
    /// the mask drops → sentence vectors [B, D]. Columns that are padding in every row are cut
    /// first (they change nothing and would cost L² attention), so the hidden states a feature tap
    /// records are [B, L', D] with L' the batch's longest text (`trimmedLength(_:)`).
    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2, "BertEncoder: token ids must be [batch, length], got \(x.shape)")
        let (batch, length) = (x.shape[0], x.shape[1])
        let kept = Self.trimmedLength(x)
        var ids: [Int] = []
        ids.reserveCapacity(batch * kept)
        for r in 0..<batch { for j in 0..<kept { ids.append(Int(x.data[r * length + j])) } }
        return embed(ids: ids, mask: ids.map { $0 == 0 ? 0 : 1 }, batch: batch, length: kept)
    }

    /// The columns of padded ids [B, L] that `forward` keeps: up to the last non-padding id of any row (at least 1).
    public static func trimmedLength(_ x: Tensor) -> Int {
        let (batch, length) = (x.shape[0], x.shape[1])
        var kept = 1
        for r in 0..<batch {
            var j = length
            while j > kept && x.data[r * length + j - 1] == 0 { j -= 1 }
            kept = max(kept, j)
        }
        return min(kept, length)
    }

    /// Copies a teacher's weights into this (smaller) encoder wherever the shapes match: the
    /// embeddings and, for each pair in `layerMap` (this encoder's layer → the teacher's layer,
    /// e.g. [0: 1, 1: 3, 2: 5]), the layer's tensors. Returns the names copied and the names left
    /// as initialised because their shapes differ.
    @discardableResult
    public func copyLayers(from teacher: BertEncoder, layerMap: [Int: Int]) throws -> (copied: [String], skipped: [String]) {
        for (mine, theirs) in layerMap {
            guard mine >= 0 && mine < config.layers else { throw TensorError("layer map: this encoder has no layer \(mine) (it has \(config.layers))") }
            guard theirs >= 0 && theirs < teacher.config.layers else {
                throw TensorError("layer map: the teacher has no layer \(theirs) (it has \(teacher.config.layers))")
            }
        }
        let source = teacher.stateDict()
        var pairs: [(String, String)] = embeddings.namedTensors().map { ("embeddings.\($0.name)", "embeddings.\($0.name)") }
        for (mine, theirs) in layerMap.sorted(by: { $0.key < $1.key }) {
            for (name, _, _) in encoder.layers[mine].namedTensors() {
                pairs.append(("encoder.layer.\(mine).\(name)", "encoder.layer.\(theirs).\(name)"))
            }
        }
        let mine = stateDict()
        var copied: [String] = [], skipped: [String] = []
        for (target, origin) in pairs {
            guard let t = mine[target], let s = source[origin] else { continue }
            if t.shape == s.shape { t.assign(s); copied.append(target) } else { skipped.append(target) }
        }
        return (copied, skipped)
    }
}
