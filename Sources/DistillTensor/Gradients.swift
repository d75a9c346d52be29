import Foundation

/// What an op's backward pass needs, recorded when its result joins the graph.
/// The inputs themselves are kept by the `GradNode`; a case holds only the extra state.
enum BackwardRule {
    case add, sub, mul, div, scale(Float), shift
    case exp, log, sqrt, pow(Float), abs, clamp(Float, Float)
    case relu, leakyRelu(Float), gelu, sigmoid, tanh
    case sum(inputShape: [Int], axes: [Int]), max(axes: [Int]), expand(inputShape: [Int])
    case reshape(inputShape: [Int]), permute([Int]), slice(axis: Int, start: Int, inputShape: [Int])
    case concat(axis: Int, sizes: [Int]), indexSelect(axis: Int, indices: [Int]), gather(classes: [Int])
    case softmax(axis: Int), logSoftmax(axis: Int)
    case matmul, linear
    case conv2d(Conv2dConfig, path: ConvolutionPath, cols: TensorStorage?), maxPool2d(argmax: [Int32], tiled: Bool), avgPool2d(Pool2dConfig)
    case conv2dReLUMaxPool(Conv2dConfig, pool: Pool2dConfig, level: Int32, argmax: [Int32])
    case conv2dBlockedReLUMaxPool(Conv2dConfig, argmax: [Int32])
    case conv2dWinogradReLUMaxPool(Conv2dConfig, winners: [UInt8], kept: TensorStorage?)
    case batchNorm(xhat: Tensor, invStd: [Float], training: Bool)
    case layerNorm(xhat: Tensor, invStd: [Float])
    case maskedMeanPool(weights: [Float]), l2Normalize(norms: [Float], epsilon: Float)
    case dropout(mask: Tensor), embedding(indices: [Int])
    case straightThrough, fakeQuantize(scale: Float, zeroPoint: Int32)
    case softmaxCrossEntropy(probabilities: Tensor, labels: [Int])
    case temperedKL(studentProbabilities: Tensor, teacherProbabilities: Tensor, temperature: Float)

    var name: String { String(describing: self).prefix { $0 != "(" }.description }
}

// Every backward rule, in one table. `g` is the gradient of the loss with respect to the op's
// output `y`; each rule returns the gradient for each input (nil where none is needed). These
// run under `withNoGrad`, so the tensor ops used here are not recorded.
extension BackwardRule {
    func gradients(inputs x: [Tensor], output y: Tensor, outputGrad g: Tensor) -> [Tensor?] {
        switch self {
        // Broadcasting arithmetic: the adjoint of broadcasting is a sum back to the input shape.
        case .add: return [g.sum(toShape: x[0].shape), g.sum(toShape: x[1].shape)]
        case .sub: return [g.sum(toShape: x[0].shape), (-g).sum(toShape: x[1].shape)]
        case .mul: return [(g * x[1]).sum(toShape: x[0].shape), (g * x[0]).sum(toShape: x[1].shape)]
        case .div:  // d(a/b) = da/b − a·db/b²
            return [(g / x[1]).sum(toShape: x[0].shape), (-(g * x[0]) / (x[1] * x[1])).sum(toShape: x[1].shape)]
        case .scale(let c): return [g.scaled(c)]
        case .shift: return [g]

        // Unary functions: g · f'(x), written with whichever of x or y is cheaper.
        case .exp: return [zipKernel(g, y) { $0 * $1 }]
        case .log: return [zipKernel(g, x[0]) { $0 / $1 }]
        case .sqrt: return [zipKernel(g, y) { $0 * 0.5 / $1 }]
        case .pow(let p): return [p == 0 ? Tensor.zeros(x[0].shape) : zipKernel(g, x[0]) { $0 * p * Foundation.pow($1, p - 1) }]
        case .abs: return [zipKernel(g, x[0]) { $1 > 0 ? $0 : ($1 < 0 ? -$0 : 0) }]
        case .clamp(let lo, let hi): return [zipKernel(g, x[0]) { ($1 >= lo && $1 <= hi) ? $0 : 0 }]
        case .relu: return [zipKernel(g, x[0]) { $1 > 0 ? $0 : 0 }]
        case .leakyRelu(let s): return [zipKernel(g, x[0]) { $1 > 0 ? $0 : s * $0 }]
        case .gelu:  // d/dx [x·Φ(x)] = Φ(x) + x·φ(x)
            return [zipKernel(g, x[0]) { gi, v in
                let cdf = 0.5 * (1 + erff(v * 0.70710678)), pdf = 0.39894228 * Foundation.exp(-0.5 * v * v)
                return gi * (cdf + v * pdf)
            }]
        case .sigmoid: return [zipKernel(g, y) { $0 * $1 * (1 - $1) }]
        case .tanh: return [zipKernel(g, y) { $0 * (1 - $1 * $1) }]

        // Reductions and broadcasting.
        case .sum(let inputShape, let axes):
            var kept = inputShape
            for a in axes { kept[a] = 1 }
            return [g.reshaped(kept).expand(to: inputShape)]
        case .max(let axes):  // gradient shared equally among the elements equal to the max
            var kept = x[0].shape
            for a in axes { kept[a] = 1 }
            let top = y.reshaped(kept).expand(to: x[0].shape)
            let mask = zipKernel(x[0], top) { $0 == $1 ? 1 : 0 }
            let ties = mask.sum(axes: axes, keepDims: true).expand(to: x[0].shape)
            return [zipKernel(g.reshaped(kept).expand(to: x[0].shape), zipKernel(mask, ties, /), *)]
        case .expand(let inputShape): return [g.sum(toShape: inputShape)]

        // Shape ops: move the gradient back where each element came from.
        case .reshape(let inputShape): return [g.reshaped(inputShape)]
        case .permute(let order):
            var inverse = order
            for (i, o) in order.enumerated() { inverse[o] = i }
            return [g.permuted(inverse)]
        case .slice(let axis, let start, let inputShape):
            let dx = Tensor.zeros(inputShape)
            let outer = inputShape[..<axis].reduce(1, *), inner = inputShape[(axis + 1)...].reduce(1, *)
            let len = g.shape[axis]
            for a in 0..<outer {
                (dx.data + (a * inputShape[axis] + start) * inner).update(from: g.data + a * len * inner, count: len * inner)
            }
            return [dx]
        case .concat(let axis, let sizes):
            var start = 0
            return sizes.map { size in defer { start += size }; return g.slice(axis: axis, start: start, length: size) }
        case .indexSelect(let axis, let indices):
            let shape = x[0].shape
            let dx = Tensor.zeros(shape)
            let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
            for a in 0..<outer { for (i, idx) in indices.enumerated() {
                let dst = dx.data + (a * shape[axis] + idx) * inner, src = g.data + (a * indices.count + i) * inner
                for j in 0..<inner { dst[j] += src[j] }
            } }
            return [dx]
        case .gather(let classes):
            let dx = Tensor.zeros(x[0].shape)
            let c = x[0].shape[1]
            for (n, k) in classes.enumerated() { dx.data[n * c + k] += g.data[n] }
            return [dx]

        // softmax: dx = y ⊙ (g − Σ g⊙y);  log-softmax: dx = g − softmax(x) ⊙ Σ g.
        case .softmax(let axis): return [y * (g - (g * y).sum(axis: axis, keepDims: true))]
        case .logSoftmax(let axis): return [g - y.exp() * g.sum(axis: axis, keepDims: true)]

        // Products: for C = A·B, dA = G·Bᵀ and dB = Aᵀ·G (summed over a shared B's batch).
        case .matmul:
            let a = x[0], b = x[1]
            let da = matmulKernel(g, b, transposeB: true)
            let db: Tensor
            if b.rank == 2 && a.rank > 2 {
                let k = a.shape.last!, n = g.shape.last!
                db = matmulKernel(Tensor(shape: [a.count / k, k], storage: a.storage),
                                  Tensor(shape: [g.count / n, n], storage: g.storage), transposeA: true)
            } else {
                db = matmulKernel(a, g, transposeA: true)
            }
            return [da, db]
        case .linear:  // y = x·Wᵀ + b: dx = g·W, dW = gᵀ·x, db = Σ_rows g
            let w = x[1], inF = w.shape[1], outF = w.shape[0]
            let rows = g.count / outF
            let g2 = Tensor(shape: [rows, outF], storage: g.storage)
            let dx = x[0].requiresGrad ? Tensor(shape: x[0].shape, storage: matmulKernel(g2, w).storage) : nil
            let dw = w.requiresGrad ? matmulKernel(g2, Tensor(shape: [rows, inF], storage: x[0].storage), transposeA: true, split: .rows) : nil
            let db = x.count > 2 && x[2].requiresGrad ? g2.sum(axis: 0) : nil
            return [dx, dw, db]

        // Convolution, pooling, normalisation: dedicated kernels beside their forward passes.
        case .conv2d(let config, let path, let cols):
            let (dx, dw, db) = conv2dBackward(x: x[0], weight: x[1], hasBias: x.count > 2, config: config, path: path, cols: cols, grad: g,
                                              needInput: x[0].requiresGrad, needWeight: x[1].requiresGrad)
            return [dx, dw, db]
        case .conv2dReLUMaxPool(let config, let pool, let level, let argmax):  // the input is data: no gradient
            let (dw, db) = conv2dReLUMaxPoolBackward(x: x[0], weight: x[1], hasBias: x.count > 2, config: config, pool: pool,
                                                     level: level, argmax: argmax, grad: g)
            return [nil, x[1].requiresGrad ? dw : nil, x.count > 2 && x[2].requiresGrad ? db : nil]
        case .conv2dBlockedReLUMaxPool(let config, let argmax):
            let (dx, dw, db) = conv2dBlockedReLUMaxPoolBackward(x: x[0], weight: x[1], hasBias: x.count > 2, config: config, argmax: argmax,
                                                                grad: g, needInput: x[0].requiresGrad)
            return [dx, x[1].requiresGrad ? dw : nil, x.count > 2 && x[2].requiresGrad ? db : nil]
        case .conv2dWinogradReLUMaxPool(let config, let winners, let kept):
            let (dx, dw, db) = conv2dWinogradReLUMaxPoolBackward(x: x[0], weight: x[1], hasBias: x.count > 2, config: config, winners: winners,
                                                                 kept: kept, grad: g, needInput: x[0].requiresGrad, needWeight: x[1].requiresGrad)
            return [dx, dw, x.count > 2 && x[2].requiresGrad ? db : nil]
        case .maxPool2d(let argmax, let tiled): return [maxPool2dBackward(g, inputShape: x[0].shape, argmax: argmax, tiled: tiled)]
        case .avgPool2d(let config): return [avgPool2dBackward(g, inputShape: x[0].shape, config: config)]
        case .batchNorm(let xhat, let invStd, let training):
            let (dx, dw, db) = batchNormBackward(g, weight: x[1], xhat: xhat, invStd: invStd, training: training)
            return [dx, dw, db]
        case .layerNorm(let xhat, let invStd):
            let (dx, dw, db) = layerNormBackward(g, weight: x[1], xhat: xhat, invStd: invStd)
            return [dx, dw, db]
        case .dropout(let mask): return [zipKernel(g, mask, *)]

        // Fake quantization (Ops/FakeQuantization.swift): the straight-through estimator (Bengio et al.
        // 2013; Jacob et al. 2018): rounding passes g unchanged, clipping keeps its derivative (0 outside).
        case .straightThrough: return [g]
        case .fakeQuantize(let scale, let zeroPoint): return [fakeQuantizeBackward(g, input: x[0], scale: scale, zeroPoint: zeroPoint)]

        // Sentence pooling (Ops/SentencePooling.swift): masked mean over tokens, L2 normalisation.
        case .maskedMeanPool(let weights): return [maskedMeanPoolBackward(g, inputShape: x[0].shape, weights: weights)]
        case .l2Normalize(let norms, let epsilon): return [l2NormalizeBackward(g, output: y, norms: norms, epsilon: epsilon)]

        // Fused softmax losses (Ops/SoftmaxLosses.swift): closed-form gradients, g is a scalar.
        case .softmaxCrossEntropy(let p, let labels):  // (softmax(x) − onehot(y)) · g / N
            let n = p.shape[0], c = p.shape[1], scale = g.item() / Float(Swift.max(n, 1))
            let dx = Tensor(uninitializedShape: p.shape)
            for i in 0..<p.count { dx.data[i] = p.data[i] * scale }
            for (r, k) in labels.enumerated() { dx.data[r * c + k] -= scale }
            return [dx]
        case .temperedKL(let q, let p, let temperature):  // T · (q − p) · g / N
            let scale = g.item() * temperature / Float(Swift.max(q.shape[0], 1))
            return [zipKernel(q, p) { ($0 - $1) * scale }]
        case .embedding(let indices):
            let w = x[0], d = w.shape[1]
            let dw = Tensor.zeros(w.shape)
            for (i, idx) in indices.enumerated() { let dst = dw.data + idx * d, src = g.data + i * d; for j in 0..<d { dst[j] += src[j] } }
            return [dw]
        }
    }
}
