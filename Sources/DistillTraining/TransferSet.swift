import DistillTensor
import Foundation

/// More transfer data than labels: what a training batch becomes when only some rows keep their
/// labels (`--label-limit`) and when mixed inputs are added (`--mixup`).
public enum TransferSet {
    /// The inputs, labels and dataset row indices the trainer uses for a batch:
    /// - rows with index ≥ `labelLimit` get the label -1 (no cross-entropy; the teacher still labels them);
    /// - with `mixup` α, `batch.count` mixed inputs `λ·x_i + (1−λ)·x_π(i)` (λ ~ Beta(α, α) per pair,
    ///   π a seeded permutation of the batch) are appended, with label -1 and index -1 (only a
    ///   teacher in the loop can label them). Deterministic in (`seed`, `step`).
    public static func prepare(inputs: Tensor, labels batchLabels: [Int], indices batchIndices: [Int], labelLimit: Int?, mixup: Float?,
                               seed: UInt64, step: Int) -> (Tensor, [Int], [Int]) {
        var labels = batchLabels
        var indices = batchIndices
        let count = batchIndices.count
        if let labelLimit, !labels.isEmpty {
            labels = zip(indices, labels).map { $0 < labelLimit ? $1 : -1 }
        }
        guard let alpha = mixup, count > 0 else { return (inputs, labels, indices) }
        var g = SeededGenerator(seed: TeacherOutputs.mixSeed(seed, 0x4D49_5855, UInt64(step)))
        let n = count, rowSize = inputs.count / n
        let partner = g.permutation(n)
        let out = Tensor(uninitializedShape: [2 * n] + Array(inputs.shape.dropFirst()))
        let src = inputs.data, dst = out.data
        dst.update(from: src, count: n * rowSize)
        for i in 0..<n {
            let lambda = Float(beta(alpha: Double(alpha), using: &g))
            let a = src + i * rowSize, b = src + partner[i] * rowSize, o = dst + (n + i) * rowSize
            for j in 0..<rowSize { o[j] = lambda * a[j] + (1 - lambda) * b[j] }
        }
        if !labels.isEmpty { labels += [Int](repeating: -1, count: n) }
        indices += [Int](repeating: -1, count: n)
        return (out, labels, indices)
    }

    /// A Beta(α, α) sample: X/(X+Y) with X, Y ~ Gamma(α).
    static func beta(alpha: Double, using g: inout SeededGenerator) -> Double {
        let x = gamma(alpha, using: &g), y = gamma(alpha, using: &g)
        return x + y > 0 ? x / (x + y) : 0.5
    }

    /// Gamma(shape k, scale 1) by Marsaglia and Tsang (2000); for k < 1, Gamma(k+1)·U^(1/k).
    static func gamma(_ k: Double, using g: inout SeededGenerator) -> Double {
        if k < 1 { return gamma(k + 1, using: &g) * Foundation.pow(max(g.nextUnitDouble(), 1e-300), 1 / k) }
        let d = k - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat { x = g.nextGaussian(); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = g.nextUnitDouble()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if Foundation.log(max(u, 1e-300)) < 0.5 * x * x + d * (1 - v + Foundation.log(v)) { return d * v }
        }
    }
}
