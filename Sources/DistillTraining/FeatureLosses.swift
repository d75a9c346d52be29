import DistillTensor

// Feature-based distillation losses: they compare intermediate outputs (feature maps [N, Ch, H, W]
// or vectors [N, D]). Conventions as in DistillationLosses.swift: scalar results, the teacher
// detached inside.

/// FitNets hint loss (Romero, Ballas, Kahou, Chassang, Gatta, Bengio, ICLR 2015, "FitNets: Hints
/// for Thin Deep Nets", arXiv:1412.6550), as RepDistiller's `HintLoss` (`nn.MSELoss()`):
///
///     L = mean((r(F_s) − F_t)²)          averaged over every element
///
/// - student: the student's hint feature *already passed through the regressor* `r` (a 1×1
///   convolution or linear map owned by the objective), so that it has the teacher's shape.
/// - teacher: the teacher's guided feature, same shape (detached).
public func fitnetsLoss(student: Tensor, teacher: Tensor) -> Tensor {
    precondition(student.shape == teacher.shape,
                 "fitnetsLoss: adapted student feature \(student.shape) and teacher feature \(teacher.shape) must have the same shape (is the regressor sized for this layer pair?)")
    return mseLoss(student, teacher.detached())
}

/// The attention map of AT: `Q = normalize(mean_ch |F|^p)` flattened to [N, H·W], each row
/// L2-normalised (RepDistiller's `F.normalize(f.pow(p).mean(1).view(N, -1))`).
func attentionMap(_ f: Tensor, p: Float) -> Tensor {
    let powered = p == 2 ? f.pow(2) : f.abs().pow(p)
    return l2Normalized(powered.mean(axis: 1).flattened(), axis: 1)
}

/// Attention transfer for one layer pair (Zagoruyko & Komodakis, ICLR 2017, "Paying More
/// Attention to Attention", arXiv:1612.03928), as RepDistiller's `Attention.at_loss`:
///
///     Q = vec(mean_ch |F|^p) / ‖vec(mean_ch |F|^p)‖₂       per sample, [N, H·W]
///     L = mean_{n, k} (Q_s − Q_t)²                          averaged over N·H·W
///
/// - student, teacher: feature maps [N, C_s, H, W] and [N, C_t, H, W]: channel counts may
///   differ, batch and spatial sizes must match (RepDistiller pools the larger map down; here the
///   caller picks layers of equal size). Any rank ≥ 2 is accepted: axis 1 is the channel axis and
///   the rest is flattened; a rank-2 input gives a one-element map, so the loss is always 0.
/// - The paper writes `β/2 · Σ_layers ‖Q_s − Q_t‖_p` (a norm, and a sum over channels inside Q);
///   RepDistiller, followed here, averages over channels (the same map after normalisation) and
///   takes the mean of the squared difference over N·H·W. The caller applies the weight and sums
///   over layers: β/2 in the paper's notation; RepDistiller's benchmark uses β = 1000 with no 1/2.
/// - The reference computes `f.pow(p)`, without the absolute value; identical for even p (the
///   default p = 2), and the paper's `|F|^p` is used for other p.
public func attentionTransferLoss(student: Tensor, teacher: Tensor, p: Float = 2) -> Tensor {
    precondition(student.rank >= 2 && student.rank == teacher.rank,
                 "attentionTransferLoss: student \(student.shape) and teacher \(teacher.shape) must be feature maps of one rank [N, C, ...]")
    precondition(student.shape[0] == teacher.shape[0] && student.shape[2...] == teacher.shape[2...],
                 "attentionTransferLoss: student \(student.shape) and teacher \(teacher.shape) must agree in batch and spatial sizes (channels may differ)")
    precondition(p > 0, "attentionTransferLoss: p must be positive, got \(p)")
    let qs = attentionMap(student, p: p)
    let qt = attentionMap(teacher.detached(), p: p)
    return (qs - qt).pow(2).mean()
}

/// Similarity-preserving KD (Tung & Mori, ICCV 2019, "Similarity-Preserving Knowledge
/// Distillation", arXiv:1907.09682), as RepDistiller's `Similarity.similarity_loss`:
///
///     A = F.view(N, −1);  G = row_l2_normalize(A · Aᵀ)            [N, N]
///     L = ‖G_s − G_t‖_F² / N²
///
/// - student, teacher: features of any shapes with the same batch size N (the other extents may
///   differ: only the N×N similarity matrices are compared). The teacher is detached.
/// - One layer pair; the paper weights it by γ (3000 in the CRD benchmark) and sums over layers.
public func similarityPreservingLoss(student: Tensor, teacher: Tensor) -> Tensor {
    precondition(student.rank >= 2 && teacher.rank >= 2 && student.shape[0] == teacher.shape[0],
                 "similarityPreservingLoss: student \(student.shape) and teacher \(teacher.shape) need one batch size N (axis 0)")
    let n = student.shape[0]
    func gram(_ f: Tensor) -> Tensor {
        let a = f.flattened()
        return l2Normalized(a.matmul(a.transposed()), axis: 1)
    }
    let diff = gram(teacher.detached()) - gram(student)
    return diff.pow(2).sum().scaled(1 / Float(n * n))
}
