// Dropout (Srivastava et al. 2014, JMLR 15) and embedding lookup.

extension Tensor {
    /// Inverted dropout: zeroes each element with probability `p` and scales survivors by
    /// 1/(1−p), so evaluation needs no rescaling. Identity when not training or p = 0.
    public func dropout(_ p: Float, training: Bool, using generator: inout SeededGenerator) -> Tensor {
        precondition(p >= 0 && p < 1, "dropout: probability \(p) must be in [0, 1)")
        if !training || p == 0 { return self }
        let mask = Tensor(uninitializedShape: shape)
        let keep = 1 / (1 - p)
        for i in 0..<count { mask.data[i] = generator.nextUnitDouble() < Double(p) ? 0 : keep }
        let out = zipKernel(self, mask, *)
        return Tensor.result(out, inputs: [self], .dropout(mask: mask))
    }
}

/// Rows of `weight` ([V, D]) picked by `indices`: result shape `indexShape + [D]`.
public func embedding(_ weight: Tensor, indices: [Int], indexShape: [Int]) -> Tensor {
    precondition(weight.rank == 2, "embedding: weight must be [vocabulary, dim], got \(weight.shape)")
    precondition(indexShape.reduce(1, *) == indices.count, "embedding: index shape \(indexShape) for \(indices.count) indices")
    precondition(indices.allSatisfy { $0 >= 0 && $0 < weight.shape[0] }, "embedding: an index is outside 0..<\(weight.shape[0])")
    let d = weight.shape[1]
    let out = Tensor(uninitializedShape: indexShape + [d])
    for (i, idx) in indices.enumerated() { (out.data + i * d).update(from: weight.data + idx * d, count: d) }
    return Tensor.result(out, inputs: [weight], .embedding(indices: indices))
}
