import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// The ops under the transformer encoder (Ops/LayerNorm.swift, Ops/SentencePooling.swift): their
// values against direct formulas, and central-difference gradient checks (GradCase, in
// GradientTests.swift). Masked attention is composed from existing ops (matmul, the additive mask,
// softmax); its gradient is checked here as a whole, padded keys included.

let transformerOpCases: [GradCase] = [
    GradCase("layerNorm [2,3,5] with affine", { [.testNormal([2, 3, 5], seed: 300), .testNormal([5], seed: 301, scale: 0.5, shift: 1),
                                                 .testNormal([5], seed: 302)] }) { $0[0].layerNorm(weight: $0[1], bias: $0[2]) },
    GradCase("layerNorm of shifted rows (mean 40)", { [.testNormal([3, 8], seed: 303, shift: 40), .testNormal([8], seed: 304, shift: 1),
                                                       .testNormal([8], seed: 305)] }) { $0[0].layerNorm(weight: $0[1], bias: $0[2]) },
    GradCase("maskedMeanPool with padding and an all-padding row", { [.testNormal([3, 4, 5], seed: 306)] }) {
        $0[0].maskedMeanPool(mask: [1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    },
    GradCase("l2Normalized rows", { [.testNormal([3, 6], seed: 307)] }) { $0[0].l2Normalized() },
    GradCase("l2Normalized below the floor (x / ε)", { [.testUniform([2, 3], seed: 308, low: 0.05, high: 0.1)] }) { $0[0].l2Normalized(epsilon: 0.5) },
    GradCase("masked mean then l2Normalized", { [.testNormal([2, 3, 4], seed: 309)] }) {
        $0[0].maskedMeanPool(mask: [1, 1, 0, 1, 1, 1]).l2Normalized()
    },
    GradCase("masked attention softmax(q·kᵀ/√d + mask)·v", { [.testNormal([2, 2, 3, 4], seed: 310), .testNormal([2, 2, 3, 4], seed: 311),
                                                             .testNormal([2, 2, 3, 4], seed: 312)] }) { x in
        let mask = Tensor(shape: [2, 1, 1, 3], scalars: [0, 0, -1e9, 0, -1e9, -1e9])
        return (x[0].matmul(x[1].transposed()).scaled(0.5) + mask).softmax(axis: -1).matmul(x[2])
    },
]

@Test(arguments: transformerOpCases) func transformerOpGradient(_ c: GradCase) { c.run() }

@Suite struct TransformerOpValueTests {
    @Test func layerNormMatchesTheFormula() {
        let x = Tensor.testNormal([4, 7], seed: 320, requiresGrad: false), w = Tensor.testNormal([7], seed: 321, requiresGrad: false)
        let b = Tensor.testNormal([7], seed: 322, requiresGrad: false)
        let y = x.layerNorm(weight: w, bias: b, epsilon: 1e-5)
        var expected: [Float] = []
        for r in 0..<4 {
            let row = (0..<7).map { Double(x.data[r * 7 + $0]) }
            let mean = row.reduce(0, +) / 7, variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 7
            for j in 0..<7 { expected.append(Float((row[j] - mean) / (variance + 1e-5).squareRoot() * Double(w.data[j]) + Double(b.data[j]))) }
        }
        assertClose(y.scalars, expected, atol: 1e-5, rtol: 1e-5, "layerNorm")
    }

    @Test func maskedMeanPoolAveragesKeptTokensOnly() {
        let x = Tensor(shape: [2, 3, 2], scalars: [1, 2, 3, 4, 100, 100, 5, 6, 7, 8, 9, 10])
        let y = x.maskedMeanPool(mask: [1, 1, 0, 1, 1, 1])
        #expect(y.shape == [2, 2])
        assertClose(y.scalars, [2, 3, 7, 8], atol: 1e-6, rtol: 0, "masked mean")
        let empty = x.maskedMeanPool(mask: [0, 0, 0, 1, 0, 0])
        assertClose(empty.scalars, [0, 0, 5, 6], atol: 0, rtol: 0, "all-padding row gives zeros")
    }

    @Test func l2NormalizedRowsHaveUnitNorm() {
        let y = Tensor(shape: [2, 2], scalars: [3, 4, 0, 0]).l2Normalized()
        assertClose(y.scalars, [0.6, 0.8, 0, 0], atol: 1e-7, rtol: 0, "unit rows, zero row stays zero")
    }

    @Test func paddedKeysGetNoAttention() {
        // Two keys, the second masked: every query attends only to the first key's value.
        let q = Tensor.testNormal([1, 1, 3, 2], seed: 330, requiresGrad: false), k = Tensor.testNormal([1, 1, 2, 2], seed: 331, requiresGrad: false)
        let v = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 50, 60])
        let mask = Tensor(shape: [1, 1, 1, 2], scalars: [0, -1e9])
        let out = (q.matmul(k.transposed()) + mask).softmax(axis: -1).matmul(v)
        assertClose(out.scalars, [1, 2, 1, 2, 1, 2], atol: 0, rtol: 0, "attention output")
    }
}
