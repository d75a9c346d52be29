@testable import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// Compensated weight rounding (GPTQ and bias correction, ErrorCompensatingQuantization.swift):
/// its linear algebra, that it lowers the output error it is meant to lower, and that the int8
/// students it makes follow the float model at least as well as nearest rounding.
@Suite struct ErrorCompensatingQuantizationTests {
    /// A random symmetric positive-definite matrix B Bᵀ + n·I.
    static func positiveDefinite(_ n: Int, seed: UInt64) -> [Double] {
        var g = SeededGenerator(seed: seed)
        let b = (0..<(n * n)).map { _ in g.nextGaussian() }
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n {
            var s = i == j ? Double(n) : 0
            for k in 0..<n { s += b[i * n + k] * b[j * n + k] }
            a[i * n + j] = s
        } }
        return a
    }

    @Test(arguments: [1, 2, 7, 40])
    func inverseUpperFactorInvertsTheMatrix(n: Int) throws {
        let a = Self.positiveDefinite(n, seed: UInt64(n))
        let u = try #require(SymmetricMatrix.inverseUpperFactor(a, n: n))
        for i in 0..<n { for j in 0..<i { #expect(u[i * n + j] == 0, "U is upper triangular") } }
        // (Uᵀ U) A = I.
        var worst = 0.0
        for i in 0..<n { for j in 0..<n {
            var s = 0.0
            for k in 0..<n {
                var inverse = 0.0
                for m in 0..<n { inverse += u[m * n + i] * u[m * n + k] }
                s += inverse * a[k * n + j]
            }
            worst = max(worst, abs(s - (i == j ? 1 : 0)))
        } }
        #expect(worst < 1e-9, "Uᵀ U A differs from I by \(worst)")
    }

    @Test func matricesThatAreNotPositiveDefiniteAreRefused() {
        #expect(SymmetricMatrix.cholesky([1, 2, 2, 1], n: 2) == nil)
        #expect(SymmetricMatrix.inverseUpperFactor([0, 0, 0, 0], n: 2) == nil)
        #expect(SymmetricMatrix.inverseUpperFactor([1, .nan, .nan, 1], n: 2) == nil)
    }

    /// Σ_rows ((q − w)·x)² over every output channel: the error GPTQ lowers.
    static func outputError(_ q: QuantizedWeight, _ w: Tensor, rows x: [Float], count: Int) -> Double {
        let dequantized = q.dequantized.scalars, float = w.scalars, n = w.shape[1]
        var total = 0.0
        for o in 0..<w.shape[0] { for r in 0..<count {
            var e = 0.0
            for i in 0..<n { e += Double(dequantized[o * n + i] - float[o * n + i]) * Double(x[r * n + i]) }
            total += e * e
        } }
        return total
    }

    @Test(arguments: [3, 4, 5])
    func compensatedRoundingLowersTheOutputError(seed: UInt64) throws {
        // Correlated inputs (a shared factor), as neighbouring pixels are.
        var g = SeededGenerator(seed: seed)
        let n = 48, count = 400, outs = 6
        let x: [Float] = (0..<count).flatMap { _ -> [Float] in
            let shared = g.nextGaussian()
            return (0..<n).map { _ in Float(shared + 0.3 * g.nextGaussian()) }
        }
        let weight = Tensor(shape: [outs, n], scalars: (0..<(outs * n)).map { _ in Float(g.nextGaussian() * 0.1) })
        var hessian = [Double](repeating: 0, count: n * n)
        for r in 0..<count { for i in 0..<n { for j in 0..<n { hessian[i * n + j] += Double(x[r * n + i]) * Double(x[r * n + j]) } } }
        let compensated = try #require(Quantizer.compensatedRounding(weight, hessian: hessian))
        let nearest = QuantizedWeight(quantizing: weight)
        #expect(compensated.scales == nearest.scales, "the stored scales stay nearest rounding's")
        #expect(compensated.values.allSatisfy { $0 >= -127 })
        let before = Self.outputError(nearest, weight, rows: x, count: count), after = Self.outputError(compensated, weight, rows: x, count: count)
        #expect(after < 0.5 * before, "output error \(after) with compensation, \(before) with nearest rounding")
    }

    @Test func patchRowsAreWhatTheConvolutionMultiplies() {
        var g = SeededGenerator(seed: 8)
        let conv = Conv2d(3, 5, kernel: 3, stride: 2, padding: 1, generator: &g)
        let x = Tensor.testUniform([2, 3, 9, 8], seed: 2, low: -1, high: 1, requiresGrad: false)
        let expected = withNoGrad { conv2d(x, weight: conv.weight, bias: nil, config: conv.config) }  // [2, 5, 5, 4]
        let rows = Quantizer.patchRows(x, kernel: (3, 3), config: conv.config)  // [2·5·4, 27]
        let product = withNoGrad { linear(rows, weight: conv.weight.reshaped([5, 27]), bias: nil) }  // [40, 5]
        let e = expected.scalars, p = product.scalars
        var worst: Float = 0
        for image in 0..<2 { for o in 0..<5 { for pixel in 0..<20 {
            worst = max(worst, abs(e[(image * 5 + o) * 20 + pixel] - p[(image * 20 + pixel) * 5 + o]))
        } } }
        #expect(worst < 1e-5)
    }

    @Test func biasCorrectionRestoresTheMeanOutput() throws {
        // One linear layer, inputs far from zero: nearest rounding shifts every output's mean.
        var g = SeededGenerator(seed: 11)
        let model = Sequential([Linear(30, 4, generator: &g)])
        model.eval()
        let samples = Tensor(shape: [200, 30], scalars: (0..<6000).map { _ in Float(2 + g.nextGaussian()) })
        let layers = try Quantizer.fold(model)
        let input = ActivationQuantization(low: -1, high: 6)
        let refined = Quantizer.refinedWeights(layers, input: input, ranges: [:], samples: samples)
        let (weight, bias) = try #require(refined[0])
        let quantizedInput = samples.fakeQuantized(scale: input.scale, zeroPoint: input.zeroPoint)
        let floatMean = withNoGrad { model(samples) }.mean(axes: [0]).scalars
        let int8Mean = withNoGrad { linear(quantizedInput, weight: weight.dequantized, bias: Tensor(bias)) }.mean(axes: [0]).scalars
        for (f, q) in zip(floatMean, int8Mean) { #expect(abs(f - q) < 1e-4, "float mean \(f), int8 mean \(q)") }
    }

    @Test func compensatedStudentsFollowTheFloatModelAtLeastAsWell() throws {
        // The models of QuantizationTests, their logits on fresh inputs: compensated rounding's
        // error, summed over the models, is below nearest rounding's.
        var errors: [WeightRounding: Double] = [:]
        for (name, model, shape) in try QuantizationTests.models() {
            model.eval()
            let samples = Tensor.testUniform([300] + shape, seed: 9, low: -1, high: 1, requiresGrad: false)
            let logits = withNoGrad { model(samples) }
            let labels = logits.argmaxLastAxis()
            let info = SavedModelDescription(spec: name, inputShape: shape, numClasses: logits.shape[1], extra: [:])
            let x = Tensor.testUniform([200] + shape, seed: 10, low: -1, high: 1, requiresGrad: false)
            let expected = withNoGrad { model(x) }.scalars
            for rounding in WeightRounding.allCases {
                let (student, _) = try Quantizer.quantize(model, info: info, samples: samples, labels: labels, rounding: rounding)
                let got = try QuantizedPlan(student)(x).scalars
                errors[rounding, default: 0] += zip(got, expected).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
            }
        }
        let compensated = try #require(errors[.compensated]), nearest = try #require(errors[.nearest])
        #expect(compensated < nearest, "squared logit error: compensated \(compensated), nearest \(nearest)")
    }
}
