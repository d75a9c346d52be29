import DistillTensor
import Foundation
import Testing
@testable import DistillText

@Suite struct NGramFeaturesTests {
    @Test func wordsAreLowercaseRunsOfLettersAndDigits() {
        #expect(NGramFeaturizer.words("Hello, World! x2 Ünïcode-ready  ") == ["hello", "world", "x2", "ünïcode", "ready"])
        #expect(NGramFeaturizer.words(" ,;- ").isEmpty)
    }

    @Test func bucketsAreFNV1aOfTheWord() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector); mod 1000 = 996.
        #expect(NGramFeaturizer.hash("a") == 0xaf63dc4c8601ec8c)
        #expect(NGramFeaturizer(buckets: 1000, bigrams: false).buckets(of: "A") == [996])
    }

    @Test func rowsAreTermFrequencies() {
        let f = NGramFeaturizer(buckets: 1 << 20, bigrams: false)
        let row = f.row("a b a")
        let a = f.buckets(of: "a")[0], b = f.buckets(of: "b")[0]
        #expect(row.count == 2)
        #expect(Dictionary(uniqueKeysWithValues: row.map { ($0.column, $0.value) }) == [a: Float(2) / 3, b: Float(1) / 3])
        #expect(f.row("").isEmpty)
        let withBigrams = NGramFeaturizer(buckets: 1 << 20).row("a b a")
        #expect(withBigrams.count == 4)  // a, b, "a b", "b a"
        #expect(abs(withBigrams.reduce(0) { $0 + $1.value } - 1) < 1e-6)
        // A bigram is not the concatenated word.
        #expect(NGramFeaturizer(buckets: 1 << 20).buckets(of: "a b")[2] != f.buckets(of: "ab")[0])
    }

    @Test func sparseAndDenseAgree() {
        let f = NGramFeaturizer(buckets: 64)
        let texts = ["The quick brown fox", "", "fox fox fox", "jumps over the lazy dog"]
        let sparse = f.sparse(texts)
        #expect(sparse.rowCount == 4 && sparse.width == 64 && sparse.rowStarts[1] == sparse.rowStarts[2])
        let dense = f.dense(texts)
        #expect(dense.shape == [4, 64])
        for (r, text) in texts.enumerated() {
            var expected = [Float](repeating: 0, count: 64)
            for (c, v) in f.row(text) { expected[c] = v }
            #expect(Array(dense.buffer[r * 64 ..< (r + 1) * 64]) == expected)
        }
        let picked = sparse.dense(indices: [3, 0])
        #expect(Array(picked.buffer[0..<64]) == Array(dense.buffer[192..<256]))
        #expect(Array(picked.buffer[64..<128]) == Array(dense.buffer[0..<64]))
    }
}
