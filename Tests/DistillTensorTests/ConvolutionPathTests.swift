import CKernels
@testable import DistillTensor
import DistillTestSupport
import Testing

// The two convolution paths (Sources/DistillTensor/Ops/Conv.swift): oneDNN's primitives against
// im2col + BLAS, forward and every gradient, on shapes that exercise padding, strides, dilation,
// 1×1 kernels, one input channel and batches that do not split evenly into chunks.
@Suite struct ConvolutionPathTests {
    /// The outputs and gradients of one convolution on `path`, from fixed inputs.
    static func run(_ path: ConvolutionPath, x xShape: [Int], weight wShape: [Int], bias: Bool, config: Conv2dConfig,
                    inputGradient: Bool = true) -> (y: [Float], dx: [Float]?, dw: [Float], db: [Float]?) {
        let x = Tensor.testNormal(xShape, seed: 301, requiresGrad: inputGradient)
        let w = Tensor.testNormal(wShape, seed: 302, scale: 0.3, requiresGrad: true)
        let b = bias ? Tensor.testNormal([wShape[0]], seed: 303, requiresGrad: true) : nil
        let y = conv2d(x, weight: w, bias: b, config: config, path: path)
        y.backward(Tensor.testNormal(y.shape, seed: 304, requiresGrad: false))
        return (y.scalars, x.grad?.scalars, w.grad!.scalars, b?.grad?.scalars)
    }

    struct Case: Sendable, CustomStringConvertible {
        let x: [Int], weight: [Int], bias: Bool, config: Conv2dConfig
        var description: String { "x \(x) w \(weight) stride \(config.stride) pad \(config.padding) dilation \(config.dilation)" }
    }

    static let cases: [Case] = [
        Case(x: [128, 1, 28, 28], weight: [32, 1, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),  // cnn-small, layer 1
        Case(x: [19, 32, 14, 14], weight: [64, 32, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),  // layer 2, odd batch
        Case(x: [3, 5, 11, 9], weight: [7, 5, 3, 3], bias: false, config: Conv2dConfig(stride: (2, 2), padding: (1, 1))),
        Case(x: [2, 3, 9, 10], weight: [4, 3, 3, 2], bias: true, config: Conv2dConfig(padding: (1, 0), dilation: (2, 1))),
        Case(x: [1, 16, 7, 7], weight: [24, 16, 1, 1], bias: true, config: Conv2dConfig()),
        Case(x: [9, 6, 12, 12], weight: [16, 6, 5, 5], bias: true, config: Conv2dConfig()),  // lenet5's second layer
    ]

    @Test(.enabled(if: ConvolutionPath.oneDNNAvailable, "oneDNN (libdnnl.so.2) is not installed: only the im2col path runs"),
          arguments: cases)
    func oneDNNMatchesIm2col(_ c: Case) {
        Self.expectMatchesIm2col(.oneDNN, c)
    }

    /// `path`'s forward pass and gradients against im2col's, to float rounding.
    static func expectMatchesIm2col(_ path: ConvolutionPath, _ c: Case) {
        let tested = Self.run(path, x: c.x, weight: c.weight, bias: c.bias, config: c.config)
        let reference = Self.run(.im2col, x: c.x, weight: c.weight, bias: c.bias, config: c.config)
        assertClose(tested.y, reference.y, atol: 1e-4, rtol: 1e-4, "forward")
        assertClose(tested.dx!, reference.dx!, atol: 1e-4, rtol: 1e-4, "input gradient")
        assertClose(tested.dw, reference.dw, atol: 2e-3, rtol: 1e-4, "weight gradient")
        if c.bias { assertClose(tested.db!, reference.db!, atol: 2e-3, rtol: 1e-4, "bias gradient") }
    }

    /// A first layer (input that needs no gradient) asks oneDNN for the weight gradient only.
    @Test(.enabled(if: ConvolutionPath.oneDNNAvailable, "oneDNN (libdnnl.so.2) is not installed: only the im2col path runs"))
    func weightGradientAloneMatches() {
        let c = Self.cases[0]
        let dnnl = Self.run(.oneDNN, x: c.x, weight: c.weight, bias: true, config: c.config, inputGradient: false)
        let reference = Self.run(.im2col, x: c.x, weight: c.weight, bias: true, config: c.config, inputGradient: false)
        #expect(dnnl.dx == nil)
        assertClose(dnnl.dw, reference.dw, atol: 2e-3, rtol: 1e-4, "weight gradient")
        assertClose(dnnl.db!, reference.db!, atol: 2e-3, rtol: 1e-4, "bias gradient")
    }

    /// Grouped convolutions stay on im2col whatever the preferred path: both give the same bits.
    @Test func groupedConvolutionsUseIm2colOnEitherPath() {
        let config = Conv2dConfig(padding: (1, 1), groups: 4)
        let a = Self.run(.oneDNN, x: [5, 8, 6, 6], weight: [8, 2, 3, 3], bias: true, config: config)
        let b = Self.run(.im2col, x: [5, 8, 6, 6], weight: [8, 2, 3, 3], bias: true, config: config)
        #expect(a.y == b.y && a.dx! == b.dx! && a.dw == b.dw && a.db! == b.db!)
    }

    /// Each path gives the same bits at every call: chunks are fixed, their weight gradients
    /// summed in order, and a oneDNN call runs on one thread.
    @Test(arguments: ConvolutionPath.allCases)
    func repeatedRunsAreBitIdentical(_ path: ConvolutionPath) {
        for c in Self.cases.prefix(2) {
            let first = Self.run(path, x: c.x, weight: c.weight, bias: c.bias, config: c.config)
            let second = Self.run(path, x: c.x, weight: c.weight, bias: c.bias, config: c.config)
            #expect(first.y == second.y && first.dx! == second.dx! && first.dw == second.dw && first.db! == second.db!, "\(c)")
        }
    }

    /// Winograd's F(2×2, 3×3) (ConvWinograd.swift) against im2col, forward and every gradient:
    /// cnn-small's second layer with a batch that splits unevenly, odd extents (a last tile half
    /// outside the image), output channels not a multiple of 16 (the kernel's last column
    /// vector alone), channel counts not a multiple of 8 (OpenBLAS's products), one image.
    static let winogradCases: [Case] = [
        Case(x: [19, 32, 14, 14], weight: [64, 32, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),
        Case(x: [5, 16, 11, 9], weight: [24, 16, 3, 3], bias: false, config: Conv2dConfig(padding: (1, 1))),
        Case(x: [3, 12, 7, 6], weight: [10, 12, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),
        Case(x: [1, 8, 3, 5], weight: [8, 8, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),
    ]

    @Test(arguments: winogradCases)
    func winogradMatchesIm2col(_ c: Case) {
        let geometry = ConvGeometry(input: c.x, weight: c.weight, config: c.config)
        #expect(WinogradConvolution.accepts(geometry))
        Self.expectMatchesIm2col(.winograd, c)
        let winograd = Self.run(.winograd, x: c.x, weight: c.weight, bias: c.bias, config: c.config)
        let alone = Self.run(.winograd, x: c.x, weight: c.weight, bias: c.bias, config: c.config, inputGradient: false)
        #expect(alone.dx == nil && alone.dw == winograd.dw, "the weight gradient without the input's")
    }

    /// An empty batch gives an empty output and zero weight and bias gradients, on every path.
    @Test(arguments: ConvolutionPath.allCases)
    func emptyBatch(_ path: ConvolutionPath) {
        let r = Self.run(path, x: [0, 8, 4, 4], weight: [8, 8, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1)))
        #expect(r.y.isEmpty && r.dx!.isEmpty)
        #expect(r.dw == [Float](repeating: 0, count: 8 * 8 * 9) && r.db! == [Float](repeating: 0, count: 8))
    }

    /// Other shapes on the Winograd path run on the preferred one (the same bits as asking for it).
    @Test func winogradLeavesOtherShapesToThePreferredPath() {
        for c in [Self.cases[0], Self.cases[2], Self.cases[3], Self.cases[4]] {
            #expect(!WinogradConvolution.accepts(ConvGeometry(input: c.x, weight: c.weight, config: c.config)), "\(c)")
            let a = Self.run(.winograd, x: c.x, weight: c.weight, bias: c.bias, config: c.config)
            let b = Self.run(.preferred, x: c.x, weight: c.weight, bias: c.bias, config: c.config)
            #expect(a.y == b.y && a.dx! == b.dx! && a.dw == b.dw, "\(c)")
        }
    }

    @Test func descriptionNamesThePath() {
        let text = ConvolutionPath.description
        #expect(text.contains(ConvolutionPath.preferred == .oneDNN ? "oneDNN" : "im2col"))
    }
}

// Max pooling with a fused ReLU (what `Sequential` runs for ReLU then MaxPool2d) against the two
// ops one after the other: same values, same gradients, bit for bit.
@Suite struct FusedPoolingTests {
    @Test(arguments: [Pool2dConfig(kernel: (2, 2)), Pool2dConfig(kernel: (3, 3), stride: (2, 2), padding: (1, 1))])
    func maxPoolReLUEqualsMaxPoolThenReLU(_ config: Pool2dConfig) {
        let a = Tensor.testNormal([6, 5, 8, 8], seed: 401, requiresGrad: true)
        let b = Tensor(shape: a.shape, scalars: a.scalars, requiresGrad: true)
        let fused = a.maxPool2dReLU(config)
        let separate = b.maxPool2d(config).relu()
        #expect(fused.scalars == separate.scalars)
        let upstream = Tensor.testNormal(fused.shape, seed: 402, requiresGrad: false)
        fused.backward(upstream)
        separate.backward(upstream)
        #expect(a.grad!.scalars == b.grad!.scalars)
        #expect(fused.scalars.contains(0) && fused.scalars.contains { $0 > 0 }, "the test should cover both sides of ReLU")
    }
}

// conv → ReLU → 2×2 max-pool with oneDNN's output left blocked (`conv2dBlockedReLUMaxPool2d`)
// against `conv2d` on oneDNN then `maxPool2dReLU`: the same primitives and pooling rule, so the
// same bits, forward and every gradient.
@Suite struct BlockedConvolutionPoolTests {
    static func run(blocked: Bool, x xShape: [Int], weight wShape: [Int], bias: Bool, config: Conv2dConfig,
                    inputGradient: Bool = true) -> (y: [Float], dx: [Float]?, dw: [Float], db: [Float]?)? {
        let x = Tensor.testNormal(xShape, seed: 311, requiresGrad: inputGradient)
        let w = Tensor.testNormal(wShape, seed: 312, scale: 0.3, requiresGrad: true)
        let b = bias ? Tensor.testNormal([wShape[0]], seed: 313, requiresGrad: true) : nil
        let pool = Pool2dConfig(kernel: (2, 2))
        let plain = { conv2d(x, weight: w, bias: b, config: config, path: .oneDNN).maxPool2dReLU(pool) }
        guard let y = blocked ? conv2dBlockedReLUMaxPool2d(x, weight: w, bias: b, config: config, pool: pool) : plain() else { return nil }
        y.backward(Tensor.testNormal(y.shape, seed: 314, requiresGrad: false))
        return (y.scalars, x.grad?.scalars, w.grad!.scalars, b?.grad?.scalars)
    }

    static let cases: [ConvolutionPathTests.Case] = [
        .init(x: [128, 32, 14, 14], weight: [64, 32, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),  // cnn-small, layer 2
        .init(x: [19, 32, 14, 14], weight: [64, 32, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),  // batch not a multiple of 8
        .init(x: [5, 16, 11, 9], weight: [32, 16, 3, 3], bias: false, config: Conv2dConfig(padding: (1, 1))),  // odd extents: last row, column dropped
        .init(x: [3, 16, 12, 12], weight: [32, 16, 3, 3], bias: true, config: Conv2dConfig(stride: (2, 2), padding: (1, 1))),
    ]

    @Test(.enabled(if: ConvolutionPath.oneDNNAvailable, "oneDNN (libdnnl.so.2) is not installed: only the im2col path runs"),
          arguments: cases)
    func sameBitsAsThePlainRoute(_ c: ConvolutionPathTests.Case) throws {
        let blocked = try #require(Self.run(blocked: true, x: c.x, weight: c.weight, bias: c.bias, config: c.config),
                                   "oneDNN keeps no channel-blocked output for \(c)")
        let plain = try #require(Self.run(blocked: false, x: c.x, weight: c.weight, bias: c.bias, config: c.config))
        #expect(blocked.y == plain.y, "forward")
        #expect(blocked.dx! == plain.dx!, "input gradient")
        #expect(blocked.dw == plain.dw, "weight gradient")
        if c.bias { #expect(blocked.db! == plain.db!, "bias gradient") }
        #expect(blocked.y.contains(0) && blocked.y.contains { $0 > 0 }, "the case should cover both sides of ReLU")
    }

    /// A layer whose input is data asks for the weight gradient only.
    @Test(.enabled(if: ConvolutionPath.oneDNNAvailable, "oneDNN (libdnnl.so.2) is not installed: only the im2col path runs"))
    func weightGradientAlone() throws {
        let c = Self.cases[1]
        let blocked = try #require(Self.run(blocked: true, x: c.x, weight: c.weight, bias: true, config: c.config, inputGradient: false))
        let plain = try #require(Self.run(blocked: false, x: c.x, weight: c.weight, bias: true, config: c.config, inputGradient: false))
        #expect(blocked.dx == nil)
        #expect(blocked.dw == plain.dw && blocked.db! == plain.db!)
    }

    /// Other pools, and a CPU or library without the blocked layout, take the plain route.
    @Test func otherPoolsAreNotTaken() {
        let x = Tensor.testNormal([2, 8, 8, 8], seed: 315), w = Tensor.testNormal([16, 8, 3, 3], seed: 316)
        #expect(conv2dBlockedReLUMaxPool2d(x, weight: w, bias: nil, config: Conv2dConfig(padding: (1, 1)),
                                           pool: Pool2dConfig(kernel: (3, 3), stride: (2, 2))) == nil)
    }
}

// conv → ReLU → 2×2 max-pool through Winograd's output transform (`conv2dWinogradReLUMaxPool2d`)
// against `conv2d` on the Winograd path then `maxPool2dReLU`: the same bits, forward and every
// gradient, including odd extents (the last row and column of the convolution's output dropped
// by the pooling) and channels that go through OpenBLAS's products.
@Suite struct WinogradConvolutionPoolTests {
    static func run(pooled: Bool, _ c: ConvolutionPathTests.Case, inputGradient: Bool = true) -> (y: [Float], dx: [Float]?, dw: [Float], db: [Float]?)? {
        let x = Tensor.testNormal(c.x, seed: 321, requiresGrad: inputGradient)
        let w = Tensor.testNormal(c.weight, seed: 322, scale: 0.3, requiresGrad: true)
        let b = c.bias ? Tensor.testNormal([c.weight[0]], seed: 323, requiresGrad: true) : nil
        let pool = Pool2dConfig(kernel: (2, 2))
        let plain = { conv2d(x, weight: w, bias: b, config: c.config, path: .winograd).maxPool2dReLU(pool) }
        guard let y = pooled ? conv2dWinogradReLUMaxPool2d(x, weight: w, bias: b, config: c.config, pool: pool) : plain() else { return nil }
        y.backward(Tensor.testNormal(y.shape, seed: 324, requiresGrad: false))
        return (y.scalars, x.grad?.scalars, w.grad!.scalars, b?.grad?.scalars)
    }

    static let cases: [ConvolutionPathTests.Case] = [
        .init(x: [19, 32, 14, 14], weight: [64, 32, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),  // cnn-small, layer 2
        .init(x: [5, 16, 11, 9], weight: [24, 16, 3, 3], bias: false, config: Conv2dConfig(padding: (1, 1))),
        .init(x: [3, 12, 6, 7], weight: [10, 12, 3, 3], bias: true, config: Conv2dConfig(padding: (1, 1))),
    ]

    @Test(arguments: cases)
    func sameBitsAsThePlainRoute(_ c: ConvolutionPathTests.Case) throws {
        let pooled = try #require(Self.run(pooled: true, c), "the Winograd route does not take \(c)")
        let plain = try #require(Self.run(pooled: false, c))
        #expect(pooled.y == plain.y, "forward")
        #expect(pooled.dx! == plain.dx!, "input gradient")
        #expect(pooled.dw == plain.dw, "weight gradient")
        // The bias gradient adds the same values in another order (the pooled ones, not the full-size gradient's).
        if c.bias { assertClose(pooled.db!, plain.db!, atol: 1e-4, rtol: 1e-5, "bias gradient") }
        #expect(pooled.y.contains(0) && pooled.y.contains { $0 > 0 }, "the case should cover both sides of ReLU")
        let alone = try #require(Self.run(pooled: true, c, inputGradient: false))
        #expect(alone.dx == nil && alone.dw == plain.dw, "the weight gradient without the input's")
    }

    /// The pooling rule of the output transform against `maxPool2dReLU` on the same four
    /// outputs, NaNs included: a window of NaNs or of non-positive values gives 0 and no winner,
    /// a tie goes to the first in row-major order. The transformed products m are made so
    /// that the tile's outputs are exactly the four values (m₀₀ = a, m₀₃ = -b, m₃₀ = -c, m₃₃ = d
    /// give Aᵀ m A = [a b; c d]).
    @Test func nanAndTiesFollowMaxPoolReLU() {
        let windows: [[Float]] = [[.nan, 2, 1, 1], [.nan, .nan, .nan, .nan], [3, 3, 1, 1], [-1, -2, -3, -4], [0, 0, 0, 0],
                                  [1, 5, 5, 2], [1, 2, .nan, 7], [-0.5, .nan, 0.25, -1]]
        let channels = windows.count
        var m = [Float](repeating: 0, count: 16 * channels)
        for (c, v) in windows.enumerated() {
            m[0 * channels + c] = v[0]; m[3 * channels + c] = -v[1]; m[12 * channels + c] = -v[2]; m[15 * channels + c] = v[3]
        }
        var y = [Float](repeating: -7, count: channels), winners = [UInt8](repeating: 9, count: channels)
        var scratch = [Float](repeating: 0, count: dk_winograd_train_scratch(2, 2, channels))
        dk_winograd_train_output_pool(m, nil, 1, channels, 2, 2, &y, &winners, &scratch)
        let reference = Tensor(shape: [1, channels, 2, 2], scalars: Array(windows.joined())).maxPool2dReLU(Pool2dConfig(kernel: (2, 2)))
        #expect(y.map(\.bitPattern) == reference.scalars.map(\.bitPattern))
        #expect(y == [0, 0, 3, 0, 0, 5, 2, 0.25])
        let none = UInt8(DK_WINOGRAD_NO_WINNER)
        #expect(winners == [none, none, 0, none, none, 1, 1, 2])
    }
}

// The Winograd products (`dk_winograd_train_products`) at each instruction-set level the CPU has,
// on random shapes and both ways of reading A (rows, as V is read; columns, as the transformed
// gradient is read for dU): every level gives the same bits, and those match a double-precision
// reference to float rounding. k runs past 64 (the kernel's runs along k), m past a register
// tile's rows, n over every tile width.
@Suite struct WinogradProductTests {
    @Test(arguments: [8, 16, 24, 32, 48, 64, 80, 128])
    func levelsAgreeBitForBitAndWithTheReference(_ n: Int) throws {
        var g = SeededGenerator(seed: UInt64(n))
        let positions = 2, m = Int.random(in: 1...30, using: &g), k = Int.random(in: 1...140, using: &g)
        let accumulate = Bool.random(using: &g), transposed = n % 16 == 0
        let (ai, ak) = transposed ? (1, m) : (k, 1)
        let random = { (count: Int) in (0..<count).map { _ in Float.random(in: -1...1, using: &g) } }
        let a = random(positions * m * k), b = random(positions * k * n), start = random(positions * m * n)
        var results: [Int32: [Float]] = [:]
        for level: Int32 in [1, 2] {
            var c = start
            guard dk_winograd_train_products(level, positions, m, n, k, a, ai, ak, m * k, b, k * n, &c, m * n, accumulate ? 1 : 0) == 0
            else { continue }
            results[level] = c
        }
        guard dk_winograd_train_products_apply(n) == 1 else { return }
        let narrow = try #require(results[1], "m \(m) n \(n) k \(k)")
        if let wide = results[2] {
            let differing = zip(wide, narrow).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "AVX-512 and AVX2 differ on \(differing) of \(wide.count) values (m \(m) n \(n) k \(k))")
        }
        for q in 0..<positions {
            for i in 0..<m {
                for j in 0..<n {
                    var sum = accumulate ? Double(start[q * m * n + i * n + j]) : 0
                    for l in 0..<k { sum += Double(a[q * m * k + i * ai + l * ak]) * Double(b[q * k * n + l * n + j]) }
                    #expect(abs(Double(narrow[q * m * n + i * n + j]) - sum) <= 1e-5 * Double(k + 1))
                }
            }
        }
    }
}
