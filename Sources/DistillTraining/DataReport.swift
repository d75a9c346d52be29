import DistillData
import DistillTensor
import Foundation

/// What is in a transfer set, before distilling from it (`distill data-report`): class balance,
/// the teacher's confidence, the rows where teacher and label disagree most (possible label
/// noise), exact duplicate rows, and constant or non-finite features.
///
/// Disagreements are ranked by the teacher's probability of its own (non-label) class: a
/// confident teacher contradicting the label is the likeliest label error. Duplicates compare the
/// feature bits exactly (after reading; e.g. `1` and `1.0` in a CSV are equal).
public struct DataReport {
    public struct Disagreement: Sendable, Equatable {
        public var row: Int
        public var label: Int
        public var teacherClass: Int
        /// The teacher's probability of `teacherClass`.
        public var teacherProbability: Float
        /// The teacher's probability of `label`.
        public var labelProbability: Float
    }

    public var rows: Int
    public var features: Int
    public var numClasses: Int
    public var classNames: [String]
    /// Rows per class (empty when unlabelled).
    public var classCounts: [Int]
    /// Teacher max-probability histogram over 10 equal bins [0, 0.1), ..., [0.9, 1] (empty without a teacher).
    public var confidenceHistogram: [Int]
    /// Fraction of labelled rows where the teacher's top class is the label.
    public var teacherAgreement: Double?
    /// Labelled rows where the teacher's top class is not the label, most confident first (up to `top`).
    public var disagreements: [Disagreement]
    public var disagreementCount: Int
    /// Groups of rows with identical features (each group sorted, groups by first row; up to `top`).
    public var duplicateGroups: [[Int]]
    /// Rows that repeat an earlier row.
    public var duplicateRows: Int
    /// Duplicate groups whose rows carry different labels.
    public var conflictingDuplicateGroups: Int
    /// Features with one value in every row.
    public var constantFeatures: [Int]
    /// Features with NaN or infinite values, and how many.
    public var nonFiniteFeatures: [(feature: Int, count: Int)]
    public var featureNames: [String]?

    /// Builds the report; `teacherProbabilities` is `[N, C]` (one row per dataset row).
    public init(_ dataset: LabeledDataset, teacherProbabilities: Tensor? = nil, top: Int = 10) throws {
        let n = dataset.count, f = dataset.exampleSize
        rows = n; features = f; numClasses = dataset.numClasses; classNames = dataset.classNames
        featureNames = dataset.featureNames
        classCounts = dataset.isLabeled ? dataset.classCounts : []
        confidenceHistogram = []; teacherAgreement = nil; disagreements = []; disagreementCount = 0

        if let p = teacherProbabilities {
            guard p.rank == 2, p.shape[0] == n else { throw TensorError("data report: teacher outputs \(p.shape) for \(n) rows") }
            let c = p.shape[1]
            var histogram = [Int](repeating: 0, count: 10)
            var agree = 0
            var wrong: [Disagreement] = []
            for r in 0..<n {
                let row = p.data + r * c
                var best = 0
                for j in 1..<max(c, 1) where row[j] > row[best] { best = j }
                histogram[min(9, max(0, Int(row[best] * 10)))] += 1
                if dataset.isLabeled {
                    let label = dataset.labels[r]
                    if best == label { agree += 1 } else {
                        wrong.append(Disagreement(row: r, label: label, teacherClass: best, teacherProbability: row[best],
                                                  labelProbability: label < c ? row[label] : 0))
                    }
                }
            }
            confidenceHistogram = histogram
            if dataset.isLabeled {
                teacherAgreement = n > 0 ? Double(agree) / Double(n) : nil
                disagreementCount = wrong.count
                disagreements = Array(wrong.sorted { ($0.teacherProbability, -$0.row) > ($1.teacherProbability, -$1.row) }.prefix(top))
            }
        }

        // One pass over the rows in blocks (byte images are decoded a block at a time, never as a
        // whole): a hash of each row's bits for duplicates, and per-feature constancy and
        // non-finite counts. Rows with equal hashes are then compared exactly.
        var buckets: [UInt64: [Int]] = [:]
        var nonFiniteCounts = [Int](repeating: 0, count: f), varies = [Bool](repeating: false, count: f)
        var firstRow = [Float](repeating: 0, count: f)
        for start in stride(from: 0, to: n, by: 1024) {
            let block = dataset.rows(start..<min(start + 1024, n))
            withExtendedLifetime(block) {
                let x = block.data
                if start == 0 { for j in 0..<f { firstRow[j] = x[j] } }
                for r in 0..<block.shape[0] {
                    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
                    for j in 0..<f {
                        let v = x[r * f + j]
                        hash = (hash ^ UInt64(Self.key(v))) &* 0x0000_0100_0000_01B3
                        if !v.isFinite { nonFiniteCounts[j] += 1 }
                        if v != firstRow[j] && !(v.isNaN && firstRow[j].isNaN) { varies[j] = true }
                    }
                    buckets[hash, default: []].append(start + r)
                }
            }
        }
        var dup: [[Int]] = []
        for candidates in buckets.values where candidates.count > 1 {
            let block = dataset.rows(candidates)
            let keys = withExtendedLifetime(block) {
                candidates.indices.map { r in (0..<f).map { Self.key(block.data[r * f + $0]) } }
            }
            dup += Dictionary(grouping: candidates.indices, by: { keys[$0] }).values.filter { $0.count > 1 }.map { $0.map { candidates[$0] }.sorted() }
        }
        dup.sort { $0[0] < $1[0] }
        duplicateRows = dup.reduce(0) { $0 + $1.count - 1 }
        duplicateGroups = Array(dup.prefix(top))
        conflictingDuplicateGroups = dataset.isLabeled ? dup.filter { Set($0.map { dataset.labels[$0] }).count > 1 }.count : 0

        let constant = n > 1 ? (0..<f).filter { !varies[$0] } : []
        let nonFinite = (0..<f).filter { nonFiniteCounts[$0] > 0 }.map { ($0, nonFiniteCounts[$0]) }
        constantFeatures = constant
        nonFiniteFeatures = nonFinite.map { (feature: $0.0, count: $0.1) }
    }

    /// A value's bits for duplicate detection, with -0 equal to +0.
    private static func key(_ v: Float) -> UInt32 { v == 0 ? 0 : v.bitPattern }

    func featureName(_ j: Int) -> String { featureNames.map { $0[j] } ?? "feature \(j)" }
    func className(_ c: Int) -> String { classNames.count == numClasses && c < classNames.count ? classNames[c] : String(c) }

    public var json: [String: Any] {
        var j: [String: Any] = [
            "rows": rows, "features": features, "classes": numClasses, "class_counts": classCounts,
            "duplicate_rows": duplicateRows, "duplicate_groups": duplicateGroups,
            "conflicting_duplicate_groups": conflictingDuplicateGroups,
            "constant_features": constantFeatures.map(featureName),
            "non_finite_features": nonFiniteFeatures.map { ["feature": featureName($0.feature), "count": $0.count] as [String: Any] },
        ]
        if !confidenceHistogram.isEmpty { j["teacher_confidence_histogram"] = confidenceHistogram }
        if let teacherAgreement {
            j["teacher_agreement"] = teacherAgreement
            j["disagreement_count"] = disagreementCount
            j["disagreements"] = disagreements.map {
                ["row": $0.row, "label": className($0.label), "teacher_class": className($0.teacherClass),
                 "teacher_probability": Double($0.teacherProbability), "label_probability": Double($0.labelProbability)] as [String: Any]
            }
        }
        return j
    }

    public func text(name: String) -> String {
        var lines = ["\(name): \(rows) rows, \(features) features, \(numClasses) classes"]
        if !classCounts.isEmpty {
            lines.append("class balance:")
            let most = max(classCounts.max() ?? 1, 1)
            for (c, k) in classCounts.enumerated() {
                let share = rows > 0 ? Double(k) / Double(rows) * 100 : 0
                lines.append("  " + className(c).padding(toLength: max(14, className(c).count), withPad: " ", startingAt: 0)
                             + String(format: " %7d  %5.1f%%  ", k, share) + String(repeating: "#", count: k * 30 / most))
            }
            if let least = classCounts.min(), least * 5 < most { lines.append("  imbalanced: the largest class has \(most / max(least, 1))× the rows of the smallest") }
        } else {
            lines.append("unlabelled: the teacher's outputs are the only targets")
        }
        if !confidenceHistogram.isEmpty {
            lines.append("teacher confidence (max probability):")
            let most = max(confidenceHistogram.max() ?? 1, 1)
            for (b, k) in confidenceHistogram.enumerated() {
                lines.append(String(format: "  %.1f-%.1f %7d  ", Double(b) / 10, Double(b + 1) / 10, k) + String(repeating: "#", count: k * 30 / most))
            }
        }
        if let teacherAgreement {
            lines.append(String(format: "teacher agrees with the label on %.2f%% of rows; %d disagreements", teacherAgreement * 100, disagreementCount))
            if !disagreements.isEmpty {
                lines.append("most confident disagreements (possible label noise):")
                for d in disagreements {
                    func name(_ c: Int) -> String { className(c).padding(toLength: max(10, className(c).count), withPad: " ", startingAt: 0) }
                    lines.append(String(format: "  row %-7d label ", d.row) + name(d.label) + " teacher " + name(d.teacherClass)
                                 + String(format: " p=%.3f (label p=%.3f)", d.teacherProbability, d.labelProbability))
                }
            }
        }
        lines.append("exact duplicates: \(duplicateRows) rows repeat an earlier row" + (conflictingDuplicateGroups > 0 ? " (\(conflictingDuplicateGroups) groups with conflicting labels)" : ""))
        for g in duplicateGroups { lines.append("  rows " + g.prefix(8).map(String.init).joined(separator: ", ") + (g.count > 8 ? ", ..." : "")) }
        lines.append("constant features: \(constantFeatures.count)" + (constantFeatures.isEmpty ? "" : " (" + constantFeatures.prefix(12).map(featureName).joined(separator: ", ") + (constantFeatures.count > 12 ? ", ..." : "") + ")"))
        lines.append("non-finite features: \(nonFiniteFeatures.count)" + (nonFiniteFeatures.isEmpty ? "" : " (" + nonFiniteFeatures.prefix(12).map { "\(featureName($0.feature)): \($0.count) rows" }.joined(separator: ", ") + ")"))
        return lines.joined(separator: "\n")
    }
}
