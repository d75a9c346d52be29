import Foundation

// Layer normalisation (Ba, Kiros & Hinton 2016, arXiv:1607.06450) over the last axis, with an
// elementwise affine map, as in BERT and PyTorch's `nn.LayerNorm(d)`:
//   y = (x − μ) / √(σ² + ε) · γ + β,   μ, σ² the mean and biased variance of each row of d values.
// One fused op (its backward rule is `.layerNorm` in Gradients.swift) rather than a chain of
// reductions: a transformer normalises every token twice per layer.

extension Tensor {
    /// Layer norm over the last axis: x [..., d], weight γ [d], bias β [d] → [..., d].
    /// Row statistics are accumulated in Double, so rows with a large mean lose no precision.
    public func layerNorm(weight: Tensor, bias: Tensor, epsilon: Float = 1e-5) -> Tensor {
        precondition(rank >= 1, "layerNorm: input must have at least one axis, got \(shape)")
        let d = shape[rank - 1]
        precondition(weight.shape == [d] && bias.shape == [d], "layerNorm: weight \(weight.shape) and bias \(bias.shape) must be [\(d)] for input \(shape)")
        let rows = d == 0 ? 0 : count / d
        let xhat = Tensor(uninitializedShape: shape), out = Tensor(uninitializedShape: shape)
        var invStd = [Float](repeating: 0, count: rows)
        let src = SharedPointer(data), xh = SharedPointer(xhat.data), dst = SharedPointer(out.data)
        let gamma = SharedPointer(weight.data), beta = SharedPointer(bias.data)
        invStd.withUnsafeMutableBufferPointer { inv in
            let invPointer = SharedPointer(inv.baseAddress!)
            Parallel.forChunks(rows, costPerItem: d * 4) { range in
                for r in range {
                    let p = src.p + r * d
                    var s = 0.0
                    for j in 0..<d { s += Double(p[j]) }
                    let mu = s / Double(d)
                    var s2 = 0.0
                    for j in 0..<d { let v = Double(p[j]) - mu; s2 += v * v }
                    let scale = Float(1 / (s2 / Double(d) + Double(epsilon)).squareRoot())
                    invPointer.p[r] = scale
                    let m = Float(mu), h = xh.p + r * d, o = dst.p + r * d
                    for j in 0..<d {
                        let v = (p[j] - m) * scale
                        h[j] = v
                        o[j] = v * gamma.p[j] + beta.p[j]
                    }
                }
            }
        }
        return Tensor.result(out, inputs: [self, weight, bias], .layerNorm(xhat: xhat, invStd: invStd))
    }
}

/// Gradients of layer norm: (dx, dγ, dβ). With d values per row, x̂ the normalised input,
/// s = 1/√(σ² + ε) and ĝ = g·γ:  dx = s/d · (d·ĝ − Σĝ − x̂·Σ(ĝ·x̂)),  dγ = Σ_rows g·x̂,  dβ = Σ_rows g.
func layerNormBackward(_ grad: Tensor, weight: Tensor, xhat: Tensor, invStd: [Float]) -> (Tensor, Tensor, Tensor) {
    let d = weight.count, rows = invStd.count
    let dx = Tensor(uninitializedShape: grad.shape), dw = Tensor.zeros([d]), db = Tensor.zeros([d])
    let g = grad.data, xh = xhat.data, gamma = weight.data
    let n = Float(d)
    for r in 0..<rows {
        let gr = g + r * d, hr = xh + r * d, o = dx.data + r * d
        var sumG: Float = 0, sumGX: Float = 0
        for j in 0..<d {
            let gh = gr[j] * gamma[j]
            sumG += gh; sumGX += gh * hr[j]
            dw.data[j] += gr[j] * hr[j]
            db.data[j] += gr[j]
        }
        let s = invStd[r] / n
        for j in 0..<d { o[j] = s * (n * gr[j] * gamma[j] - sumG - hr[j] * sumGX) }
    }
    return (dx, dw, db)
}
