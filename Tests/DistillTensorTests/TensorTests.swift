import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Creation, seeded randomness, finiteness checks, broadcasting errors and the BLAS shim.

@Suite struct CreationTests {
    @Test func filledTensors() {
        #expect(Tensor.zeros([2, 3]).scalars == [Float](repeating: 0, count: 6))
        #expect(Tensor.ones([4]).scalars == [1, 1, 1, 1])
        let f = Tensor.full([2, 2], 2.5, requiresGrad: true)
        #expect(f.shape == [2, 2] && f.scalars == [2.5, 2.5, 2.5, 2.5] && f.requiresGrad)
        #expect(Tensor.zeros([0, 3]).count == 0)
        #expect(Tensor.zeros([]).count == 1, "rank 0 holds one element")
    }

    @Test func arange() {
        #expect(Tensor.arange(0, 5).scalars == [0, 1, 2, 3, 4])
        #expect(Tensor.arange(1, 3, step: 0.5).scalars == [1, 1.5, 2, 2.5])
        #expect(Tensor.arange(3, 0, step: -1).scalars == [3, 2, 1])
        #expect(Tensor.arange(0, 1, step: 0.3).count == 4)
        #expect(Tensor.arange(2, 2).count == 0)
        #expect(Tensor.arange(5, 0).count == 0, "a range pointing the wrong way is empty")
    }

    @Test func fromArrays() {
        let t = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        #expect(t.shape == [2, 3] && t.rank == 2 && t.count == 6 && !t.requiresGrad)
        #expect(t.scalars == [1, 2, 3, 4, 5, 6])
        let v = Tensor([7, 8], requiresGrad: true)
        #expect(v.shape == [2] && v.requiresGrad)
        let s = Tensor(scalar: 3.5)
        #expect(s.shape == [] && s.rank == 0 && s.item() == 3.5)
        #expect(t.description.hasPrefix("Tensor(shape: [2, 3]"))
    }

    @Test func copiesAndInPlaceHelpers() {
        let a = Tensor([1, 2, 3])
        let c = a.copy()
        c.data[0] = 9
        #expect(a.scalars == [1, 2, 3], "copy owns its storage")
        let r = a.reshaped([3, 1])
        r.data[1] = 5
        #expect(a.scalars == [1, 5, 3], "reshape shares storage")
        a.assign(Tensor([4, 4, 4]))
        a.addScaled(Tensor([1, 2, 3]), 2)
        #expect(a.scalars == [6, 8, 10])
    }
}

@Suite struct RandomTests {
    // Expected values from a Python transcription of SplitMix64 → xoshiro256** and Box–Muller
    // (and of Swift's `next(upperBound:)` for the permutation), so drift in either the generator
    // or the standard library is caught on any machine.
    @Test func seed42GivesKnownNumbers() {
        var g = SeededGenerator(seed: 42)
        #expect([g.next(), g.next(), g.next()] == [0x1578_0b2e_0c2e_c716, 0x6104_d986_6d11_3a7e, 0xae17_5332_39e4_99a1])

        var n = SeededGenerator(seed: 42)
        #expect(Tensor.randomNormal([4], using: &n).scalars == [-1.61322379, 1.53448737, 0.781692028, -0.400193483])

        var u = SeededGenerator(seed: 42)
        #expect(Tensor.randomUniform([4], using: &u).scalars == [0.0838629678, 0.378980249, 0.680043399, 0.924692929])

        var p = SeededGenerator(seed: 42)
        #expect(p.permutation(10) == [9, 1, 4, 2, 8, 7, 6, 5, 3, 0])
    }

    @Test func sameSeedSameNumbers() {
        var a = SeededGenerator(seed: 7), b = SeededGenerator(seed: 7), c = SeededGenerator(seed: 8)
        let x = Tensor.randomNormal([50], using: &a), y = Tensor.randomNormal([50], using: &b)
        let z = Tensor.randomNormal([50], using: &c)
        #expect(x.scalars == y.scalars)
        #expect(x.scalars != z.scalars)
    }

    @Test func normalMomentsRoughlyRight() {
        var g = SeededGenerator(seed: 123)
        let x = Tensor.randomNormal([20_000], mean: 2, std: 3, using: &g).scalars.map(Double.init)
        let mean = x.reduce(0, +) / Double(x.count)
        let std = (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count - 1)).squareRoot()
        #expect(Swift.abs(mean - 2) < 0.1, "mean \(mean)")
        #expect(Swift.abs(std - 3) < 0.1, "std \(std)")
    }

    @Test func uniformRangeAndMoments() {
        var g = SeededGenerator(seed: 321)
        let x = Tensor.randomUniform([20_000], low: -1, high: 3, using: &g).scalars
        #expect(x.allSatisfy { $0 >= -1 && $0 < 3 })
        let mean = x.map(Double.init).reduce(0, +) / Double(x.count)
        #expect(Swift.abs(mean - 1) < 0.05, "mean \(mean)")
        var h = SeededGenerator(seed: 5)
        let ints = (0..<1000).map { _ in h.nextInt(below: 7) }
        #expect(Set(ints) == Set(0..<7))
        #expect(Set(h.permutation(20)) == Set(0..<20))
    }
}

@Suite struct FinitenessTests {
    @Test func detectsNaNAndInfinity() {
        #expect(Tensor([1, 2, 3]).isFinite)
        #expect(Tensor([1, 2, 3]).firstNonFiniteIndex == nil)
        let nan = Tensor([1, .nan, .infinity])
        #expect(!nan.isFinite && nan.firstNonFiniteIndex == 1)
        let inf = Tensor([0, 0, 0, -.infinity])
        #expect(!inf.isFinite && inf.firstNonFiniteIndex == 3)
        #expect(Tensor.zeros([0]).isFinite)
        // log(0) = -inf, 0/0 = NaN propagate through ops.
        #expect(Tensor([1, 0]).log().firstNonFiniteIndex == 1)
        #expect((Tensor([0, 1]) / Tensor([0, 1])).firstNonFiniteIndex == 0)
    }

    /// Long tensors go through the block screen: the first bad element is found in any block and
    /// at any lane, including the tail after the last whole block, and huge finite values pass.
    @Test func findsTheFirstBadElementOfALongTensor() {
        for bad in [0, 63, 64, 130, 999, 1_000] {
            for value in [Float.nan, .infinity, -.infinity] {
                var scalars = [Float](repeating: 3e38, count: 1_001)
                scalars[bad] = value
                if bad + 5 < scalars.count { scalars[bad + 5] = .nan }  // a later one must not win
                #expect(Tensor(scalars).firstNonFiniteIndex == bad, "\(value) at \(bad)")
            }
        }
        #expect(Tensor([Float](repeating: -3e38, count: 1_000)).isFinite)
    }
}

    /// The gradient screen: a value whose square overflows (|x| > ~1.8e19) is flagged as Adam
    /// would see it, in any block or the tail, while 1e19 and non-finite values behave as expected.
    @Test func findsTheFirstValueWhoseSquareOverflows() {
        #expect(Tensor([Float](repeating: 1e19, count: 200)).firstIndexWithNonFiniteSquare == nil)
        for bad in [0, 64, 199] {
            for value in [Float(2e19), -1e30, .nan, .infinity] {
                var scalars = [Float](repeating: 1, count: 200)
                scalars[bad] = value
                #expect(Tensor(scalars).firstIndexWithNonFiniteSquare == bad, "\(value) at \(bad)")
            }
        }
        #expect(Tensor([1, 2e19]).firstNonFiniteIndex == nil)
    }

@Suite struct BroadcastTests {
    @Test func compatibleShapes() throws {
        #expect(try broadcastShape([2, 3], [3], op: "add") == [2, 3])
        #expect(try broadcastShape([2, 1, 4], [3, 1], op: "mul") == [2, 3, 4])
        #expect(try broadcastShape([], [2, 2], op: "add") == [2, 2])
        #expect(try broadcastShape([1], [0], op: "add") == [0])
        let y = Tensor(shape: [2, 1, 4], scalars: (0..<8).map(Float.init)) * Tensor(shape: [3, 1], scalars: [1, 10, 100])
        #expect(y.shape == [2, 3, 4])
        #expect(Array(y.scalars[4..<8]) == [0, 10, 20, 30])
        #expect(Array(y.scalars[20..<24]) == [400, 500, 600, 700])
    }

    @Test(arguments: [([2, 3], [4], "add"), ([2, 3], [3, 2], "mul"), ([5, 1, 2], [4, 3], "div")])
    func incompatibleShapesNameBothShapesAndTheOp(a: [Int], b: [Int], op: String) {
        do {
            _ = try broadcastShape(a, b, op: op)
            Issue.record("\(a) and \(b) should not broadcast")
        } catch let error as TensorError {
            #expect(error.message.contains("\(a)"), "\(error)")
            #expect(error.message.contains("\(b)"), "\(error)")
            #expect(error.message.hasPrefix(op), "\(error)")
        } catch {
            Issue.record("expected TensorError, got \(error)")
        }
    }
}

@Suite struct BLASTests {
    /// C = alpha·op(A)·op(B) + beta·C in Double, for row-major storage with leading dimensions.
    func naive(_ ta: Bool, _ tb: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int,
               b: [Float], ldb: Int, beta: Float, c: [Float], ldc: Int) -> [Float] {
        var out = c
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = ta ? a[p * lda + i] : a[i * lda + p]
                let bv = tb ? b[j * ldb + p] : b[p * ldb + j]
                s += Double(av) * Double(bv)
            }
            out[i * ldc + j] = Float(Double(alpha) * s + Double(beta) * Double(c[i * ldc + j]))
        } }
        return out
    }

    func check(ta: Bool, tb: Bool, m: Int, n: Int, k: Int, pad: Int = 0, alpha: Float = 1, beta: Float = 0, seed: UInt64) {
        // Leading dimensions `pad` wider than needed, so sub-matrix strides are exercised.
        let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
        let a = Tensor.testNormal([(ta ? k : m) * lda], seed: seed, requiresGrad: false).scalars
        let b = Tensor.testNormal([(tb ? n : k) * ldb], seed: seed + 1, requiresGrad: false).scalars
        let c0 = Tensor.testNormal([m * ldc], seed: seed + 2, requiresGrad: false).scalars
        var c = c0
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
            BLAS.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: alpha, a: pa.baseAddress!, lda: lda,
                       b: pb.baseAddress!, ldb: ldb, beta: beta, c: pc.baseAddress!, ldc: ldc)
        } } }
        let expected = naive(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c0, ldc: ldc)
        assertClose(c, expected, atol: 1e-3, rtol: 1e-4, "sgemm \(ta ? "Aᵀ" : "A")·\(tb ? "Bᵀ" : "B") \(m)x\(n)x\(k)")
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func smallProductsAllTransposes(ta: Bool, tb: Bool) {
        check(ta: ta, tb: tb, m: 5, n: 7, k: 3, seed: 1)
        check(ta: ta, tb: tb, m: 4, n: 6, k: 9, pad: 2, alpha: 0.5, beta: 2, seed: 4)
    }

    /// 300x200x50 splits by rows, 64x3000x40 by columns (when more than one worker is configured).
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func largeProductsSplitAcrossThreads(ta: Bool, tb: Bool) {
        check(ta: ta, tb: tb, m: 300, n: 200, k: 50, seed: 10)
        check(ta: ta, tb: tb, m: 64, n: 3000, k: 40, pad: 3, beta: 1, seed: 13)
    }

    @Test func emptyInnerDimensionScalesByBeta() {
        var c: [Float] = [1, 2, 3, 4]
        let a: [Float] = [0], b: [Float] = [0]
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
            BLAS.sgemm(m: 2, n: 2, k: 0, a: pa.baseAddress!, lda: 1, b: pb.baseAddress!, ldb: 2, beta: 0.5, c: pc.baseAddress!, ldc: 2)
        } } }
        #expect(c == [0.5, 1, 1.5, 2])
    }

    @Test func kernelIsDescribed() throws {
        try BLAS.ensureLoaded()
        #expect(!BLAS.kernelDescription.isEmpty)
        #expect(!BLAS.coreName.isEmpty)
        #expect(BLAS.threads >= 1)
    }

    @Test func parallelChunksCoverTheRangeOnce() {
        final class Box: @unchecked Sendable { var hits = [Int](repeating: 0, count: 103); let lock = NSLock() }
        let box = Box()
        Parallel.forEachChunk(103, chunks: 4) { _, range in
            box.lock.lock(); for i in range { box.hits[i] += 1 }; box.lock.unlock()
        }
        #expect(box.hits.allSatisfy { $0 == 1 })
    }
}
