import DistillData
import DistillNN
import DistillTensor
import Foundation
import Testing

@testable import DistillTraining

/// Data parallelism without MPI: ranks as threads of this process (`InProcessGroup`), the same
/// `Distributed` code that runs over Open MPI under mpirun (scripts/mpi_check.sh runs that).
@Suite struct DistributedTests {
    /// Runs `body(rank's world)` for every rank of an in-process group, each on its own thread,
    /// and returns the results in rank order.
    static func onRanks<T: Sendable>(_ size: Int, _ body: @escaping @Sendable (Distributed) throws -> T) throws -> [T] {
        let worlds = InProcessGroup.worlds(size: size)
        let results = Results<T>(size)
        let threads = worlds.enumerated().map { rank, world in
            let thread = Thread { results.set(rank, Result { try body(world) }); results.done.signal() }
            thread.stackSize = 16 << 20
            return thread
        }
        threads.forEach { $0.start() }
        for _ in 0..<size { results.done.wait() }
        return try results.values.map { try $0!.get() }
    }

    final class Results<T>: @unchecked Sendable {
        var values: [Result<T, Error>?]
        let lock = NSLock(), done = DispatchSemaphore(value: 0)
        init(_ n: Int) { values = Array(repeating: nil, count: n) }
        func set(_ i: Int, _ r: Result<T, Error>) { lock.lock(); values[i] = r; lock.unlock() }
    }

    @Test func sharesAreContiguousCoverEveryRowOnceAndDifferByAtMostOne() {
        for size in 1...5 {
            for rows in 0...23 {
                let shares = (0..<size).map { Distributed.share(of: rows, rank: $0, size: size) }
                #expect(shares.first?.lowerBound == 0 && shares.last?.upperBound == rows)
                for k in 1..<size { #expect(shares[k].lowerBound == shares[k - 1].upperBound) }
                let counts = shares.map(\.count)
                #expect(counts.max()! - counts.min()! <= 1)
            }
        }
    }

    /// Unequal shares (3 rows and 2 of a batch of 5): each rank's mean gradient weighted by its
    /// rows / 5 sums to the mean over all 5 rows, on every rank.
    @Test func weightedAllreduceGivesTheGlobalBatchMean() throws {
        let perRow: [[Float]] = [[1, 2], [3, 5], [-4, 8], [0.5, 0.25], [10, -1]]
        let globalMean = (0..<2).map { j in perRow.map { $0[j] }.reduce(0, +) / 5 }
        let results = try Self.onRanks(2) { world -> [Float] in
            let rows = world.share(of: 5)
            let local = (0..<2).map { j in rows.map { perRow[$0][j] }.reduce(0, +) / Float(rows.count) }
            let g = Tensor(shape: [2], scalars: local)
            let loss = try world.allreduceMean([g], weight: Float(rows.count) / 5, scalars: [Float(world.rank + 1)])
            #expect(loss == [3])  // scalars are summed as given
            return g.scalars
        }
        #expect(results[0] == results[1], "every rank must get the same bits")
        for j in 0..<2 { #expect(Swift.abs(results[0][j] - globalMean[j]) < 1e-6) }
    }

    @Test func broadcastAndAverage() throws {
        let results = try Self.onRanks(3) { world -> (Data, [Float]) in
            var data = world.isMain ? Data("checkpoint bytes".utf8) : Data()
            try world.broadcast(&data)
            let stats = Tensor(shape: [2], scalars: [Float(world.rank), 1])
            try world.average([stats])
            return (data, stats.scalars)
        }
        for (data, stats) in results {
            #expect(data == Data("checkpoint bytes".utf8))
            #expect(stats == [1, 1])
        }
    }

    @Test func ranksWithDifferentSettingsStopWithAnErrorNamingThem() throws {
        let results = try Self.onRanks(3) { world -> String in
            do { try world.requireSameConfiguration(world.rank == 2 ? "epochs=3" : "epochs=2"); return "" } catch { return "\(error)" }
        }
        for message in results {
            #expect(message.contains("rank 2 of 3 started with a different configuration from rank 0"), "\(message)")
        }
        let same = try Self.onRanks(2) { world in (try? world.requireSameConfiguration("x")) != nil }
        #expect(same == [true, true])
    }

    /// Two ranks, each training on its half of every batch (51 rows in batches of 8: the last
    /// batch of 3 splits 1 + 2), end with the weights one process gets, to float rounding: the
    /// MLP students train through a TrainingPlan, whose gradients are the ones reduced.
    @Test(arguments: ["mlp:8-16-3", "mlp:8-12-12-3"])
    func twoRanksTrainLikeOneProcess(spec: String) throws {
        var generator = SeededGenerator(seed: 7)
        let rows = 51
        let features = Tensor(shape: [rows, 8], scalars: (0..<rows * 8).map { _ in Float.random(in: -1...1, using: &generator) })
        let labels = (0..<rows).map { r in features.scalars[r * 8] > 0 ? (features.scalars[r * 8 + 1] > 0 ? 2 : 1) : 0 }
        let data = try LabeledDataset(features: features, labels: labels, numClasses: 3)
        var options = TrainingOptions()
        options.epochs = 2
        options.batchSize = 8
        options.quiet = true
        options.seed = 3
        let settings = options
        @Sendable func train(_ world: Distributed?) throws -> [String: [Float]] {
            let student = try ModelZoo.build(spec, inputShape: [8], numClasses: 3, seed: 5)
            let trainer = try Trainer(student: student, studentInfo: SavedModel(spec: spec, inputShape: [8], numClasses: 3), teachers: [],
                                      objective: DistillationObjective(terms: [LossTerm(.ce)]), options: settings, train: data, test: data, run: nil)
            #expect(trainer.trainingPlan != nil)
            trainer.world = world
            _ = try trainer.fit()
            return student.stateDict().mapValues(\.scalars)
        }
        let initial = try ModelZoo.build(spec, inputShape: [8], numClasses: 3, seed: 5).stateDict().mapValues(\.scalars)
        let single = try train(nil)
        #expect(single != initial, "training must move the weights")
        let ranks = try Self.onRanks(2) { try train($0) }
        #expect(ranks[0] == ranks[1], "both ranks must hold the same weights")
        var worst: Float = 0
        for (name, w) in single { for (a, b) in zip(w, ranks[0][name]!) { worst = max(worst, Swift.abs(a - b)) } }
        #expect(worst < 1e-4, "max abs difference \(worst)")
    }
}
