import Foundation

/// One text as token ids: `[CLS]`, the word pieces, `[SEP]` (the tokenizer's template).
public struct TokenizedText: Sendable, Equatable {
    /// Token ids, special tokens included; at most the `maxLength` asked for.
    public var ids: [Int]
    /// Whether word pieces were cut off to fit `maxLength`.
    public var wasTruncated: Bool

    public init(ids: [Int], wasTruncated: Bool) {
        self.ids = ids
        self.wasTruncated = wasTruncated
    }
}

/// Several texts as one padded matrix of token ids, ready for an encoder.
public struct TokenBatch: Sendable, Equatable {
    /// `[batchSize * length]` token ids, row-major; rows shorter than `length` end in the pad id.
    public var ids: [Int]
    /// `[batchSize * length]`: 1 for a real token, 0 for padding.
    public var attentionMask: [Float]
    public var batchSize: Int
    /// The longest row's token count (every row is padded to it).
    public var length: Int
    /// How many of the texts were truncated to fit `maxLength` (never silent: report it).
    public var truncatedCount: Int

    public init(ids: [Int], attentionMask: [Float], batchSize: Int, length: Int, truncatedCount: Int) {
        self.ids = ids
        self.attentionMask = attentionMask
        self.batchSize = batchSize
        self.length = length
        self.truncatedCount = truncatedCount
    }
}

/// BERT's WordPiece tokenizer, reading a Hugging Face `tokenizer.json` (or a BERT `vocab.txt`),
/// token for token the same as the `tokenizers` library on Debian's package descriptions
/// (tests/interop/test_text_tokenizer.py).
///
/// The steps: added tokens (`[CLS]`, `[MASK]`, … written literally in the text) are matched on
/// the raw text first; the rest is normalized and split into words (`BertTextRules`); each word
/// becomes its longest-match-first word pieces (`##` marks a piece inside a word), or `[UNK]`
/// when some part of it has no piece or it has more than `maxInputCharactersPerWord` characters;
/// the template adds `[CLS]` before and `[SEP]` after.
///
/// Speed: the text is read as UTF-8 bytes, ASCII through a 128-entry table, pieces looked up in a
/// byte-level hash table; scalars beyond ASCII are normalized once per batch and cached.
///
/// ```swift
/// let tokenizer = try WordPieceTokenizer(contentsOf: modelFolder)
/// let batch = tokenizer.encodeBatch(["A text.", "Another, longer text."], maxLength: 256)
/// ```
public struct WordPieceTokenizer: Sendable {
    let vocabulary: WordPieceVocabulary
    let rules: BertTextRules
    /// Token text by id (nil for ids no token has).
    let tokensByID: [String?]
    let unknownID: Int
    /// Template ids before and after the word pieces (`[CLS]` and `[SEP]` for BERT).
    let prefixIDs: [Int]
    let suffixIDs: [Int]
    /// Tokens matched literally in the raw text before normalization, as UTF-8.
    let addedTokens: [(bytes: [UInt8], id: Int)]
    /// Whether a byte can start an added token (256 entries).
    let startsAddedToken: [Bool]
    /// A word of more characters than this becomes `[UNK]` whole.
    public let maxInputCharactersPerWord: Int
    /// The id rows are padded with (masked out by `attentionMask`).
    public let padID: Int
    /// The maximum length the tokenizer file asks for (its `truncation.max_length`), if any.
    public let configuredMaxLength: Int?
    /// What the ASCII bytes become: `asciiKind` (nil: removed) and the byte after lowercasing.
    let asciiKind: [ScalarKind?]
    let asciiMapped: [UInt8]

    /// Number of token ids (the largest id + 1): the size an embedding table needs.
    public var vocabularySize: Int { tokensByID.count }
    /// The number of ids the template adds around the word pieces (2 for `[CLS] … [SEP]`).
    public var specialTokenCount: Int { prefixIDs.count + suffixIDs.count }

    /// A tokenizer from validated parts (see `WordPieceTokenizer+Loading.swift`): the model's
    /// vocabulary (text, id) and the added tokens (text, id), every id ≥ 0.
    init(vocabulary modelTokens: [(text: String, id: Int)], unknownID: Int, continuationPrefix: String, maxInputCharactersPerWord: Int,
         rules: BertTextRules, prefixIDs: [Int], suffixIDs: [Int], addedTokens: [(text: String, id: Int)], padID: Int,
         configuredMaxLength: Int?) {
        let size = (modelTokens + addedTokens).map(\.id).max().map { $0 + 1 } ?? 0
        var byID = [String?](repeating: nil, count: size)
        for (text, id) in modelTokens + addedTokens where byID[id] == nil { byID[id] = text }
        self.tokensByID = byID
        self.unknownID = unknownID
        self.rules = rules
        self.prefixIDs = prefixIDs
        self.suffixIDs = suffixIDs
        self.maxInputCharactersPerWord = maxInputCharactersPerWord
        self.padID = padID
        self.configuredMaxLength = configuredMaxLength
        vocabulary = WordPieceVocabulary(tokens: modelTokens, continuationPrefix: continuationPrefix)
        let added = addedTokens.filter { !$0.text.isEmpty }.map { (bytes: Array($0.text.utf8), id: $0.id) }
        self.addedTokens = added.sorted { $0.bytes.count > $1.bytes.count }  // longest first: leftmost-longest matching
        var starts = Array(repeating: false, count: 256)
        for token in added { starts[Int(token.bytes[0])] = true }
        startsAddedToken = starts
        var kinds: [ScalarKind?] = [], mapped: [UInt8] = []
        for b in 0..<128 {
            let out = rules.normalize(Unicode.Scalar(UInt8(b)))
            precondition(out.count <= 1 && (out.first?.value.isASCII ?? true), "ASCII normalizes to at most one ASCII scalar")
            kinds.append(out.first?.kind)
            mapped.append(UInt8(out.first?.value.value ?? 0))
        }
        asciiKind = kinds
        asciiMapped = mapped
    }

    /// The token text of `id` (nil when no token has it).
    public func token(for id: Int) -> String? { id >= 0 && id < tokensByID.count ? tokensByID[id] : nil }

    /// The id of the token `text` as written in the vocabulary (`##ing` for a continuation), or
    /// of an added token.
    public func id(for text: String) -> Int? {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty else { return nil }
        if let id = utf8.withUnsafeBufferPointer({ vocabulary.lookup($0.baseAddress!, $0.count, continuation: false) }) { return id }
        return addedTokens.first { $0.bytes == utf8 }?.id
    }

    /// `text` as ids with the template's special tokens, at most `maxLength` of them: word pieces
    /// beyond `maxLength - specialTokenCount` are cut off and `wasTruncated` says so. A
    /// `maxLength` too small for the special tokens themselves leaves only those.
    public func encode(_ text: String, maxLength: Int) -> TokenizedText {
        var cache = ScalarCache()
        var scratch = WordScratch()
        return encode(text, maxLength: maxLength, cache: &cache, scratch: &scratch)
    }

    /// Each text encoded as by `encode`, in order; large inputs are encoded in parallel chunks.
    public func encode(_ texts: [String], maxLength: Int) -> [TokenizedText] {
        let chunks = texts.count >= 4096 ? max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8)) : 1
        var results = [TokenizedText](repeating: TokenizedText(ids: [], wasTruncated: false), count: texts.count)
        results.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let destination = out
            DispatchQueue.concurrentPerform(iterations: chunks) { k in
                var cache = ScalarCache()
                var scratch = WordScratch()
                let range = (texts.count * k / chunks)..<(texts.count * (k + 1) / chunks)
                for i in range { destination[i] = encode(texts[i], maxLength: maxLength, cache: &cache, scratch: &scratch) }
            }
        }
        return results
    }

    /// Each text encoded as by `encode`, padded on the right to the longest row with `padID`
    /// (attention mask 0); `truncatedCount` counts the texts that were cut.
    public func encodeBatch(_ texts: [String], maxLength: Int) -> TokenBatch {
        let rows = encode(texts, maxLength: maxLength)
        let length = rows.map(\.ids.count).max() ?? 0
        var ids = Array(repeating: padID, count: rows.count * length)
        var mask = Array(repeating: Float(0), count: rows.count * length)
        for (r, row) in rows.enumerated() {
            for (j, id) in row.ids.enumerated() {
                ids[r * length + j] = id
                mask[r * length + j] = 1
            }
        }
        return TokenBatch(ids: ids, attentionMask: mask, batchSize: rows.count, length: length,
                          truncatedCount: rows.reduce(0) { $0 + ($1.wasTruncated ? 1 : 0) })
    }

    /// The word pieces of `text` as token strings, without special tokens and untruncated (for
    /// inspection and tests).
    public func tokens(_ text: String) -> [String] {
        let encoded = encode(text, maxLength: Int.max)
        return encoded.ids.dropFirst(prefixIDs.count).dropLast(suffixIDs.count).map { token(for: $0) ?? "<\($0)>" }
    }

    // MARK: Encoding

    /// Non-ASCII scalars already normalized in this call (text rarely has many distinct ones).
    struct ScalarCache {
        var normalized: [UInt32: [NormalizedScalar]] = [:]
    }

    /// The word being built: its UTF-8 bytes and where each of its scalars starts.
    struct WordScratch {
        var bytes: [UInt8] = []
        var scalarStarts: [Int] = []
        init() {
            bytes.reserveCapacity(256)
            scalarStarts.reserveCapacity(257)
        }
    }

    func encode(_ text: String, maxLength: Int, cache: inout ScalarCache, scratch: inout WordScratch) -> TokenizedText {
        let capacity = max(0, maxLength - specialTokenCount)
        var ids = prefixIDs
        ids.reserveCapacity(min(maxLength, 64 + text.utf8.count / 3))
        var pieceCount = 0
        var truncated = false
        var text = text
        text.withUTF8 { utf8 in
            guard let base = utf8.baseAddress else { return }
            let n = utf8.count
            scratch.bytes.removeAll(keepingCapacity: true)
            scratch.scalarStarts.removeAll(keepingCapacity: true)

            /// Ends the current word: its pieces go into `ids`; false once past the capacity.
            func finishWord() -> Bool {
                guard !scratch.bytes.isEmpty else { return true }
                let added = appendPieces(of: &scratch, to: &ids)
                scratch.bytes.removeAll(keepingCapacity: true)
                scratch.scalarStarts.removeAll(keepingCapacity: true)
                pieceCount += added
                return pieceCount <= capacity
            }
            func appendToWord(_ s: Unicode.Scalar) {
                scratch.scalarStarts.append(scratch.bytes.count)
                if s.value < 0x80 { scratch.bytes.append(UInt8(s.value)) } else { scratch.bytes.append(contentsOf: UTF8.encode(s)!) }
            }
            /// Adds one normalized scalar; false once past the capacity.
            func add(_ s: Unicode.Scalar, _ kind: ScalarKind) -> Bool {
                switch kind {
                case .word:
                    appendToWord(s)
                    return true
                case .whitespace:
                    return finishWord()
                case .punctuation:
                    guard finishWord() else { return false }
                    appendToWord(s)
                    return finishWord()
                }
            }

            var i = 0
            scan: while i < n {
                let b = base[i]
                if startsAddedToken[Int(b)], let (length, id) = addedToken(at: i, in: base, count: n) {
                    guard finishWord() else { break scan }
                    ids.append(id)
                    pieceCount += 1
                    guard pieceCount <= capacity else { break scan }
                    i += length
                    continue
                }
                if b < 0x80 {
                    i += 1
                    guard let kind = asciiKind[Int(b)] else { continue }
                    if kind == .word {  // the common case, without the calls of `add`
                        scratch.scalarStarts.append(scratch.bytes.count)
                        scratch.bytes.append(asciiMapped[Int(b)])
                        continue
                    }
                    guard add(Unicode.Scalar(asciiMapped[Int(b)]), kind) else { break scan }
                    continue
                }
                let (scalar, length) = Self.decodeScalar(base + i, available: n - i)
                i += length
                let normalized: [NormalizedScalar]
                if let known = cache.normalized[scalar.value] {
                    normalized = known
                } else {
                    normalized = rules.normalize(scalar)
                    cache.normalized[scalar.value] = normalized
                }
                for s in normalized {
                    guard add(s.value, s.kind) else { break scan }
                }
            }
            _ = finishWord()
        }
        if pieceCount > capacity {
            truncated = true
            ids.removeSubrange((prefixIDs.count + capacity)...)
        }
        ids.append(contentsOf: suffixIDs)
        return TokenizedText(ids: ids, wasTruncated: truncated)
    }

    /// The longest added token starting at byte `i`, as (byte length, id).
    private func addedToken(at i: Int, in base: UnsafePointer<UInt8>, count n: Int) -> (Int, Int)? {
        for token in addedTokens where token.bytes.count <= n - i {
            let matches = token.bytes.withUnsafeBufferPointer { memcmp($0.baseAddress!, base + i, token.bytes.count) == 0 }
            if matches { return (token.bytes.count, token.id) }
        }
        return nil
    }

    /// The scalar whose UTF-8 encoding starts at `p` (valid UTF-8: the bytes of a Swift string).
    @inline(__always)
    static func decodeScalar(_ p: UnsafePointer<UInt8>, available: Int) -> (Unicode.Scalar, Int) {
        let b0 = UInt32(p[0])
        var value: UInt32, length: Int
        if b0 < 0xE0 {
            value = (b0 & 0x1F) << 6 | (UInt32(p[1]) & 0x3F); length = 2
        } else if b0 < 0xF0 {
            value = (b0 & 0x0F) << 12 | (UInt32(p[1]) & 0x3F) << 6 | (UInt32(p[2]) & 0x3F); length = 3
        } else {
            value = (b0 & 0x07) << 18 | (UInt32(p[1]) & 0x3F) << 12 | (UInt32(p[2]) & 0x3F) << 6 | (UInt32(p[3]) & 0x3F); length = 4
        }
        precondition(length <= available, "a Swift string's UTF-8 is valid")
        return (Unicode.Scalar(value) ?? "\u{FFFD}", length)
    }

    /// Appends the word's pieces (longest match first, `[UNK]` for the whole word when some
    /// position has no piece or the word is too long); returns how many ids it added.
    private func appendPieces(of word: inout WordScratch, to ids: inout [Int]) -> Int {
        let scalarCount = word.scalarStarts.count
        guard scalarCount <= maxInputCharactersPerWord else {
            ids.append(unknownID)
            return 1
        }
        word.scalarStarts.append(word.bytes.count)
        defer { word.scalarStarts.removeLast() }
        let firstPiece = ids.count
        let found: Bool = word.bytes.withUnsafeBufferPointer { bytes in
            word.scalarStarts.withUnsafeBufferPointer { starts in
                let base = bytes.baseAddress!
                var start = 0
                while start < scalarCount {
                    let continuation = start > 0
                    let longest = continuation ? vocabulary.longestContinuation : vocabulary.longestInitial
                    var end = scalarCount
                    while end > start && starts[end] - starts[start] > longest { end -= 1 }
                    var id: Int? = nil
                    while end > start {
                        if let match = vocabulary.lookup(base + starts[start], starts[end] - starts[start], continuation: continuation) {
                            id = match
                            break
                        }
                        end -= 1
                    }
                    guard let id else { return false }
                    ids.append(id)
                    start = end
                }
                return true
            }
        }
        if !found {
            ids.removeSubrange(firstPiece...)
            ids.append(unknownID)
        }
        return ids.count - firstPiece
    }
}
