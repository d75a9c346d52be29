import DistillNN
import DistillONNX
import DistillTensor
import DistillTestSupport
import DistillText
import DistillTraining
import Foundation
import Testing

// `distill eval` for text models (Sources/DistillTraining/TextEvaluation.swift) and the ONNX
// export of text students (Sources/DistillONNX/TextExport.swift, TextStudentExport.swift), on
// the made-up corpus and tiny BERT teacher of `TinyTextTask` (TransformerStudentTests.swift).

@Suite("Text evaluation and export") struct TextEvaluationTests {
    /// Evaluating a saved student gives the figures `distill text-kd` reported for it: the same
    /// vectors, retrieval and probe recipe. (One epoch: text-kd's row measures the last epoch's
    /// student, best.safetensors holds the epoch of the best recall@10.)
    @Test func evalOfAStudentMatchesTextKD() throws {
        let fixture = try TinyTextTask()
        for (student, run) in [("bert:1-8-2-16", "bert"), ("bag:45-64-8-16", "bag")] {
            var settings = fixture.settings(student: student, run: run)
            settings.options.epochs = 1
            settings.maxLength = 12  // not the vector width (16): a saved bag's shape check once mixed the two up
            let row = try TextDistillation.run(settings, teacher: fixture.teacher).rows[1]
            let model = try #require(try TextModelFile.load(fixture.dir.file(run).path))
            #expect(model.isStudent && model.maxLength == 12)
            let report = try TextEvaluation.evaluate(model, corpus: fixture.corpus)
            #expect(report.trainRows == 240 && report.testRows == 60 && report.parameters == row.parameters)
            #expect(abs(report.recallAt10 - row.report.recallAt10) < 1e-12, "\(student): recall@10 \(report.recallAt10) against text-kd's \(row.report.recallAt10)")
            #expect(abs(report.retrieval.meanReciprocalRank - row.report.retrieval.meanReciprocalRank) < 1e-6)
            #expect(abs(report.sectionAccuracy - row.sectionAccuracy) < 1e-12, "\(student): probe \(report.sectionAccuracy) against \(row.sectionAccuracy)")
            let json = report.json
            #expect(json["recall_at_10"] as? Double == report.recallAt10 && json["kind"] as? String == "text-kd student")
            #expect(report.text.contains("recall@10") && report.text.contains("linear probe"))
            expectMessage(["--max-length 20", "reads 12 tokens"]) { _ = try TextEvaluation.evaluate(model, corpus: fixture.corpus, maxLength: 20) }
            // With 10 test rows or fewer, recall@10 is 100% by construction: said, not left to be believed.
            var logged: [String] = []
            let few = try TextEvaluation.evaluate(model, corpus: fixture.corpus, testLimit: 8) { logged.append($0) }
            #expect(few.recallAt10 == 1 && logged.contains { $0.contains("WARNING: the test split has 8 rows") && $0.contains("recall@10 reads 100%") }, "\(logged)")
            logged = []
            _ = try TextEvaluation.evaluate(model, corpus: fixture.corpus) { logged.append($0) }
            #expect(!logged.contains { $0.contains("WARNING") }, "\(logged)")
        }
    }

    /// A sentence-transformers folder (the teacher saved in that layout) is measured like the
    /// teacher row of `distill text-kd`.
    @Test func evalOfASentenceEncoderFolder() throws {
        let fixture = try TinyTextTask()
        var settings = fixture.settings(student: "bag:45-0-8-16", run: "run")
        settings.options.epochs = 1
        let teacherRow = try TextDistillation.run(settings, teacher: fixture.teacher).rows[0]
        let folder = fixture.dir.file("teacher")
        try SentenceEncoder.save(fixture.teacher.encoder!, tokenizerFolder: fixture.dir.url, maxSequenceLength: 16, to: folder)
        #expect(TextModelFile.isTextModel(folder.path))
        let model = try #require(try TextModelFile.load(folder.path))
        #expect(!model.isStudent && model.name == "teacher")
        let report = try TextEvaluation.evaluate(model, corpus: fixture.corpus, testLimit: 60)
        #expect(abs(report.recallAt10 - teacherRow.report.recallAt10) < 1e-12 && abs(report.sectionAccuracy - teacherRow.sectionAccuracy) < 1e-12,
                "recall@10 \(report.recallAt10) / \(teacherRow.report.recallAt10), probe \(report.sectionAccuracy) / \(teacherRow.sectionAccuracy)")
        // The cache of a run with other limits is read, never replaced.
        let cache = settings.teacherCache!
        let before = try Data(contentsOf: cache)
        _ = try TextEvaluation.evaluate(model, corpus: fixture.corpus, testLimit: 10, teacherCache: cache)
        #expect(try Data(contentsOf: cache) == before)
    }

    @Test func badInputIsAClearError() throws {
        let fixture = try TinyTextTask()
        // A model that is not a text model is not read as one.
        let image = fixture.dir.file("mlp.safetensors")
        try SavedModel(spec: "mlp:4-3", inputShape: [4], numClasses: 3).save(try ModelZoo.build("mlp:4-3", inputShape: [4], numClasses: 3, seed: 1), to: image)
        #expect(!TextModelFile.isTextModel(image.path))
        let notText = try TextModelFile.load(image.path)
        #expect(notText == nil)
        #expect(!TextModelFile.isTextModel(fixture.dir.file("missing").path))
        // A corpus without the columns, or without test rows.
        var settings = fixture.settings(student: "bag:45-0-8-16", run: "run")
        settings.options.epochs = 1
        _ = try TextDistillation.run(settings, teacher: fixture.teacher)
        let model = try #require(try TextModelFile.load(fixture.dir.file("run").path))
        let noSection = try fixture.dir.write("no-section.csv", text: "package,split,summary,description\np,train,a,b\n")
        expectMessage(["no-section.csv", "no column 'section'"]) { _ = try TextEvaluation.evaluate(model, corpus: noSection) }
        let trainOnly = try fixture.dir.write("train-only.csv", text: "package,section,split,summary,description\np,admin,train,w1,w2 w3\n")
        expectMessage(["train-only.csv", "no test rows"]) { _ = try TextEvaluation.evaluate(model, corpus: trainOnly) }
    }

    /// The exported graph gives the student's vectors (checked in DistillKit's ONNX runtime on
    /// padded batches of many lengths) for transformer students with and without a projection,
    /// and token bags with hashed bigrams; at the opsets before and after LayerNormalization and Gelu.
    @Test func onnxExportMatchesTheStudent() throws {
        let fixture = try TinyTextTask()
        for (student, run) in [("bert:1-8-2-16", "narrow"), ("bert:2-16", "wide"), ("bag:45-64-8-16", "bag")] {
            var settings = fixture.settings(student: student, run: run)
            settings.options.epochs = 1
            _ = try TextDistillation.run(settings, teacher: fixture.teacher)
            for opset in [13, 17, 21] {
                let file = fixture.dir.file("\(run)-\(opset).onnx")
                let report = try #require(try TextStudentExport.onnx(modelAt: fixture.dir.file(run), to: file, opset: opset))
                #expect(report.largestDifference < 2e-5, "\(student), opset \(opset): \(report.largestDifference)")
                #expect(report.dimension == 16 && report.maxLength == 16)
                #expect(FileManager.default.fileExists(atPath: fixture.dir.file("\(run)-\(opset).vocab.txt").path))
                let onnx = try ONNXModel(contentsOf: file)
                #expect(onnx.inputs.map(\.name) == ["input_ids", "attention_mask"] && onnx.outputs.map(\.name) == ["sentence_embedding"])
                let summary = ModelInspector.summary(onnx)
                #expect(summary.parameters > 0 && summary.text.contains("input_ids"))
                // Padding columns change nothing: one text alone and beside a longer one.
                let short = [2, 7, 9, 3], long = [2, 5, 6, 8, 10, 11, 3]
                let alone = try embedRows(onnx, [short]), padded = try embedRows(onnx, [short, long])
                for k in 0..<16 { #expect(abs(alone[k] - padded[k]) < 1e-5) }
            }
        }
    }

    @Test func onnxExportRefusals() throws {
        let fixture = try TinyTextTask()
        var settings = fixture.settings(student: "bag:45-100-8-16", run: "odd")
        settings.options.epochs = 1
        _ = try TextDistillation.run(settings, teacher: fixture.teacher)
        expectMessage(["100 bigram buckets", "power of two"]) { _ = try TextStudentExport.onnx(modelAt: fixture.dir.file("odd"), to: fixture.dir.file("odd.onnx")) }
        #expect(!FileManager.default.fileExists(atPath: fixture.dir.file("odd.onnx").path))
        var g = SeededGenerator(seed: 1)
        expectMessage(["Conv2d", "bert: and bag: students"]) {
            _ = try TextONNXExport.serialize(Sequential([Conv2d(1, 2, kernel: 3, generator: &g)]))
        }
    }

    /// `onnx` on padded int64 ids and mask: the output rows.
    func embedRows(_ onnx: ONNXModel, _ rows: [[Int]]) throws -> [Float] {
        let length = rows.map(\.count).max()!
        var ids = [Int64](repeating: 0, count: rows.count * length), mask = ids
        for (r, row) in rows.enumerated() { for (j, id) in row.enumerated() { ids[r * length + j] = Int64(id); mask[r * length + j] = 1 } }
        let out = try onnx.run(["input_ids": .int(IntTensor(shape: [rows.count, length], values: ids)),
                                "attention_mask": .int(IntTensor(shape: [rows.count, length], values: mask))])
        guard case .float(let y)? = out["sentence_embedding"] else { throw ONNXError("no output") }
        return y.scalars
    }
}
