import Foundation

// Numerically stable softmax and log-softmax: the max of each slice is subtracted before exp,
// so large logits (or small temperatures) never overflow.

/// Shared forward kernel: for each slice along the axis of an [outer, n, inner] view, writes
/// softmax (or log-softmax when `log` is true).
func softmaxKernel(_ x: Tensor, axis: Int, log: Bool) -> TensorStorage {
    let shape = x.shape
    let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
    let storage = TensorStorage(count: x.count)
    let src = SharedPointer(x.data), dst = SharedPointer(storage.pointer)
    Parallel.forChunks(outer * inner, costPerItem: n * 8) { range in
        for s in range {
            let a = s / inner, i = s % inner
            let base = a * n * inner + i
            let p = src.p + base, o = dst.p + base
            var m = -Float.infinity
            for k in 0..<n { m = Swift.max(m, p[k * inner]) }
            if !m.isFinite { m = 0 }  // all -inf (or NaN): keep NaN/inf propagation honest
            var total: Float = 0
            for k in 0..<n { let e = Foundation.exp(p[k * inner] - m); o[k * inner] = e; total += e }
            if log {
                let lse = Foundation.log(total)
                for k in 0..<n { o[k * inner] = p[k * inner] - m - lse }
            } else {
                let inv = 1 / total
                for k in 0..<n { o[k * inner] *= inv }
            }
        }
    }
    return storage
}

extension Tensor {
    /// `softmax(x)_i = exp(x_i − max x) / Σ_j exp(x_j − max x)` along `axis` (the last by default).
    public func softmax(axis: Int = -1) -> Tensor {
        let axis = axis < 0 ? axis + rank : axis
        precondition(axis >= 0 && axis < rank, "softmax: axis out of range for shape \(shape)")
        return Tensor.result(shape, softmaxKernel(self, axis: axis, log: false), inputs: [self], .softmax(axis: axis))
    }

    /// `log_softmax(x)_i = x_i − max x − log Σ_j exp(x_j − max x)` along `axis` (the last by default).
    public func logSoftmax(axis: Int = -1) -> Tensor {
        let axis = axis < 0 ? axis + rank : axis
        precondition(axis >= 0 && axis < rank, "logSoftmax: axis out of range for shape \(shape)")
        return Tensor.result(shape, softmaxKernel(self, axis: axis, log: true), inputs: [self], .logSoftmax(axis: axis))
    }
}
