import DistillTensor
import Foundation

/// How well embeddings retrieve: for each query, the rank of its relevant corpus row among all
/// corpus rows by cosine similarity, summarised as recall@k and the mean reciprocal rank.
public struct RetrievalScores: Sendable, Equatable, Codable {
    /// Number of queries scored.
    public var queries: Int
    /// Number of corpus rows each query was ranked against.
    public var corpusSize: Int
    /// `k` → the share of queries whose relevant row is among the `k` best (a fraction of 1).
    public var recall: [Int: Double]
    /// The mean of 1 / rank over the queries (not cut off at any k).
    public var meanReciprocalRank: Double
    /// The median rank of the relevant row (1 is best).
    public var medianRank: Double

    /// recall@k, or nil when `k` was not asked for.
    public func recall(at k: Int) -> Double? { recall[k] }
}

/// Metrics for the text tasks: retrieval (summary → long description) and classification.
public enum TextMetrics {
    /// The largest block of similarities held at once, in floats (64 MiB).
    static let maxBlockFloats = 16 << 20

    /// The 1-based rank of each query's relevant row: 1 + the corpus rows scoring higher, + the
    /// rows scoring the same that come earlier in the corpus (ties are broken by position, as a
    /// stable sort would). A query or relevant row whose similarity is NaN gets the worst rank.
    ///
    /// `queries` is `[n, dimension]`, `corpus` `[m, dimension]`, both row-major and L2-normalised
    /// (cosine = dot product); `relevant[i]` is query i's row in the corpus (default: row i).
    /// Similarities are computed with BLAS in blocks of queries, so memory stays bounded.
    public static func ranks(queries: UnsafeBufferPointer<Float>, corpus: UnsafeBufferPointer<Float>, dimension: Int,
                             relevant: [Int]? = nil) throws -> [Int] {
        try ranks(queries: queries, corpus: corpus, dimension: dimension, relevant: relevant, blockFloats: maxBlockFloats)
    }

    /// `ranks` with similarity blocks of at most `blockFloats` floats (small in tests).
    static func ranks(queries: UnsafeBufferPointer<Float>, corpus: UnsafeBufferPointer<Float>, dimension: Int,
                      relevant: [Int]?, blockFloats: Int) throws -> [Int] {
        guard dimension > 0 else { throw TextError.invalidArgument("retrieval: the embedding dimension must be positive, not \(dimension)") }
        guard queries.count % dimension == 0, corpus.count % dimension == 0 else {
            throw TextError.invalidArgument("retrieval: \(queries.count) query and \(corpus.count) corpus values are not whole rows of \(dimension)")
        }
        let n = queries.count / dimension, m = corpus.count / dimension
        let targets = relevant ?? Array(0..<n)
        guard targets.count == n else { throw TextError.invalidArgument("retrieval: \(n) queries but \(targets.count) relevant rows") }
        if let bad = targets.first(where: { $0 < 0 || $0 >= m }) {
            throw TextError.invalidArgument("retrieval: relevant row \(bad) is outside the corpus of \(m) rows")
        }
        guard n > 0 else { return [] }
        guard m > 0 else { throw TextError.invalidArgument("retrieval: the corpus is empty") }
        let blockRows = max(1, min(n, blockFloats / m))
        var scores = [Float](repeating: 0, count: blockRows * m)
        var ranks = [Int](repeating: m, count: n)
        var start = 0
        while start < n {
            let rows = min(blockRows, n - start)
            scores.withUnsafeMutableBufferPointer { s in
                BLAS.sgemm(transposeB: true, m: rows, n: m, k: dimension, a: queries.baseAddress! + start * dimension, lda: dimension,
                           b: corpus.baseAddress!, ldb: dimension, c: s.baseAddress!, ldc: m)
                for r in 0..<rows {
                    let row = s.baseAddress! + r * m
                    let target = targets[start + r]
                    let own = row[target]
                    guard !own.isNaN else { ranks[start + r] = m; continue }
                    var better = 0
                    for j in 0..<m where row[j] > own || (row[j] == own && j < target) { better += 1 }
                    ranks[start + r] = better + 1
                }
            }
            start += rows
        }
        return ranks
    }

    /// Recall@k for each `k` and the mean reciprocal rank (see `ranks`).
    public static func retrieval(queries: UnsafeBufferPointer<Float>, corpus: UnsafeBufferPointer<Float>, dimension: Int,
                                 relevant: [Int]? = nil, ks: [Int] = [1, 5, 10]) throws -> RetrievalScores {
        let ranks = try self.ranks(queries: queries, corpus: corpus, dimension: dimension, relevant: relevant)
        return scores(ranks: ranks, corpusSize: corpus.count / dimension, ks: ks)
    }

    /// Retrieval scores of `[n, d]` query and `[m, d]` corpus embeddings (tensors).
    public static func retrieval(queries: Tensor, corpus: Tensor, relevant: [Int]? = nil, ks: [Int] = [1, 5, 10]) throws -> RetrievalScores {
        guard queries.rank == 2, corpus.rank == 2, queries.shape[1] == corpus.shape[1] else {
            throw TextError.invalidArgument("retrieval: queries \(queries.shape) and corpus \(corpus.shape) must be [n, d] and [m, d]")
        }
        return try retrieval(queries: UnsafeBufferPointer(queries.buffer), corpus: UnsafeBufferPointer(corpus.buffer),
                             dimension: queries.shape[1], relevant: relevant, ks: ks)
    }

    /// Recall@k, MRR and the median from ranks (1-based) against a corpus of `corpusSize` rows.
    public static func scores(ranks: [Int], corpusSize: Int, ks: [Int]) -> RetrievalScores {
        let n = Double(max(ranks.count, 1))
        var recall: [Int: Double] = [:]
        for k in ks { recall[k] = Double(ranks.filter { $0 <= k }.count) / n }
        let mrr = ranks.reduce(0.0) { $0 + 1 / Double($1) } / n
        let sorted = ranks.sorted()
        let median: Double
        if sorted.isEmpty { median = 0 } else if sorted.count % 2 == 1 { median = Double(sorted[sorted.count / 2]) } else {
            median = Double(sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        return RetrievalScores(queries: ranks.count, corpusSize: corpusSize, recall: recall, meanReciprocalRank: mrr, medianRank: median)
    }

    /// Each row of `[rows, dimension]` values scaled to unit L2 norm (a zero row stays zero).
    public static func l2Normalized(_ values: [Float], dimension: Int) -> [Float] {
        precondition(dimension > 0 && values.count % dimension == 0, "l2Normalized: \(values.count) values are not rows of \(dimension)")
        var out = values
        for start in stride(from: 0, to: values.count, by: dimension) {
            var sum: Float = 0
            for j in start..<start + dimension { sum += values[j] * values[j] }
            guard sum > 0 else { continue }
            let scale = 1 / sum.squareRoot()
            for j in start..<start + dimension { out[j] = values[j] * scale }
        }
        return out
    }

    // MARK: Classification

    /// The share of `predicted` equal to `labels` (a fraction of 1; 0 for no rows).
    public static func accuracy(predicted: [Int], labels: [Int]) -> Double {
        precondition(predicted.count == labels.count, "accuracy: \(predicted.count) predictions for \(labels.count) labels")
        guard !labels.isEmpty else { return 0 }
        return Double(zip(predicted, labels).filter { $0 == $1 }.count) / Double(labels.count)
    }

    /// Each class's recall (correct / rows of that class; nil for a class with no rows) and their
    /// mean over the classes present: the balanced accuracy, which a majority-class guess cannot
    /// inflate (Debian's `libs` alone is a tenth of the packages).
    public static func perClassRecall(predicted: [Int], labels: [Int], classes: Int) -> (recall: [Double?], balancedAccuracy: Double) {
        precondition(predicted.count == labels.count, "perClassRecall: \(predicted.count) predictions for \(labels.count) labels")
        var correct = [Int](repeating: 0, count: classes), total = [Int](repeating: 0, count: classes)
        for (p, l) in zip(predicted, labels) where l >= 0 && l < classes {
            total[l] += 1
            if p == l { correct[l] += 1 }
        }
        let recall: [Double?] = (0..<classes).map { total[$0] > 0 ? Double(correct[$0]) / Double(total[$0]) : nil }
        let present = recall.compactMap { $0 }
        return (recall, present.isEmpty ? 0 : present.reduce(0, +) / Double(present.count))
    }
}
