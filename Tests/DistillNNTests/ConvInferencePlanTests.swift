import CKernels
import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// CNN students through `InferencePlan` (the convolutional front of `ConvStack`, then the
/// fully connected layers) against the module's own forward pass in evaluation mode.
@Suite struct ConvInferencePlanTests {
    func input(_ rows: Int, _ shape: [Int], seed: UInt64) -> Tensor {
        var g = SeededGenerator(seed: seed)
        return Tensor.randomNormal([rows] + shape, using: &g)
    }

    /// The plan's outputs against the module's at batch 1 and at an odd batch that splits
    /// across the workers unevenly.
    func expectPlanMatches(_ model: Module, shape: [Int], _ label: String, rows: [Int] = [1, 2, 37]) throws {
        model.eval()
        let plan = try #require(InferencePlan(model, exampleShape: shape), "\(label): not planned")
        #expect(plan.inputSize == shape.reduce(1, *))
        for n in rows {
            let x = input(n, shape, seed: UInt64(n))
            let expected = withNoGrad { model(x) }
            let got = plan(x)
            #expect(got.shape == expected.shape, "\(label) at batch \(n)")
            assertClose(got.scalars, expected.scalars, atol: 2e-4, rtol: 2e-4, "\(label) at batch \(n)")
        }
    }

    @Test(arguments: ["lenet5", "cnn-tiny", "cnn-small"])
    func presetsMatchTheModule(spec: String) throws {
        try expectPlanMatches(try ModelZoo.build(spec, seed: 3), shape: [1, 28, 28], spec)
    }

    @Test func presetsOnOtherImagesMatchTheModule() throws {
        try expectPlanMatches(try ModelZoo.build("lenet5", inputShape: [3, 32, 30], numClasses: 7, seed: 1), shape: [3, 32, 30], "lenet5 3×32×30")
        try expectPlanMatches(try ModelZoo.build("cnn-tiny", inputShape: [2, 13, 9], numClasses: 3, seed: 2), shape: [2, 13, 9], "cnn-tiny 2×13×9")
    }

    /// Batch-norm folded into the convolution before it, strides, paddings, dilation, pooling
    /// with padding and overlapping windows, channel counts that leave partial vectors (20, 40)
    /// and need more than one tile of vectors (70), on odd image sides.
    @Test func batchNormStridesPaddingsAndPoolsMatchTheModule() throws {
        var g = SeededGenerator(seed: 11)
        let model = Sequential([
            Conv2d(3, 20, kernel: 3, stride: 2, padding: 1, generator: &g), BatchNorm2d(20), ReLU(),
            MaxPool2d(3, stride: 2, padding: 1),
            Conv2d(20, 40, kernel: 2, padding: 1, dilation: 2, bias: false, generator: &g), BatchNorm2d(40),
            AvgPool2d(2, stride: 1, padding: 1), ReLU(), Dropout(0.3),
            Sequential([Conv2d(40, 70, kernel: 1, generator: &g), ReLU()]),
            Flatten(), Linear(70 * 6 * 5, 33, generator: &g), ReLU(), Dropout(0.2), Linear(33, 5, generator: &g),
        ])
        setPatternWeights(model)  // running statistics and affine parameters away from 0 and 1
        try expectPlanMatches(model, shape: [3, 17, 15], "batch-norm and strides")
    }

    @Test func stridedColumnsAndGlobalPoolingMatchTheModule() throws {
        var g = SeededGenerator(seed: 12)
        let model = Sequential([
            Conv2d(1, 16, kernel: 5, stride: 3, padding: 2, generator: &g), BatchNorm2d(16),
            Conv2d(16, 9, kernel: 3, stride: 2, dilation: 2, generator: &g), ReLU(),
            GlobalAvgPool2d(), Linear(9, 4, generator: &g),
        ])
        setPatternWeights(model)
        try expectPlanMatches(model, shape: [1, 29, 31], "global pooling")
    }

    /// A grayscale first layer whose max-pooling runs inside the convolution, on odd sides (the
    /// pooling drops the last row and column), with the ReLU before or after the pooling.
    @Test func fusedConvolutionAndPoolingMatchTheModule() throws {
        var g = SeededGenerator(seed: 14)
        let before = Sequential([Conv2d(1, 5, kernel: 3, padding: 1, generator: &g), ReLU(), MaxPool2d(2), Flatten(), Linear(5 * 6 * 20, 3, generator: &g)])
        try expectPlanMatches(before, shape: [1, 13, 41], "ReLU then pooling")
        let after = Sequential([Conv2d(1, 8, kernel: 2, generator: &g), BatchNorm2d(8), MaxPool2d(2), ReLU(), Dropout(0.1),
                                Conv2d(8, 4, kernel: 3, generator: &g), Flatten(), Linear(4 * 1 * 2, 2, generator: &g)])
        setPatternWeights(after)
        try expectPlanMatches(after, shape: [1, 8, 10], "batch-norm, pooling then ReLU")
    }

    @Test func standardisedImagesMatchTheModuleOnStandardisedInputs() throws {
        let model = try ModelZoo.build("cnn-tiny", inputShape: [1, 8, 8], numClasses: 4, seed: 5)
        model.eval()
        let shift = (0..<64).map { Float($0) / 64 }, scale = (0..<64).map { 1 + Float($0 % 5) / 4 }
        let plan = try #require(InferencePlan(model, exampleShape: [1, 8, 8], standardize: (shift, scale)))
        let x = input(3, [1, 8, 8], seed: 9)
        let standardized = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - shift[i % 64]) * scale[i % 64] })
        assertClose(plan(x).scalars, withNoGrad { model(standardized) }.scalars, atol: 2e-4, rtol: 2e-4, "standardised")
    }

    @Test func planningLeavesTheModelUnchanged() throws {
        var g = SeededGenerator(seed: 13)
        let model = Sequential([Conv2d(2, 8, kernel: 3, padding: 1, generator: &g), BatchNorm2d(8), ReLU(), MaxPool2d(2),
                                Flatten(), Linear(8 * 4 * 4, 3, generator: &g)])
        setPatternWeights(model)
        model.eval()
        let before = model.namedTensors().map { ($0.name, $0.tensor.scalars) }
        let x = input(5, [2, 8, 8], seed: 4)
        let output = withNoGrad { model(x) }.scalars
        let plan = try #require(InferencePlan(model, exampleShape: [2, 8, 8]))
        _ = plan(x)
        for ((name, values), after) in zip(before, model.namedTensors()) { #expect(values == after.tensor.scalars, "\(name) changed") }
        #expect(withNoGrad { model(x) }.scalars == output)
    }

    @Test func layersOutsideThePlanAreRefused() throws {
        #expect(InferencePlan(try ModelZoo.build("resnet8", seed: 0), exampleShape: [1, 28, 28]) == nil, "residual blocks")
        #expect(InferencePlan(try ModelZoo.build("mobilenet-tiny", seed: 0), exampleShape: [1, 28, 28]) == nil, "grouped convolutions")
        #expect(InferencePlan(try ModelZoo.build("lenet5", seed: 0), exampleShape: [3, 28, 28]) == nil, "wrong channels")
        #expect(InferencePlan(try ModelZoo.build("lenet5", seed: 0), exampleShape: [1, 24, 24]) == nil, "features that do not reach the first Linear's width")
        var g = SeededGenerator(seed: 0)
        #expect(InferencePlan(Sequential([Conv2d(1, 4, kernel: 3, generator: &g), ReLU(), BatchNorm2d(4), Flatten(), Linear(4 * 4, 2, generator: &g)]),
                              exampleShape: [1, 4, 4]) == nil, "batch-norm after a ReLU")
        #expect(InferencePlan(Sequential([Conv2d(1, 4, kernel: 3, generator: &g), MaxPool2d(2), BatchNorm2d(4), Flatten(), Linear(4, 2, generator: &g)]),
                              exampleShape: [1, 4, 4]) == nil, "batch-norm after a pooling fused into the convolution")
        #expect(InferencePlan(Sequential([MaxPool2d(2), BatchNorm2d(1), Flatten(), Linear(4, 2, generator: &g)]),
                              exampleShape: [1, 4, 4]) == nil, "batch-norm after a pooling")
        #expect(InferencePlan(Sequential([Conv2d(1, 4, kernel: 3, generator: &g), Tanh(), Flatten(), Linear(4 * 4, 2, generator: &g)]),
                              exampleShape: [1, 6, 6]) == nil, "unplanned activation")
        #expect(InferencePlan(Sequential([Conv2d(1, 4, kernel: 5, generator: &g), Flatten(), Linear(4, 2, generator: &g)]),
                              exampleShape: [1, 3, 3]) == nil, "kernel larger than the image")
        #expect(InferencePlan(Sequential([Conv2d(1, 4, kernel: 3, generator: &g), Flatten()]), exampleShape: [1, 3, 3]) == nil, "no Linear")
    }
}

/// The NHWC convolution and pooling kernels for each code path this CPU has, against
/// `conv2d` / `maxPool2d` / `avgPool2d` on NCHW tensors.
@Suite struct ConvKernelTests {
    /// [N=1, C, H, W] → [H + 2·padH][W + 2·padW][C], zero border.
    func nhwc(_ x: Tensor, padH: Int = 0, padW: Int = 0) -> [Float] {
        let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3])
        var out = [Float](repeating: 0, count: (h + 2 * padH) * (w + 2 * padW) * c)
        for ch in 0..<c { for y in 0..<h { for xx in 0..<w {
            out[((y + padH) * (w + 2 * padW) + xx + padW) * c + ch] = x.data[(ch * h + y) * w + xx]
        } } }
        return out
    }

    /// [H][W][C] → [C, H, W] values.
    func nchw(_ y: [Float], c: Int, h: Int, w: Int) -> [Float] {
        (0..<(c * h * w)).map { i in let (ch, y0, x0) = (i / (h * w), i / w % h, i % w); return y[(y0 * w + x0) * c + ch] }
    }

    @Test(arguments: [0, 1, 2] as [Int32])
    func convolutionMatchesConv2d(level: Int32) throws {
        var g = SeededGenerator(seed: 21)
        // (in, out, kernel, stride, padding, dilation, height, width); one input channel with at
        // most 8 outputs takes the pixels-in-lanes kernel (rows of 40: a full and a partial block).
        for (cin, cout, k, s, p, d, h, w) in [(1, 6, 5, 1, 2, 1, 12, 11), (6, 16, 5, 1, 0, 1, 9, 10), (3, 37, 3, 2, 1, 1, 9, 8),
                                               (5, 70, 1, 1, 0, 1, 4, 31), (4, 3, 3, 2, 2, 2, 11, 13), (2, 20, 2, 3, 1, 1, 7, 40),
                                               (1, 8, 3, 1, 1, 2, 6, 40), (1, 3, 2, 2, 0, 1, 9, 17), (1, 16, 3, 1, 1, 1, 5, 7)] {
            let x = Tensor.randomNormal([1, cin, h, w], using: &g)
            let weight = Tensor.randomNormal([cout, cin, k, k], using: &g), bias = Tensor.randomNormal([cout], using: &g)
            let config = Conv2dConfig(stride: (s, s), padding: (p, p), dilation: (d, d))
            let expected = conv2d(x, weight: weight, bias: bias, config: config)
            let (oh, ow) = (expected.shape[2], expected.shape[3])
            let padded = (cout + 15) / 16 * 16
            var packed = [Float](repeating: 0, count: k * k * cin * padded)
            for o in 0..<cout { for c in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                packed[((ky * k + kx) * cin + c) * padded + o] = weight.data[((o * cin + c) * k + ky) * k + kx]
            } } } }
            let paddedBias = (0..<padded).map { $0 < cout ? bias.data[$0] : 0 }
            let input = nhwc(x, padH: p, padW: p)
            for relu in [false, true] {
                // A row stride wider than the row (as when the output is the next layer's padded buffer).
                let rowStride = (ow + 3) * cout
                var y = [Float](repeating: .nan, count: oh * rowStride)
                var shape = dk_conv_shape(channels: cin, in_row_stride: (w + 2 * p) * cin, kernel_h: k, kernel_w: k, stride_h: s, stride_w: s,
                                          dilation_h: d, dilation_w: d, out_channels: cout, padded_out: padded, out_h: oh, out_w: ow,
                                          out_row_stride: rowStride)
                let status = dk_conv2d_nhwc_level(level, &shape, input, packed, paddedBias, &y, relu ? 1 : 0)
                guard status == 0 else { try #require(level > 0, "the portable path always runs"); return }
                let dense = (0..<(oh * ow * cout)).map { i in y[(i / (ow * cout)) * rowStride + i % (ow * cout)] }
                let reference = relu ? expected.scalars.map { max($0, 0) } : expected.scalars
                assertClose(nchw(dense, c: cout, h: oh, w: ow), reference, atol: 1e-4, rtol: 1e-4,
                            "level \(level): \(cin)→\(cout) k\(k) s\(s) p\(p) d\(d) \(h)×\(w) relu \(relu)")
                #expect((0..<oh).allSatisfy { r in (ow * cout..<rowStride).allSatisfy { y[r * rowStride + $0].isNaN } },
                        "level \(level): wrote past the row's values")
            }
        }
    }

    /// One 2×2 max-pooled convolution (stride 1, ReLU) by `convolve(shape, input, packed weight,
    /// padded bias, output)` against `conv2d` then `maxPool2d`, for each case (in, out, kernel,
    /// padding, dilation, height, width); `convolve` returns nonzero when it does not run the shape.
    func expectPooledConvolutionsMatch(_ cases: [(Int, Int, Int, Int, Int, Int, Int)], seed: UInt64, _ label: String,
                                       convolve: (inout dk_conv_shape, [Float], [Float], [Float], inout [Float]) -> Int32) {
        var g = SeededGenerator(seed: seed)
        for (cin, cout, k, p, d, h, w) in cases {
            let x = Tensor.randomNormal([1, cin, h, w], using: &g)
            let weight = Tensor.randomNormal([cout, cin, k, k], using: &g), bias = Tensor.randomNormal([cout], using: &g)
            let config = Conv2dConfig(padding: (p, p), dilation: (d, d))
            let convolved = conv2d(x, weight: weight, bias: bias, config: config)
            let expected = convolved.maxPool2d(Pool2dConfig(kernel: (2, 2))).scalars.map { max($0, 0) }
            let (oh, ow) = (convolved.shape[2], convolved.shape[3])
            let padded = (cout + 15) / 16 * 16
            var packed = [Float](repeating: 0, count: k * k * cin * padded)
            for o in 0..<cout { for c in 0..<cin { for j in 0..<(k * k) {
                packed[(j * cin + c) * padded + o] = weight.data[(o * cin + c) * k * k + j]
            } } }
            let paddedBias = (0..<padded).map { $0 < cout ? bias.data[$0] : 0 }
            let rowStride = (ow / 2 + 1) * cout
            var y = [Float](repeating: .nan, count: oh / 2 * rowStride)
            var shape = dk_conv_shape(channels: cin, in_row_stride: (w + 2 * p) * cin, kernel_h: k, kernel_w: k, stride_h: 1, stride_w: 1,
                                      dilation_h: d, dilation_w: d, out_channels: cout, padded_out: padded, out_h: oh, out_w: ow,
                                      out_row_stride: rowStride)
            guard convolve(&shape, nhwc(x, padH: p, padW: p), packed, paddedBias, &y) == 0 else { continue }
            let dense = (0..<(oh / 2 * (ow / 2) * cout)).map { i in y[(i / (ow / 2 * cout)) * rowStride + i % (ow / 2 * cout)] }
            assertClose(nchw(dense, c: cout, h: oh / 2, w: ow / 2), expected, atol: 1e-4, rtol: 1e-4, "\(label): \(cin)→\(cout) k\(k) p\(p) d\(d) \(h)×\(w)")
            #expect((0..<(oh / 2)).allSatisfy { r in (ow / 2 * cout..<rowStride).allSatisfy { y[r * rowStride + $0].isNaN } },
                    "\(label): wrote past the row's values")
        }
    }

    @Test(arguments: [0, 1, 2] as [Int32])
    func convolutionWithPoolingMatchesConv2dThenMaxPool(level: Int32) throws {
        // One input channel (the grayscale kernels): odd sides, rows of more than 16 columns (two
        // register tiles), more than 8 outputs (two groups), whole vectors of outputs (channels in
        // the lanes). Several (the AVX2 tiles with pooling): one, two and three vectors of
        // outputs, a partial one.
        var ran = false
        expectPooledConvolutionsMatch([(1, 6, 5, 2, 1, 28, 28), (1, 8, 3, 1, 1, 13, 11), (1, 3, 2, 0, 1, 9, 35), (1, 8, 3, 1, 2, 6, 40),
                                       (1, 13, 3, 1, 1, 7, 7), (1, 16, 3, 1, 1, 15, 9), (8, 16, 3, 1, 1, 14, 14), (6, 16, 5, 0, 1, 14, 14),
                                       (3, 5, 3, 1, 1, 9, 11), (4, 24, 3, 0, 2, 11, 10), (2, 8, 2, 0, 1, 7, 9)],
                                      seed: 23, "level \(level)") { shape, x, w, b, y in
            let status = dk_conv2d_maxpool2_nhwc_level(level, &shape, x, w, b, &y, 1)
            ran = ran || status == 0
            return status
        }
        #expect(ran || level > 0, "the portable path always runs")
    }

    /// Winograd's F(2×2, 3×3) with the pooling, where this CPU runs it (AVX2 as the best level):
    /// one vector of outputs or two, a partial one, an odd third, 2 and 64 input channels, odd
    /// sides, no padding.
    @Test func winogradConvolutionWithPoolingMatchesConv2dThenMaxPool() throws {
        expectPooledConvolutionsMatch([(8, 16, 3, 1, 1, 14, 14), (3, 5, 3, 1, 1, 9, 11), (4, 24, 3, 0, 1, 11, 10), (16, 8, 3, 1, 1, 7, 7),
                                       (2, 40, 3, 1, 1, 6, 13), (64, 16, 3, 1, 1, 5, 5), (10, 17, 3, 0, 1, 8, 9)],
                                      seed: 24, "winograd") { shape, x, w, b, y in
            guard dk_conv2d_maxpool2_winograd_applies(&shape) == 1 else { return -1 }
            var u = [Float](repeating: 0, count: dk_winograd_weight_count(&shape))
            dk_winograd_pack(&shape, w, &u)
            return dk_conv2d_maxpool2_winograd_nhwc(&shape, x, u, b, &y, 1)
        }
    }

    @Test(arguments: [0, 1, 2] as [Int32])
    func poolingMatchesMaxAndAveragePooling(level: Int32) throws {
        var g = SeededGenerator(seed: 22)
        for (c, kernel, stride, padding, h, w) in [(6, 2, 2, 0, 28, 28), (17, 2, 2, 0, 7, 9), (17, 3, 2, 1, 9, 10), (40, 2, 1, 1, 5, 6), (3, 3, 3, 0, 10, 11)] {
            let x = Tensor.randomNormal([1, c, h, w], using: &g)
            let config = Pool2dConfig(kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding))
            for average in [false, true] {
                let expected = average ? x.avgPool2d(config) : x.maxPool2d(config)
                let (oh, ow) = (expected.shape[2], expected.shape[3])
                var y = [Float](repeating: .nan, count: oh * ow * c)
                var shape = dk_pool_shape(channels: c, in_h: h, in_w: w, in_row_stride: w * c, kernel_h: kernel, kernel_w: kernel,
                                          stride_h: stride, stride_w: stride, pad_h: padding, pad_w: padding, out_h: oh, out_w: ow,
                                          out_row_stride: ow * c)
                let status = dk_pool2d_nhwc_level(level, &shape, nhwc(x), &y, average ? 1 : 0, 1)
                guard status == 0 else { try #require(level > 0, "the portable path always runs"); return }
                assertClose(nchw(y, c: c, h: oh, w: ow), expected.scalars.map { max($0, 0) }, atol: 1e-6, rtol: 1e-6,
                            "level \(level): \(average ? "average" : "max") \(c) channels k\(kernel) s\(stride) p\(padding)")
            }
        }
    }
}
