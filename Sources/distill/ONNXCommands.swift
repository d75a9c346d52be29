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

    func run() throws {
        try BLAS.ensureLoaded()
        guard ONNXExport.supportedOpsets.contains(opset) else {
            throw ValidationError("--opset \(opset): DistillKit writes opsets \(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound)")
        }
        let url = URL(fileURLWithPath: model)
        let (net, info) = try SavedModel.load(url)
        var preprocessing = ONNXExport.Preprocessing()
        if let statistics = try Tabular.statistics(of: info, source: model) {
            preprocessing.inputMean = statistics.mean
            preprocessing.inputStd = statistics.std
        }
        if let target = info.extra[Tabular.targetKey] {
            let parts = target.split(separator: ",").compactMap { Float($0) }
            if parts.count == 2 { preprocessing.outputShift = parts[0]; preprocessing.outputScale = parts[1] }
        }
        var metadata = info.extra.filter { $0.key != Tabular.statisticsKey }
        metadata["distillkit.spec"] = info.spec
        metadata["distillkit.num_classes"] = String(info.numClasses)
        let out = URL(fileURLWithPath: onnx)
        try ONNXExport.write(net, inputShape: info.inputShape, to: out, opset: opset, metadata: metadata, preprocessing: preprocessing)

        // Read it back and compare on a few inputs in the model's own domain.
        let imported = try ONNXModel(contentsOf: out)
        var g = SeededGenerator(seed: 1)
        var x = Tensor.randomUniform([4] + info.inputShape, using: &g)
        if let mean = preprocessing.inputMean, let std = preprocessing.inputStd {
            let f = mean.count
            x = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in mean[i % f] + (v * 2 - 1) * std[i % f] })
        }
        net.eval()
        var direct = withNoGrad { net(preprocessing.inputMean != nil ? standardize(x, preprocessing) : x) }
        if let s = preprocessing.outputScale { direct = direct * s }
        if let b = preprocessing.outputShift { direct = direct + b }
        guard let viaONNX = try imported(x).floatTensor, viaONNX.shape == direct.shape else {
            throw ValidationError("\(onnx): the exported model's output does not have the model's shape \(direct.shape)")
        }
        let maxDiff = zip(direct.scalars, viaONNX.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
        guard maxDiff <= 1e-4 * Swift.max(1, direct.scalars.map(Swift.abs).max() ?? 1) else {
            throw ValidationError("\(onnx): read back, the exported model differs from \(model) by up to \(maxDiff)")
        }
        let summary = ModelInspector.summary(imported)
        if json {
            printJSON(["onnx": out.path, "opset": opset, "inputs": imported.inputs.map(\.shapeDescription), "outputs": imported.outputs.map(\.shapeDescription),
                       "params": net.parameterCount, "nodes": summary.nodeCount, "max_abs_difference": Double(maxDiff)])
            return
        }
        print("wrote \(out.path): ONNX opset \(opset), input \(imported.inputs[0].description), output \(imported.outputs[0].description)")
        print("\(summary.nodeCount) nodes (\(summary.operators.map { "\($0.name) \($0.count)" }.joined(separator: ", "))), \(net.parameterCount) parameters")
        print(String(format: "read back by DistillKit's importer: outputs match the model (max |difference| %.2g)", Double(maxDiff)))
    }

    func standardize(_ x: Tensor, _ p: ONNXExport.Preprocessing) -> Tensor {
        let mean = p.inputMean ?? [], std = (p.inputStd ?? []).map { $0 < 1e-6 ? 1 : $0 }
        let f = mean.count
        return Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - mean[i % f]) / std[i % f] })
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
