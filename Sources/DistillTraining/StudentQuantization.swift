import DistillData
import DistillNN
import DistillTensor
import Foundation

/// Post-training int8 quantization of a saved student, end to end: what `distill quantize` runs.
///
/// Calibration samples are drawn (seeded) from the training split of the data, standardised the
/// way the model was trained (a tabular model's stored statistics); both calibration methods are
/// tried and the one whose int8 student classifies those samples best is kept. The float model
/// and its int8 student are then both scored on the test split, so the report says what the
/// quantization cost.
public enum StudentQuantization {
    public struct Report {
        public var output: URL
        public var spec: String
        public var parameters: Int
        public var calibration: CalibrationMethod
        public var rounding: WeightRounding
        public var calibrations: [Quantizer.Calibration]
        public var samples: Int
        /// Test accuracy (fractions of 1) of the float model and of the int8 student.
        public var accuracy: Double, accuracyInt8: Double
        /// Fraction of test rows on which the int8 student's top-1 class is the float model's:
        /// how faithfully it reproduces the float model, which accuracy alone hides (an int8 model
        /// can gain as many rows by chance as it loses).
        public var agreement: Double
        /// Bytes of the state (float32: 4 per parameter and buffer; int8: see `QuantizedStudent.stateBytes`) and of the files.
        public var bytes: Int, bytesInt8: Int, fileBytes: Int, fileBytesInt8: Int
        public var kernel: String
        /// What `--qat` did (nil without it); `accuracyInt8` is then the post-training student's.
        public var qat: QuantizationAwareOutcome?

        /// Whether post-training quantization lost more than `qatSuggestionPoints` and `--qat` was not given.
        public var suggestsQAT: Bool { qat == nil && (accuracy - accuracyInt8) * 100 > StudentQuantization.qatSuggestionPoints }

        public var json: [String: Any] {
            var j: [String: Any] = ["output": output.path, "spec": spec, "params": parameters, "calibration": calibration.rawValue, "rounding": rounding.rawValue,
             "calibration_accuracy": Dictionary(uniqueKeysWithValues: calibrations.map { ($0.method.rawValue, $0.accuracy) }),
             "samples": samples, "accuracy": accuracy, "accuracy_int8": accuracyInt8, "agreement": agreement, "bytes": bytes, "bytes_int8": bytesInt8,
             "file_bytes": fileBytes, "file_bytes_int8": fileBytesInt8, "kernel": kernel, "suggest_qat": suggestsQAT]
            if let qat {
                j["accuracy_int8_ptq"] = accuracyInt8
                j["accuracy_int8_qat"] = qat.accuracy
                j["written"] = qat.written
                j["qat"] = qat.json
            }
            return j
        }

        public var text: String {
            let tried = calibrations.map { String(format: "%@ %.2f%%", $0.method.rawValue, $0.accuracy * 100) }.joined(separator: ", ")
            let bytesLine = String(format: "bytes: float32 %d, int8 %d (%.2fx smaller); files %d and %d", bytes, bytesInt8, Double(bytes) / Double(max(bytesInt8, 1)), fileBytes, fileBytesInt8)
            guard let qat else {
                var text = """
                wrote \(output.path): int8 \(spec), \(parameters) parameters, kernel \(kernel)
                calibration: \(calibration.rawValue) (accuracy on the \(samples) calibration samples: \(tried)); weight rounding: \(rounding.rawValue)
                \(String(format: "test accuracy: float32 %.2f%%, int8 %.2f%% (%+.2f points); int8 predicts the float model's class on %.2f%% of the test rows", accuracy * 100, accuracyInt8 * 100, (accuracyInt8 - accuracy) * 100, agreement * 100))
                \(bytesLine)
                """
                if suggestsQAT {
                    text += String(format: "\nint8 loses %.2f points (more than %.1f): try --qat, which fine-tunes with fake quantization while distilling from the float model",
                                   (accuracy - accuracyInt8) * 100, StudentQuantization.qatSuggestionPoints)
                }
                return text
            }
            let which = qat.written == "qat" ? "the quantization-aware (QAT) student" : "the post-training (PTQ) student"
            return """
            wrote \(output.path): int8 \(spec), \(parameters) parameters, kernel \(kernel): \(which), \(String(format: "better on the %d validation rows (PTQ %.2f%%, QAT %.2f%%)", qat.validationRows, qat.validationAccuracyPTQ * 100, qat.validationAccuracy * 100))
            calibration: \(calibration.rawValue) (accuracy on the \(samples) calibration samples: \(tried))
            \(String(format: "test accuracy: float32 %.2f%%, int8 PTQ %.2f%% (%+.2f points), int8 QAT %.2f%% (%+.2f points)", accuracy * 100, accuracyInt8 * 100, (accuracyInt8 - accuracy) * 100, qat.accuracy * 100, (qat.accuracy - accuracy) * 100))
            \(String(format: "qat: %d epochs, learning rate %g, %d training rows, teacher %@, %@; %.1f s", qat.epochs, qat.learningRate, qat.trainingRows, qat.teacher, qat.losses, qat.seconds))
            \(bytesLine)
            """
        }
    }

    /// Settings of `--qat`: fine-tuning the student with fake quantization (DistillNN's
    /// QuantizationAwareTraining.swift) through the one training loop (`Trainer`), distilling from
    /// the teacher (kd at T = 2, plus ce on the labels, 0.5 each: the project's default recipe).
    public struct QuantizationAwareSettings: Sendable {
        public var epochs = 2
        /// Adam's learning rate: a tenth of the default for training, since the weights start trained.
        public var learningRate: Float = 1e-4
        public var batchSize = 128
        /// The teacher's model file; nil: the float model itself.
        public var teacher: String? = nil
        /// Training rows used (the first of the seeded shuffle, after the validation rows are set aside); nil: all.
        public var trainLimit: Int? = nil
        public var quiet = false
        public init() {}

        /// Most fine-tuning epochs `--qat-epochs` accepts.
        public static let maxEpochs = 100

        /// Throws naming the option whose value is out of range.
        public func validate() throws {
            guard (1...Self.maxEpochs).contains(epochs) else { throw TensorError("--qat-epochs \(epochs): must be in 1...\(Self.maxEpochs)") }
            guard learningRate > 0, learningRate.isFinite, learningRate <= 1 else {
                throw TensorError("--qat-learning-rate \(learningRate): must be a positive number no larger than 1")
            }
            if let trainLimit, trainLimit < 1 { throw TensorError("--train-limit \(trainLimit): must be at least 1") }
        }
    }

    /// What `--qat` measured.
    public struct QuantizationAwareOutcome {
        /// Test accuracy of the fine-tuned int8 student (its file, on the int8 plan).
        public var accuracy: Double
        /// Accuracy of the post-training and the fine-tuned int8 students on the validation rows
        /// (set aside from the training split, never trained on): the choice of the file written.
        public var validationAccuracyPTQ: Double, validationAccuracy: Double
        public var validationRows: Int, trainingRows: Int
        public var epochs: Int, learningRate: Float
        public var teacher: String, losses: String
        /// "qat" or "ptq": which student the file holds.
        public var written: String
        public var seconds: Double

        public var json: [String: Any] {
            ["accuracy": accuracy, "validation_accuracy_ptq": validationAccuracyPTQ, "validation_accuracy_qat": validationAccuracy,
             "validation_rows": validationRows, "training_rows": trainingRows, "epochs": epochs, "learning_rate": decimal(learningRate),
             "teacher": teacher, "losses": losses, "seconds": seconds]
        }
    }

    /// Points of test accuracy post-training quantization may lose before the report suggests `--qat`.
    public static let qatSuggestionPoints = 0.5
    /// Validation rows `--qat` sets aside from the training split: a tenth of it, at most this many.
    public static let maxValidationRows = 5000

    /// Most calibration samples (more only slows calibration down).
    public static let maxSamples = 100_000

    /// Quantizes the model at `model` with `samples` calibration rows of `data`'s training split
    /// (a `DataSource` name; `labelColumn` for a .csv), writes the int8 file to `output`, and
    /// scores both models on the test split. Throws, before any work, for an int8 model, data
    /// whose examples or classes do not fit the model, or a sample count out of range.
    ///
    /// With `qat`, the student is also fine-tuned with fake quantization (`fineTune`), and the file
    /// holds whichever int8 student, post-training or fine-tuned, classifies the validation rows
    /// better (the post-training one on a tie); both test accuracies are reported.
    public static func run(modelAt model: URL, data: String, labelColumn: String? = nil, samples: Int = 1000, seed: UInt64 = 0,
                           rounding: WeightRounding = .compensated, output: URL, qat: QuantizationAwareSettings? = nil) throws -> Report {
        guard (1...maxSamples).contains(samples) else { throw TensorError("--samples \(samples): must be in 1...\(maxSamples)") }
        try qat?.validate()
        if let teacher = qat?.teacher, !FileManager.default.fileExists(atPath: RunFolder.modelFile(teacher)) {
            throw TensorError("--teacher \(teacher): the file does not exist")
        }
        let (net, info) = try SavedModel.load(model)
        guard !(net.layers.first is QuantizedModel) else { throw TensorError("\(model.path) is already an int8 model; quantize the float model it came from") }
        guard info.extra["task"] != "regression" else { throw TensorError("\(model.path) is a regression model; int8 students are classifiers") }
        var (train, test) = try DataSource.load(data, labelColumn: labelColumn, seed: seed)
        try DataSource.requireFinite(train, name: "\(data) (training split)")
        try DataSource.requireFinite(test, name: "\(data) (test split)")
        if let statistics = try Tabular.statistics(of: info, source: model.path) {
            train = try train.standardized(with: statistics)
            test = try test.standardized(with: statistics)
        }
        // The layers themselves must take the examples (a CNN takes [C, H, W], not the same count flat).
        guard train.exampleSize == info.inputShape.reduce(1, *), (try? ModelShapes.check(net, inputShape: train.exampleShape)) != nil else {
            throw TensorError("calibration data \(data) has examples of shape \(train.exampleShape); \(model.path) takes \(info.inputShape)")
        }
        guard train.numClasses == info.numClasses else {
            throw TensorError("calibration data \(data) has \(train.numClasses) classes; \(model.path) outputs \(info.numClasses)")
        }
        guard train.isLabeled, train.count > 0 else { throw TensorError("calibration data \(data) needs labelled training rows (the calibration is chosen by accuracy)") }
        var g = SeededGenerator(seed: seed)
        let order = Array(0..<train.count).shuffled(using: &g)
        let rows = Array(order.prefix(samples))
        let (student, calibrations) = try Quantizer.quantize(net, info: SavedModelDescription(info), samples: train.rows(rows),
                                                             labels: rows.map { train.labels[$0] }, rounding: rounding)
        let quantized = try QuantizedModel(student)
        let floatReport = try evaluate(net, on: test)
        let int8Report = try evaluate(quantized, on: test, teacher: ModuleTeacher(try SavedModel.load(model).model, name: info.spec))
        var written = student, outcome: QuantizationAwareOutcome? = nil
        if let qat {
            // Validation rows: the end of the shuffle, set aside before any fine-tuning.
            let validationCount = min(maxValidationRows, max(1, train.count / 10))
            guard train.count - validationCount >= 1 else {
                throw TensorError("calibration data \(data) has \(train.count) training rows: too few to fine-tune with --qat and keep validation rows")
            }
            let validation = try train.subset(Array(order.suffix(validationCount)))
            let trainingRows = Array(order.prefix(train.count - validationCount).prefix(qat.trainLimit ?? Int.max))
            let teacher: Teacher, teacherName: String
            if let path = qat.teacher {
                teacher = try loadTeacher(path, standardizedWith: try Tabular.statistics(of: info, source: model.path))
                try checkTeacher(teacher, path: path, exampleShape: info.inputShape, numClasses: info.numClasses)
                teacherName = teacher.name
            } else {
                let (copy, _) = try SavedModel.load(model)
                teacher = ModuleTeacher(copy, name: "\(info.spec) (the float model)")
                teacherName = teacher.name
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let (tuned, losses) = try fineTune(net, info: info, student: student, teacher: teacher, train: try train.subset(trainingRows),
                                               validation: validation, settings: qat, seed: seed)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let tunedModel = try QuantizedModel(tuned)
            let validationPTQ = try evaluate(quantized, on: validation).accuracy, validationQAT = try evaluate(tunedModel, on: validation).accuracy
            let better = validationQAT > validationPTQ
            if better { written = tuned }
            outcome = QuantizationAwareOutcome(accuracy: try evaluate(tunedModel, on: test).accuracy, validationAccuracyPTQ: validationPTQ,
                                               validationAccuracy: validationQAT, validationRows: validationCount, trainingRows: trainingRows.count,
                                               epochs: qat.epochs, learningRate: qat.learningRate, teacher: teacherName, losses: losses,
                                               written: better ? "qat" : "ptq", seconds: seconds)
        }
        try written.save(to: output)
        func size(_ url: URL) -> Int { ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int) ?? 0 }
        return Report(output: output, spec: info.spec, parameters: net.parameterCount, calibration: student.calibration, rounding: rounding,
                      calibrations: calibrations, samples: rows.count, accuracy: floatReport.accuracy, accuracyInt8: int8Report.accuracy,
                      agreement: int8Report.teacherAgreement ?? 0,
                      bytes: net.stateBytes, bytesInt8: written.stateBytes, fileBytes: size(model), fileBytesInt8: size(output),
                      kernel: QuantizedPlan.kernelDescription, qat: outcome)
    }

    /// Quantization-aware fine-tuning (Jacob et al. 2018): `model` with fake quantization where
    /// the int8 `student` (quantized from it) rounds, trained by the `Trainer` for
    /// `settings.epochs` on `train` with kd from `teacher` (T = 2, weight 0.5) plus ce on the
    /// labels (weight 0.5; kd alone, weight 1, on unlabelled rows), Adam at
    /// `settings.learningRate`; the epoch lines score the fake-quantized student on `validation`.
    /// Returns the int8 student with the fine-tuned weights and `student`'s activation ranges,
    /// and the losses used (for the report). `model` itself is not changed.
    public static func fineTune(_ model: Module, info: SavedModel, student: QuantizedStudent, teacher: Teacher, train: LabeledDataset,
                                validation: LabeledDataset, settings: QuantizationAwareSettings, seed: UInt64 = 0) throws
        -> (student: QuantizedStudent, losses: String) {
        try settings.validate()
        let qat = try Quantizer.quantizationAwareStudent(of: model, for: student)
        let terms = LossTerm.recipe(labelled: train.isLabeled)
        var options = TrainingOptions()
        options.epochs = settings.epochs
        options.batchSize = settings.batchSize
        options.learningRate = settings.learningRate
        options.seed = seed
        options.quiet = settings.quiet
        let trainer = try Trainer(student: qat, studentInfo: info, teachers: [teacher], objective: try DistillationObjective(terms: terms),
                                  options: options, train: train, run: nil, evaluate: { try evaluate($0, on: validation) })
        _ = try trainer.fit()
        let losses = train.isLabeled ? "0.5 kd (T = 2) + 0.5 ce" : "kd (T = 2)"
        return (try Quantizer.quantizedStudent(fromQuantizationAware: qat, template: student), losses)
    }
}
