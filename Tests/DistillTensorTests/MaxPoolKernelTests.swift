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
}
