import DistillNN
import DistillTensor
import DistillTestSupport
import DistillText
import DistillTraining
import Foundation
import Testing

// Transformer students for `distill text-kd` (Sources/DistillNN/TransformerStudent.swift, the
// hidden-state and section terms in Sources/DistillTraining/EmbeddingLosses.swift): the losses'
// values and gradients, and whole runs on a made-up corpus whose teacher is a small random BERT.

@Suite("Transformer text students") struct TransformerStudentTests {
    /// By hand: real tokens (0,0), (0,1), (1,0); squared differences 1, 4 (token (0,1): 2² in one
    /// of 2 dimensions) and 0.25 + 0.25; the padded token (1,1) differs by 100 and must not count.
    /// (1 + 4 + 0.5) / (3 tokens · 2 dimensions) = 0.91666667.
    @Test func hiddenStateLossReferenceAndGradients() {
        let s = Tensor(shape: [2, 2, 2], scalars: [1, 0, 2, 1, 0.5, 0.5, 100, 100])
        let t = Tensor(shape: [2, 2, 2], scalars: [0, 0, 0, 1, 0, 0, 0, 0])
        let mask = Tensor(shape: [2, 2], scalars: [1, 1, 1, 0])
        #expect(abs(hiddenStateLoss(student: s, teacher: t, mask: mask).item() - 0.91666667) < 1e-6)
        let x = Tensor.testNormal([2, 3, 4], seed: 31, requiresGrad: true)
        let target = Tensor.testNormal([2, 3, 4], seed: 32)
        let padding = Tensor(shape: [2, 3], scalars: [1, 1, 0, 1, 0, 0])
        expectGradients("hidden-state loss", inputs: [x], atol: 1e-4) { hiddenStateLoss(student: $0[0], teacher: target, mask: padding) }
    }

    @Test func specsResolveAndRoundTrip() throws {
        let teacher = TransformerConfig.miniLML6
        let same = try TransformerStudentSpec.resolve("bert:2-384", teacher: teacher)
        #expect(same.spec == "bert:30522-512-2-384-12-1536-384" && !same.hasProjection)
        let narrow = try TransformerStudentSpec.resolve("bert:3-256", teacher: teacher)
        #expect(narrow.spec == "bert:30522-512-3-256-8-1024-384" && narrow.hasProjection)
        #expect(try TransformerStudentSpec.resolve("bert:1-128-4-256", teacher: teacher).spec == "bert:30522-512-1-128-4-256-384")
        #expect(try TransformerStudentSpec(spec: narrow.spec) == narrow)
        let small = TransformerStudentSpec(vocabulary: 50, positions: 16, layers: 2, hidden: 8, heads: 2, intermediate: 12, outputs: 12)
        #expect(try small.build(seed: 1).parameterCount == small.parameterCount)
        var square = small
        square.outputs = 8
        #expect(try square.build(seed: 1).parameterCount == square.parameterCount)
        #expect(TransformerStudentSpec.uniformLayerMap(studentLayers: 2, teacherLayers: 6) == [2, 5])
        #expect(TransformerStudentSpec.uniformLayerMap(studentLayers: 3, teacherLayers: 6) == [1, 3, 5])
        #expect(TransformerStudentSpec.uniformLayerMap(studentLayers: 6, teacherLayers: 6) == Array(0..<6))
        expectMessage(["bert:LAYERS-WIDTH"]) { _ = try TransformerStudentSpec.resolve("bert:2", teacher: teacher) }
        expectMessage(["bert:LAYERS-WIDTH"]) { _ = try TransformerStudentSpec.resolve("bert:two-384", teacher: teacher) }
        expectMessage(["head width 32"]) { _ = try TransformerStudentSpec.resolve("bert:2-100", teacher: teacher) }
        expectMessage(["not divisible by 3 heads"]) { _ = try TransformerStudentSpec.resolve("bert:2-128-3-256", teacher: teacher) }
        expectMessage(["VOCABULARY-POSITIONS"]) { _ = try TransformerStudentSpec(spec: "bert:2-384") }
        expectMessage(["no layer 6", "0...5"]) { try same.checkLayerMap([0, 6], teacher: teacher) }
        expectMessage(["1 layers named", "has 2"]) { try same.checkLayerMap([5], teacher: teacher) }
    }

    /// Padding columns are cut before the encoder runs: the vectors are the same bit for bit.
    @Test func trailingPaddingIsCut() throws {
        let encoder = try BertEncoder(TransformerConfig(vocabularySize: 20, hiddenSize: 8, layers: 1, heads: 2, intermediateSize: 12, maxPositions: 10), seed: 3)
        let short = Tensor(shape: [2, 4], scalars: [2, 5, 7, 3, 2, 9, 3, 0])
        let long = Tensor(shape: [2, 7], scalars: [2, 5, 7, 3, 0, 0, 0, 2, 9, 3, 0, 0, 0, 0])
        #expect(BertEncoder.trimmedLength(long) == 4)
        assertClose(encoder(long), encoder(short), atol: 0, rtol: 0, "padded to 7 against 4")
    }

    /// The section term: logit KD (T = 2) and cross-entropy, half each, on the student head's logits.
    @Test func sectionDistillationTerms() throws {
        let teacherLogits = Tensor(shape: [3, 2], scalars: [2, -1, 0.5, 0.5, -1, 3])
        let section = SectionDistillation(width: 4, teacherLogits: teacherLogits, weight: 2, seed: 5)
        let objective = TextStudentObjective(embedding: EmbeddingObjective(), section: section)
        let vectors = Tensor.testNormal([2, 4], seed: 6)
        let (total, parts) = try objective.loss(studentOutputs: vectors, studentFeatures: [:], teacherOutputs: [vectors], teacherFeatures: [:],
                                                labels: [0, 1], indices: [2, 0], epoch: 0)
        let logits = section.head(vectors.l2Normalized())
        let kd = kdLoss(student: logits, teacher: teacherLogits.indexSelect(axis: 0, indices: [2, 0]), temperature: 2).item()
        let ce = crossEntropy(logits: logits, labels: [0, 1]).item()
        #expect(abs(parts["section_kd"]! - kd) < 1e-6 && abs(parts["section_ce"]! - ce) < 1e-6)
        #expect(abs(total.item() - (parts["cosine"]! + kd + ce)) < 1e-5, "weight 2 · ½ · (kd + ce) plus the cosine term")
        #expect(objective.needsLabels && objective.adapterParameters.count == 2)
    }

    @Test func distilsABertTeacher() throws {
        let fixture = try TinyTextTask()
        // 1. A 2-layer student as wide as the teacher, from its layers 1 and 3, against the same student without the teacher.
        var settings = fixture.settings(student: "bert:2-16", run: "run")
        settings.scratch = true
        settings.sectionWeight = 1
        var logged: [String] = []
        let result = try TextDistillation.run(settings, teacher: fixture.teacher) { logged.append($0) }
        #expect(logged.contains { $0.contains("layers 1, 3 copied") }, "\(logged)")
        let (teacherRow, student, scratch) = (result.rows[0], result.rows[1], result.rows[2])
        #expect(student.spec == "bert:45-24-2-16-2-32-16" && scratch.role == "scratch")
        #expect(student.report.teacherCosine > 0.95, "cos(teacher) \(student.report.teacherCosine)")
        // It stands in for the teacher where its scratch twin cannot: its vectors point where the
        // teacher's do. (On this made-up corpus a random
        // teacher retrieves worse than contrastive training on the pairs, so retrieval is not where
        // distillation wins here; tests/interop/test_text_distillation.py compares them with the real teacher.)
        #expect(student.report.teacherCosine > scratch.report.teacherCosine + 0.3, "cos(teacher) \(student.report.teacherCosine), scratch \(scratch.report.teacherCosine)")
        #expect(student.report.recallAt10 >= teacherRow.report.recallAt10 - 0.05, "distilled \(student.report.recallAt10), teacher \(teacherRow.report.recallAt10)")
        #expect((student.sectionHeadAccuracy ?? 0) > 0.6, "section head \(String(describing: student.sectionHeadAccuracy))")
        // The loss falls from the first epoch to the last.
        let losses = try String(contentsOf: fixture.dir.file("run/metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["train_loss"] as? Double
        }
        #expect(losses.count == settings.options.epochs && losses.last! < losses.first!, "\(losses)")
        // The saved student embeds on its own as it did in the run; its section head is beside it.
        let saved = try #require(try TextStudent.load(fixture.dir.file("run")))
        let texts = ["w1 w2 w3 w4", "w30 w31 w39"]
        let ids = TextDistillation.tokenIDs(texts, tokenizer: fixture.tokenizer, maxLength: 16).ids
        let inRun = withNoGrad { saved.model(ids).l2Normalized() }
        assertClose(saved.embed(texts).vectors, inRun, atol: 2e-5, rtol: 1e-4, "saved student, plan against module")
        #expect(FileManager.default.fileExists(atPath: fixture.dir.file("run/section-head.safetensors").path))
    }

    /// A narrower student with hidden-state transfer through learned projections: the teacher runs on every batch.
    @Test func hiddenStateTransferThroughAProjection() throws {
        let fixture = try TinyTextTask()
        var settings = fixture.settings(student: "bert:1-8-2-16", run: "narrow")
        settings.hiddenWeight = 1
        settings.layerMap = [3]
        let result = try TextDistillation.run(settings, teacher: fixture.teacher)
        let student = result.rows[1]
        #expect(student.spec == "bert:45-24-1-8-2-16-16")
        #expect(student.report.teacherCosine > 0.8, "cos(teacher) \(student.report.teacherCosine)")
        let lines = try String(contentsOf: fixture.dir.file("narrow/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        let hidden = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["loss_hidden"] as? Double }
        #expect(hidden.count == settings.options.epochs && hidden.last! < hidden.first!, "hidden-state loss per epoch \(hidden)")
        let saved = try #require(try TextStudent.load(fixture.dir.file("narrow/best.safetensors")))
        #expect(saved.dimension == 16 && saved.model.parameterCount == student.parameters)
    }

    @Test func badStudentsAreClearErrors() throws {
        let fixture = try TinyTextTask()
        func expectError(_ fragments: [String], _ change: (inout TextDistillationSettings) -> Void) {
            var settings = fixture.settings(student: "bert:2-16", run: "bad")
            change(&settings)
            expectMessage(fragments) { _ = try TextDistillation.run(settings, teacher: fixture.teacher) }
        }
        expectError(["--layer-map", "no layer 4", "0...3"]) { $0.layerMap = [0, 4] }
        expectError(["--layer-map", "1 layers named"]) { $0.layerMap = [2] }
        expectError(["width 8", "without a projection", "--init random"]) { $0.student = "bert:2-8-2-16"; $0.initFromTeacher = true }
        expectError(["bert:LAYERS-WIDTH"]) { $0.student = "bert:2-16-x" }
        expectError(["unknown text student 'gpt:2'", "bert:LAYERS-WIDTH"]) { $0.student = "gpt:2" }
        expectError(["--hidden-weight", "bert: students"]) { $0.student = "bag:45-0-8-16"; $0.hiddenWeight = 1 }
        var noTransformer = fixture.teacher
        noTransformer.encoder = nil
        var settings = fixture.settings(student: "bert:2-16", run: "bad")
        settings.teacherCache = fixture.dir.file("other-vectors.safetensors")
        expectMessage(["not a transformer"]) { _ = try TextDistillation.run(settings, teacher: noTransformer) }
    }
}

/// A made-up corpus (300 rows, 3 sections with their own words) and a random 4-layer BERT teacher
/// of width 16 over its 45-token vocabulary.
struct TinyTextTask {
    let dir: TemporaryDirectory
    let tokenizer: WordPieceTokenizer
    let teacher: TextTeacher
    let corpus: URL

    init() throws {
        dir = try TemporaryDirectory()
        let words = (0..<40).map { "w\($0)" }
        try dir.write("vocab.txt", text: (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words).joined(separator: "\n") + "\n")
        tokenizer = try WordPieceTokenizer(contentsOf: dir.file("vocab.txt"))
        var g = SeededGenerator(seed: 21)
        var entries: [DebianPackages.Entry] = []
        for i in 0..<300 {
            let base = (i % 3) * 12
            let text = (0..<8).map { _ in words[base + g.nextInt(below: 12)] }.joined(separator: " ") + " " + words[36 + g.nextInt(below: 4)]
            entries.append(DebianPackages.Entry(package: "p\(i)", section: ["admin", "games", "libs"][i % 3], split: i < 240 ? .train : .test,
                                                summary: text.split(separator: " ").prefix(3).joined(separator: " "), description: text))
        }
        corpus = dir.file("corpus.csv")
        try Data(DebianPackages.csv(entries).utf8).write(to: corpus)
        let encoder = try BertEncoder(TransformerConfig(vocabularySize: tokenizer.vocabularySize, hiddenSize: 16, layers: 4, heads: 2,
                                                        intermediateSize: 32, maxPositions: 24), seed: 22)
        encoder.freeze()
        let plan = TransformerInferencePlan(encoder)
        let tokenizer = self.tokenizer
        teacher = TextTeacher(name: "tiny bert", parameterCount: encoder.parameterCount, bytes: encoder.parameterCount * 4, tokenizer: tokenizer,
                              tokenizerFile: dir.file("vocab.txt"), encoder: encoder) { texts in
            plan.embed(sequences: texts.map { tokenizer.encode($0, maxLength: 16).ids })
        }
    }

    func settings(student: String, run: String) -> TextDistillationSettings {
        var settings = TextDistillationSettings(corpus: corpus, student: student)
        settings.maxLength = 16
        settings.options.epochs = 6
        settings.options.batchSize = 32
        settings.options.learningRate = 3e-3
        settings.options.quiet = true
        settings.teacherCache = dir.file("vectors.safetensors")
        settings.output = dir.file(run)
        return settings
    }
}
