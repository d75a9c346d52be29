import DistillData
import DistillNN
import DistillTensor
import DistillTestSupport
import DistillTraining
import Foundation
import Testing

/// `distill quantize --qat` end to end on a small MLP whose post-training int8 student loses
/// accuracy: every hidden unit carries a huge weight on an input that is always 0 (an outlier that
/// leaves the float model unchanged but makes its channel's int8 step so coarse that the other
/// weights round to −1, 0 or +1 steps). Fine-tuning with fake quantization, distilling from the
/// float model, must win most of the lost accuracy back; the file written must be that student.
@Suite("Quantization-aware training", .serialized)
struct QuantizationAwareTrainingTests {
    static let features = 16, classes = 6

    /// Gaussian blobs: feature 0 is always 0, the others a class centre plus unit noise.
    static func blobs(rows: Int, seed: UInt64) -> (x: [Float], y: [Int]) {
        var centres = SeededGenerator(seed: 99), g = SeededGenerator(seed: seed)
        let centre = (0..<classes).map { _ in (0..<features).map { $0 == 0 ? Float(0) : Float(centres.nextGaussian()) * 0.45 } }
        var x: [Float] = [], y: [Int] = []
        for r in 0..<rows {
            let c = r % classes
            y.append(c)
            x += (0..<features).map { $0 == 0 ? 0 : centre[c][$0] + Float(g.nextGaussian()) }
        }
        return (x, y)
    }

    /// The float model (trained in memory, then given its outliers) and a CSV of other rows from
    /// the same distribution, in `folder`.
    static func prepare(_ folder: URL) throws -> (model: URL, data: URL) {
        let (x, y) = blobs(rows: 3000, seed: 1)
        let train = try LabeledDataset(features: Tensor(shape: [3000, features], scalars: x), labels: y, numClasses: classes)
        let model = try ModelZoo.build("mlp:16-32-\(classes)", inputShape: [features], numClasses: classes, seed: 3)
        let info = SavedModel(spec: "mlp:16-32-\(classes)", inputShape: [features], numClasses: classes)
        var options = TrainingOptions()
        options.epochs = 8
        options.batchSize = 64
        options.quiet = true
        let trainer = try Trainer(student: model, studentInfo: info, teachers: [], objective: try DistillationObjective(terms: [LossTerm(.ce)]),
                                  options: options, train: train, test: train, run: nil)
        _ = try trainer.fit()
        let first = try #require(model.namedParameters().first { $0.tensor.rank == 2 }?.tensor)
        for o in 0..<32 {
            let largest = (1..<features).map { abs(first.data[o * features + $0]) }.max()!
            first.data[o * features] = 127 * largest
        }
        let modelURL = folder.appendingPathComponent("float.safetensors")
        try info.save(model, to: modelURL)
        let (cx, cy) = blobs(rows: 2400, seed: 2)
        var csv = (0..<features).map { "f\($0)" }.joined(separator: ",") + ",label\n"
        for r in 0..<cy.count { csv += (0..<features).map { "\(cx[r * features + $0])" }.joined(separator: ",") + ",\(cy[r])\n" }
        let dataURL = folder.appendingPathComponent("blobs.csv")
        try csv.write(to: dataURL, atomically: true, encoding: .utf8)
        return (modelURL, dataURL)
    }

    @Test func fineTuningWinsBackWhatPostTrainingQuantizationLost() throws {
        let directory = try TemporaryDirectory()
        let folder = directory.url
        let (model, data) = try Self.prepare(folder)
        let ptqFile = folder.appendingPathComponent("ptq.safetensors"), qatFile = folder.appendingPathComponent("qat.safetensors")

        let ptq = try StudentQuantization.run(modelAt: model, data: data.path, labelColumn: "label", samples: 300, output: ptqFile)
        let lost = ptq.accuracy - ptq.accuracyInt8
        #expect(lost > 0.05, "the outliers should cost post-training quantization accuracy: float \(ptq.accuracy), int8 \(ptq.accuracyInt8)")
        #expect(ptq.suggestsQAT && ptq.text.contains("try --qat") && ptq.json["suggest_qat"] as? Bool == true)

        var settings = StudentQuantization.QuantizationAwareSettings()
        settings.epochs = 6
        settings.learningRate = 2e-3
        settings.batchSize = 64
        settings.quiet = true
        let report = try StudentQuantization.run(modelAt: model, data: data.path, labelColumn: "label", samples: 300, output: qatFile, qat: settings)
        let qat = try #require(report.qat)
        #expect(report.accuracyInt8 == ptq.accuracyInt8, "the post-training student is the same with and without --qat")
        #expect(qat.accuracy > report.accuracyInt8 + lost / 2,
                "QAT \(qat.accuracy) should win back at least half of the \(lost) PTQ lost (float \(report.accuracy), PTQ \(report.accuracyInt8))")
        #expect(qat.written == "qat" && qat.validationAccuracy > qat.validationAccuracyPTQ)
        #expect(!report.suggestsQAT)
        #expect(report.text.contains("int8 PTQ") && report.text.contains("int8 QAT") && report.text.contains("quantization-aware (QAT) student"))
        #expect(report.json["accuracy_int8_qat"] as? Double == qat.accuracy && report.json["written"] as? String == "qat")

        // The file is the fine-tuned student: on the int8 plan it scores what the report says,
        // and it keeps the post-training student's activation ranges.
        let written = try QuantizedStudent.load(qatFile), original = try QuantizedStudent.load(ptqFile)
        #expect(written.input == original.input && written != original)
        let (_, test) = try DataSource.load(data.path, labelColumn: "label", seed: 0)
        #expect(try evaluate(QuantizedModel(written), on: test).accuracy == qat.accuracy)
    }

    @Test func settingsOutOfRangeAreNamed() throws {
        var settings = StudentQuantization.QuantizationAwareSettings()
        settings.epochs = 0
        #expect { try settings.validate() } throws: { "\($0)".contains("--qat-epochs") }
        settings.epochs = 2
        settings.learningRate = -1
        #expect { try settings.validate() } throws: { "\($0)".contains("--qat-learning-rate") }
        settings.learningRate = 1e-4
        settings.trainLimit = 0
        #expect { try settings.validate() } throws: { "\($0)".contains("--train-limit") }
    }
}
