// Shape ops: reshape, permute/transpose, flatten, concat, slice, index-select and gather.

extension Tensor {
    /// The same elements in a new shape (one extent may be -1: inferred). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var target = newShape
        if let i = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "reshape: cannot reshape \(shape) to \(newShape)")
            target[i] = count / known
        }
        precondition(target.reduce(1, *) == count, "reshape: cannot reshape \(shape) (\(count) elements) to \(newShape)")
        return Tensor.result(target, storage, inputs: [self], .reshape(inputShape: shape))
    }

    /// Keeps axis 0 and merges the rest: [N, ...] → [N, prod(...)].
    public func flattened() -> Tensor { reshaped([shape.first ?? 1, -1]) }

    /// Reorders the axes: result axis i is input axis `order[i]`.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "permute: \(order) is not a permutation of the \(rank) axes of \(shape)")
        let outShape = order.map { shape[$0] }
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * shape[i + 1] }
        let strides = order.map { inStrides[$0] }
        let storage = TensorStorage(count: count)
        let o = storage.pointer, p = data
        let zero = [Int](repeating: 0, count: rank)
        forEachBroadcastRow(outShape, strides, zero) { oo, oa, _, n, ia, _ in
            for j in 0..<n { o[oo + j] = p[oa + j * ia] }
        }
        return Tensor.result(outShape, storage, inputs: [self], .permute(order))
    }

    /// Swaps two axes (the last two by default).
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(a < 0 ? a + rank : a, b < 0 ? b + rank : b)
        return permuted(order)
    }

    /// Elements `start ..< start+length` along `axis`.
    public func slice(axis: Int, start: Int, length: Int) -> Tensor {
        let axis = axis < 0 ? axis + rank : axis
        precondition(axis >= 0 && axis < rank && start >= 0 && length >= 0 && start + length <= shape[axis],
                     "slice: \(start)..<\(start + length) on axis \(axis) of \(shape)")
        var outShape = shape
        outShape[axis] = length
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        let storage = TensorStorage(count: outShape.reduce(1, *))
        for a in 0..<outer {
            (storage.pointer + a * length * inner).update(from: data + (a * shape[axis] + start) * inner, count: length * inner)
        }
        return Tensor.result(outShape, storage, inputs: [self], .slice(axis: axis, start: start, inputShape: shape))
    }

    /// Joins tensors along `axis`; all other extents must match.
    public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        precondition(!parts.isEmpty, "concat: no tensors")
        let first = parts[0]
        let axis = axis < 0 ? axis + first.rank : axis
        for p in parts {
            var a = p.shape, b = first.shape
            precondition(a.count == b.count && axis < a.count, "concat: shapes \(p.shape) and \(first.shape) along axis \(axis)")
            a[axis] = 0; b[axis] = 0
            precondition(a == b, "concat: shapes \(p.shape) and \(first.shape) differ off axis \(axis)")
        }
        var outShape = first.shape
        outShape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        let outer = first.shape[..<axis].reduce(1, *), inner = first.shape[(axis + 1)...].reduce(1, *)
        let storage = TensorStorage(count: outShape.reduce(1, *))
        var offset = 0
        for p in parts {
            let rows = p.shape[axis] * inner
            for a in 0..<outer {
                (storage.pointer + a * outShape[axis] * inner + offset).update(from: p.data + a * rows, count: rows)
            }
            offset += rows
        }
        return result(outShape, storage, inputs: parts, .concat(axis: axis, sizes: parts.map { $0.shape[axis] }))
    }

    /// Picks `indices` along `axis` (repeats allowed): `out[..., i, ...] = x[..., indices[i], ...]`.
    public func indexSelect(axis: Int, indices: [Int]) -> Tensor {
        let axis = axis < 0 ? axis + rank : axis
        precondition(axis >= 0 && axis < rank, "indexSelect: axis \(axis) for shape \(shape)")
        precondition(indices.allSatisfy { $0 >= 0 && $0 < shape[axis] }, "indexSelect: an index is outside 0..<\(shape[axis]) on axis \(axis) of \(shape)")
        var outShape = shape
        outShape[axis] = indices.count
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        let storage = TensorStorage(count: outShape.reduce(1, *))
        for a in 0..<outer {
            for (i, idx) in indices.enumerated() {
                (storage.pointer + (a * indices.count + i) * inner).update(from: data + (a * shape[axis] + idx) * inner, count: inner)
            }
        }
        return Tensor.result(outShape, storage, inputs: [self], .indexSelect(axis: axis, indices: indices))
    }

    /// For [N, C] scores and N class indices, the [N] entries `x[n, classes[n]]`.
    public func gather(classes: [Int]) -> Tensor {
        precondition(rank == 2 && classes.count == shape[0], "gather: \(classes.count) class indices for scores of shape \(shape)")
        let c = shape[1]
        precondition(classes.allSatisfy { $0 >= 0 && $0 < c }, "gather: a class index is outside 0..<\(c)")
        let storage = TensorStorage(count: classes.count)
        for (n, k) in classes.enumerated() { storage.pointer[n] = data[n * c + k] }
        return Tensor.result([classes.count], storage, inputs: [self], .gather(classes: classes))
    }
}
