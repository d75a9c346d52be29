import DistillTensor
import Foundation

/// Per-feature mean and standard deviation, for standardising inputs to zero mean and unit variance.
///
/// Compute them from the **training split only** and apply the same statistics to validation and
/// test data: statistics taken over held-out data leak it into training. "Per feature" means per
/// scalar of an example (per pixel for images, per column for tables). A feature whose standard
/// deviation is below `minStd` (e.g. an always-black image corner) is only centred, not scaled, so
/// standardising never divides by zero. The values are `Codable` so a trained model can keep them.
public struct FeatureStatistics: Sendable, Codable, Equatable {
    /// Shape of one example the statistics apply to.
    public let exampleShape: [Int]
    /// Mean of each feature, row-major over `exampleShape`.
    public let mean: [Float]
    /// Population standard deviation of each feature.
    public let std: [Float]

    /// Standard deviations below this are treated as 1 (centre only).
    public static let minStd: Float = 1e-6

    /// Statistics given directly (e.g. decoded from a checkpoint); checks counts and finiteness.
    public init(exampleShape: [Int], mean: [Float], std: [Float]) throws {
        guard let n = CheckedSize.product(exampleShape) else {
            throw DataError("FeatureStatistics: example shape \(exampleShape) is negative or overflows")
        }
        guard mean.count == n, std.count == n else {
            throw DataError("FeatureStatistics: \(mean.count) means and \(std.count) deviations for example shape \(exampleShape) (\(n) features)")
        }
        guard std.allSatisfy({ $0 >= 0 && $0.isFinite }), mean.allSatisfy(\.isFinite) else {
            throw DataError("FeatureStatistics: means must be finite and deviations finite and non-negative")
        }
        self.exampleShape = exampleShape
        self.mean = mean
        self.std = std
    }

    private enum CodingKeys: String, CodingKey { case exampleShape, mean, std }

    /// Decodes the three fields, then checks them as `init(exampleShape:mean:std:)` does: statistics
    /// read from a model file cannot hand `apply` mismatched counts.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(exampleShape: container.decode([Int].self, forKey: .exampleShape),
                      mean: container.decode([Float].self, forKey: .mean), std: container.decode([Float].self, forKey: .std))
    }

    /// Statistics of `dataset`'s features (accumulated in Double). Throws for an empty dataset.
    public init(computedFrom dataset: LabeledDataset) throws {
        try self.init(computedFrom: dataset.features)
    }

    /// Statistics over the first axis of `features` (`[N, ...]`).
    public init(computedFrom features: Tensor) throws {
        guard features.rank >= 1, features.shape[0] > 0 else {
            throw DataError("FeatureStatistics: need at least one example, got shape \(features.shape)")
        }
        let n = features.shape[0], f = features.count / n
        var sum = [Double](repeating: 0, count: f), sumSq = [Double](repeating: 0, count: f)
        let p = features.data
        // Shifted sums (around the first example) keep the variance accurate when |mean| ≫ std.
        for i in 0..<n {
            let row = p + i * f
            for j in 0..<f {
                let d = Double(row[j]) - Double(p[j])
                sum[j] += d
                sumSq[j] += d * d
            }
        }
        var mean = [Float](repeating: 0, count: f), std = [Float](repeating: 0, count: f)
        for j in 0..<f {
            let m = sum[j] / Double(n)
            mean[j] = Float(Double(p[j]) + m)
            std[j] = Float(max(0, sumSq[j] / Double(n) - m * m).squareRoot())
        }
        guard mean.allSatisfy(\.isFinite), std.allSatisfy(\.isFinite) else {
            throw DataError("FeatureStatistics: the features contain NaN or infinite values")
        }
        try self.init(exampleShape: Array(features.shape.dropFirst()), mean: mean, std: std)
    }

    /// The factor `apply` multiplies each centred feature by: `1 / std`, or 1 where `std < minStd`.
    public var scale: [Float] { std.map { $0 < Self.minStd ? 1 : 1 / $0 } }

    /// `(x - mean) * scale` per feature, as a new tensor.
    public func apply(to features: Tensor) throws -> Tensor {
        guard Array(features.shape.dropFirst()) == exampleShape else {
            throw DataError("FeatureStatistics: examples of shape \(Array(features.shape.dropFirst())), the statistics are for \(exampleShape)")
        }
        let f = mean.count, n = features.count / max(f, 1)
        let scale = self.scale
        let out = Tensor(uninitializedShape: features.shape)
        let src = features.data, dst = out.data
        for i in 0..<n {
            for j in 0..<f { dst[i * f + j] = (src[i * f + j] - mean[j]) * scale[j] }
        }
        return out
    }
}

extension LabeledDataset {
    /// The dataset with features standardised by `statistics` (typically computed from the
    /// training split: `FeatureStatistics(computedFrom: train)`).
    public func standardized(with statistics: FeatureStatistics) throws -> LabeledDataset {
        try replacingFeatures(statistics.apply(to: features))
    }
}
