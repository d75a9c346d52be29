import DistillNN
import DistillTensor
import DistillTestSupport
import DistillText
import DistillTraining
import Foundation
import Testing

@Suite("Embedding distillation") struct EmbeddingDistillationTests {
    /// Reference values, by hand and from PyTorch:
    ///     s = torch.tensor([[1., 0.], [0., 2.]]); t = torch.tensor([[1., 1.], [0., 1.]])
    ///     1 - F.cosine_similarity(s, t).mean()   # 0.14644661
    ///     F.mse_loss(s, t)                        # 0.5
    @Test func referenceValues() {
        let s = Tensor(shape: [2, 2], scalars: [1, 0, 0, 2]), t = Tensor(shape: [2, 2], scalars: [1, 1, 0, 1])
        #expect(abs(cosineEmbeddingLoss(student: s, teacher: t).item() - 0.14644661) < 1e-6)
        #expect(abs(embeddingMSELoss(student: s, teacher: t).item() - 0.5) < 1e-7)
        #expect(abs(cosineEmbeddingLoss(student: s, teacher: s).item()) < 1e-6)
    }

    /// `F.cross_entropy(F.normalize(a) @ F.normalize(p).T * scale, torch.arange(2))` with a = p = I:
    /// log(1 + e^-1) = 0.31326169 at scale 1.
    @Test func contrastiveReferenceValue() {
        let identity = Tensor(shape: [2, 2], scalars: [1, 0, 0, 1])
        #expect(abs(contrastivePairLoss(anchors: identity, positives: identity, scale: 1).item() - 0.31326169) < 1e-6)
        let a = Tensor(shape: [3, 2], scalars: [1, 0.5, -0.3, 2, 0.7, -1], requiresGrad: true)
        let p = Tensor(shape: [3, 2], scalars: [0.9, 0.4, -0.1, 1.5, 1, -0.8], requiresGrad: true)
        expectGradients("contrastive pair loss", inputs: [a, p], atol: 1e-3) { contrastivePairLoss(anchors: $0[0], positives: $0[1], scale: 5) }
    }

    @Test func gradients() {
        let s = Tensor(shape: [3, 4], scalars: [0.5, -1, 2, 0.3, 1.5, -0.7, 0.2, 0.9, -0.4, 0.8, 1.1, -1.3], requiresGrad: true)
        let t = Tensor(shape: [3, 4], scalars: [0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8, 0.9, -1.0, 1.1, 1.2])
        expectGradients("cosine embedding loss", inputs: [s], atol: 1e-4) { cosineEmbeddingLoss(student: $0[0], teacher: t) }
        expectGradients("embedding MSE", inputs: [s], atol: 1e-4) { embeddingMSELoss(student: $0[0], teacher: t) }
    }

    /// The objective weighs its terms and refuses a student of the wrong width.
    @Test func objective() throws {
        let s = Tensor(shape: [2, 2], scalars: [1, 0, 0, 2]), t = Tensor(shape: [2, 2], scalars: [1, 1, 0, 1])
        let objective = EmbeddingObjective(cosineWeight: 2, mseWeight: 1)
        let (total, parts) = try objective.loss(studentOutputs: s, studentFeatures: [:], teacherOutputs: [t], teacherFeatures: [:],
                                                labels: [-1, -1], indices: [0, 1], epoch: 0)
        #expect(abs(total.item() - (2 * 0.14644661 + 0.5)) < 1e-5)
        #expect(abs(parts["cosine"]! - 0.14644661) < 1e-6 && abs(parts["mse"]! - 0.5) < 1e-7)
        #expect(throws: TrainingError.self) {
            try objective.loss(studentOutputs: Tensor.zeros([2, 3]), studentFeatures: [:], teacherOutputs: [t], teacherFeatures: [:],
                               labels: [], indices: [0, 1], epoch: 0)
        }
    }

    /// A made-up corpus of 300 texts in three sections (corpus.csv, vocab.txt in `dir`) and a
    /// teacher that is a fixed random token bag; `largestCall` records its largest batch.
    func bagTeacherFixture(in dir: TemporaryDirectory) throws -> (TextTeacher, WordPieceTokenizer, URL, Box<Int>) {
        let words = (0..<40).map { "w\($0)" }
        try dir.write("vocab.txt", text: (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words).joined(separator: "\n") + "\n")
        let tokenizer = try WordPieceTokenizer(contentsOf: dir.file("vocab.txt"))
        var g = SeededGenerator(seed: 11)
        var entries: [DebianPackages.Entry] = []
        for i in 0..<300 {
            let section = ["admin", "games", "libs"][i % 3]
            let base = (i % 3) * 12
            let text = (0..<8).map { _ in words[base + g.nextInt(below: 12)] }.joined(separator: " ") + " " + words[36 + g.nextInt(below: 4)]
            let summary = text.split(separator: " ").prefix(3).joined(separator: " ")
            entries.append(DebianPackages.Entry(package: "p\(i)", section: section, split: i < 240 ? .train : .test, summary: summary, description: text))
        }
        let corpus = dir.file("corpus.csv")
        try Data(DebianPackages.csv(entries).utf8).write(to: corpus)
        var tg = SeededGenerator(seed: 12)
        let teacherBag = TokenBag(vocabulary: tokenizer.vocabularySize, bigramBuckets: 0, dimension: 8, outputs: 16, generator: &tg)
        let largestCall = Box(0)
        let teacher = TextTeacher(name: "bag teacher", parameterCount: teacherBag.parameterCount, bytes: teacherBag.parameterCount * 4,
                                  tokenizer: tokenizer, tokenizerFile: dir.file("vocab.txt")) { texts in
            largestCall.value = max(largestCall.value, texts.count)
            let ids = TextDistillation.tokenIDs(texts, tokenizer: tokenizer, maxLength: 16).ids
            return withNoGrad { teacherBag(ids) / teacherBag(ids).pow(2).sum(axis: 1, keepDims: true).sqrt() }
        }
        return (teacher, tokenizer, corpus, largestCall)
    }

    /// Files that text-kd must not trust or replace: a --teacher-cache that is not a cache (the
    /// corpus itself), a cache whose vectors were cut, a student whose tokenizer gives ids past
    /// its vocabulary, a plain student that does not read --max-length ids.
    @Test func refusesFilesItCannotTrust() throws {
        let dir = try TemporaryDirectory()
        let (teacher, tokenizer, corpus, _) = try bagTeacherFixture(in: dir)
        var settings = TextDistillationSettings(corpus: corpus, student: "bag:\(tokenizer.vocabularySize)-0-8-16")
        settings.maxLength = 16
        settings.options.epochs = 1
        settings.options.quiet = true
        settings.teacherCache = corpus
        let before = try Data(contentsOf: corpus)
        expectMessage(["--teacher-cache", "not a teacher-vector cache"]) { _ = try TextDistillation.run(settings, teacher: teacher) }
        #expect(try Data(contentsOf: corpus) == before)

        settings.teacherCache = dir.file("vectors.safetensors")
        settings.output = dir.file("run")
        _ = try TextDistillation.run(settings, teacher: teacher)
        var (tensors, metadata) = try Safetensors.decode(try Data(contentsOf: dir.file("vectors.safetensors")), name: "vectors")
        tensors["test_summaries"] = tensors["test_summaries"]!.slice(axis: 0, start: 0, length: 3)
        try Safetensors.save(tensors, to: dir.file("vectors.safetensors"), metadata: metadata)
        settings.output = nil
        expectMessage(["vectors.safetensors", "'test_summaries' is [3, 16], not [60, 16]"]) { _ = try TextDistillation.run(settings, teacher: teacher) }

        try dir.write("run/vocab.txt", text: try String(contentsOf: dir.file("vocab.txt"), encoding: .utf8) + "extra1\nextra2\n")
        expectMessage(["vocab.txt", "the student's vocabulary is \(tokenizer.vocabularySize)"]) { _ = try TextStudent.load(dir.file("run")) }

        try FileManager.default.removeItem(at: dir.file("vectors.safetensors"))
        settings.student = "mlp:5-16"
        expectMessage(["--student mlp:5-16", "does not take examples of shape [16]"]) { _ = try TextDistillation.run(settings, teacher: teacher) }
    }

    /// End to end on a small made-up corpus whose teacher is a fixed random token bag: the
    /// distilled student's vectors come close to the teacher's and retrieve as well.
    @Test func distilsATokenBagTeacher() throws {
        let dir = try TemporaryDirectory()
        let (teacher, tokenizer, corpus, largestCall) = try bagTeacherFixture(in: dir)
        var settings = TextDistillationSettings(corpus: corpus, student: "bag:\(tokenizer.vocabularySize)-0-8-16")
        settings.maxLength = 16
        settings.options.epochs = 30
        settings.options.batchSize = 32
        settings.options.learningRate = 0.03
        settings.options.quiet = true
        settings.teacherCache = dir.file("vectors.safetensors")
        settings.output = dir.file("run")
        settings.scratch = true
        let result = try TextDistillation.run(settings, teacher: teacher)
        let (t, s) = (result.rows[0].report, result.rows[1].report)
        #expect(s.teacherCosine > 0.95, "cos(teacher) \(s.teacherCosine)")
        #expect(s.recallAt10 >= t.recallAt10 - 0.1, "student recall@10 \(s.recallAt10), teacher \(t.recallAt10)")
        #expect(FileManager.default.fileExists(atPath: dir.file("run/best.safetensors").path))
        // The baseline without the teacher: the same architecture, trained on the pairs.
        #expect(result.rows.count == 3 && result.rows[2].role == "scratch" && result.rows[2].parameters == result.rows[1].parameters)
        #expect(result.rows[2].report.recallAt10 > 0.1, "scratch recall@10 \(result.rows[2].report.recallAt10)")
        settings.scratch = false
        // The cached vectors are reused: a second run calls the teacher only to time it (32 texts at most).
        largestCall.value = 0
        settings.options.epochs = 1
        settings.output = nil
        _ = try TextDistillation.run(settings, teacher: teacher)
        #expect(largestCall.value <= 32)
    }

    /// A text-kd run folder holds summary.json, summary.txt and report.html like every run's; a
    /// run stopped after epoch 1 of 3 continues with `resume` and ends with the weights of an
    /// uninterrupted run; a resume with other settings, or of a folder without a run, is refused.
    @Test func runFolderSummariesAndResume() throws {
        let dir = try TemporaryDirectory()
        let (teacher, tokenizer, corpus, _) = try bagTeacherFixture(in: dir)
        func settings(_ folder: String, epochs: Int) -> TextDistillationSettings {
            var settings = TextDistillationSettings(corpus: corpus, student: "bag:\(tokenizer.vocabularySize)-0-8-16")
            settings.maxLength = 16
            settings.options.epochs = epochs
            settings.options.batchSize = 32
            settings.options.quiet = true
            settings.teacherCache = dir.file("vectors.safetensors")
            settings.output = dir.file(folder)
            return settings
        }
        let straight = try TextDistillation.run(settings("straight", epochs: 3), teacher: teacher)
        let run = RunFolder(dir.file("straight"))
        let summary = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: run.url.appendingPathComponent("summary.json"))) as? [String: Any])
        #expect((summary["rows"] as? [[String: Any]])?.map { $0["role"] as? String } == ["teacher", "student"])
        #expect(try String(contentsOf: run.url.appendingPathComponent("summary.txt"), encoding: .utf8) == TextDistillation.table(straight.rows) + "\n")
        let page = try String(contentsOf: run.report, encoding: .utf8)
        #expect(page.contains("recall@10") && page.contains("<svg") && page.contains("Configuration"))

        _ = try TextDistillation.run(settings("interrupted", epochs: 1), teacher: teacher)
        let interrupted = RunFolder(dir.file("interrupted"))
        var config = try interrupted.readConfig()
        var options = try #require(config["options"] as? [String: Any])
        options["epochs"] = 3
        config["options"] = options
        try interrupted.writeJSON(config, to: interrupted.config)
        var other = settings("interrupted", epochs: 3)
        other.resume = true
        other.cosineWeight = 0.5
        expectMessage(["--resume", "other settings (cosine_weight)"]) { _ = try TextDistillation.run(other, teacher: teacher) }
        var nowhere = settings("no-run-here", epochs: 3)
        nowhere.resume = true
        expectMessage(["no such run folder to resume"]) { _ = try TextDistillation.run(nowhere, teacher: teacher) }
        var resume = settings("interrupted", epochs: 3)
        resume.resume = true
        _ = try TextDistillation.run(resume, teacher: teacher)
        #expect(interrupted.readMetrics().count == 3)
        #expect(try Safetensors.load(interrupted.finalModel).mapValues(\.scalars) == Safetensors.load(run.finalModel).mapValues(\.scalars), "the resumed run's weights differ from the uninterrupted run's")
    }
}

final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
