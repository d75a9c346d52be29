import DistillTensor
import Foundation

// Shape arithmetic and strided loops shared by the operator functions. Every check here throws
// (an ONNX file is user input), so the engine's preconditions are never reached with bad shapes.

/// Row-major element strides of `shape`.
func stridesOf(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var step = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = step; step *= shape[i] }
    return s
}

/// `axis` made non-negative and checked against `rank` (ONNX allows [-rank, rank-1]).
func normalizedAxis(_ axis: Int, rank: Int, name: String = "axis") throws -> Int {
    let a = axis < 0 ? axis + rank : axis
    guard a >= 0 && a < rank else { throw ONNXError("\(name) \(axis) is out of range for rank \(rank)") }
    return a
}

/// Several axes normalised, checked and free of repeats.
func normalizedAxes(_ axes: [Int], rank: Int) throws -> [Int] {
    guard axes.count <= rank else { throw ONNXError("\(axes.count) axes \(describeShape(axes)) for rank \(rank)") }
    let result = try axes.map { try normalizedAxis($0, rank: rank, name: "axis") }
    guard Set(result).count == result.count else { throw ONNXError("axes \(describeShape(axes)) repeat an axis") }
    return result
}

/// `shape` checked before a value of that shape is allocated (see `checkedElementCount`): the
/// one check every operator makes on a shape it computed from attributes or input values. 8 bytes
/// per element by default, the widest the executor holds (Int64 values, the Int source index per
/// element that gathers build).
@discardableResult
func checkedShape(_ shape: [Int], _ what: String = "output", elementBytes: Int = 8) throws -> [Int] {
    try checkedElementCount(shape, what, elementBytes: elementBytes)
    return shape
}

/// Throws unless `steps` (nil: counting them overflowed) stays within `limit`: for operators
/// whose work is not bounded by their inputs' and output's sizes (an Einsum over many letters, a
/// pooling window as wide as a padded input). `limit` is `Limits.maxLoopSteps` for direct loops,
/// `Limits.maxMultiplyAdds` for BLAS products.
func checkWork(_ steps: Int?, _ what: String, limit: Int = Limits.maxLoopSteps) throws {
    guard let steps, steps <= limit else {
        let shown = limit.nonzeroBitCount == 1 ? "2^\(limit.trailingZeroBitCount)" : String(limit)
        throw ONNXError("\(what) needs more than \(shown) steps (the sizes are corrupt or hostile)")
    }
}

/// The product of extents or counts taken from a file, or an error instead of an overflow.
func checkedProduct(_ values: Int..., what: String) throws -> Int {
    guard let p = CheckedSize.product(values) else { throw ONNXError("\(what): \(values.map(String.init).joined(separator: " × ")) overflows") }
    return p
}

/// `a + b + c` for extents and paddings read from a file, or an error instead of an overflow.
func checkedSum(_ values: Int...) throws -> Int { try checkedSum(values) }
func checkedSum(_ values: [Int]) throws -> Int {
    var total = 0
    for v in values {
        let (s, overflow) = total.addingReportingOverflow(v)
        guard !overflow else { throw ONNXError("extents \(describeShape(values)) overflow") }
        total = s
    }
    return total
}

/// Attribute integers that size things (pads, strides, kernels) must stay below 2^31 in magnitude.
func checkedSizes(_ values: [Int], _ name: String) throws -> [Int] {
    guard values.count <= Limits.maxRank * 2, values.allSatisfy({ $0 > -(1 << 31) && $0 < 1 << 31 }) else {
        throw ONNXError("\(name) \(describeShape(values)) are out of range (each must lie within ±2^31, one or two per axis)")
    }
    return values
}

/// A number as Int64 without trapping: NaN is 0, values beyond the range saturate.
func saturatingInt64(_ v: Double) -> Int64 {
    guard !v.isNaN else { return 0 }
    if v >= 9.2e18 { return .max }
    if v <= -9.2e18 { return .min }
    return Int64(v.rounded(.towardZero))
}

/// NumPy broadcasting of any number of shapes.
func broadcastShapes(_ shapes: [[Int]]) throws -> [Int] {
    let rank = shapes.map(\.count).max() ?? 0
    var out = [Int](repeating: 1, count: rank)
    for s in shapes {
        for (i, d) in s.enumerated() {
            let j = i + rank - s.count
            if out[j] == d || d == 1 { continue }
            guard out[j] == 1 else {
                throw ONNXError("shapes \(shapes.map { "\($0)" }.joined(separator: " and ")) cannot be broadcast together")
            }
            out[j] = d
        }
    }
    return try checkedShape(out)
}

/// Strides of `shape` seen inside the broadcast shape `out` (0 along stretched axes).
func broadcastStridesOf(_ shape: [Int], to out: [Int]) -> [Int] {
    var result = [Int](repeating: 0, count: out.count)
    let own = stridesOf(shape)
    for i in 0..<shape.count where shape[i] != 1 { result[i + out.count - shape.count] = own[i] }
    return result
}

/// Visits every index of `shape` in row-major order, calling `body(flatIndex, offsets)` where
/// `offsets[k]` is Σ index·strides[k]: the element's position in each strided operand.
@inline(__always)
func forEachStrided(_ shape: [Int], _ strides: [[Int]], _ body: (Int, UnsafeMutablePointer<Int>) -> Void) {
    let total = shape.reduce(1, *)
    guard total > 0 else { return }
    let rank = shape.count, k = strides.count
    let offsets = UnsafeMutablePointer<Int>.allocate(capacity: Swift.max(k, 1))
    offsets.initialize(repeating: 0, count: Swift.max(k, 1))
    defer { offsets.deallocate() }
    if rank == 0 { body(0, offsets); return }
    var index = [Int](repeating: 0, count: rank)
    for flat in 0..<total {
        body(flat, offsets)
        var d = rank - 1
        while d >= 0 {
            index[d] += 1
            for j in 0..<k { offsets[j] += strides[j][d] }
            if index[d] < shape[d] { break }
            for j in 0..<k { offsets[j] -= strides[j][d] * shape[d] }
            index[d] = 0
            d -= 1
        }
    }
}

/// Copies the elements of a strided view (`offset`, `strides`, `shape`) of `src` into a new
/// contiguous array: transposes, slices, broadcasts.
func stridedCopy<T>(_ src: UnsafePointer<T>, offset: Int, strides: [Int], shape: [Int], into dst: UnsafeMutablePointer<T>) {
    let rank = shape.count
    guard rank > 0 else { dst[0] = src[offset]; return }
    let inner = shape[rank - 1], innerStride = strides[rank - 1]
    let outerShape = Array(shape.dropLast()), outerStrides = Array(strides.dropLast())
    guard inner > 0 else { return }
    forEachStrided(outerShape, [outerStrides]) { row, offs in
        let s = src + offset + offs[0], d = dst + row * inner
        if innerStride == 1 { d.update(from: s, count: inner) } else { for j in 0..<inner { d[j] = s[j * innerStride] } }
    }
}

extension ONNXValue {
    /// The same elements in a new shape (element count unchanged). Float tensors share storage.
    func reshaped(_ shape: [Int]) throws -> ONNXValue {
        // No allocation (the elements are shared): only the shape itself is checked, at 1 byte per element.
        guard shape.allSatisfy({ $0 >= 0 }), (try? checkedShape(shape, elementBytes: 1)) != nil, shape.reduce(1, *) == count else {
            throw ONNXError("cannot reshape \(typeDescription) (\(count) elements) to \(describeShape(shape))")
        }
        switch self {
        case .float(let t): return .float(Tensor(shape: shape, storage: t.storage))
        case .int(var t): t.shape = shape; return .int(t)
        case .string(var t): t.shape = shape; return .string(t)
        }
    }

    /// An empty value of this type with `shape` (which has a zero extent): what Pad and Tile
    /// return without building one index map per axis (an empty [0, 2^31] needs none).
    func emptied(to shape: [Int]) -> ONNXValue {
        switch self {
        case .float: return .float(Tensor(uninitializedShape: shape))
        case .int(let t): return .int(IntTensor(shape: shape, values: [], type: t.type))
        case .string: return .string(StringTensor(shape: shape, values: []))
        }
    }

    /// A strided view of this value copied into a new contiguous value of `shape`.
    func restrided(offset: Int, strides: [Int], shape: [Int]) -> ONNXValue {
        let n = shape.reduce(1, *)
        switch self {
        case .float(let t):
            let out = Tensor(uninitializedShape: shape)
            if n > 0 { stridedCopy(t.data, offset: offset, strides: strides, shape: shape, into: out.data) }
            return .float(out)
        case .int(let t):
            let values = [Int64](unsafeUninitializedCapacity: n) { buf, done in
                if n > 0 { t.values.withUnsafeBufferPointer { stridedCopy($0.baseAddress!, offset: offset, strides: strides, shape: shape, into: buf.baseAddress!) } }
                done = n
            }
            return .int(IntTensor(shape: shape, values: values, type: t.type))
        case .string(let t):
            var values: [String] = []
            values.reserveCapacity(n)
            forEachStrided(shape, [strides]) { _, o in values.append(t.values[offset + o[0]]) }
            return .string(StringTensor(shape: shape, values: values))
        }
    }

    /// Copies this value broadcast to `shape` (NumPy rules; `shape` must be a valid target).
    func broadcast(to shape: [Int]) -> ONNXValue {
        if self.shape == shape { return self }
        return restrided(offset: 0, strides: broadcastStridesOf(self.shape, to: shape), shape: shape)
    }

    /// Elements picked by flat index, into `shape` (gathers of any type).
    func picking(_ indices: [Int], shape: [Int]) -> ONNXValue {
        switch self {
        case .float(let t):
            let out = Tensor(uninitializedShape: shape)
            let src = t.data, dst = out.data
            for (i, j) in indices.enumerated() { dst[i] = src[j] }
            return .float(out)
        case .int(let t): return .int(IntTensor(shape: shape, values: indices.map { t.values[$0] }, type: t.type))
        case .string(let t): return .string(StringTensor(shape: shape, values: indices.map { t.values[$0] }))
        }
    }

    /// Joins values of one type along `axis`.
    static func concatenated(_ parts: [ONNXValue], axis: Int) throws -> ONNXValue {
        guard let first = parts.first else { throw ONNXError("nothing to concatenate") }
        let rank = first.shape.count
        guard rank > 0 else { throw ONNXError("cannot concatenate scalars (\(first.typeDescription))") }
        let axis = try normalizedAxis(axis, rank: rank)
        for p in parts {
            guard p.dataType == first.dataType else { throw ONNXError("cannot concatenate \(first.typeDescription) and \(p.typeDescription)") }
            var a = p.shape, b = first.shape
            guard a.count == rank else { throw ONNXError("cannot concatenate \(first.typeDescription) and \(p.typeDescription): ranks differ") }
            a[axis] = 0; b[axis] = 0
            guard a == b else { throw ONNXError("cannot concatenate \(first.typeDescription) and \(p.typeDescription) along axis \(axis)") }
        }
        var shape = first.shape
        shape[axis] = try checkedSum(parts.map { $0.shape[axis] })
        try checkedShape(shape)
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        // Flat source index of every output element.
        var indices: [Int] = []
        var pieces: [(ONNXValue, Int)] = []  // (part, rows per outer step)
        for p in parts { pieces.append((p, p.shape[axis] * inner)) }
        if case .float = first {
            let out = Tensor(uninitializedShape: shape)
            var offset = 0
            for (p, rows) in pieces {
                let src = p.floatTensor!.data
                for a in 0..<outer { (out.data + a * shape[axis] * inner + offset).update(from: src + a * rows, count: rows) }
                offset += rows
            }
            return .float(out)
        }
        var partIndex: [Int] = []
        for a in 0..<outer {
            for (k, (_, rows)) in pieces.enumerated() {
                for r in 0..<rows { partIndex.append(k); indices.append(a * rows + r) }
            }
        }
        switch first {
        case .int(let t):
            let values = zip(partIndex, indices).map { parts[$0].intTensor!.values[$1] }
            return .int(IntTensor(shape: shape, values: values, type: t.type))
        default:
            let values = zip(partIndex, indices).map { k, i -> String in
                if case .string(let s) = parts[k] { return s.values[i] }
                return ""
            }
            return .string(StringTensor(shape: shape, values: values))
        }
    }
}

/// A FLOAT value from scalars.
func floatValue(_ shape: [Int], _ scalars: [Float]) -> ONNXValue { .float(Tensor(shape: shape, scalars: scalars)) }
/// An INT64 value.
func int64Value(_ shape: [Int], _ values: [Int64]) -> ONNXValue { .int(IntTensor(shape: shape, values: values, type: .int64)) }
/// A BOOL value.
func boolValue(_ shape: [Int], _ values: [Bool]) -> ONNXValue { .int(IntTensor(shape: shape, values: values.map { $0 ? 1 : 0 }, type: .bool)) }
