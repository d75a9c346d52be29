import ArgumentParser
import DistillData
import DistillNN
import DistillTensor
import DistillTraining
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model with cross-entropy: a teacher, or a student from scratch as the baseline.")
    @Option(help: "Model spec: mlp:IN-...-OUT, cnn:A-B[-fcH] or a preset (\(ModelZoo.presets.joined(separator: ", "))).") var model = "cnn-small"
    @OptionGroup var flags: TrainingFlags

    func run() throws {
        var e = Experiment()
        e.student = try Experiment.resolveModelSpec(model)
        e.losses = [LossTerm(.ce)]
        flags.apply(to: &e)
        try runAndReport(e, flags: flags)
    }
}

/// The distillation loss: one method with its temperature and weight α, plus cross-entropy at
/// 1 − α (Hinton's recipe), for `kd`, `sweep` and `fit`.
struct DistillationFlags: ParsableArguments {
    @Option(help: "Distillation method.") var method: LossTerm.Method = .kd
    @Option(help: "Temperature T (default: \(Int(LossTerm.defaultKDTemperature)) for kd, 4 for dkd, 1 for dist).") var temperature: Float?
    @Option(help: "Weight α of the distillation term; the cross-entropy gets 1 − α.") var alpha: Float = LossTerm.defaultAlpha

    func validate() throws {
        guard method != .ce else { throw ValidationError("--method ce is plain training: use `distill train`") }
        guard alpha >= 0 && alpha <= 1 else { throw ValidationError("--alpha \(alpha): the weight of the distillation term must be in [0, 1]") }
        if let temperature, !(temperature > 0 && temperature <= LossTerm.maxTemperature) {
            throw ValidationError("--temperature \(temperature): must be in (0, \(Int(LossTerm.maxTemperature))]")
        }
    }

    /// Sweep and fit compare students of different shapes, so feature methods (which match layers) do not apply.
    func requireLogitMethod() throws {
        guard !method.usesFeatures else { throw ValidationError("--method \(method.rawValue) matches layers, which differ from student to student; sweep and fit take logit methods (kd, dkd, dist)") }
    }

    /// The loss terms; `labelFree` drops the cross-entropy (α = 1).
    func losses(labelFree: Bool = false, standardize: Bool = false, studentLayers: [String] = [], teacherLayers: [String] = []) throws -> [LossTerm] {
        if labelFree && method == .dkd {
            throw ValidationError("--label-free: dkd needs the labels (it splits each row's target class from the others); use kd or dist without labels")
        }
        var terms = LossTerm.recipe(method, alpha: alpha, temperature: temperature, labelled: !labelFree)
        terms[0].standardize = standardize
        terms[0].studentLayers = studentLayers
        terms[0].teacherLayers = teacherLayers
        try usage { try terms[0].validate() }
        return terms
    }
}

struct KD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kd",
        abstract: "Distill a teacher into a student.",
        discussion: """
        Methods: \(LossTerm.Method.allValueStrings.joined(separator: ", ")). `--method kd` is Hinton's
        α·T²·KL(p_t‖p_s) + (1−α)·CE. Combine methods with weights in a config file (`distill run`).
        """)
    @Option(help: "Teacher model file (.safetensors from distill train). Repeat for several teachers (averaged).") var teacher: [String] = []
    @Option(help: "Student model spec.") var student = "mlp:784-64-10"
    @OptionGroup var distillation: DistillationFlags
    @Flag(help: "Logit standardisation (kd, dkd).") var standardize = false
    @Option(help: "Student layer for feature methods (dotted name, e.g. 2).") var studentLayer: [String] = []
    @Option(help: "Teacher layer for feature methods (dotted name, e.g. 5).") var teacherLayer: [String] = []
    @Flag(help: "Distill without labels: no cross-entropy term (α = 1).") var labelFree = false
    @OptionGroup var cachedTeacher: TeacherOutputsFlags
    @Option(help: "Keep labels for the first N training rows only; the rest is transfer data labelled by the teacher (CE on labelled rows, KD on all).") var labelLimit: Int?
    @Option(help: "Mixup α: add as many mixed inputs (λ ~ Beta(α, α)) to each batch, labelled by the teacher (needs --teacher).") var mixup: Float?
    @OptionGroup var teacherReading: ONNXTeacherFlags
    @OptionGroup var flags: TrainingFlags

    func run() throws {
        guard !teacher.isEmpty || cachedTeacher.teacherOutputs != nil || flags.resume != nil else { throw ValidationError("--teacher (a model from `distill train`) or --teacher-outputs (a file of cached outputs) is required") }
        var e = Experiment()
        e.teachers = teacher
        cachedTeacher.apply(to: &e)
        e.labelLimit = labelLimit
        e.mixup = mixup
        e.onnxTeacher = try teacherReading.options
        e.student = try Experiment.resolveModelSpec(student)
        e.losses = try distillation.losses(labelFree: labelFree, standardize: standardize, studentLayers: studentLayer, teacherLayers: teacherLayer)
        flags.apply(to: &e)
        try runAndReport(e, flags: flags)
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a whole experiment from a YAML file (see examples/).")
    @Argument(help: "Experiment file.") var experiment: String
    @Option(help: "Continue the interrupted run in this folder.") var resume: String?
    @Option(help: "Override the file's seed.") var seed: UInt64?
    @Option(help: "Override the file's epochs.") var epochs: Int?
    @Option(help: "Override the file's validation share (e.g. 0.1: that share of the training rows scores each epoch and picks best.safetensors).") var validation: Double?
    @Option(help: "Override the file's output folder.") var output: String?
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Flag(help: "No progress output.") var quiet = false

    func run() throws {
        var e = try Experiment.load(URL(fileURLWithPath: experiment))
        e.options.quiet = quiet
        if let seed { e.options.seed = seed }
        if let epochs { e.options.epochs = epochs }
        if let validation { e.validation = validation }
        if let output { e.output = output }
        if let resume {
            // The run continues as config.json recorded it; a file edited since would be ignored.
            let recorded = try RunFolder(URL(fileURLWithPath: resume)).readExperiment()
            let changed = e.settingsDiffering(from: recorded)
            guard changed.isEmpty else {
                throw ValidationError("--resume \(resume) continues the run recorded in its config.json, but \(experiment) with the options given now differs: \(changed.prefix(6).joined(separator: "; "))\(changed.count > 6 ? "; and \(changed.count - 6) more" : ""). Undo the change (or give the options the run was started with), or start a new run with --output")
            }
            e = recorded
            e.options.quiet = quiet
            e.output = resume
        }
        if e.output == nil { e.output = "runs/" + URL(fileURLWithPath: experiment).deletingPathExtension().lastPathComponent }
        try runExperiment(e, resume: resume != nil, source: experiment, json: json)
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model: accuracy, top-5, per-class accuracy, confusion matrix, calibration, agreement with a teacher.")
    @Argument(help: "Model file (.safetensors, or .onnx: an ONNX classifier), or a run folder (its best.safetensors); or a text model (teacher, a sentence-transformers folder or a text-kd student) with --data CORPUS.csv.", transform: RunFolder.modelFile) var model: String
    @Option(help: "Data: fashion-mnist, mnist, a .csv (with --label; every row is scored) or .npz file (its test arrays).") var data = "fashion-mnist"
    @Option(help: "Label column of a .csv file.") var label: String?
    @Option(help: "Numeric target column of a .csv file, for a regression model (`distill train --target`): RMSE, MAE and R².")
    var target: String?
    @Option(help: "Teacher to measure agreement with.", transform: RunFolder.modelFile) var teacher: String?
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Option(help: "An .onnx model trained on normalised images: mean to subtract (one value, or one per channel).") var inputMean: String?
    @Option(help: "An .onnx model trained on normalised images: standard deviation to divide by.") var inputStd: String?
    @Option(help: "What the .onnx model's output holds: logits, probs, logprobs, sigmoid or svm (as --teacher-output for a teacher). Default: what the graph says, confirmed on the first batch.")
    var modelOutput: String?
    @Option(help: "Which output of the .onnx model holds the class scores, when it has several (as --teacher-output-name for a teacher).")
    var modelOutputName: String?
    @OptionGroup var teacherReading: ONNXTeacherFlags
    @OptionGroup var text: TextEvalOptions

    func run() throws {
        if let textModel = try TextModelFile.load(model) {
            let unused = [("--label", label), ("--target", target), ("--teacher", teacher), ("--input-mean", inputMean), ("--input-std", inputStd),
                          ("--model-output", modelOutput), ("--model-output-name", modelOutputName)].filter { $0.1 != nil }.map(\.0)
            guard unused.isEmpty && !teacherReading.isSet else {
                throw ValidationError("\(model) is a text model, scored on a corpus by retrieval and sections: \((unused + (teacherReading.isSet ? ["--teacher-*"] : [])).joined(separator: ", ")) do not apply")
            }
            return try evaluateTextModel(textModel, data: data, options: text, json: json)
        }
        try refuseTextCorpus(model: model, data: data, options: text)
        if teacher == nil, teacherReading.isSet {
            throw ValidationError("--teacher-input-mean, --teacher-input-std, --teacher-output and --teacher-output-name read the --teacher model; for the model being evaluated use --input-mean, --input-std, --model-output and --model-output-name")
        }
        if FileKind(model) == .onnx {
            return try runONNX(inputMean: parseNumberList(inputMean, option: "--input-mean"), inputStd: parseNumberList(inputStd, option: "--input-std"),
                               output: modelOutput.map(ONNXTeacherOptions.outputKind), outputName: modelOutputName)
        }
        if inputMean != nil || inputStd != nil || modelOutput != nil || modelOutputName != nil {
            throw ValidationError("--input-mean, --input-std, --model-output and --model-output-name are for an .onnx model; \(model) carries its own preprocessing and gives logits")
        }
        if let target { return try runRegression(target: target) }
        let (net, info) = try SavedModel.load(URL(fileURLWithPath: model))
        guard info.extra["task"] != "regression" else {
            throw ValidationError("\(model) is a regression model (distill train --target): evaluate it with --target COLUMN")
        }
        var test = try testData()
        try DataSource.requireFinite(test, name: "\(data) (test split)")
        // A tabular model keeps the statistics it was trained with: raw rows are standardised here
        // (a teacher still gets the raw rows themselves).
        let statistics = try Tabular.statistics(of: info, source: model)
        let rawTest = test
        if let statistics { test = try test.standardized(with: statistics) }
        // The layers themselves must take the examples (a CNN takes [C, H, W], not the same count flat).
        guard test.exampleShape.reduce(1, *) == info.inputShape.reduce(1, *), (try? ModelShapes.check(net, inputShape: test.exampleShape)) != nil else {
            throw ValidationError("\(model) expects inputs of shape \(info.inputShape); \(data) has \(test.exampleShape)")
        }
        let teacherModel = try teacher.map { path in
            let loaded = try loadTeacher(path, options: teacherReading.options, standardizedWith: statistics, rawRows: rawTest)
            try checkTeacher(loaded, path: path, exampleShape: test.exampleShape, numClasses: test.numClasses, classNames: test.classNames)
            return loaded
        }
        // Under mpirun each rank scores its share of the batches; rank 0 prints the one report.
        let r = try naming(data) { try evaluate(net, on: test, teacher: teacherModel, world: try Distributed.world) }
        guard isMainRank else { return }
        let size = modelSize(net)
        if json { return printEvaluationJSON(r, parameters: size.parameters, bytes: size.bytes) }
        print(String(format: "%@: %@, %d parameters, %d bytes", model, info.spec, size.parameters, size.bytes))
        printEvaluation(r, on: test)
    }
}

extension Eval {
    /// The examples `--data` names to score: a .csv is the test data itself, every row (no
    /// validation split carved out); a dataset or .npz its test split.
    func testData() throws -> LabeledDataset {
        try DataSource.load(data, testData: FileKind(data) == .csv ? data : nil, labelColumn: label).test
    }

    /// A regression model on every row of a CSV file: raw rows in (the model standardises them
    /// with its stored statistics), errors in the target's units.
    func runRegression(target: String) throws {
        guard FileKind(data) == .csv else { throw ValidationError("--target needs a .csv file for --data, got \(data)") }
        let regression = try RegressionModel.load(model)
        let table = try CSVTable.load(URL(fileURLWithPath: data))
        let rows = try table.regression(schema: table.inferSchema(targetColumn: target))
        guard rows.features.shape[1] == regression.featureStats.mean.count else {
            throw ValidationError("\(model) was trained on \(regression.featureStats.mean.count) features; \(data) has \(rows.features.shape[1]) (\(rows.featureNames.joined(separator: ", ")))")
        }
        let report = RegressionRunner.report(try regression.predict(rows.features), rows.targets.scalars)
        if json {
            var object = report.json
            object["params"] = regression.net.parameterCount
            printJSON(object)
            return
        }
        print(String(format: "%@: %@, %d parameters; %@ (%d rows): RMSE %.4f  MAE %.4f  R² %.4f", model, regression.info.spec,
                     regression.net.parameterCount, data, report.count, report.rmse, report.mae, report.r2))
    }
}

/// The JSON form of `distill eval`: the report plus the model's size.
func printEvaluationJSON(_ r: EvaluationReport, parameters: Int, bytes: Int) {
    var object = r.json
    object["params"] = parameters
    object["bytes"] = bytes
    printJSON(object)
}

/// The text form of `distill eval` (the report owns it).
func printEvaluation(_ r: EvaluationReport, on test: LabeledDataset) {
    print(r.text(classNames: test.classNames))
}

/// `--method` values: every method but plain cross-entropy (that is `distill train`).
extension LossTerm.Method: ExpressibleByArgument {
    public static var allValueStrings: [String] { allCases.filter { $0 != .ce }.map(\.rawValue) }
}
