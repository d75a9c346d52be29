import DistillData
import DistillNN
import DistillTensor
import DistillTraining
import Foundation
import Testing

@Suite("Transfer-set report")
struct DataReportTests {
    /// 8 rows, 3 features: rows 2 and 5 are duplicates, feature 1 is constant, row 6 is mislabelled.
    func planted() throws -> (LabeledDataset, Tensor) {
        let x: [Float] = [0, 7, 1,  1, 7, 2,  2, 7, 3,  3, 7, 4,  4, 7, 5,  2, 7, 3,  6, 7, 7,  7, 7, 8]
        let labels = [0, 0, 1, 1, 0, 1, 0, 1]
        let data = try LabeledDataset(features: Tensor(shape: [8, 3], scalars: x), labels: labels, numClasses: 2,
                                      classNames: ["cat", "dog"], featureNames: ["a", "b", "c"])
        // The teacher agrees with every label except row 6 (0.97 dog) and row 3 (0.6 cat).
        var p: [Float] = []
        for (r, l) in labels.enumerated() {
            let q: Float = r == 6 ? 0.03 : r == 3 ? 0.4 : 0.9
            p += l == 0 ? [q, 1 - q] : [1 - q, q]
        }
        return (data, Tensor(shape: [8, 2], scalars: p))
    }

    @Test func findsPlantedProblems() throws {
        let (data, p) = try planted()
        let report = try DataReport(data, teacherProbabilities: p, top: 5)
        #expect(report.classCounts == [4, 4])
        #expect(report.duplicateGroups == [[2, 5]] && report.duplicateRows == 1 && report.conflictingDuplicateGroups == 0)
        #expect(report.constantFeatures == [1])
        #expect(report.nonFiniteFeatures.isEmpty)
        #expect(report.disagreementCount == 2)
        #expect(report.disagreements.map(\.row) == [6, 3], "most confident disagreement first")
        #expect(abs(report.disagreements[0].teacherProbability - 0.97) < 1e-6)
        #expect(report.confidenceHistogram.reduce(0, +) == 8 && report.confidenceHistogram[9] == 7 && report.confidenceHistogram[6] == 1)
        #expect(abs((report.teacherAgreement ?? 0) - 0.75) < 1e-9)
        let text = report.text(name: "planted")
        #expect(text.contains("row 6") && text.contains("constant features: 1 (b)") && text.contains("1 rows repeat"))
        let json = report.json
        #expect((json["constant_features"] as? [String]) == ["b"])
        #expect(JSONSerialization.isValidJSONObject(json))
    }

    @Test func nonFiniteFeaturesAndConflictingDuplicates() throws {
        let x: [Float] = [1, .nan, 1, 2, 1, 2, 5, .infinity]
        let data = try LabeledDataset(features: Tensor(shape: [4, 2], scalars: x), labels: [0, 0, 1, 1], numClasses: 2)
        let report = try DataReport(data)
        #expect(report.nonFiniteFeatures.map(\.feature) == [1] && report.nonFiniteFeatures[0].count == 2)
        #expect(report.duplicateGroups == [[1, 2]] && report.conflictingDuplicateGroups == 1)
        #expect(report.confidenceHistogram.isEmpty && report.teacherAgreement == nil)
    }

    /// Byte images are read a block of 1,024 rows at a time: duplicates in different blocks are
    /// still found, and a hash collision cannot merge rows that differ.
    @Test func duplicatesAcrossBlocksOfByteImages() throws {
        let n = 2100, size = 4
        var random = SeededGenerator(seed: 9)
        var bytes = (0..<(n * size)).map { _ in UInt8.random(in: 0...255, using: &random) }
        for k in 0..<size { bytes[1500 * size + k] = bytes[3 * size + k]; bytes[2099 * size + k] = bytes[3 * size + k] }
        let data = try LabeledDataset(unitBytes: bytes, shape: [n, 1, 2, 2], labels: (0..<n).map { $0 % 3 }, numClasses: 3)
        let report = try DataReport(data)
        #expect(report.duplicateGroups.first == [3, 1500, 2099])
        #expect(report.duplicateGroups.allSatisfy { group in group.allSatisfy { bytes[($0 * size)..<($0 * size + size)] == bytes[(group[0] * size)..<(group[0] * size + size)] } })
        #expect(report.conflictingDuplicateGroups >= 1, "rows 3, 1500 and 2099 have labels 0, 0 and 2")
    }

    @Test func runReportEscapesNamesAndExplainsAMissingTeacherView() throws {
        let (data, _) = try planted()
        let named = try LabeledDataset(features: data.features, labels: data.labels, numClasses: 2, classNames: ["<cat>", "dog & co"])
        var generator = SeededGenerator(seed: 1)
        let model = Sequential([Linear(3, 2, generator: &generator)])
        let test = try evaluate(model, on: named)
        let rows = [ModelSummary(role: "distilled", spec: "mlp:3-2", parameters: 8, bytes: 32, accuracy: test.accuracy, latencyMicroseconds: 0.5)]
        let html = RunReport(title: "a <b> run", models: rows, metrics: [["epoch": 1, "train_loss": 0.7, "test_accuracy": 0.5],
                                                                           ["epoch": 2, "train_loss": 0.5, "test_accuracy": 0.75]],
                             test: test, classNames: named.classNames, transfer: try DataReport(named), transferNote: "no teacher view",
                             configuration: ["student": "mlp:3-2"]).html
        #expect(html.contains("a &lt;b&gt; run") && !html.contains("<b>"))
        #expect(html.contains("&lt;cat&gt;") && html.contains("dog &amp; co"))
        #expect(html.contains("no teacher view") && html.contains("<polyline") && html.contains("epoch 2"))
        #expect(html.hasPrefix("<!DOCTYPE html>") && html.contains("</html>"))
    }
}
