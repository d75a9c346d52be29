import DistillTensor
import Foundation

// Elementwise operators: NumPy-broadcasting arithmetic on FLOAT and integer tensors, the
// activation functions, comparisons and logic (BOOL results), Cast, Clip and Where.

/// `o[i] = f(a[ia], b[ib])` over the broadcast of `aShape` and `bShape` into `outShape`.
func broadcastInto<A, B, R>(_ outShape: [Int], _ aShape: [Int], _ a: UnsafePointer<A>, _ bShape: [Int], _ b: UnsafePointer<B>,
                            _ o: UnsafeMutablePointer<R>, _ f: (A, B) throws -> R) throws {
    let n = outShape.reduce(1, *)
    if n == 0 { return }
    let aCount = aShape.reduce(1, *), bCount = bShape.reduce(1, *)
    if aShape == bShape {
        for i in 0..<n { o[i] = try f(a[i], b[i]) }
    } else if bCount == 1 && aCount == n {
        let s = b[0]
        for i in 0..<n { o[i] = try f(a[i], s) }
    } else if aCount == 1 && bCount == n {
        let s = a[0]
        for i in 0..<n { o[i] = try f(s, b[i]) }
    } else {
        let sa = broadcastStridesOf(aShape, to: outShape), sb = broadcastStridesOf(bShape, to: outShape)
        let rank = outShape.count
        let inner = outShape[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1]
        var failure: Error?
        forEachStrided(Array(outShape.dropLast()), [Array(sa.dropLast()), Array(sb.dropLast())]) { row, offs in
            guard failure == nil else { return }
            let pa = a + offs[0], pb = b + offs[1], po = o + row * inner
            do { for j in 0..<inner { po[j] = try f(pa[j * ia], pb[j * ib]) } } catch { failure = error }
        }
        if let failure { throw failure }
    }
}

/// Runs `body` with a pointer to `values` that is valid even when the array is empty.
@inline(__always)
func withPointer<T, R>(_ values: [T], _ body: (UnsafePointer<T>) throws -> R) rethrows -> R {
    if values.isEmpty {
        let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
        defer { p.deallocate() }
        return try body(p)
    }
    return try values.withUnsafeBufferPointer { try body($0.baseAddress!) }
}

/// The four arithmetic operators, for the vectorised, threaded paths of large FLOAT operands.
enum FloatArithmetic {
    case add, sub, mul, div

    /// `o[i] = a[i] ∘ b[i]` (or `a[i] ∘ s` when `b` is nil and `scalarB` is given; `s ∘ b[i]` when
    /// `scalarFirst`): loops the compiler vectorises, one per operator.
    @inline(__always)
    func apply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>, _ n: Int) {
        switch self {
        case .add: for i in 0..<n { o[i] = a[i] + b[i] }
        case .sub: for i in 0..<n { o[i] = a[i] - b[i] }
        case .mul: for i in 0..<n { o[i] = a[i] * b[i] }
        case .div: for i in 0..<n { o[i] = a[i] / b[i] }
        }
    }
    @inline(__always)
    func apply(_ a: UnsafePointer<Float>, scalar s: Float, scalarFirst: Bool, _ o: UnsafeMutablePointer<Float>, _ n: Int) {
        switch (self, scalarFirst) {
        case (.add, _): for i in 0..<n { o[i] = a[i] + s }
        case (.mul, _): for i in 0..<n { o[i] = a[i] * s }
        case (.sub, false): for i in 0..<n { o[i] = a[i] - s }
        case (.sub, true): for i in 0..<n { o[i] = s - a[i] }
        case (.div, false): for i in 0..<n { o[i] = a[i] / s }
        case (.div, true): for i in 0..<n { o[i] = s / a[i] }
        }
    }

    /// x ∘ y for the shapes CNNs meet, split across the workers: equal shapes (a residual Add),
    /// or one operand holding one value per leading index of the other ([N, C, H, W] ∘ [N, C, 1, 1],
    /// squeeze-excitation's Mul). nil for other shapes (the general broadcast then runs).
    func fast(_ x: Tensor, _ y: Tensor) -> Tensor? {
        let n = x.count
        guard n >= 4096 else { return nil }
        if x.shape == y.shape {
            let out = Tensor(uninitializedShape: x.shape)
            let a = SharedPointer(x.data), b = SharedPointer(y.data), o = SharedPointer(out.data)
            Parallel.forChunks(n) { r in apply(a.p + r.lowerBound, b.p + r.lowerBound, o.p + r.lowerBound, r.count) }
            return out
        }
        // One value per plane: the small operand's shape is the large one's first axes, then ones.
        func perPlane(_ big: Tensor, _ small: Tensor) -> Int? {
            guard big.rank == small.rank, big.rank >= 2 else { return nil }
            var lead = 0
            while lead < big.rank && small.shape[lead] == big.shape[lead] { lead += 1 }
            guard lead > 0, small.shape[lead...].allSatisfy({ $0 == 1 }), big.shape[lead...].contains(where: { $0 != 1 }) else { return nil }
            return big.shape[lead...].reduce(1, *)
        }
        let (big, small, smallFirst): (Tensor, Tensor, Bool)
        if x.count >= y.count { (big, small, smallFirst) = (x, y, false) } else { (big, small, smallFirst) = (y, x, true) }
        guard let area = perPlane(big, small) else { return nil }
        let out = Tensor(uninitializedShape: big.shape)
        let a = SharedPointer(big.data), b = SharedPointer(small.data), o = SharedPointer(out.data)
        Parallel.forChunks(small.count, costPerItem: area) { planes in
            for p in planes { apply(a.p + p * area, scalar: b.p[p], scalarFirst: smallFirst, o.p + p * area, area) }
        }
        return out
    }
}

/// Broadcasting binary operation on two FLOAT tensors.
func floatBinary(_ x: Tensor, _ y: Tensor, _ f: (Float, Float) -> Float) throws -> Tensor {
    let shape = try broadcastShapes([x.shape, y.shape])
    let out = Tensor(uninitializedShape: shape)
    try broadcastInto(shape, x.shape, x.data, y.shape, y.data, out.data, f)
    return out
}

/// Broadcasting binary operation on two integer tensors; the result has type `type`.
func intBinary<R>(_ x: IntTensor, _ y: IntTensor, _ f: (Int64, Int64) throws -> R) throws -> (shape: [Int], values: [R]) {
    let shape = try broadcastShapes([x.shape, y.shape])
    let n = shape.reduce(1, *)
    if n == 0 { return (shape, []) }
    var failure: Error?
    let values = [R](unsafeUninitializedCapacity: n) { buf, done in
        do {
            try withPointer(x.values) { px in try withPointer(y.values) { py in
                try broadcastInto(shape, x.shape, px, y.shape, py, buf.baseAddress!, f)
            } }
            done = n
        } catch { failure = error; done = 0 }
    }
    if let failure { throw failure }
    return (shape, values)
}

extension ONNXOps {
    // MARK: Helpers

    /// Before opset 7, binary operators broadcast only with `broadcast=1`, aligning B's axes at
    /// `axis` (default: the trailing axes). Returns B reshaped so NumPy broadcasting applies.
    static func legacyBroadcast(_ c: OpContext, _ a: ONNXValue, _ b: ONNXValue) throws -> ONNXValue {
        guard c.opset < 7 else { return b }
        guard try c.attributes.int("broadcast", 0) == 1 else {
            guard a.shape == b.shape else { throw ONNXError("shapes \(a.shape) and \(b.shape) differ and broadcast=0 (opset \(c.opset))") }
            return b
        }
        let rankA = a.shape.count, rankB = b.shape.count
        guard let axisAttr = try c.attributes.int("axis") else { return b }
        let axis = axisAttr < 0 ? axisAttr + rankA : axisAttr
        guard axis >= 0, axis + rankB <= rankA else { throw ONNXError("legacy broadcast: axis \(axisAttr) does not fit shapes \(a.shape) and \(b.shape)") }
        return try b.reshaped(b.shape + [Int](repeating: 1, count: rankA - axis - rankB))
    }

    /// A binary arithmetic operator on FLOAT or integer tensors (both of one type). `fast` names
    /// the operator for the vectorised paths of large FLOAT operands.
    static func arithmetic(_ c: OpContext, fast: FloatArithmetic? = nil, float f: (Float, Float) -> Float,
                           int g: ((Int64, Int64) throws -> Int64)?) throws -> [ONNXValue] {
        let a = try c.input(0)
        let b = try legacyBroadcast(c, a, try c.input(1))
        switch (a, b) {
        case (.float(let x), .float(let y)):
            if let fast, let out = fast.fast(x, y) { return [.float(out)] }
            return [.float(try floatBinary(x, y, f))]
        case (.int(let x), .int(let y)) where g != nil:
            let type = x.type
            let (shape, values) = try intBinary(x, y) { type.wrap(try g!($0, $1)) }
            return [.int(IntTensor(shape: shape, values: values, type: type))]
        default:
            throw ONNXError("unsupported operand types \(a.typeDescription) and \(b.typeDescription)")
        }
    }

    /// A FLOAT → FLOAT elementwise function.
    static func unary(_ c: OpContext, _ f: (Float) -> Float) throws -> [ONNXValue] {
        let x = try c.float(0)
        let out = Tensor(uninitializedShape: x.shape)
        let s = x.data, d = out.data
        for i in 0..<x.count { d[i] = f(s[i]) }
        return [.float(out)]
    }

    /// An elementwise function for FLOAT or integer tensors.
    static func numericUnary(_ c: OpContext, float f: (Float) -> Float, int g: (Int64) -> Int64) throws -> [ONNXValue] {
        switch try c.input(0) {
        case .float: return try unary(c, f)
        case .int(let t): return [.int(IntTensor(shape: t.shape, values: t.values.map { t.type.wrap(g($0)) }, type: t.type))]
        case let v: throw ONNXError("unsupported input type \(v.typeDescription)")
        }
    }

    /// A comparison: FLOAT or integer operands, BOOL result.
    static func comparison(_ c: OpContext, float f: (Float, Float) -> Bool, int g: (Int64, Int64) -> Bool) throws -> [ONNXValue] {
        let a = try c.input(0)
        let b = try legacyBroadcast(c, a, try c.input(1))
        switch (a, b) {
        case (.float(let x), .float(let y)):
            let shape = try broadcastShapes([x.shape, y.shape])
            var out = [Int64](repeating: 0, count: shape.reduce(1, *))
            try out.withUnsafeMutableBufferPointer { o in
                if let base = o.baseAddress { try broadcastInto(shape, x.shape, x.data, y.shape, y.data, base) { f($0, $1) ? Int64(1) : 0 } }
            }
            return [.int(IntTensor(shape: shape, values: out, type: .bool))]
        case (.int(let x), .int(let y)):
            let (shape, values) = try intBinary(x, y) { g($0, $1) ? Int64(1) : 0 }
            return [.int(IntTensor(shape: shape, values: values, type: .bool))]
        case (.string(let x), .string(let y)) where c.node.opType == "Equal":
            let shape = try broadcastShapes([x.shape, y.shape])
            let xs = ONNXValue.string(x).broadcast(to: shape), ys = ONNXValue.string(y).broadcast(to: shape)
            guard case .string(let p) = xs, case .string(let q) = ys else { return [] }
            return [boolValue(shape, zip(p.values, q.values).map { $0 == $1 })]
        default:
            throw ONNXError("cannot compare \(a.typeDescription) and \(b.typeDescription)")
        }
    }

    /// A logical operator on BOOL tensors.
    static func logical(_ c: OpContext, _ f: (Bool, Bool) -> Bool) throws -> [ONNXValue] {
        let a = try c.input(0)
        let b = try legacyBroadcast(c, a, try c.input(1))
        guard case .int(let x) = a, case .int(let y) = b, x.type == .bool, y.type == .bool else {
            throw ONNXError("\(c.node.opType) needs BOOL operands, got \(a.typeDescription) and \(b.typeDescription)")
        }
        let (shape, values) = try intBinary(x, y) { f($0 != 0, $1 != 0) ? Int64(1) : 0 }
        return [.int(IntTensor(shape: shape, values: values, type: .bool))]
    }

    /// Folds a variadic operator (Max, Min, Sum) over its inputs with broadcasting.
    static func variadic(_ c: OpContext, float f: @escaping (Float, Float) -> Float, int g: ((Int64, Int64) -> Int64)?) throws -> ONNXValue {
        let values = c.inputs.compactMap { $0 }
        guard var acc = values.first else { throw ONNXError("needs at least one input") }
        for v in values.dropFirst() {
            switch (acc, v) {
            case (.float(let x), .float(let y)): acc = .float(try floatBinary(x, y, f))
            case (.int(let x), .int(let y)) where g != nil:
                let (shape, out) = try intBinary(x, y, g!)
                acc = .int(IntTensor(shape: shape, values: out, type: x.type))
            default: throw ONNXError("unsupported operand types \(acc.typeDescription) and \(v.typeDescription)")
            }
        }
        return acc
    }

    // MARK: Arithmetic

    static func Add(_ c: OpContext) throws -> [ONNXValue] { try arithmetic(c, fast: .add, float: +, int: { $0 &+ $1 }) }
    static func Sub(_ c: OpContext) throws -> [ONNXValue] { try arithmetic(c, fast: .sub, float: -, int: { $0 &- $1 }) }
    static func Mul(_ c: OpContext) throws -> [ONNXValue] { try arithmetic(c, fast: .mul, float: *, int: { $0 &* $1 }) }
    static func Div(_ c: OpContext) throws -> [ONNXValue] {
        try arithmetic(c, fast: .div, float: /, int: { a, b in
            guard b != 0 else { throw ONNXError("integer division by zero") }
            return a.dividedReportingOverflow(by: b).partialValue  // truncation toward zero, as C; Int64.min / −1 wraps
        })
    }
    static func Pow(_ c: OpContext) throws -> [ONNXValue] {
        let a = try c.input(0), b = try c.input(1)
        switch (a, b) {
        case (.float(let x), _):
            let y: Tensor
            switch b {
            case .float(let t): y = t
            case .int(let t): y = Tensor(shape: t.shape, scalars: t.values.map { Float($0) })
            default: throw ONNXError("unsupported exponent type \(b.typeDescription)")
            }
            return [.float(try floatBinary(x, y) { base, e in e == 2 ? base * base : Foundation.pow(base, e) })]
        case (.int(let x), .int(let y)):
            let (shape, values) = try intBinary(x, y) { base, e -> Int64 in
                guard e >= 0 else { return base == 1 ? 1 : 0 }
                var r: Int64 = 1
                for _ in 0..<Swift.min(e, 64) { r = r &* base }
                return x.type.wrap(r)
            }
            return [.int(IntTensor(shape: shape, values: values, type: x.type))]
        case (.int(let x), .float(let y)):
            let xf = Tensor(shape: x.shape, scalars: x.values.map { Float($0) })
            let r = try floatBinary(xf, y) { Foundation.pow($0, $1) }
            return [.int(IntTensor(shape: r.shape, values: r.scalars.map { x.type.wrap(saturatingInt64(Double($0))) }, type: x.type))]
        default: throw ONNXError("unsupported operand types \(a.typeDescription) and \(b.typeDescription)")
        }
    }
    static func Mod(_ c: OpContext) throws -> [ONNXValue] {
        let fmod = try c.attributes.int("fmod", 0) == 1
        return try arithmetic(c, float: { a, b in
            let r = Foundation.fmod(a, b)
            if fmod { return r }
            return r != 0 && (r < 0) != (b < 0) ? r + b : r
        }, int: { a, b in
            guard b != 0 else { throw ONNXError("integer modulo by zero") }
            let r = a.remainderReportingOverflow(dividingBy: b).partialValue  // Int64.min % −1 is 0
            if fmod { return r }
            return r != 0 && (r < 0) != (b < 0) ? r + b : r  // the sign of the divisor, as Python
        })
    }
    static func Max(_ c: OpContext) throws -> [ONNXValue] {
        [try variadic(c, float: { $0.isNaN || $1.isNaN ? .nan : Swift.max($0, $1) }, int: { Swift.max($0, $1) })]
    }
    static func Min(_ c: OpContext) throws -> [ONNXValue] {
        [try variadic(c, float: { $0.isNaN || $1.isNaN ? .nan : Swift.min($0, $1) }, int: { Swift.min($0, $1) })]
    }
    static func Sum(_ c: OpContext) throws -> [ONNXValue] { [try variadic(c, float: +, int: { $0 &+ $1 })] }
    static func Mean(_ c: OpContext) throws -> [ONNXValue] {
        let n = Float(c.inputs.compactMap { $0 }.count)
        guard case .float(let total) = try variadic(c, float: +, int: nil) else { throw ONNXError("Mean needs FLOAT inputs") }
        return [.float(total.scaled(1 / n))]
    }

    // MARK: Activations

    static func Relu(_ c: OpContext) throws -> [ONNXValue] { try numericUnary(c, float: { $0 > 0 ? $0 : 0 }, int: { Swift.max($0, 0) }) }
    static func LeakyRelu(_ c: OpContext) throws -> [ONNXValue] {
        let alpha = try c.attributes.float("alpha", 0.01)
        return try unary(c) { $0 >= 0 ? $0 : alpha * $0 }
    }
    static func PRelu(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0), slope = try c.float(1)
        var s = slope
        // Before opset 7 the slope could be [C] for an [N, C, ...] input.
        if c.opset < 7 && slope.rank == 1 && x.rank > 2 && slope.count == x.shape[1] {
            s = Tensor(shape: [slope.count] + [Int](repeating: 1, count: x.rank - 2), storage: slope.storage)
        }
        return [.float(try floatBinary(x, s) { $0 >= 0 ? $0 : $0 * $1 })]
    }
    static func Sigmoid(_ c: OpContext) throws -> [ONNXValue] {
        return try unary(c) { $0 >= 0 ? 1 / (1 + Foundation.exp(-$0)) : Foundation.exp($0) / (1 + Foundation.exp($0)) }
    }
    static func Tanh(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.tanh($0) } }
    static func Erf(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { erff($0) } }
    static func Gelu(_ c: OpContext) throws -> [ONNXValue] {
        switch try c.attributes.string("approximate", "none") {
        case "none": return try unary(c) { 0.5 * $0 * (1 + erff($0 * 0.70710678118654752)) }
        case "tanh": return try unary(c) { 0.5 * $0 * (1 + Foundation.tanh(0.79788456080286536 * ($0 + 0.044715 * $0 * $0 * $0))) }
        case let other: throw ONNXError("approximate='\(other)' must be 'none' or 'tanh'")
        }
    }
    static func Elu(_ c: OpContext) throws -> [ONNXValue] {
        let alpha = try c.attributes.float("alpha", 1)
        return try unary(c) { $0 >= 0 ? $0 : alpha * (Foundation.exp($0) - 1) }
    }
    static func Selu(_ c: OpContext) throws -> [ONNXValue] {
        let alpha = try c.attributes.float("alpha", 1.67326319217681884765625)
        let gamma = try c.attributes.float("gamma", 1.05070102214813232421875)
        return try unary(c) { $0 > 0 ? gamma * $0 : gamma * (alpha * Foundation.exp($0) - alpha) }
    }
    static func Celu(_ c: OpContext) throws -> [ONNXValue] {
        let alpha = try c.attributes.float("alpha", 1)
        return try unary(c) { Swift.max(0, $0) + Swift.min(0, alpha * (Foundation.exp($0 / alpha) - 1)) }
    }
    static func HardSigmoid(_ c: OpContext) throws -> [ONNXValue] {
        let alpha = try c.attributes.float("alpha", 0.2), beta = try c.attributes.float("beta", 0.5)
        return try unary(c) { Swift.max(0, Swift.min(1, alpha * $0 + beta)) }
    }
    static func HardSwish(_ c: OpContext) throws -> [ONNXValue] {
        try unary(c) { $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) }
    }
    static func Softplus(_ c: OpContext) throws -> [ONNXValue] {
        try unary(c) { $0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0)) }
    }
    static func Softsign(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { $0 / (1 + Swift.abs($0)) } }
    static func ThresholdedRelu(_ c: OpContext) throws -> [ONNXValue] {
        let alpha = try c.attributes.float("alpha", 1)
        return try unary(c) { $0 > alpha ? $0 : 0 }
    }
    static func Shrink(_ c: OpContext) throws -> [ONNXValue] {
        let bias = try c.attributes.float("bias", 0), lambd = try c.attributes.float("lambd", 0.5)
        return try numericUnary(c, float: { $0 < -lambd ? $0 + bias : ($0 > lambd ? $0 - bias : 0) },
                                int: { Float($0) < -lambd ? $0 &+ saturatingInt64(Double(bias)) : (Float($0) > lambd ? $0 &- saturatingInt64(Double(bias)) : 0) })
    }
    static func Mish(_ c: OpContext) throws -> [ONNXValue] {
        try unary(c) { $0 * Foundation.tanh($0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0))) }
    }

    // MARK: Other unary functions

    static func Exp(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.exp($0) } }
    static func Log(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.log($0) } }
    static func Sqrt(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { $0.squareRoot() } }
    static func Reciprocal(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { 1 / $0 } }
    static func Neg(_ c: OpContext) throws -> [ONNXValue] { try numericUnary(c, float: { -$0 }, int: { 0 &- $0 }) }
    static func Abs(_ c: OpContext) throws -> [ONNXValue] { try numericUnary(c, float: { Swift.abs($0) }, int: { $0 < 0 ? 0 &- $0 : $0 }) }
    static func Sign(_ c: OpContext) throws -> [ONNXValue] {
        try numericUnary(c, float: { $0 > 0 ? 1 : ($0 < 0 ? -1 : ($0.isNaN ? .nan : 0)) }, int: { $0.signum() })
    }
    static func Floor(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { $0.rounded(.down) } }
    static func Ceil(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { $0.rounded(.up) } }
    static func Round(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { $0.rounded(.toNearestOrEven) } }
    static func Sin(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.sin($0) } }
    static func Cos(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.cos($0) } }
    static func Tan(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.tan($0) } }
    static func Asin(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.asin($0) } }
    static func Acos(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.acos($0) } }
    static func Atan(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.atan($0) } }
    static func Sinh(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.sinh($0) } }
    static func Cosh(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.cosh($0) } }
    static func Asinh(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.asinh($0) } }
    static func Acosh(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.acosh($0) } }
    static func Atanh(_ c: OpContext) throws -> [ONNXValue] { try unary(c) { Foundation.atanh($0) } }
    static func IsNaN(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0)
        return [boolValue(x.shape, x.scalars.map(\.isNaN))]
    }
    static func IsInf(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0)
        let neg = try c.attributes.int("detect_negative", 1) == 1, pos = try c.attributes.int("detect_positive", 1) == 1
        return [boolValue(x.shape, x.scalars.map { $0.isInfinite && (($0 > 0 && pos) || ($0 < 0 && neg)) })]
    }

    /// Clip: limits to [min, max]; the limits are attributes before opset 11 and inputs after.
    static func Clip(_ c: OpContext) throws -> [ONNXValue] {
        if c.opset < 11 {
            let lo = try c.attributes.float("min", -.greatestFiniteMagnitude), hi = try c.attributes.float("max", .greatestFiniteMagnitude)
            return try unary(c) { Swift.min(Swift.max($0, lo), hi) }
        }
        switch try c.input(0) {
        case .float:
            let lo = try c.optionalScalar(1) ?? -.infinity, hi = try c.optionalScalar(2) ?? .infinity
            return try unary(c) { $0.isNaN ? $0 : Swift.min(Swift.max($0, lo), hi) }
        case .int(let t):
            let lo = try c.optionalInts(1)?.first.map(Int64.init) ?? .min, hi = try c.optionalInts(2)?.first.map(Int64.init) ?? .max
            return [.int(IntTensor(shape: t.shape, values: t.values.map { Swift.min(Swift.max($0, lo), hi) }, type: t.type))]
        case let v: throw ONNXError("unsupported input type \(v.typeDescription)")
        }
    }

    // MARK: Types

    /// Converts `value` to `type` (FLOAT, the integer types and BOOL; strings to and from numbers).
    static func cast(_ value: ONNXValue, to type: ONNXDataType) throws -> ONNXValue {
        guard type.isSupported else { throw ONNXError("casting to \(type) is not supported (DistillKit computes in FLOAT)") }
        switch (value, type) {
        case (.float, .float), (.string, .string): return value
        case (.int(let t), .float): return .float(Tensor(shape: t.shape, scalars: t.values.map { Float($0) }))
        case (.float(let x), _) where type.isInteger:
            let values = x.scalars.map { v -> Int64 in
                if type == .bool { return v != 0 ? 1 : 0 }
                guard v.isFinite else { return v.isNaN ? 0 : (v > 0 ? .max : .min) }
                let clamped = Swift.max(Swift.min(Double(v).rounded(.towardZero), 9.2e18), -9.2e18)
                return type.wrap(Int64(clamped))
            }
            return .int(IntTensor(shape: x.shape, values: values, type: type))
        case (.int(let t), _) where type.isInteger:
            return .int(IntTensor(shape: t.shape, values: t.values.map { type.wrap($0) }, type: type))
        case (.string(let s), .float):
            return .float(Tensor(shape: s.shape, scalars: s.values.map { Float($0.trimmingCharacters(in: .whitespaces)) ?? .nan }))
        case (.string(let s), _):
            let values = try s.values.map { text -> Int64 in
                guard let v = Int64(text.trimmingCharacters(in: .whitespaces)) else { throw ONNXError("cannot cast the string '\(text)' to \(type)") }
                return type.wrap(v)
            }
            return .int(IntTensor(shape: s.shape, values: values, type: type))
        case (.int(let t), .string):
            return .string(StringTensor(shape: t.shape, values: t.values.map { t.type == .bool ? ($0 != 0 ? "1" : "0") : String($0) }))
        default:
            throw ONNXError("cannot cast \(value.typeDescription) to \(type)")
        }
    }

    static func Cast(_ c: OpContext) throws -> [ONNXValue] {
        let to: ONNXDataType
        if c.opset < 6, let name = try? c.attributes.string("to") {  // opset 1 named the type
            guard let t = ONNXDataType.allCases.first(where: { $0.description == name.uppercased() }) else { throw ONNXError("unknown type '\(name)'") }
            to = t
        } else {
            guard let raw = try c.attributes.int("to", in: 0...Int(Int32.max)) else { throw ONNXError("attribute 'to' is required") }
            to = try ONNXDataType.from(Int32(raw), what: "attribute 'to'")
        }
        return [try cast(try c.input(0), to: to)]
    }
    static func CastLike(_ c: OpContext) throws -> [ONNXValue] { [try cast(try c.input(0), to: try c.input(1).dataType)] }

    // MARK: Comparison and logic

    static func Equal(_ c: OpContext) throws -> [ONNXValue] { try comparison(c, float: ==, int: ==) }
    static func Less(_ c: OpContext) throws -> [ONNXValue] { try comparison(c, float: <, int: <) }
    static func Greater(_ c: OpContext) throws -> [ONNXValue] { try comparison(c, float: >, int: >) }
    static func LessOrEqual(_ c: OpContext) throws -> [ONNXValue] { try comparison(c, float: <=, int: <=) }
    static func GreaterOrEqual(_ c: OpContext) throws -> [ONNXValue] { try comparison(c, float: >=, int: >=) }
    static func And(_ c: OpContext) throws -> [ONNXValue] { try logical(c) { $0 && $1 } }
    static func Or(_ c: OpContext) throws -> [ONNXValue] { try logical(c) { $0 || $1 } }
    static func Xor(_ c: OpContext) throws -> [ONNXValue] { try logical(c) { $0 != $1 } }
    static func Not(_ c: OpContext) throws -> [ONNXValue] {
        guard case .int(let t) = try c.input(0), t.type == .bool else { throw ONNXError("Not needs a BOOL input") }
        return [.int(IntTensor(shape: t.shape, values: t.values.map { $0 == 0 ? 1 : 0 }, type: .bool))]
    }

    /// Where(condition, X, Y): X where the condition holds, else Y, all three broadcast.
    static func Where(_ c: OpContext) throws -> [ONNXValue] {
        guard case .int(let cond) = try c.input(0), cond.type == .bool else { throw ONNXError("the condition must be BOOL") }
        let x = try c.input(1), y = try c.input(2)
        guard x.dataType == y.dataType else { throw ONNXError("X and Y differ in type: \(x.typeDescription) and \(y.typeDescription)") }
        let shape = try broadcastShapes([cond.shape, x.shape, y.shape])
        guard case .int(let mask) = ONNXValue.int(cond).broadcast(to: shape) else { return [] }
        let xb = x.broadcast(to: shape), yb = y.broadcast(to: shape)
        switch (xb, yb) {
        case (.float(let p), .float(let q)):
            let out = Tensor(uninitializedShape: shape)
            for i in 0..<out.count { out.data[i] = mask.values[i] != 0 ? p.data[i] : q.data[i] }
            return [.float(out)]
        case (.int(let p), .int(let q)):
            return [.int(IntTensor(shape: shape, values: (0..<mask.count).map { mask.values[$0] != 0 ? p.values[$0] : q.values[$0] }, type: p.type))]
        case (.string(let p), .string(let q)):
            return [.string(StringTensor(shape: shape, values: (0..<mask.count).map { mask.values[$0] != 0 ? p.values[$0] : q.values[$0] }))]
        default: throw ONNXError("unsupported types")
        }
    }
}
