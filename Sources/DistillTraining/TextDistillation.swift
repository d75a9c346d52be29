import DistillData
import DistillNN
import DistillTensor
import DistillText
import Foundation

// Distilling a sentence encoder (all-MiniLM-L6-v2) into a student on a text corpus with a
// held-out split: Debian's package descriptions (`distill data debian-packages`). The student
// learns the teacher's sentence vectors for the training split's descriptions and summaries
// (label-free, `EmbeddingObjective`), through the one training loop (`Trainer`). It is then
// measured on the test split on two tasks, beside the teacher:
//   - retrieval: each summary is a query, the long descriptions the corpus (recall@10, MRR);
//   - section classification: the teacher's own section head (a linear layer trained here on the
//     teacher's vectors) applied to the model's vectors of the test descriptions.

/// One split of a text corpus: documents, their one-line summaries (the queries) and labels.
public struct TextSplit: Sendable {
    public var descriptions: [String]
    public var summaries: [String]
    public var labels: [Int]
    public var count: Int { descriptions.count }
}

/// A text corpus with train and test splits and its class names.
public struct TextCorpus: Sendable {
    public var train: TextSplit
    public var test: TextSplit
    public var classes: [String]

    /// The CSV of `distill data debian-packages`; `trainLimit` and `testLimit` keep the first rows
    /// of each split (quick runs). Sections become classes as `SectionLabels` decides (on the
    /// train split only).
    public static func debianPackages(_ url: URL, trainLimit: Int? = nil, testLimit: Int? = nil) throws -> TextCorpus {
        let entries = try DebianPackages.read(url)
        let labels = SectionLabels(entries: entries)
        func split(_ which: DebianPackages.Split, limit: Int?) -> TextSplit {
            var chosen = entries.filter { $0.split == which }
            if let limit { chosen = Array(chosen.prefix(limit)) }
            return TextSplit(descriptions: chosen.map(\.description), summaries: chosen.map(\.summary),
                             labels: chosen.map { labels.index(for: $0.section) })
        }
        let corpus = TextCorpus(train: split(.train, limit: trainLimit), test: split(.test, limit: testLimit), classes: labels.classes)
        guard corpus.train.count > 0 else { throw TextError.malformed(path: url.path, problem: "no training rows (split = train): the corpus is empty") }
        guard corpus.test.count > 0 else { throw TextError.malformed(path: url.path, problem: "no test rows (split = test): nothing to measure on") }
        return corpus
    }
}

extension TextCorpus {
    /// Recall@10 retrieves among the test split's descriptions: with 10 or fewer, every query
    /// finds its own in the top 10 and the figure reads 100% whatever the model.
    public var smallTestWarning: String? {
        test.count > 10 ? nil : "WARNING: the test split has \(test.count) row\(test.count == 1 ? "" : "s"): recall@10 reads 100% for any model and section accuracy rests on \(test.count == 1 ? "one text" : "\(test.count) texts"); give more test rows (--test-limit) for figures that mean something"
    }
}

/// What the runner needs of a teacher: its tokenizer (the student reads the same token ids) and
/// a function from texts to L2-normalised sentence vectors [n, D].
public struct TextTeacher {
    public var name: String
    public var parameterCount: Int
    public var bytes: Int
    public var tokenizer: WordPieceTokenizer
    /// The tokenizer's file (tokenizer.json or vocab.txt), copied beside the student so that the
    /// student can embed texts on its own (`TextStudent`).
    public var tokenizerFile: URL?
    /// The teacher as a transformer, when it is one: `bert:` students copy its layers and
    /// hidden-state transfer runs it on each batch. nil for other teachers.
    public var encoder: BertEncoder?
    public var embed: ([String]) throws -> Tensor

    public init(name: String, parameterCount: Int, bytes: Int, tokenizer: WordPieceTokenizer, tokenizerFile: URL? = nil,
                encoder: BertEncoder? = nil, embed: @escaping ([String]) throws -> Tensor) {
        self.name = name; self.parameterCount = parameterCount; self.bytes = bytes; self.tokenizer = tokenizer
        self.tokenizerFile = tokenizerFile; self.encoder = encoder; self.embed = embed
    }
}

/// The teacher's vectors of every text a run uses, computed once and kept in a safetensors file
/// whose metadata holds a fingerprint of the texts and the teacher, so a changed corpus, limit or
/// teacher recomputes them instead of reusing stale ones.
struct TeacherTextVectors {
    var trainDescriptions: Tensor, trainSummaries: Tensor, testDescriptions: Tensor, testSummaries: Tensor
    static let names = ["train_descriptions", "train_summaries", "test_descriptions", "test_summaries"]

    static func fingerprint(_ corpus: TextCorpus, teacher: String, maxLength: Int) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a over every text, in order
        for text in [[teacher, "\(maxLength)"], corpus.train.descriptions, corpus.train.summaries, corpus.test.descriptions, corpus.test.summaries].joined() {
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
            hash = (hash ^ 0xFF) &* 0x100_0000_01B3
        }
        return String(hash, radix: 16)
    }

    /// The vectors from `cache` when it holds these texts' (same fingerprint), else computed, and
    /// written to `cache` when `writeCache` (`distill eval` only reads it: a run with other limits
    /// must not replace the cache of a larger one).
    static func load(_ corpus: TextCorpus, teacher: TextTeacher, maxLength: Int, cache: URL?, writeCache: Bool = true, quiet: Bool,
                     log: (String) -> Void) throws -> TeacherTextVectors {
        let key = fingerprint(corpus, teacher: teacher.name, maxLength: maxLength)
        let texts = [corpus.train.descriptions, corpus.train.summaries, corpus.test.descriptions, corpus.test.summaries]
        if let cache, FileManager.default.fileExists(atPath: cache.path) {
            // Only a teacher-vector cache is read, or replaced: never a model, a corpus or a folder.
            let existing = (try? Data(contentsOf: cache)).flatMap { try? Safetensors.decode($0, name: cache.path) }
            guard let (tensors, metadata) = existing, let stored = metadata["fingerprint"] else {
                throw TensorError("--teacher-cache \(cache.path): exists and is not a teacher-vector cache (a safetensors file with a 'fingerprint' entry that distill text-kd wrote); name another file, or remove it")
            }
            if stored == key {
                let v = names.map { tensors[$0] }
                let width = try teacher.embed(["a"]).shape.last ?? 0  // the teacher's vector width, from one short text
                for (i, t) in v.enumerated() {
                    guard let t, t.rank == 2, t.shape[0] == texts[i].count, t.shape[1] == width, t.isFinite else {
                        throw TensorError("--teacher-cache \(cache.path): '\(names[i])' is \(v[i].map { "\($0.shape)\($0.isFinite ? "" : " with non-finite values")" } ?? "missing"), not [\(texts[i].count), \(width)] finite vectors of these texts; remove the file to compute them again")
                    }
                }
                log("teacher vectors: \(cache.path) (computed before for the same texts)")
                return TeacherTextVectors(trainDescriptions: v[0]!, trainSummaries: v[1]!, testDescriptions: v[2]!, testSummaries: v[3]!)
            }
        }
        log("computing the teacher's vectors of \(texts.map(\.count).reduce(0, +)) texts once (\(teacher.name))")
        let started = Date()
        // In chunks of 512 texts, for a progress bar over the whole set (a multiple of
        // `embeddingBatch`: a student's batches are the same as without chunks).
        let total = texts.map(\.count).reduce(0, +)
        let progress = ProgressBar(title: "teacher vectors", total: total, quiet: quiet)
        var done = 0
        let vectors: [Tensor] = try texts.map { part in
            var chunks: [Tensor] = []
            var start = 0
            while start < part.count {
                let end = min(part.count, start + 512)
                chunks.append(try teacher.embed(Array(part[start..<end])))
                done += end - start
                progress.update(done, unitsPerSecond: Double(done) / max(Date().timeIntervalSince(started), 1e-9))
                start = end
            }
            return chunks.count == 1 ? chunks[0] : Tensor.concat(chunks, axis: 0)
        }
        log(String(format: "teacher vectors in %.1f min", Date().timeIntervalSince(started) / 60))
        if let cache, writeCache {
            try Safetensors.save(Dictionary(uniqueKeysWithValues: zip(names, vectors)), to: cache, metadata: ["fingerprint": key])
        }
        return TeacherTextVectors(trainDescriptions: vectors[0], trainSummaries: vectors[1], testDescriptions: vectors[2], testSummaries: vectors[3])
    }
}

/// A model's figures on the test split: retrieval and section accuracy.
public struct TextReport: TestReport, Sendable {
    public var retrieval: RetrievalScores
    /// The teacher's section head applied to this model's vectors: how well they stand in for the teacher's.
    public var sectionAccuracy: Double
    /// Mean cosine between the model's and the teacher's vectors of the test descriptions.
    public var teacherCosine: Double

    public var recallAt10: Double { retrieval.recall(at: 10) ?? 0 }
    public var score: Double { recallAt10 }
    public var metrics: [String: Any] {
        ["test_recall_at_10": recallAt10, "test_mrr": retrieval.meanReciprocalRank, "test_section_accuracy_teacher_head": sectionAccuracy,
         "test_teacher_cosine": teacherCosine]
    }
    public var line: String {
        String(format: "recall@10 %.2f%%  MRR %.4f  sections (teacher's head) %.2f%%  cos(teacher) %.4f", recallAt10 * 100, retrieval.meanReciprocalRank,
               sectionAccuracy * 100, teacherCosine)
    }
}

/// A text model measured on the test split, with its size and speed.
public struct TextModelRow: Sendable {
    public var role: String
    public var spec: String
    public var parameters: Int
    public var bytes: Int
    /// The test split's figures (`sectionAccuracy` there: the teacher's head on this model's vectors).
    public var report: TextReport
    /// A linear probe's section accuracy: a linear layer trained on this model's own vectors of
    /// the training descriptions, tested on the test descriptions (the same recipe for every model).
    public var sectionAccuracy: Double
    /// With `--section-kd`: the accuracy of the student's own section head, trained by logit KD
    /// from the teacher's head (`SectionDistillation`).
    public var sectionHeadAccuracy: Double? = nil
    /// Sentences per second at batch 32 and the median batch-1 latency, tokenization included.
    public var sentencesPerSecond: Double
    public var latencyMicrosecondsP50: Double
}

/// A text encoder run on both halves of each row: [N, 2L] (two texts' token ids side by side)
/// → [N, 2D], for `ContrastivePairObjective`.
final class PairEncoder: Module {
    let encoder: Module
    init(_ encoder: Module) { self.encoder = encoder }
    override func forward(_ x: Tensor) -> Tensor {
        let length = x.shape[1] / 2
        return Tensor.concat([encoder(x.slice(axis: 1, start: 0, length: length)), encoder(x.slice(axis: 1, start: length, length: length))], axis: 1)
    }
}

/// A text student written by `distill text-kd`: its model file (`task` = sentence-embedding) with
/// the teacher's tokenizer beside it. It embeds texts as the teacher does: token ids, the model,
/// L2 normalisation.
public struct TextStudent {
    public static let task = "sentence-embedding"
    static let tokenizerKey = "tokenizer"
    public let model: Sequential
    public let tokenizer: WordPieceTokenizer
    /// Tokens per text the student was trained with.
    public let maxLength: Int
    public var dimension: Int { numClasses }
    let numClasses: Int
    /// A `bert:` student's inference plan (packed tokens, no graph), built once when loaded.
    let plan: TransformerInferencePlan?

    /// The student in `url` (a model file or a run folder), or nil when the file is another kind
    /// of model. A missing tokenizer is an error naming the file.
    public static func load(_ url: URL) throws -> TextStudent? {
        let file = FileKind(url.path) == .safetensors ? url : RunFolder(url).bestModel
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        let (model, info) = try loadModel(file)
        guard info.extra["task"] == task else { return nil }
        guard let name = info.extra[tokenizerKey], info.inputShape.count == 1 else {
            throw TextError.malformed(path: file.path, problem: "a text student without its tokenizer (the tokenizer file name is not recorded)")
        }
        let tokenizerFile = file.deletingLastPathComponent().appendingPathComponent(name)
        let tokenizer = try WordPieceTokenizer(contentsOf: tokenizerFile)
        // Every id the tokenizer can give must index the student's embedding table (a larger one
        // would read past it).
        let encoder = TransformerStudentSpec.encoder(of: model)
        let bag = (model.layers.first as? TokenBag)
        if let vocabulary = encoder?.config.vocabularySize ?? bag?.vocabulary, tokenizer.vocabularySize > vocabulary {
            throw TextError.mismatch(path: tokenizerFile.path, otherPath: file.path,
                                     problem: "the tokenizer has ids up to \(tokenizer.vocabularySize - 1), the student's vocabulary is \(vocabulary)")
        }
        model.eval()
        return TextStudent(model: model, tokenizer: tokenizer, maxLength: info.inputShape[0], numClasses: info.numClasses,
                           plan: encoder.map { TransformerInferencePlan($0) })
    }

    /// A saved model: `bert:` students are rebuilt from their spec here (`TransformerStudentSpec`),
    /// every other model by `SavedModel.load`.
    static func loadModel(_ file: URL) throws -> (model: Sequential, info: SavedModel) {
        let data: Data
        do { data = try Data(contentsOf: file, options: .mappedIfSafe) } catch {
            throw TextError.malformed(path: file.path, problem: "cannot read (\(error.localizedDescription))")
        }
        let (tensors, metadata) = try Safetensors.decode(data, name: file.path)
        guard let spec = metadata["distillkit.spec"], spec.hasPrefix(TransformerStudentSpec.prefix) else { return try SavedModel.decode(data, name: file.path) }
        let architecture: TransformerStudentSpec
        do { architecture = try TransformerStudentSpec(spec: spec) } catch let error as TensorError {
            throw TextError.malformed(path: file.path, problem: error.message)
        }
        // The spec may not ask for more than the file holds: a corrupt one cannot make us allocate gigabytes.
        let stored = tensors.values.reduce(0) { $0 + $1.count }
        guard architecture.parameterCount == stored, let length = metadata["distillkit.input_shape"].flatMap(Int.init),
              (3...architecture.positions).contains(length) else {
            throw TextError.malformed(path: file.path, problem: "\(stored) stored values for '\(spec)' (\(architecture.parameterCount) expected) or an input length outside 3...\(architecture.positions)")
        }
        let model = try architecture.build(seed: 0)
        try model.loadStateDict(tensors, source: file.path)
        let extra = metadata.filter { !$0.key.hasPrefix("distillkit.") && $0.key != "format" }
        return (model, SavedModel(spec: spec, inputShape: [length], numClasses: architecture.outputs, extra: extra))
    }

    /// L2-normalised vectors [n, D] for `texts`; `truncated` counts the texts cut to `maxLength` tokens.
    public func embed(_ texts: [String]) -> (vectors: Tensor, truncated: Int) {
        let (ids, truncated) = TextDistillation.tokenIDs(texts, tokenizer: tokenizer, maxLength: maxLength)
        return (TextDistillation.normalizedVectors(model, ids: ids, plan: plan), truncated)
    }

    public var parameterCount: Int { model.parameterCount }
}

public struct TextDistillationSettings {
    public var corpus: URL
    public var student: String
    public var maxLength = 128
    public var trainLimit: Int?
    public var testLimit: Int?
    public var options = TrainingOptions()
    public var cosineWeight: Float = 1
    public var mseWeight: Float = 0
    /// Also train the same architecture without the teacher (contrastive, on the training split's
    /// (description, summary) pairs), the baseline distillation must beat.
    public var scratch = false
    /// Continue the interrupted run in `output` (its settings must be the same).
    public var resume = false
    /// Where the teacher's vectors are kept between runs (default: beside the corpus).
    public var teacherCache: URL?
    public var output: URL?
    /// `bert:` students: the teacher's layer for each student layer (nil: the uniform map,
    /// `TransformerStudentSpec.uniformLayerMap`), used to initialise the student and to pair
    /// layers for hidden-state transfer.
    public var layerMap: [Int]?
    /// `bert:` students: start from the teacher's embeddings and mapped layers (true), from BERT's
    /// random initialisation (false), or the former when the sizes allow it (nil).
    public var initFromTeacher: Bool?
    /// `bert:` students narrower than the teacher: start the embeddings from the teacher's,
    /// projected onto the leading principal directions of its word embeddings, and the linear
    /// map to the teacher's width from the same directions (the layers start random).
    public var projectEmbeddings = false
    /// Weight of hidden-state transfer (`hiddenStateLoss` between mapped layers; 0: off). The
    /// teacher then runs on every batch, since only its pooled vectors are cached.
    public var hiddenWeight: Float = 0
    /// Weight of attention transfer (`attentionTransferLoss`, MiniLM; 0: off). The teacher then
    /// runs on every batch.
    public var attentionWeight: Float = 0
    /// The layers attention transfer compares: the last of each (MiniLM), or every student layer
    /// with its mapped teacher layer (`layerMap`).
    public var attentionLayers = AttentionLayers.last
    public enum AttentionLayers: String, Sendable, CaseIterable { case last, mapped }
    /// Weight of logit KD for a section head on the student (`SectionDistillation`; 0: off).
    public var sectionWeight: Float = 0
    /// Distil on the descriptions and summaries of the first N training rows only; the teacher's
    /// cached vectors, its section head and the linear probes keep the whole training slice (so
    /// the cache of a larger run is reused). nil: all of them.
    public var transferLimit: Int?

    public init(corpus: URL, student: String) {
        self.corpus = corpus
        self.student = student
        options.epochs = 10
        options.batchSize = 64
    }
}

public struct TextDistillationResult {
    public var rows: [TextModelRow]
    public var minutes: Double
    public var truncated: Int
}

public enum TextDistillation {
    /// `bag:D` is shorthand for a token bag of width D over the teacher's vocabulary with 2^15
    /// bigram buckets, giving the teacher's vector width.
    public static func resolveStudent(_ spec: String, vocabulary: Int, width: Int) -> String {
        if spec.hasPrefix("bag:"), let d = Int(spec.dropFirst(4)) { return "bag:\(vocabulary)-\(1 << 15)-\(d)-\(width)" }
        return spec
    }

    /// A new student for `settings` (seeded), and for a `bert:` student its architecture and the
    /// teacher's layers it was given (nil: random initialisation). `fromTeacher: false` builds
    /// the scratch twin (never copies).
    static func makeStudent(_ settings: TextDistillationSettings, teacher: TextTeacher, width: Int, fromTeacher: Bool) throws
        -> (model: Sequential, spec: String, transformer: TransformerStudentSpec?, copiedLayers: [Int]?) {
        guard settings.student.hasPrefix(TransformerStudentSpec.prefix) else {
            guard settings.layerMap == nil, settings.initFromTeacher == nil, settings.hiddenWeight == 0, settings.attentionWeight == 0,
                  !settings.projectEmbeddings else {
                throw TextError.unsupported(path: "--student \(settings.student)", feature: "--layer-map, --init, --hidden-weight and --attention-weight (they are for bert: students)")
            }
            guard ["bag:", "mlp:", "layers:"].contains(where: settings.student.hasPrefix) else {
                throw TextError.invalidArgument("unknown text student '\(settings.student.prefix(80))'; valid: bag:WIDTH (a token bag, e.g. bag:64), bert:LAYERS-WIDTH or bert:LAYERS-WIDTH-HEADS-FFN (a transformer, e.g. bert:2-384)")
            }
            let spec = resolveStudent(settings.student, vocabulary: teacher.tokenizer.vocabularySize, width: width)
            let model = try ModelZoo.build(spec, inputShape: [settings.maxLength], numClasses: width, seed: settings.options.seed)
            // It reads --max-length token ids per text and gives the teacher's width, before any step.
            _ = try ModelShapes.check(model, inputShape: [settings.maxLength], numClasses: width, what: "--student \(settings.student.prefix(80)) (reading --max-length \(settings.maxLength) token ids)")
            return (model, spec, nil, nil)
        }
        guard let teacherEncoder = teacher.encoder else {
            throw TextError.unsupported(path: "--student \(settings.student)", feature: "a bert: student of a teacher that is not a transformer (\(teacher.name))")
        }
        let t = teacherEncoder.config
        var architecture: TransformerStudentSpec
        do { architecture = try TransformerStudentSpec.resolve(settings.student, teacher: t) } catch let error as TensorError {
            throw TextError.invalidArgument(error.message)
        }
        architecture.outputs = width
        guard settings.maxLength <= architecture.positions else {
            throw TextError.malformed(path: "--max-length", problem: "\(settings.maxLength) tokens, more than the student's \(architecture.positions) positions")
        }
        let map = settings.layerMap ?? TransformerStudentSpec.uniformLayerMap(studentLayers: architecture.layers, teacherLayers: t.layers)
        do { try architecture.checkLayerMap(map, teacher: t) } catch let error as TensorError {
            throw TextError.invalidArgument(error.message)
        }
        let model = try architecture.build(seed: settings.options.seed)
        let fits = architecture.hidden == t.hiddenSize && architecture.heads == t.heads && architecture.intermediate == t.intermediateSize
        if settings.projectEmbeddings {
            guard architecture.hidden < t.hiddenSize, settings.initFromTeacher != true else {
                throw TextError.invalidArgument("--init projected is for bert: students narrower than the teacher (\(t.hiddenSize)); bert:\(architecture.layers)-\(architecture.hidden) is not")
            }
            guard fromTeacher else { return (model, architecture.spec, architecture, nil) }
            let directions = principalDirections(teacherEncoder.embeddings.wordEmbeddings.weight, count: architecture.hidden, seed: settings.options.seed)
            do { try TransformerStudentSpec.encoder(of: model)!.projectEmbeddings(from: teacherEncoder, onto: directions) } catch let error as TensorError {
                throw TextError.invalidArgument(error.message)
            }
            if let projection = model.layers.last as? Linear, model.layers.count == 2, projection.weight.shape == [t.hiddenSize, architecture.hidden] {
                projection.weight.assign(directions)
                projection.bias?.assign(Tensor.zeros([t.hiddenSize]))
            }
            return (model, architecture.spec, architecture, nil)
        }
        let copy = settings.initFromTeacher ?? fits
        guard fromTeacher && copy else { return (model, architecture.spec, architecture, nil) }
        guard fits else {
            throw TextError.mismatch(path: "--student \(settings.student)", otherPath: teacher.name, problem: """
                width \(architecture.hidden), \(architecture.heads) heads and a \(architecture.intermediate)-wide feed-forward block cannot take \
                the teacher's layers (\(t.hiddenSize) wide, \(t.heads) heads, \(t.intermediateSize)) without a projection; use \
                bert:\(architecture.layers)-\(t.hiddenSize) to start from them, or --init random (the layer map then only pairs layers for --hidden-weight)
                """)
        }
        let (_, skipped) = try TransformerStudentSpec.encoder(of: model)!.copyLayers(from: teacherEncoder, layerMap: Dictionary(uniqueKeysWithValues: map.enumerated().map { ($0.offset, $0.element) }))
        precondition(skipped.isEmpty, "copyLayers skipped \(skipped) although the sizes match")
        return (model, architecture.spec, architecture, map)
    }

    /// Token ids of `texts` as a [n, L] Float tensor, L = `maxLength` (0 = padding).
    public static func tokenIDs(_ texts: [String], tokenizer: WordPieceTokenizer, maxLength: Int) -> (ids: Tensor, truncated: Int) {
        let out = Tensor.zeros([texts.count, maxLength])
        var truncated = 0
        for (r, text) in texts.enumerated() {
            let encoded = tokenizer.encode(text, maxLength: maxLength)
            if encoded.wasTruncated { truncated += 1 }
            for (j, id) in encoded.ids.enumerated() { out.data[r * maxLength + j] = Float(id) }
        }
        return (out, truncated)
    }

    /// Texts per batch when a student embeds a split. `distill eval` embeds in the same batches, so
    /// that it reproduces text-kd's figures exactly: a text's vector may differ in its last bit with
    /// its batch (BLAS kernels can sum a product's rows differently by their position in the block,
    /// as OpenBLAS's AVX2 kernels do), and a retrieval rank can turn on such a tie.
    static let embeddingBatch = 256

    /// The L2-normalised vectors of `ids` [n, L] through `model`, in batches. A `bert:` student
    /// runs through `plan` (built from its current weights when nil): its texts packed without
    /// padding, no graph.
    static func normalizedVectors(_ model: Module, ids: Tensor, plan: TransformerInferencePlan? = nil,
                                  batchSize: Int = embeddingBatch) -> Tensor {
        if let encoder = TransformerStudentSpec.encoder(of: model) {
            return transformerVectors(model as! Sequential, ids: ids, plan: plan ?? TransformerInferencePlan(encoder), batchSize: batchSize)
        }
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        let (n, length) = (ids.shape[0], ids.shape[1])
        var parts: [Tensor] = []
        var start = 0
        while start < n {
            let end = min(n, start + batchSize)
            let batch = Tensor(shape: [end - start, length], scalars: Array(UnsafeBufferPointer(start: ids.data + start * length, count: (end - start) * length)))
            parts.append(withNoGrad { l2Normalized(model(batch), axis: 1) })
            start = end
        }
        return parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 0)
    }

    static func transformerVectors(_ model: Sequential, ids: Tensor, plan: TransformerInferencePlan, batchSize: Int) -> Tensor {
        let (n, length) = (ids.shape[0], ids.shape[1])
        var parts: [Tensor] = []
        var start = 0
        while start < n {
            let end = min(n, start + batchSize)
            let sequences = (start..<end).map { r in
                Array((0..<length).lazy.map { Int(ids.data[r * length + $0]) }.prefix { $0 != 0 })
            }
            var vectors = plan.embed(sequences: sequences)
            if model.layers.count > 1 { vectors = withNoGrad { model.layers[1](vectors) } }  // the projection to the teacher's width
            parts.append(withNoGrad { l2Normalized(vectors, axis: 1) })
            start = end
        }
        return parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 0)
    }

    /// A linear section classifier on `train` vectors [n, D] (cross-entropy, 20 epochs of Adam),
    /// scored on `test`: the teacher's section head, and each model's linear probe.
    static func sectionHead(train: Tensor, test: Tensor, corpus: TextCorpus, seed: UInt64) throws -> (head: Sequential, accuracy: Double) {
        let width = train.shape[1], classes = corpus.classes.count
        let trainSet = try LabeledDataset(features: train, labels: corpus.train.labels, numClasses: classes)
        let testSet = try LabeledDataset(features: test, labels: corpus.test.labels, numClasses: classes)
        var options = TrainingOptions()
        options.epochs = 20
        options.batchSize = 128
        options.learningRate = 3e-3
        options.seed = seed
        options.quiet = true
        let spec = "mlp:\(width)-\(classes)"
        let head = try ModelZoo.build(spec, inputShape: [width], numClasses: classes, seed: seed)
        let trainer = try Trainer(student: head, studentInfo: SavedModel(spec: spec, inputShape: [width], numClasses: classes),
                                  teachers: [], objective: try DistillationObjective(terms: [LossTerm(.ce)]), options: options,
                                  train: trainSet, test: testSet, run: nil)
        let summary = try trainer.fit()
        head.eval()
        return (head, summary.test.accuracy)
    }

    /// The figures of vectors for the test split (descriptions and summaries).
    static func report(descriptions: Tensor, summaries: Tensor, teacher: TeacherTextVectors, head: Module, corpus: TextCorpus) throws -> TextReport {
        let retrieval = try TextMetrics.retrieval(queries: summaries, corpus: descriptions)
        let cosine = withNoGrad { (descriptions * teacher.testDescriptions).sum(axis: 1).mean().item() }
        return TextReport(retrieval: retrieval, sectionAccuracy: accuracy(of: head, on: descriptions, corpus: corpus), teacherCosine: Double(cosine))
    }

    /// The share of the test descriptions whose section `head` predicts from `vectors`.
    static func accuracy(of head: Module, on vectors: Tensor, corpus: TextCorpus) -> Double {
        let logits = withNoGrad { head(vectors) }
        let classes = logits.shape[1]
        let predicted = (0..<logits.shape[0]).map { r in
            (0..<classes).max { logits.data[r * classes + $0] < logits.data[r * classes + $1] }!
        }
        return TextMetrics.accuracy(predicted: predicted, labels: corpus.test.labels)
    }

    /// The student's objective: the pooled-vector terms, and the options `settings` asks for.
    static func studentObjective(_ settings: TextDistillationSettings, teacher: TextTeacher, transformer: TransformerStudentSpec?,
                                 trainIDs: Tensor, sectionHead: Module, teacherVectors: Tensor) throws -> TextStudentObjective {
        var hidden: HiddenStateTransfer?
        if settings.hiddenWeight > 0 {
            guard let transformer, let teacherEncoder = teacher.encoder else {
                throw TextError.unsupported(path: "--hidden-weight", feature: "hidden-state transfer without a bert: student and a transformer teacher")
            }
            let map = settings.layerMap ?? TransformerStudentSpec.uniformLayerMap(studentLayers: transformer.layers, teacherLayers: teacherEncoder.config.layers)
            hidden = HiddenStateTransfer(pairs: map.enumerated().map { ("0.encoder.layer.\($0.offset)", "0.encoder.layer.\($0.element)") },
                                         studentWidth: transformer.hidden, teacherWidth: teacherEncoder.config.hiddenSize, ids: trainIDs,
                                         weight: settings.hiddenWeight, seed: settings.options.seed)
        }
        var attention: AttentionTransfer?
        if settings.attentionWeight > 0 {
            guard let transformer, let teacherEncoder = teacher.encoder else {
                throw TextError.unsupported(path: "--attention-weight", feature: "attention transfer without a bert: student and a transformer teacher")
            }
            let t = teacherEncoder.config
            guard t.heads % transformer.heads == 0 else {
                throw TextError.invalidArgument("--attention-weight: the teacher's \(t.heads) heads are not a multiple of the student's \(transformer.heads); give the student a head count that divides \(t.heads) (bert:\(transformer.layers)-\(transformer.hidden)-HEADS-FFN)")
            }
            let map = settings.layerMap ?? TransformerStudentSpec.uniformLayerMap(studentLayers: transformer.layers, teacherLayers: t.layers)
            let layers = settings.attentionLayers == .last ? [(transformer.layers - 1, t.layers - 1)] : Array(map.enumerated().map { ($0.offset, $0.element) })
            attention = AttentionTransfer(layers: layers, ids: trainIDs, weight: settings.attentionWeight)
        }
        var section: SectionDistillation?
        if settings.sectionWeight > 0 {
            section = SectionDistillation(width: teacherVectors.shape[1], teacherLogits: withNoGrad { sectionHead(teacherVectors) },
                                          weight: settings.sectionWeight, seed: settings.options.seed)
        }
        return TextStudentObjective(embedding: EmbeddingObjective(cosineWeight: settings.cosineWeight, mseWeight: settings.mseWeight),
                                    hidden: hidden, section: section, attention: attention)
    }

    /// Sentences per second at batch 32 and the median batch-1 latency of `embed` on `texts`.
    static func speed(_ texts: [String], _ embed: ([String]) throws -> Tensor) throws -> (perSecond: Double, latencyP50: Double) {
        let sample = Array(texts.prefix(256))
        _ = try embed(Array(sample.prefix(32)))  // warm-up
        let start = DispatchTime.now().uptimeNanoseconds
        var done = 0
        while done < sample.count {
            let end = min(sample.count, done + 32)
            _ = try embed(Array(sample[done..<end]))
            done = end
        }
        let perSecond = Double(sample.count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        var latencies: [Double] = []
        for text in sample.prefix(64) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try embed([text])
            latencies.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000)
        }
        return (perSecond, latencies.sorted()[latencies.count / 2])
    }

    /// Distils `teacher` into the student of `settings` and measures both on the test split.
    public static func run(_ settings: TextDistillationSettings, teacher: TextTeacher, log: @escaping (String) -> Void = { _ in }) throws -> TextDistillationResult {
        let start = Date()
        let corpus = try TextCorpus.debianPackages(settings.corpus, trainLimit: settings.trainLimit, testLimit: settings.testLimit)
        if let warning = corpus.smallTestWarning { log(warning) }
        let cache = settings.teacherCache ?? URL(fileURLWithPath: settings.corpus.path + ".teacher-vectors.safetensors")
        let vectors = try TeacherTextVectors.load(corpus, teacher: teacher, maxLength: settings.maxLength, cache: cache,
                                                 quiet: settings.options.quiet, log: log)
        let width = vectors.trainDescriptions.shape[1]
        let (head, teacherProbe) = try sectionHead(train: vectors.trainDescriptions, test: vectors.testDescriptions, corpus: corpus, seed: settings.options.seed)

        // The transfer set: every training description and summary, with the teacher's vectors.
        let trainTexts = corpus.train.descriptions + corpus.train.summaries
        let (trainIDs, truncatedTrain) = tokenIDs(trainTexts, tokenizer: teacher.tokenizer, maxLength: settings.maxLength)
        let (testDescriptionIDs, truncatedTest) = tokenIDs(corpus.test.descriptions, tokenizer: teacher.tokenizer, maxLength: settings.maxLength)
        let (testSummaryIDs, _) = tokenIDs(corpus.test.summaries, tokenizer: teacher.tokenizer, maxLength: settings.maxLength)
        let truncated = truncatedTrain + truncatedTest
        if truncated > 0 { log("\(truncated) of \(trainTexts.count + corpus.test.count) texts were longer than \(settings.maxLength) tokens and were truncated") }
        // With --transfer-limit, the first rows' descriptions and summaries only (the teacher's
        // head, the probes and the cached vectors keep the whole training slice).
        let transferCount = min(settings.transferLimit ?? corpus.train.count, corpus.train.count)
        let transferRows = Array(0..<transferCount) + Array(corpus.train.count..<(corpus.train.count + transferCount))
        let transferIDs = withNoGrad { trainIDs.indexSelect(axis: 0, indices: transferRows) }
        let transferLabels = Array(corpus.train.labels.prefix(transferCount))
        let train = try LabeledDataset(features: transferIDs, labels: transferLabels + transferLabels, numClasses: corpus.classes.count,
                                       source: settings.corpus.path)
        let teacherVectors = withNoGrad { Tensor.concat([vectors.trainDescriptions, vectors.trainSummaries], axis: 0).indexSelect(axis: 0, indices: transferRows) }

        let (student, spec, transformer, copiedLayers) = try makeStudent(settings, teacher: teacher, width: width, fromTeacher: true)
        if let copiedLayers {
            log("student \(spec): the teacher's embeddings and layers \(copiedLayers.map(String.init).joined(separator: ", ")) copied")
        } else if transformer != nil && settings.projectEmbeddings {
            log("student \(spec): the teacher's embeddings projected onto their \(transformer!.hidden) leading principal directions; layers from BERT's random initialisation")
        } else if transformer != nil {
            log("student \(spec): BERT's random initialisation")
        }
        let objective = try studentObjective(settings, teacher: teacher, transformer: transformer, trainIDs: transferIDs, sectionHead: head,
                                             teacherVectors: teacherVectors)
        var extra = ["task": TextStudent.task]
        if let file = teacher.tokenizerFile { extra[TextStudent.tokenizerKey] = file.lastPathComponent }
        let info = SavedModel(spec: spec, inputShape: [settings.maxLength], numClasses: width, extra: extra)
        let run = settings.output.map { RunFolder($0) }
        let configuration: [String: Any] = [
            "corpus": settings.corpus.path, "student": spec, "teacher": teacher.name, "max_length": settings.maxLength,
            "cosine_weight": Double(settings.cosineWeight), "mse_weight": Double(settings.mseWeight),
            "layer_map": (copiedLayers ?? settings.layerMap).map { $0 as Any } ?? NSNull(), "project_embeddings": settings.projectEmbeddings,
            "hidden_weight": Double(settings.hiddenWeight), "attention_weight": Double(settings.attentionWeight),
            "attention_layers": settings.attentionLayers.rawValue, "section_kd_weight": Double(settings.sectionWeight),
            "transfer_limit": settings.transferLimit ?? NSNull(), "train_limit": settings.trainLimit ?? NSNull(),
            "test_limit": settings.testLimit ?? NSNull(), "options": settings.options.json]
        if settings.resume {
            guard let run else { throw TextError.invalidArgument("--resume needs the run folder (--output) of the interrupted run") }
            let differing = try differingSettings(recorded: run.readConfig(), now: configuration)
            guard differing.isEmpty else {
                throw TextError.invalidArgument("--resume \(run.url.path): that run was started with other settings (\(differing.joined(separator: ", "))); give the same options as when it started, or start afresh without --resume")
            }
        }
        if let run {
            try run.create(replacingEarlierRun: !settings.resume)
            if let file = teacher.tokenizerFile {
                let copy = run.url.appendingPathComponent(file.lastPathComponent)
                try? FileManager.default.removeItem(at: copy)
                try FileManager.default.copyItem(at: file, to: copy)
            }
            try run.writeJSON(configuration, to: run.config)
        }
        // The pooled vectors come from the cache; hidden-state and attention transfer need the teacher itself on each batch.
        let trainingTeacher: Teacher = objective.needsTeacherLayers && teacher.encoder != nil
            ? ModuleTeacher(Sequential([teacher.encoder!]), name: teacher.name) : CachedTeacher(logits: teacherVectors, name: teacher.name)
        let trainer = try Trainer(student: student, studentInfo: info, teachers: [trainingTeacher], objective: objective,
                                  options: settings.options, train: train, run: run) { model in
            try report(descriptions: normalizedVectors(model, ids: testDescriptionIDs), summaries: normalizedVectors(model, ids: testSummaryIDs),
                       teacher: vectors, head: head, corpus: corpus)
        }
        if settings.resume && !settings.options.quiet { log("continuing the run in \(run!.url.path) from its checkpoint") }
        let summary = try trainer.fit(resume: settings.resume)

        var scratchRow: TextModelRow?
        if settings.scratch {
            log("training the same student without the teacher (contrastive, on \(transferCount) description–summary pairs)")
            let pairs = Tensor.concat([transferIDs.slice(axis: 0, start: 0, length: transferCount),
                                       transferIDs.slice(axis: 0, start: transferCount, length: transferCount)], axis: 1)
            let pairData = try LabeledDataset(features: pairs, labels: transferLabels, numClasses: corpus.classes.count, source: settings.corpus.path)
            let inner = try makeStudent(settings, teacher: teacher, width: width, fromTeacher: false).model
            let scratchTrainer = try Trainer(student: Sequential([PairEncoder(inner)]), studentInfo: info, teachers: [], objective: ContrastivePairObjective(),
                                             options: settings.options, train: pairData, run: nil) { _ in
                try report(descriptions: normalizedVectors(inner, ids: testDescriptionIDs), summaries: normalizedVectors(inner, ids: testSummaryIDs),
                           teacher: vectors, head: head, corpus: corpus)
            }
            let scratchSummary = try scratchTrainer.fit()
            let probe = try sectionHead(train: normalizedVectors(inner, ids: trainIDs.slice(axis: 0, start: 0, length: corpus.train.count)),
                                        test: normalizedVectors(inner, ids: testDescriptionIDs), corpus: corpus, seed: settings.options.seed).accuracy
            scratchRow = TextModelRow(role: "scratch", spec: spec + " (no teacher)", parameters: inner.parameterCount, bytes: inner.parameterCount * 4,
                                      report: scratchSummary.test, sectionAccuracy: probe, sentencesPerSecond: 0, latencyMicrosecondsP50: 0)
        }

        let plan = TransformerStudentSpec.encoder(of: student).map { TransformerInferencePlan($0) }
        let testVectors = normalizedVectors(student, ids: testDescriptionIDs, plan: plan)
        let studentProbe = try sectionHead(train: normalizedVectors(student, ids: trainIDs.slice(axis: 0, start: 0, length: corpus.train.count), plan: plan),
                                           test: testVectors, corpus: corpus, seed: settings.options.seed).accuracy
        var headAccuracy: Double?
        if let section = objective.section {
            let classifier = Sequential([Flatten(), section.head])
            headAccuracy = accuracy(of: classifier, on: testVectors, corpus: corpus)
            if let run {
                try SavedModel(spec: "mlp:\(width)-\(corpus.classes.count)", inputShape: [width], numClasses: corpus.classes.count,
                               extra: ["task": "section-head", "classes": corpus.classes.joined(separator: ",")])
                    .save(classifier, to: run.url.appendingPathComponent("section-head.safetensors"))
            }
        }
        let teacherReport = try report(descriptions: vectors.testDescriptions, summaries: vectors.testSummaries, teacher: vectors, head: head, corpus: corpus)
        let teacherSpeed = try speed(corpus.test.descriptions, teacher.embed)
        let studentSpeed = try speed(corpus.test.descriptions) { texts in
            normalizedVectors(student, ids: tokenIDs(texts, tokenizer: teacher.tokenizer, maxLength: settings.maxLength).ids, plan: plan)
        }
        var rows = [
            TextModelRow(role: "teacher", spec: teacher.name, parameters: teacher.parameterCount, bytes: teacher.bytes, report: teacherReport,
                         sectionAccuracy: teacherProbe,
                         sentencesPerSecond: teacherSpeed.perSecond, latencyMicrosecondsP50: teacherSpeed.latencyP50),
            TextModelRow(role: "student", spec: spec, parameters: student.parameterCount, bytes: student.parameterCount * 4, report: summary.test,
                         sectionAccuracy: studentProbe, sectionHeadAccuracy: headAccuracy,
                         sentencesPerSecond: studentSpeed.perSecond, latencyMicrosecondsP50: studentSpeed.latencyP50),
        ]
        if var scratchRow {
            (scratchRow.sentencesPerSecond, scratchRow.latencyMicrosecondsP50) = (studentSpeed.perSecond, studentSpeed.latencyP50)  // the same architecture
            rows.append(scratchRow)
        }
        let result = TextDistillationResult(rows: rows, minutes: Date().timeIntervalSince(start) / 60, truncated: truncated)
        if let run {
            try run.writeJSON(json(result), to: run.url.appendingPathComponent("summary.json"))
            try AtomicFile.write(Data((table(rows) + "\n").utf8), to: run.url.appendingPathComponent("summary.txt"))
            let page = RunReport(title: "text-kd \(spec) from \(teacher.name)", metrics: run.readMetrics(), summary: htmlTable(rows),
                                 configuration: configuration)
            try AtomicFile.write(Data(page.html.utf8), to: run.report)
        }
        return result
    }

    /// The keys of a text-kd run's configuration whose values differ between `recorded` (its
    /// config.json) and `now`.
    static func differingSettings(recorded: [String: Any], now: [String: Any]) -> [String] {
        func text(_ value: Any?) -> String { value.map { SweepRunner.canonical(["v": $0]) } ?? "" }
        return Set(recorded.keys).union(now.keys).sorted().filter { text(recorded[$0]) != text(now[$0]) }
    }

    /// The rows as report.html shows them: size, speed, retrieval and sections, each student's
    /// figures also as a share of the teacher's.
    static func htmlTable(_ rows: [TextModelRow]) -> String {
        guard let teacher = rows.first else { return "" }
        var s = "<h2>Size, speed, retrieval, sections</h2>\n<table><tr><th class=l>model</th><th class=l>spec</th><th>parameters</th><th>bytes</th>"
            + "<th>sentences/s (batch 32)</th><th>batch-1 µs</th><th>sections</th><th>recall@10</th><th>MRR</th><th>cos(teacher)</th></tr>\n"
        for r in rows {
            s += "<tr><td class=l>\(SVGChart.escape(r.role))</td><td class=l>\(SVGChart.escape(r.spec))</td><td>\(r.parameters)</td><td>\(r.bytes)</td>"
                + String(format: "<td>%.0f</td><td>%.0f</td><td>%.2f%%</td><td>%.2f%%</td><td>%.4f</td><td>%.4f</td></tr>\n", r.sentencesPerSecond,
                         r.latencyMicrosecondsP50, r.sectionAccuracy * 100, r.report.recallAt10 * 100, r.report.retrieval.meanReciprocalRank,
                         r.report.teacherCosine)
        }
        s += "</table>\n"
        for r in rows.dropFirst() where r.role == "student" {
            s += String(format: "<p>The student is %.1f× smaller (bytes) and %.1f× faster (batch 32), and keeps %.1f%% of the teacher's recall@10 and %.1f%% of its section accuracy.</p>\n",
                        Double(teacher.bytes) / Double(max(r.bytes, 1)), r.sentencesPerSecond / max(teacher.sentencesPerSecond, 1e-9),
                        r.report.recallAt10 / max(teacher.report.recallAt10, 1e-9) * 100, r.sectionAccuracy / max(teacher.sectionAccuracy, 1e-9) * 100)
        }
        return s
    }

    /// `{"rows": [...], "minutes", "truncated"}`: each row's figures, accuracies as fractions of 1,
    /// and for students the share of the teacher's.
    public static func json(_ result: TextDistillationResult) -> [String: Any] {
        let teacher = result.rows.first
        let rows: [[String: Any]] = result.rows.map { r in
            var j: [String: Any] = ["role": r.role, "spec": r.spec, "params": r.parameters, "bytes": r.bytes,
                                    "samples_per_second": r.sentencesPerSecond, "latency_us_p50": r.latencyMicrosecondsP50,
                                    "section_accuracy": r.sectionAccuracy, "section_accuracy_teacher_head": r.report.sectionAccuracy,
                                    "recall_at_10": r.report.recallAt10,
                                    "mrr": r.report.retrieval.meanReciprocalRank, "teacher_cosine": r.report.teacherCosine]
            if let head = r.sectionHeadAccuracy { j["section_accuracy_kd_head"] = head }
            if let teacher, r.role != "teacher" {
                j["share_of_teacher"] = ["section_accuracy": r.sectionAccuracy / max(teacher.sectionAccuracy, 1e-12),
                                         "recall_at_10": r.report.recallAt10 / max(teacher.report.recallAt10, 1e-12),
                                         "mrr": r.report.retrieval.meanReciprocalRank / max(teacher.report.retrieval.meanReciprocalRank, 1e-12),
                                         "smaller": Double(teacher.bytes) / Double(max(r.bytes, 1)),
                                         "faster": r.sentencesPerSecond / max(teacher.sentencesPerSecond, 1e-12)]
            }
            return j
        }
        return ["rows": rows, "minutes": result.minutes, "truncated": result.truncated]
    }

    /// The rows as a table, each figure also as a share of the teacher's.
    public static func table(_ rows: [TextModelRow]) -> String {
        guard let teacher = rows.first else { return "" }
        var lines = ["model                               params      bytes  sent/s(b32)  b1 µs   sections  recall@10   MRR"]
        for r in rows {
            let name = String(r.spec.prefix(32)).padding(toLength: 32, withPad: " ", startingAt: 0)
            lines.append(name + String(format: " %10d %10d %12.0f %7.0f   %6.2f%%   %6.2f%%   %.4f", r.parameters, r.bytes,
                                r.sentencesPerSecond, r.latencyMicrosecondsP50, r.sectionAccuracy * 100, r.report.recallAt10 * 100,
                                r.report.retrieval.meanReciprocalRank))
            if r.role != "teacher" {
                lines.append(String(format: "  as a share of the teacher's:     %9.1f× smaller  %7.1f× faster  %6.1f%%   %6.1f%%   %5.1f%%",
                                    Double(teacher.bytes) / Double(max(r.bytes, 1)), r.sentencesPerSecond / max(teacher.sentencesPerSecond, 1e-9),
                                    r.sectionAccuracy / max(teacher.sectionAccuracy, 1e-9) * 100,
                                    r.report.recallAt10 / max(teacher.report.recallAt10, 1e-9) * 100,
                                    r.report.retrieval.meanReciprocalRank / max(teacher.report.retrieval.meanReciprocalRank, 1e-9) * 100))
            }
            if let head = r.sectionHeadAccuracy {
                lines.append(String(format: "  its section head, by logit KD from the teacher's: %.2f%% (%.1f%% of the teacher's)", head * 100,
                                    head / max(teacher.sectionAccuracy, 1e-9) * 100))
            }
        }
        return lines.joined(separator: "\n")
    }
}
