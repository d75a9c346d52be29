import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Kernels split large work across threads (softmax rows, pooling planes, convolution batches).
// These tests make inputs large enough to take the split path and compare with the same op run
// piece by piece (which stays on one thread) or with a naive Double computation.

@Suite struct ParallelConsistencyTests {
    /// With no more chunks than threads, chunk c runs on the same thread at every call (chunk 0 on
    /// the caller's); with more, every chunk still runs exactly once.
    @Test func pinnedChunksStayOnTheirThread() {
        let chunks = min(2, Parallel.workers)
        final class Record: @unchecked Sendable { var threads = [[pthread_t]](repeating: [], count: 2); let lock = NSLock() }
        let record = Record()
        for _ in 0..<50 {
            Parallel.forEachChunk(chunks, chunks: chunks) { c, _ in
                record.lock.lock(); record.threads[c].append(pthread_self()); record.lock.unlock()
            }
        }
        // A job that finds the pool busy (another test's) runs inline on the caller: allowed.
        let caller = pthread_self()
        #expect(record.threads[0].count == 50 && record.threads[0].allSatisfy { pthread_equal($0, caller) != 0 }, "chunk 0 runs on the caller")
        if chunks == 2 {
            let elsewhere = record.threads[1].filter { pthread_equal($0, caller) == 0 }
            #expect(record.threads[1].count == 50)
            #expect(elsewhere.allSatisfy { pthread_equal($0, elsewhere[0]) != 0 }, "chunk 1 moved between worker threads")
        }

        final class Counts: @unchecked Sendable { var runs = [Int](repeating: 0, count: 1000); let lock = NSLock() }
        let counts = Counts()
        Parallel.forEachChunk(1000, chunks: 64) { _, range in
            counts.lock.lock(); for i in range { counts.runs[i] += 1 }; counts.lock.unlock()
        }
        #expect(counts.runs.allSatisfy { $0 == 1 })
    }

    /// Shared runs cover every item exactly once, in runs of at most `group` items, each on a
    /// thread index below the number asked for (per-thread scratch relies on it).
    @Test func sharedRunsCoverEveryItemOnce() {
        final class Record: @unchecked Sendable { var runs = [Int](repeating: 0, count: 1003); var badRun = false; let lock = NSLock() }
        for (count, group, threads) in [(1003, 4, 2), (1003, 1, 8), (3, 4, 2), (0, 4, 2)] {
            let record = Record()
            Parallel.forEachShared(count, group: group, threads: threads) { t, range in
                record.lock.lock()
                for i in range { record.runs[i] += 1 }
                if range.count > group || range.isEmpty || t >= threads { record.badRun = true }
                record.lock.unlock()
            }
            #expect(record.runs.prefix(count).allSatisfy { $0 == 1 } && record.runs.dropFirst(count).allSatisfy { $0 == 0 },
                    "\(count) items in runs of \(group)")
            #expect(!record.badRun, "\(count) items in runs of \(group) on \(threads) threads")
        }
    }

    @Test func softmaxOfManyRowsMatchesNaive() {
        let x = Tensor.testNormal([1024, 10], seed: 200, scale: 3, requiresGrad: false)
        let rows = x.scalars
        var expectedSoft = [Float](), expectedLog = [Float]()
        for r in 0..<1024 {
            let row = rows[(r * 10)..<(r * 10 + 10)].map(Double.init)
            let m = row.max()!
            let lse = Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +)) + m
            expectedLog += row.map { Float($0 - lse) }
            expectedSoft += row.map { Float(Foundation.exp($0 - lse)) }
        }
        assertClose(x.softmax().scalars, expectedSoft, atol: 1e-6, rtol: 1e-5, "softmax")
        assertClose(x.logSoftmax().scalars, expectedLog, atol: 1e-5, rtol: 1e-5, "logSoftmax")
        // Along axis 0 as well (strided slices).
        let t = x.transposed().copy()
        assertClose(t.softmax(axis: 0).transposed().scalars, expectedSoft, atol: 1e-6, rtol: 1e-5, "softmax axis 0")
    }

    @Test(arguments: [Pool2dConfig(kernel: (2, 2)), Pool2dConfig(kernel: (3, 3), stride: (2, 2), padding: (1, 1))])
    func poolingOfManyPlanesMatchesPlaneByPlane(_ config: Pool2dConfig) {
        let (n, c, h, w) = (16, 16, 16, 16)
        let x = Tensor.testNormal([n, c, h, w], seed: 201, requiresGrad: true)
        for op in ["max", "avg"] {
            x.zeroGrad()
            let pool: (Tensor) -> Tensor = { op == "max" ? $0.maxPool2d(config) : $0.avgPool2d(config) }
            let y = pool(x)
            let upstream = Tensor.testNormal(y.shape, seed: 202, requiresGrad: false)
            y.backward(upstream)
            let planeOut = y.count / (n * c)
            var expectedY = [Float](), expectedGrad = [Float]()
            for plane in 0..<(n * c) {
                let xp = Tensor(shape: [1, 1, h, w], scalars: Array(x.scalars[(plane * h * w)..<((plane + 1) * h * w)]), requiresGrad: true)
                let yp = pool(xp)
                yp.backward(Tensor(shape: yp.shape, scalars: Array(upstream.scalars[(plane * planeOut)..<((plane + 1) * planeOut)])))
                expectedY += yp.scalars
                expectedGrad += xp.grad!.scalars
            }
            #expect(y.scalars == expectedY, "\(op)Pool2d forward")
            #expect(x.grad!.scalars == expectedGrad, "\(op)Pool2d backward")
        }
    }

    @Test(arguments: [Conv2dConfig(padding: (1, 1)), Conv2dConfig(stride: (2, 2), groups: 2)])
    func convolutionOfABatchMatchesImageByImage(_ config: Conv2dConfig) {
        let n = 5, c = 4, o = 6
        let x = Tensor.testNormal([n, c, 9, 8], seed: 203, requiresGrad: true)
        let weight = Tensor.testNormal([o, c / config.groups, 3, 3], seed: 204, scale: 0.3, requiresGrad: true)
        let bias = Tensor.testNormal([o], seed: 205, requiresGrad: true)
        let y = conv2d(x, weight: weight, bias: bias, config: config)
        let upstream = Tensor.testNormal(y.shape, seed: 206, requiresGrad: false)
        y.backward(upstream)

        var expectedY = [Float](), expectedDx = [Float]()
        var expectedDw = [Float](repeating: 0, count: weight.count), expectedDb = [Float](repeating: 0, count: o)
        let inSize = x.count / n, outSize = y.count / n
        for i in 0..<n {
            let xi = Tensor(shape: [1, c, 9, 8], scalars: Array(x.scalars[(i * inSize)..<((i + 1) * inSize)]), requiresGrad: true)
            let wi = Tensor(shape: weight.shape, scalars: weight.scalars, requiresGrad: true)
            let bi = Tensor(shape: bias.shape, scalars: bias.scalars, requiresGrad: true)
            let yi = conv2d(xi, weight: wi, bias: bi, config: config)
            yi.backward(Tensor(shape: yi.shape, scalars: Array(upstream.scalars[(i * outSize)..<((i + 1) * outSize)])))
            expectedY += yi.scalars
            expectedDx += xi.grad!.scalars
            for k in 0..<weight.count { expectedDw[k] += wi.grad!.scalars[k] }
            for k in 0..<o { expectedDb[k] += bi.grad!.scalars[k] }
        }
        assertClose(y.scalars, expectedY, atol: 1e-5, rtol: 1e-5, "conv2d forward")
        assertClose(x.grad!.scalars, expectedDx, atol: 1e-5, rtol: 1e-5, "conv2d input gradient")
        assertClose(weight.grad!.scalars, expectedDw, atol: 1e-4, rtol: 1e-5, "conv2d weight gradient")
        assertClose(bias.grad!.scalars, expectedDb, atol: 1e-4, rtol: 1e-5, "conv2d bias gradient")

        // Without recording (no unfolded images kept) the forward pass is the same.
        let plain = withNoGrad { conv2d(x, weight: weight, bias: bias, config: config) }
        assertClose(plain.scalars, y.scalars, atol: 1e-6, rtol: 1e-6, "conv2d under withNoGrad")
    }

    @Test func largeMatmulAndLinearMatchNaive() {
        // 96·80·160 multiply-adds exceed the split threshold for the batched and folded products.
        let a = Tensor.testNormal([2, 96, 160], seed: 207, requiresGrad: false)
        let b = Tensor.testNormal([160, 80], seed: 208, requiresGrad: false)
        let y = a.matmul(b)
        var expected = [Float](repeating: 0, count: 2 * 96 * 80)
        let pa = a.scalars, pb = b.scalars
        for r in 0..<(2 * 96) { for j in 0..<80 {
            var s = 0.0
            for k in 0..<160 { s += Double(pa[r * 160 + k]) * Double(pb[k * 80 + j]) }
            expected[r * 80 + j] = Float(s)
        } }
        assertClose(y.scalars, expected, atol: 1e-4, rtol: 1e-4, "matmul 3D·2D")
        let viaLinear = linear(a, weight: b.transposed().copy(), bias: nil)
        assertClose(viaLinear.scalars, expected, atol: 1e-4, rtol: 1e-4, "linear")
    }
}
