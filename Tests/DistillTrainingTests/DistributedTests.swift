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

    /// The same settings but one value of one row changed on rank 1 (another host's copy of the
    /// file): its data fingerprint differs, and every rank stops with an error naming it.
    @Test func ranksWithDifferentDataStopWithAnErrorNamingThem() throws {
        func dataset(changed: Bool) throws -> LabeledDataset {
            var values = (0..<300).map { Float($0) / 7 }
            if changed { values[211] += 1e-6 }
            return try LabeledDataset(features: Tensor(shape: [100, 3], scalars: values), labels: (0..<100).map { $0 % 4 }, numClasses: 4)
        }
        let original = try dataset(changed: false), changed = try dataset(changed: true)
        #expect(original.fingerprint() == (try dataset(changed: false)).fingerprint())
        #expect(original.fingerprint() != changed.fingerprint())
        let relabelled = try LabeledDataset(features: original.features, labels: (0..<100).map { $0 % 3 }, numClasses: 4)
        #expect(original.fingerprint() != relabelled.fingerprint(), "the labels are part of the fingerprint")
        let results = try Self.onRanks(2) { world -> String in
            let data = world.rank == 1 ? changed : original
            do { try world.requireSameConfiguration("epochs=2", data: data.fingerprint()); return "" } catch { return "\(error)" }
        }
        for message in results {
            #expect(message.contains("rank 1 of 2 loaded different data from rank 0 with the same settings"), "\(message)")
        }
    }

    /// The word-wise hash covers every byte, a trailing part included, and continues a hash.
    @Test func wordHashCoversEveryByte() {
        let bytes: [UInt8] = Array(0..<13)
        let whole = bytes.withUnsafeBytes { Distributed.fnv1a(words: $0) }
        for i in bytes.indices {
            var other = bytes
            other[i] ^= 1
            #expect(other.withUnsafeBytes { Distributed.fnv1a(words: $0) } != whole, "byte \(i)")
        }
        let split = bytes.withUnsafeBytes { all in
            Distributed.fnv1a(words: UnsafeRawBufferPointer(rebasing: all[8...]),
                              continuing: Distributed.fnv1a(words: UnsafeRawBufferPointer(rebasing: all[..<8])))
        }
        #expect(split == whole, "hashing 8 bytes then the rest continues the same hash")
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

    @Test func blockSharesStartOnBlockBoundariesAndCoverEveryRowOnce() {
        for size in 1...5 {
            for rows in 0...40 {
                for block in [1, 3, 8] {
                    let shares = (0..<size).map { Distributed.blockShare(of: rows, block: block, rank: $0, size: size) }
                    #expect(shares.first?.lowerBound == 0 && shares.last?.upperBound == rows)
                    for k in 1..<size { #expect(shares[k].lowerBound == shares[k - 1].upperBound) }
                    for s in shares where !s.isEmpty { #expect(s.lowerBound % block == 0, "\(s) of \(rows) rows in blocks of \(block)") }
                }
            }
        }
        // 10 rows in blocks of 4 (4, 4, 2) over 2 ranks: one block, then two.
        #expect(Distributed.blockShare(of: 10, block: 4, rank: 0, size: 2) == 0..<4)
        #expect(Distributed.blockShare(of: 10, block: 4, rank: 1, size: 2) == 4..<10)
    }

    /// Segments of 5, 2 and 7 floats in windows of 4: the pieces tile each window and each
    /// segment exactly once, straddling where a segment crosses a window's edge.
    @Test func bucketsCutTheGradientsEndToEnd() {
        let sizes = [5, 2, 7]
        let windows = Distributed.buckets(total: 14, capacity: 4)
        #expect(windows == [0..<4, 4..<8, 8..<12, 12..<14])
        #expect(Distributed.pieces(of: sizes, in: 4..<8).map { [$0.segment, $0.segmentOffset, $0.bucketOffset, $0.count] }
                == [[0, 4, 0, 1], [1, 0, 1, 2], [2, 0, 3, 1]])
        var covered = sizes.map { [Int](repeating: 0, count: $0) }
        for w in windows {
            var filled = [Int](repeating: 0, count: w.count)
            for p in Distributed.pieces(of: sizes, in: w) {
                for i in 0..<p.count { covered[p.segment][p.segmentOffset + i] += 1; filled[p.bucketOffset + i] += 1 }
            }
            #expect(filled.allSatisfy { $0 == 1 })
        }
        #expect(covered.allSatisfy { $0.allSatisfy { $0 == 1 } })
        #expect(Distributed.buckets(total: 0, capacity: 4).isEmpty)
        #expect(Distributed.pieces(of: [0, 3, 0], in: 0..<3).map(\.segment) == [1])
    }

    /// Small buckets (3 floats: a tensor straddles buckets, the scalars share the last) give the
    /// same sums as one bucket, and one allreduce per bucket.
    @Test func bucketedAllreduceMatchesOneBucket() throws {
        func reduce(capacity: Int) throws -> [([Float], [Float], Int)] {
            try Self.onRanks(3) { world -> ([Float], [Float], Int) in
                world.bucketCapacity = capacity
                let r = Float(world.rank + 1)
                let a = Tensor(shape: [5], scalars: (0..<5).map { Float($0) * r }), b = Tensor(shape: [2], scalars: [r, -r])
                let sums = try world.allreduceMean([a, b], weight: 0.5, scalars: [r, 2 * r])
                return (a.scalars + b.scalars, sums, world.bucketsReduced)
            }
        }
        let one = try reduce(capacity: 100), small = try reduce(capacity: 3)
        #expect(one[0].0 == [0, 3, 6, 9, 12, 3, -3] && one[0].1 == [6, 12] && one[0].2 == 1)
        for rank in 0..<3 {
            #expect(small[rank].0 == one[0].0 && small[rank].1 == one[0].1)
            #expect(small[rank].2 == 3, "9 floats in buckets of 3")
        }
    }

    @Test func messagesGatherAndAllgather() throws {
        let results = try Self.onRanks(3) { world -> ([Data]?, [Data], String) in
            let mine = Data(repeating: UInt8(world.rank), count: world.rank * 2)
            let gathered = try world.gather(mine)
            let all = try world.allgather(mine)
            var reply = ""
            if world.rank == 1 { try world.send(Data("to 2".utf8), to: 2, tag: 7) }
            if world.rank == 2 {
                let (source, data) = try world.receive(tag: 7)
                reply = "\(source): \(String(decoding: data, as: UTF8.self))"
                #expect(try world.poll(tag: 7) == nil)
            }
            return (gathered, all, reply)
        }
        let expected = (0..<3).map { Data(repeating: UInt8($0), count: $0 * 2) }
        #expect(results[0].0 == expected && results[1].0 == nil && results[2].0 == nil)
        #expect(results.allSatisfy { $0.1 == expected })
        #expect(results[2].2 == "1: to 2")
    }

    /// Labelled data whose evaluation has every kind of sum (loss, bins, top-5), and a model for
    /// it: a fresh one per call (the same weights), so that ranks on threads share no module.
    static func evaluationFixture() throws -> (model: @Sendable () throws -> Sequential, data: LabeledDataset) {
        var generator = SeededGenerator(seed: 11)
        let rows = 203
        let features = Tensor(shape: [rows, 6], scalars: (0..<rows * 6).map { _ in Float.random(in: -2...2, using: &generator) })
        let labels = (0..<rows).map { r in Int(abs(features.scalars[r * 6] * 3)) % 7 }
        return ({ try ModelZoo.build("mlp:6-16-7", inputShape: [6], numClasses: 7, seed: 2) },
                try LabeledDataset(features: features, labels: labels, numClasses: 7))
    }

    /// Each rank scores its share of the batches; the tallies combined give one process's report
    /// bit for bit, on every rank (more ranks than batches too: 203 rows in batches of 64 is 4).
    @Test(arguments: [2, 3, 5])
    func shardedEvaluationIsOneProcessBitForBit(ranks: Int) throws {
        let (model, data) = try Self.evaluationFixture()
        @Sendable func teacher() throws -> Teacher { ModuleTeacher(try ModelZoo.build("mlp:6-8-7", inputShape: [6], numClasses: 7, seed: 3), name: "t") }
        let single = try evaluate(try model(), on: data, teacher: try teacher(), batchSize: 64)
        let sharded = try Self.onRanks(ranks) { world in
            try evaluate(try model(), on: data, teacher: try teacher(), batchSize: 64, world: world)
        }
        for report in sharded {
            #expect(report.accuracy == single.accuracy && report.top5Accuracy == single.top5Accuracy)
            #expect(report.meanLoss == single.meanLoss && report.expectedCalibrationError == single.expectedCalibrationError)
            #expect(report.confusion == single.confusion && report.perClassAccuracy == single.perClassAccuracy)
            #expect(report.teacherAgreement == single.teacherAgreement && report.count == single.count)
        }
        #expect(single.confusion.joined().reduce(0, +) == 203 && single.meanLoss > 0 && single.expectedCalibrationError > 0)
    }

    /// Teacher outputs computed across ranks (each its share of the batches) equal one process's,
    /// on every rank or on rank 0 alone.
    @Test(arguments: [2, 3, 5])
    func teacherOutputsAcrossRanksAreOneProcessBitForBit(ranks: Int) throws {
        let (model, data) = try Self.evaluationFixture()
        let single = try TeacherOutputs.compute(ModuleTeacher(try model(), name: "t"), inputs: data, batchSize: 64)
        let results = try Self.onRanks(ranks) { world -> ([Float]?, [Float]?) in
            let teacher = ModuleTeacher(try model(), name: "t")
            let every = try TeacherOutputs.compute(teacher, inputs: data, batchSize: 64, world: world, on: .everyRank)
            let root = try TeacherOutputs.compute(teacher, inputs: data, batchSize: 64, world: world, on: .rankZero)
            return (every?.scalars, root?.scalars)
        }
        #expect(single.shape == [203, 7])
        for (rank, (every, root)) in results.enumerated() {
            #expect(every == single.scalars)
            #expect(rank == 0 ? root == single.scalars : root == nil)
        }
    }

    @Test func sweepQueueHandsOutTheCostliestFirst() {
        #expect(SweepQueue(costs: [1, 5, 3, 5, 0.5]).order == [1, 3, 2, 0, 4])
        #expect(SweepQueue(costs: []).order.isEmpty)
        // One long unit and six short ones on 3 ranks: as ranks free up, the long one is alone on
        // its rank; a static round-robin puts two more units after it.
        let durations: [Double] = [10, 1, 1, 1, 1, 1, 1]
        let order = SweepQueue(costs: durations).order
        let dynamic = SweepQueue.simulate(order: order, durations: durations, ranks: 3)
        #expect(dynamic.assignments.map(\.rank) == [0, 1, 2, 1, 2, 1, 2])
        #expect(dynamic.makespan == 10)
        #expect(SweepQueue.roundRobinMakespan(order: order, durations: durations, ranks: 3) == 12)
    }

    /// The queue over 3 in-process ranks: every unit runs once, its result reaches rank 0, and a
    /// long unit keeps its rank while the others take the short ones as they free up.
    @Test func rankQueueHandsUnitsToRanksAsTheyFreeUp() throws {
        let durations: [Double] = [1.0, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]
        let order = SweepQueue(costs: durations).order
        let results = try Self.onRanks(3) { world -> [Int: (rank: Int, result: String)] in
            var finished: [Int: (rank: Int, result: String)] = [:]
            try RankQueue.run(world: world, order: order, work: { unit in
                Thread.sleep(forTimeInterval: durations[unit])
                return Data("unit \(unit) on rank \(world.rank)".utf8)
            }, finished: { unit, rank, data in
                #expect(finished[unit] == nil, "unit \(unit) finished twice")
                finished[unit] = (rank, String(decoding: data, as: UTF8.self))
            })
            try RankQueue.release(world)
            try RankQueue.waitForRelease(world)
            return finished
        }
        let onZero = results[0]
        #expect(onZero.keys.sorted() == Array(0..<7))
        for (unit, outcome) in onZero { #expect(outcome.result == "unit \(unit) on rank \(outcome.rank)") }
        #expect(onZero[0]?.rank == 0, "rank 0 takes the first (longest) unit itself")
        #expect(onZero.filter { $0.value.rank == 0 }.count == 1, "the long unit's rank takes nothing else: \(onZero)")
        #expect(results[1].isEmpty && results[2].isEmpty)
    }

    /// Regression predictions across ranks: each rank predicts its blocks, every rank gets all
    /// rows in order (2,500 rows in blocks of 1,024: three blocks, so 5 ranks leave two idle).
    @Test(arguments: [2, 3, 5])
    func regressionPredictionsAcrossRanksCoverEveryRowInOrder(ranks: Int) throws {
        let rows = 2_500
        let features = Tensor(shape: [rows, 2], scalars: (0..<rows * 2).map { Float($0) })
        @Sendable func predict(_ x: Tensor) -> [Float] { (0..<x.shape[0]).map { x.scalars[2 * $0] * 0.5 + x.scalars[2 * $0 + 1] } }
        let single = try RegressionRunner.predictions(predict, features: features, world: .oneProcess)
        let expected: [Float] = (0..<rows).map { (r: Int) -> Float in Float(2 * r) * 0.5 + Float(2 * r + 1) }
        #expect(single == expected)
        let results = try Self.onRanks(ranks) { world in try RegressionRunner.predictions(predict, features: features, world: world) }
        for r in results { #expect(r == single) }
    }
}
