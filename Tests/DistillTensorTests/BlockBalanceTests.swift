import DistillTensor
import Foundation
import Testing

/// Blocks follow the threads' measured speed, at least one each, and stay put for small gains.
@Suite struct BlockBalanceTests {
    @Test func startsEvenAndCoversEveryBlock() {
        let balance = BlockBalance(blocks: 8)
        #expect(balance.assignment(threads: 2) == [0..<4, 4..<8])
        #expect(balance.assignment(threads: 3) == [0..<2, 2..<5, 5..<8])
        #expect(BlockBalance(blocks: 5).assignment(threads: 5) == [0..<1, 1..<2, 2..<3, 3..<4, 4..<5])
    }

    /// Runs `steps` steps in which thread `t` takes `costs[t]` nanoseconds per block.
    func simulate(_ balance: BlockBalance, costs: [UInt64], steps: Int) {
        for _ in 0..<steps {
            let runs = balance.assignment(threads: costs.count)
            balance.record(runs, nanoseconds: zip(runs, costs).map { UInt64($0.count) * $1 })
        }
    }

    @Test func aSlowThreadGetsFewerBlocks() {
        let balance = BlockBalance(blocks: 8)
        // Thread 1 is three times as slow: 6 and 2 blocks balance the step, and it stays there.
        simulate(balance, costs: [250, 750], steps: 1)
        #expect(balance.assignment(threads: 2) == [0..<6, 6..<8])
        simulate(balance, costs: [250, 750], steps: 20)
        #expect(balance.assignment(threads: 2) == [0..<6, 6..<8])
        // The host gives thread 1 its speed back: the blocks return.
        simulate(balance, costs: [250, 250], steps: 20)
        #expect(balance.assignment(threads: 2) == [0..<4, 4..<8])
    }

    @Test func aVerySlowThreadKeepsOneBlock() {
        let balance = BlockBalance(blocks: 8)
        simulate(balance, costs: [250_000, 250], steps: 5)
        #expect(balance.assignment(threads: 2) == [0..<1, 1..<8])
    }

    @Test func smallGainsMoveNothing() {
        // 5 and 3 blocks would shorten the step by 2.3%: under the 5% worth a move.
        let balance = BlockBalance(blocks: 8)
        simulate(balance, costs: [250, 320], steps: 20)
        #expect(balance.assignment(threads: 2) == [0..<4, 4..<8])
    }

    @Test func timesForAnotherAssignmentAreIgnored() {
        let balance = BlockBalance(blocks: 8)
        _ = balance.assignment(threads: 2)
        balance.record([0..<2, 2..<5, 5..<8], nanoseconds: [1, 1_000_000, 1])
        #expect(balance.assignment(threads: 2) == [0..<4, 4..<8])
    }

    @Test func everyThreadRunsItsOwnRunOnce() {
        let balance = BlockBalance(blocks: 8)
        let seen = Seen()
        Parallel.forEachBalancedRun(balance) { _, blocks in for b in blocks { seen.add(b) } }
        #expect(seen.sorted == Array(0..<8))
    }
}

/// Blocks reported by concurrent runs.
private final class Seen: @unchecked Sendable {
    private var blocks: [Int] = []
    private let lock = NSLock()
    func add(_ b: Int) { lock.lock(); blocks.append(b); lock.unlock() }
    var sorted: [Int] { lock.lock(); defer { lock.unlock() }; return blocks.sorted() }
}
