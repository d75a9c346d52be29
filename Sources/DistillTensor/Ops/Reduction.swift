// Reductions over axes (sum, mean, max) and broadcasting expansion, their adjoint.

/// Normalises possibly negative axes and checks them against `rank`.
func normalizedAxes(_ axes: [Int], rank: Int, op: String) -> [Int] {
    let result = axes.map { $0 < 0 ? $0 + rank : $0 }
    precondition(result.allSatisfy { $0 >= 0 && $0 < rank }, "\(op): axes \(axes) out of range for rank \(rank)")
    precondition(Set(result).count == result.count, "\(op): repeated axis in \(axes)")
    return result.sorted()
}

/// Sums (or takes the max over) one axis of a contiguous [outer, n, inner] view.
@inline(__always)
func reduceAxis(_ x: UnsafePointer<Float>, outer: Int, n: Int, inner: Int, into o: UnsafeMutablePointer<Float>, max useMax: Bool) {
    for a in 0..<outer {
        let dst = o + a * inner
        let src = x + a * n * inner
        if inner == 1 {  // contiguous reduction: several accumulators so it vectorises
            var acc = SIMD8<Float>(repeating: useMax ? -.infinity : 0)
            var k = 0
            while k + 8 <= n {
                let v = SIMD8<Float>(UnsafeBufferPointer(start: src + k, count: 8))
                acc = useMax ? pointwiseMax(acc, v) : acc + v
                k += 8
            }
            var r = useMax ? acc.max() : acc.sum()
            while k < n { r = useMax ? Swift.max(r, src[k]) : r + src[k]; k += 1 }
            dst[0] = r
        } else {
            dst.update(from: src, count: inner)
            for k in 1..<Swift.max(n, 1) {
                let row = src + k * inner
                if useMax { for i in 0..<inner { dst[i] = Swift.max(dst[i], row[i]) } }
                else { for i in 0..<inner { dst[i] += row[i] } }
            }
            if n == 0 { dst.update(repeating: useMax ? -.infinity : 0, count: inner) }
        }
    }
}

extension Tensor {
    private func reduced(_ axes: [Int], keepDims: Bool, max useMax: Bool, op: String) -> Tensor {
        let axes = normalizedAxes(axes, rank: rank, op: op)
        var current = self
        var shapeNow = shape
        for axis in axes.reversed() {
            let outer = shapeNow[..<axis].reduce(1, *), n = shapeNow[axis], inner = shapeNow[(axis + 1)...].reduce(1, *)
            shapeNow[axis] = 1
            let out = Tensor(uninitializedShape: shapeNow)
            reduceAxis(current.data, outer: outer, n: n, inner: inner, into: out.data, max: useMax)
            current = out
        }
        let finalShape = keepDims ? shapeNow : shapeNow.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        return Tensor(shape: finalShape, storage: current.storage)
    }

    /// Sum over `axes` (all axes when empty or nil).
    public func sum(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let axes = axes ?? Array(0..<rank)
        let out = reduced(axes, keepDims: keepDims, max: false, op: "sum")
        return Tensor.result(out, inputs: [self], .sum(inputShape: shape, axes: normalizedAxes(axes, rank: rank, op: "sum")))
    }
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    /// Mean over `axes` (all axes when nil).
    public func mean(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let axes = axes ?? Array(0..<rank)
        let n = normalizedAxes(axes, rank: rank, op: "mean").reduce(1) { $0 * shape[$1] }
        return sum(axes: axes, keepDims: keepDims).scaled(1 / Float(Swift.max(n, 1)))
    }
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Maximum over `axes` (all axes when nil). The gradient is shared equally between ties.
    public func max(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let axes = axes ?? Array(0..<rank)
        let out = reduced(axes, keepDims: keepDims, max: true, op: "max")
        return Tensor.result(out, inputs: [self], .max(axes: normalizedAxes(axes, rank: rank, op: "max")))
    }
    public func max(axis: Int, keepDims: Bool = false) -> Tensor { max(axes: [axis], keepDims: keepDims) }

    /// Index of the largest element along the last axis, for each row (no gradient).
    public func argmaxLastAxis() -> [Int] {
        let n = shape.last ?? 1, rows = count / Swift.max(n, 1)
        let p = data
        return (0..<rows).map { r in
            var best = 0
            for j in 1..<Swift.max(n, 1) where p[r * n + j] > p[r * n + best] { best = j }
            return best
        }
    }

    /// Copies this tensor across the axes where `target` is larger (NumPy broadcasting).
    public func expand(to target: [Int]) -> Tensor {
        if target == shape { return self }
        let valid = (try? broadcastShape(shape, target, op: "expand")) == target
        precondition(valid, "expand: shape \(shape) cannot be broadcast to \(target)")
        let storage = TensorStorage(count: target.reduce(1, *))
        let o = storage.pointer, p = data
        let sa = broadcastStrides(shape, to: target), zero = [Int](repeating: 0, count: target.count)
        forEachBroadcastRow(target, sa, zero) { oo, oa, _, n, ia, _ in
            if ia == 1 { (o + oo).update(from: p + oa, count: n) } else { for j in 0..<n { o[oo + j] = p[oa + j * ia] } }
        }
        return Tensor.result(target, storage, inputs: [self], .expand(inputShape: shape))
    }

    /// Sums a broadcast gradient back down to `target` (the adjoint of `expand`).
    public func sum(toShape target: [Int]) -> Tensor {
        if target == shape { return self }
        let lead = rank - target.count
        precondition(lead >= 0, "sum(toShape:): \(shape) cannot reduce to \(target)")
        var axes = Array(0..<lead)
        for (i, d) in target.enumerated() where d == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        return sum(axes: axes, keepDims: true).reshaped(target)
    }
}
