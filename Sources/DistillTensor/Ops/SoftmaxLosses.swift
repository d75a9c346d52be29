import CKernels
import Foundation

// Fused softmax losses: the forward pass and the gradient each in one pass over [N, C] logits,
// with one graph node, instead of a chain of log-softmax, exp, products, gathers and sums (each
// allocating a tensor and calling libm's expf per element). A 128-row distillation step spent 47 µs
// in that chain and spends 12 µs here (`distill bench kd --cached-teacher`, `phase_us.loss`); the
// gradients below are the closed forms of the same expressions.

/// `softmax(x / temperature)` and `log_softmax(x / temperature)` of each row of `x` [rows, cols]
/// into `probabilities` and `logProbabilities`, with each row's max subtracted first; the
/// exponentials go through one vectorised call (`dk_exp_inplace`), not one libm call each.
func softmaxRows(_ x: UnsafePointer<Float>, rows: Int, cols c: Int, temperature: Float,
                 probabilities: UnsafeMutablePointer<Float>, logProbabilities: UnsafeMutablePointer<Float>) {
    let inv = 1 / temperature
    for r in 0..<rows {
        let row = x + r * c, z = logProbabilities + r * c
        var m = -Float.infinity
        for k in 0..<c { m = Swift.max(m, row[k] * inv) }
        if !m.isFinite { m = 0 }  // all -inf (or NaN): keep NaN/inf propagation honest
        for k in 0..<c { z[k] = row[k] * inv - m }
    }
    probabilities.update(from: logProbabilities, count: rows * c)
    dk_exp_inplace(probabilities, rows * c)
    for r in 0..<rows {
        let p = probabilities + r * c, z = logProbabilities + r * c
        var total: Float = 0
        for k in 0..<c { total += p[k] }
        let lse = Foundation.log(total), scale = 1 / total
        for k in 0..<c { p[k] *= scale; z[k] -= lse }
    }
}

extension Tensor {
    /// Mean cross-entropy of logits [N, C] against class indices, fused:
    /// `L = −(1/N) Σ_n log softmax(x_n)[y_n]`; gradient `(softmax(x) − onehot(y)) / N`
    /// (PyTorch `F.cross_entropy(x, y)`).
    public func softmaxCrossEntropy(labels: [Int]) -> Tensor {
        precondition(rank == 2 && labels.count == shape[0], "crossEntropy: logits \(shape) for \(labels.count) labels")
        let n = shape[0], c = shape[1]
        precondition(labels.allSatisfy { $0 >= 0 && $0 < c }, "crossEntropy: a class index is outside 0..<\(c)")
        let probabilities = Tensor(uninitializedShape: shape), logProbabilities = Tensor(uninitializedShape: shape)
        softmaxRows(data, rows: n, cols: c, temperature: 1, probabilities: probabilities.data, logProbabilities: logProbabilities.data)
        var total: Double = 0
        for r in 0..<n { total -= Double(logProbabilities.data[r * c + labels[r]]) }
        let value = Tensor(scalar: Float(total / Double(Swift.max(n, 1))))
        return Tensor.result(value, inputs: [self], .softmaxCrossEntropy(probabilities: probabilities, labels: labels))
    }

    /// Hinton's distillation term for student logits `self` and teacher logits [N, C], fused:
    /// `L = T² · (1/N) Σ_n KL(softmax(t_n/T) ‖ softmax(s_n/T))`; gradient w.r.t. the student
    /// `T · (softmax(s/T) − softmax(t/T)) / N`. The teacher is a constant (no gradient reaches it).
    /// The teacher's log-probabilities come from its log-softmax, so they stay finite where its
    /// probabilities underflow to 0, and `t == s` gives exactly 0.
    public func temperedKLDivergence(teacherLogits t: Tensor, temperature: Float) -> Tensor {
        precondition(rank == 2 && t.shape == shape, "kdLoss: student logits \(shape) and teacher logits \(t.shape) must both be [N, C]")
        precondition(temperature > 0, "kdLoss: temperature must be positive, got \(temperature)")
        let n = shape[0], c = shape[1]
        let student = Tensor(uninitializedShape: shape), teacher = Tensor(uninitializedShape: shape)
        let logQ = Tensor(uninitializedShape: shape), logP = Tensor(uninitializedShape: shape)
        softmaxRows(data, rows: n, cols: c, temperature: temperature, probabilities: student.data, logProbabilities: logQ.data)
        softmaxRows(t.data, rows: n, cols: c, temperature: temperature, probabilities: teacher.data, logProbabilities: logP.data)
        var total: Double = 0
        for r in 0..<n {
            var row: Float = 0
            for k in r * c ..< (r + 1) * c { row += teacher.data[k] * (logP.data[k] - logQ.data[k]) }
            total += Double(row)
        }
        let value = Tensor(scalar: Float(total / Double(Swift.max(n, 1))) * temperature * temperature)
        return Tensor.result(value, inputs: [self],
                             .temperedKL(studentProbabilities: student, teacherProbabilities: teacher, temperature: temperature))
    }
}
