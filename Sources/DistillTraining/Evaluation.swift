import DistillData
import DistillNN
import DistillTensor
import Foundation

/// Classification quality of a model on a labelled dataset.
public struct EvaluationReport: Sendable {
    public var count: Int
    /// Fraction of samples whose top-1 prediction is the label.
    public var accuracy: Double
    /// Fraction whose label is among the five highest scores.
    public var top5Accuracy: Double
    public var perClassAccuracy: [Double]
    /// confusion[label][prediction] = count.
    public var confusion: [[Int]]
    /// Expected calibration error over 15 equal-width confidence bins (Guo et al. ICML 2017).
    public var expectedCalibrationError: Double
    /// Fraction of samples where the model's top-1 matches the teacher's (when a teacher was given).
    public var teacherAgreement: Double?
    public var meanLoss: Double

    public var json: [String: Any] {
        var j: [String: Any] = [
            "count": count, "accuracy": accuracy, "top5_accuracy": top5Accuracy, "per_class_accuracy": perClassAccuracy,
            "confusion_matrix": confusion, "expected_calibration_error": expectedCalibrationError, "loss": meanLoss,
        ]
        if let teacherAgreement { j["teacher_agreement"] = teacherAgreement }
        return j
    }

    /// What `distill eval` prints: headline figures, per-class accuracy, the confusion matrix.
    /// `classNames` label the rows (class indices where they are missing).
    public func text(classNames: [String]) -> String {
        var lines = [String(format: "accuracy %.2f%%   top-5 %.2f%%   ECE %.4f   loss %.4f", accuracy * 100, top5Accuracy * 100, expectedCalibrationError, meanLoss)]
        if let teacherAgreement { lines.append(String(format: "agreement with the teacher %.2f%%", teacherAgreement * 100)) }
        let names = classNames.count == perClassAccuracy.count ? classNames : perClassAccuracy.indices.map(String.init)
        lines.append("per-class accuracy:")
        for (i, accuracy) in perClassAccuracy.enumerated() {
            lines.append("  " + names[i].padding(toLength: max(12, names[i].count), withPad: " ", startingAt: 0) + String(format: " %6.2f%%", accuracy * 100))
        }
        lines.append("confusion matrix (rows: label, columns: prediction):")
        for row in confusion { lines.append("  " + row.map { String(format: "%5d", $0) }.joined()) }
        return lines.joined(separator: "\n")
    }
}

/// Runs `model` over `dataset` in evaluation mode (no gradients) and scores it. The batch size
/// bounds memory, not the result: 128 keeps a CNN teacher's activations to about 20 MB, where 512
/// made evaluation the peak of a whole `distill kd` run.
///
/// With several ranks (`world`, e.g. under mpirun), each rank scores its `blockShare` of the
/// batches and one allreduce adds up the tallies; every rank returns the report one process
/// would, bit for bit: the batches are the same, and the sums that depend on order (loss,
/// confidence) are kept per batch and added in batch order (`EvaluationTally`).
public func evaluate(_ model: Module, on dataset: LabeledDataset, teacher: Teacher? = nil, batchSize: Int = 128,
                     world: Distributed? = nil) throws -> EvaluationReport {
    let world = world ?? .oneProcess
    guard batchSize >= 1 else { throw TensorError("evaluate: batch size \(batchSize): must be at least 1") }
    guard dataset.count > 0 else { throw TensorError("\(dataset.source ?? "the data"): no rows to evaluate on") }
    if ModelShapes.understands(model) {  // a model that does not fit the data: an error, not a failed precondition in a layer
        _ = try ModelShapes.check(model, inputShape: dataset.exampleShape, what: "the model")  // its classes: checked on the first batch
    }
    let wasTraining = model.isTraining
    model.eval()
    defer { if wasTraining { model.train() } }
    let classes = dataset.numClasses
    var tally = EvaluationTally(classes: classes, batches: (dataset.count + batchSize - 1) / batchSize)
    var start = world.blockShare(of: dataset.count, block: batchSize).lowerBound
    let end = world.blockShare(of: dataset.count, block: batchSize).upperBound
    while start < end {
        let indices = Array(start..<min(start + batchSize, dataset.count))
        let inputs = dataset.rows(indices), labels = dataset.isLabeled ? indices.map { dataset.labels[$0] } : []
        let logits = withNoGrad { model(inputs) }
        if let failure = (model as? ONNXTeacherModule)?.failure { throw failure }  // its logits are zeros, not the model's
        guard logits.rank == 2, logits.shape[1] == classes else {
            throw TensorError("the model gives outputs of shape \(Array(logits.shape.dropFirst())) per example, but the data has \(classes) classes")
        }
        if let bad = logits.firstNonFiniteIndex {
            throw TensorError("the model's output for example \(start + bad / max(classes, 1)) is \(logits.data[bad]); the input holds NaN or infinite values, or values far outside what the model was trained on")
        }
        let probs = withNoGrad { logits.softmax(axis: 1) }
        let logProbs = withNoGrad { logits.logSoftmax(axis: 1) }
        let predictions = logits.argmaxLastAxis()
        let teacherPredictions = try teacher.map { try $0.logits(inputs, indices: indices).argmaxLastAxis() }
        let batch = start / batchSize
        for (row, label) in labels.enumerated() {
            let pred = predictions[row]
            let p = probs.data + row * classes
            tally.add(batch: batch, label: label, prediction: pred, labelRank: (0..<classes).filter { p[$0] > p[label] }.count,
                      confidence: Double(p[pred]), logProbability: Double(logProbs.data[row * classes + label]),
                      agreesWithTeacher: teacherPredictions.map { $0[row] == pred } ?? false)
        }
        start += batchSize
    }
    try tally.combine(over: world)
    return tally.report(count: dataset.count, withTeacher: teacher != nil)
}

/// What an evaluation adds up, in a form ranks can combine exactly: counts (exact in any order),
/// and the loss and confidence sums per batch, added in batch order at the end. One process
/// keeps the same per-batch sums, so N ranks and one process report the same bits.
struct EvaluationTally {
    static let bins = 15
    let classes: Int, batches: Int
    /// correct, top-5, agreement, then confusion[label][prediction], then per-bin count and correct.
    var counts: [Double]
    /// Per batch: the summed −log p(label), then the 15 bins' summed confidence.
    var perBatch: [Double]

    init(classes: Int, batches: Int) {
        self.classes = classes; self.batches = batches
        counts = [Double](repeating: 0, count: 3 + classes * classes + 2 * Self.bins)
        perBatch = [Double](repeating: 0, count: batches * (1 + Self.bins))
    }

    mutating func add(batch: Int, label: Int, prediction: Int, labelRank: Int, confidence: Double, logProbability: Double, agreesWithTeacher: Bool) {
        let bin = min(Self.bins - 1, Int(confidence * Double(Self.bins)))
        let binCounts = 3 + classes * classes
        if prediction == label { counts[0] += 1; counts[binCounts + Self.bins + bin] += 1 }
        if labelRank < 5 { counts[1] += 1 }
        if agreesWithTeacher { counts[2] += 1 }
        counts[3 + label * classes + prediction] += 1
        counts[binCounts + bin] += 1
        let base = batch * (1 + Self.bins)
        perBatch[base] -= logProbability
        perBatch[base + 1 + bin] += confidence
    }

    /// Sums every rank's tally into every rank's (one allreduce). A batch is scored by one rank
    /// alone, so its sums are added to zeros: exact.
    mutating func combine(over world: Distributed) throws {
        guard world.isDistributed else { return }
        var all = counts + perBatch
        try world.allreduceSum(&all)
        counts = Array(all[0..<counts.count])
        perBatch = Array(all[counts.count...])
    }

    func report(count: Int, withTeacher: Bool) -> EvaluationReport {
        let bins = Self.bins, binCounts = 3 + classes * classes
        var lossSum = 0.0
        var binConfidence = [Double](repeating: 0, count: bins)
        for b in 0..<batches {
            let base = b * (1 + bins)
            lossSum += perBatch[base]
            for k in 0..<bins { binConfidence[k] += perBatch[base + 1 + k] }
        }
        let confusion = (0..<classes).map { label in (0..<classes).map { Int(counts[3 + label * classes + $0]) } }
        let n = Double(max(count, 1))
        var ece = 0.0
        for b in 0..<bins where counts[binCounts + b] > 0 {
            let inBin = counts[binCounts + b]
            ece += inBin / n * abs(binConfidence[b] / inBin - counts[binCounts + bins + b] / inBin)
        }
        let perClass = confusion.enumerated().map { i, row in
            let total = row.reduce(0, +)
            return total == 0 ? 0 : Double(row[i]) / Double(total)
        }
        return EvaluationReport(count: count, accuracy: counts[0] / n, top5Accuracy: counts[1] / n,
                                perClassAccuracy: perClass, confusion: confusion, expectedCalibrationError: ece,
                                teacherAgreement: withTeacher ? counts[2] / n : nil, meanLoss: lossSum / n)
    }
}

/// Median batch-1 inference latency in microseconds (no gradients, evaluation mode), through an
/// `InferencePlan` when the plan covers the model (MLP and CNN students: how a deployed student runs), else
/// through the module.
public func batchOneLatencyMicroseconds(_ model: Module, exampleShape: [Int], runs: Int = 300) -> Double {
    let wasTraining = model.isTraining
    model.eval()
    defer { if wasTraining { model.train() } }
    var g = SeededGenerator(seed: 7)
    let x = Tensor.randomUniform([1] + exampleShape, using: &g)
    let predict: (Tensor) -> Tensor = InferencePlan(model, exampleShape: exampleShape).map { plan in { plan($0) } } ?? { model($0) }
    return withNoGrad {
        for _ in 0..<20 { _ = predict(x) }
        var times: [Double] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = predict(x)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000)
        }
        return times.sorted()[times.count / 2]
    }
}
