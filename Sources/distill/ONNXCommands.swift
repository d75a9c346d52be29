import ArgumentParser
import DistillData
import DistillNN
import DistillONNX
import DistillTensor
import DistillTraining
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a DistillKit model as ONNX, for onnxruntime and every other ONNX runtime.",
        discussion: """
        Writes the model alone (no teacher, no adapters) with a dynamic batch axis N, its own input \
        standardisation (tabular models) included, then reads the file back and checks that \
        DistillKit's ONNX importer gives the model's outputs.
        """)
    @Argument(help: "Model file (.safetensors from distill train or distill kd), or a run folder (its best.safetensors).", transform: RunFolder.modelFile) var model: String
    @Option(help: "ONNX file to write.") var onnx: String
    @Option(help: "ONNX opset (\(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound)).") var opset = 17
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        guard ONNXExport.supportedOpsets.contains(opset) else {
            throw ValidationError("--opset \(opset): DistillKit writes opsets \(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound)")
        }
    }

    func run() throws {
        try BLAS.ensureLoaded()
        let report = try StudentExport.onnx(modelAt: URL(fileURLWithPath: model), to: URL(fileURLWithPath: onnx), opset: opset)
        if json { printJSON(report.json) } else { print(report.text) }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: inputs, outputs, operators, parameters, bytes and FLOPs (ONNX or DistillKit).")
    @Argument(help: "Model file: .onnx, or .safetensors from distill train or distill kd, or a run folder (its best.safetensors).", transform: RunFolder.modelFile) var model: String
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func run() throws {
        try BLAS.ensureLoaded()
        let url = URL(fileURLWithPath: model)
        let summary: InspectionSummary
        switch url.pathExtension.lowercased() {
        case "onnx": summary = ModelInspector.summary(try ONNXModel(contentsOf: url))
        case "safetensors":
            let (net, info) = try SavedModel.load(url)
            summary = ModelInspector.summary(net, spec: info.spec, inputShape: info.inputShape, source: url.path)
        default:
            throw ValidationError("\(model): inspect reads .onnx and .safetensors models")
        }
        if json { printJSON(summary.json) } else { print(summary.text) }
    }
}

extension Eval {
    /// `distill eval model.onnx`: the ONNX model is evaluated as a classifier on the test split.
    func runONNX(inputMean: [Float]?, inputStd: [Float]?) throws {
        try BLAS.ensureLoaded()
        let onnxTeacher = try ONNXTeacher(url: URL(fileURLWithPath: model), inputMean: inputMean, inputStd: inputStd)
        let (_, test) = try DataSource.load(data, labelColumn: label)
        try DataSource.requireFinite(test, name: "\(data) (test split)")
        try onnxTeacher.checkExampleShape(test.exampleShape)
        let module = onnxTeacher.asModule(classes: test.numClasses)
        let other = try teacher.map { path in
            let loaded = try loadTeacher(path, options: teacherReading.options)
            try checkTeacher(loaded, path: path, exampleShape: test.exampleShape, numClasses: test.numClasses)
            return loaded
        }
        let r = try evaluate(module, on: test, teacher: other)
        if let failure = module.failure { throw failure }
        if json { return printEvaluationJSON(r, parameters: onnxTeacher.parameterCount, bytes: onnxTeacher.bytes) }
        print("\(model): ONNX, input \(onnxTeacher.inputName) \(onnxTeacher.expectedInput), \(onnxTeacher.parameterCount) parameters, \(onnxTeacher.bytes) bytes"
              + "; \(onnxTeacher.outputDescription)")
        printEvaluation(r, on: test)
    }
}

/// Parses `--input-mean 0.2860` or `--input-mean 0.485,0.456,0.406`.
func parseNumberList(_ text: String?, option: String) throws -> [Float]? {
    guard let text else { return nil }
    let values = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.count <= 4096, values.allSatisfy({ $0?.isFinite == true }) else {
        throw ValidationError("\(option) '\(text.prefix(80))': give a finite number or comma-separated numbers (one per channel)")
    }
    guard !option.hasSuffix("std") || values.allSatisfy({ $0! > 0 }) else { throw ValidationError("\(option) '\(text.prefix(80))': standard deviations must be positive") }
    return values.map { $0! }
}
