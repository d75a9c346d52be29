import DistillTensor

// Relation-based distillation losses: they compare how samples of a batch relate to each other
// (distances, angles, similarity distributions), so student and teacher embeddings may differ in
// width. Inputs are [N, D] embeddings; higher ranks are flattened to [N, −1]. Conventions as in
// DistillationLosses.swift: scalar results, the teacher detached inside.

/// A constant [n, n] matrix of ones with zeros on the diagonal.
private func offDiagonalMask(_ n: Int) -> Tensor {
    var m = [Float](repeating: 1, count: n * n)
    for i in 0..<n { m[i * n + i] = 0 }
    return Tensor(shape: [n, n], scalars: m)
}

/// Pairwise Euclidean distances of the rows of `e` [N, D] → [N, N], as RepDistiller's
/// `RKDLoss.pdist(e, squared=False, eps=1e-12)`: `sqrt(max(‖e_i‖² + ‖e_j‖² − 2 e_i·e_j, 1e-12))`,
/// with the diagonal then set to 0. The clamp keeps the square root's gradient finite and the
/// mask gives the diagonal a zero gradient, so no NaN appears.
func pairwiseDistances(_ e: Tensor) -> Tensor {
    let n = e.shape[0]
    let sq = e.pow(2).sum(axis: 1)
    let squared = sq.reshaped([n, 1]) + sq.reshaped([1, n]) - e.matmul(e.transposed()).scaled(2)
    return squared.clamp(min: 1e-12).sqrt() * offDiagonalMask(n)
}

/// Relational knowledge distillation (Park, Kim, Lu, Cho, CVPR 2019, "Relational Knowledge
/// Distillation", arXiv:1904.05068), as RepDistiller's `RKDLoss`:
///
///     d_ij = ‖x_i − x_j‖₂ / μ,   μ = mean of the off-diagonal (non-zero) distances   [N, N]
///     e_ij = normalize(x_j − x_i)  (e_ii = 0);   a_ijk = ⟨e_ij, e_ik⟩                [N, N, N]
///     L = w_d · smoothL1(d_s, d_t) + w_a · smoothL1(a_s, a_t)
///
/// - student [N, D_s], teacher [N, D_t] embeddings (flattened to [N, −1] if of higher rank;
///   widths may differ), N ≥ 2. The teacher is detached.
/// - Both smooth-L1 (Huber, β = 1) terms are means over all N² (N³) entries, diagonal included,
///   as in the reference. The student's μ is part of the graph (the reference does the same).
/// - Defaults w_d = 25, w_a = 50 (the paper's and the CRD benchmark's).
public func rkdLoss(student: Tensor, teacher: Tensor, distanceWeight: Float = 25, angleWeight: Float = 50) -> Tensor {
    precondition(student.rank >= 2 && teacher.rank >= 2 && student.shape[0] == teacher.shape[0] && student.shape[0] >= 2,
                 "rkdLoss: student \(student.shape) and teacher \(teacher.shape) need one batch size N ≥ 2 (axis 0)")
    let n = student.shape[0]
    let s = student.flattened(), t = teacher.detached().flattened()

    func normalizedDistances(_ e: Tensor) -> Tensor {
        let d = pairwiseDistances(e)
        return d / d.sum().scaled(1 / Float(n * (n - 1)))
    }
    func angles(_ e: Tensor) -> Tensor {
        let dim = e.shape[1]
        let diff = e.reshaped([1, n, dim]) - e.reshaped([n, 1, dim])  // [i, j] = e_j − e_i
        let unit = l2Normalized(diff, axis: 2)
        return unit.matmul(unit.transposed(1, 2)).reshaped([n * n * n])
    }
    let distance = smoothL1Loss(normalizedDistances(s), normalizedDistances(t))
    let angle = smoothL1Loss(angles(s), angles(t))
    return distance.scaled(distanceWeight) + angle.scaled(angleWeight)
}

/// Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018, "Learning Deep Representations
/// with Probabilistic Knowledge Transfer", arXiv:1803.10837), as RepDistiller's
/// `PKT.cosine_similarity_loss`:
///
///     x̂ = x / (‖x‖₂ + ε);   K = (x̂ x̂ᵀ + 1) / 2;   P = K / rowsum(K)                  [N, N]
///     L = mean_{i,j} P_t · log((P_t + ε) / (P_s + ε))                              (over N²)
///
/// - student [N, D_s], teacher [N, D_t] embeddings (flattened to [N, −1] if of higher rank;
///   widths may differ). The teacher is detached. ε = 1e-7 as in the reference.
/// - The reference's mean over all N² entries (not a per-row sum) is kept, so this is the
///   batch-mean KL divided by N.
/// - The norm's square root has its argument floored at 1e-30 (no NaN gradient for a zero row;
///   the reference instead zeroes NaNs in the forward pass).
public func pktLoss(student: Tensor, teacher: Tensor, epsilon: Float = 1e-7) -> Tensor {
    precondition(student.rank >= 2 && teacher.rank >= 2 && student.shape[0] == teacher.shape[0],
                 "pktLoss: student \(student.shape) and teacher \(teacher.shape) need one batch size N (axis 0)")
    func conditional(_ f: Tensor) -> Tensor {
        let x = f.flattened()
        let unit = x / l2Norm(x, axis: 1).shifted(epsilon)
        let k = unit.matmul(unit.transposed()).shifted(1).scaled(0.5)
        return k / k.sum(axis: 1, keepDims: true)
    }
    let ps = conditional(student)
    let pt = conditional(teacher.detached())
    return (pt * (pt.shifted(epsilon) / ps.shifted(epsilon)).log()).mean()
}
