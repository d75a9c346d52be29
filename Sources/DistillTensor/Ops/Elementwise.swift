import Foundation

// Elementwise ops: broadcasting binary arithmetic and the unary functions.
// Broadcasting follows NumPy/PyTorch: shapes are aligned on the right, and an axis of extent 1
// (or a missing one) stretches to match the other operand.

/// The shape two operands broadcast to, or an error naming both shapes and the op.
public func broadcastShape(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
    let rank = max(a.count, b.count)
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        guard da == db || da == 1 || db == 1 else {
            throw TensorError("\(op): shapes \(a) and \(b) cannot be broadcast together (axis \(i): \(da) vs \(db))")
        }
        out[i] = da == 1 ? db : da
    }
    return out
}

/// Element strides of a tensor of shape `shape` seen in the broadcast shape `out` (0 where it stretches).
func broadcastStrides(_ shape: [Int], to out: [Int]) -> [Int] {
    var strides = [Int](repeating: 0, count: out.count)
    var step = 1
    for i in Swift.stride(from: shape.count - 1, through: 0, by: -1) {
        let j = i + out.count - shape.count
        strides[j] = shape[i] == 1 ? 0 : step
        step *= shape[i]
    }
    return strides
}

/// Calls `body(outOffset, aOffset, bOffset, n, aStride, bStride)` for each innermost row of the broadcast.
@inline(__always)
func forEachBroadcastRow(_ out: [Int], _ sa: [Int], _ sb: [Int],
                         _ body: (Int, Int, Int, Int, Int, Int) -> Void) {
    guard let n = out.last else { body(0, 0, 0, 1, 0, 0); return }
    let rows = out.dropLast().reduce(1, *)
    if n == 0 || rows == 0 { return }
    let rank = out.count
    var index = [Int](repeating: 0, count: rank)
    var offA = 0, offB = 0
    for r in 0..<rows {
        body(r * n, offA, offB, n, sa[rank - 1], sb[rank - 1])
        var d = rank - 2
        while d >= 0 {
            index[d] += 1; offA += sa[d]; offB += sb[d]
            if index[d] < out[d] { break }
            offA -= sa[d] * out[d]; offB -= sb[d] * out[d]; index[d] = 0
            d -= 1
        }
    }
}

@inline(__always)
func binaryKernel(_ a: Tensor, _ b: Tensor, op: String, _ f: (Float, Float) -> Float) -> (shape: [Int], storage: TensorStorage) {
    let shape: [Int]
    do { shape = try broadcastShape(a.shape, b.shape, op: op) } catch { preconditionFailure("\(error)") }
    let storage = TensorStorage(count: shape.reduce(1, *))
    let o = storage.pointer, pa = a.data, pb = b.data
    if a.shape == b.shape {
        for i in 0..<a.count { o[i] = f(pa[i], pb[i]) }
    } else if b.count == 1 {
        let s = pb[0]
        for i in 0..<storage.count { o[i] = f(pa[i], s) }
    } else if a.count == 1 {
        let s = pa[0]
        for i in 0..<storage.count { o[i] = f(s, pb[i]) }
    } else {
        let sa = broadcastStrides(a.shape, to: shape), sb = broadcastStrides(b.shape, to: shape)
        forEachBroadcastRow(shape, sa, sb) { oo, oa, ob, n, ia, ib in
            if ia == 1 && ib == 1 { for j in 0..<n { o[oo + j] = f(pa[oa + j], pb[ob + j]) } }
            else if ia == 1 { let s = pb[ob]; for j in 0..<n { o[oo + j] = f(pa[oa + j], s) } }
            else if ib == 1 { let s = pa[oa]; for j in 0..<n { o[oo + j] = f(s, pb[ob + j]) } }
            else { for j in 0..<n { o[oo + j] = f(pa[oa + j * ia], pb[ob + j * ib]) } }
        }
    }
    return (shape, storage)
}

@inline(__always)
func unaryKernel(_ x: Tensor, _ f: (Float) -> Float) -> TensorStorage {
    let storage = TensorStorage(count: x.count)
    let o = storage.pointer, p = x.data
    for i in 0..<x.count { o[i] = f(p[i]) }
    return storage
}

/// `f(a[i], b[i])` for two tensors of one shape, not recorded (used by backward rules).
@inline(__always)
func zipKernel(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    precondition(a.count == b.count, "zip: \(a.shape) vs \(b.shape)")
    let out = Tensor(uninitializedShape: a.shape)
    let o = out.data, pa = a.data, pb = b.data
    for i in 0..<a.count { o[i] = f(pa[i], pb[i]) }
    return out
}

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let (s, st) = binaryKernel(a, b, op: "add", +)
        return result(s, st, inputs: [a, b], .add)
    }
    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let (s, st) = binaryKernel(a, b, op: "sub", -)
        return result(s, st, inputs: [a, b], .sub)
    }
    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let (s, st) = binaryKernel(a, b, op: "mul", *)
        return result(s, st, inputs: [a, b], .mul)
    }
    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let (s, st) = binaryKernel(a, b, op: "div", /)
        return result(s, st, inputs: [a, b], .div)
    }
    public static prefix func - (x: Tensor) -> Tensor { x.scaled(-1) }

    public static func + (a: Tensor, c: Float) -> Tensor { a.shifted(c) }
    public static func - (a: Tensor, c: Float) -> Tensor { a.shifted(-c) }
    public static func * (a: Tensor, c: Float) -> Tensor { a.scaled(c) }
    public static func * (c: Float, a: Tensor) -> Tensor { a.scaled(c) }
    public static func / (a: Tensor, c: Float) -> Tensor { a.scaled(1 / c) }

    /// `c · x`.
    public func scaled(_ c: Float) -> Tensor {
        Tensor.result(shape, unaryKernel(self) { $0 * c }, inputs: [self], .scale(c))
    }
    /// `x + c`.
    public func shifted(_ c: Float) -> Tensor {
        Tensor.result(shape, unaryKernel(self) { $0 + c }, inputs: [self], .shift)
    }
    public func exp() -> Tensor { Tensor.result(shape, unaryKernel(self) { Foundation.exp($0) }, inputs: [self], .exp) }
    public func log() -> Tensor { Tensor.result(shape, unaryKernel(self) { Foundation.log($0) }, inputs: [self], .log) }
    public func sqrt() -> Tensor { Tensor.result(shape, unaryKernel(self) { $0.squareRoot() }, inputs: [self], .sqrt) }
    /// `x^p` for a constant exponent.
    public func pow(_ p: Float) -> Tensor {
        let storage: TensorStorage = p == 2 ? unaryKernel(self) { $0 * $0 } : unaryKernel(self) { Foundation.pow($0, p) }
        return Tensor.result(shape, storage, inputs: [self], .pow(p))
    }
    public func abs() -> Tensor { Tensor.result(shape, unaryKernel(self) { Swift.abs($0) }, inputs: [self], .abs) }
    /// Limits every element to `[min, max]`; the gradient is zero where the limit applies.
    public func clamp(min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
        Tensor.result(shape, unaryKernel(self) { Swift.min(Swift.max($0, lo), hi) }, inputs: [self], .clamp(lo, hi))
    }
    public func relu() -> Tensor { Tensor.result(shape, unaryKernel(self) { $0 > 0 ? $0 : 0 }, inputs: [self], .relu) }
    public func leakyRelu(slope: Float = 0.01) -> Tensor {
        Tensor.result(shape, unaryKernel(self) { $0 > 0 ? $0 : slope * $0 }, inputs: [self], .leakyRelu(slope))
    }
    /// GELU, exact form `x · Φ(x)` (PyTorch's default).
    public func gelu() -> Tensor {
        Tensor.result(shape, unaryKernel(self) { 0.5 * $0 * (1 + erff($0 * 0.70710678)) }, inputs: [self], .gelu)
    }
    public func sigmoid() -> Tensor {
        Tensor.result(shape, unaryKernel(self) { 1 / (1 + Foundation.exp(-$0)) }, inputs: [self], .sigmoid)
    }
    public func tanh() -> Tensor { Tensor.result(shape, unaryKernel(self) { Foundation.tanh($0) }, inputs: [self], .tanh) }
}
