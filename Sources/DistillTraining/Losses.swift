import DistillTensor

/// How per-sample losses are combined.
public enum Reduction: Sendable { case mean, sum, none }

/// Cross-entropy between logits [N, C] and class indices:
/// `CE = −(1/N) Σ_n log softmax(z_n)[y_n]` (PyTorch `F.cross_entropy`, reduction "mean").
public func crossEntropy(logits: Tensor, labels: [Int], reduction: Reduction = .mean) -> Tensor {
    precondition(logits.rank == 2 && logits.shape[0] == labels.count,
                 "crossEntropy: logits \(logits.shape) for \(labels.count) labels")
    let picked = { -logits.logSoftmax(axis: 1).gather(classes: labels) }
    switch reduction {
    case .mean: return logits.softmaxCrossEntropy(labels: labels)  // one fused op
    case .sum: return picked().sum()
    case .none: return picked()
    }
}
