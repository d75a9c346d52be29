import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Fake quantization (Sources/DistillTensor/Ops/FakeQuantization.swift): the values, and the
// straight-through gradients checked two ways: exactly (1 where the byte is not clipped, 0 where
// it is), and by central differences whose ε spans many quantization steps. Each evaluation of a
// fake-quantized value is within s/2 of the identity (or of the clipped value), so the difference
// quotient (y(x+ε) − y(x−ε)) / 2ε is within s/2ε of the straight-through derivative: with s ≪ ε
// the check has teeth (a wrong rule is off by about 1), and points stay more than ε away from the
// clipping edges, where the estimator's clamp is differentiable.
@Suite struct FakeQuantizationTests {
    @Test func activationValuesAreTheBytesDequantized() {
        let scale: Float = 0.1, zero: Int32 = 10
        let x = Tensor([0, 0.04, 0.26, -1.0, -1.5, 24.5, 30, -0.33, .nan])
        let y = x.fakeQuantized(scale: scale, zeroPoint: zero).scalars
        // q = clamp(round(x · 10) + 10, 0, 255); y = (q − 10) · 0.1.
        let bytes: [Float] = [10, 10, 13, 0, 0, 255, 255, 7, 10]
        #expect(y == bytes.map { ($0 - 10) * scale }, "\(y)")
    }

    @Test func activationRoundsHalfToEven() {
        // 0.5 and 1.5 steps (exact in binary): round half to even gives 0 and 2, as nearbyintf does.
        let y = Tensor([0.5, 1.5, 2.5, -0.5]).fakeQuantized(scale: 1, zeroPoint: 128).scalars
        #expect(y == [0, 2, 2, 0])
    }

    @Test func weightValuesArePerChannelIntegers() {
        let w = Tensor.testNormal([4, 9], seed: 3, requiresGrad: false)
        // Channel 2 all zero: scale 1, all zeros; channel 3 with one outlier.
        for j in 0..<9 { w.data[2 * 9 + j] = 0 }
        w.data[3 * 9] = 40
        let y = w.fakeQuantizedPerChannel()
        for o in 0..<4 {
            let row = (0..<9).map { w.data[o * 9 + $0] }
            let largest = row.map(abs).max()!
            let scale = largest > 0 ? largest / 127 : 1
            for j in 0..<9 {
                let v = y.data[o * 9 + j], q = v / scale
                #expect(abs(q - q.rounded()) < 1e-3 && abs(q) <= 127.001, "channel \(o) element \(j): \(v) is not an integer step of \(scale)")
                #expect(abs(v - row[j]) <= scale / 2 * 1.0001, "channel \(o) element \(j): \(v) is more than half a step from \(row[j])")
            }
        }
        #expect((0..<9).allSatisfy { y.data[2 * 9 + $0] == 0 })
        // The outlier's channel: steps of 40/127 ≈ 0.31, so its other weights keep only a few levels.
        #expect(Set((1..<9).map { (y.data[3 * 9 + $0] / (40 / 127)).rounded() }).count < Set((0..<9).map { y.data[$0] }).count)
    }

    @Test func straightThroughGradientIsOneInsideAndZeroWhereClipped() {
        // Range of scale 0.01, zero point 100: [−1.00, 1.55].
        let x = Tensor([-2, -1.004, -0.996, 0, 0.3337, 1.5449, 1.5551, 3], requiresGrad: true)
        x.fakeQuantized(scale: 0.01, zeroPoint: 100).sum().backward()
        #expect(x.grad?.scalars == [0, 1, 1, 1, 1, 1, 0, 0], "\(x.grad?.scalars ?? [])")
        let w = Tensor.testNormal([3, 5], seed: 1)
        w.fakeQuantizedPerChannel().sum().backward()
        #expect(w.grad?.scalars == [Float](repeating: 1, count: 15))
    }

    @Test func activationGradientAgainstCentralDifferences() {
        // Step 0.01, ε = 0.1: the quotient is within 0.05·|R| of the estimator's derivative.
        // Points lie more than ε inside [−1.00, 1.55] or more than ε outside it.
        let x = Tensor([-1.8, -1.4, -0.85, -0.42, 0.013, 0.37, 0.91, 1.32, 1.42, 1.8, 2.6, -0.6], requiresGrad: true)
        expectGradients("fake quantization (activation)", inputs: [x], epsilon: 0.1, atol: 1e-3, rtol: 0.06) {
            $0[0].fakeQuantized(scale: 0.01, zeroPoint: 100)
        }
    }

    @Test func weightGradientAgainstCentralDifferences() {
        // Weights within ±1.5: steps below 0.02 (0.024 when ε lifts the largest), ε = 0.5. Each of a
        // channel's four outputs moves at most one step beyond the identity between the two
        // evaluations (the scale moves when the perturbed weight is the channel's largest), so the
        // quotient is within 4 · 0.024 / 1.0 · max|R| ≈ 0.1 · max|R| of the straight-through value.
        let w = Tensor.testUniform([3, 4], seed: 7, low: -1.5, high: 1.5)
        let report = expectGradients("fake quantization (weight)", inputs: [w], epsilon: 0.5, atol: 0.25, rtol: 0.02) {
            $0[0].fakeQuantizedPerChannel()
        }
        #expect(report.checkedElements == 12)
    }

    @Test func gradientsThroughALinearLayerWithFakeQuantizedWeights() {
        // d/dx of x · fq(W)ᵀ is exact (fq(W) does not depend on x): small ε, tight tolerance.
        let x = Tensor.testNormal([2, 5], seed: 11), w = Tensor.testNormal([3, 5], seed: 12)
        w.requiresGrad = false
        expectGradients("linear with fake-quantized weight (input)", inputs: [x, w], epsilon: 1e-2, atol: 1e-3, rtol: 1e-2) {
            linear($0[0], weight: $0[1].fakeQuantizedPerChannel(), bias: nil)
        }
        // d/dW by the estimator: xᵀ·g, as for the float weight.
        w.requiresGrad = true
        let y = linear(x, weight: w.fakeQuantizedPerChannel(), bias: nil)
        y.sum().backward()
        let expected = (0..<15).map { i -> Float in (0..<2).reduce(0) { $0 + x.data[$1 * 5 + i % 5] } }
        assertClose(w.grad?.scalars ?? [], expected, atol: 1e-5, rtol: 1e-5, "dW")
    }
}
