import DistillData
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
}
