import Dispatch
import Synchronization

/// How work cut into a fixed number of equal blocks is shared among the worker threads,
/// following the threads' measured speed.
///
/// Why: the two cores of a shared VM do not always run at the same speed (the host may run
/// one of them on a busy physical core for seconds at a time: BENCHMARKS.md, "kd-offline").
/// A fixed half-and-half split then makes every step wait for the slow core. Here the work is
/// cut into more, smaller blocks than there are threads; thread `t` takes a contiguous run of
/// blocks, and after each step the runs are moved so that a thread's share follows its speed
/// (blocks done per second, smoothed over steps).
///
/// Which thread runs a block never changes what the block computes, so results stay
/// bit-identical whatever the assignment (`TrainingPlan` sums the blocks' shares in block
/// order). Code that updates the same rows later (`Adam`) asks for the same assignment, so each
/// block's weights stay in the cache of the core that computed them.
public final class BlockBalance: @unchecked Sendable {
    /// Blocks the work is cut into.
    public let blocks: Int
    private let lock = Mutex<State>(State())

    private struct State {
        /// Blocks given to each thread, in thread order (empty until first used).
        var counts: [Int] = []
        /// Smoothed blocks per second of each thread (0: not measured yet).
        var speeds: [Double] = []
    }

    public init(blocks: Int) {
        precondition(blocks >= 1, "BlockBalance: \(blocks) blocks")
        self.blocks = blocks
    }

    /// The shared balance for the first layer of an MLP student (`TrainingPlan`) and the
    /// optimizer steps that follow it.
    public static let firstLayer = BlockBalance(blocks: 8)

    /// The block ranges of threads `0..<threads` (`threads` ≤ `blocks`; each gets at least one
    /// block): an even split until `record` has measured every thread.
    public func assignment(threads: Int) -> [Range<Int>] {
        precondition(threads >= 1 && threads <= blocks, "BlockBalance: \(threads) threads for \(blocks) blocks")
        return lock.withLock { state in
            if state.counts.count != threads {
                state.counts = (0..<threads).map { t in blocks * (t + 1) / threads - blocks * t / threads }
                state.speeds = Array(repeating: 0, count: threads)
            }
            var start = 0
            return state.counts.map { c in defer { start += c }; return start..<(start + c) }
        }
    }

    /// Records how long each thread took over its blocks in the assignment `ranges` (as
    /// returned by `assignment`), and moves blocks towards the faster threads when that is
    /// predicted to shorten the step by more than `minimumGain`.
    public func record(_ ranges: [Range<Int>], nanoseconds: [UInt64]) {
        precondition(ranges.count == nanoseconds.count, "BlockBalance.record: \(ranges.count) ranges, \(nanoseconds.count) times")
        lock.withLock { state in
            guard state.counts == ranges.map(\.count) else { return }  // an assignment of another thread count
            for t in ranges.indices where nanoseconds[t] > 0 {
                let speed = Double(ranges[t].count) / Double(nanoseconds[t])
                state.speeds[t] = state.speeds[t] == 0 ? speed : (1 - Self.smoothing) * state.speeds[t] + Self.smoothing * speed
            }
            guard state.speeds.allSatisfy({ $0 > 0 }) else { return }
            let proposed = Self.proportional(blocks, speeds: state.speeds)
            let now = Self.predictedTime(state.counts, state.speeds), then = Self.predictedTime(proposed, state.speeds)
            if then < now * (1 - Self.minimumGain) { state.counts = proposed }
        }
    }

    /// Weight of the newest measurement in the smoothed speeds.
    static let smoothing = 0.25
    /// Predicted gains below this share of the step are not worth moving blocks between caches.
    static let minimumGain = 0.05

    /// The longest thread's time for `counts` blocks at `speeds` (blocks per nanosecond).
    static func predictedTime(_ counts: [Int], _ speeds: [Double]) -> Double {
        zip(counts, speeds).map { Double($0) / $1 }.max() ?? 0
    }

    /// `blocks` shared in proportion to `speeds`, at least one each: blocks are handed out one
    /// at a time to the thread that would finish its share soonest with one more.
    static func proportional(_ blocks: Int, speeds: [Double]) -> [Int] {
        var counts = Array(repeating: 1, count: speeds.count)
        for _ in speeds.count..<blocks {
            let t = speeds.indices.min { Double(counts[$0] + 1) / speeds[$0] < Double(counts[$1] + 1) / speeds[$1] }!
            counts[t] += 1
        }
        return counts
    }
}

extension Parallel {
    /// Runs `body(thread, blocks)` for each thread's run of `balance`'s blocks (pinned: thread
    /// `t` is the same thread at every call), timing each thread from the call's start to the end
    /// of its run, and records the times in `balance` when `measure` is set.
    public static func forEachBalancedRun(_ balance: BlockBalance, measure: Bool = true, _ body: @Sendable (Int, Range<Int>) -> Void) {
        forEachRun(balance.assignment(threads: min(workers, balance.blocks)), of: balance, measure: measure, body)
    }

    /// Runs `body(thread, runs[thread])` for each of `runs` (an assignment `balance` gave
    /// earlier: a second pass over the blocks that must keep the first pass's threads), timing
    /// and recording as `forEachBalancedRun` does.
    public static func forEachRun(_ runs: [Range<Int>], of balance: BlockBalance, measure: Bool, _ body: @Sendable (Int, Range<Int>) -> Void) {
        guard runs.count > 1 else { body(0, runs[0]); return }
        let start = DispatchTime.now().uptimeNanoseconds
        let times = TimesPerThread(count: runs.count)
        forEachChunk(runs.count, chunks: runs.count) { t, _ in
            body(t, runs[t])
            times.set(t, DispatchTime.now().uptimeNanoseconds &- start)
        }
        if measure { balance.record(runs, nanoseconds: times.values) }
    }
}

/// One time per thread, written by that thread only.
private final class TimesPerThread: @unchecked Sendable {
    private let storage: UnsafeMutablePointer<UInt64>
    let count: Int
    init(count: Int) { self.count = count; storage = .allocate(capacity: count); storage.initialize(repeating: 0, count: count) }
    deinit { storage.deallocate() }
    func set(_ t: Int, _ value: UInt64) { storage[t] = value }
    var values: [UInt64] { Array(UnsafeBufferPointer(start: storage, count: count)) }
}
