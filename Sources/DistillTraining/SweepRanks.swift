import DistillTensor
import Foundation

/// The order in which a sweep across ranks hands out its units of work (one student and seed:
/// its scratch and distilled runs): costliest first (estimated FLOPs × epochs × rows), ties in
/// plan order. Handing the long units out first keeps a long one from starting last, when the
/// other ranks have nothing left to do (longest-processing-time-first list scheduling).
struct SweepQueue {
    /// Unit ids (indices into `costs`) in hand-out order.
    let order: [Int]

    init(costs: [Double]) {
        order = costs.indices.sorted { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }
    }

    /// Which rank runs which unit, when units take `durations` (indexed like the queue's ids) and
    /// each of `ranks` ranks takes the next unit of `order` as soon as it is free (ties to the
    /// lowest rank), with the time the last rank finishes: what `RankQueue` does, for tests and
    /// for comparing schedules from measured durations.
    static func simulate(order: [Int], durations: [Double], ranks: Int) -> (assignments: [(unit: Int, rank: Int)], makespan: Double) {
        var free = [Double](repeating: 0, count: ranks)
        var assignments: [(unit: Int, rank: Int)] = []
        for unit in order {
            let rank = free.indices.min { free[$0] != free[$1] ? free[$0] < free[$1] : $0 < $1 }!
            assignments.append((unit, rank))
            free[rank] += durations[unit]
        }
        return (assignments, free.max() ?? 0)
    }

    /// The time the last rank finishes when unit k of `order` goes to rank k mod `ranks`,
    /// whatever the units take (a static round-robin).
    static func roundRobinMakespan(order: [Int], durations: [Double], ranks: Int) -> Double {
        var busy = [Double](repeating: 0, count: ranks)
        for (k, unit) in order.enumerated() { busy[k % ranks] += durations[unit] }
        return busy.max() ?? 0
    }
}

/// A work queue over the ranks of a `Distributed` group: rank 0 hands units out as ranks free up
/// and runs units itself, on a thread of its own, while its calling thread answers the other
/// ranks (the one thread that makes MPI calls there). A rank's result comes back to rank 0 with
/// its next request.
///
/// Messages (tags below): a rank sends `requestTag` with nothing (its first request) or with the
/// finished unit's id (8 bytes) and result; rank 0 answers `assignTag` with the next unit's id, or
/// −1 when none is left; at the end rank 0 sends `releaseTag`, which the others wait for without
/// spinning (so that a rank that is done does not take a core from one still training).
enum RankQueue {
    static let requestTag = 0x5351, assignTag = 0x5352, releaseTag = 0x5353

    /// Runs every unit of `order` once, on some rank. On rank 0 returns when all are finished,
    /// having called `started(unit, rank)` when a unit is handed out and `finished(unit, rank,
    /// result)` when its result is in (both on the calling thread); on the other ranks returns
    /// when no unit is left for them (then call `waitForRelease`). An error in a unit stops the
    /// rank it ran on (under mpirun, a rank that exits with an error stops the whole job).
    static func run(world: Distributed, order: [Int], work: @escaping @Sendable (Int) throws -> Data,
                    started: (Int, Int) -> Void = { _, _ in }, finished: (Int, Int, Data) throws -> Void) throws {
        guard world.isMain else {
            try world.send(Data(), to: 0, tag: requestTag)
            while true {
                let unit = try decodeUnit(try world.receive(from: 0, tag: assignTag).data)
                if unit < 0 { return }
                let result: Data
                do { result = try work(unit) } catch let error as TensorError {
                    throw TensorError("rank \(world.rank) of \(world.size): \(error.message)")
                }
                try world.send(encodeUnit(unit) + result, to: 0, tag: requestTag)
            }
        }
        var pending = order[...]
        let own = BackgroundUnit()
        func startOwn() {
            guard let unit = pending.popFirst() else { return }
            started(unit, 0)
            own.start(unit, work)
        }
        startOwn()
        var retired = 0, sleep = 0.001
        while retired < world.size - 1 || own.isBusy {
            var progressed = false
            if let (unit, outcome) = own.takeFinished() {
                try finished(unit, 0, try outcome.get())
                startOwn()
                progressed = true
            }
            while let (source, message) = try world.poll(tag: requestTag) {
                progressed = true
                if message.count >= 8 {
                    try finished(try decodeUnit(message.prefix(8)), source, Data(message.dropFirst(8)))
                }
                if let unit = pending.popFirst() {
                    started(unit, source)
                    try world.send(encodeUnit(unit), to: source, tag: assignTag)
                } else {
                    try world.send(encodeUnit(-1), to: source, tag: assignTag)
                    retired += 1
                }
            }
            if !own.isBusy && !pending.isEmpty { startOwn() }
            if progressed { sleep = 0.001 } else {
                Thread.sleep(forTimeInterval: sleep)
                sleep = min(sleep * 2, 0.05)
            }
        }
    }

    /// Rank 0, once everything is written: lets the other ranks finish.
    static func release(_ world: Distributed) throws {
        guard world.isMain else { return }
        for r in 1..<world.size { try world.send(Data([1]), to: r, tag: releaseTag) }
    }

    /// The other ranks: waits (checking every 50 ms at most) until rank 0 calls `release`.
    static func waitForRelease(_ world: Distributed) throws {
        guard !world.isMain else { return }
        _ = try world.receive(from: 0, tag: releaseTag)
    }

    static func encodeUnit(_ unit: Int) -> Data {
        var value = Int64(unit).littleEndian
        return Data(bytes: &value, count: 8)
    }

    static func decodeUnit(_ data: Data) throws -> Int {
        guard data.count == 8 else { throw TensorError("work queue: a unit id of \(data.count) bytes (expected 8)") }
        return Int(Int64(littleEndian: data.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
    }

    /// Rank 0's own unit, run on a thread of its own (with a large stack, as training needs).
    final class BackgroundUnit: @unchecked Sendable {
        private let lock = NSLock()
        private var running: Int?
        private var outcome: (Int, Result<Data, Error>)?

        /// Running, or finished with a result not yet taken.
        var isBusy: Bool { lock.lock(); defer { lock.unlock() }; return running != nil || outcome != nil }

        func start(_ unit: Int, _ work: @escaping @Sendable (Int) throws -> Data) {
            lock.lock(); running = unit; lock.unlock()
            let thread = Thread { [self] in
                let result = Result { try work(unit) }
                lock.lock(); outcome = (unit, result); running = nil; lock.unlock()
            }
            thread.stackSize = 64 << 20
            thread.start()
        }

        /// The finished unit and its result, once (nil while it runs or when none ran).
        func takeFinished() -> (Int, Result<Data, Error>)? {
            lock.lock(); defer { lock.unlock() }
            let done = outcome
            outcome = nil
            return done
        }
    }

    /// Stops with an error on every rank unless every rank sees `folder` as rank 0 wrote it: the
    /// ranks of a sweep write their runs there and rank 0 reads them back, so on several hosts
    /// it must be on storage they share.
    static func requireSharedFolder(_ folder: URL, world: Distributed) throws {
        guard world.isDistributed else { return }
        let marker = folder.appendingPathComponent(".ranks")
        var token = Data()
        if world.isMain {
            token = Data(UUID().uuidString.utf8)
            try AtomicFile.write(token, to: marker)
        }
        try world.broadcast(&token)
        var blind = [Double](repeating: 0, count: world.size)
        blind[world.rank] = (try? Data(contentsOf: marker)) == token ? 0 : 1
        try world.allreduceSum(&blind)
        if world.isMain { try? FileManager.default.removeItem(at: marker) }
        let ranks = blind.indices.filter { blind[$0] != 0 }
        guard ranks.isEmpty else {
            throw TensorError("rank\(ranks.count > 1 ? "s" : "") \(ranks.map(String.init).joined(separator: ", ")) of \(world.size) cannot see \(folder.path) as rank 0 wrote it: a sweep across hosts needs its --output on storage every host shares (the same path on each)")
        }
    }
}
