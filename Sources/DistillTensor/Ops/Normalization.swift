import Foundation

// Batch normalisation (Ioffe & Szegedy 2015, arXiv:1502.03167) over [N, C] or [N, C, H, W].
// Training: y = (x − μ_B) / √(σ²_B + ε) · γ + β with batch statistics (biased variance), and the
// running statistics updated as r ← (1 − m)·r + m·stat with the *unbiased* batch variance (as
// PyTorch). Evaluation: the running statistics replace the batch's.

/// Batch-norm forward. `runningMean`/`runningVar` ([C]) are updated in place when training.
public func batchNorm(_ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
                      training: Bool, momentum: Float = 0.1, epsilon: Float = 1e-5) -> Tensor {
    precondition(x.rank == 2 || x.rank == 4, "batchNorm: input must be [N, C] or [N, C, H, W], got \(x.shape)")
    let n = x.shape[0], c = x.shape[1], hw = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    precondition(weight.shape == [c] && bias.shape == [c] && runningMean.shape == [c] && runningVar.shape == [c],
                 "batchNorm: parameters must be [\(c)] for input \(x.shape)")
    let m = n * hw
    precondition(!training || m > 1, "batchNorm: training needs more than one value per channel, input \(x.shape)")
    var mean = [Float](repeating: 0, count: c), invStd = [Float](repeating: 0, count: c)
    let p = x.data
    for ch in 0..<c {
        if training {
            var s = 0.0, s2 = 0.0
            for i in 0..<n { let row = p + (i * c + ch) * hw; for j in 0..<hw { s += Double(row[j]) } }
            let mu = s / Double(m)
            for i in 0..<n { let row = p + (i * c + ch) * hw; for j in 0..<hw { let d = Double(row[j]) - mu; s2 += d * d } }
            let variance = s2 / Double(m)
            mean[ch] = Float(mu)
            invStd[ch] = Float(1 / (variance + Double(epsilon)).squareRoot())
            runningMean.data[ch] = (1 - momentum) * runningMean.data[ch] + momentum * Float(mu)
            runningVar.data[ch] = (1 - momentum) * runningVar.data[ch] + momentum * Float(s2 / Double(m - 1))
        } else {
            mean[ch] = runningMean.data[ch]
            invStd[ch] = 1 / (runningVar.data[ch] + epsilon).squareRoot()
        }
    }
    let xhat = Tensor(uninitializedShape: x.shape), out = Tensor(uninitializedShape: x.shape)
    for i in 0..<n { for ch in 0..<c {
        let off = (i * c + ch) * hw
        let mu = mean[ch], s = invStd[ch], g = weight.data[ch], b = bias.data[ch]
        for j in 0..<hw { let v = (p[off + j] - mu) * s; xhat.data[off + j] = v; out.data[off + j] = v * g + b }
    } }
    return Tensor.result(out, inputs: [x, weight, bias], .batchNorm(xhat: xhat, invStd: invStd, training: training))
}

/// Gradients of batch-norm: (dx, dγ, dβ). With M values per channel and ĝ = g·γ,
/// training: dx = (1/σ)/M · (M·ĝ − Σĝ − x̂·Σ(ĝ·x̂)); evaluation: dx = ĝ/σ.
func batchNormBackward(_ grad: Tensor, weight: Tensor, xhat: Tensor, invStd: [Float], training: Bool) -> (Tensor, Tensor, Tensor) {
    let n = grad.shape[0], c = grad.shape[1], hw = grad.rank == 4 ? grad.shape[2] * grad.shape[3] : 1
    let m = Float(n * hw)
    let dx = Tensor(uninitializedShape: grad.shape), dw = Tensor.zeros([c]), db = Tensor.zeros([c])
    let g = grad.data, xh = xhat.data
    for ch in 0..<c {
        var sumG: Float = 0, sumGX: Float = 0
        for i in 0..<n { let off = (i * c + ch) * hw; for j in 0..<hw { sumG += g[off + j]; sumGX += g[off + j] * xh[off + j] } }
        db.data[ch] = sumG; dw.data[ch] = sumGX
        let gamma = weight.data[ch], s = invStd[ch]
        for i in 0..<n {
            let off = (i * c + ch) * hw
            for j in 0..<hw {
                dx.data[off + j] = training
                    ? gamma * s / m * (m * g[off + j] - sumG - xh[off + j] * sumGX)
                    : gamma * s * g[off + j]
            }
        }
    }
    return (dx, dw, db)
}
