import CKernels
import DistillNN
import DistillTensor
import DistillTestSupport
import Testing

/// The planned training passes against the autograd graph: same logits, same gradients, with the
/// first layer split across the cores (batches large enough) and on one core (small ones).
@Suite struct TrainingPlanTests {
    func input(_ rows: Int, _ shape: [Int], seed: UInt64) -> Tensor {
        var g = SeededGenerator(seed: seed)
        return Tensor.randomNormal([rows] + shape, using: &g)
    }

    /// A loss of the logits alone with a gradient in every entry: Σ (logits ⊙ weights).
    func loss(_ logits: Tensor, seed: UInt64) -> Tensor {
        var g = SeededGenerator(seed: seed)
        return (logits * Tensor.randomNormal(logits.shape, using: &g)).sum()
    }

    func gradients(_ model: Module) -> [[Float]] { model.trainableParameters().map { $0.grad?.scalars ?? [] } }

    /// The first layer's two implementations: the fixed-order kernels (where the CPU runs them)
    /// and a BLAS product per block.
    static let firstLayerPaths = dk_linear_packed_level() >= 1 ? [true, false] : [false]

    @Test(arguments: [("mlp:784-64-10", 128), ("mlp:784-64-10", 3), ("mlp:784-10", 300), ("mlp:64-128-32-10", 300),
                      ("mlp:64-128-32-10", 5), ("mlp:37-19-7", 40), ("mlp:37-100-7", 200)], firstLayerPaths)
    func gradientsMatchTheGraph(_ model: (spec: String, rows: Int), kernel: Bool) throws {
        let (spec, rows) = model
        let model = try ModelZoo.build(spec, seed: 3)
        let inputs = Int(spec.dropFirst(4).split(separator: "-")[0])!
        let shape = inputs == 784 ? [1, 28, 28] : [inputs]
        let x = input(rows, shape, seed: UInt64(rows))

        let expectedLogits = model(x)
        loss(expectedLogits, seed: 9).backward()
        let expected = gradients(model)

        model.trainableParameters().forEach { $0.grad = nil }
        let plan = try #require(TrainingPlan(model, exampleShape: shape, denseKernel: kernel))
        let logits = plan.forward(x)
        assertClose(logits.scalars, expectedLogits.scalars, atol: 1e-5, rtol: 1e-5, "\(spec) logits at batch \(rows)")
        loss(logits, seed: 9).backward()
        plan.backward(try #require(logits.grad))
        for (k, (got, want)) in zip(gradients(model), expected).enumerated() {
            assertClose(got, want, atol: 1e-4, rtol: 1e-4, "\(spec) gradient of parameter \(k) at batch \(rows)")
        }

        // Without zeroGrad a second pass adds to the gradients, as the graph does.
        let again = plan.forward(x)
        loss(again, seed: 9).backward()
        plan.backward(try #require(again.grad))
        for (k, (got, want)) in zip(gradients(model), expected).enumerated() {
            assertClose(got, want.map { 2 * $0 }, atol: 2e-4, rtol: 1e-4, "\(spec) accumulated gradient of parameter \(k)")
        }
    }

    @Test(arguments: firstLayerPaths) func theNumberOfThreadsDoesNotChangeABit(kernel: Bool) throws {
        let saved = Parallel.workers
        defer { Parallel.workers = saved }
        let x = input(128, [784], seed: 8)
        var runs: [[[Float]]] = []
        for workers in [1, 2, 4] {
            Parallel.workers = workers
            let model = try ModelZoo.build("mlp:784-64-10", seed: 2)
            let plan = try #require(TrainingPlan(model, exampleShape: [784], denseKernel: kernel))
            let logits = plan.forward(x)
            loss(logits, seed: 3).backward()
            plan.backward(try #require(logits.grad))
            runs.append([logits.scalars] + gradients(model))
        }
        for run in runs.dropFirst() { #expect(run.map { $0.map(\.bitPattern) } == runs[0].map { $0.map(\.bitPattern) }) }
    }

    /// The cores' runs of blocks follow their measured speed; which core runs a block must not
    /// change a bit of the logits or the gradients.
    @Test(arguments: firstLayerPaths) func whichCoreRunsABlockDoesNotChangeABit(kernel: Bool) throws {
        let x = input(128, [784], seed: 5)
        var runs: [[[Float]]] = []
        for slowThread in [1, 0] {
            let balance = BlockBalance(blocks: 8)
            var times: [UInt64] = [1_000, 1_000]
            times[slowThread] = 7_000
            for _ in 0..<4 { balance.record(balance.assignment(threads: 2), nanoseconds: times) }
            let skewed = balance.assignment(threads: 2)
            #expect(skewed[slowThread].count == 1, "the slow thread keeps one block: \(skewed)")
            let model = try ModelZoo.build("mlp:784-64-10", seed: 2)
            let plan = try #require(TrainingPlan(model, exampleShape: [784], balance: balance, denseKernel: kernel))
            let logits = plan.forward(x)
            loss(logits, seed: 3).backward()
            plan.backward(try #require(logits.grad))
            runs.append([logits.scalars] + gradients(model))
        }
        #expect(runs[1].map { $0.map(\.bitPattern) } == runs[0].map { $0.map(\.bitPattern) })
    }

    @Test func eachCoreCanFillItsOwnCopyOfTheBatch() throws {
        let model = try ModelZoo.build("mlp:784-64-10", seed: 1)
        let plan = try #require(TrainingPlan(model, exampleShape: [784]))
        let x = input(256, [784], seed: 4)
        let source = SharedPointer(x.data), count = x.count
        let filled = plan.forward(rows: 256) { $0.update(from: source.p, count: count) }
        assertClose(filled.scalars, plan.forward(x).scalars, atol: 0, rtol: 0, "fill versus tensor")
    }

    @Test func reluZeroesNaNLikeTheGraph() throws {
        let model = try ModelZoo.build("mlp:4-3-2", seed: 1)
        let plan = try #require(TrainingPlan(model, exampleShape: [4]))
        let x = Tensor(shape: [2, 4], scalars: [.nan, 1, 2, 3, -1, -2, -3, -4])
        let expected = model(x).scalars, got = plan.forward(x).scalars
        #expect(got.map(\.isNaN) == expected.map(\.isNaN))
    }

    @Test func modelsOutsideThePlanAreRefused() throws {
        #expect(TrainingPlan(try ModelZoo.build("cnn-tiny", seed: 0), exampleShape: [1, 28, 28]) == nil)
        #expect(TrainingPlan(try ModelZoo.build("mlp:784-64-10", seed: 0), exampleShape: [10]) == nil, "wrong input size")
        var g = SeededGenerator(seed: 0)
        #expect(TrainingPlan(Sequential([Linear(3, 4, generator: &g), Dropout(0.5), Linear(4, 2, generator: &g)]), exampleShape: [3]) == nil, "dropout")
        let frozen = try ModelZoo.build("mlp:3-4-2", seed: 0)
        frozen.trainableParameters()[0].requiresGrad = false
        #expect(TrainingPlan(frozen, exampleShape: [3]) == nil, "a frozen weight")
    }

    /// The fixed-order kernels: every result is one chain of fused multiply-adds from 0 (then the
    /// bias and ReLU), so it equals that chain written out with `fma`, whatever the number of
    /// rows and outputs in the call (odd sizes reach every tile's edge).
    @Test(arguments: [(1, 5, 3), (7, 37, 13), (13, 784, 64), (130, 17, 9)])
    func denseKernelsComputeOneFixedChainPerResult(rows: Int, inputs: Int, outputs: Int) throws {
        guard dk_linear_packed_level() >= 1 else { return }
        var g = SeededGenerator(seed: UInt64(rows * inputs))
        let x = Tensor.randomNormal([rows, inputs], using: &g).scalars, w = Tensor.randomNormal([outputs, inputs], using: &g).scalars
        let b = Tensor.randomNormal([outputs], using: &g).scalars, e = Tensor.randomNormal([rows, outputs], using: &g).scalars
        var forward: [Float] = [], expected: [Float] = []
        for r in 0..<rows {
            for j in 0..<outputs {
                var s: Float = 0
                for k in 0..<inputs { s = s.addingProduct(x[r * inputs + k], w[j * inputs + k]) }
                let v = s + b[j]
                expected.append(v > 0 ? v : 0)
            }
        }
        var gradientExpected: [Float] = []
        for j in 0..<outputs {
            for i in 0..<inputs {
                var s: Float = 0
                for r in 0..<rows { s = s.addingProduct(e[r * outputs + j], x[r * inputs + i]) }
                gradientExpected.append(1 + s)  // added to a gradient of ones
            }
        }
        // Whole, and in runs of 1, 2 and 5 outputs: the same bits.
        for run in [outputs, 1, 2, 5] {
            forward = Array(repeating: -1, count: rows * outputs)
            var gradient = [Float](repeating: 1, count: outputs * inputs)
            var scratch = [Float](repeating: 0, count: dk_dense_forward_scratch(outputs, inputs))
            forward.withUnsafeMutableBufferPointer { y in
                gradient.withUnsafeMutableBufferPointer { gw in
                    for start in stride(from: 0, to: outputs, by: run) {
                        let count = min(run, outputs - start)
                        #expect(dk_dense_forward(x, rows, inputs, Array(w[(start * inputs)...]), count, Array(b[start...]),
                                                 y.baseAddress! + start, outputs, 1, &scratch) == 0)
                        #expect(dk_dense_weight_gradient(Array(e[start...]), outputs, x, rows, inputs, count,
                                                         gw.baseAddress! + start * inputs, 1) == 0)
                    }
                }
            }
            #expect(forward.map(\.bitPattern) == expected.map(\.bitPattern), "forward, runs of \(run)")
            #expect(gradient.map(\.bitPattern) == gradientExpected.map(\.bitPattern), "weight gradient, runs of \(run)")
        }
    }
}
