import DistillData
import DistillExport
import DistillNN
import DistillONNX
import DistillTensor
import Foundation

extension StudentExport {
    /// Most a logit of the exported QDQ graph may differ from the int8 plan's, as a fraction of
    /// the largest logit: the graph sums in float, so a value at the midpoint between two steps
    /// may round to the other one and move what follows by a step.
    static let qdqTolerance: Float = 0.02

    /// An int8 student (`distill quantize`) exported as QDQ ONNX (`ONNXExport.serializeQDQ`), read
    /// back by DistillKit's importer and compared with the int8 plan on random inputs in the
    /// model's domain; outputs further apart than `qdqTolerance` are an error.
    static func qdq(_ student: QuantizedStudent, source model: URL, to onnx: URL, opset: Int) throws -> Report {
        let info = student.info.savedModel
        let preprocessing = try Self.preprocessing(of: info, source: model.path)
        guard preprocessing.outputScale == nil else { throw TensorError("\(model.path): int8 students are classifiers; a regression target scaling cannot be exported") }
        var metadata = info.extra.filter { $0.key != Tabular.statisticsKey }
        metadata["distillkit.spec"] = info.spec
        metadata["distillkit.num_classes"] = String(info.numClasses)
        metadata["distillkit.quantization"] = QuantizedStudent.marker
        metadata["distillkit.int8.calibration"] = student.calibration.rawValue
        try ONNXExport.writeQDQ(student, to: onnx, opset: opset, metadata: metadata, preprocessing: preprocessing)

        let imported = try ONNXModel(contentsOf: onnx)
        var g = SeededGenerator(seed: 1)
        var x = Tensor.randomUniform([8] + info.inputShape, using: &g)
        var standardized = x
        if let mean = preprocessing.inputMean, let std = preprocessing.inputStd {
            let f = mean.count, safeStd = std.map { $0 < 1e-6 ? 1 : $0 }
            x = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in mean[i % f] + (v * 2 - 1) * std[i % f] })
            standardized = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - mean[i % f]) / safeStd[i % f] })
        }
        let direct = try QuantizedPlan(student)(standardized)
        guard let viaONNX = try imported(x).floatTensor, viaONNX.shape == direct.shape else {
            throw TensorError("\(onnx.path): the exported model's output does not have the model's shape \(direct.shape)")
        }
        let maxDifference = zip(direct.scalars, viaONNX.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
        guard maxDifference <= qdqTolerance * Swift.max(1, direct.scalars.map(Swift.abs).max() ?? 1) else {
            throw TensorError("\(onnx.path): read back, the exported QDQ model differs from \(model.path) by up to \(maxDifference)")
        }
        return Report(file: onnx, opset: opset, inputs: imported.inputs, outputs: imported.outputs, parameters: student.parameterCount,
                      summary: ModelInspector.summary(imported), maxDifference: maxDifference,
                      note: "onnxruntime with its default graph optimisations fuses the QDQ pairs into its own integer kernels, whose rounding differs from DistillKit's on CPUs without AVX-512 VNNI (a few percent of predictions can change); GraphOptimizationLevel.ORT_DISABLE_ALL runs the graph as written, matching DistillKit's int8 to float rounding")
    }
}

// MARK: - int8 LiteRT (TFLite)

extension StudentExport {
    /// Where an int8 TFLite export takes the logits' range from: rows of a data set's training
    /// split, drawn as `distill quantize` draws its calibration samples.
    public struct CalibrationData: Sendable {
        /// A `DataSource` name: fashion-mnist, mnist, a .csv (with `labelColumn`) or .npz file.
        public var data: String
        public var labelColumn: String?
        public var samples: Int
        public var seed: UInt64
        public init(data: String, labelColumn: String? = nil, samples: Int = 1000, seed: UInt64 = 0) {
            self.data = data; self.labelColumn = labelColumn; self.samples = samples; self.seed = seed
        }
    }

    /// An int8 student as a fully integer TFLite file (`TFLiteExport.serialize(_:logits:...)`). By
    /// default its last layer writes int16 logits whose step the weights set (`TFLiteExport.Logits.int16`).
    /// With `calibration` the logits are int8 instead, for accelerators that run only int8 operators:
    /// their scale, which the int8 file does not record, comes from the smallest and largest logit
    /// DistillKit's int8 path gives on the calibration samples (widened to include 0). With
    /// `floatLogits` the last layer runs in float32.
    static func tflite(int8 student: QuantizedStudent, info: SavedModel, model: URL, to file: URL, classNames: [String]?,
                       calibration: CalibrationData?, floatLogits: Bool) throws -> ShippedReport {
        if floatLogits, let calibration {
            throw ExportError(format: TFLiteExport.format, "--calibration \(calibration.data) sets the range of int8 logits; with --float-logits the logits are float32 and need none")
        }
        let p = try preprocessing(of: info, source: model.path)
        let outputs = info.numClasses
        let names = try checkedClassNames(classNames, outputs: outputs, format: TFLiteExport.format)
        var logits = TFLiteExport.Logits.int16, note = ""
        if floatLogits { (logits, note) = (.float, "logits in float32: the last layer runs on the dequantized int8 values and weights") }
        if let calibration {
            let (q, low, high, samples) = try logitsQuantization(student, info: info, model: model, calibration: calibration)
            logits = .int8(q)
            note = String(format: "logits stored as int8: scale %.6g, zero point %d (DistillKit's int8 logits on %d samples of %@ span %.4g to %.4g)",
                          Double(q.scale), Int(q.zeroPoint) - 128, samples, calibration.data, Double(low), Double(high))
        }
        try TFLiteExport.write(student, logits: logits, preprocessing: ExportPreprocessing(inputMean: p.inputMean, inputStd: p.inputStd),
                               to: file, classNames: names, description: "DistillKit int8 student \(info.spec)")
        var report = ShippedReport(target: .tflite, files: [file], summary: try summary(ofTFLite: file), parameters: student.parameterCount,
                                   maxDifference: 0, classNames: names, int8: true)
        if logits == .int16, let q = try quantization(ofTFLite: file).first(where: { $0.name == "logits.quantized" }) {
            note = String(format: "logits stored as int16 (the last layer is TFLite's 16x8 FULLY_CONNECTED): step %.6g, so ±32,766 steps cover ±%.4g, the most the layer can produce; for int8 logits (accelerators that run only int8 operators) give --calibration DATA",
                          Double(q.scales[0]), Double(q.scales[0]) * 32766)
        }
        report.notes = [note]
        return report
    }

    /// The logits' quantization for an int8 TFLite export: DistillKit's int8 path on `samples`
    /// training rows of the calibration data (standardised as the model was trained), their
    /// smallest and largest value widened to include 0. Returns it, the range and the row count.
    static func logitsQuantization(_ student: QuantizedStudent, info: SavedModel, model: URL, calibration c: CalibrationData) throws
        -> (ActivationQuantization, Float, Float, Int) {
        guard (1...StudentQuantization.maxSamples).contains(c.samples) else {
            throw TensorError("--samples \(c.samples): must be in 1...\(StudentQuantization.maxSamples)")
        }
        var (train, _) = try DataSource.load(c.data, labelColumn: c.labelColumn, seed: c.seed)
        try DataSource.requireFinite(train, name: "\(c.data) (training split)")
        if let statistics = try Tabular.statistics(of: info, source: model.path) { train = try train.standardized(with: statistics) }
        guard train.exampleSize == info.inputShape.reduce(1, *), train.count > 0 else {
            throw TensorError("calibration data \(c.data) has \(train.count) training rows of shape \(train.exampleShape); \(model.path) takes \(info.inputShape)")
        }
        var g = SeededGenerator(seed: c.seed)
        let rows = Array(Array(0..<train.count).shuffled(using: &g).prefix(c.samples))
        let x = train.rows(rows)
        let logits = try QuantizedPlan(student)(x.reshaped([rows.count] + info.inputShape)).scalars
        let low = logits.min() ?? 0, high = logits.max() ?? 0
        guard low.isFinite, high.isFinite else { throw TensorError("\(model.path): the int8 logits on \(c.data) are not finite") }
        return (ActivationQuantization(low: low, high: high), low, high, rows.count)
    }

    /// The quantization parameters in a .tflite file, for `distill inspect` (empty for a float model).
    public static func quantization(ofTFLite url: URL) throws -> [TFLiteSummary.QuantizedTensor] {
        try TFLiteSummary(try readFile(url, format: TFLiteExport.format), source: url.path).quantized
    }
}

// MARK: - int8 Core ML

extension StudentExport {
    /// An int8 student as a Core ML neural network with 8-bit weights (`CoreMLExport.serialize(_:preprocessing:options:)`):
    /// DistillKit's int8 weights and per-channel scales as they are, float32 biases. Core ML
    /// dequantizes the weights when it loads the model and computes in float, so the file is the
    /// int8 student with float activations: its outputs are close to DistillKit's int8 path, not
    /// equal to it (tests/interop/test_coreml_int8.py measures how close).
    static func coreML(int8 student: QuantizedStudent, info: SavedModel, model: URL, to file: URL, classNames: [String]?) throws -> ShippedReport {
        let p = try preprocessing(of: info, source: model.path)
        guard p.outputScale == nil else {
            throw ExportError(format: CoreMLExport.format, "\(model.path): int8 students are classifiers; a regression target scaling cannot be exported")
        }
        let outputs = info.numClasses
        let names = try checkedClassNames(classNames, outputs: outputs, format: CoreMLExport.format)
        let options = CoreMLExport.Options(classNames: names, shortDescription: "DistillKit int8 student \(info.spec)",
                                           metadata: ["distillkit.spec": info.spec, "distillkit.source": model.lastPathComponent,
                                                      "distillkit.quantization": "int8 weights per output channel (8-bit linear), float activations"])
        try CoreMLExport.write(student, preprocessing: ExportPreprocessing(inputMean: p.inputMean, inputStd: p.inputStd), to: file, options: options)
        let weights = student.layers.reduce(0) { total, layer in
            switch layer {
            case let .linear(w, _, _, _), let .convolution(w, _, _, _, _, _): return total + w.values.count
            default: return total
            }
        }
        var report = ShippedReport(target: .coreML, files: [file], summary: try summary(ofCoreML: file), parameters: student.parameterCount,
                                   maxDifference: 0, classNames: names, int8: true)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int) ?? nil
        report.notes = [
            "\(weights) weights stored as 8-bit integers with their per-channel scales, unchanged\(bytes.map { " (\($0) bytes in all)" } ?? "")",
            "Core ML dequantizes the weights when it loads the model and computes in float: activations are not quantized, so the outputs are close to DistillKit's int8 path, not equal (for integer arithmetic export --c or --tflite)",
        ]
        return report
    }

    /// The quantized weights in a .mlmodel file, for `distill inspect` (empty for a float model).
    public static func quantization(ofCoreML url: URL) throws -> [CoreMLSummary.QuantizedWeights] {
        try CoreMLSummary(try readFile(url, format: CoreMLExport.format), source: url.path).quantized
    }
}
