import DistillTensor
import Foundation

// Reductions over axes (accumulated in Double), ArgMax/ArgMin and CumSum.

extension ONNXOps {
    /// The reduced axes and kept-dims flag of a Reduce* node. `axesInputSince` is the opset from
    /// which the axes are input 1 rather than an attribute (13 for ReduceSum, 18 for the rest).
    /// Returns nil axes for "no reduction" (empty axes with noop_with_empty_axes=1).
    static func reductionAxes(_ c: OpContext, rank: Int, axesInputSince: Int) throws -> (axes: [Int]?, keep: Bool) {
        let keep = try c.attributes.int("keepdims", 1) == 1
        let given = try axesArgument(c, inputSince: axesInputSince) ?? []
        if given.isEmpty {
            if c.opset >= axesInputSince, try c.attributes.int("noop_with_empty_axes", 0) == 1 { return (nil, keep) }
            return (Array(0..<rank), keep)
        }
        return (try normalizedAxes(given, rank: rank), keep)
    }

    /// Generic reduction: `combine` folds each element into its output slot (which starts at
    /// `initial`), `finish(value, count)` maps the result. FLOAT results for FLOAT inputs; integer
    /// inputs keep their type when `keepsIntegers`.
    static func reduce(_ c: OpContext, axesInputSince: Int = 18, initial: Double, keepsIntegers: Bool = true,
                       prepare: (Double) -> Double = { $0 }, combine: (Double, Double) -> Double,
                       finish: (Double, Int) -> Double = { v, _ in v }) throws -> [ONNXValue] {
        let x = try c.input(0)
        let rank = x.shape.count
        let (axesOrNil, keep) = try reductionAxes(c, rank: rank, axesInputSince: axesInputSince)
        let values = try x.doubles()
        let axes = axesOrNil ?? []
        var outShape = x.shape
        for a in axes { outShape[a] = 1 }
        let outCount = outShape.reduce(1, *)
        let reducedCount = axes.reduce(1) { $0 * x.shape[$1] }
        var acc = [Double](repeating: initial, count: outCount)
        var mapped = stridesOf(outShape)
        for a in axes { mapped[a] = 0 }
        forEachStrided(x.shape, [mapped]) { i, offs in acc[offs[0]] = combine(acc[offs[0]], prepare(values[i])) }
        let result = acc.map { finish($0, reducedCount) }
        let shape = keep ? outShape : x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        if case .int(let t) = x, keepsIntegers {
            return [.int(IntTensor(shape: shape, values: result.map { t.type.wrap(Int64(clamping: Int64(exactly: $0.rounded(.towardZero)) ?? 0)) }, type: t.type))]
        }
        return [floatValue(shape, result.map { Float($0) })]
    }

    static func ReduceSum(_ c: OpContext) throws -> [ONNXValue] { try reduce(c, axesInputSince: 13, initial: 0, combine: +) }
    static func ReduceMean(_ c: OpContext) throws -> [ONNXValue] {
        try reduce(c, initial: 0, combine: +, finish: { $1 == 0 ? .nan : $0 / Double($1) })
    }
    static func ReduceMax(_ c: OpContext) throws -> [ONNXValue] {
        try reduce(c, initial: -.infinity, combine: { $0.isNaN || $1.isNaN ? .nan : Swift.max($0, $1) })
    }
    static func ReduceMin(_ c: OpContext) throws -> [ONNXValue] {
        try reduce(c, initial: .infinity, combine: { $0.isNaN || $1.isNaN ? .nan : Swift.min($0, $1) })
    }
    static func ReduceProd(_ c: OpContext) throws -> [ONNXValue] { try reduce(c, initial: 1, combine: *) }
    static func ReduceL1(_ c: OpContext) throws -> [ONNXValue] { try reduce(c, initial: 0, prepare: { Swift.abs($0) }, combine: +) }
    static func ReduceL2(_ c: OpContext) throws -> [ONNXValue] {
        try reduce(c, initial: 0, prepare: { $0 * $0 }, combine: +, finish: { v, _ in v.squareRoot() })
    }
    static func ReduceSumSquare(_ c: OpContext) throws -> [ONNXValue] { try reduce(c, initial: 0, prepare: { $0 * $0 }, combine: +) }
    static func ReduceLogSum(_ c: OpContext) throws -> [ONNXValue] {
        try reduce(c, initial: 0, keepsIntegers: false, combine: +, finish: { v, _ in Foundation.log(v) })
    }
    static func ReduceLogSumExp(_ c: OpContext) throws -> [ONNXValue] {
        // log Σ exp(x) = m + log Σ exp(x − m), with m the slot's maximum for stability.
        let maxima = try ReduceMax(c)[0]
        let x = try c.input(0)
        let (axesOrNil, keep) = try reductionAxes(c, rank: x.shape.count, axesInputSince: 18)
        guard let axes = axesOrNil else { return [x] }
        var outShape = x.shape
        for a in axes { outShape[a] = 1 }
        let m = try maxima.doubles()
        var mapped = stridesOf(outShape)
        for a in axes { mapped[a] = 0 }
        let values = try x.doubles()
        var sums = [Double](repeating: 0, count: m.count)
        forEachStrided(x.shape, [mapped]) { i, offs in
            let mm = m[offs[0]].isFinite ? m[offs[0]] : 0
            sums[offs[0]] += Foundation.exp(values[i] - mm)
        }
        let result = sums.enumerated().map { i, s in (m[i].isFinite ? m[i] : 0) + Foundation.log(s) }
        let shape = keep ? outShape : x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        return [floatValue(shape, result.map { Float($0) })]
    }

    /// Index of the largest (smallest) element along `axis`, INT64.
    static func argExtreme(_ c: OpContext, largest: Bool) throws -> [ONNXValue] {
        let x = try c.input(0)
        let values = try x.doubles()
        let axis = try normalizedAxis(try c.attributes.int("axis", 0), rank: x.shape.count)
        let keep = try c.attributes.int("keepdims", 1) == 1
        let last = try c.attributes.int("select_last_index", 0) == 1
        let outer = x.shape[..<axis].reduce(1, *), n = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
        guard n > 0 else { throw ONNXError("cannot take an arg-extreme over an empty axis") }
        var result: [Int64] = []
        for a in 0..<outer { for i in 0..<inner {
            var best = 0
            for k in 1..<n {
                let v = values[(a * n + k) * inner + i], b = values[(a * n + best) * inner + i]
                let better = largest ? (last ? v >= b : v > b) : (last ? v <= b : v < b)
                if better { best = k }
            }
            result.append(Int64(best))
        } }
        var shape = x.shape
        if keep { shape[axis] = 1 } else { shape.remove(at: axis) }
        return [int64Value(shape, result)]
    }
    static func ArgMax(_ c: OpContext) throws -> [ONNXValue] { try argExtreme(c, largest: true) }
    static func ArgMin(_ c: OpContext) throws -> [ONNXValue] { try argExtreme(c, largest: false) }

    /// Running sum along an axis (`exclusive` leaves out the element itself, `reverse` runs backwards).
    static func CumSum(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        guard let axisValue = try c.ints(1).first else { throw ONNXError("axis is required") }
        let axis = try normalizedAxis(axisValue, rank: x.shape.count)
        let exclusive = try c.attributes.int("exclusive", 0) == 1, reverse = try c.attributes.int("reverse", 0) == 1
        let values = try x.doubles()
        let outer = x.shape[..<axis].reduce(1, *), n = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
        var out = [Double](repeating: 0, count: values.count)
        for a in 0..<outer { for i in 0..<inner {
            var total = 0.0
            for step in 0..<n {
                let k = reverse ? n - 1 - step : step
                let at = (a * n + k) * inner + i
                if exclusive { out[at] = total; total += values[at] } else { total += values[at]; out[at] = total }
            }
        } }
        if case .int(let t) = x { return [.int(IntTensor(shape: t.shape, values: out.map { t.type.wrap(Int64(exactly: $0.rounded(.towardZero)) ?? 0) }, type: t.type))] }
        return [floatValue(x.shape, out.map { Float($0) })]
    }
}
