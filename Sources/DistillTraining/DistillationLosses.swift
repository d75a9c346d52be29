import DistillTensor
import Foundation

// Logit (response) based distillation losses, and the plain regression losses they share.
//
// Conventions for every loss in this file and in FeatureLosses.swift / RelationLosses.swift:
// - Inputs are **logits** [N, C] unless a parameter says "probabilities".
// - Results are scalars (rank 0), reduced like the reference implementation says; for the
//   KL-based losses that is the true KL: summed over classes, averaged over the batch
//   (PyTorch `kl_div(..., reduction="batchmean")`, *not* `"mean"`, which also divides by C).
// - The teacher is a constant: it is detached inside, so no gradient ever reaches it, whether or
//   not the caller computed it under `withNoGrad`.
// - Everything is composed from engine ops, so autodiff supplies the gradients.
//
// Each function's doc comment gives its formula and paper; the reference code it was checked against is named beside it
// (HobbitLong/RepDistiller, megvii-research/mdistiller, hunto/DIST_KD, sunshangquan/logit-standardization-KD).

// MARK: - Helpers

/// `log p` for a constant probability tensor, with 0 where `p == 0`, so that `p · log p`
/// evaluates to 0 there (the `0 · log 0 = 0` convention of `torch.xlogy` and `F.kl_div`).
/// Not recorded for autodiff.
func logOfProbabilities(_ p: Tensor) -> Tensor {
    let out = Tensor(uninitializedShape: p.shape)
    let src = p.data, dst = out.data
    for i in 0..<p.count {
        let v = src[i]
        precondition(!(v < 0), "probabilities must be non-negative, got \(v) at element \(i) of \(p.shape)")  // NaN passes through
        dst[i] = v > 0 ? Foundation.log(v) : 0
    }
    return out
}

/// `Σ_n Σ_c target ⊙ (logTarget − logInput) / N`: the batch-mean KL(target ‖ input) with the
/// input given as log-probabilities [N, K] (PyTorch `F.kl_div(logInput, target, reduction="batchmean")`).
/// `target` and `logTarget` are constants; the gradient flows through `logInput` only.
func batchMeanKL(target: Tensor, logTarget: Tensor, logInput: Tensor) -> Tensor {
    let n = Float(logInput.shape[0])
    return (target * (logTarget - logInput)).sum().scaled(1 / n)
}

/// `x / max(‖x‖₂, ε)` along `axis` (PyTorch `F.normalize(x, p=2, dim=axis, eps=ε)`).
/// Written as `x / sqrt(max(Σx², ε²))`, which has the same value and no NaN gradient at a zero
/// vector (there the gradient of the norm is cut, as in PyTorch's `clamp_min`).
func l2Normalized(_ x: Tensor, axis: Int, epsilon: Float = 1e-12) -> Tensor {
    x / x.pow(2).sum(axis: axis, keepDims: true).clamp(min: epsilon * epsilon).sqrt()
}

/// `‖x‖₂` along `axis`, keeping the axis, with the square root's argument floored at 1e-30 so a
/// zero vector gives a finite (zero) gradient instead of NaN; the value changes only below 1e-15.
func l2Norm(_ x: Tensor, axis: Int) -> Tensor {
    x.pow(2).sum(axis: axis, keepDims: true).clamp(min: 1e-30).sqrt()
}

private func checkLogits(_ student: Tensor, _ teacher: Tensor, _ name: String) {
    precondition(student.rank == 2, "\(name): student logits must be [N, C], got \(student.shape)")
    precondition(student.shape == teacher.shape,
                 "\(name): student logits \(student.shape) and teacher logits \(teacher.shape) must have the same shape")
}

// MARK: - Regression losses

/// Mean squared error, averaged over every element: `mean((a − b)²)` (PyTorch `F.mse_loss`,
/// reduction "mean"). Shapes must match; gradients flow to both operands.
public func mseLoss(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape == b.shape, "mseLoss: shapes \(a.shape) and \(b.shape) must match")
    return (a - b).pow(2).mean()
}

/// Smooth-L1 (Huber with β = 1), averaged over every element (PyTorch `F.smooth_l1_loss`,
/// reduction "mean"): `0.5·d²` where `|d| < 1`, `|d| − 0.5` elsewhere, `d = a − b`.
/// Composed as `m = min(|d|, 1)`, `0.5·m² + |d| − m`; the gradient at `d = 0` is 0, as in PyTorch.
/// Shapes must match; gradients flow to both operands.
public func smoothL1Loss(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape == b.shape, "smoothL1Loss: shapes \(a.shape) and \(b.shape) must match")
    let d = (a - b).abs()
    let m = d.clamp(max: 1)
    return (m.pow(2).scaled(0.5) + d - m).mean()
}

/// Regression distillation: `w · MSE(s, t) + (1 − w) · MSE(s, y)`, with `w` the
/// `teacherWeight`, `s` the student's outputs, `t` the teacher's (detached) and `y` the labels,
/// all of one shape. Each MSE is averaged over every element.
public func regressionDistillationLoss(student: Tensor, teacher: Tensor, target: Tensor, teacherWeight: Float) -> Tensor {
    precondition(student.shape == teacher.shape && student.shape == target.shape,
                 "regressionDistillationLoss: student \(student.shape), teacher \(teacher.shape) and target \(target.shape) must have the same shape")
    return mseLoss(student, teacher.detached()).scaled(teacherWeight) + mseLoss(student, target).scaled(1 - teacherWeight)
}

// MARK: - KD and soft targets

/// Knowledge distillation (Hinton, Vinyals, Dean, NIPS 2014 Deep Learning Workshop,
/// "Distilling the Knowledge in a Neural Network", arXiv:1503.02531):
///
///     L = T² · (1/N) Σ_n KL(softmax(t_n/T) ‖ softmax(s_n/T))
///
/// - student, teacher: logits [N, C]. The teacher is detached (no gradient reaches it).
/// - KL summed over classes, averaged over the batch, times T²: PyTorch
///   `F.kl_div(F.log_softmax(s/T, 1), F.softmax(t/T, 1), reduction="batchmean") * T**2`.
/// - Gradient w.r.t. the student logits: `T · (softmax(s/T) − softmax(t/T)) / N`; the T² keeps its
///   size comparable across temperatures.
/// - Combine with cross-entropy yourself: `α · kdLoss(...) + (1 − α) · crossEntropy(...)`.
///
/// One fused op (`Tensor.temperedKLDivergence`): the teacher's log-probabilities come from its
/// log-softmax, so they stay finite even where its probabilities underflow to 0, and
/// `teacher == student` gives exactly 0.
public func kdLoss(student: Tensor, teacher: Tensor, temperature: Float) -> Tensor {
    checkLogits(student, teacher, "kdLoss")
    return student.temperedKLDivergence(teacherLogits: teacher, temperature: temperature)
}

/// KD against targets given as probabilities (averaged multi-teacher targets, cached teacher
/// outputs, soft labels):
///
///     L = T² · (1/N) Σ_n Σ_c p_nc · (log p_nc − log_softmax(s_n/T)_c),   with 0 · log 0 = 0
///
/// - student: logits [N, C]; targetProbabilities: [N, C], each row a distribution (already at
///   temperature T: e.g. `softmax(t/T)`), treated as a constant.
/// - Equals `kdLoss(student:teacher:temperature:)` when `targetProbabilities = softmax(t/T)`.
/// - PyTorch: `F.kl_div(F.log_softmax(s/T, 1), p, reduction="batchmean") * T**2`.
public func softTargetLoss(student: Tensor, targetProbabilities: Tensor, temperature: Float) -> Tensor {
    checkLogits(student, targetProbabilities, "softTargetLoss")
    precondition(temperature > 0, "softTargetLoss: temperature must be positive, got \(temperature)")
    let p = targetProbabilities.detached()
    let logQ = student.scaled(1 / temperature).logSoftmax(axis: 1)
    return batchMeanKL(target: p, logTarget: logOfProbabilities(p), logInput: logQ).scaled(temperature * temperature)
}

/// The multi-teacher target: `Σ_i w_i · softmax(t_i/T) / Σ_i w_i`,
/// a [N, C] probability tensor for `softTargetLoss`.
///
/// - teachers: logits, each [N, C]; weights: one non-negative weight per teacher (nil: equal
///   weights). Weights are normalised by their sum, so each row of the result sums to 1.
/// - The result is a constant (no gradient reaches the teachers).
public func averagedTeacherProbabilities(_ teachers: [Tensor], weights: [Float]? = nil, temperature: Float) -> Tensor {
    precondition(!teachers.isEmpty, "averagedTeacherProbabilities: no teachers")
    precondition(temperature > 0, "averagedTeacherProbabilities: temperature must be positive, got \(temperature)")
    let shape = teachers[0].shape
    precondition(shape.count == 2, "averagedTeacherProbabilities: teacher logits must be [N, C], got \(shape)")
    for t in teachers {
        precondition(t.shape == shape, "averagedTeacherProbabilities: teacher logits \(t.shape) and \(shape) differ in shape")
    }
    let w = weights ?? [Float](repeating: 1, count: teachers.count)
    precondition(w.count == teachers.count, "averagedTeacherProbabilities: \(w.count) weights for \(teachers.count) teachers")
    precondition(w.allSatisfy { $0 >= 0 } && w.reduce(0, +) > 0,
                 "averagedTeacherProbabilities: weights must be non-negative with a positive sum, got \(w)")
    let total = w.reduce(0, +)
    return withNoGrad {
        var sum: Tensor? = nil
        for (t, wi) in zip(teachers, w) {
            let p = t.detached().scaled(1 / temperature).softmax(axis: 1).scaled(wi / total)
            sum = sum.map { $0 + p } ?? p
        }
        return sum!
    }
}

// MARK: - Logit standardisation

/// Per-sample z-score of logits (Sun, Ren, Li, Wang, Cao, CVPR 2024, "Logit Standardization in
/// Knowledge Distillation", arXiv:2403.01427):
///
///     z'_n = (z_n − mean(z_n)) / (ε + std(z_n))
///
/// - z: logits [N, C]; mean and std over the classes of each row. The std is the **unbiased**
///   one (divides by C − 1): the authors' `normalize` uses `torch.Tensor.std`, whose default is
///   unbiased, and adds ε = 1e-7 to it. So the result has row mean 0 and unbiased row std ≈ 1.
/// - Apply to both student and teacher before `kdLoss` / `dkdLoss`; gradients flow through it.
/// - A constant row gives zeros (the variance is floored at 1e-30 inside the square root, so
///   its gradient is finite where PyTorch's would be NaN).
public func standardizedLogits(_ z: Tensor, epsilon: Float = 1e-7) -> Tensor {
    precondition(z.rank == 2 && z.shape[1] >= 2, "standardizedLogits: logits must be [N, C] with C ≥ 2, got \(z.shape)")
    let c = Float(z.shape[1])
    let centered = z - z.mean(axis: 1, keepDims: true)
    let std = centered.pow(2).sum(axis: 1, keepDims: true).scaled(1 / (c - 1)).clamp(min: 1e-30).sqrt()
    return centered / std.shifted(epsilon)
}

// MARK: - DKD

/// Decoupled knowledge distillation (Zhao, Cui, Song, Qiu, Liang, CVPR 2022, "Decoupled
/// Knowledge Distillation", arXiv:2203.08679), as `dkd_loss` in mdistiller
/// (mdistiller/distillers/DKD.py):
///
///     p = softmax(z/T);  b = [p_gt, Σ_{c≠gt} p_c]                  (binary: target vs rest)
///     TCKD = T² · (1/N) Σ_n KL(b_t ‖ b_s)                           (log b_s = log of the sums)
///     NCKD = T² · (1/N) Σ_n KL(softmax(t/T − 1000·gt) ‖ softmax(s/T − 1000·gt))
///     L    = α · TCKD + β · NCKD
///
/// - student, teacher: logits [N, C]; labels: N class indices. The teacher is detached.
/// - The `− 1000·gt_mask` shift is the reference's way of taking the softmax over the non-target
///   classes only: the target class's probability underflows to 0 and drops out of the KL.
/// - Both KLs are summed over their classes and divided by the batch size (the reference's
///   `kl_div(..., size_average=False) * T**2 / target.shape[0]`).
/// - Defaults α = 1, β = 8, T = 4 (CIFAR-100). The reference's linear warm-up of the whole term
///   over 20 epochs is the caller's (`LossTerm.warmupEpochs`), as is the cross-entropy.
public func dkdLoss(student: Tensor, teacher: Tensor, labels: [Int], alpha: Float = 1, beta: Float = 8, temperature: Float = 4) -> Tensor {
    checkLogits(student, teacher, "dkdLoss")
    precondition(temperature > 0, "dkdLoss: temperature must be positive, got \(temperature)")
    let n = student.shape[0], c = student.shape[1]
    precondition(labels.count == n, "dkdLoss: \(labels.count) labels for logits \(student.shape)")
    precondition(labels.allSatisfy { $0 >= 0 && $0 < c }, "dkdLoss: a label is outside 0..<\(c)")
    precondition(c >= 2, "dkdLoss: needs at least 2 classes, got \(c)")

    // gt_mask: one-hot of the labels; other_mask: its complement.
    var mask = [Float](repeating: 0, count: n * c)
    for (i, y) in labels.enumerated() { mask[i * c + y] = 1 }
    let gtMask = Tensor(shape: [n, c], scalars: mask)
    let otherMask = Tensor(shape: [n, c], scalars: mask.map { 1 - $0 })
    let s = student.scaled(1 / temperature)
    let t = teacher.detached().scaled(1 / temperature)

    // cat_mask: [Σ p·gt, Σ p·other] per sample → [N, 2].
    func binary(_ p: Tensor) -> Tensor {
        Tensor.concat([(p * gtMask).sum(axis: 1, keepDims: true), (p * otherMask).sum(axis: 1, keepDims: true)], axis: 1)
    }
    let bs = binary(s.softmax(axis: 1))
    let bt = binary(t.softmax(axis: 1))
    let tckd = batchMeanKL(target: bt, logTarget: logOfProbabilities(bt), logInput: bs.log())

    let shift = gtMask.scaled(-1000)
    let logPt2 = (t + shift).logSoftmax(axis: 1)
    let logPs2 = (s + shift).logSoftmax(axis: 1)
    let nckd = batchMeanKL(target: logPt2.exp(), logTarget: logPt2, logInput: logPs2)

    let t2 = temperature * temperature
    return tckd.scaled(alpha * t2) + nckd.scaled(beta * t2)
}

// MARK: - DIST

/// Pearson correlation of the rows of `a` and `b` [R, K] → [R], as DIST's official code:
/// cosine similarity of the row-centred vectors with `+ 1e-8` in the denominator.
private func rowPearson(_ a: Tensor, _ b: Tensor) -> Tensor {
    let ac = a - a.mean(axis: 1, keepDims: true)
    let bc = b - b.mean(axis: 1, keepDims: true)
    let num = (ac * bc).sum(axis: 1)
    let den = (l2Norm(ac, axis: 1) * l2Norm(bc, axis: 1)).reshaped([a.shape[0]]).shifted(1e-8)
    return num / den
}

/// DIST (Huang, You, Wang, Qian, Xu, NeurIPS 2022, "Knowledge Distillation from A Stronger
/// Teacher", arXiv:2205.10536), as the official `DIST` module (hunto/DIST_KD):
///
///     y = softmax(z/T)                                             [N, C]
///     inter = 1 − (1/N) Σ_n Pearson(y_s[n, :], y_t[n, :])          (over classes, per sample)
///     intra = 1 − (1/C) Σ_c Pearson(y_s[:, c], y_t[:, c])          (over the batch, per class)
///     L = T² · (β · inter + γ · intra)
///
/// - student, teacher: logits [N, C] (N ≥ 2 for the intra-class term). The teacher is detached.
/// - Pearson(a, b) = ⟨a − ā, b − b̄⟩ / (‖a − ā‖·‖b − b̄‖ + 1e-8), as in the official code.
/// - Defaults β = γ = T = 1, the official module's defaults.
public func distLoss(student: Tensor, teacher: Tensor, beta: Float = 1, gamma: Float = 1, temperature: Float = 1) -> Tensor {
    checkLogits(student, teacher, "distLoss")
    precondition(temperature > 0, "distLoss: temperature must be positive, got \(temperature)")
    let ys = student.scaled(1 / temperature).softmax(axis: 1)
    let yt = teacher.detached().scaled(1 / temperature).softmax(axis: 1)
    let inter = rowPearson(ys, yt).mean().scaled(-1).shifted(1)
    let intra = rowPearson(ys.transposed(), yt.transposed()).mean().scaled(-1).shifted(1)
    let t2 = temperature * temperature
    return inter.scaled(beta * t2) + intra.scaled(gamma * t2)
}
