import CKernels
import DistillTensor
import Testing

// The 2×2 max-pooling kernel for training (Sources/CKernels/max_pool_train.c): every level
// against the rule written out window by window, bit for bit, on planes full of ties, zeros and
// NaNs, with widths that leave vector tails and odd rows and columns.
@Suite struct MaxPoolKernelTests {
    /// (planes, height, width): 7 windows a row (cnn-small's second layer: one masked run), 14
    /// (more than half a vector), 33 (two vectors and one window), odd extents (the last row and
    /// column unpooled), exactly 16.
    static let shapes: [(Int, Int, Int)] = [(4, 14, 14), (3, 28, 28), (2, 14, 66), (5, 9, 35), (1, 2, 32)]

    /// Levels to test: portable always, AVX2 and AVX-512 where this CPU runs them.
    static var levels: [Int32] {
        var x: [Float] = [1, 2, 3, 4], y: [Float] = [0]
        var i: [Int32] = [0]
        return [0] + [1, 2].filter { dk_max_pool2x2_forward($0, &x, &y, &i, 1, 2, 2, 0) == 0 }
    }

    /// Values from {-2, -1, 0, 1, 2} (ties and ReLU zeros everywhere) with every 37th a NaN.
    static func plane(_ count: Int, seed: UInt64) -> [Float] {
        var g = SeededGenerator(seed: seed)
        return (0..<count).map { k in k % 37 == 5 ? .nan : Float(g.nextInt(below: 5) - 2) }
    }

    /// The documented rule, one window at a time.
    static func reference(_ x: [Float], planes: Int, h: Int, w: Int, relu: Bool) -> (y: [Float], argmax: [Int32]) {
        let p = h / 2, q = w / 2
        var y = [Float](), argmax = [Int32]()
        for plane in 0..<planes { for oy in 0..<p { for ox in 0..<q {
            let top = 2 * oy * w + 2 * ox, at = { (k: Int) in x[plane * h * w + k] }
            let upper = at(top + 1) > at(top) ? top + 1 : top
            let lower = at(top + w + 1) > at(top + w) ? top + w + 1 : top + w
            let winner = at(lower) > at(upper) ? lower : upper
            let active = !relu || at(winner) > 0
            y.append(active ? at(winner) : 0)
            argmax.append(active ? Int32(winner) : -1)
        } } }
        return (y, argmax)
    }

    @Test func forwardFollowsTheRuleAtEveryLevel() {
        var sawZeroed = false, sawNaNWin = false
        for (planes, h, w) in Self.shapes {
            let x = Self.plane(planes * h * w, seed: UInt64(h * 100 + w))
            for relu in [false, true] {
                let expected = Self.reference(x, planes: planes, h: h, w: w, relu: relu)
                for level in Self.levels {
                    var y = [Float](repeating: 7, count: expected.y.count), argmax = [Int32](repeating: 7, count: expected.y.count)
                    #expect(dk_max_pool2x2_forward(level, x, &y, &argmax, planes, h, w, relu ? 1 : 0) == 0)
                    #expect(y.map(\.bitPattern) == expected.y.map(\.bitPattern), "level \(level), \(planes)×\(h)×\(w), relu \(relu)")
                    #expect(argmax == expected.argmax, "level \(level), \(planes)×\(h)×\(w), relu \(relu)")
                }
                sawZeroed = sawZeroed || expected.argmax.contains(-1)
                sawNaNWin = sawNaNWin || expected.y.contains { $0.isNaN }
            }
        }
        #expect(sawZeroed && sawNaNWin, "the planes should have windows ReLU zeroes and windows a NaN wins")
    }

    @Test func backwardPutsEachGradientAtItsWinnerAtEveryLevel() {
        for (planes, h, w) in Self.shapes where h % 2 == 0 && w % 2 == 0 {
            let x = Self.plane(planes * h * w, seed: UInt64(h * 100 + w))
            let argmax = Self.reference(x, planes: planes, h: h, w: w, relu: true).argmax
            let grad = (0..<argmax.count).map { Float($0 % 11) - 4.5 }
            var expected = [Float](repeating: 0, count: planes * h * w)
            let pq = (h / 2) * (w / 2)
            for (k, won) in argmax.enumerated() where won >= 0 { expected[(k / pq) * h * w + Int(won)] = grad[k] }
            for level in Self.levels {
                var dx = [Float](repeating: 7, count: expected.count)
                #expect(dk_max_pool2x2_backward(level, grad, argmax, &dx, planes, h, w) == 0)
                #expect(dx == expected, "level \(level), \(planes)×\(h)×\(w)")
            }
        }
        var dx = [Float](repeating: 0, count: 9)
        #expect(dk_max_pool2x2_backward(0, [1], [0], &dx, 1, 3, 3) == -1, "odd extents are not tiled: refused")
    }

    /// `plain` [images, channels, h, w] rearranged as [images][channels/block][h][w][block].
    static func blocked(_ plain: [Float], images: Int, channels: Int, h: Int, w: Int, block: Int) -> [Float] {
        var out = [Float](repeating: 0, count: plain.count)
        for img in 0..<images { for c in 0..<channels { for k in 0..<(h * w) {
            out[((img * (channels / block) + c / block) * h * w + k) * block + c % block] = plain[(img * channels + c) * h * w + k]
        } } }
        return out
    }

    /// The blocked kernels (oneDNN's nChw16c and nChw8c, `dk_dnnl_conv_relu_maxpool_forward`)
    /// give the plain kernel's values and winners, and the plain backward pass's gradient, blocked.
    @Test(arguments: [8, 16])
    func blockedLayoutMatchesThePlainKernel(block: Int) {
        for (images, h, w) in [(3, 14, 14), (2, 9, 11), (1, 2, 2)] {
            let channels = 2 * block
            let x = Self.plane(images * channels * h * w, seed: UInt64(block * 1000 + h))
            let count = images * channels * (h / 2) * (w / 2)
            for relu in [false, true] {
                var y = [Float](repeating: 7, count: count), argmax = [Int32](repeating: 7, count: count)
                var by = y, bargmax = argmax
                #expect(dk_max_pool2x2_forward(0, x, &y, &argmax, images * channels, h, w, relu ? 1 : 0) == 0)
                let xb = Self.blocked(x, images: images, channels: channels, h: h, w: w, block: block)
                #expect(dk_max_pool2x2_blocked_forward(xb, images, channels, h, w, block, relu ? 1 : 0, &by, &bargmax) == 0)
                #expect(by.map(\.bitPattern) == y.map(\.bitPattern), "block \(block), \(images)×\(channels)×\(h)×\(w), relu \(relu)")
                #expect(bargmax == argmax, "block \(block), \(images)×\(channels)×\(h)×\(w), relu \(relu)")
                // Backward: the plain adjoint (odd extents: the rows and columns no window covers stay 0).
                let grad = (0..<count).map { Float($0 % 13) - 6.5 }
                var dx = [Float](repeating: 0, count: x.count)
                for (k, won) in argmax.enumerated() where won >= 0 {
                    let plane = k / ((h / 2) * (w / 2))
                    dx[plane * h * w + Int(won)] = grad[k]
                }
                var dxb = [Float](repeating: 9, count: x.count)
                #expect(dk_max_pool2x2_blocked_backward(grad, argmax, images, channels, h, w, block, &dxb) == 0)
                #expect(dxb == Self.blocked(dx, images: images, channels: channels, h: h, w: w, block: block), "block \(block), \(h)×\(w)")
            }
        }
        var x: [Float] = [0, 0, 0, 0], y: [Float] = [0], dx: [Float] = [0, 0, 0, 0]
        var argmax: [Int32] = [0]
        #expect(dk_max_pool2x2_blocked_forward(&x, 1, 1, 2, 2, 4, 1, &y, &argmax) == -1, "block 4 is refused")
        #expect(dk_max_pool2x2_blocked_backward(&y, &argmax, 1, 12, 2, 2, 8, &dx) == -1, "channels not a multiple of the block are refused")
    }
}

// Byte images decoded for a batch (`dk_gather_unit_bytes`, Sources/CKernels/kernels.c): every
// level gives Float(byte) / 255 exactly, for all 256 byte values, rows gathered out of order and
// repeated, with row lengths that leave vector tails.
@Suite struct GatherUnitBytesTests {
    @Test(arguments: [1, 17, 784, 785])
    func everyLevelDecodesEveryByteExactly(_ rowSize: Int) {
        let rowCount = Swift.max(2, 2 * 256 / rowSize + 1)
        let source: [UInt8] = (0..<(rowCount * rowSize)).map { (i: Int) -> UInt8 in UInt8((i * 7 + i / 256) % 256) }
        let rows: [Int64] = Array((0..<rowCount).reversed().map(Int64.init)) + [1, 1, 0]
        var expected: [Float] = []
        for r in rows { expected += source[Int(r) * rowSize..<(Int(r) + 1) * rowSize].map { (b: UInt8) -> Float in Float(b) / 255 } }
        #expect(Set(source).count == 256 || rowCount * rowSize < 256)
        var ran: [Int32] = []
        for level: Int32 in [0, 1, 2] {
            var destination = [Float](repeating: .nan, count: rows.count * rowSize)
            guard dk_gather_unit_bytes_level(level, source, rowSize, rows, rows.count, &destination) == 0 else { continue }
            ran.append(level)
            #expect(destination.map { (x: Float) in x.bitPattern } == expected.map { (x: Float) in x.bitPattern }, "level \(level), rows of \(rowSize)")
        }
        #expect(ran.contains(0))
    }
}
