import DistillTensor
import Foundation

// Indexing operators beyond Gather/Slice: one-hot encodings, top-k, scatters, N-D gathers,
// masks, and a few elementwise odds and ends (BitShift, MeanVarianceNormalization).

/// Writes `updates` into a copy of `data` at flat positions `targets` with a reduction.
func scattered(_ data: ONNXValue, _ updates: ONNXValue, targets: [Int], reduction: String) throws -> ONNXValue {
    guard data.dataType == updates.dataType else { throw ONNXError("data \(data.typeDescription) and updates \(updates.typeDescription) differ in type") }
    func combine<T: Comparable & Numeric>(_ a: T, _ b: T) throws -> T {
        switch reduction {
        case "none": return b
        case "add": return a + b
        case "mul": return a * b
        case "max": return Swift.max(a, b)
        case "min": return Swift.min(a, b)
        default: throw ONNXError("reduction '\(reduction)' must be none, add, mul, max or min")
        }
    }
    switch (data, updates) {
    case (.float(let d), .float(let u)):
        let out = d.copy()
        for (i, j) in targets.enumerated() { out.data[j] = try combine(out.data[j], u.data[i]) }
        return .float(out)
    case (.int(var d), .int(let u)):
        for (i, j) in targets.enumerated() { d.values[j] = d.type.wrap(try combine(d.values[j], u.values[i])) }
        return .int(d)
    default: throw ONNXError("unsupported types")
    }
}

/// The flat positions in `dataShape` that GatherElements reads and ScatterElements writes:
/// element `i` of `indices` addresses its own coordinates with the one on `axis` replaced by
/// `indices[i]` (negative counts from the end). `indices` has the rank of the data and on every
/// other axis at most its extent.
func elementTargets(_ indices: IntTensor, dataShape: [Int], axis: Int) throws -> [Int] {
    for d in 0..<dataShape.count where d != axis && indices.shape[d] > dataShape[d] {
        throw ONNXError("indices \(indices.shape) exceed data \(dataShape) on axis \(d)")
    }
    let ds = stridesOf(dataShape), dim = dataShape[axis]
    var offStrides = ds
    offStrides[axis] = 0
    var targets = [Int](repeating: 0, count: indices.count)
    var failure: ONNXError?
    forEachStrided(indices.shape, [offStrides]) { i, offs in
        var k = Int(indices.values[i])
        if k < 0 { k += dim }
        if k < 0 || k >= dim { failure = ONNXError("index \(indices.values[i]) is out of range for axis \(axis) of extent \(dim)"); k = 0 }
        targets[i] = offs[0] + k * ds[axis]
    }
    if let failure { throw failure }
    return targets
}

extension ONNXOps {
    /// OneHot(indices, depth, values=[off, on]): a new axis of extent depth at `axis`.
    static func OneHot(_ c: OpContext) throws -> [ONNXValue] {
        let indices = try c.input(0).doubles()
        let shape = try c.input(0).shape
        let depthValue = try c.scalar(1)
        guard depthValue >= 1, depthValue < Double(1 << 31) else { throw ONNXError("depth \(depthValue) must be an integer in 1..<2^31") }
        let depth = Int(depthValue)
        let values = try c.input(2)
        guard values.count == 2 else { throw ONNXError("values must hold [off, on]") }
        let rank = shape.count + 1
        var axis = try c.attributes.int("axis", -1)
        if axis < 0 { axis += rank }
        guard axis >= 0 && axis < rank else { throw ONNXError("axis is out of range") }
        let outer = shape[..<axis].reduce(1, *), inner = shape[axis...].reduce(1, *)
        try checkedShape(Array(shape[..<axis]) + [depth] + Array(shape[axis...]))
        var sources = [Int](repeating: 0, count: outer * depth * inner)
        for a in 0..<outer { for i in 0..<inner {
            guard indices[a * inner + i].isFinite, Swift.abs(indices[a * inner + i]) < Double(1 << 40) else { continue }
            var k = Int(indices[a * inner + i])
            if k < 0 { k += depth }
            if k >= 0 && k < depth { sources[(a * depth + k) * inner + i] = 1 }
        } }
        return [values.picking(sources, shape: Array(shape[..<axis]) + [depth] + Array(shape[axis...]))]
    }

    /// EyeLike: ones on the k-th diagonal of a matrix shaped like the input.
    static func EyeLike(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        guard x.shape.count == 2 else { throw ONNXError("input must be 2-D, got \(x.typeDescription)") }
        let k = try c.attributes.int("k", 0)
        let (rows, cols) = (x.shape[0], x.shape[1])
        let ones = (0..<(rows * cols)).map { $0 % cols - $0 / cols == k ? Float(1) : 0 }
        let type = try c.attributes.int("dtype", in: 0...Int(Int32.max)).map { try ONNXDataType.from(Int32($0), what: "dtype") } ?? x.dataType
        return [try cast(floatValue([rows, cols], ones), to: type)]
    }

    /// TopK(X, K): the K largest (or smallest) along `axis`, with their INT64 indices; ties keep
    /// the lower index first.
    static func TopK(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let values = try x.doubles()
        let k = c.opset < 10 ? try c.attributes.int("k", 1) : try c.ints(1).first ?? 0
        let axis = try normalizedAxis(try c.attributes.int("axis", -1), rank: x.shape.count)
        let largest = try c.attributes.int("largest", 1) == 1
        let n = x.shape[axis]
        guard k >= 0 && k <= n else { throw ONNXError("k \(k) is outside 0...\(n)") }
        let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        var picked = [Int](repeating: 0, count: outer * k * inner), positions = [Int64](repeating: 0, count: outer * k * inner)
        for a in 0..<outer { for i in 0..<inner {
            let order = (0..<n).sorted { p, q in
                let u = values[(a * n + p) * inner + i], v = values[(a * n + q) * inner + i]
                return u == v ? p < q : (largest ? u > v : u < v)
            }
            for j in 0..<k {
                picked[(a * k + j) * inner + i] = (a * n + order[j]) * inner + i
                positions[(a * k + j) * inner + i] = Int64(order[j])
            }
        } }
        var shape = x.shape
        shape[axis] = k
        return [x.picking(picked, shape: shape), int64Value(shape, positions)]
    }

    /// NonZero: the INT64 coordinates [rank, count] of the non-zero elements, row-major.
    static func NonZero(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let values = try x.doubles()
        let strides = stridesOf(x.shape)
        let hits = values.indices.filter { values[$0] != 0 }
        var coordinates: [Int64] = []
        for d in x.shape.indices { for h in hits { coordinates.append(Int64((h / strides[d]) % x.shape[d])) } }
        return [int64Value([x.shape.count, hits.count], coordinates)]
    }

    /// The flat element offsets that the last axis of `indices` addresses in `data`, per index
    /// tuple, after `batchDims` shared leading axes; and the size of each addressed slice.
    static func ndOffsets(dataShape: [Int], indices: IntTensor, batchDims: Int) throws -> (offsets: [Int], slice: Int, sliceShape: [Int]) {
        guard let depth = indices.shape.last, batchDims >= 0, batchDims < Swift.min(indices.shape.count, dataShape.count),
              depth >= 1, batchDims + depth <= dataShape.count,
              Array(indices.shape[..<batchDims]) == Array(dataShape[..<batchDims]) else {
            throw ONNXError("indices \(indices.shape) with batch_dims \(batchDims) do not fit data \(dataShape): the last extent must lie in 1...\(dataShape.count - Swift.max(batchDims, 0)) and the first batch_dims extents must match")
        }
        let strides = stridesOf(dataShape)
        let batch = dataShape[..<batchDims].reduce(1, *)
        let tuples = indices.count / Swift.max(depth, 1)
        let perBatch = tuples / Swift.max(batch, 1)
        let sliceShape = Array(dataShape[(batchDims + depth)...])
        var offsets: [Int] = []
        for t in 0..<tuples {
            var offset = (t / Swift.max(perBatch, 1)) * (batchDims > 0 ? strides[batchDims - 1] : 0)
            for j in 0..<depth {
                let dim = dataShape[batchDims + j]
                var v = Int(indices.values[t * depth + j])
                if v < 0 { v += dim }
                guard v >= 0 && v < dim else { throw ONNXError("index \(indices.values[t * depth + j]) is out of range for extent \(dim)") }
                offset += v * strides[batchDims + j]
            }
            offsets.append(offset)
        }
        return (offsets, sliceShape.reduce(1, *), sliceShape)
    }

    static func GatherND(_ c: OpContext) throws -> [ONNXValue] {
        let data = try c.input(0)
        guard case .int(let idx) = try c.input(1) else { throw ONNXError("indices must be an integer tensor") }
        let batchDims = try c.attributes.int("batch_dims", 0)
        let (offsets, slice, sliceShape) = try ndOffsets(dataShape: data.shape, indices: idx, batchDims: batchDims)
        try checkedShape(Array(idx.shape.dropLast()) + sliceShape)
        let sources = offsets.flatMap { o in (0..<slice).map { o + $0 } }
        return [data.picking(sources, shape: Array(idx.shape.dropLast()) + sliceShape)]
    }

    static func ScatterND(_ c: OpContext) throws -> [ONNXValue] {
        let data = try c.input(0), updates = try c.input(2)
        guard case .int(let idx) = try c.input(1) else { throw ONNXError("indices must be an integer tensor") }
        let (offsets, slice, _) = try ndOffsets(dataShape: data.shape, indices: idx, batchDims: 0)
        guard updates.count == offsets.count * slice else { throw ONNXError("updates \(updates.shape) do not fit indices \(idx.shape)") }
        let targets = offsets.flatMap { o in (0..<slice).map { o + $0 } }
        return [try scattered(data, updates, targets: targets, reduction: try c.attributes.string("reduction", "none"))]
    }

    /// ScatterElements (and the older Scatter): updates written along `axis` at `indices`.
    static func ScatterElements(_ c: OpContext) throws -> [ONNXValue] {
        let data = try c.input(0), updates = try c.input(2)
        guard case .int(let idx) = try c.input(1) else { throw ONNXError("indices must be an integer tensor") }
        guard idx.shape == updates.shape, idx.shape.count == data.shape.count else {
            throw ONNXError("indices \(idx.shape), updates \(updates.shape) and data \(data.shape) must have one rank, indices and updates one shape")
        }
        let axis = try normalizedAxis(try c.attributes.int("axis", 0), rank: data.shape.count)
        let targets = try elementTargets(idx, dataShape: data.shape, axis: axis)
        return [try scattered(data, updates, targets: targets, reduction: try c.attributes.string("reduction", "none"))]
    }
    static func Scatter(_ c: OpContext) throws -> [ONNXValue] { try ScatterElements(c) }

    /// Compress: the slices along `axis` (or of the flattened input) where the condition holds.
    static func Compress(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let keep = try c.input(1).doubles().map { $0 != 0 }
        guard let axisAttr = try c.attributes.int("axis") else {
            let picked = (0..<Swift.min(keep.count, x.count)).filter { keep[$0] }
            return [x.picking(picked, shape: [picked.count])]
        }
        let axis = try normalizedAxis(axisAttr, rank: x.shape.count)
        let n = x.shape[axis], outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        guard keep.count <= n else { throw ONNXError("the condition is longer than axis \(axis)") }
        let chosen = (0..<keep.count).filter { keep[$0] }
        let sources = (0..<outer).flatMap { a in chosen.flatMap { k in (0..<inner).map { (a * n + k) * inner + $0 } } }
        var shape = x.shape
        shape[axis] = chosen.count
        return [x.picking(sources, shape: shape)]
    }

    /// BitShift on unsigned integers.
    static func BitShift(_ c: OpContext) throws -> [ONNXValue] {
        guard case .int(let x) = try c.input(0), case .int(let y) = try c.input(1) else { throw ONNXError("operands must be unsigned integers") }
        let left = try c.attributes.string("direction", "LEFT") == "LEFT"
        let (shape, values) = try intBinary(x, y) { a, b -> Int64 in
            let u = UInt64(bitPattern: a), s = UInt64(bitPattern: b)
            guard s < 64 else { return 0 }
            return x.type.wrap(Int64(bitPattern: left ? u << s : u >> s))
        }
        return [.int(IntTensor(shape: shape, values: values, type: x.type))]
    }

    /// MeanVarianceNormalization: (X − mean) / √(var) over `axes` (default [0, 2, 3]).
    static func MeanVarianceNormalization(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0)
        let axes = try normalizedAxes(try c.attributes.ints("axes") ?? [0, 2, 3], rank: x.rank)
        var outShape = x.shape
        for a in axes { outShape[a] = 1 }
        var mapped = stridesOf(outShape)
        for a in axes { mapped[a] = 0 }
        let count = Double(axes.reduce(1) { $0 * x.shape[$1] })
        var sums = [Double](repeating: 0, count: outShape.reduce(1, *)), squares = sums
        forEachStrided(x.shape, [mapped]) { i, o in let v = Double(x.data[i]); sums[o[0]] += v; squares[o[0]] += v * v }
        let out = Tensor(uninitializedShape: x.shape)
        forEachStrided(x.shape, [mapped]) { i, o in
            let mean = sums[o[0]] / count
            let std = Swift.max(squares[o[0]] / count - mean * mean, 0).squareRoot()
            out.data[i] = Float((Double(x.data[i]) - mean) / (std + 1e-9))
        }
        return [.float(out)]
    }
}
