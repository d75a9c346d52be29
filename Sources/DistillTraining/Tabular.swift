import DistillData
import DistillNN
import DistillTensor
import Foundation

// MARK: - Tabular standardisation, kept with the model

/// Tabular (CSV) inputs are standardised with statistics fitted on the training split only; the
/// statistics are stored in the saved model's metadata under `feature_statistics` (JSON of
/// `FeatureStatistics`), so `distill eval`, a teacher loaded from the file, and `cache-teacher`
/// apply them to raw rows themselves: users never standardise by hand. Regression models also keep
/// `target_statistics` (`mean,std` of the target), their outputs being in standardised units.
public enum Tabular {
    /// SavedModel metadata key of the feature statistics.
    public static let statisticsKey = "feature_statistics"
    /// SavedModel metadata key of the regression target's `mean,std`.
    public static let targetKey = "target_statistics"

    /// Statistics fitted on `train` when `data` is a `.csv` file; nil for images.
    public static func standardization(for data: String, train: LabeledDataset) throws -> FeatureStatistics? {
        guard FileKind(data) == .csv, train.count > 0 else { return nil }
        return try FeatureStatistics(computedFrom: train)
    }

    public static func encode(_ statistics: FeatureStatistics) throws -> String {
        // Sorted keys: the same statistics give the same bytes, so a model file is reproducible.
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(statistics), as: UTF8.self)
    }

    public static func decode(_ text: String, source: String) throws -> FeatureStatistics {
        let decoded: FeatureStatistics
        do { decoded = try JSONDecoder().decode(FeatureStatistics.self, from: Data(text.utf8)) } catch {
            throw TensorError("\(source): the stored feature statistics cannot be read (\("\(error)".prefix(200)))")
        }
        // Decoding does not run the validating initializer: run it, so that counts, shape and
        // finiteness are checked for stored statistics exactly as for computed ones.
        do {
            try ModelShapes.checkExampleShape(decoded.exampleShape, what: "feature statistics")
            return try FeatureStatistics(exampleShape: decoded.exampleShape, mean: decoded.mean, std: decoded.std)
        } catch {
            throw TensorError("\(source): the stored feature statistics are invalid (\(error))")
        }
    }

    /// The feature statistics a saved model keeps, if any.
    public static func statistics(of info: SavedModel, source: String) throws -> FeatureStatistics? {
        guard let text = info.extra[statisticsKey] else { return nil }
        let statistics = try decode(text, source: source)
        guard statistics.mean.count == info.inputShape.reduce(1, *) else {
            throw TensorError("\(source): the stored feature statistics are for \(statistics.mean.count) features, the model takes \(info.inputShape)")
        }
        return statistics
    }

    /// A regression model's target scaling (`y = output · std + mean`), or nil for a classifier.
    /// Stored as "mean,std" under `targetKey`; anything else there is an error naming the file.
    public static func targetScaling(of info: SavedModel, source: String) throws -> (mean: Float, std: Float)? {
        guard let text = info.extra[targetKey] else { return nil }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let mean = parts[0], let std = parts[1], mean.isFinite, std.isFinite, std > 0 else {
            throw TensorError("\(source): \(targetKey) must be 'mean,std' (finite, std > 0), got '\(text.prefix(60))'")
        }
        return (mean, std)
    }

    /// `x · std + mean` per feature: raw features from standardised ones.
    public static func unstandardize(_ x: Tensor, with s: FeatureStatistics) -> Tensor {
        let f = s.mean.count, n = x.count / max(f, 1)
        let out = Tensor(uninitializedShape: x.shape)
        let src = x.data, dst = out.data
        let scale = s.std.map { $0 < FeatureStatistics.minStd ? 1 : $0 }
        for i in 0..<n { for j in 0..<f { dst[i * f + j] = src[i * f + j] * scale[j] + s.mean[j] } }
        return out
    }
}

/// A teacher that converts its inputs: from the student's standardisation (`input`, nil: raw) to
/// raw rows, then to its own (`own`, nil: raw). Rows of a batch that are rows of `rawRows` (index
/// ≥ 0) are taken from there as the user gave them; only rows made in training (mixup, index −1)
/// are un-standardised.
public final class StandardizingTeacher: Teacher {
    public let base: Teacher
    public let own: FeatureStatistics?
    public let input: FeatureStatistics?
    public let rawRows: LabeledDataset?
    public init(_ base: Teacher, own: FeatureStatistics?, input: FeatureStatistics?, rawRows: LabeledDataset? = nil) {
        self.base = base; self.own = own; self.input = input; self.rawRows = rawRows
    }
    public var name: String { base.name }
    public var parameterCount: Int { base.parameterCount }
    public var bytes: Int { base.bytes }

    /// The raw rows behind `x` (standardised like the student's inputs; row r is dataset row `indices[r]` when ≥ 0).
    func raw(_ x: Tensor, indices: [Int]) -> Tensor {
        guard let input else { return x }
        guard let rawRows, indices.count == x.shape[0] else { return Tabular.unstandardize(x, with: input) }
        let real = indices.indices.filter { indices[$0] >= 0 && indices[$0] < rawRows.count }
        if real.count == indices.count { return rawRows.rows(indices) }
        let out = Tabular.unstandardize(x, with: input)
        let given = rawRows.rows(real.map { indices[$0] })  // one gather for every real row of the batch
        let f = x.count / max(x.shape[0], 1)
        for (k, r) in real.enumerated() { (out.data + r * f).update(from: given.data + k * f, count: f) }
        return out
    }

    public func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        let x = raw(inputs, indices: indices)
        return try base.forward(own.map { try $0.apply(to: x) } ?? x, indices: indices, features: features)
    }
}
