import DistillTensor
import Foundation

// Resize (and the older Upsample): nearest, linear and cubic interpolation, separable, applied
// one axis at a time in Double as the ONNX reference implementation does
// (onnx/reference/ops/op_resize.py), with every coordinate transformation mode.

/// One axis of a resize: where each output coordinate samples the input, and with what weights.
struct ResizeAxis {
    var inputWidth: Int, outputWidth: Int, scale: Double
    var roi: (Double, Double)?
    var mode: String, transform: String, nearestMode: String
    var cubicA: Double, excludeOutside: Bool, extrapolation: Double

    /// Source coordinate of output coordinate `y`, or nil outside a tf_crop_and_resize region.
    func source(_ y: Int) throws -> Double? {
        let x = Double(y), width = scale * Double(inputWidth), length = Double(inputWidth)
        switch transform {
        case "half_pixel": return (x + 0.5) / scale - 0.5
        case "pytorch_half_pixel": return width == 1 ? -0.5 : (x + 0.5) / scale - 0.5
        case "align_corners": return width == 1 ? 0 : x * (length - 1) / (width - 1)
        case "asymmetric": return x / scale
        case "tf_half_pixel_for_nn": return (x + 0.5) / scale
        case "half_pixel_symmetric":
            let adjustment = Double(outputWidth) / width
            return length / 2 * (1 - adjustment) + (x + 0.5) / scale - 0.5
        case "tf_crop_and_resize":
            let (start, end) = roi ?? (0, 1)
            var s = width == 1 ? (end - start) * (length - 1) / 2 : x * (end - start) * (length - 1) / (width - 1)
            s += start * (length - 1)
            return s < 0 || s > length - 1 ? nil : s
        default: throw ONNXError("coordinate_transformation_mode '\(transform)' is not supported")
        }
    }

    /// Interpolation weights for a fractional position `ratio` in (0, 1].
    func coefficients(_ ratio: Double) throws -> [Double] {
        switch mode {
        case "nearest":
            if ratio == 1 { return [0, 1] }
            switch nearestMode {
            case "round_prefer_floor": return ratio <= 0.5 ? [1, 0] : [0, 1]
            case "round_prefer_ceil": return ratio < 0.5 ? [1, 0] : [0, 1]
            case "floor": return [1, 0]
            case "ceil": return [0, 1]
            default: throw ONNXError("nearest_mode '\(nearestMode)' is not supported")
            }
        case "linear": return [1 - ratio, ratio]
        case "cubic":
            let a = cubicA, r = ratio, s = 1 - ratio
            return [((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                    ((a + 2) * r - (a + 3)) * r * r + 1,
                    ((a + 2) * s - (a + 3)) * s * s + 1,
                    ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a]
        default: throw ONNXError("mode '\(mode)' must be nearest, linear or cubic")
        }
    }

    /// Resamples `values` (shape `shape`) along `axis`.
    func apply(_ values: [Double], shape: [Int], axis: Int) throws -> [Double] {
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        // Per output coordinate: (first neighbour, weights), or nil for the extrapolation value.
        let taps: [(Int, [Double])?] = try (0..<outputWidth).map { y in
            guard let x = try source(y) else { return nil }
            // Finite, and within a few input widths for every finite roi and scale; guard the conversion anyway.
            guard x.isFinite, Swift.abs(x) < 1e15 else { throw ONNXError("output coordinate \(y) samples input coordinate \(x)") }
            let fl = Foundation.floor(x)
            let ratio = x == fl ? 1 : x - fl
            var weights = try coefficients(ratio)
            let base = x == fl ? Int(fl) - 1 : Int(fl)
            let first = base - (weights.count / 2 - 1)
            if excludeOutside {
                for k in weights.indices where first + k < 0 || first + k >= inputWidth { weights[k] = 0 }
                let total = weights.reduce(0, +)
                if total != 0 { weights = weights.map { $0 / total } }
            }
            return (first, weights)
        }
        var out = [Double](repeating: 0, count: outer * outputWidth * inner)
        for a in 0..<outer { for i in 0..<inner {
            for (y, tap) in taps.enumerated() {
                guard let (first, weights) = tap else { out[(a * outputWidth + y) * inner + i] = extrapolation; continue }
                var v = 0.0
                for (k, w) in weights.enumerated() where w != 0 {
                    let j = Swift.min(Swift.max(first + k, 0), inputWidth - 1)
                    v += w * values[(a * inputWidth + j) * inner + i]
                }
                out[(a * outputWidth + y) * inner + i] = v
            }
        } }
        return out
    }
}

extension ONNXOps {
    /// Resizes `x` to `sizes` (or by `scales`) along `axes`, one axis at a time.
    static func resize(_ x: Tensor, scales: [Double]?, sizes: [Int]?, roi: [Double]?, axes: [Int], template: ResizeAxis,
                       keepAspect: String = "stretch") throws -> Tensor {
        let r = x.rank
        var scale = [Double](repeating: 1, count: r), size = x.shape
        if var sizes {
            guard sizes.count == axes.count, sizes.allSatisfy({ $0 >= 0 && $0 < 1 << 31 }) else { throw ONNXError("sizes \(describeShape(sizes)) must give \(axes.count) extents below 2^31") }
            var s = zip(axes, sizes).map { Double($1) / Double(Swift.max(x.shape[$0], 1)) }
            if keepAspect != "stretch" {
                guard let pick = keepAspect == "not_larger" ? s.min() : (keepAspect == "not_smaller" ? s.max() : nil) else {
                    throw ONNXError("keep_aspect_ratio_policy '\(keepAspect)' must be stretch, not_larger or not_smaller")
                }
                s = s.map { _ in pick }
                sizes = zip(axes, s).map { Int(Double(x.shape[$0]) * $1 + 0.5) }
            }
            for (k, a) in axes.enumerated() { scale[a] = s[k]; size[a] = sizes[k] }
        } else if let scales {
            guard scales.count == axes.count, scales.allSatisfy({ $0 > 0 && $0 < 1e6 }) else {
                throw ONNXError("scales \(scales.prefix(12).map { String($0) }.joined(separator: ", "))\(scales.count > 12 ? ", ..." : "") must give \(axes.count) positive factors below 10^6")
            }
            for (k, a) in axes.enumerated() { scale[a] = scales[k]; size[a] = Int(Double(x.shape[a]) * scales[k]) }
        } else {
            throw ONNXError("one of scales and sizes is required")
        }
        try checkedShape(size)  // computed in Double, 8 bytes per element
        var values = x.scalars.map(Double.init)
        var shape = x.shape
        for a in axes {
            let region = roi.map { ($0[axes.firstIndex(of: a)!], $0[axes.count + axes.firstIndex(of: a)!]) }
            let trivialRegion = region.map { Swift.abs($0.0) < 1e-9 && Swift.abs($0.1 - 1) < 1e-9 } ?? true
            if Swift.abs(scale[a] - 1) < 1e-12 && size[a] == shape[a] && trivialRegion { continue }
            var axis = template
            axis.inputWidth = shape[a]; axis.outputWidth = size[a]; axis.scale = scale[a]; axis.roi = region
            guard shape[a] > 0 || size[a] == 0 else { throw ONNXError("cannot resize an empty axis") }
            values = try axis.apply(values, shape: shape, axis: a)
            shape[a] = size[a]
        }
        return Tensor(shape: shape, scalars: values.map { Float($0) })
    }

    static func Resize(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0)
        let a = c.attributes
        var template = ResizeAxis(inputWidth: 0, outputWidth: 0, scale: 1, roi: nil, mode: try a.string("mode", "nearest"),
                                  transform: try a.string("coordinate_transformation_mode", "half_pixel"),
                                  nearestMode: try a.string("nearest_mode", "round_prefer_floor"),
                                  cubicA: Double(try a.float("cubic_coeff_a", -0.75)), excludeOutside: try a.int("exclude_outside", 0) == 1,
                                  extrapolation: Double(try a.float("extrapolation_value", 0)))
        if c.opset < 11 {  // Resize-10: Resize(X, scales), asymmetric coordinates, nearest rounds down
            template.transform = "asymmetric"; template.nearestMode = "floor"
            return [.float(try resize(x, scales: try c.input(1).doubles(), sizes: nil, roi: nil, axes: Array(0..<x.rank), template: template))]
        }
        if try a.int("antialias", 0) == 1 { throw ONNXError("antialias=1 is not supported") }
        let axes = try a.ints("axes").map { try normalizedAxes($0, rank: x.rank) } ?? Array(0..<x.rank)
        func nonEmpty(_ i: Int) throws -> [Double]? {
            guard let v = c.optional(i), v.count > 0 else { return nil }
            return try v.doubles()
        }
        let roi = try nonEmpty(1), scales = try nonEmpty(2)
        let sizes = try nonEmpty(3)?.map { v -> Int in
            guard v.isFinite, Swift.abs(v) < Double(1 << 31) else { throw ONNXError("sizes must be integers below 2^31") }
            return Int(v)
        }
        if template.transform == "tf_crop_and_resize" {
            guard let roi, roi.count == 2 * axes.count, roi.allSatisfy(\.isFinite) else {
                throw ONNXError("tf_crop_and_resize needs roi with \(2 * axes.count) finite values")
            }
        }
        return [.float(try resize(x, scales: scales, sizes: sizes, roi: template.transform == "tf_crop_and_resize" ? roi : nil, axes: axes,
                                  template: template, keepAspect: try a.string("keep_aspect_ratio_policy", "stretch")))]
    }

    /// Upsample (opsets 7 to 9): scales as an attribute (7) or input (9), asymmetric coordinates.
    static func Upsample(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0)
        let scales = c.opset < 9 ? (try c.attributes.floats("scales") ?? []).map(Double.init) : try c.input(1).doubles()
        let template = ResizeAxis(inputWidth: 0, outputWidth: 0, scale: 1, roi: nil, mode: try c.attributes.string("mode", "nearest"),
                                  transform: "asymmetric", nearestMode: "floor", cubicA: -0.75, excludeOutside: false, extrapolation: 0)
        return [.float(try resize(x, scales: scales, sizes: nil, roi: nil, axes: Array(0..<x.rank), template: template))]
    }
}
