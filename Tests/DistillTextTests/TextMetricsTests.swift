import DistillTensor
import Foundation
import Testing
@testable import DistillText

@Suite struct TextMetricsTests {
    /// Three queries against three documents, similarities worked out by hand:
    /// q0·C = [1, 0.8, 0] (rank 1), q1·C = [0, 0.6, 1] (rank 2), q2·C = [0.6, 0.96, 0.8] (rank 2).
    let queries: [Float] = [1, 0, 0, 1, 0.6, 0.8]
    let corpus: [Float] = [1, 0, 0.8, 0.6, 0, 1]

    func ranks(_ q: [Float], _ c: [Float], dimension: Int = 2, relevant: [Int]? = nil, blockFloats: Int = TextMetrics.maxBlockFloats) throws -> [Int] {
        try q.withUnsafeBufferPointer { q in
            try c.withUnsafeBufferPointer { c in
                try TextMetrics.ranks(queries: q, corpus: c, dimension: dimension, relevant: relevant, blockFloats: blockFloats)
            }
        }
    }

    @Test func ranksRecallAndMRRByHand() throws {
        try BLAS.ensureLoaded()
        #expect(try ranks(queries, corpus) == [1, 2, 2])
        let scores = try TextMetrics.retrieval(queries: Tensor(shape: [3, 2], scalars: queries), corpus: Tensor(shape: [3, 2], scalars: corpus), ks: [1, 2, 10])
        #expect(scores.recall(at: 1) == 1.0 / 3 && scores.recall(at: 2) == 1 && scores.recall(at: 10) == 1)
        #expect(abs(scores.meanReciprocalRank - 2.0 / 3) < 1e-12)
        #expect(scores.medianRank == 2 && scores.queries == 3 && scores.corpusSize == 3)
        // Another relevant row per query: q0 → doc 2 (score 0, two rows above it), q1 → doc 0, q2 → doc 1.
        #expect(try ranks(queries, corpus, relevant: [2, 0, 1]) == [3, 3, 1])
    }

    @Test func tiesGoToTheEarlierRowAndNaNIsWorst() throws {
        try BLAS.ensureLoaded()
        #expect(try ranks([1, 0], [1, 0, 1, 0], relevant: [1]) == [2])
        #expect(try ranks([1, 0], [1, 0, 1, 0], relevant: [0]) == [1])
        #expect(try ranks([.nan, 0], [1, 0, 0, 1], relevant: [0]) == [2])
    }

    @Test func blocksGiveTheSameRanksAsOneProduct() throws {
        try BLAS.ensureLoaded()
        var rng = SystemRandomNumberGenerator()
        let d = 8, n = 37, m = 53
        let q = TextMetrics.l2Normalized((0..<n * d).map { _ in Float.random(in: -1...1, using: &rng) }, dimension: d)
        let c = TextMetrics.l2Normalized((0..<m * d).map { _ in Float.random(in: -1...1, using: &rng) }, dimension: d)
        let relevant = (0..<n).map { $0 % m }
        let whole = try ranks(q, c, dimension: d, relevant: relevant)
        #expect(try ranks(q, c, dimension: d, relevant: relevant, blockFloats: 1) == whole)
        #expect(try ranks(q, c, dimension: d, relevant: relevant, blockFloats: 3 * m) == whole)
        // Brute force: count the rows scoring higher, or equal and earlier.
        for i in 0..<n {
            func dot(_ j: Int) -> Float { (0..<d).reduce(0) { $0 + q[i * d + $1] * c[j * d + $1] } }
            let own = dot(relevant[i])
            let better = (0..<m).filter { dot($0) > own + 1e-5 }.count
            #expect(abs(whole[i] - (better + 1)) <= 1, "query \(i)")
        }
    }

    @Test func badShapesAreErrorsNotCrashes() throws {
        #expect(throws: TextError.self) { try ranks([1, 0, 1], [1, 0]) }
        #expect(throws: TextError.self) { try ranks([1, 0], [1, 0], relevant: [1]) }
        #expect(throws: TextError.self) { try ranks([1, 0], [1, 0], relevant: [0, 0]) }
        #expect(throws: TextError.self) { try ranks([1, 0], [], relevant: [0]) }
    }

    @Test func normalisesRows() {
        #expect(TextMetrics.l2Normalized([3, 4, 0, 0], dimension: 2) == [0.6, 0.8, 0, 0])
    }

    @Test func accuracyAndBalancedAccuracyByHand() {
        #expect(TextMetrics.accuracy(predicted: [0, 1, 1, 2], labels: [0, 1, 2, 2]) == 0.75)
        let (recall, balanced) = TextMetrics.perClassRecall(predicted: [0, 0, 0, 0, 1], labels: [0, 0, 0, 1, 1], classes: 3)
        #expect(recall[0] == 1 && recall[1] == 0.5 && recall[2] == nil)
        #expect(balanced == 0.75)
    }
}
