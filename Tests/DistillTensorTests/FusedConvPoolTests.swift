import CKernels
@testable import DistillTensor
import DistillTestSupport
import Testing

// conv → ReLU → max-pool in one kernel (`conv2dReLUMaxPool2d`, Sources/CKernels/conv_pool.c)
// against the unfused ops (conv2d, then maxPool2dReLU), its gradients against central
// differences, and its results against a one-thread run of the same chunks.
@Suite struct FusedConvPoolTests {
    struct Case: Sendable, CustomStringConvertible {
        let x: [Int], weight: [Int], bias: Bool, config: Conv2dConfig, pool: Pool2dConfig
        var description: String {
            "x \(x) w \(weight) stride \(config.stride) pad \(config.padding) dilation \(config.dilation) "
                + "pool \(pool.kernel) stride \(pool.stride) pad \(pool.padding)"
        }
    }

    static let cases: [Case] = [
        // cnn-small's first layer, an odd batch (8 chunks of 2 or 3 images)
        Case(x: [19, 1, 28, 28], weight: [32, 1, 3, 3], bias: true, config: .init(padding: (1, 1)), pool: .init(kernel: (2, 2))),
        // odd extents (the last convolution row and column are not pooled), no padding, no bias
        Case(x: [3, 1, 13, 11], weight: [5, 1, 3, 3], bias: false, config: .init(), pool: .init(kernel: (2, 2))),
        // stride 2, three channels, output channels not a multiple of 16
        Case(x: [4, 3, 15, 12], weight: [20, 3, 3, 3], bias: true, config: .init(stride: (2, 2), padding: (1, 1)),
             pool: .init(kernel: (2, 2))),
        // lenet5's first layer: 5×5, padding 2
        Case(x: [5, 1, 16, 16], weight: [6, 1, 5, 5], bias: true, config: .init(padding: (2, 2)), pool: .init(kernel: (2, 2))),
        // overlapping and padded pooling windows
        Case(x: [2, 2, 9, 10], weight: [7, 2, 3, 3], bias: true, config: .init(padding: (1, 1)),
             pool: .init(kernel: (3, 3), stride: (2, 2), padding: (1, 1))),
        Case(x: [2, 1, 7, 7], weight: [16, 1, 2, 2], bias: true, config: .init(), pool: .init(kernel: (2, 2), stride: (1, 1))),
        // dilation, a non-square kernel, uneven stride and padding, a 3×2 pool
        Case(x: [3, 4, 11, 9], weight: [9, 4, 3, 2], bias: true, config: .init(stride: (1, 2), padding: (2, 1), dilation: (2, 1)),
             pool: .init(kernel: (3, 2), stride: (2, 1))),
        // two input channels on the row-pair route (stride 1, 2×2 pool, rows of at most 32)
        Case(x: [3, 2, 10, 12], weight: [17, 2, 3, 3], bias: true, config: .init(padding: (1, 1)), pool: .init(kernel: (2, 2))),
        // rows wider than 32: the general route
        Case(x: [2, 1, 6, 40], weight: [4, 1, 3, 3], bias: true, config: .init(padding: (1, 1)), pool: .init(kernel: (2, 2))),
        // one image, one output channel, stride 2 in both
        Case(x: [1, 1, 8, 8], weight: [1, 1, 3, 3], bias: true, config: .init(stride: (2, 2)), pool: .init(kernel: (2, 2))),
    ]

    /// Code paths to test: portable loops always, AVX2 and AVX-512 where this CPU has them.
    static let levels: [Int32] = [0] + [1, 2].filter(fusedLevelRuns)

    /// Random multiples of `step` in [-limit, limit]·step: sums of their products are exact in
    /// Float at these sizes whatever their order, so both paths compute the same convolution bit
    /// for bit, and equal values (ties in a window, zeros at the ReLU) are common.
    static func dyadic(_ shape: [Int], seed: UInt64, step: Float, limit: Int, requiresGrad: Bool) -> Tensor {
        var g = SeededGenerator(seed: seed)
        let values = (0..<shape.reduce(1, *)).map { _ in Float(g.nextInt(below: 2 * limit + 1) - limit) * step }
        return Tensor(shape: shape, scalars: values, requiresGrad: requiresGrad)
    }

    /// Output and gradients of one layer, fused (at `level`) or not (conv2d on `path`, then
    /// maxPool2dReLU), on dyadic inputs and a dyadic upstream gradient.
    static func run(_ c: Case, fused: Bool, level: Int32 = -1, path: ConvolutionPath = .im2col)
        -> (y: [Float], dw: [Float], db: [Float]?) {
        let x = dyadic(c.x, seed: 501, step: 0.25, limit: 8, requiresGrad: false)
        let w = dyadic(c.weight, seed: 502, step: 0.125, limit: 4, requiresGrad: true)
        let b = c.bias ? dyadic([c.weight[0]], seed: 503, step: 0.125, limit: 4, requiresGrad: true) : nil
        let y = conv2dReLUMaxPool2d(x, weight: w, bias: b, config: c.config, pool: c.pool, fused: fused, path: path, level: level)
        y.backward(dyadic(y.shape, seed: 504, step: 0.25, limit: 4, requiresGrad: false))
        return (y.scalars, w.grad!.scalars, b?.grad?.scalars)
    }

    /// Exact arithmetic on both sides: the same bits, so ties and ReLU zeros are resolved alike.
    @Test(arguments: cases)
    func fusedEqualsConvThenReLUMaxPool(_ c: Case) {
        let reference = Self.run(c, fused: false)
        #expect(reference.y.contains { $0 > 0 }, "the case should have positive outputs")
        #expect(c.weight[0] == 1 || reference.y.contains(0), "the case should cover both sides of ReLU")
        for level in Self.levels {
            let fused = Self.run(c, fused: true, level: level)
            #expect(fused.y == reference.y, "forward, level \(level): \(compareClose(fused.y, reference.y))")
            #expect(fused.dw == reference.dw, "weight gradient, level \(level): \(compareClose(fused.dw, reference.dw))")
            #expect(fused.db == reference.db, "bias gradient, level \(level)")
        }
    }

    /// Ties inside a window go to the first position in row-major order, as in maxPool2d: a
    /// constant image makes every convolution output of a window equal except at the border.
    @Test func tiesGoToTheFirstPosition() {
        let x = Tensor.ones([1, 1, 4, 4])
        let w = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4], requiresGrad: true)
        let config = Conv2dConfig(padding: (1, 1)), pool = Pool2dConfig(kernel: (2, 2))
        let y = conv2dReLUMaxPool2d(x, weight: w, bias: nil, config: config, pool: pool, fused: true, path: .im2col)
        y.backward(Tensor.ones(y.shape))
        let reference = Tensor(shape: w.shape, scalars: w.scalars, requiresGrad: true)
        let z = conv2d(x, weight: reference, bias: nil, config: config, path: .im2col).maxPool2dReLU(pool)
        z.backward(Tensor.ones(z.shape))
        #expect(y.scalars == z.scalars)
        #expect(w.grad!.scalars == reference.grad!.scalars)
    }

    /// Real-valued inputs on the default path against the default unfused path (oneDNN where
    /// installed): the same values to rounding.
    @Test func matchesTheDefaultPathOnNormalInputs() {
        let x = Tensor.testNormal([16, 1, 28, 28], seed: 511, requiresGrad: false)
        let w = Tensor.testNormal([32, 1, 3, 3], seed: 512, scale: 0.3, requiresGrad: false)
        let b = Tensor.testNormal([32], seed: 513, scale: 0.1, requiresGrad: false)
        let config = Conv2dConfig(padding: (1, 1)), pool = Pool2dConfig(kernel: (2, 2))
        let fused = conv2dReLUMaxPool2d(x, weight: w, bias: b, config: config, pool: pool, fused: true, path: .preferred)
        let unfused = conv2dReLUMaxPool2d(x, weight: w, bias: b, config: config, pool: pool, fused: false, path: .preferred)
        assertClose(fused.scalars, unfused.scalars, atol: 1e-5, rtol: 1e-5, "forward")
    }

    /// Central differences for the weight and the bias (the input is data: no gradient).
    @Test(arguments: [
        Case(x: [2, 1, 6, 6], weight: [3, 1, 3, 3], bias: true, config: .init(padding: (1, 1)), pool: .init(kernel: (2, 2))),
        Case(x: [3, 2, 7, 6], weight: [4, 2, 3, 3], bias: true, config: .init(stride: (2, 1), padding: (1, 1)),
             pool: .init(kernel: (3, 3), stride: (2, 2), padding: (1, 1))),
        Case(x: [2, 1, 9, 8], weight: [2, 1, 2, 3], bias: false, config: .init(dilation: (2, 1)), pool: .init(kernel: (2, 2))),
    ])
    func gradientsMatchCentralDifferences(_ c: Case) {
        let x = Tensor.testNormal(c.x, seed: 521, requiresGrad: false)
        var inputs = [x, Tensor.testNormal(c.weight, seed: 522, scale: 0.5)]
        if c.bias { inputs.append(.testNormal([c.weight[0]], seed: 523, scale: 0.5)) }
        for level in Self.levels {
            let report = expectGradients("conv → ReLU → max-pool, level \(level), \(c)", inputs: inputs, epsilon: 1e-3, atol: 2e-3) {
                conv2dReLUMaxPool2d($0[0], weight: $0[1], bias: $0.count > 2 ? $0[2] : nil, config: c.config, pool: c.pool,
                                    fused: true, path: .im2col, level: level)
            }
            #expect(report.checkedElements == inputs.dropFirst().reduce(0) { $0 + $1.count })
        }
    }

    /// The batch is cut into `ConvGeometry.batchChunks` chunks on the worker threads; the same
    /// chunks run one after the other on this thread, their sums added in order, give the same
    /// bits, so the result depends on the chunking only, never on the number of threads.
    @Test func resultsDoNotDependOnTheThreads() {
        let c = Self.cases[0]
        let x = Tensor.testNormal(c.x, seed: 531, requiresGrad: false)
        let w = Tensor.testNormal(c.weight, seed: 532, scale: 0.3, requiresGrad: true)
        let b = Tensor.testNormal([c.weight[0]], seed: 533, scale: 0.1, requiresGrad: true)
        let y = conv2dReLUMaxPool2d(x, weight: w, bias: b, config: c.config, pool: c.pool, fused: true, path: .im2col)
        let g = Tensor.testNormal(y.shape, seed: 534, requiresGrad: false)
        y.backward(g)

        let geo = ConvGeometry(input: x.shape, weight: w.shape, config: c.config)
        var shape = dk_conv_pool_shape(channels: 1, in_h: 28, in_w: 28, out_channels: 32, kernel_h: 3, kernel_w: 3, stride_h: 1,
                                       stride_w: 1, pad_h: 1, pad_w: 1, dilation_h: 1, dilation_w: 1, conv_h: 28, conv_w: 28,
                                       pool_h: 2, pool_w: 2, pool_stride_h: 2, pool_stride_w: 2, pool_pad_h: 0, pool_pad_w: 0,
                                       out_h: 14, out_w: 14)
        let n = geo.n, chunks = ConvGeometry.batchChunks, image = 28 * 28, plane = 32 * 14 * 14
        var out = [Float](repeating: 0, count: n * plane), argmax = [Int32](repeating: 0, count: n * plane)
        var dw = [Float](repeating: 0, count: w.count), db = [Float](repeating: 0, count: 32)
        var partW = [Float](repeating: 0, count: w.count), partB = [Float](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { out in
            argmax.withUnsafeMutableBufferPointer { argmax in
                for chunk in 0..<chunks {
                    let lo = n * chunk / chunks, hi = n * (chunk + 1) / chunks
                    let winners = argmax.baseAddress! + lo * plane
                    #expect(dk_conv_relu_maxpool_forward(-1, &shape, Int32(hi - lo), x.data + lo * image, w.data, b.data,
                                                         out.baseAddress! + lo * plane, winners) == 0)
                    #expect(dk_conv_relu_maxpool_backward(-1, &shape, Int32(hi - lo), x.data + lo * image, winners,
                                                          g.data + lo * plane, &partW, &partB) == 0)
                    for i in dw.indices { dw[i] += partW[i] }
                    for i in db.indices { db[i] += partB[i] }
                }
            }
        }
        #expect(y.scalars == out)
        #expect(w.grad!.scalars == dw)
        #expect(b.grad!.scalars == db)
    }

    /// Repeated runs give the same bits (the chunks are fixed and summed in order).
    @Test func repeatedRunsAreBitIdentical() {
        for c in Self.cases.prefix(3) {
            let first = Self.run(c, fused: true), second = Self.run(c, fused: true)
            #expect(first.y == second.y && first.dw == second.dw && first.db == second.db, "\(c)")
        }
    }

    /// Where the fused kernel does not apply it is conv2d then maxPool2dReLU, with their gradients:
    /// an input that needs a gradient, or more input channels than the kernel takes.
    @Test func fallsBackWhereItDoesNotApply() {
        let pool = Pool2dConfig(kernel: (2, 2)), config = Conv2dConfig(padding: (1, 1))
        let x = Tensor.testNormal([3, 1, 6, 6], seed: 541)
        let w = Tensor.testNormal([4, 1, 3, 3], seed: 542, requiresGrad: false)
        #expect(!FusedConvolutionPool.accepts(x, weight: w, config: config))
        let y = conv2dReLUMaxPool2d(x, weight: w, config: config, pool: pool)
        y.backward(Tensor.ones(y.shape))
        #expect(x.grad != nil, "the input's gradient comes from the unfused path")
        let wide = Tensor.testNormal([2, FusedConvolutionPool.maxInputChannels + 1, 6, 6], seed: 543, requiresGrad: false)
        let wideWeight = Tensor.testNormal([4, FusedConvolutionPool.maxInputChannels + 1, 3, 3], seed: 544, requiresGrad: false)
        #expect(!FusedConvolutionPool.accepts(wide, weight: wideWeight, config: config))
        let frozen = Tensor.testNormal([3, 1, 6, 6], seed: 545, requiresGrad: false)
        #expect(FusedConvolutionPool.accepts(frozen, weight: w, config: config))
        let grouped = Tensor.testNormal([3, 2, 6, 6], seed: 546, requiresGrad: false)
        #expect(!FusedConvolutionPool.accepts(grouped, weight: Tensor.testNormal([4, 1, 3, 3], seed: 547),
                                              config: Conv2dConfig(padding: (1, 1), groups: 2)))
    }
}

/// Whether `level` of the fused kernel runs on this CPU.
private func fusedLevelRuns(_ level: Int32) -> Bool {
    var shape = dk_conv_pool_shape(channels: 1, in_h: 2, in_w: 2, out_channels: 1, kernel_h: 1, kernel_w: 1, stride_h: 1, stride_w: 1,
                                   pad_h: 0, pad_w: 0, dilation_h: 1, dilation_w: 1, conv_h: 2, conv_w: 2, pool_h: 2, pool_w: 2,
                                   pool_stride_h: 2, pool_stride_w: 2, pool_pad_h: 0, pool_pad_w: 0, out_h: 1, out_w: 1)
    var x: [Float] = [1, 2, 3, 4], w: [Float] = [1], y: [Float] = [0]
    return dk_conv_relu_maxpool_forward(level, &shape, 1, &x, &w, nil, &y, nil) == 0
}
