import DistillTensor
import Foundation

/// Rows of a sparse matrix in compressed-row form: row r's nonzero entries are
/// `columns[rowStarts[r]..<rowStarts[r + 1]]` with `values` at the same positions, columns
/// ascending within a row.
public struct SparseRows: Sendable, Equatable {
    public var rowStarts: [Int]
    public var columns: [Int32]
    public var values: [Float]
    /// The number of columns (the featuriser's buckets).
    public var width: Int

    public var rowCount: Int { rowStarts.count - 1 }

    /// Rows `rows` as a dense `[rows.count, width]` tensor (a batch for an MLP's input).
    public func dense(rows: Range<Int>) -> Tensor {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= rowCount, "SparseRows.dense: rows \(rows) outside 0..<\(rowCount)")
        let out = Tensor.zeros([rows.count, width])
        let p = out.data
        for (i, r) in rows.enumerated() {
            for k in rowStarts[r]..<rowStarts[r + 1] { p[i * width + Int(columns[k])] = values[k] }
        }
        return out
    }

    /// The rows at `indices` (in that order) as a dense `[indices.count, width]` tensor.
    public func dense(indices: [Int]) -> Tensor {
        let out = Tensor.zeros([indices.count, width])
        let p = out.data
        for (i, r) in indices.enumerated() {
            precondition(r >= 0 && r < rowCount, "SparseRows.dense: row \(r) outside 0..<\(rowCount)")
            for k in rowStarts[r]..<rowStarts[r + 1] { p[i * width + Int(columns[k])] = values[k] }
        }
        return out
    }
}

/// A fastText-like bag of n-grams: the words of a text (lowercase runs of letters and digits)
/// and, optionally, each pair of neighbouring words, hashed into `buckets` columns; a row holds
/// each column's count divided by the row's number of n-grams (term frequencies summing to 1, the
/// average fastText takes of its n-gram vectors). An MLP on these rows is the fastest student.
///
/// Hashing is FNV-1a (64-bit) over the word's UTF-8 bytes; a bigram hashes the first word's hash
/// with a separator and the second word, so `a b` and `ab` differ. Fixed across runs and machines.
public struct NGramFeaturizer: Sendable, Equatable, Codable {
    /// The number of hash buckets (columns).
    public var buckets: Int
    /// Whether word pairs are features too (unigrams always are).
    public var bigrams: Bool

    public init(buckets: Int = 1 << 16, bigrams: Bool = true) {
        precondition(buckets > 0 && buckets <= Int(Int32.max), "NGramFeaturizer: buckets must be in 1...\(Int32.max)")
        self.buckets = buckets
        self.bigrams = bigrams
    }

    /// The words of `text`: maximal runs of letters and digits (Unicode alphabetic or numeric
    /// scalars), lowercased; everything else separates words.
    public static func words(_ text: String) -> [String] {
        var words: [String] = []
        var current = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if s.isASCII {
                let v = s.value
                if (0x30...0x39).contains(v) || (0x61...0x7A).contains(v) { current.append(s); continue }
                if (0x41...0x5A).contains(v) { current.append(Unicode.Scalar(v + 32)!); continue }
            } else if s.properties.isAlphabetic || s.properties.numericType != nil {
                current.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
                continue
            }
            if !current.isEmpty { words.append(String(current)); current = String.UnicodeScalarView() }
        }
        if !current.isEmpty { words.append(String(current)) }
        return words
    }

    static let offsetBasis: UInt64 = 0xcbf29ce4_84222325
    static let prime: UInt64 = 0x100_0000_01b3

    static func hash(_ word: String, from start: UInt64 = offsetBasis) -> UInt64 {
        var h = start
        for b in word.utf8 {
            h ^= UInt64(b)
            h = h &* prime
        }
        return h
    }

    /// The bucket of each n-gram of `text` (unigrams, then bigrams), before counting.
    public func buckets(of text: String) -> [Int] {
        let words = Self.words(text)
        let hashes = words.map { Self.hash($0) }
        var out = hashes.map { Int($0 % UInt64(buckets)) }
        if bigrams && words.count > 1 {
            for i in 1..<words.count {
                // The first word's hash, a separator byte (0x20, which no word holds), then the second word.
                let h = Self.hash(words[i], from: (hashes[i - 1] ^ 0x20) &* Self.prime)
                out.append(Int(h % UInt64(buckets)))
            }
        }
        return out
    }

    /// One text's row: (column, term frequency) sorted by column; empty for a text without words.
    public func row(_ text: String) -> [(column: Int, value: Float)] {
        let all = buckets(of: text)
        guard !all.isEmpty else { return [] }
        var counts: [Int: Int] = [:]
        for b in all { counts[b, default: 0] += 1 }
        let total = Float(all.count)
        return counts.keys.sorted().map { (column: $0, value: Float(counts[$0]!) / total) }
    }

    /// Every text's row, as a sparse matrix of `buckets` columns.
    public func sparse(_ texts: [String]) -> SparseRows {
        var starts = [0], columns: [Int32] = [], values: [Float] = []
        for text in texts {
            for (c, v) in row(text) {
                columns.append(Int32(c))
                values.append(v)
            }
            starts.append(columns.count)
        }
        return SparseRows(rowStarts: starts, columns: columns, values: values, width: buckets)
    }

    /// Every text's row as a dense `[texts.count, buckets]` tensor (for small inputs: 63,000
    /// texts of 65,536 buckets would take 16 GB; use `sparse` and `SparseRows.dense(rows:)`).
    public func dense(_ texts: [String]) -> Tensor {
        let rows = sparse(texts)
        return rows.dense(rows: 0..<rows.rowCount)
    }
}
