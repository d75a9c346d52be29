import DistillTensor

/// The fastText student (Joulin, Grave, Bojanowski, Mikolov, EACL 2017, "Bag of Tricks for
/// Efficient Text Classification", arXiv:1607.01759): a text is the mean of the embeddings of its
/// tokens and of its hashed token bigrams, followed by a linear layer.
///
///     h = (1/|T|) Σ_{i ∈ T} E[i],   y = W·h + b
///
/// where T holds the text's token ids and, for each pair of neighbouring tokens (a, b), the row
/// `vocabulary + hash(a, b) mod bigramBuckets`. Input: [N, L] token ids held as Float (exact below
/// 2^24), 0 for padding (the tokenizer's [PAD]), tokens first and padding after. Output: [N, outputs].
/// It has no attention and no position: orders of magnitude cheaper than a transformer, and the
/// baseline every text student should beat.
public final class TokenBag: Module {
    /// [vocabulary + bigramBuckets, dimension]: token rows, then bigram rows.
    public let embedding: Tensor
    public let projection: Linear
    public let vocabulary: Int, bigramBuckets: Int

    public init(vocabulary: Int, bigramBuckets: Int, dimension: Int, outputs: Int, generator g: inout SeededGenerator) {
        precondition(vocabulary >= 2 && bigramBuckets >= 0 && dimension >= 1 && outputs >= 1, "TokenBag: sizes must be positive")
        self.vocabulary = vocabulary
        self.bigramBuckets = bigramBuckets
        // fastText's initialisation: U(±1/dimension).
        embedding = Tensor.randomUniform([vocabulary + bigramBuckets, dimension], low: -1 / Float(dimension), high: 1 / Float(dimension),
                                         using: &g, requiresGrad: true)
        projection = Linear(dimension, outputs, generator: &g)
    }

    /// The bigram row of tokens (a, b): a multiplicative hash, the same on every machine.
    @inline(__always) func bigramRow(_ a: Int, _ b: Int) -> Int {
        vocabulary + Int(((UInt64(a) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(b) &* 0xC2B2_AE3D_27D4_EB4F) >> 17) % UInt64(bigramBuckets))
    }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2, "TokenBag: input must be [N, L] token ids, got \(x.shape)")
        let (rows, length) = (x.shape[0], x.shape[1])
        var indices: [Int] = []
        var counts: [Int] = []
        indices.reserveCapacity(rows * length * 2)
        for r in 0..<rows {
            let start = indices.count
            var previous = -1
            for j in 0..<length {
                let id = Int(x.data[r * length + j])
                if id == 0 { break }
                precondition(id > 0 && id < vocabulary, "TokenBag: token id \(id) outside 1..<\(vocabulary)")
                indices.append(id)
                if previous >= 0 && bigramBuckets > 0 { indices.append(bigramRow(previous, id)) }
                previous = id
            }
            counts.append(indices.count - start)
        }
        let dimension = embedding.shape[1]
        guard !indices.isEmpty else { return projection(Tensor.zeros([rows, dimension])) }
        // The mean per text as one product: averaging [N, T] · looked-up rows [T, D].
        var averaging = [Float](repeating: 0, count: rows * indices.count)
        var offset = 0
        for (r, count) in counts.enumerated() {
            for t in offset..<(offset + count) { averaging[r * indices.count + t] = 1 / Float(count) }
            offset += count
        }
        let looked = DistillTensor.embedding(embedding, indices: indices, indexShape: [indices.count])
        return projection(Tensor(shape: [rows, indices.count], scalars: averaging).matmul(looked))
    }
}
