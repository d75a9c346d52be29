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

    @Test(arguments: [("mlp:784-64-10", 128), ("mlp:784-64-10", 3), ("mlp:784-10", 300), ("mlp:64-128-32-10", 300),
                      ("mlp:64-128-32-10", 5), ("mlp:37-19-7", 40)])
    func gradientsMatchTheGraph(spec: String, rows: Int) throws {
        let model = try ModelZoo.build(spec, seed: 3)
        let inputs = Int(spec.dropFirst(4).split(separator: "-")[0])!
        let shape = inputs == 784 ? [1, 28, 28] : [inputs]
        let x = input(rows, shape, seed: UInt64(rows))

        let expectedLogits = model(x)
        loss(expectedLogits, seed: 9).backward()
        let expected = gradients(model)

        model.trainableParameters().forEach { $0.grad = nil }
        let plan = try #require(TrainingPlan(model, exampleShape: shape))
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

    @Test func theNumberOfThreadsDoesNotChangeABit() throws {
        let saved = Parallel.workers
        defer { Parallel.workers = saved }
        let x = input(128, [784], seed: 8)
        var runs: [[[Float]]] = []
        for workers in [1, 2, 4] {
            Parallel.workers = workers
            let model = try ModelZoo.build("mlp:784-64-10", seed: 2)
            let plan = try #require(TrainingPlan(model, exampleShape: [784]))
            let logits = plan.forward(x)
            loss(logits, seed: 3).backward()
            plan.backward(try #require(logits.grad))
            runs.append([logits.scalars] + gradients(model))
        }
        for run in runs.dropFirst() { #expect(run.map { $0.map(\.bitPattern) } == runs[0].map { $0.map(\.bitPattern) }) }
    }

    /// The cores' runs of blocks follow their measured speed; which core runs a block must not
    /// change a bit of the logits or the gradients.
    @Test func whichCoreRunsABlockDoesNotChangeABit() throws {
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
            let plan = try #require(TrainingPlan(model, exampleShape: [784], balance: balance))
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
}
