import DistillTensor
import Foundation

// Weight rounding that looks at the data, for post-training int8 quantization.
//
// Rounding every weight to its nearest step (what `QuantizedWeight(quantizing:)` does) makes each
// weight's error as small as it can be, but not the layer's output error: the errors of weights
// that read correlated inputs add up. Two corrections, run layer by layer along the int8 path as
// it will run (the earlier layers already quantized, activations rounded to their calibrated bytes):
//
// 1. Error-compensating rounding (GPTQ: Frantar, Ashkboos, Hoefler and Alistarh 2023, "GPTQ:
//    Accurate Post-Training Quantization for Generative Pre-trained Transformers", ICLR, from
//    Optimal Brain Quantization, Frantar and Alistarh 2022). For one output channel w (the inputs x
//    of the calibration rows, H = Σ x xᵀ) the output error Σ ((q − w)·x)² is reduced by quantizing
//    the inputs one at a time and moving the rounding error of input i onto the inputs not yet
//    quantized, as the inverse Hessian says: with U the upper Cholesky factor of H⁻¹,
//        e = (w_i − q_i) / U_ii,   w_j ← w_j − e · U_ij  for j > i.
//    H is damped by 1% of its mean diagonal; the per-channel scales stay those of the float weight
//    (max |w| / 127), so the stored format is unchanged.
// 2. Bias correction (Nagel, van Baalen, Blankevoort and Welling 2019, "Data-Free Quantization
//    Through Weight Equalization and Bias Correction", ICCV, section 4.2, its empirical variant):
//    the int8 layer's mean output over the calibration rows is moved back to the float layer's,
//        b_o ← b_o + mean(w_o · x_float) − mean(q_o · x_int8),
//    which removes the systematic shift that rounding leaves (it matters most for the float logits).

extension Quantizer {
    /// Layers wider than this (inputs per output channel) keep nearest rounding: the Cholesky
    /// factorisations cost n³ and more inputs give diminishing returns. Bias correction still runs.
    static let maxCompensatedInputs = 2048
    /// Calibration rows per forward pass while collecting statistics (bounds the memory).
    static let refinementBatch = 250

    /// The int8 path as `forward` simulates it in float: the input and each stored activation
    /// rounded to its bytes, each refined layer with its dequantized weight and corrected bias.
    struct SimulatedInt8 {
        var input: ActivationQuantization
        var ranges: [Int: ActivationQuantization]
        var weights: [Int: Tensor] = [:]
        var biases: [Int: Tensor] = [:]
    }

    /// The rows a layer's weight multiplies: `x` itself ([N, in]) for a linear layer, the image
    /// patches ([N·P·Q, C·kh·kw], in the weight's order) for a convolution.
    static func patchRows(_ x: Tensor, kernel: (Int, Int), config: Conv2dConfig) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (kh, kw) = kernel, (sh, sw) = config.stride, (ph, pw) = config.padding
        let p = (h + 2 * ph - kh) / sh + 1, q = (w + 2 * pw - kw) / sw + 1
        let width = c * kh * kw
        let out = Tensor.zeros([n * p * q, width])
        let src = x.data, dst = out.data
        for image in 0..<n { for oy in 0..<p { for ox in 0..<q {
            let row = dst + ((image * p + oy) * q + ox) * width
            for ch in 0..<c { for i in 0..<kh {
                let iy = oy * sh - ph + i
                guard iy >= 0, iy < h else { continue }
                for j in 0..<kw {
                    let ix = ox * sw - pw + j
                    guard ix >= 0, ix < w else { continue }
                    row[(ch * kh + i) * kw + j] = src[((image * c + ch) * h + iy) * w + ix]
                }
            } }
        } } }
        return out
    }

    /// Each computational layer's int8 weight and corrected bias for `samples`, with activation
    /// ranges `ranges` and input quantization `input` (see the file's comment). Layer by layer,
    /// each one sees the earlier layers already refined.
    static func refinedWeights(_ layers: [FoldedLayer], input: ActivationQuantization, ranges: [Int: ActivationQuantization],
                               samples x: Tensor) -> [Int: (weight: QuantizedWeight, bias: [Float])] {
        var int8 = SimulatedInt8(input: input, ranges: ranges)
        var refined: [Int: (weight: QuantizedWeight, bias: [Float])] = [:]
        for (k, layer) in layers.enumerated() {
            let weight: Tensor, bias: Tensor?, kernel: (Int, Int)?, config: Conv2dConfig
            switch layer {
            case .linear(let w, let b, _): (weight, bias, kernel, config) = (w, b, nil, Conv2dConfig())
            case .convolution(let w, let b, let c, _): (weight, bias, kernel, config) = (w, b, (w.shape[2], w.shape[3]), c)
            default: continue
            }
            let outs = weight.shape[0], width = weight.count / outs
            let compensate = width <= maxCompensatedInputs
            var hessian = [Double](repeating: 0, count: compensate ? width * width : 0)
            var meanFloat = [Double](repeating: 0, count: width), meanInt8 = [Double](repeating: 0, count: width)
            var rows = 0
            var start = 0
            while start < x.shape[0] {
                let batch = x.slice(axis: 0, start: start, length: Swift.min(refinementBatch, x.shape[0] - start))
                start += refinementBatch
                func rowsOf(_ t: Tensor) -> Tensor {
                    if let kernel { return patchRows(t, kernel: kernel, config: config) }
                    return t.rank > 2 ? t.flattened() : t
                }
                let xf = rowsOf(forward(layers, batch, count: k)), xq = rowsOf(forward(layers, batch, count: k, int8: int8))
                rows += xq.shape[0]
                func addColumnSums(_ t: Tensor, to sums: inout [Double]) {
                    let p = t.data
                    for r in 0..<t.shape[0] { for i in 0..<width { sums[i] += Double(p[r * width + i]) } }
                }
                addColumnSums(xf, to: &meanFloat)
                addColumnSums(xq, to: &meanInt8)
                if compensate {
                    let product = withNoGrad { xq.transposed(0, 1).matmul(xq) }
                    let h = product.data
                    for i in 0..<(width * width) { hessian[i] += Double(h[i]) }
                }
            }
            for i in 0..<width { meanFloat[i] /= Double(rows); meanInt8[i] /= Double(rows) }
            let quantized = (compensate ? compensatedRounding(weight, hessian: hessian) : nil) ?? QuantizedWeight(quantizing: weight)
            var corrected = bias?.scalars ?? [Float](repeating: 0, count: outs)
            let w = weight.scalars
            for o in 0..<outs {
                var shift = 0.0
                for i in 0..<width {
                    shift += Double(w[o * width + i]) * meanFloat[i]
                    shift -= Double(quantized.values[o * width + i]) * Double(quantized.scales[o]) * meanInt8[i]
                }
                corrected[o] += Float(shift)
            }
            refined[k] = (quantized, corrected)
            int8.weights[k] = quantized.dequantized
            int8.biases[k] = Tensor(corrected)
        }
        return refined
    }

    /// GPTQ rounding of `weight` ([out, ...], `width` inputs per channel) for the input Gram matrix
    /// `hessian` (width × width, row-major), per-channel scales those of nearest rounding. Nil when
    /// the damped matrix is not positive definite (then nearest rounding is used).
    static func compensatedRounding(_ weight: Tensor, hessian: [Double]) -> QuantizedWeight? {
        let outs = weight.shape[0], n = weight.count / outs
        var h = hessian
        var diagonalMean = 0.0
        for i in 0..<n {
            if h[i * n + i] == 0 { h[i * n + i] = 1 }  // an input never seen: nothing to compensate with
            diagonalMean += h[i * n + i] / Double(n)
        }
        for i in 0..<n { h[i * n + i] += 0.01 * diagonalMean }
        guard let u = SymmetricMatrix.inverseUpperFactor(h, n: n) else { return nil }
        let nearest = QuantizedWeight(quantizing: weight)
        var values = [Int8](repeating: 0, count: weight.count)
        var w = weight.scalars.map(Double.init)
        for o in 0..<outs {
            let scale = Double(nearest.scales[o]), base = o * n
            for i in 0..<n {
                let q = Swift.max(-127, Swift.min(127, (w[base + i] / scale).rounded(.toNearestOrEven)))
                values[base + i] = Int8(q)
                let error = (w[base + i] - q * scale) / u[i * n + i]
                for j in (i + 1)..<n { w[base + j] -= error * u[i * n + j] }
            }
        }
        return QuantizedWeight(shape: weight.shape, values: values, scales: nearest.scales)
    }
}

/// Dense symmetric positive-definite matrices (row-major [Double], n × n) for the rounding above.
enum SymmetricMatrix {
    /// The lower Cholesky factor L (A = L Lᵀ), row-major with zeros above the diagonal; nil when A
    /// is not positive definite (a pivot ≤ 0 or not finite).
    static func cholesky(_ a: [Double], n: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        let ok = l.withUnsafeMutableBufferPointer { l -> Bool in
            for j in 0..<n {
                var pivot = a[j * n + j]
                for k in 0..<j { pivot -= l[j * n + k] * l[j * n + k] }
                guard pivot > 0, pivot.isFinite else { return false }
                let d = pivot.squareRoot()
                l[j * n + j] = d
                for i in (j + 1)..<n {
                    var s = a[i * n + j]
                    for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                    l[i * n + j] = s / d
                }
            }
            return true
        }
        return ok ? l : nil
    }

    /// The upper-triangular U with Uᵀ U = A⁻¹ (what GPTQ walks along), without forming A⁻¹: with J
    /// the order reversal, J A J = L Lᵀ gives A = R Rᵀ for the upper R = J L J, so A⁻¹ = R⁻ᵀ R⁻¹
    /// and U = R⁻¹. Nil when A is not positive definite.
    static func inverseUpperFactor(_ a: [Double], n: Int) -> [Double]? {
        var reversed = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { reversed[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)] } }
        guard let l = cholesky(reversed, n: n) else { return nil }
        var u = [Double](repeating: 0, count: n * n)
        u.withUnsafeMutableBufferPointer { u in
            // R[i][k] = L[n−1−i][n−1−k]; rows of U from the last: U_ii = 1 / R_ii and, for j > i,
            // U_ij = −(Σ_{i<k≤j} R_ik U_kj) / R_ii, summed as rows of U scaled by R_ik.
            for i in stride(from: n - 1, through: 0, by: -1) {
                let rii = l[(n - 1 - i) * n + (n - 1 - i)]
                for k in (i + 1)..<n {
                    let rik = l[(n - 1 - i) * n + (n - 1 - k)]
                    guard rik != 0 else { continue }
                    for j in k..<n { u[i * n + j] -= rik * u[k * n + j] }
                }
                for j in (i + 1)..<n { u[i * n + j] /= rii }
                u[i * n + i] = 1 / rii
            }
        }
        return u
    }
}
