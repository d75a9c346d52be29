import Foundation

// From token vectors to one sentence vector, as sentence-transformers does it: the mean over the
// tokens the attention mask keeps, then (optionally) division by the Euclidean norm. Both are
// fused ops with closed-form backward rules (`.maskedMeanPool`, `.l2Normalize` in Gradients.swift).

extension Tensor {
    /// Mean of the kept tokens: x [B, L, D] and a mask of B·L weights (1 keeps a token, 0 drops
    /// it, row-major [B, L]) → [B, D],  y[b] = Σ_l m[b,l]·x[b,l] / max(Σ_l m[b,l], 1e-9).
    /// The floor on the count matches sentence-transformers (an all-padding row gives zeros).
    /// The mask is data, not a parameter: no gradient flows to it.
    public func maskedMeanPool(mask: [Float]) -> Tensor {
        precondition(rank == 3, "maskedMeanPool: input must be [batch, length, dim], got \(shape)")
        let b = shape[0], l = shape[1], d = shape[2]
        precondition(mask.count == b * l, "maskedMeanPool: \(mask.count) mask values for input \(shape) (needs \(b * l))")
        var weights = [Float](repeating: 0, count: b * l)
        for i in 0..<b {
            var kept: Float = 0
            for j in 0..<l { kept += mask[i * l + j] }
            let inverse = 1 / Swift.max(kept, 1e-9)
            for j in 0..<l { weights[i * l + j] = mask[i * l + j] * inverse }
        }
        let out = Tensor.zeros([b, d])
        for i in 0..<b {
            let o = out.data + i * d
            for j in 0..<l where weights[i * l + j] != 0 {
                let w = weights[i * l + j], row = data + (i * l + j) * d
                for k in 0..<d { o[k] += w * row[k] }
            }
        }
        return Tensor.result(out, inputs: [self], .maskedMeanPool(weights: weights))
    }

    /// Each row (last axis) divided by its Euclidean norm: y = x / max(‖x‖₂, ε), as PyTorch's
    /// `F.normalize(x, dim=-1)` (ε = 1e-12) and sentence-transformers' Normalize module.
    public func l2Normalized(epsilon: Float = 1e-12) -> Tensor {
        precondition(rank >= 1, "l2Normalized: input must have at least one axis, got \(shape)")
        let d = shape[rank - 1], rows = d == 0 ? 0 : count / d
        let out = Tensor(uninitializedShape: shape)
        var norms = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            let p = data + r * d, o = out.data + r * d
            var s = 0.0
            for k in 0..<d { s += Double(p[k]) * Double(p[k]) }
            norms[r] = Float(s.squareRoot())
            let inverse = 1 / Swift.max(norms[r], epsilon)
            for k in 0..<d { o[k] = p[k] * inverse }
        }
        return Tensor.result(out, inputs: [self], .l2Normalize(norms: norms, epsilon: epsilon))
    }
}

/// Gradient of the masked mean: dx[b,l] = w[b,l] · g[b], with w = m / max(Σm, 1e-9) per row.
func maskedMeanPoolBackward(_ grad: Tensor, inputShape: [Int], weights: [Float]) -> Tensor {
    let b = inputShape[0], l = inputShape[1], d = inputShape[2]
    let dx = Tensor(uninitializedShape: inputShape)
    for i in 0..<b { for j in 0..<l {
        let w = weights[i * l + j], src = grad.data + i * d, dst = dx.data + (i * l + j) * d
        for k in 0..<d { dst[k] = w * src[k] }
    } }
    return dx
}

/// Gradient of y = x / max(‖x‖, ε), given the rows' norms ‖x‖: where ‖x‖ > ε,
/// dx = (g − y·⟨g, y⟩) / ‖x‖ (the component of g along y is removed); where the floor applies,
/// y = x/ε is linear and dx = g / ε.
func l2NormalizeBackward(_ grad: Tensor, output y: Tensor, norms: [Float], epsilon: Float) -> Tensor {
    let d = y.shape.last ?? 1
    let dx = Tensor(uninitializedShape: y.shape)
    for (r, norm) in norms.enumerated() {
        let g = grad.data + r * d, yr = y.data + r * d, o = dx.data + r * d
        if norm > epsilon {
            var dot: Float = 0
            for k in 0..<d { dot += g[k] * yr[k] }
            for k in 0..<d { o[k] = (g[k] - yr[k] * dot) / norm }
        } else {
            for k in 0..<d { o[k] = g[k] / epsilon }
        }
    }
    return dx
}
