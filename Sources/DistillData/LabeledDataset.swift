import CKernels
import DistillTensor
import Foundation

/// Examples with their class labels: the input to training, evaluation and `BatchLoader`.
///
/// The examples form a `[N, ...]` array (`featureShape`, e.g. `[N, 1, 28, 28]` for images or
/// `[N, F]` for tables), held either as Float32 or, for 8-bit images, as one byte per value read
/// as `byte / 255`: Fashion-MNIST's training images take 47 MB instead of 188 MB. Read examples
/// with `rows` or `copyRows` (which decode bytes batch by batch); `features` gives the whole array
/// as Float32 and, for byte images, allocates it. `labels` has one class index per example, or is
/// empty for unlabelled data (e.g. a transfer set the teacher labels). The dataset is a value:
/// operations return new datasets with their own storage.
public struct LabeledDataset: Sendable {
    /// How the values are held.
    enum Storage: Sendable {
        case floats(Tensor)
        /// One byte per value, decoded as `byte / 255`.
        case unitBytes([UInt8])
    }

    let storage: Storage
    /// `[N, ...]`: the number of examples, then the shape of one example.
    public let featureShape: [Int]
    /// One class index in `0..<numClasses` per example, or empty for unlabelled data.
    public let labels: [Int]
    /// How many classes the labels range over.
    public let numClasses: Int
    /// A name per class (`numClasses` of them), or empty when the classes have no names.
    public let classNames: [String]
    /// A name per feature for tabular data (e.g. `age`, `color=red`), nil for images.
    public let featureNames: [String]?
    /// The file the examples came from, for error messages (kept by `subset`, `split` and
    /// `standardized`); nil for data built in memory.
    public let source: String?

    /// Most classes a dataset may have. A label is a class index, so a label column holding, say,
    /// 2^40 would otherwise ask for per-class arrays of terabytes (class counts, a classifier head).
    public static let maxClasses = 1 << 16

    /// Checks that the parts agree: a rank ≥ 1 tensor, one label per row (or none), labels in
    /// `0..<numClasses` (at most `maxClasses`), `numClasses` class names (or none), one name per
    /// feature (or nil). `source` (the file the data came from) starts every error message.
    public init(features: Tensor, labels: [Int], numClasses: Int, classNames: [String] = [],
                featureNames: [String]? = nil, source: String? = nil) throws {
        guard features.rank >= 1 else { throw Self.error(source, "features must be [N, ...], got a scalar") }
        try self.init(storage: .floats(features), shape: features.shape, labels: labels, numClasses: numClasses,
                      classNames: classNames, featureNames: featureNames, source: source)
    }

    /// 8-bit values (e.g. image pixels) of shape `shape` (`[N, ...]`), read as `byte / 255`; the
    /// same checks as `init(features:...)`.
    public init(unitBytes: [UInt8], shape: [Int], labels: [Int], numClasses: Int, classNames: [String] = [],
                featureNames: [String]? = nil, source: String? = nil) throws {
        guard shape.count >= 1, CheckedSize.product(shape) == unitBytes.count else {
            throw Self.error(source, "\(unitBytes.count) bytes do not fill shape \(shape)")
        }
        try self.init(storage: .unitBytes(unitBytes), shape: shape, labels: labels, numClasses: numClasses,
                      classNames: classNames, featureNames: featureNames, source: source)
    }

    private init(storage: Storage, shape: [Int], labels: [Int], numClasses: Int, classNames: [String],
                 featureNames: [String]?, source: String?) throws {
        let n = shape[0]
        guard labels.isEmpty || labels.count == n else {
            throw Self.error(source, "\(labels.count) labels for \(n) examples")
        }
        guard numClasses >= 0 else { throw Self.error(source, "numClasses \(numClasses) is negative") }
        guard numClasses <= Self.maxClasses else {
            throw Self.error(source, "\(numClasses) classes, more than the \(Self.maxClasses) a dataset may have")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= numClasses }) {
            throw Self.error(source, "label \(labels[bad]) of example \(bad) is outside 0..<\(numClasses)")
        }
        guard classNames.isEmpty || classNames.count == numClasses else {
            throw Self.error(source, "\(classNames.count) class names for \(numClasses) classes")
        }
        if let featureNames {
            let perExample = CheckedSize.product(shape.dropFirst()) ?? -1
            guard featureNames.count == perExample else {
                throw Self.error(source, "\(featureNames.count) feature names for \(perExample) features per example")
            }
        }
        self.storage = storage
        self.featureShape = shape
        self.labels = labels
        self.numClasses = numClasses
        self.classNames = classNames
        self.featureNames = featureNames
        self.source = source
    }

    /// The number of classes integer labels imply, largest label + 1, after checking that there
    /// is at least one label, none is negative and the count stays within `maxClasses`. `source`
    /// (e.g. `data.npz[y_train.npy]`) starts every error message.
    public static func classCount(of labels: [Int], source: String) throws -> Int {
        guard let largest = labels.max() else { throw DataError(file: source, "no labels") }
        if let bad = labels.firstIndex(where: { $0 < 0 }) {
            throw DataError(file: source, "label \(labels[bad]) of example \(bad) is negative: labels must be class indices 0, 1, 2, ...")
        }
        guard largest < maxClasses else {
            let example = labels.firstIndex(of: largest)!
            throw DataError(file: source, "label \(largest) of example \(example) would make \(largest) + 1 classes, more than the \(maxClasses) a dataset may have: labels must be class indices 0, 1, 2, ...")
        }
        return largest + 1
    }

    /// A `DataError` starting with `source`, or with "LabeledDataset" when the data came from no file.
    private static func error(_ source: String?, _ problem: String) -> DataError {
        DataError(file: source ?? "LabeledDataset", problem)
    }

    /// All examples as one Float32 `[N, ...]` tensor. For byte-backed images this decodes (and
    /// allocates) the whole array: prefer `rows` or `copyRows` for batches.
    public var features: Tensor {
        switch storage {
        case .floats(let tensor): return tensor
        case .unitBytes: return rows(0..<count)
        }
    }

    /// True when every value is finite whatever the file held: 8-bit values decode to `0...1`.
    public var isFiniteByConstruction: Bool {
        if case .unitBytes = storage { return true }
        return false
    }

    /// Number of examples (`featureShape[0]`).
    public var count: Int { featureShape[0] }
    /// Shape of one example (`featureShape` without the first axis).
    public var exampleShape: [Int] { Array(featureShape.dropFirst()) }
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

    /// Writes the examples at `indices` (in range: the caller checks), in order, to `destination`
    /// as Float32, `exampleSize` values each.
    public func copyRows<Indices: Collection<Int>>(_ indices: Indices, into destination: UnsafeMutablePointer<Float>) {
        let rowSize = exampleSize
        switch storage {
        case .floats(let tensor):
            let source = tensor.data
            for (row, i) in indices.enumerated() { (destination + row * rowSize).update(from: source + i * rowSize, count: rowSize) }
        case .unitBytes(let bytes):
            bytes.withUnsafeBufferPointer { source in
                let rows = indices.map { Int64($0) }
                dk_gather_unit_bytes(source.baseAddress!, rowSize, rows, rows.count, destination)
            }
        }
    }

    /// The examples at `indices` as a Float32 `[indices.count, ...]` tensor.
    public func rows<Indices: Collection<Int>>(_ indices: Indices) -> Tensor {
        let out = Tensor(uninitializedShape: [indices.count] + exampleShape)
        copyRows(indices, into: out.data)
        return out
    }

    /// The examples at `indices`, in that order (repeats allowed).
    public func subset(_ indices: [Int]) throws -> LabeledDataset {
        if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
            throw Self.error(source, "subset index \(bad) outside 0..<\(count)")
        }
        let labels: [Int] = labels.isEmpty ? [] : indices.map { self.labels[$0] }
        let shape = [indices.count] + exampleShape
        switch storage {
        case .floats:
            return try LabeledDataset(features: rows(indices), labels: labels, numClasses: numClasses,
                                      classNames: classNames, featureNames: featureNames, source: source)
        case .unitBytes(let bytes):
            let rowSize = exampleSize
            var picked = [UInt8]()
            picked.reserveCapacity(indices.count * rowSize)
            for i in indices { picked.append(contentsOf: bytes[(i * rowSize)..<((i + 1) * rowSize)]) }
            return try LabeledDataset(unitBytes: picked, shape: shape, labels: labels, numClasses: numClasses,
                                      classNames: classNames, featureNames: featureNames, source: source)
        }
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
        let rows = Self.splitRows(count: count, validationFraction: validationFraction, seed: seed)
        return (try subset(rows.train), try subset(rows.validation))
    }

    /// The rows `split` puts on each side, in ascending order: a seeded permutation of `0..<count`
    /// whose first `round(fraction · count)` entries are the validation rows. For data held other
    /// than as a `LabeledDataset` (regression tables, teacher-output files) that must split the same way.
    public static func splitRows(count: Int, validationFraction: Double, seed: UInt64) -> (train: [Int], validation: [Int]) {
        var generator = SeededGenerator(seed: seed)
        let order = generator.permutation(count)
        let nValidation = Int((validationFraction * Double(count)).rounded())
        return (order[nValidation...].sorted(), order[..<nValidation].sorted())
    }

    /// The same dataset with other features of the same number of examples.
    func replacingFeatures(_ newFeatures: Tensor) throws -> LabeledDataset {
        try LabeledDataset(features: newFeatures, labels: labels, numClasses: numClasses,
                           classNames: classNames, featureNames: featureNames, source: source)
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
