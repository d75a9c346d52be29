import DistillExport
import DistillNN
import DistillONNX
import DistillTensor
import Foundation

/// A trained DistillKit model written as ONNX, ready for any ONNX runtime, then checked.
///
/// The model's own preprocessing goes into the graph: a tabular model's input standardisation
/// (the training split's statistics, kept in the saved model) and a regression model's target
/// scaling, so the exported file takes raw rows and gives outputs in the target's units. The file
/// is read back by DistillKit's importer and compared with the model on random inputs in the
/// model's own domain; a difference beyond float rounding is an error.
public enum StudentExport {
    /// What was written and how it compared.
    public struct Report {
        public var file: URL
        public var opset: Int
        public var inputs: [ONNXValueInfo], outputs: [ONNXValueInfo]
        public var parameters: Int
        public var summary: InspectionSummary
        /// Largest |model − exported| over the check's outputs.
        public var maxDifference: Float
        /// What a user of the file should know (a QDQ graph's behaviour in onnxruntime), or nil.
        public var note: String? = nil

        public var json: [String: Any] {
            ["onnx": file.path, "opset": opset, "inputs": inputs.map(\.shapeDescription), "outputs": outputs.map(\.shapeDescription), "params": parameters,
             "nodes": summary.nodeCount, "max_abs_difference": Double(maxDifference), "note": note as Any]
        }
        public var text: String {
            """
            wrote \(file.path): ONNX opset \(opset), input \(inputs.map(\.description).joined(separator: ", ")), output \(outputs.map(\.description).joined(separator: ", "))
            \(summary.nodeCount) nodes (\(summary.operators.map { "\($0.name) \($0.count)" }.joined(separator: ", "))), \(parameters) parameters
            \(String(format: "read back by DistillKit's importer: outputs match the model (max |difference| %.2g)", Double(maxDifference)))\(note.map { "\n" + $0 } ?? "")
            """
        }
    }

    /// Throws when a file to write is the model being exported (or a link to it): the export
    /// would replace the trained model.
    static func refuseOverwriting(_ model: URL, with outputs: URL...) throws {
        let source = model.standardizedFileURL.resolvingSymlinksInPath().path
        for output in outputs where output.standardizedFileURL.resolvingSymlinksInPath().path == source {
            throw TensorError("\(output.path) is the model being exported; write the export to another file")
        }
    }

    /// Exports the saved model at `model` (a `.safetensors` file from `distill train`/`kd`) to `onnx`.
    public static func onnx(modelAt model: URL, to onnx: URL, opset: Int = 17) throws -> Report {
        try refuseOverwriting(model, with: onnx)
        guard ONNXExport.supportedOpsets.contains(opset) else {
            throw TensorError("opset \(opset): DistillKit writes opsets \(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound)")
        }
        let (net, info) = try SavedModel.load(model)
        if let quantized = net.layers.first as? QuantizedModel { return try qdq(quantized.student, source: model, to: onnx, opset: opset) }
        let preprocessing = try Self.preprocessing(of: info, source: model.path)
        var metadata = info.extra.filter { $0.key != Tabular.statisticsKey }
        metadata["distillkit.spec"] = info.spec
        metadata["distillkit.num_classes"] = String(info.numClasses)
        try ONNXExport.write(net, inputShape: info.inputShape, to: onnx, opset: opset, metadata: metadata, preprocessing: preprocessing)

        let imported = try ONNXModel(contentsOf: onnx)
        let maxDifference = try compare(net, info: info, preprocessing: preprocessing, with: imported, file: onnx.path, source: model.path)
        return Report(file: onnx, opset: opset, inputs: imported.inputs, outputs: imported.outputs,
                      parameters: net.parameterCount, summary: ModelInspector.summary(imported), maxDifference: maxDifference)
    }

    /// The preprocessing a saved model carries: input standardisation and, for regression, the
    /// target's mean and standard deviation (`y = output · std + mean`).
    public static func preprocessing(of info: SavedModel, source: String) throws -> ONNXExport.Preprocessing {
        var preprocessing = ONNXExport.Preprocessing()
        if let statistics = try Tabular.statistics(of: info, source: source) {
            preprocessing.inputMean = statistics.mean
            preprocessing.inputStd = statistics.std
        }
        if let target = try Tabular.targetScaling(of: info, source: source) {
            preprocessing.outputShift = target.mean
            preprocessing.outputScale = target.std
        }
        return preprocessing
    }

    /// Runs four random inputs (spread over ±1 standard deviation of the training data for a
    /// tabular model) through the model and the exported graph; returns the largest difference.
    static func compare(_ net: Sequential, info: SavedModel, preprocessing p: ONNXExport.Preprocessing,
                        with imported: ONNXModel, file: String, source: String) throws -> Float {
        var g = SeededGenerator(seed: 1)
        var x = Tensor.randomUniform([4] + info.inputShape, using: &g)
        var standardized = x
        if let mean = p.inputMean, let std = p.inputStd {
            let f = mean.count, safeStd = std.map { $0 < 1e-6 ? 1 : $0 }
            x = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in mean[i % f] + (v * 2 - 1) * std[i % f] })
            standardized = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - mean[i % f]) / safeStd[i % f] })
        }
        net.eval()
        var direct = withNoGrad { net(standardized) }
        if let s = p.outputScale { direct = direct * s }
        if let b = p.outputShift { direct = direct + b }
        guard let viaONNX = try imported(x).floatTensor, viaONNX.shape == direct.shape else {
            throw TensorError("\(file): the exported model's output does not have the model's shape \(direct.shape)")
        }
        let maxDifference = zip(direct.scalars, viaONNX.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
        guard maxDifference <= 1e-4 * Swift.max(1, direct.scalars.map(Swift.abs).max() ?? 1) else {
            throw TensorError("\(file): read back, the exported model differs from \(source) by up to \(maxDifference)")
        }
        return maxDifference
    }
}

// MARK: - Shipping without ONNX: C source, Core ML, LiteRT (TFLite)

extension StudentExport {
    /// The formats `distill export` writes besides ONNX.
    public enum Target: String, Sendable, CaseIterable {
        case c = "C", coreML = "Core ML", tflite = "TFLite"
    }

    /// What was written for a C, Core ML or TFLite export, and how the lowered model compared.
    public struct ShippedReport {
        public var target: Target
        /// The files written (the .c and its .h for C).
        public var files: [URL]
        /// The file read back (nil for C source, which a C compiler reads).
        public var summary: InspectionSummary?
        /// Parameters after folding batch norm (what the file holds).
        public var parameters: Int
        /// Largest |model − lowered steps| over the check's outputs (the steps every file is written from).
        public var maxDifference: Float
        public var classNames: [String]
        /// An int8 student written as integer arithmetic.
        public var int8 = false
        /// More lines for the report (how an int8 TFLite file stores its logits).
        public var notes: [String] = []

        public var json: [String: Any] {
            var j: [String: Any] = ["format": target.rawValue, "files": files.map(\.path), "params": parameters, "int8": int8,
                                    "max_abs_difference": Double(maxDifference), "class_names": classNames, "notes": notes]
            if let summary { j["inputs"] = summary.inputs.map(\.shapeDescription); j["outputs"] = summary.outputs.map(\.shapeDescription)
                             j["operators"] = Dictionary(summary.operators.map { ($0.name, $0.count) }, uniquingKeysWith: +) }
            return j
        }

        public var text: String {
            var lines = ["wrote \(files.map(\.path).joined(separator: " and ")): \(target.rawValue), \(parameters) parameters"
                         + (!int8 ? " (batch norm folded)" : target == .coreML ? " (8-bit weights, float arithmetic)" : " (int8 weights, integer arithmetic)")]
            if let summary {
                lines.append("read back: input \(summary.inputs.map(\.description).joined(separator: ", ")), output \(summary.outputs.map(\.description).joined(separator: ", "))")
                lines.append("\(summary.nodeCount) \(target == .coreML ? "layers" : "operators") (\(summary.operators.map { "\($0.name) \($0.count)" }.joined(separator: ", ")))")
            }
            if !int8 { lines.append(String(format: "the exported steps give the model's outputs (max |difference| %.2g on random inputs)", Double(maxDifference))) }
            lines += notes
            switch target {
            case .c:
                let h = files.count > 1 ? files[1].lastPathComponent : "student.h"
                lines.append("build: cc -O2 -std=c99 -c \(files[0].lastPathComponent) (link with -lm); call student_predict(input, output) from \(h)")
            case .tflite: lines.append("inputs are NHWC for images ([N, H, W, C]); run with LiteRT's Interpreter (signature serving_default)")
            case .coreML: lines.append("Core ML specification version \(CoreMLExport.specificationVersion) (iOS 14, macOS 11 and later)")
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Exports the saved model at `model` as C99 source (`source`, and the header beside it).
    /// `prefix` names the functions (`student_predict`).
    public static func c(modelAt model: URL, to source: URL, classNames: [String]? = nil, prefix: String = "student") throws -> ShippedReport {
        try refuseOverwriting(model, with: source, source.deletingPathExtension().appendingPathExtension("h"))
        if let (student, info) = try int8Student(at: model) { return try c(int8: student, info: info, model: model, to: source, classNames: classNames, prefix: prefix) }
        let (graph, info, difference) = try lowered(modelAt: model, format: CSourceExport.format)
        let names = try checkedClassNames(classNames, outputs: graph.outputShape.reduce(1, *), format: CSourceExport.format)
        let options = CSourceExport.Options(prefix: prefix, classNames: names, headerName: source.deletingPathExtension().lastPathComponent + ".h",
                                            description: ["Model: \(model.lastPathComponent) (\(info.spec)), input \(info.inputShape), \(graph.outputShape.reduce(1, *)) outputs."])
        let header = try CSourceExport.write(graph, to: source, options: options)
        return ShippedReport(target: .c, files: [source, header], summary: nil, parameters: graph.parameterCount, maxDifference: difference, classNames: names)
    }

    /// Exports the saved model at `model` as a Core ML model (`.mlmodel`): a classifier with
    /// `classNames`, or a regressor for a regression model; an int8 student with 8-bit weights
    /// (`coreML(int8:...)`).
    public static func coreML(modelAt model: URL, to file: URL, classNames: [String]? = nil) throws -> ShippedReport {
        try refuseOverwriting(model, with: file)
        if let (student, info) = try int8Student(at: model) { return try coreML(int8: student, info: info, model: model, to: file, classNames: classNames) }
        let (graph, info, difference) = try lowered(modelAt: model, format: CoreMLExport.format)
        let isRegressor = try Tabular.targetScaling(of: info, source: model.path) != nil
        let names = try checkedClassNames(classNames, outputs: graph.outputShape.reduce(1, *), format: CoreMLExport.format)
        let options = CoreMLExport.Options(classNames: names, isRegressor: isRegressor, shortDescription: "DistillKit student \(info.spec)",
                                           metadata: ["distillkit.spec": info.spec, "distillkit.source": model.lastPathComponent])
        try CoreMLExport.write(graph, to: file, options: options)
        return ShippedReport(target: .coreML, files: [file], summary: try summary(ofCoreML: file), parameters: graph.parameterCount,
                             maxDifference: difference, classNames: names)
    }

    /// Exports the saved model at `model` as a LiteRT (TFLite) flatbuffer: float32, or for an int8
    /// student fully integer with int16 logits; with `calibration` int8 logits whose range that
    /// data sets, or with `floatLogits` its last layer in float32.
    public static func tflite(modelAt model: URL, to file: URL, classNames: [String]? = nil, calibration: CalibrationData? = nil,
                              floatLogits: Bool = false) throws -> ShippedReport {
        try refuseOverwriting(model, with: file)
        if let (student, info) = try int8Student(at: model) {
            return try tflite(int8: student, info: info, model: model, to: file, classNames: classNames, calibration: calibration, floatLogits: floatLogits)
        }
        if calibration != nil || floatLogits {
            throw ExportError(format: TFLiteExport.format, "\(calibration != nil ? "--calibration" : "--float-logits") is for int8 students (distill quantize); \(model.path) is a float model, exported as float32")
        }
        let (graph, info, difference) = try lowered(modelAt: model, format: TFLiteExport.format)
        let names = try checkedClassNames(classNames, outputs: graph.outputShape.reduce(1, *), format: TFLiteExport.format)
        try TFLiteExport.write(graph, to: file, classNames: names, description: "DistillKit student \(info.spec)")
        return ShippedReport(target: .tflite, files: [file], summary: try summary(ofTFLite: file), parameters: graph.parameterCount,
                             maxDifference: difference, classNames: names)
    }

    /// The int8 student in a saved model file (`distill quantize`), or nil for a float model.
    static func int8Student(at model: URL) throws -> (QuantizedStudent, SavedModel)? {
        let (net, info) = try SavedModel.load(model)
        guard let quantized = net.layers.first as? QuantizedModel else { return nil }
        return (quantized.student, info)
    }

    /// An int8 student as C: integer arithmetic, checked against DistillKit's int8 path by the tests
    /// (the outputs are the same floats); there are no float steps to compare here.
    static func c(int8 student: QuantizedStudent, info: SavedModel, model: URL, to source: URL, classNames: [String]?, prefix: String) throws -> ShippedReport {
        let p = try preprocessing(of: info, source: model.path)
        let outputs = info.numClasses
        let names = try checkedClassNames(classNames, outputs: outputs, format: CSourceExport.format)
        let options = CSourceExport.Options(prefix: prefix, classNames: names, headerName: source.deletingPathExtension().lastPathComponent + ".h",
                                            description: ["Model: \(model.lastPathComponent) (int8 \(info.spec)), input \(info.inputShape), \(outputs) outputs.",
                                                          "Build with -std=c99 (or -ffp-contract=off) for outputs bit-identical to DistillKit's int8 path."])
        let header = try CSourceExport.write(student, preprocessing: ExportPreprocessing(inputMean: p.inputMean, inputStd: p.inputStd),
                                             to: source, options: options)
        return ShippedReport(target: .c, files: [source, header], summary: nil, parameters: student.parameterCount, maxDifference: 0,
                             classNames: names, int8: true)
    }

    /// The class names a shipped model carries: `names`, one per output, none empty and no two
    /// alike (Core ML keys its class probabilities by name), or 0, 1, ... when none are given.
    static func checkedClassNames(_ names: [String]?, outputs: Int, format: String) throws -> [String] {
        guard let names else { return (0..<outputs).map(String.init) }
        guard names.count == outputs else {
            throw ExportError(format: format, "\(names.count) class names given; the model has \(outputs) outputs")
        }
        if let empty = names.firstIndex(where: { $0.isEmpty }) { throw ExportError(format: format, "class name \(empty + 1) is empty") }
        var seen = Set<String>()
        if let twice = names.first(where: { !seen.insert($0).inserted }) {
            throw ExportError(format: format, "the class name '\(twice.prefix(40))' is given twice; each class needs its own")
        }
        return names
    }

    /// Loads the saved model with its preprocessing, lowers it for `format`, and checks the lowered
    /// steps against the model on random inputs (as `compare` does for ONNX), before any file is written.
    static func lowered(modelAt model: URL, format: String) throws -> (ExportGraph, SavedModel, Float) {
        let (net, info) = try SavedModel.load(model)
        let p = try preprocessing(of: info, source: model.path)
        let graph = try ExportGraph.lower(net, inputShape: info.inputShape, preprocessing: ExportPreprocessing(
            inputMean: p.inputMean, inputStd: p.inputStd, outputScale: p.outputScale, outputShift: p.outputShift), format: format)
        var g = SeededGenerator(seed: 1)
        var x = Tensor.randomUniform([4] + info.inputShape, using: &g)
        var standardized = x
        if let mean = p.inputMean, let std = p.inputStd {
            let f = mean.count
            x = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in mean[i % f] + (v * 2 - 1) * std[i % f] })
            let scale = std.map { $0 < 1e-6 ? 1 : 1 / $0 }
            standardized = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - mean[i % f]) * scale[i % f] })
        }
        net.eval()
        var direct = withNoGrad { net(standardized) }
        if let s = p.outputScale { direct = direct * s }
        if let b = p.outputShift { direct = direct + b }
        let viaGraph = graph.run(x)
        guard viaGraph.shape == direct.shape else {
            throw ExportError(format: format, "the lowered model gives outputs of shape \(viaGraph.shape), the model \(direct.shape)")
        }
        let difference = zip(direct.scalars, viaGraph.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
        guard difference <= 1e-4 * Swift.max(1, direct.scalars.map(Swift.abs).max() ?? 1) else {
            throw ExportError(format: format, "lowered for export, \(model.path) differs from itself by up to \(difference); nothing was written")
        }
        return (graph, info, difference)
    }

    /// A file that does not parse is a reading error (its message names the file), not an export's.
    static func reading<T>(_ parse: () throws -> T) throws -> T {
        do { return try parse() } catch let error as ExportError { throw TensorError(error.message) }
    }

    /// `distill inspect` on a .tflite file: the summary DistillKit prints for ONNX models.
    public static func summary(ofTFLite url: URL) throws -> InspectionSummary {
        let data = try readFile(url, format: TFLiteExport.format)
        let s = try reading { try TFLiteSummary(data, source: url.path) }
        func info(_ t: TFLiteSummary.TensorInfo) -> ONNXValueInfo {
            ONNXValueInfo(name: t.name, type: t.type == "float32" ? .float : t.type == "int8" ? .int8 : t.type == "int32" ? .int32 : nil,
                          shape: t.shape.enumerated().map { $0.offset == 0 ? .named("N") : .fixed($0.element) })
        }
        return InspectionSummary(source: url.path, format: "TFLite (schema \(s.version))", producer: s.metadata["distillkit"] != nil ? "DistillKit" : s.description,
                                 inputs: s.inputs.map(info), outputs: s.outputs.map(info), operators: s.operators,
                                 parameters: s.parameters, bytes: s.bytes, flops: s.flops, flopsNote: nil)
    }

    /// `distill inspect` on a .mlmodel file: the summary DistillKit prints for ONNX models.
    public static func summary(ofCoreML url: URL) throws -> InspectionSummary {
        let data = try readFile(url, format: CoreMLExport.format)
        let s = try reading { try CoreMLSummary(data, source: url.path) }
        func info(_ f: CoreMLSummary.FeatureInfo) -> ONNXValueInfo {
            var value = ONNXValueInfo(name: f.name, type: f.type == "float32" ? .float : f.type == "double" ? .double : nil,
                                      shape: f.shape.map { $0.map { .fixed($0) } })
            // Core ML's non-array features: the class label and the class → probability dictionary.
            if f.shape == nil { value.nonTensorKind = f.type }
            return value
        }
        let details = [s.kind] + (s.classLabels.isEmpty ? [] : ["\(s.classLabels.count) class labels"]) + (s.quantizationSummary.map { [$0] } ?? [])
        return InspectionSummary(source: url.path, format: "Core ML (specification \(s.specificationVersion), \(details.joined(separator: ", ")))",
                                 producer: s.metadata["author"] ?? "", inputs: s.inputs.map(info), outputs: s.outputs.map(info),
                                 operators: s.layers, parameters: s.parameters, bytes: s.parameterBytes, flops: s.flops,
                                 flopsNote: s.flops == nil ? "a layer's shape could not be followed" : nil)
    }

    static func readFile(_ url: URL, format: String) throws -> Data {
        try InputFile.read(url, what: "\(format) model")
    }
}
