import Foundation

/// Reading a tokenizer from files: the one boundary where untrusted JSON and text become a
/// validated `WordPieceTokenizer`, every problem a `TextError` naming the file.
extension WordPieceTokenizer {
    /// The largest tokenizer file read (Hugging Face's biggest vocabularies are a few MB).
    static let maxFileBytes = 256 << 20
    /// Ids must be below this (4,194,304): the id table is sized by the largest id, so a hostile
    /// file cannot make it huge; real vocabularies stay under 300,000.
    static let maxTokenID = 1 << 22

    /// A tokenizer from `url`: a Hugging Face `tokenizer.json`, a folder holding one (or, without
    /// it, a `vocab.txt`), or a BERT `vocab.txt` (settings from a `tokenizer_config.json` beside
    /// it; BERT's defaults otherwise). Files beside it are checked for agreement: a `vocab.txt`
    /// must list the same tokens as `tokenizer.json`, and a `config.json`'s `vocab_size` must
    /// leave room for every id.
    public init(contentsOf url: URL) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) else {
            throw TextError.missingFile(path: url.path, what: "a tokenizer.json, a vocab.txt or a folder holding one")
        }
        let folder = isFolder.boolValue ? url : url.deletingLastPathComponent()
        let file: URL
        if isFolder.boolValue {
            let json = url.appendingPathComponent("tokenizer.json"), vocab = url.appendingPathComponent("vocab.txt")
            if FileManager.default.fileExists(atPath: json.path) {
                file = json
            } else if FileManager.default.fileExists(atPath: vocab.path) {
                file = vocab
            } else {
                throw TextError.missingFile(path: json.path, what: "the tokenizer (this folder has neither tokenizer.json nor vocab.txt)")
            }
        } else {
            file = url
        }
        if file.pathExtension.lowercased() == "json" {
            self = try Self.fromTokenizerJSON(file)
            let vocab = folder.appendingPathComponent("vocab.txt")
            if FileManager.default.fileExists(atPath: vocab.path) { try checkAgrees(withVocabulary: vocab, tokenizerFile: file) }
        } else {
            self = try Self.fromVocabularyFile(file)
        }
        let config = folder.appendingPathComponent("config.json")
        if FileManager.default.fileExists(atPath: config.path) { try checkFits(modelConfiguration: config, tokenizerFile: file) }
    }

    // MARK: tokenizer.json

    static func fromTokenizerJSON(_ file: URL) throws -> WordPieceTokenizer {
        let path = file.path
        let root = try jsonObject(file)
        func malformed(_ problem: String) -> TextError { .malformed(path: path, problem: problem) }
        guard let model = root["model"] as? [String: Any] else { throw malformed("no \"model\" object (not a Hugging Face tokenizer.json?)") }
        let modelType = model["type"] as? String ?? "WordPiece"
        guard modelType == "WordPiece" else {
            throw TextError.unsupported(path: path, feature: "model type \"\(modelType)\"; only WordPiece (BERT) tokenizers are read")
        }
        guard let vocab = model["vocab"] as? [String: Any] else { throw malformed("\"model.vocab\" is missing or not an object of token → id") }
        guard !vocab.isEmpty else { throw malformed("\"model.vocab\" is empty") }
        var tokens: [(text: String, id: Int)] = []
        tokens.reserveCapacity(vocab.count)
        var seen = [Int: String]()
        for (text, value) in vocab {
            guard let id = integer(value), id >= 0, id < WordPieceTokenizer.maxTokenID else {
                throw malformed("\"model.vocab\" maps \"\(shortened(text))\" to \(value), not an id in 0..<\(WordPieceTokenizer.maxTokenID)")
            }
            if let other = seen[id] { throw malformed("\"model.vocab\" gives id \(id) to both \"\(shortened(other))\" and \"\(shortened(text))\"") }
            seen[id] = text
            tokens.append((text, id))
        }
        tokens.sort { $0.id < $1.id }
        let ids = Dictionary(uniqueKeysWithValues: tokens.map { ($0.text, $0.id) })
        let unknown = model["unk_token"] as? String ?? "[UNK]"
        guard let unknownID = ids[unknown] else { throw malformed("the unknown token \"\(shortened(unknown))\" (\"model.unk_token\") is not in \"model.vocab\"") }
        let prefix = model["continuing_subword_prefix"] as? String ?? "##"
        let maxChars = model["max_input_chars_per_word"].flatMap(integer) ?? 100
        guard maxChars > 0 else { throw malformed("\"model.max_input_chars_per_word\" must be positive") }

        let rules = try normalizerRules(root["normalizer"], path: path)
        switch root["pre_tokenizer"] {
        case let p as [String: Any] where p["type"] as? String == "BertPreTokenizer": break
        case nil, is NSNull: throw TextError.unsupported(path: path, feature: "no pre_tokenizer; only BertPreTokenizer is implemented")
        case let p as [String: Any]: throw TextError.unsupported(path: path, feature: "pre_tokenizer \"\(p["type"] as? String ?? "?")\"; only BertPreTokenizer is implemented")
        default: throw malformed("\"pre_tokenizer\" is not an object")
        }

        var added: [(text: String, id: Int)] = []
        if let list = root["added_tokens"], !(list is NSNull) {
            guard let list = list as? [[String: Any]] else { throw malformed("\"added_tokens\" is not a list of objects") }
            for (k, token) in list.enumerated() {
                guard let text = token["content"] as? String, !text.isEmpty, let id = token["id"].flatMap(integer), id >= 0, id < WordPieceTokenizer.maxTokenID else {
                    throw malformed("added_tokens[\(k)] needs a non-empty \"content\" and an \"id\" in 0..<\(WordPieceTokenizer.maxTokenID)")
                }
                for flag in ["normalized", "lstrip", "rstrip", "single_word"] where token[flag] as? Bool == true {
                    throw TextError.unsupported(path: path, feature: "added token \"\(shortened(text))\" with \"\(flag)\": true (only literal tokens matched in the raw text are implemented)")
                }
                if let other = ids[text], other != id { throw malformed("added token \"\(shortened(text))\" has id \(id) but the vocabulary gives it \(other)") }
                added.append((text, id))
            }
        }
        let (prefixIDs, suffixIDs) = try template(root["post_processor"], ids: ids, path: path)
        let known = Set(tokens.map(\.id) + added.map(\.id))
        if let stray = (prefixIDs + suffixIDs).first(where: { !known.contains($0) }) {
            throw malformed("the post_processor's template uses id \(stray), which no token has")
        }
        var padID = ids["[PAD]"] ?? 0
        var configuredMaxLength: Int? = nil
        if let padding = root["padding"] as? [String: Any], let value = padding["pad_id"], !(value is NSNull) {
            guard let id = integer(value), known.contains(id) else {
                throw malformed("\"padding.pad_id\" is \(String(describing: value).prefix(40)), not the id of a token in \"model.vocab\" or \"added_tokens\"")
            }
            padID = id
        }
        if let truncation = root["truncation"] as? [String: Any], let length = truncation["max_length"].flatMap(integer), length > 0 {
            configuredMaxLength = length
        }
        return WordPieceTokenizer(vocabulary: tokens, unknownID: unknownID, continuationPrefix: prefix, maxInputCharactersPerWord: maxChars,
                                  rules: rules, prefixIDs: prefixIDs, suffixIDs: suffixIDs, addedTokens: added, padID: padID,
                                  configuredMaxLength: configuredMaxLength)
    }

    /// The normalizer's settings: `BertNormalizer` (strip_accents null follows lowercase, as in
    /// `tokenizers`) or none at all.
    private static func normalizerRules(_ value: Any?, path: String) throws -> BertTextRules {
        guard let value, !(value is NSNull) else {
            return BertTextRules(cleanText: false, handleChineseCharacters: false, stripAccents: false, lowercase: false)
        }
        guard let normalizer = value as? [String: Any] else { throw TextError.malformed(path: path, problem: "\"normalizer\" is not an object") }
        let type = normalizer["type"] as? String ?? "?"
        guard type == "BertNormalizer" else { throw TextError.unsupported(path: path, feature: "normalizer \"\(type)\"; only BertNormalizer is implemented") }
        func flag(_ name: String, default fallback: Bool) throws -> Bool {
            switch normalizer[name] {
            case nil, is NSNull: return fallback
            case let b as Bool: return b
            default: throw TextError.malformed(path: path, problem: "\"normalizer.\(name)\" is not true, false or null")
            }
        }
        let lowercase = try flag("lowercase", default: true)
        return BertTextRules(cleanText: try flag("clean_text", default: true),
                             handleChineseCharacters: try flag("handle_chinese_chars", default: true),
                             stripAccents: try flag("strip_accents", default: lowercase), lowercase: lowercase)
    }

    /// The ids before and after the text in a single-sequence template (`TemplateProcessing`,
    /// `BertProcessing`, or none).
    private static func template(_ value: Any?, ids: [String: Int], path: String) throws -> ([Int], [Int]) {
        guard let value, !(value is NSNull) else { return ([], []) }
        func malformed(_ problem: String) -> TextError { .malformed(path: path, problem: problem) }
        guard let processor = value as? [String: Any] else { throw malformed("\"post_processor\" is not an object") }
        switch processor["type"] as? String {
        case "BertProcessing":
            guard let cls = processor["cls"] as? [Any], cls.count == 2, let clsID = integer(cls[1]),
                  let sep = processor["sep"] as? [Any], sep.count == 2, let sepID = integer(sep[1]) else {
                throw malformed("\"post_processor\" (BertProcessing) needs \"cls\" and \"sep\" as [token, id]")
            }
            return ([clsID], [sepID])
        case "TemplateProcessing":
            guard let single = processor["single"] as? [[String: Any]] else { throw malformed("\"post_processor.single\" is not a list") }
            let specials = processor["special_tokens"] as? [String: Any] ?? [:]
            var before: [Int] = [], after: [Int] = [], sawSequence = false
            for item in single {
                if let sequence = item["Sequence"] as? [String: Any] {
                    guard sequence["id"] as? String == "A", !sawSequence else { throw malformed("\"post_processor.single\" must hold the sequence A exactly once") }
                    sawSequence = true
                } else if let special = item["SpecialToken"] as? [String: Any], let name = special["id"] as? String {
                    let tokenIDs: [Int]
                    if let entry = specials[name] as? [String: Any], let list = entry["ids"] as? [Any] {
                        tokenIDs = try list.map { value in
                            guard let id = integer(value), id >= 0 else { throw malformed("special token \"\(shortened(name))\" has an id that is not a non-negative integer") }
                            return id
                        }
                    } else if let id = ids[name] {
                        tokenIDs = [id]
                    } else {
                        throw malformed("the template's special token \"\(shortened(name))\" is neither in \"special_tokens\" nor in the vocabulary")
                    }
                    if sawSequence { after += tokenIDs } else { before += tokenIDs }
                } else {
                    throw malformed("\"post_processor.single\" holds an item that is neither a Sequence nor a SpecialToken")
                }
            }
            guard sawSequence else { throw malformed("\"post_processor.single\" has no sequence A") }
            return (before, after)
        case let other:
            throw TextError.unsupported(path: path, feature: "post_processor \"\(other ?? "?")\"; TemplateProcessing and BertProcessing are implemented")
        }
    }

    // MARK: vocab.txt

    /// BERT's vocabulary file: one token a line, the id its line number from 0. Settings from
    /// `tokenizer_config.json` beside it when present (`do_lower_case`, `strip_accents`,
    /// `tokenize_chinese_chars`), BERT-base-uncased's otherwise.
    static func fromVocabularyFile(_ file: URL) throws -> WordPieceTokenizer {
        let path = file.path
        let data = try readBounded(file)
        guard let text = String(data: data, encoding: .utf8) else { throw TextError.malformed(path: path, problem: "not UTF-8 text") }
        var tokens: [(text: String, id: Int)] = []
        var ids: [String: Int] = [:]
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        if lines.last?.isEmpty == true { lines.removeLast() }
        for (id, line) in lines.enumerated() where !line.isEmpty {
            let token = String(line)
            ids[token] = id  // a repeated token keeps its last line, as transformers' load_vocab does
        }
        tokens = ids.map { (text: $0.key, id: $0.value) }.sorted { $0.id < $1.id }
        guard !tokens.isEmpty else { throw TextError.malformed(path: path, problem: "no tokens (an empty vocabulary file)") }
        for required in ["[UNK]", "[CLS]", "[SEP]"] where ids[required] == nil {
            throw TextError.malformed(path: path, problem: "the vocabulary has no \(required) token (not a BERT vocab.txt?)")
        }
        var lowercase = true, strip: Bool? = nil, chinese = true
        let configFile = file.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: configFile.path) {
            let config = try jsonObject(configFile)
            if let b = config["do_lower_case"] as? Bool { lowercase = b }
            if let b = config["strip_accents"] as? Bool { strip = b }
            if let b = config["tokenize_chinese_chars"] as? Bool { chinese = b }
        }
        let rules = BertTextRules(cleanText: true, handleChineseCharacters: chinese, stripAccents: strip ?? lowercase, lowercase: lowercase)
        let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].compactMap { name in ids[name].map { (text: name, id: $0) } }
        return WordPieceTokenizer(vocabulary: tokens, unknownID: ids["[UNK]"]!, continuationPrefix: "##", maxInputCharactersPerWord: 100,
                                  rules: rules, prefixIDs: [ids["[CLS]"]!], suffixIDs: [ids["[SEP]"]!], addedTokens: specials,
                                  padID: ids["[PAD]"] ?? 0, configuredMaxLength: nil)
    }

    // MARK: Agreement between files

    /// `vocab.txt` beside a `tokenizer.json` must give every line's token the line's id.
    private func checkAgrees(withVocabulary vocab: URL, tokenizerFile: URL) throws {
        let other = try Self.fromVocabularyFile(vocab)
        for id in 0..<max(vocabularySize, other.vocabularySize) {
            let mine = token(for: id), theirs = other.token(for: id)
            guard mine == theirs || theirs == nil && id >= other.vocabularySize else {
                throw TextError.mismatch(path: tokenizerFile.path, otherPath: vocab.path,
                                         problem: "id \(id) is \(mine.map { "\"\(shortened($0))\"" } ?? "no token") in the first, \(theirs.map { "\"\(shortened($0))\"" } ?? "no token") in the second")
            }
        }
    }

    /// A model's `config.json` must have an embedding row for every token id.
    private func checkFits(modelConfiguration config: URL, tokenizerFile: URL) throws {
        let object = try Self.jsonObject(config)
        guard let size = object["vocab_size"].flatMap(Self.integer) else { return }
        guard size >= vocabularySize else {
            throw TextError.mismatch(path: tokenizerFile.path, otherPath: config.path,
                                     problem: "the tokenizer has ids up to \(vocabularySize - 1), the model's vocab_size is \(size)")
        }
    }

    // MARK: Helpers

    static func readBounded(_ file: URL) throws -> Data {
        let attributes = try? FileManager.default.attributesOfItem(atPath: file.path)
        if let type = attributes?[.type] as? FileAttributeType, type != .typeRegular {
            throw TextError.malformed(path: file.path, problem: "not a regular file")
        }
        if let size = attributes?[.size] as? Int, size > maxFileBytes {
            throw TextError.malformed(path: file.path, problem: "\(size) bytes, more than the \(maxFileBytes)-byte limit for a tokenizer file")
        }
        do { return try Data(contentsOf: file) } catch {
            throw TextError.malformed(path: file.path, problem: "cannot read (\(error.localizedDescription))")
        }
    }

    static func jsonObject(_ file: URL) throws -> [String: Any] {
        let data = try readBounded(file)
        let value: Any
        do { value = try JSONSerialization.jsonObject(with: data) } catch {
            throw TextError.malformed(path: file.path, problem: "not valid JSON (\(error.localizedDescription))")
        }
        guard let object = value as? [String: Any] else { throw TextError.malformed(path: file.path, problem: "the JSON is not an object") }
        return object
    }

    /// A JSON number that is an exact integer (JSONSerialization gives NSNumber).
    static func integer(_ value: Any) -> Int? {
        if let i = value as? Int { return i }
        if let d = value as? Double, d.isFinite, d == d.rounded(), abs(d) < 1e15 { return Int(d) }
        return nil
    }
}

/// A string for an error message: at most 40 characters.
func shortened(_ s: String) -> String { s.count > 40 ? String(s.prefix(37)) + "…" : s }
