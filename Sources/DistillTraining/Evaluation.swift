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
public func evaluate(_ model: Module, on dataset: LabeledDataset, teacher: Teacher? = nil, batchSize: Int = 128) throws -> EvaluationReport {
    let wasTraining = model.isTraining
    model.eval()
    defer { if wasTraining { model.train() } }
    let classes = dataset.numClasses
    var correct = 0, top5 = 0, agree = 0
    var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
    let bins = 15
    var binCount = [Int](repeating: 0, count: bins), binConfidence = [Double](repeating: 0, count: bins), binCorrect = [Int](repeating: 0, count: bins)
    var lossSum = 0.0
    var start = 0
    while start < dataset.count {
        let indices = Array(start..<min(start + batchSize, dataset.count))
        let inputs = dataset.rows(indices), labels = dataset.isLabeled ? indices.map { dataset.labels[$0] } : []
        let logits = withNoGrad { model(inputs) }
        guard logits.rank == 2, logits.shape[1] == classes else {
            throw TensorError("the model outputs shape \(logits.shape), but the data has \(classes) classes")
        }
        if let bad = logits.firstNonFiniteIndex {
            throw TensorError("the model's output for example \(start + bad / max(classes, 1)) is \(logits.data[bad]); the input holds NaN or infinite values, or values far outside what the model was trained on")
        }
        let probs = withNoGrad { logits.softmax(axis: 1) }
        let logProbs = withNoGrad { logits.logSoftmax(axis: 1) }
        let predictions = logits.argmaxLastAxis()
        let teacherPredictions = try teacher.map { try $0.logits(inputs, indices: indices).argmaxLastAxis() }
        for (row, label) in labels.enumerated() {
            let pred = predictions[row]
            if pred == label { correct += 1 }
            confusion[label][pred] += 1
            let p = probs.data + row * classes
            let rank = (0..<classes).filter { p[$0] > p[label] }.count
            if rank < 5 { top5 += 1 }
            let confidence = Double(p[pred])
            let bin = min(bins - 1, Int(confidence * Double(bins)))
            binCount[bin] += 1; binConfidence[bin] += confidence; binCorrect[bin] += pred == label ? 1 : 0
            lossSum -= Double(logProbs.data[row * classes + label])
            if let tp = teacherPredictions, tp[row] == pred { agree += 1 }
        }
        start += batchSize
    }
    let n = Double(max(dataset.count, 1))
    var ece = 0.0
    for b in 0..<bins where binCount[b] > 0 {
        ece += Double(binCount[b]) / n * abs(binConfidence[b] / Double(binCount[b]) - Double(binCorrect[b]) / Double(binCount[b]))
    }
    let perClass = confusion.enumerated().map { i, row in
        let total = row.reduce(0, +)
        return total == 0 ? 0 : Double(row[i]) / Double(total)
    }
    return EvaluationReport(count: dataset.count, accuracy: Double(correct) / n, top5Accuracy: Double(top5) / n,
                            perClassAccuracy: perClass, confusion: confusion, expectedCalibrationError: ece,
                            teacherAgreement: teacher == nil ? nil : Double(agree) / n, meanLoss: lossSum / n)
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
