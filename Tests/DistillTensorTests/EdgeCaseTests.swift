@testable import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Edge cases found while testing the engine: sizes at the limit, empty tensors, ties, exponents
// whose derivative is special, and preconditions (as exit tests).

@Suite struct EdgeCaseTests {
    @Test func emptyTensorsFromArrays() {
        let e = Tensor(shape: [0, 3], scalars: [])
        #expect(e.count == 0 && e.shape == [0, 3] && e.scalars.isEmpty)
        #expect(Tensor([]).shape == [0])
        #expect(e.sum(axis: 0).scalars == [0, 0, 0])
    }

    @Test func maxSharesTheGradientBetweenTies() {
        let x = Tensor(shape: [2, 3], scalars: [1, 3, 3, 2, 2, 2], requiresGrad: true)
        x.max(axis: 1).sum().backward()
        let third: Float = 1.0 / 3
        let expected: [Float] = [0, 0.5, 0.5, third, third, third]
        #expect(x.grad?.scalars == expected)
    }

    @Test func maxPoolSendsTheGradientToTheFirstOfTiedElements() {
        // Both the 2x2 fast path and the general path pick the first maximum in row-major order (as PyTorch).
        let x = Tensor(shape: [1, 1, 2, 2], scalars: [5, 5, 5, 5], requiresGrad: true)
        x.maxPool2d(.init(kernel: (2, 2))).sum().backward()
        #expect(x.grad?.scalars == [1, 0, 0, 0])
        let z = Tensor(shape: [1, 1, 2, 2], scalars: [5, 5, 5, 5], requiresGrad: true)
        z.maxPool2d(.init(kernel: (2, 2), stride: (1, 1))).sum().backward()
        #expect(z.grad?.scalars == [1, 0, 0, 0])
    }

    @Test func powZeroHasZeroGradientEverywhere() {
        // d/dx x⁰ = 0, also at x = 0 (PyTorch special-cases it; p·x^(p−1) would give 0·∞ = NaN).
        let x = Tensor([0, 2, -1], requiresGrad: true)
        x.pow(0).sum().backward()
        #expect(x.grad?.scalars == [0, 0, 0])
        let y = Tensor([0, 3], requiresGrad: true)
        y.pow(1).sum().backward()
        #expect(y.grad?.scalars == [1, 1])
    }

    @Test func outputExtentsWhenTheKernelDoesNotFit() {
        // (input + 2·padding − dilation·(kernel − 1) − 1) / stride + 1 with floor division, as PyTorch:
        // a kernel larger than the padded input leaves no output, whatever the stride.
        #expect(Conv2dConfig.outExtent(2, kernel: 3, stride: 2, padding: 0, dilation: 1) == 0)
        #expect(Conv2dConfig.outExtent(6, kernel: 3, stride: 3, padding: 0, dilation: 3) == 0)
        #expect(Conv2dConfig.outExtent(3, kernel: 3, stride: 2, padding: 0, dilation: 1) == 1)
        #expect(Conv2dConfig.outExtent(5, kernel: 3, stride: 2, padding: 1, dilation: 1) == 3)
        #expect(Conv2dConfig.outExtent(7, kernel: 3, stride: 1, padding: 0, dilation: 2) == 3)
    }

    @Test func poolKernelLargerThanInputIsRejected() async {
        await #expect(processExitsWith: .failure) {
            _ = Tensor.zeros([1, 1, 2, 2]).maxPool2d(.init(kernel: (3, 3), stride: (2, 2)))
        }
        await #expect(processExitsWith: .failure) {
            _ = conv2d(Tensor.zeros([1, 1, 2, 2]), weight: Tensor.zeros([1, 1, 3, 3]), config: .init(stride: (2, 2)))
        }
    }

    @Test func convolutionPaddingWiderThanTheKernel() {
        for (kernel, pad, stride) in [(2, 3, 1), (3, 2, 2), (1, 2, 3)] {
            let x = Tensor.testNormal([1, 2, 3, 4], seed: 300, requiresGrad: true)
            let w = Tensor.testNormal([2, 2, kernel, kernel], seed: 301, requiresGrad: true)
            let config = Conv2dConfig(stride: (stride, stride), padding: (pad, pad))
            expectGradients("conv2d kernel \(kernel) padding \(pad) stride \(stride)", inputs: [x, w]) {
                conv2d($0[0], weight: $0[1], config: config)
            }
        }
    }

    @Test func convolutionWithOnlyTheBiasTrainable() {
        let x = Tensor.testNormal([2, 2, 4, 4], seed: 302, requiresGrad: false)
        let w = Tensor.testNormal([3, 2, 3, 3], seed: 303, requiresGrad: false)
        let b = Tensor.testNormal([3], seed: 304, requiresGrad: true)
        expectGradients("conv2d bias only", inputs: [x, w, b]) { conv2d($0[0], weight: $0[1], bias: $0[2]) }
    }

    @Test func safetensorsDecodesADataSlice() throws {
        // A Data slice does not start at index 0; offsets must be taken relative to its start.
        let file = Safetensors.encode(["x": Tensor([1.5, -2, 4])])
        let padded = Data([9, 9, 9]) + file
        let slice = padded[3...]
        #expect(slice.startIndex == 3)
        #expect(try Safetensors.decode(slice, name: "slice").tensors["x"]?.scalars == [1.5, -2, 4])
    }
}
