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
        public var calibrations: [Quantizer.Calibration]
        public var samples: Int
        /// Test accuracy (fractions of 1) of the float model and of the int8 student.
        public var accuracy: Double, accuracyInt8: Double
        /// Bytes of the state (float32: 4 per parameter and buffer; int8: see `QuantizedStudent.stateBytes`) and of the files.
        public var bytes: Int, bytesInt8: Int, fileBytes: Int, fileBytesInt8: Int
        public var kernel: String

        public var json: [String: Any] {
            ["output": output.path, "spec": spec, "params": parameters, "calibration": calibration.rawValue,
             "calibration_accuracy": Dictionary(uniqueKeysWithValues: calibrations.map { ($0.method.rawValue, $0.accuracy) }),
             "samples": samples, "accuracy": accuracy, "accuracy_int8": accuracyInt8, "bytes": bytes, "bytes_int8": bytesInt8,
             "file_bytes": fileBytes, "file_bytes_int8": fileBytesInt8, "kernel": kernel]
        }

        public var text: String {
            let tried = calibrations.map { String(format: "%@ %.2f%%", $0.method.rawValue, $0.accuracy * 100) }.joined(separator: ", ")
            return """
            wrote \(output.path): int8 \(spec), \(parameters) parameters, kernel \(kernel)
            calibration: \(calibration.rawValue) (accuracy on the \(samples) calibration samples: \(tried))
            \(String(format: "test accuracy: float32 %.2f%%, int8 %.2f%% (%+.2f points)", accuracy * 100, accuracyInt8 * 100, (accuracyInt8 - accuracy) * 100))
            \(String(format: "bytes: float32 %d, int8 %d (%.2fx smaller); files %d and %d", bytes, bytesInt8, Double(bytes) / Double(max(bytesInt8, 1)), fileBytes, fileBytesInt8))
            """
        }
    }

    /// Most calibration samples (more only slows calibration down).
    public static let maxSamples = 100_000

    /// Quantizes the model at `model` with `samples` calibration rows of `data`'s training split
    /// (a `DataSource` name; `labelColumn` for a .csv), writes the int8 file to `output`, and
    /// scores both models on the test split. Throws, before any work, for an int8 model, data
    /// whose examples or classes do not fit the model, or a sample count out of range.
    public static func run(modelAt model: URL, data: String, labelColumn: String? = nil, samples: Int = 1000, seed: UInt64 = 0,
                           output: URL) throws -> Report {
        guard (1...maxSamples).contains(samples) else { throw TensorError("--samples \(samples): must be in 1...\(maxSamples)") }
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
        guard train.exampleSize == info.inputShape.reduce(1, *) else {
            throw TensorError("calibration data \(data) has examples of shape \(train.exampleShape); \(model.path) takes \(info.inputShape)")
        }
        guard train.numClasses == info.numClasses else {
            throw TensorError("calibration data \(data) has \(train.numClasses) classes; \(model.path) outputs \(info.numClasses)")
        }
        guard train.isLabeled, train.count > 0 else { throw TensorError("calibration data \(data) needs labelled training rows (the calibration is chosen by accuracy)") }
        var g = SeededGenerator(seed: seed)
        let rows = Array(Array(0..<train.count).shuffled(using: &g).prefix(samples))
        let (student, calibrations) = try Quantizer.quantize(net, info: SavedModelDescription(info), samples: train.rows(rows),
                                                             labels: rows.map { train.labels[$0] })
        try student.save(to: output)

        let quantized = try QuantizedModel(student)
        let floatReport = try evaluate(net, on: test), int8Report = try evaluate(quantized, on: test)
        func size(_ url: URL) -> Int { ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int) ?? 0 }
        return Report(output: output, spec: info.spec, parameters: net.parameterCount, calibration: student.calibration,
                      calibrations: calibrations, samples: rows.count, accuracy: floatReport.accuracy, accuracyInt8: int8Report.accuracy,
                      bytes: net.stateBytes, bytesInt8: student.stateBytes, fileBytes: size(model), fileBytesInt8: size(output),
                      kernel: QuantizedPlan.kernelDescription)
    }
}
