import DistillTensor
import Foundation
import Testing

// Central-difference gradient checking and float-array comparison, shared by every test target.
//
// The engine computes in Float32, so the checker is built to keep rounding out of the verdict:
// the scalar objective Σ out·R is accumulated in Double, each element is perturbed by ±ε in
// place, and the difference quotient divides by the perturbation actually applied (after
// rounding to Float) rather than by the nominal 2ε.

// MARK: - Comparing arrays

/// The outcome of comparing two float arrays element by element with `|a − b| ≤ atol + rtol·|b|`
/// (NumPy's `allclose`, with `b` the reference).
public struct Closeness: CustomStringConvertible, Sendable {
    /// Elements compared (the shorter array's count when the counts differ).
    public let count: Int
    /// Whether the two arrays had the same number of elements.
    public let countsMatch: Bool
    /// Largest `|a − b|`, and the index where it occurs (nil for empty arrays).
    public let maxAbsDiff: Double
    public let maxAbsDiffIndex: Int?
    /// Elements outside the tolerance, and the first of them.
    public let failures: Int
    public let firstFailureIndex: Int?
    let aAtMax: Double, bAtMax: Double, atol: Double, rtol: Double, aCount: Int, bCount: Int

    /// True when the counts match and every element is within tolerance.
    public var passed: Bool { countsMatch && failures == 0 }

    public var description: String {
        if !countsMatch { return "arrays differ in length: \(aCount) vs \(bCount) elements" }
        guard let i = maxAbsDiffIndex else { return "both arrays empty" }
        let verdict = failures == 0 ? "all \(count) within" : "\(failures) of \(count) outside"
        var text = "max |a − b| = \(fmt(maxAbsDiff)) at index \(i) (a = \(fmt(aAtMax)), b = \(fmt(bAtMax))); "
            + "\(verdict) atol \(fmt(atol)) + rtol \(fmt(rtol))·|b|"
        if let f = firstFailureIndex, f != i { text += "; first failure at index \(f)" }
        return text
    }
}

/// Compares `a` with the reference `b`: element i passes when `|a[i] − b[i]| ≤ atol + rtol·|b[i]|`.
/// NaN never passes (not even against NaN); equal infinities do.
public func compareClose(_ a: [Float], _ b: [Float], atol: Double = 1e-5, rtol: Double = 1e-5) -> Closeness {
    let n = min(a.count, b.count)
    var maxDiff = -1.0, maxIndex: Int? = nil, failures = 0, firstFailure: Int? = nil
    for i in 0..<n {
        let x = Double(a[i]), y = Double(b[i])
        let diff: Double = x == y ? 0 : (x.isNaN || y.isNaN ? .nan : abs(x - y))
        let ok = x == y || diff <= atol + rtol * abs(y)
        if !ok { failures += 1; if firstFailure == nil { firstFailure = i } }
        if diff.isNaN ? maxDiff.isFinite : diff > maxDiff { maxDiff = diff.isNaN ? .infinity : diff; maxIndex = i }
    }
    return Closeness(count: n, countsMatch: a.count == b.count, maxAbsDiff: max(maxDiff, 0), maxAbsDiffIndex: maxIndex,
                     failures: failures, firstFailureIndex: firstFailure,
                     aAtMax: maxIndex.map { Double(a[$0]) } ?? 0, bAtMax: maxIndex.map { Double(b[$0]) } ?? 0,
                     atol: atol, rtol: rtol, aCount: a.count, bCount: b.count)
}

/// Records a test issue unless `a` matches the reference `b` within `atol + rtol·|b|` element-wise.
/// The message gives the largest difference and its index, e.g.
/// `"conv output: max |a − b| = 3.1e-04 at index 17 (a = 0.52, b = 0.5203); 2 of 150 outside atol 1e-05 + rtol 1e-05·|b|"`.
///
/// ```swift
/// assertClose(y.scalars, expected, atol: 1e-5, rtol: 1e-5, "softmax")
/// ```
public func assertClose(_ a: [Float], _ b: [Float], atol: Double = 1e-5, rtol: Double = 1e-5, _ label: String = "",
                        sourceLocation: SourceLocation = #_sourceLocation) {
    let result = compareClose(a, b, atol: atol, rtol: rtol)
    if !result.passed {
        Issue.record(Comment(rawValue: (label.isEmpty ? "" : "\(label): ") + result.description), sourceLocation: sourceLocation)
    }
}

/// `assertClose` for two tensors, also requiring equal shapes.
public func assertClose(_ a: Tensor, _ b: Tensor, atol: Double = 1e-5, rtol: Double = 1e-5, _ label: String = "",
                        sourceLocation: SourceLocation = #_sourceLocation) {
    let prefix = label.isEmpty ? "" : "\(label): "
    guard a.shape == b.shape else {
        Issue.record(Comment(rawValue: "\(prefix)shapes differ: \(a.shape) vs \(b.shape)"), sourceLocation: sourceLocation)
        return
    }
    assertClose(a.scalars, b.scalars, atol: atol, rtol: rtol, label, sourceLocation: sourceLocation)
}

// MARK: - Gradient checking

/// How the analytic gradient of one input element compares with its central difference.
public struct GradientSample: Sendable, CustomStringConvertible {
    /// Position of the input in the list passed to the checker.
    public let input: Int
    /// Row-major element index within that input.
    public let element: Int
    /// The input's shape (so the element can be named by coordinates).
    public let shape: [Int]
    /// Gradient from `backward()`.
    public let analytic: Double
    /// Gradient from central differences.
    public let numeric: Double

    public var absError: Double { abs(analytic - numeric) }

    /// Multi-dimensional coordinates of `element` in `shape`.
    public var coordinates: [Int] {
        var rest = element, coords = [Int](repeating: 0, count: shape.count)
        for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] > 0 {
            coords[d] = rest % shape[d]; rest /= shape[d]
        }
        return coords
    }

    public var description: String {
        "input \(input) element \(element) \(coordinates) of shape \(shape): analytic \(fmt(analytic)), numeric \(fmt(numeric))"
    }
}

/// The result of a gradient check: the worst element, error summaries and a readable verdict.
public struct GradientCheckReport: Sendable, CustomStringConvertible {
    /// Input elements compared (all elements of the inputs with `requiresGrad`).
    public let checkedElements: Int
    /// Largest `|analytic − numeric|` over all checked elements.
    public let maxAbsError: Double
    /// Largest `|analytic − numeric| / max(|analytic|, |numeric|, atol)`.
    public let maxRelError: Double
    /// Elements outside `atol + rtol·max(|analytic|, |numeric|)`.
    public let failures: Int
    /// The element furthest outside its tolerance (or closest to it, when all pass).
    public let worst: GradientSample?
    /// Inputs with `requiresGrad` that received no gradient from `backward()` (treated as zero).
    public let inputsWithoutGradient: [Int]
    public let atol: Double, rtol: Double, epsilon: Float

    /// True when every checked element is within tolerance.
    public var passed: Bool { failures == 0 && checkedElements > 0 }

    public var description: String {
        guard checkedElements > 0 else { return "gradient check: no input requires a gradient, nothing was checked" }
        var text = failures == 0 ? "gradients match" : "gradient mismatch in \(failures) of \(checkedElements) elements"
        text += " (max abs error \(fmt(maxAbsError)), max rel error \(fmt(maxRelError)); atol \(fmt(atol)), rtol \(fmt(rtol)), ε \(epsilon))"
        if let worst { text += "; worst: \(worst)" }
        if !inputsWithoutGradient.isEmpty { text += "; inputs \(inputsWithoutGradient) received no gradient" }
        return text
    }
}

/// Compares the gradients `backward()` computes for `f` with central differences.
///
/// The checked objective is `L = Σ f(inputs) · R` for a fixed standard-normal `R` drawn from
/// `seed`, so every output element contributes with a distinct weight. The analytic gradient is
/// `backward()` of `(f(inputs) * R).sum()`. The numeric gradient of each element `x` of each input
/// with `requiresGrad` is `(L(x + ε) − L(x − ε)) / (x⁺ − x⁻)`, with `L` accumulated in Double from
/// the Float32 outputs and `x±` the perturbed values after rounding to Float. An element passes
/// when `|analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|)`.
///
/// `f` is called once with gradient recording on and twice per checked element under
/// `withNoGrad`; it must be deterministic (build any random generator inside `f` from a fixed
/// seed). Inputs are perturbed in place and restored; their `grad` is cleared on return.
/// Keep inputs away from kinks (ReLU and |x| at 0, ties in max) by more than ε.
///
/// ```swift
/// let x = Tensor(shape: [2, 3], scalars: [0.5, -1, 2, 0.3, 1.5, -0.7], requiresGrad: true)
/// let report = checkGradients(inputs: [x]) { $0[0].tanh() }
/// #expect(report.passed, "\(report)")
/// ```
public func checkGradients(inputs: [Tensor], epsilon: Float = 1e-2, atol: Double = 1e-3, rtol: Double = 1e-2,
                           seed: UInt64 = 0x5EED, _ f: ([Tensor]) -> Tensor) -> GradientCheckReport {
    // Analytic: backward of Σ out·R.
    for t in inputs { t.grad = nil }
    let out = GradMode.$isEnabled.withValue(true) { f(inputs) }
    var generator = SeededGenerator(seed: seed)
    let r = Tensor.randomNormal(out.shape, using: &generator)
    let weights = r.scalars.map(Double.init)
    let checked = inputs.indices.filter { inputs[$0].requiresGrad }
    var analytic: [Int: [Float]] = [:]
    var missing: [Int] = []
    if out.requiresGrad {
        GradMode.$isEnabled.withValue(true) { (out * r).sum().backward() }
    }
    for i in checked {
        if let g = inputs[i].grad {
            precondition(g.shape == inputs[i].shape, "checkGradients: gradient of input \(i) has shape \(g.shape), input \(inputs[i].shape)")
            analytic[i] = g.scalars
        } else {
            missing.append(i)
            analytic[i] = [Float](repeating: 0, count: inputs[i].count)
        }
        inputs[i].grad = nil
    }

    func objective() -> Double {
        let y = withNoGrad { f(inputs) }
        precondition(y.count == weights.count, "checkGradients: f's output changed size between calls (\(y.shape) vs \(out.shape))")
        var total = 0.0
        let p = y.data
        for k in 0..<weights.count { total += Double(p[k]) * weights[k] }
        return total
    }

    // Numeric: central differences, one element at a time.
    var count = 0, failures = 0, maxAbs = 0.0, maxRel = 0.0
    var worst: GradientSample? = nil, worstRatio = -1.0
    for i in checked {
        let t = inputs[i]
        let p = t.data
        for j in 0..<t.count {
            let original = p[j]
            let plus = original + epsilon, minus = original - epsilon
            p[j] = plus
            let lPlus = objective()
            p[j] = minus
            let lMinus = objective()
            p[j] = original
            let numeric = (lPlus - lMinus) / (Double(plus) - Double(minus))
            let a = Double(analytic[i]![j])
            let err = abs(a - numeric)
            let scale = max(abs(a), abs(numeric))
            let ratio = err.isNaN ? .infinity : err / (atol + rtol * scale)
            count += 1
            if ratio > 1 { failures += 1 }
            maxAbs = max(maxAbs, err.isNaN ? .infinity : err)
            maxRel = max(maxRel, err.isNaN ? .infinity : err / max(scale, atol))
            if ratio > worstRatio {
                worstRatio = ratio
                worst = GradientSample(input: i, element: j, shape: t.shape, analytic: a, numeric: numeric)
            }
        }
    }
    return GradientCheckReport(checkedElements: count, maxAbsError: maxAbs, maxRelError: maxRel, failures: failures,
                               worst: worst, inputsWithoutGradient: missing, atol: atol, rtol: rtol, epsilon: epsilon)
}

/// Runs `checkGradients` and records a test issue, labelled with `label`, when it fails.
/// Returns the report for further checks.
///
/// ```swift
/// expectGradients("sigmoid", inputs: [x]) { $0[0].sigmoid() }
/// ```
@discardableResult
public func expectGradients(_ label: String, inputs: [Tensor], epsilon: Float = 1e-2, atol: Double = 1e-3, rtol: Double = 1e-2,
                            seed: UInt64 = 0x5EED, sourceLocation: SourceLocation = #_sourceLocation,
                            _ f: ([Tensor]) -> Tensor) -> GradientCheckReport {
    let report = checkGradients(inputs: inputs, epsilon: epsilon, atol: atol, rtol: rtol, seed: seed, f)
    if !report.passed {
        Issue.record(Comment(rawValue: "\(label): \(report)"), sourceLocation: sourceLocation)
    }
    return report
}

private func fmt(_ x: Double) -> String { String(format: "%.4g", x) }
