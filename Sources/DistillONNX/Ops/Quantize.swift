import DistillTensor
import Foundation

// Linear quantization (QDQ graphs: what onnxruntime's quantize_static and `distill export` of an
// int8 student write). Per tensor, or per slice along `axis` (opset 13) when the scale has more
// than one value. Rounding is to nearest, ties to even, as the operator defines it.
extension ONNXOps {
    /// The scale and zero point of input slots 1 and 2 broadcast along `axis` of `shape`: a
    /// function from a flat index to its (scale, zero point).
    private static func quantizationParameters(_ c: OpContext, shape: [Int]) throws -> (Int) -> (Float, Int64) {
        let scale = try c.float(1)
        var zeroPoints: [Int64] = [0]
        if let z = c.optional(2) {
            guard case .int(let t) = z else { throw ONNXError("the zero point must be an integer tensor, got \(z.typeDescription)") }
            zeroPoints = t.values
        }
        guard try c.attributes.int("block_size") ?? 0 == 0 else { throw ONNXError("blocked quantization (block_size) is not supported") }
        guard zeroPoints.count == scale.count || zeroPoints.count == 1 && scale.count == 1 else {
            throw ONNXError("the scale has \(scale.count) values and the zero point \(zeroPoints.count)")
        }
        let s = scale.scalars
        if s.count == 1 { return { _ in (s[0], zeroPoints[0]) } }
        let rank = shape.count
        let axis = try c.attributes.int("axis", 1)
        guard axis >= -rank && axis < rank else { throw ONNXError("axis \(axis) out of range for rank \(rank)") }
        let a = axis < 0 ? axis + rank : axis
        guard shape[a] == s.count else { throw ONNXError("\(s.count) scales for axis \(a) of extent \(shape[a])") }
        let inner = shape[(a + 1)...].reduce(1, *)
        return { i in let k = (i / inner) % s.count; return (s[k], zeroPoints[k]) }
    }

    /// y = saturate(round(x / scale) + zero_point) as the zero point's type (UINT8 without one).
    static func QuantizeLinear(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0)
        var type = ONNXDataType.uint8
        if case .int(let z)? = c.optional(2) { type = z.type }
        let range: ClosedRange<Int64>
        switch type {
        case .uint8: range = 0...255
        case .int8: range = -128...127
        case .uint16: range = 0...65535
        case .int16: range = -32768...32767
        default: throw ONNXError("QuantizeLinear to \(type) is not supported (UINT8, INT8, UINT16, INT16)")
        }
        let parameters = try quantizationParameters(c, shape: x.shape)
        let values = x.scalars.enumerated().map { i, v -> Int64 in
            let (scale, zero) = parameters(i)
            let q = (v / scale).rounded(.toNearestOrEven)
            guard q.isFinite else { return q.isNaN ? Swift.min(Swift.max(zero, range.lowerBound), range.upperBound) : (q > 0 ? range.upperBound : range.lowerBound) }
            return Swift.min(Swift.max(Int64(Swift.max(Swift.min(q, 1e9), -1e9)) + zero, range.lowerBound), range.upperBound)
        }
        return [.int(IntTensor(shape: x.shape, values: values, type: type))]
    }

    /// y = (x − zero_point) · scale, as FLOAT.
    static func DequantizeLinear(_ c: OpContext) throws -> [ONNXValue] {
        guard case .int(let x) = try c.input(0) else { throw ONNXError("input 0 must be an integer tensor, got \(try c.input(0).typeDescription)") }
        let parameters = try quantizationParameters(c, shape: x.shape)
        return [.float(Tensor(shape: x.shape, scalars: x.values.enumerated().map { i, q in
            let (scale, zero) = parameters(i)
            return Float(q - zero) * scale
        }))]
    }
}
