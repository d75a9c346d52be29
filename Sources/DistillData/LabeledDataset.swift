import DistillTensor
import Foundation

/// Examples with their class labels: the input to training, evaluation and `BatchLoader`.
///
/// `features` holds one example per row of its first axis (`[N, ...]`, e.g. `[N, 1, 28, 28]` for
/// images or `[N, F]` for tables). `labels` has one class index per example, or is empty for
/// unlabelled data (e.g. a transfer set the teacher labels). The dataset is a value: operations
/// return new datasets with their own feature storage and never write into `features`.
public struct LabeledDataset: Sendable {
    /// `[N, ...]`, one example per row.
    public let features: Tensor
    /// One class index in `0..<numClasses` per example, or empty for unlabelled data.
    public let labels: [Int]
    /// How many classes the labels range over.
    public let numClasses: Int
    /// A name per class (`numClasses` of them), or empty when the classes have no names.
    public let classNames: [String]
    /// A name per feature for tabular data (e.g. `age`, `color=red`), nil for images.
    public let featureNames: [String]?

    /// Checks that the parts agree: a rank ≥ 1 tensor, one label per row (or none), labels in
    /// `0..<numClasses`, `numClasses` class names (or none), one name per feature (or nil).
    public init(features: Tensor, labels: [Int], numClasses: Int, classNames: [String] = [],
                featureNames: [String]? = nil) throws {
        guard features.rank >= 1 else { throw DataError("LabeledDataset: features must be [N, ...], got a scalar") }
        let n = features.shape[0]
        guard labels.isEmpty || labels.count == n else {
            throw DataError("LabeledDataset: \(labels.count) labels for \(n) examples")
        }
        guard numClasses >= 0 else { throw DataError("LabeledDataset: numClasses \(numClasses) is negative") }
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= numClasses }) {
            throw DataError("LabeledDataset: label \(labels[bad]) of example \(bad) is outside 0..<\(numClasses)")
        }
        guard classNames.isEmpty || classNames.count == numClasses else {
            throw DataError("LabeledDataset: \(classNames.count) class names for \(numClasses) classes")
        }
        if let featureNames {
            let perExample = features.shape.dropFirst().reduce(1, *)
            guard featureNames.count == perExample else {
                throw DataError("LabeledDataset: \(featureNames.count) feature names for \(perExample) features per example")
            }
        }
        self.features = features
        self.labels = labels
        self.numClasses = numClasses
        self.classNames = classNames
        self.featureNames = featureNames
    }

    /// Number of examples (`features.shape[0]`).
    public var count: Int { features.shape[0] }
    /// Shape of one example (`features.shape` without the first axis).
    public var exampleShape: [Int] { Array(features.shape.dropFirst()) }
    /// Scalars per example.
    public var exampleSize: Int { exampleShape.reduce(1, *) }
    /// Whether every example has a label.
    public var isLabeled: Bool { labels.count == count }

    /// Examples per class (`numClasses` counts; all zero when unlabelled).
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: numClasses)
        for l in labels { counts[l] += 1 }
        return counts
    }

    /// The examples at `indices`, in that order (repeats allowed).
    public func subset(_ indices: [Int]) throws -> LabeledDataset {
        if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
            throw DataError("LabeledDataset.subset: index \(bad) outside 0..<\(count)")
        }
        let rowSize = exampleSize
        let out = Tensor(uninitializedShape: [indices.count] + exampleShape)
        let src = features.data, dst = out.data
        for (row, i) in indices.enumerated() {
            (dst + row * rowSize).update(from: src + i * rowSize, count: rowSize)
        }
        return try LabeledDataset(features: out, labels: labels.isEmpty ? [] : indices.map { labels[$0] },
                                  numClasses: numClasses, classNames: classNames, featureNames: featureNames)
    }

    /// The first `n` examples (all of them when `n >= count`).
    public func prefix(_ n: Int) -> LabeledDataset {
        // Indices are in range by construction, so subset cannot fail.
        try! subset(Array(0..<max(0, min(n, count))))
    }

    /// Splits into a training part and a held-out validation part of
    /// `round(validationFraction · count)` examples, chosen by a seeded shuffle (the same seed gives
    /// the same split on every machine). Both parts keep the original order of their examples.
    /// Not stratified: class proportions match only in expectation.
    public func split(validationFraction: Double, seed: UInt64) throws -> (train: LabeledDataset, validation: LabeledDataset) {
        guard validationFraction >= 0 && validationFraction <= 1 else {
            throw DataError("LabeledDataset.split: validationFraction \(validationFraction) is outside [0, 1]")
        }
        var generator = SeededGenerator(seed: seed)
        let order = generator.permutation(count)
        let nValidation = Int((validationFraction * Double(count)).rounded())
        let validation = order[..<nValidation].sorted()
        let train = order[nValidation...].sorted()
        return (try subset(train), try subset(validation))
    }

    /// The same dataset with other features of the same number of examples.
    func replacingFeatures(_ newFeatures: Tensor) throws -> LabeledDataset {
        try LabeledDataset(features: newFeatures, labels: labels, numClasses: numClasses,
                           classNames: classNames, featureNames: featureNames)
    }
}

/// Features with real-valued targets, e.g. from `CSVTable.readRegression`.
public struct RegressionDataset: Sendable {
    /// `[N, F]`, one example per row.
    public let features: Tensor
    /// `[N]`, one target per example.
    public let targets: Tensor
    /// A name per feature column.
    public let featureNames: [String]
    /// The name of the target column.
    public let targetName: String

    /// Checks shapes: features `[N, F]`, targets `[N]`, `F` feature names.
    public init(features: Tensor, targets: Tensor, featureNames: [String], targetName: String) throws {
        guard features.rank == 2, targets.rank == 1, targets.shape[0] == features.shape[0] else {
            throw DataError("RegressionDataset: features \(features.shape) need shape [N, F] and targets \(targets.shape) shape [N]")
        }
        guard featureNames.count == features.shape[1] else {
            throw DataError("RegressionDataset: \(featureNames.count) feature names for \(features.shape[1]) features")
        }
        self.features = features
        self.targets = targets
        self.featureNames = featureNames
        self.targetName = targetName
    }

    /// Number of examples.
    public var count: Int { features.shape[0] }
}
