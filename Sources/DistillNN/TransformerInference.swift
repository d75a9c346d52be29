import CKernels
import DistillTensor
import Foundation

/// A `BertEncoder` run for inference only: no autograd graph, and no padding.
///
/// The tokens of all sequences of a batch are packed into one [T, D] matrix (T the sum of the
/// sequences' real lengths), so the dense layers (the fused query/key/value product, the output
/// projection and both feed-forward products) are one large GEMM each over real tokens only, and
/// attention runs per (sequence, head) on exactly that sequence's L×L scores, never on padding.
/// GELU, layer norm and the attention softmax are vector kernels (Sources/CKernels/transformer.c).
///
/// The plan keeps a copy of the weights in its own layout (Q, K and V stacked into one [3D, D]
/// matrix per layer), taken when it is built: build it after training or loading.
public final class TransformerInferencePlan: @unchecked Sendable {
    public let config: TransformerConfig
    private struct LayerWeights {
        let qkv: Tensor, qkvBias: Tensor          // [3D, D], [3D]
        let attentionOut: Tensor, attentionOutBias: Tensor
        let attentionNormWeight: Tensor, attentionNormBias: Tensor
        let intermediate: Tensor, intermediateBias: Tensor
        let output: Tensor, outputBias: Tensor
        let outputNormWeight: Tensor, outputNormBias: Tensor
    }
    private let layers: [LayerWeights]
    private let wordEmbeddings: Tensor, positionEmbeddings: Tensor, tokenTypeEmbeddings: Tensor
    private let embeddingNormWeight: Tensor, embeddingNormBias: Tensor

    public init(_ encoder: BertEncoder) {
        config = encoder.config
        let d = config.hiddenSize
        wordEmbeddings = encoder.embeddings.wordEmbeddings.weight.copy()
        positionEmbeddings = encoder.embeddings.positionEmbeddings.weight.copy()
        tokenTypeEmbeddings = encoder.embeddings.tokenTypeEmbeddings.weight.copy()
        embeddingNormWeight = encoder.embeddings.layerNorm.weight.copy()
        embeddingNormBias = encoder.embeddings.layerNorm.bias.copy()
        layers = encoder.encoder.layers.map { layer in
            let p = layer.attention.projections
            let qkv = Tensor(uninitializedShape: [3 * d, d]), qkvBias = Tensor(uninitializedShape: [3 * d])
            for (i, linear) in [p.query, p.key, p.value].enumerated() {
                (qkv.data + i * d * d).update(from: linear.weight.data, count: d * d)
                if let bias = linear.bias { (qkvBias.data + i * d).update(from: bias.data, count: d) }
                else { (qkvBias.data + i * d).update(repeating: 0, count: d) }
            }
            func bias(_ l: Linear) -> Tensor { l.bias?.copy() ?? Tensor.zeros([l.weight.shape[0]]) }
            return LayerWeights(
                qkv: qkv, qkvBias: qkvBias,
                attentionOut: layer.attention.output.dense.weight.copy(), attentionOutBias: bias(layer.attention.output.dense),
                attentionNormWeight: layer.attention.output.layerNorm.weight.copy(), attentionNormBias: layer.attention.output.layerNorm.bias.copy(),
                intermediate: layer.intermediate.dense.weight.copy(), intermediateBias: bias(layer.intermediate.dense),
                output: layer.output.dense.weight.copy(), outputBias: bias(layer.output.dense),
                outputNormWeight: layer.output.layerNorm.weight.copy(), outputNormBias: layer.output.layerNorm.bias.copy())
        }
    }

    /// Sentence vectors [n, D] for n token sequences (each already with its special tokens and
    /// at most `config.maxPositions` long, every id inside the vocabulary: check untrusted ids
    /// with `BertEncoder.validate` or `validate(sequences:)`). An empty sequence gives zeros.
    public func embed(sequences: [[Int]]) -> Tensor {
        let d = config.hiddenSize
        let out = Tensor.zeros([sequences.count, d])
        let offsets = sequences.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        let total = offsets.last!
        if total == 0 { return out }
        let h = hiddenStates(sequences: sequences, offsets: offsets)
        for (s, sequence) in sequences.enumerated() where !sequence.isEmpty {
            let o = out.data + s * d
            for t in offsets[s]..<offsets[s + 1] {
                let row = h.data + t * d
                for k in 0..<d { o[k] += row[k] }
            }
            let inverse = 1 / Float(sequence.count)
            var norm: Float = 0
            for k in 0..<d { o[k] *= inverse; norm += o[k] * o[k] }
            if config.normalizesEmbeddings {
                let scale = 1 / max(norm.squareRoot(), 1e-12)
                for k in 0..<d { o[k] *= scale }
            }
        }
        return out
    }

    /// Throws when a sequence is too long for the position table or holds an id outside the vocabulary.
    public func validate(sequences: [[Int]]) throws {
        for (i, s) in sequences.enumerated() {
            guard s.count <= config.maxPositions else {
                throw TensorError("sequence \(i) has \(s.count) tokens, more than the model's \(config.maxPositions) positions (truncate it)")
            }
            if let bad = s.first(where: { $0 < 0 || $0 >= config.vocabularySize }) {
                throw TensorError("sequence \(i): token id \(bad) is outside the vocabulary of \(config.vocabularySize)")
            }
        }
    }

    /// The last layer's token vectors, packed: [T, D] with sequence s in rows offsets[s]..<offsets[s+1].
    public func hiddenStates(sequences: [[Int]]) -> Tensor {
        hiddenStates(sequences: sequences, offsets: sequences.reduce(into: [0]) { $0.append($0.last! + $1.count) })
    }

    private func hiddenStates(sequences: [[Int]], offsets: [Int]) -> Tensor {
        let d = config.hiddenSize, total = offsets.last!, inter = config.intermediateSize
        let h = Tensor(uninitializedShape: [total, d])
        // Embeddings: word + position + token type 0, then layer norm.
        for (s, sequence) in sequences.enumerated() {
            for (position, id) in sequence.enumerated() {
                let o = h.data + (offsets[s] + position) * d
                let w = wordEmbeddings.data + id * d, p = positionEmbeddings.data + position * d, t = tokenTypeEmbeddings.data
                for k in 0..<d { o[k] = w[k] + p[k] + t[k] }
            }
        }
        normalizeRows(h, residual: nil, rows: total, weight: embeddingNormWeight, bias: embeddingNormBias)
        let qkv = Tensor(uninitializedShape: [total, 3 * d]), context = Tensor(uninitializedShape: [total, d])
        let projected = Tensor(uninitializedShape: [total, d]), hidden = Tensor(uninitializedShape: [total, inter])
        for layer in layers {
            dense(h, layer.qkv, layer.qkvBias, into: qkv, rows: total)
            attention(qkv: qkv, into: context, offsets: offsets)
            dense(context, layer.attentionOut, layer.attentionOutBias, into: projected, rows: total)
            normalizeRows(h, residual: projected, rows: total, weight: layer.attentionNormWeight, bias: layer.attentionNormBias)
            dense(h, layer.intermediate, layer.intermediateBias, into: hidden, rows: total)
            let x = SharedPointer(hidden.data)
            Parallel.forChunks(total, costPerItem: inter * 8) { r in
                dk_gelu_erf_inplace(x.p + r.lowerBound * inter, r.count * inter)
            }
            dense(hidden, layer.output, layer.outputBias, into: projected, rows: total)
            normalizeRows(h, residual: projected, rows: total, weight: layer.outputNormWeight, bias: layer.outputNormBias)
        }
        return h
    }

    /// out = x·Wᵀ + b for `rows` rows (BLAS, split across threads when large).
    private func dense(_ x: Tensor, _ weight: Tensor, _ bias: Tensor, into out: Tensor, rows: Int) {
        let n = weight.shape[0], k = weight.shape[1]
        for r in 0..<rows { (out.data + r * n).update(from: bias.data, count: n) }
        BLAS.sgemm(transposeB: true, m: rows, n: n, k: k, a: x.data, lda: k, b: weight.data, ldb: k,
                   beta: 1, c: out.data, ldc: n)
    }

    /// x = LayerNorm(x + residual) row by row, in place.
    private func normalizeRows(_ x: Tensor, residual: Tensor?, rows: Int, weight: Tensor, bias: Tensor) {
        let d = config.hiddenSize, eps = config.layerNormEpsilon
        let xp = SharedPointer(x.data), rp = residual.map { SharedPointer($0.data) }
        let g = SharedPointer(weight.data), b = SharedPointer(bias.data)
        Parallel.forChunks(rows, costPerItem: d * 4) { r in
            dk_layer_norm_rows(xp.p + r.lowerBound * d, rp.map { UnsafePointer($0.p + r.lowerBound * d) }, r.count, d, g.p, b.p, eps)
        }
    }

    /// Scaled dot-product attention of every (sequence, head) pair, read from the packed [T, 3D]
    /// query/key/value rows, written to the packed [T, D] context (head h in columns h·dh..<(h+1)·dh).
    private func attention(qkv: Tensor, into context: Tensor, offsets: [Int]) {
        let d = config.hiddenSize, heads = config.heads, dh = config.headSize
        let sequences = offsets.count - 1
        let pairs = sequences * heads
        let longest = (0..<sequences).map { offsets[$0 + 1] - offsets[$0] }.max() ?? 0
        let q = SharedPointer(qkv.data), c = SharedPointer(context.data)
        let scale = 1 / Float(dh).squareRoot()
        // Work per pair grows with L²·dh: split pairs across threads once there is enough of it.
        let work = (0..<sequences).reduce(0) { $0 + (offsets[$1 + 1] - offsets[$1]) * (offsets[$1 + 1] - offsets[$1]) } * heads * dh
        let chunks = work >= 1 << 18 ? Parallel.workers : 1
        Parallel.forEachChunk(pairs, chunks: chunks) { _, range in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(longest * longest, 1))
            defer { scores.deallocate() }
            for pair in range {
                let s = pair / heads, head = pair % heads
                let start = offsets[s], length = offsets[s + 1] - start
                if length == 0 { continue }
                let base = q.p + start * 3 * d + head * dh
                BLAS.sgemm(transposeB: true, m: length, n: length, k: dh, alpha: scale, a: base, lda: 3 * d,
                           b: base + d, ldb: 3 * d, c: scores, ldc: length, split: .none)
                dk_softmax_rows(scores, length, length, length)
                BLAS.sgemm(m: length, n: dh, k: length, a: scores, lda: length, b: base + 2 * d, ldb: 3 * d,
                           c: c.p + start * d + head * dh, ldc: d, split: .none)
            }
        }
    }
}
