import DistillTensor
import Foundation

// Shape and indexing operators, for every element type: they move elements without arithmetic.
// ONNX graphs compute shapes at run time (Shape → Gather → Concat → Reshape), so these work on
// the INT64 tensors that carry shapes as much as on FLOAT data.

/// How `Pad` fills the border.
enum PadMode { case constant(Float), reflect, edge, wrap }

/// For one axis of extent `n` padded by `begin`/`end` (negative: cropped), the source coordinate
/// of every output coordinate, or -1 where the constant goes.
func padMap(_ n: Int, begin: Int, end: Int, mode: PadMode) -> [Int] {
    let out = Swift.max(0, n + begin + end)
    return (0..<out).map { o in
        var i = o - begin
        if i >= 0 && i < n { return i }
        guard n > 0 else { return -1 }
        switch mode {
        case .constant: return -1
        case .edge: return Swift.min(Swift.max(i, 0), n - 1)
        case .wrap: return ((i % n) + n) % n
        case .reflect:
            if n == 1 { return 0 }
            let period = 2 * (n - 1)
            i = ((i % period) + period) % period
            return i < n ? i : period - i
        }
    }
}

/// Builds a value of `shape` whose element at (o₀, o₁, ...) is the source element at
/// (maps[0][o₀], maps[1][o₁], ...), or `fill` where any map says -1. Pad and Tile use it.
func gatherByAxisMaps(_ value: ONNXValue, maps: [[Int]], fill: Double) -> ONNXValue {
    let shape = maps.map(\.count)
    let inStrides = stridesOf(value.shape)
    let rank = shape.count
    let n = shape.reduce(1, *)
    // Flat source index per output element (-1: fill).
    var sources = [Int](repeating: -1, count: n)
    if n > 0 {
        sources.withUnsafeMutableBufferPointer { dst in
            if rank == 0 { dst[0] = 0; return }
            let inner = shape[rank - 1], lastMap = maps[rank - 1]
            var index = [Int](repeating: 0, count: rank - 1)
            let rows = n / Swift.max(inner, 1)
            for row in 0..<rows {
                var base = 0, valid = true
                for d in 0..<(rank - 1) {
                    let s = maps[d][index[d]]
                    if s < 0 { valid = false; break }
                    base += s * inStrides[d]
                }
                if valid { for j in 0..<inner where lastMap[j] >= 0 { dst[row * inner + j] = base + lastMap[j] } }
                var d = rank - 2
                while d >= 0 { index[d] += 1; if index[d] < shape[d] { break }; index[d] = 0; d -= 1 }
            }
        }
    }
    switch value {
    case .float(let t):
        let out = Tensor(uninitializedShape: shape)
        let f = Float(fill), src = t.data
        for (i, s) in sources.enumerated() { out.data[i] = s >= 0 ? src[s] : f }
        return .float(out)
    case .int(let t):
        return .int(IntTensor(shape: shape, values: sources.map { $0 >= 0 ? t.values[$0] : t.type.wrap(Int64(fill)) }, type: t.type))
    case .string(let t):
        return .string(StringTensor(shape: shape, values: sources.map { $0 >= 0 ? t.values[$0] : "" }))
    }
}

/// Pads (or crops, for negative amounts) a FLOAT tensor on every axis.
func padFloat(_ x: Tensor, begin: [Int], end: [Int], mode: PadMode) -> Tensor {
    var fill: Double = 0
    if case .constant(let v) = mode { fill = Double(v) }
    let maps = x.shape.indices.map { padMap(x.shape[$0], begin: begin[$0], end: end[$0], mode: mode) }
    return gatherByAxisMaps(.float(x), maps: maps, fill: fill).floatTensor!
}

extension ONNXOps {
    /// The axes of Squeeze/Unsqueeze/Reduce*: an attribute before `inputSince`, input 1 after.
    static func axesArgument(_ c: OpContext, inputSince: Int, input: Int = 1) throws -> [Int]? {
        c.opset >= inputSince ? try c.optionalInts(input) : try c.attributes.ints("axes")
    }

    /// Transposes any value.
    static func transposed(_ v: ONNXValue, _ perm: [Int]) throws -> ONNXValue {
        let shape = v.shape
        guard perm.count == shape.count, perm.sorted() == Array(0..<shape.count) else {
            throw ONNXError("perm \(describeShape(perm)) is not a permutation of \(shape.count) axes")
        }
        let s = stridesOf(shape)
        return v.restrided(offset: 0, strides: perm.map { s[$0] }, shape: perm.map { shape[$0] })
    }

    static func Identity(_ c: OpContext) throws -> [ONNXValue] { [try c.input(0)] }

    /// Reshape: `0` keeps the input's extent (unless allowzero=1), `-1` is inferred. Before opset
    /// 5 the shape was an attribute.
    static func Reshape(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let requested = c.opset < 5 ? try c.attributes.ints("shape") ?? [] : try c.ints(1)
        let allowZero = try c.attributes.int("allowzero", 0) == 1
        let text = describeShape(requested)
        guard requested.count <= Limits.maxRank else { throw ONNXError("shape \(text) has more than \(Limits.maxRank) axes") }
        var shape = try requested.enumerated().map { i, d -> Int in
            if d == 0 && !allowZero {
                guard i < x.shape.count else { throw ONNXError("shape \(text): 0 at axis \(i) copies an extent the input \(x.shape) lacks") }
                return x.shape[i]
            }
            guard d >= -1 else { throw ONNXError("shape \(text) has a negative extent") }
            return d
        }
        try checkedShape(shape.map { $0 == -1 ? 1 : $0 }, "target", elementBytes: 1)  // a view: nothing is allocated
        let unknown = shape.indices.filter { shape[$0] == -1 }
        guard unknown.count <= 1 else { throw ONNXError("shape \(text) has more than one -1") }
        if let i = unknown.first {
            let known = shape.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            guard known > 0, x.count % known == 0 else { throw ONNXError("cannot reshape \(x.typeDescription) to \(text)") }
            shape[i] = x.count / known
        }
        return [try x.reshaped(shape)]
    }

    /// Flatten: [∏ dims < axis, ∏ dims ≥ axis].
    static func Flatten(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let rank = x.shape.count
        var axis = try c.attributes.int("axis", 1)
        if axis < 0 { axis += rank }
        guard axis >= 0 && axis <= rank else { throw ONNXError("axis \(axis) is out of range for rank \(rank)") }
        return [try x.reshaped([x.shape[..<axis].reduce(1, *), x.shape[axis...].reduce(1, *)])]
    }

    static func Transpose(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let perm = try c.attributes.ints("perm") ?? Array((0..<x.shape.count).reversed())
        return [try transposed(x, perm)]
    }

    static func Squeeze(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let rank = x.shape.count
        let axes = try axesArgument(c, inputSince: 13).map { try normalizedAxes($0, rank: rank) } ?? x.shape.indices.filter { x.shape[$0] == 1 }
        for a in axes where x.shape[a] != 1 { throw ONNXError("cannot squeeze axis \(a) of extent \(x.shape[a]) in \(x.shape)") }
        return [try x.reshaped(x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element))]
    }

    static func Unsqueeze(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        guard let raw = try axesArgument(c, inputSince: 13) else { throw ONNXError("axes are required") }
        let rank = x.shape.count + raw.count
        guard rank <= Limits.maxRank else { throw ONNXError("\(raw.count) new axes would make \(rank) axes, more than \(Limits.maxRank)") }
        let axes = Set(try normalizedAxes(raw, rank: rank))
        var shape: [Int] = []
        var rest = x.shape.makeIterator()
        for i in 0..<rank { shape.append(axes.contains(i) ? 1 : rest.next()!) }
        return [try x.reshaped(shape)]
    }

    static func Concat(_ c: OpContext) throws -> [ONNXValue] {
        let parts = c.inputs.compactMap { $0 }
        guard let axis = try c.attributes.int("axis") ?? (c.opset < 4 ? 1 : nil) else { throw ONNXError("attribute 'axis' is required") }
        return [try ONNXValue.concatenated(parts, axis: axis)]
    }

    /// Split into the node's outputs: sizes from the `split` attribute (before 13) or input,
    /// `num_outputs` (18), or equal parts.
    static func Split(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let axis = try normalizedAxis(try c.attributes.int("axis", 0), rank: x.shape.count)
        let dim = x.shape[axis]
        var sizes = c.opset >= 13 ? try c.optionalInts(1) : try c.attributes.ints("split")
        if sizes == nil || sizes!.isEmpty {
            let parts = try c.attributes.int("num_outputs") ?? c.outputCount
            guard parts >= 1, parts == c.outputCount else {
                throw ONNXError("cannot split into \(parts) parts: the node has \(c.outputCount) output\(c.outputCount == 1 ? "" : "s")")
            }
            let size = (dim + parts - 1) / parts
            if c.opset < 18 && dim % parts != 0 { throw ONNXError("axis \(axis) of extent \(dim) does not split evenly into \(parts) parts") }
            sizes = (0..<parts).map { Swift.max(0, Swift.min(size, dim - $0 * size)) }
        }
        guard sizes!.count <= Swift.max(c.outputCount, 1), sizes!.allSatisfy({ $0 >= 0 && $0 <= dim }), try checkedSum(sizes!) == dim else {
            throw ONNXError("split sizes \(describeShape(sizes!)) are not \(c.outputCount) non-negative sizes adding up to \(dim)")
        }
        let strides = stridesOf(x.shape)
        var start = 0
        return sizes!.map { size in
            var shape = x.shape
            shape[axis] = size
            defer { start += size }
            return x.restrided(offset: start * strides[axis], strides: strides, shape: shape)
        }
    }

    static func Shape(_ c: OpContext) throws -> [ONNXValue] {
        let shape = try c.input(0).shape
        let r = shape.count
        func clamp(_ v: Int) -> Int { Swift.min(Swift.max(v < 0 ? v + r : v, 0), r) }
        let start = clamp(try c.attributes.int("start", 0)), end = clamp(try c.attributes.int("end") ?? r)
        let part = start < end ? Array(shape[start..<end]) : []
        return [int64Value([part.count], part.map(Int64.init))]
    }

    static func Size(_ c: OpContext) throws -> [ONNXValue] { [int64Value([], [Int64(try c.input(0).count)])] }

    /// Gather along `axis`: out shape = data[:axis] + indices + data[axis+1:].
    static func Gather(_ c: OpContext) throws -> [ONNXValue] {
        let data = try c.input(0)
        guard case .int(let idx) = try c.input(1) else { throw ONNXError("indices must be an integer tensor") }
        let axis = try normalizedAxis(try c.attributes.int("axis", 0), rank: data.shape.count)
        let dim = data.shape[axis]
        let outer = data.shape[..<axis].reduce(1, *), inner = data.shape[(axis + 1)...].reduce(1, *)
        let shape = try checkedShape(Array(data.shape[..<axis]) + idx.shape + Array(data.shape[(axis + 1)...]))
        let resolved = try idx.values.map { v -> Int in
            let i = Int(v) < 0 ? Int(v) + dim : Int(v)
            guard i >= 0 && i < dim else { throw ONNXError("index \(v) is out of range for axis \(axis) of extent \(dim)") }
            return i
        }
        var sources: [Int] = []
        sources.reserveCapacity(outer * resolved.count * inner)
        for a in 0..<outer { for i in resolved { let base = (a * dim + i) * inner; for j in 0..<inner { sources.append(base + j) } } }
        return [data.picking(sources, shape: shape)]
    }

    /// GatherElements: out[i][j][k] = data[i][indices[i][j][k]][k] (for axis 1), out shape = indices'.
    static func GatherElements(_ c: OpContext) throws -> [ONNXValue] {
        let data = try c.input(0)
        guard case .int(let idx) = try c.input(1) else { throw ONNXError("indices must be an integer tensor") }
        let rank = data.shape.count
        guard idx.shape.count == rank else { throw ONNXError("indices \(idx.shape) must have the rank of data \(data.shape)") }
        let axis = try normalizedAxis(try c.attributes.int("axis", 0), rank: rank)
        let sources = try elementTargets(idx, dataShape: data.shape, axis: axis)
        return [data.picking(sources, shape: idx.shape)]
    }

    /// Slice: starts/ends/axes as attributes before opset 10, inputs (with steps) after.
    static func Slice(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let rank = x.shape.count
        let starts: [Int], ends: [Int], axesIn: [Int]?, steps: [Int]?
        if c.opset < 10 {
            starts = try c.attributes.ints("starts") ?? []; ends = try c.attributes.ints("ends") ?? []
            axesIn = try c.attributes.ints("axes"); steps = nil
        } else {
            starts = try c.ints(1); ends = try c.ints(2); axesIn = try c.optionalInts(3); steps = try c.optionalInts(4)
        }
        let axes = try normalizedAxes(axesIn ?? Array(0..<starts.count), rank: rank)
        guard starts.count == ends.count, axes.count == starts.count, (steps?.count ?? starts.count) == starts.count else {
            throw ONNXError("starts \(describeShape(starts)), ends \(describeShape(ends)), axes \(describeShape(axesIn ?? [])) and steps \(describeShape(steps ?? [])) differ in length")
        }
        var shape = x.shape
        var strides = stridesOf(x.shape)
        var offset = 0
        for (k, axis) in axes.enumerated() {
            let dim = x.shape[axis], step = steps?[k] ?? 1
            guard step != 0, step > Int.min else { throw ONNXError("a step of \(step) on axis \(axis)") }
            var start = starts[k], end = ends[k]
            if start < 0 { start = start &+ dim }
            if end < 0 { end = end &+ dim }
            let count: Int
            if step > 0 {
                start = Swift.min(Swift.max(start, 0), dim); end = Swift.min(Swift.max(end, 0), dim)
                count = end > start ? (end - start - 1) / step + 1 : 0
            } else {
                start = Swift.min(Swift.max(start, 0), dim - 1); end = Swift.min(Swift.max(end, -1), dim - 1)
                count = start > end ? (start - end - 1) / -step + 1 : 0
            }
            if count > 0 { offset += start * strides[axis] }
            shape[axis] = count
            // With two or more elements |step| < dim, so the product stays inside the tensor; with
            // fewer the stride is never followed (and step·stride could overflow).
            strides[axis] = count > 1 ? strides[axis] * step : 0
        }
        return [x.restrided(offset: offset, strides: strides, shape: shape)]
    }

    /// Pad (constant, reflect, edge, wrap): pads as an attribute before opset 11, an input after
    /// (with optional axes from 18). Negative pads crop.
    static func Pad(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let rank = x.shape.count
        var pads: [Int], value: Double = 0
        var axes = Array(0..<rank)
        if c.opset < 11 {
            pads = try c.attributes.ints("pads") ?? c.attributes.ints("paddings") ?? []
            value = Double(try c.attributes.float("value", 0))
        } else {
            pads = try c.ints(1)
            if let v = c.optional(2) { value = try v.doubles().first ?? 0 }
            if c.opset >= 18, let a = try c.optionalInts(3) { axes = try normalizedAxes(a, rank: rank) }
        }
        guard pads.count == 2 * axes.count else { throw ONNXError("pads \(describeShape(pads)) must hold \(2 * axes.count) values") }
        _ = try checkedSizes(pads, "pads")
        var begin = [Int](repeating: 0, count: rank), end = begin
        for (k, a) in axes.enumerated() { begin[a] = pads[k]; end[a] = pads[k + axes.count] }
        let mode: PadMode
        switch try c.attributes.string("mode", "constant") {
        case "constant": mode = .constant(Float(value))
        case "reflect": mode = .reflect
        case "edge": mode = .edge
        case "wrap": mode = .wrap
        case let m: throw ONNXError("mode '\(m)' must be constant, reflect, edge or wrap")
        }
        for a in 0..<rank where try checkedSum(x.shape[a], begin[a], end[a]) < 0 { throw ONNXError("pads \(describeShape(pads)) crop more than axis \(a) holds") }
        let shape = try checkedShape((0..<rank).map { x.shape[$0] + begin[$0] + end[$0] })
        if case .reflect = mode, x.count == 0 { throw ONNXError("cannot reflect-pad an empty tensor") }
        if shape.contains(0) { return [x.emptied(to: shape)] }
        let maps = (0..<rank).map { padMap(x.shape[$0], begin: begin[$0], end: end[$0], mode: mode) }
        return [gatherByAxisMaps(x, maps: maps, fill: value)]
    }

    static func Expand(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        let shape = try broadcastShapes([x.shape, try c.ints(1)])
        return [x.broadcast(to: shape)]
    }

    static func Tile(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0), repeats = try c.ints(1)
        guard repeats.count == x.shape.count, repeats.allSatisfy({ $0 >= 0 }) else {
            throw ONNXError("repeats \(describeShape(repeats)) must be \(x.shape.count) non-negative integers")
        }
        let shape = try checkedShape(try x.shape.indices.map { try checkedProduct(x.shape[$0], repeats[$0], what: "axis \($0) repeated") })
        if shape.contains(0) { return [x.emptied(to: shape)] }
        let maps = x.shape.indices.map { a in (0..<(x.shape[a] * repeats[a])).map { $0 % Swift.max(x.shape[a], 1) } }
        return [gatherByAxisMaps(x, maps: maps, fill: 0)]
    }

    static func Constant(_ c: OpContext) throws -> [ONNXValue] {
        let a = c.attributes
        if let t = try a.tensor("value") { return [t] }
        if let f = try a.float("value_float") { return [floatValue([], [f])] }
        if let f = try a.floats("value_floats") { return [floatValue([f.count], f)] }
        if let i = try a.int("value_int") { return [int64Value([], [Int64(i)])] }
        if let i = try a.ints("value_ints") { return [int64Value([i.count], i.map(Int64.init))] }
        if let s = try a.string("value_string") { return [.string(StringTensor(shape: [], values: [s]))] }
        if let s = try a.strings("value_strings") { return [.string(StringTensor(shape: [s.count], values: s))] }
        throw ONNXError("no value attribute")
    }

    static func ConstantOfShape(_ c: OpContext) throws -> [ONNXValue] {
        let shape = try c.ints(0)
        let fill = try c.attributes.tensor("value") ?? floatValue([1], [0])
        guard fill.count == 1 else { throw ONNXError("value must hold one element") }
        try checkedShape(shape, elementBytes: storageBytes(fill.dataType))
        return [try fill.reshaped([]).broadcast(to: shape)]
    }

    static func Range(_ c: OpContext) throws -> [ONNXValue] {
        let start = try c.input(0)
        let (s, l, d) = (try c.scalar(0), try c.scalar(1), try c.scalar(2))
        guard d != 0, s.isFinite, l.isFinite, d.isFinite else { throw ONNXError("start, limit and delta must be finite and delta not 0") }
        let steps = ((l - s) / d).rounded(.up)
        guard steps.isFinite, steps <= Double(Limits.maxElements) else { throw ONNXError("the range from \(s) to \(l) by \(d) has too many elements") }
        let n = steps > 0 ? Int(steps) : 0  // a range that runs backwards is empty, however far (−1e30 steps)
        try checkedShape([n], elementBytes: storageBytes(start.dataType))
        if case .int(let t) = start {
            let (si, di) = (saturatingInt64(s), saturatingInt64(d))
            return [.int(IntTensor(shape: [n], values: (0..<n).map { si &+ Int64($0) &* di }, type: t.type))]
        }
        return [floatValue([n], (0..<n).map { Float(s + Double($0) * d) })]
    }

    static func DepthToSpace(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        guard x.shape.count == 4, let b = try c.attributes.int("blocksize", in: 1...Swift.max(1, x.shape[1])),
              let square = CheckedSize.multiply(b, b), x.shape[1] % square == 0 else {
            throw ONNXError("needs a 4-D input whose channels divide by blocksize² (input \(x.typeDescription))")
        }
        let (n, ch, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let crd = try c.attributes.string("mode", "DCR") == "CRD"
        let tmp = try x.reshaped(crd ? [n, ch / (b * b), b, b, h, w] : [n, b, b, ch / (b * b), h, w])
        let t = try transposed(tmp, crd ? [0, 1, 4, 2, 5, 3] : [0, 3, 4, 1, 5, 2])
        return [try t.reshaped([n, ch / (b * b), h * b, w * b])]
    }

    static func SpaceToDepth(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        guard x.shape.count == 4, let b = try c.attributes.int("blocksize", in: 1...Swift.max(1, Swift.min(x.shape[2], x.shape[3]))),
              x.shape[2] % b == 0, x.shape[3] % b == 0 else {
            throw ONNXError("needs a 4-D input whose height and width divide by blocksize (input \(x.typeDescription))")
        }
        let (n, ch, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let t = try transposed(try x.reshaped([n, ch, h / b, b, w / b, b]), [0, 3, 5, 1, 2, 4])
        return [try t.reshaped([n, ch * b * b, h / b, w / b])]
    }

    /// Trilu: keeps the upper (or lower) triangle of the last two axes, shifted by k.
    static func Trilu(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        guard x.shape.count >= 2 else { throw ONNXError("needs rank ≥ 2, got \(x.shape)") }
        let upper = try c.attributes.int("upper", 1) == 1
        let k = try c.optionalInts(1)?.first ?? 0
        let rows = x.shape[x.shape.count - 2], cols = x.shape[x.shape.count - 1]
        let keep = (0..<x.count).map { i -> Bool in
            let r = (i / cols) % Swift.max(rows, 1), col = i % cols
            return upper ? col - r >= k : col - r <= k
        }
        switch x {
        case .float(let t):
            let out = Tensor(uninitializedShape: t.shape)
            for i in 0..<t.count { out.data[i] = keep[i] ? t.data[i] : 0 }
            return [.float(out)]
        case .int(let t):
            return [.int(IntTensor(shape: t.shape, values: (0..<t.count).map { keep[$0] ? t.values[$0] : 0 }, type: t.type))]
        case .string: throw ONNXError("STRING input is not supported")
        }
    }
}
