import DistillNN
import DistillTensor
import Foundation

/// What one training loop (`Trainer`) needs to know about a task, in two parts: the objective it
/// minimises on each batch and the report it makes on held-out data after each epoch.
/// Classification uses `DistillationObjective` and `EvaluationReport`; regression uses
/// `RegressionObjective` and `RegressionReport`. Everything else (resume, checkpoints, NaN
/// guards, clipping, interruption, metrics) is the loop's and the same for both.
public protocol TrainingObjective: AnyObject {
    var needsTeacher: Bool { get }
    var needsLabels: Bool { get }
    /// The terms' names, for messages ("kd, ce").
    var termNames: [String] { get }
    var studentFeatureNames: [String] { get }
    var teacherFeatureNames: [String] { get }
    /// Parameters trained with the student but not part of it (FitNets regressors).
    var adapterParameters: [Tensor] { get }
    func prepareAdapters(studentFeatures: [String: Tensor], teacherFeatures: [String: Tensor], seed: UInt64) throws
    /// The weighted total and each term's (unweighted) value for one batch. `indices` are the
    /// batch's training-row indices (−1 for rows made in training, such as mixup).
    func loss(studentOutputs: Tensor, studentFeatures: [String: Tensor], teacherOutputs: [Tensor], teacherFeatures: [String: Tensor],
              labels: [Int], indices: [Int], epoch: Int) throws -> (total: Tensor, parts: [String: Float])
}

extension TrainingObjective {
    public var studentFeatureNames: [String] { [] }
    public var teacherFeatureNames: [String] { [] }
    public var adapterParameters: [Tensor] { [] }
    public func prepareAdapters(studentFeatures: [String: Tensor], teacherFeatures: [String: Tensor], seed: UInt64) throws {}
}

/// A model's quality on held-out data, as the training loop records it after each epoch.
public protocol TestReport {
    /// Higher is better, in [0, 1]: the run keeps the model with the highest score as `best.safetensors`.
    var score: Double { get }
    /// The figures for `metrics.jsonl`, keys starting with `test_`.
    var metrics: [String: Any] { get }
    /// The figures for the end-of-epoch line, e.g. "test accuracy 91.20%".
    var line: String { get }
}

extension EvaluationReport: TestReport {
    public var score: Double { accuracy }
    public var metrics: [String: Any] { ["test_accuracy": accuracy, "test_loss": meanLoss] }
    public var line: String { String(format: "test accuracy %.2f%%", accuracy * 100) }
}

extension RegressionReport: TestReport {
    /// 1 / (1 + RMSE): a lower error scores higher, and the score stays in (0, 1] like an accuracy.
    public var score: Double { 1 / (1 + rmse) }
    public var metrics: [String: Any] { ["test_rmse": rmse, "test_mae": mae, "test_r2": r2] }
    public var line: String { String(format: "test RMSE %.4f  R² %.4f", rmse, r2) }
}

extension DistillationObjective: TrainingObjective {
    public var termNames: [String] { terms.map(\.method.rawValue) }

    public func loss(studentOutputs: Tensor, studentFeatures: [String: Tensor], teacherOutputs: [Tensor], teacherFeatures: [String: Tensor],
                     labels: [Int], indices: [Int], epoch: Int) throws -> (total: Tensor, parts: [String: Float]) {
        try loss(studentLogits: studentOutputs, studentFeatures: studentFeatures, teacherLogits: teacherOutputs,
                 teacherFeatures: teacherFeatures, labels: labels, epoch: epoch)
    }
}

/// Regression's objective: MSE to the (standardised) target, or with a teacher
/// `regressionDistillationLoss`, `w · MSE(s, t) + (1 − w) · MSE(s, y)`.
public final class RegressionObjective: TrainingObjective {
    /// Standardised targets, indexed by training row.
    public let targets: [Float]
    /// `w`, the teacher term's weight; nil trains on the targets alone.
    public let teacherWeight: Float?

    public init(targets: [Float], teacherWeight: Float?) {
        self.targets = targets
        self.teacherWeight = teacherWeight
    }

    public var needsTeacher: Bool { teacherWeight != nil }
    public var needsLabels: Bool { false }
    public var termNames: [String] { teacherWeight == nil ? ["mse"] : ["mse to the teacher", "mse"] }

    public func loss(studentOutputs: Tensor, studentFeatures: [String: Tensor], teacherOutputs: [Tensor], teacherFeatures: [String: Tensor],
                     labels: [Int], indices: [Int], epoch: Int) throws -> (total: Tensor, parts: [String: Float]) {
        guard indices.allSatisfy({ $0 >= 0 && $0 < targets.count }) else {
            throw TensorError("regression: the batch holds rows without a target (mixup and label limits do not apply to regression)")
        }
        let target = Tensor(shape: [indices.count, 1], scalars: indices.map { targets[$0] })
        guard let teacherWeight, let teacher = teacherOutputs.first else {
            let mse = mseLoss(studentOutputs, target)
            return (mse, ["mse": mse.item()])
        }
        let total = regressionDistillationLoss(student: studentOutputs, teacher: teacher, target: target, teacherWeight: teacherWeight)
        return (total, ["mse": total.item()])
    }
}
