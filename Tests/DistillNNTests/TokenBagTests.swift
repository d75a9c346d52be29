import DistillNN
import DistillTensor
import DistillTestSupport
import Testing

@Suite("TokenBag") struct TokenBagTests {
    /// Without bigrams the output is the projection of the mean of the token rows; padding (0)
    /// ends a text and an all-padding text gives the projection of zeros.
    @Test func meanOfTokenRowsThenProjection() {
        var g = SeededGenerator(seed: 3)
        let bag = TokenBag(vocabulary: 6, bigramBuckets: 0, dimension: 3, outputs: 2, generator: &g)
        let x = Tensor(shape: [2, 4], scalars: [2, 5, 5, 0, 0, 0, 0, 0])
        let y = withNoGrad { bag(x) }
        let e = bag.embedding.scalars, w = bag.projection.weight.scalars, b = bag.projection.bias!.scalars
        var mean = [Float](repeating: 0, count: 3)
        for k in 0..<3 { mean[k] = (e[6 + k] + 2 * e[15 + k]) / 3 }  // rows 2 and 5 (twice)
        var expected = b
        for o in 0..<2 { for k in 0..<3 { expected[o] += w[o * 3 + k] * mean[k] } }
        assertClose(Array(y.scalars[0..<2]), expected, atol: 1e-6)
        assertClose(Array(y.scalars[2..<4]), b, atol: 1e-6)
    }

    /// Bigrams add rows past the vocabulary: the same tokens in another order give another output.
    @Test func bigramsSeeOrder() {
        var g = SeededGenerator(seed: 4)
        let bag = TokenBag(vocabulary: 8, bigramBuckets: 16, dimension: 4, outputs: 3, generator: &g)
        let y = withNoGrad { bag(Tensor(shape: [2, 3], scalars: [1, 2, 3, 3, 2, 1])) }.scalars
        #expect(Array(y[0..<3]) != Array(y[3..<6]))
        #expect(bag.parameterCount == (8 + 16) * 4 + 4 * 3 + 3)
    }

    @Test func gradients() {
        var g = SeededGenerator(seed: 5)
        let bag = TokenBag(vocabulary: 7, bigramBuckets: 5, dimension: 3, outputs: 2, generator: &g)
        let x = Tensor(shape: [3, 4], scalars: [1, 2, 3, 0, 6, 6, 0, 0, 4, 1, 5, 2])
        expectGradients("token bag", inputs: [bag.embedding, bag.projection.weight, bag.projection.bias!], atol: 1e-3) { _ in bag(x) }
    }

    /// The spec builds it, with its sizes checked.
    @Test func spec() throws {
        let model = try ModelZoo.build("bag:100-32-8-16", inputShape: [12], numClasses: 16)
        #expect(model.parameterCount == (100 + 32) * 8 + 8 * 16 + 16)
        #expect(throws: TensorError.self) { try ModelZoo.build("bag:100-32-8", inputShape: [12], numClasses: 16) }
        #expect(throws: TensorError.self) { try ModelZoo.build("bag:1-0-8-16", inputShape: [12], numClasses: 16) }
    }
}
