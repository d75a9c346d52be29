import CKernels

// Pooling over NCHW planes: max (with the argmax kept for backward) and average
// (count_include_pad = true, as PyTorch's default). Planes are split across worker threads.

/// Window, stride and padding of a pooling op.
public struct Pool2dConfig: Sendable, Equatable {
    public var kernel: (Int, Int)
    public var stride: (Int, Int)
    public var padding: (Int, Int)
    public init(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) {
        self.kernel = kernel; self.stride = stride ?? kernel; self.padding = padding
    }
    public static func == (a: Self, b: Self) -> Bool { a.kernel == b.kernel && a.stride == b.stride && a.padding == b.padding }

    func outputShape(_ input: [Int], op: String) -> [Int] {
        precondition(input.count == 4, "\(op): input must be [N, C, H, W], got \(input)")
        precondition(padding.0 * 2 <= kernel.0 && padding.1 * 2 <= kernel.1, "\(op): padding \(padding) larger than half the kernel \(kernel)")
        let spanH = input[2] + 2 * padding.0 - kernel.0, spanW = input[3] + 2 * padding.1 - kernel.1
        let p = spanH < 0 ? 0 : spanH / stride.0 + 1, q = spanW < 0 ? 0 : spanW / stride.1 + 1  // floor division
        precondition(p > 0 && q > 0, "\(op): kernel \(kernel) does not fit input \(input[2])x\(input[3])")
        return [input[0], input[1], p, q]
    }
}

extension Tensor {
    /// Max over each window. Out-of-bounds (padding) positions never win.
    public func maxPool2d(_ config: Pool2dConfig) -> Tensor { maxPool2d(config, relu: false) }

    /// `maxPool2d(config).relu()` in one pass (max commutes with ReLU, and so do their gradients):
    /// a window whose maximum is not positive gives 0 and passes no gradient back.
    public func maxPool2dReLU(_ config: Pool2dConfig) -> Tensor { maxPool2d(config, relu: true) }

    private func maxPool2d(_ config: Pool2dConfig, relu: Bool) -> Tensor {
        let outShape = config.outputShape(shape, op: "maxPool2d")
        let (h, w, p, q) = (shape[2], shape[3], outShape[2], outShape[3])
        let planes = shape[0] * shape[1]
        let out = Tensor(uninitializedShape: outShape)
        let xs = SharedPointer(data), os = SharedPointer(out.data)
        // The winner of each window (its index in the plane; -1 where ReLU zeroed the output),
        // written straight into the array the backward rule keeps.
        let indices = [Int32](unsafeUninitializedCapacity: out.count) { buffer, initialized in
            initialized = out.count
            guard let base = buffer.baseAddress else { return }
            let am = SharedPointer(base)
            Parallel.forChunks(planes, costPerItem: p * q * config.kernel.0 * config.kernel.1) { range in
                if config == Pool2dConfig(kernel: (2, 2)) {  // the common case, on a vectorised kernel
                    let first = range.lowerBound
                    let status = dk_max_pool2x2_forward(-1, xs.p + first * h * w, os.p + first * p * q, am.p + first * p * q,
                                                        range.count, h, w, relu ? 1 : 0)
                    precondition(status == 0, "dk_max_pool2x2_forward failed")
                    return
                }
                for plane in range {
                    let src = xs.p + plane * h * w, dst = os.p + plane * p * q, idx = am.p + plane * p * q
                    for oy in 0..<p { for ox in 0..<q {
                        var best = -Float.infinity, bestIndex = -1
                        let y0 = oy * config.stride.0 - config.padding.0, x0 = ox * config.stride.1 - config.padding.1
                        for i in Swift.max(0, y0)..<Swift.min(h, y0 + config.kernel.0) {
                            for j in Swift.max(0, x0)..<Swift.min(w, x0 + config.kernel.1) {
                                let v = src[i * w + j]
                                if v > best || bestIndex < 0 || v.isNaN { best = v; bestIndex = i * w + j }
                            }
                        }
                        let active = !relu || best > 0
                        dst[oy * q + ox] = active ? best : 0
                        idx[oy * q + ox] = Int32(active ? bestIndex : -1)
                    } }
                }
            }
        }
        let tiled = config == Pool2dConfig(kernel: (2, 2)) && h == 2 * p && w == 2 * q
        return Tensor.result(out, inputs: [self], .maxPool2d(argmax: indices, tiled: tiled))
    }

    /// Mean over each window, padding counted as zeros in the divisor (kernel area).
    public func avgPool2d(_ config: Pool2dConfig) -> Tensor {
        let outShape = config.outputShape(shape, op: "avgPool2d")
        let (h, w, p, q) = (shape[2], shape[3], outShape[2], outShape[3])
        let out = Tensor(uninitializedShape: outShape)
        let area = Float(config.kernel.0 * config.kernel.1)
        let xs = SharedPointer(data), os = SharedPointer(out.data)
        Parallel.forChunks(shape[0] * shape[1], costPerItem: p * q * config.kernel.0 * config.kernel.1) { range in
            for plane in range {
                let src = xs.p + plane * h * w, dst = os.p + plane * p * q
                for oy in 0..<p { for ox in 0..<q {
                    let y0 = oy * config.stride.0 - config.padding.0, x0 = ox * config.stride.1 - config.padding.1
                    var total: Float = 0
                    for i in Swift.max(0, y0)..<Swift.min(h, y0 + config.kernel.0) {
                        for j in Swift.max(0, x0)..<Swift.min(w, x0 + config.kernel.1) { total += src[i * w + j] }
                    }
                    dst[oy * q + ox] = total / area
                } }
            }
        }
        return Tensor.result(out, inputs: [self], .avgPool2d(config))
    }

    /// Mean over the spatial axes: [N, C, H, W] → [N, C].
    public func globalAvgPool2d() -> Tensor {
        precondition(rank == 4, "globalAvgPool2d: input must be [N, C, H, W], got \(shape)")
        return mean(axes: [2, 3])
    }
}

/// Adjoint of average pooling: spreads each output gradient evenly over its window.
func avgPool2dBackward(_ grad: Tensor, inputShape: [Int], config: Pool2dConfig) -> Tensor {
    let (h, w, p, q) = (inputShape[2], inputShape[3], grad.shape[2], grad.shape[3])
    let dx = Tensor.zeros(inputShape)
    let area = Float(config.kernel.0 * config.kernel.1)
    let gs = SharedPointer(grad.data), ds = SharedPointer(dx.data)
    Parallel.forChunks(inputShape[0] * inputShape[1], costPerItem: p * q * config.kernel.0 * config.kernel.1) { range in
        for plane in range {
            let g = gs.p + plane * p * q, d = ds.p + plane * h * w
            for oy in 0..<p { for ox in 0..<q {
                let v = g[oy * q + ox] / area
                let y0 = oy * config.stride.0 - config.padding.0, x0 = ox * config.stride.1 - config.padding.1
                for i in Swift.max(0, y0)..<Swift.min(h, y0 + config.kernel.0) {
                    for j in Swift.max(0, x0)..<Swift.min(w, x0 + config.kernel.1) { d[i * w + j] += v }
                }
            } }
        }
    }
    return dx
}

/// Adjoint of max pooling: each output gradient goes to the input position that won (none where
/// the winner is -1: a fused ReLU zeroed that output).
/// `tiled`: the windows are 2×2 with stride 2 and cover the input exactly, so each input element
/// is written once and no zero fill is needed.
func maxPool2dBackward(_ grad: Tensor, inputShape: [Int], argmax: [Int32], tiled: Bool) -> Tensor {
    let (h, w, p, q) = (inputShape[2], inputShape[3], grad.shape[2], grad.shape[3])
    if tiled && h == 2 * p && w == 2 * q {
        let dx = Tensor(uninitializedShape: inputShape)
        let planes = inputShape[0] * inputShape[1]
        let gs = SharedPointer(grad.data), ds = SharedPointer(dx.data)
        argmax.withUnsafeBufferPointer { idx in
            let ids = SharedPointer(UnsafeMutablePointer(mutating: idx.baseAddress!))
            Parallel.forChunks(planes, costPerItem: h * w) { range in
                let first = range.lowerBound, count = range.count
                let status = dk_max_pool2x2_backward(-1, gs.p + first * p * q, ids.p + first * p * q, ds.p + first * h * w, count, h, w)
                precondition(status == 0, "dk_max_pool2x2_backward failed")
            }
        }
        return dx
    }
    let dx = Tensor.zeros(inputShape)
    let hw = inputShape[2] * inputShape[3], pq = grad.shape[2] * grad.shape[3]
    let g = grad.data, d = dx.data
    argmax.withUnsafeBufferPointer { idx in
        for plane in 0..<(inputShape[0] * inputShape[1]) {
            for k in 0..<pq where idx[plane * pq + k] >= 0 { d[plane * hw + Int(idx[plane * pq + k])] += g[plane * pq + k] }
        }
    }
    return dx
}
