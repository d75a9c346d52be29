import ArgumentParser
import DistillData
import DistillExport
import DistillNN
import DistillONNX
import DistillTensor
import DistillTraining
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a DistillKit model: ONNX, C source, Core ML or LiteRT (TFLite).",
        discussion: """
        Writes the model alone (no teacher, no adapters), its own input standardisation (tabular \
        models) and target scaling (regression) included, in one of four forms:
          --onnx student.onnx        any ONNX runtime (dynamic batch axis N); read back and checked
          --c student.c              C99 source and student.h: student_predict(input, output), no malloc
          --coreml student.mlmodel   Core ML neural-network classifier (iOS 14 / macOS 11 and later)
          --tflite student.tflite    LiteRT / TFLite flatbuffer, float32, NHWC image inputs
        An int8 student (distill quantize) exports as integer arithmetic to --c, as QDQ to --onnx, \
        fully integer to --tflite (int8 layers, the last one writing int16 logits; with \
        --calibration DATA int8 logits whose range DATA measures, for accelerators that run only \
        int8 operators; with --float-logits the last layer in float32), and with 8-bit weights to \
        --coreml (Core ML dequantizes them at load and computes in float). \
        Batch norm is folded into the layer before it for C, Core ML and TFLite; those steps are \
        checked against the model before anything is written. A layer a format cannot express is \
        refused, naming the layer; an existing file is replaced atomically.
        """)
    @Argument(help: "Model file (.safetensors from distill train or distill kd), or a run folder (its best.safetensors).", transform: RunFolder.modelFile) var model: String
    @Option(help: "ONNX file to write.") var onnx: String?
    @Option(name: .customLong("c"), help: "C source file to write (its header goes beside it, same name, .h).") var cSource: String?
    @Option(name: .customLong("coreml"), help: "Core ML model file to write (.mlmodel).") var coreML: String?
    @Option(help: "LiteRT (TFLite) file to write (.tflite).") var tflite: String?
    @Option(help: "ONNX opset (\(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound)).") var opset = 17
    @Option(help: "Class names, comma-separated, one per output (C, Core ML, TFLite; default 0, 1, ...).") var classNames: String?
    @Option(help: "int8 students with --tflite: store the logits as int8 (default int16), their range set by this data's training rows (fashion-mnist, mnist, a .csv with --label, or .npz).") var calibration: String?
    @Option(help: "Label column of a --calibration .csv file.") var label: String?
    @Option(help: "Calibration rows drawn from the training split (with --calibration; default 1000).") var samples: Int?
    @Flag(help: "int8 students with --tflite: run the last layer in float32 (logits as DistillKit's int8 path gives them; not with --calibration).") var floatLogits = false
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        let targets = [onnx, cSource, coreML, tflite].compactMap { $0 }
        guard targets.count == 1 else {
            throw ValidationError("give one of --onnx FILE, --c FILE, --coreml FILE, --tflite FILE (\(targets.count) given)")
        }
        guard ONNXExport.supportedOpsets.contains(opset) else {
            throw ValidationError("--opset \(opset): DistillKit writes opsets \(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound)")
        }
        if let classNames, onnx != nil { throw ValidationError("--class-names '\(classNames.prefix(40))' is for --c, --coreml and --tflite") }
        if let cSource, !cSource.lowercased().hasSuffix(".c") {
            throw ValidationError("--c \(cSource.prefix(80)): name a .c file (its header is written beside it, same name, .h)")
        }
        // A file named for another format would be read as that format (and refused) later.
        let formats = ["onnx": "--onnx", "c": "--c", "h": "--c", "mlmodel": "--coreml", "mlpackage": "--coreml", "tflite": "--tflite",
                       "safetensors": "a model (distill train, kd, quantize)", "npy": "teacher outputs", "csv": "data"]
        for (option, path) in [("--onnx", onnx), ("--coreml", coreML), ("--tflite", tflite)] {
            guard let path, let kind = formats[URL(fileURLWithPath: path).pathExtension.lowercased()],
                  kind != option || path.lowercased().hasSuffix(".mlpackage") else { continue }
            let hint = option == "--coreml" && path.lowercased().hasSuffix(".mlpackage") ? " (DistillKit writes a .mlmodel file; .mlpackage is a folder format)" : ""
            throw ValidationError("\(option) \(path.prefix(80)): that name is for \(kind == option ? "a Core ML package" : kind); name a \(["--onnx": ".onnx", "--coreml": ".mlmodel", "--tflite": ".tflite"][option]!) file\(hint)")
        }
        if let calibration, tflite == nil { throw ValidationError("--calibration \(calibration.prefix(80)) is for int8 students exported with --tflite") }
        if floatLogits, tflite == nil { throw ValidationError("--float-logits is for int8 students exported with --tflite") }
        if calibration == nil, let given = samples.map({ _ in "--samples" }) ?? label.map({ _ in "--label" }) {
            throw ValidationError("\(given) is for --calibration DATA (int8 students exported with --tflite)")
        }
        if let samples, !(1...StudentQuantization.maxSamples).contains(samples) {
            throw ValidationError("--samples \(samples): must be in 1...\(StudentQuantization.maxSamples)")
        }
    }

    func run() throws {
        try BLAS.ensureLoaded()
        let modelURL = URL(fileURLWithPath: model)
        let names = classNames.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
        let report: StudentExport.ShippedReport
        if try exportTextStudent(model: model, onnx: onnx, opset: opset, json: json) { return }
        if let onnx {
            let report = try StudentExport.onnx(modelAt: modelURL, to: URL(fileURLWithPath: onnx), opset: opset)
            if json { printJSON(report.json) } else { print(report.text) }
            return
        } else if let cSource {
            report = try StudentExport.c(modelAt: modelURL, to: URL(fileURLWithPath: cSource), classNames: names)
        } else if let coreML {
            report = try StudentExport.coreML(modelAt: modelURL, to: URL(fileURLWithPath: coreML), classNames: names)
        } else {
            report = try StudentExport.tflite(modelAt: modelURL, to: URL(fileURLWithPath: tflite!), classNames: names,
                                              calibration: calibration.map { StudentExport.CalibrationData(data: $0, labelColumn: label, samples: samples ?? 1000) },
                                              floatLogits: floatLogits)
        }
        if json { printJSON(report.json) } else { print(report.text) }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: inputs, outputs, operators, parameters, bytes and FLOPs (ONNX, TFLite, Core ML or DistillKit).")
    @Argument(help: "Model file: .onnx, .tflite, .mlmodel, .safetensors from distill train or distill kd, or a run folder (its best.safetensors).", transform: RunFolder.modelFile) var model: String
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func run() throws {
        try BLAS.ensureLoaded()
        let url = URL(fileURLWithPath: model)
        let summary: InspectionSummary
        var quantized: [TFLiteSummary.QuantizedTensor] = []
        var coreMLWeights: [CoreMLSummary.QuantizedWeights] = []
        switch url.pathExtension.lowercased() {
        case "onnx": summary = ModelInspector.summary(try ONNXModel(contentsOf: url))
        case "tflite":
            summary = try StudentExport.summary(ofTFLite: url)
            quantized = try StudentExport.quantization(ofTFLite: url)
        case "mlmodel":
            summary = try StudentExport.summary(ofCoreML: url)
            coreMLWeights = try StudentExport.quantization(ofCoreML: url)
        case "safetensors":
            if let text = try TextStudentExport.summary(modelAt: url) {
                summary = text
            } else {
                let (net, info) = try SavedModel.load(url)
                summary = ModelInspector.summary(net, spec: info.spec, inputShape: info.inputShape, source: url.path)
            }
        case "c", "h":
            throw ValidationError("\(model): C source from distill export --c; it is compiled, not inspected (its header lists the sizes: STUDENT_INPUT_SIZE, STUDENT_OUTPUT_SIZE)")
        default:
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: model, isDirectory: &isFolder), isFolder.boolValue {
                _ = try SavedModel.load(url)  // says what a folder given as a model lacks
            }
            throw ValidationError("\(model): inspect reads .onnx, .tflite, .mlmodel and .safetensors models")
        }
        // Quantized files list their parameters: an int8 TFLite file every tensor's (activations
        // first), an int8 Core ML file its 8-bit weight blobs, layer by layer.
        let listing: (heading: String, entries: [(json: [String: Any], text: String)])?
        if !coreMLWeights.isEmpty {
            listing = ("quantized weights (real = scale · u + bias, u the stored unsigned integer), \(coreMLWeights.count) blobs:",
                       coreMLWeights.map { ($0.json, $0.description) })
        } else if !quantized.isEmpty {
            let ordered = quantized.filter { !$0.isConstant } + quantized.filter(\.isConstant)
            listing = ("quantization (real = scale · (q − zero point)), \(ordered.count) tensors:", ordered.map { ($0.json, $0.description) })
        } else {
            listing = nil
        }
        if json {
            var j = summary.json
            if let listing { j["quantization"] = listing.entries.map(\.json) }
            printJSON(j)
        } else {
            print(summary.text)
            if let listing {
                print(listing.heading)
                for entry in listing.entries { print("  " + entry.text) }
            }
        }
    }
}

extension Eval {
    /// `distill eval model.onnx`: the ONNX model is evaluated as a classifier on the test split.
    func runONNX(inputMean: [Float]?, inputStd: [Float]?, output: ONNXOutputKind?, outputName: String?) throws {
        try BLAS.ensureLoaded()
        let onnxTeacher = try ONNXTeacher(url: URL(fileURLWithPath: model), inputMean: inputMean, inputStd: inputStd, outputKind: output, outputName: outputName)
        let test = try testData()
        try DataSource.requireFinite(test, name: "\(data) (test split)")
        try checkTeacher(onnxTeacher, path: model, exampleShape: test.exampleShape, numClasses: test.numClasses, classNames: test.classNames)
        let module = onnxTeacher.asModule(classes: test.numClasses)
        let other = try teacher.map { path in
            let loaded = try loadTeacher(path, options: teacherReading.options)
            try checkTeacher(loaded, path: path, exampleShape: test.exampleShape, numClasses: test.numClasses, classNames: test.classNames)
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
