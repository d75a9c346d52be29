import CKernels
import DistillTensor
import Testing

/// `dk_int8_conv2d_direct` (Sources/CKernels/int8_conv.c), with and without its fused 2×2
/// max-pooling, against the patch-copy path it replaces in the int8 plan: `dk_int8_conv2d` on the
/// scalar level, then `dk_int8_pool2d`. The bytes must be identical (the int8 plan's outputs, and
/// the C-source export's equality with them, rest on it), for every instruction set this CPU has.
@Suite struct Int8ConvolutionTests {
    static let levels = (0...2).filter { $0 <= Int(dk_int8_level()) }

    /// One convolution's sizes (`pool`: a 2×2 max-pooling at stride 2 follows).
    struct Case: CustomStringConvertible {
        var channels, height, width, outs, kernelH, kernelW, stride: Int
        var strideW: Int? = nil
        var padding: Int
        var pool: Bool
        var description: String {
            "c \(channels) \(height)×\(width) → \(outs), kernel \(kernelH)×\(kernelW), stride \(stride)/\(strideW ?? stride), padding \(padding), pool \(pool)"
        }
    }

    /// LeNet-5's and cnn-tiny's layers, and shapes that leave partial vectors of pixels (widths
    /// off 16), of channels (odd counts, more than 16 and 64 outputs), odd convolution extents
    /// before a pooling, and strides along one axis only.
    static let fixed: [Case] = [
        Case(channels: 1, height: 28, width: 28, outs: 6, kernelH: 5, kernelW: 5, stride: 1, padding: 2, pool: true),
        Case(channels: 6, height: 14, width: 14, outs: 16, kernelH: 5, kernelW: 5, stride: 1, padding: 0, pool: true),
        Case(channels: 1, height: 28, width: 28, outs: 8, kernelH: 3, kernelW: 3, stride: 1, padding: 1, pool: true),
        Case(channels: 8, height: 14, width: 14, outs: 16, kernelH: 3, kernelW: 3, stride: 1, padding: 1, pool: true),
        Case(channels: 1, height: 9, width: 37, outs: 11, kernelH: 5, kernelW: 5, stride: 1, padding: 2, pool: false),
        Case(channels: 1, height: 7, width: 19, outs: 20, kernelH: 3, kernelW: 3, stride: 1, padding: 0, pool: true),
        Case(channels: 1, height: 8, width: 21, outs: 5, kernelH: 3, kernelW: 5, stride: 2, strideW: 1, padding: 1, pool: true),
        Case(channels: 1, height: 8, width: 21, outs: 5, kernelH: 3, kernelW: 3, stride: 1, strideW: 2, padding: 1, pool: false),
        Case(channels: 3, height: 11, width: 13, outs: 70, kernelH: 3, kernelW: 3, stride: 2, padding: 1, pool: false),
        Case(channels: 5, height: 12, width: 17, outs: 33, kernelH: 5, kernelW: 5, stride: 1, padding: 2, pool: true),
        Case(channels: 7, height: 9, width: 9, outs: 49, kernelH: 3, kernelW: 3, stride: 1, padding: 0, pool: true),
        Case(channels: 17, height: 6, width: 6, outs: 9, kernelH: 1, kernelW: 1, stride: 1, padding: 0, pool: false),
    ]

    /// Random sizes from a seed: 1-9 channels, 1-70 outputs, kernels 1-5, padding 0-2, strides 1-2.
    static func random(_ seed: UInt64) -> Case {
        var g = SeededGenerator(seed: seed)
        let channels = [1, 1, 1, 2, 3, 5, 6, 8, 9][g.nextInt(below: 9)], outs = [1, 3, 6, 8, 9, 16, 17, 33, 70][g.nextInt(below: 9)]
        let kernelH = [1, 2, 3, 5][g.nextInt(below: 4)], kernelW = g.nextInt(below: 2) == 0 ? kernelH : [1, 3, 5][g.nextInt(below: 3)]
        let stride = 1 + g.nextInt(below: 2), strideW = 1 + g.nextInt(below: 2), padding = g.nextInt(below: 3)
        return Case(channels: channels, height: kernelH + 2 + g.nextInt(below: 15), width: kernelW + 2 + g.nextInt(below: 35), outs: outs,
                    kernelH: kernelH, kernelW: kernelW, stride: stride, strideW: strideW, padding: padding, pool: g.nextInt(below: 2) == 0)
    }

    /// Runs `c` through the patch-copy path (scalar) and through `dk_int8_conv2d_direct` at `level`;
    /// nil when the CPU lacks the level. `direct` holds 64 sentinel bytes past the output.
    static func run(_ c: Case, level: Int, seed: UInt64) -> (expected: [UInt8], direct: [UInt8])? {
        var g = SeededGenerator(seed: seed)
        let strideW = c.strideW ?? c.stride
        let zeroIn = Int32(g.nextInt(below: 256)), zeroOut = Int32(g.nextInt(below: 256)), relu: Int32 = g.nextInt(below: 2) == 0 ? 1 : 0
        let (ph, pw) = (c.height + 2 * c.padding, c.width + 2 * c.padding), rowStride = pw * c.channels
        // The border holds the zero point; 16 readable bytes past the last row (dk_int8.h).
        var image = [UInt8](repeating: UInt8(zeroIn), count: ph * rowStride + 16)
        for y in 0..<c.height { for x in 0..<c.width { for ch in 0..<c.channels {
            image[(y + c.padding) * rowStride + (x + c.padding) * c.channels + ch] = UInt8(g.nextInt(below: 256))
        } } }
        let k = c.kernelH * c.kernelW * c.channels
        // Extremes included (255 × ±127), [out][kh][kw][c].
        let weight = (0..<(c.outs * k)).map { i in i % 11 == 0 ? (i % 2 == 0 ? 127 : -127) : Int8(g.nextInt(below: 255) - 127) }
        let (p, q) = ((ph - c.kernelH) / c.stride + 1, (pw - c.kernelW) / strideW + 1)
        let padded = (c.outs + 15) / 16 * 16
        // Scales that spread the accumulators over the byte range and past it (the clamps).
        let scale = (0..<padded).map { _ in Float(0.5 + g.nextUnitDouble()) * 0.03 / Float(k).squareRoot() }
        let bias = (0..<padded).map { _ in Float(g.nextGaussian() * 30) }
        var shape = dk_int8_conv_shape(channels: c.channels, in_row_stride: rowStride, kernel_h: c.kernelH, kernel_w: c.kernelW,
                                       stride_h: c.stride, stride_w: strideW, out_channels: c.outs, out_h: p, out_w: q, out_row_stride: q * c.outs)
        // Today's path: patches × weights, then the byte pooling.
        var packed = [Int8](repeating: 0, count: dk_int8_packed_size(k, c.outs)), sums = [Int32](repeating: 0, count: padded)
        dk_int8_pack_weights(weight, c.outs, k, &packed, &sums)
        let offset = sums.map { -zeroIn * $0 }
        var scratch = [UInt8](repeating: 0, count: dk_int8_conv_scratch_size(&shape))
        var convolved = [UInt8](repeating: 0, count: p * q * c.outs)
        var direct: [UInt8] = []
        var status: Int32 = 0
        offset.withUnsafeBufferPointer { o in scale.withUnsafeBufferPointer { s in bias.withUnsafeBufferPointer { b in
            var e = dk_int8_epilogue(offset: o.baseAddress, scale: s.baseAddress, bias: b.baseAddress, zero_point: zeroOut, relu: relu)
            _ = dk_int8_conv2d_level(0, &shape, image, packed, &e, &convolved, &scratch)
            // The direct kernel, on its own packing (whose column sums must be the same).
            var directShape = shape
            if c.pool { directShape.out_row_stride = q / 2 * c.outs }
            var directPacked = [Int8](repeating: 0, count: dk_int8_conv_packed_size(&directShape)), directSums = [Int32](repeating: 0, count: padded)
            guard dk_int8_conv_pack_weights(&directShape, weight, &directPacked, &directSums) == 0, directSums == sums else { status = -2; return }
            var directScratch = [UInt8](repeating: 0, count: dk_int8_conv_direct_scratch_size(&directShape))
            direct = [UInt8](repeating: 0xA5, count: (c.pool ? (p / 2) * (q / 2) : p * q) * c.outs + 64)
            status = dk_int8_conv2d_direct_level(Int32(level), &directShape, c.pool ? 1 : 0, image, directPacked, &e, &direct, &directScratch)
        } } }
        guard status == 0 else { return status == -2 ? ([], [1]) : nil }
        guard c.pool else { return (convolved, direct) }
        var pooled = [UInt8](repeating: 0, count: (p / 2) * (q / 2) * c.outs)
        dk_int8_pool2d(c.outs, p, q, q * c.outs, 2, 2, 2, 2, 0, 0, p / 2, q / 2, q / 2 * c.outs, zeroOut, convolved, &pooled, 0)
        return (pooled, direct)
    }

    static func check(_ c: Case, level: Int, seed: UInt64, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (expected, direct) = try #require(run(c, level: level, seed: seed), sourceLocation: sourceLocation)
        let count = expected.count
        #expect(count > 0 && direct.count == count + 64, "level \(level), \(c): packing or sizes wrong", sourceLocation: sourceLocation)
        guard direct.count == count + 64 else { return }
        let differing = zip(direct, expected).filter { $0 != $1 }.count
        #expect(differing == 0, "level \(level), \(c): \(differing) of \(count) bytes differ", sourceLocation: sourceLocation)
        #expect(direct[count...].allSatisfy { $0 == 0xA5 }, "level \(level), \(c): wrote past its output", sourceLocation: sourceLocation)
    }

    @Test(arguments: levels)
    func studentLayersAndEdgeShapesMatchThePatchPath(level: Int) throws {
        for (j, c) in Self.fixed.enumerated() { try Self.check(c, level: level, seed: UInt64(100 + j)) }
    }

    @Test(arguments: levels)
    func randomShapesMatchThePatchPath(level: Int) throws {
        for seed in UInt64(1)...150 { try Self.check(Self.random(seed), level: level, seed: seed &* 7919) }
    }

    /// The random shapes cover what the kernels branch on (else the test above proves less).
    @Test func randomShapesCoverTheBranches() {
        let cases = (UInt64(1)...150).map(Self.random)
        #expect(cases.contains { $0.channels == 1 && $0.strideW == 1 && $0.pool && $0.outs <= 16 })  // pixels in lanes, pooled
        #expect(cases.contains { $0.channels == 1 && $0.strideW == 1 && !$0.pool && $0.outs <= 16 })
        #expect(cases.contains { $0.channels > 1 && $0.pool && $0.outs > 16 })  // channels in lanes, several vectors, pooled
        #expect(cases.contains { $0.channels > 1 && !$0.pool && $0.outs > 64 })
        #expect(cases.contains { $0.kernelH == 5 } && cases.contains { $0.kernelH == 3 } && cases.contains { $0.padding == 2 })
        #expect(cases.contains { $0.width % 16 != 0 && $0.width > 16 } && cases.contains { $0.stride == 2 })
    }

    @Test func levelsTheCPULacksAreRefused() {
        let c = Self.fixed[0]
        #expect(Self.run(c, level: -1, seed: 1) == nil)
        #expect(Self.run(c, level: 3, seed: 1) == nil)
    }
}
