import Foundation
import Synchronization

/// Persistent worker threads that spin briefly between jobs, for `Parallel`.
///
/// Why not `DispatchQueue.concurrentPerform`: a parked libdispatch worker takes about 55 µs to
/// join a job on the 2-core development VM (measured: two halves of 100 µs of work took 157 µs per call), which
/// is most of a 256-row GEMM of the MLP student. Workers here spin for `spinNanoseconds` after
/// each job before they sleep, so back-to-back jobs (one per layer) start at once, as in
/// onnxruntime's and PyTorch's own thread pools.
///
/// A job is `body(i)` for every `i` in `0..<count`; the calling thread takes part. Indices are
/// either handed out one at a time (any thread takes the next), or *pinned*: index 0 runs on the
/// caller and index `k + 1` on worker `k`, so a job that splits a weight the same way at every
/// step keeps each part on one core (see `Parallel.forEachChunk`); only when worker `k` has not
/// started its index by the time the caller finishes index 0 (asleep, or preempted by the OS) does
/// the caller run it instead. Which thread runs which index
/// never changes a result. One job runs at a time: a call made while another job is running (from
/// a worker, or from a second thread), or on a pool without threads, runs its indices inline on
/// the calling thread.
final class WorkerPool: @unchecked Sendable {
    /// How long an idle worker spins before it sleeps.
    static let spinNanoseconds: UInt64 = 200_000

    /// The current job as one word: generation (32 bits) | count (16 bits) | next index (16 bits).
    /// Claiming an index is a compare-and-swap on it, so a worker can never claim an index of a
    /// job other than the one it read. A pinned job is published with every index taken.
    private let state = Atomic<UInt64>(0)
    /// Bit `k` set: worker `k` has index `k + 1` of the current (pinned) job still to run.
    private let pinnedPending = Atomic<UInt64>(0)
    /// Indices of the current job that have finished running.
    private let finished = Atomic<Int>(0)
    /// Set while a job runs; a caller that cannot set it runs its job inline.
    private let busy = Atomic<Bool>(false)
    /// Workers sleeping (or about to) on `wakeUp`.
    private let sleeping = Atomic<Int>(0)
    private let wakeUp = NSCondition()
    /// The current job's body: written before `state` is published (release), read only by a
    /// thread that has claimed one of its indices (acquire), and not replaced until every claimed
    /// index has finished.
    private var body: ((Int) -> Void)?

    static let maxCount = Int(UInt16.max)

    /// Threads besides the caller; with none, every job runs inline on the caller.
    let threadCount: Int

    init(workers: Int) {
        threadCount = max(0, workers)
        for k in 0 ..< threadCount {
            let thread = Thread { [unowned self] in self.workerLoop(index: k) }
            thread.name = "distill-worker-\(k)"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// Runs `body(i)` for each `i` in `0..<count` on the workers and the calling thread; returns
    /// when all have finished. With no more indices than threads the job is pinned: index 0 on
    /// the caller, index `k + 1` on worker `k`.
    func run(_ count: Int, _ body: (Int) -> Void) {
        precondition(count >= 0 && count <= Self.maxCount, "WorkerPool.run: \(count) indices")
        guard count > 1, threadCount > 0, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for i in 0 ..< count { body(i) }
            return
        }
        let pinned = count <= min(threadCount + 1, 64)  // one bit per worker in `pinnedPending`
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { escaping in
            self.body = escaping
            finished.store(0, ordering: .relaxed)
            let generation = (state.load(ordering: .relaxed) >> 32) &+ 1
            let word = (generation & 0xFFFF_FFFF) << 32 | UInt64(count) << 16
            if pinned { pinnedPending.store((1 << UInt64(count - 1)) - 1, ordering: .sequentiallyConsistent) }
            // A pinned job is published with every index taken: no thread claims one.
            state.store(pinned ? word | UInt64(count) : word, ordering: .sequentiallyConsistent)
            if sleeping.load(ordering: .sequentiallyConsistent) > 0 {
                wakeUp.lock(); wakeUp.broadcast(); wakeUp.unlock()
            }
            if pinned {
                escaping(0); finished.add(1, ordering: .releasing)
                // A worker that has not started its index by now is asleep or preempted: rather
                // than wait for it, the caller runs that index (whoever clears the bit runs it).
                for k in 0 ..< count - 1 {
                    let bit: UInt64 = 1 << UInt64(k)
                    if pinnedPending.bitwiseAnd(~bit, ordering: .acquiringAndReleasing).oldValue & bit != 0 {
                        escaping(k + 1); finished.add(1, ordering: .releasing)
                    }
                }
            } else {
                while let i = claim() { escaping(i); finished.add(1, ordering: .releasing) }
            }
            while finished.load(ordering: .acquiring) < count {}
            self.body = nil
        }
    }

    /// An unclaimed index of the current job, or nil when all are claimed.
    private func claim() -> Int? {
        var word = state.load(ordering: .acquiring)
        while true {
            let count = (word >> 16) & 0xFFFF, next = word & 0xFFFF
            guard next < count else { return nil }
            let (exchanged, original) = state.compareExchange(expected: word, desired: word + 1, ordering: .acquiringAndReleasing)
            if exchanged { return Int(next) }
            word = original
        }
    }

    /// Worker `index`: runs index `index + 1` of each pinned job, and claims indices of the others.
    private func workerLoop(index: Int) {
        let bit: UInt64 = index < 64 ? 1 << UInt64(index) : 0
        while true {
            waitForWork(bit)
            // Clearing the bit claims the index (the caller may have taken it first: see `run`).
            if pinnedPending.bitwiseAnd(~bit, ordering: .acquiringAndReleasing).oldValue & bit != 0 {
                body!(index + 1); finished.add(1, ordering: .releasing)
            }
            while let i = claim() { body!(i); finished.add(1, ordering: .releasing) }
        }
    }

    /// Returns once the current job has work for the worker with pinned bit `bit`: its pinned
    /// index, or an unclaimed one. Spins at first, then sleeps.
    private func waitForWork(_ bit: UInt64) {
        func hasWork() -> Bool {
            if pinnedPending.load(ordering: .sequentiallyConsistent) & bit != 0 { return true }
            let word = state.load(ordering: .sequentiallyConsistent)
            return word & 0xFFFF < (word >> 16) & 0xFFFF
        }
        let start = DispatchTime.now().uptimeNanoseconds
        var spins = 0
        while !hasWork() {
            spins += 1
            if spins & 255 == 0, DispatchTime.now().uptimeNanoseconds - start > Self.spinNanoseconds {
                wakeUp.lock()
                sleeping.add(1, ordering: .sequentiallyConsistent)
                while !hasWork() { wakeUp.wait() }
                sleeping.subtract(1, ordering: .sequentiallyConsistent)
                wakeUp.unlock()
                return
            }
        }
    }
}
