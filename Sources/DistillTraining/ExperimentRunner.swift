import DistillData
import DistillNN
import DistillTensor
import Foundation

/// One model's line in a run's summary table.
public struct ModelSummary: Sendable {
    public var role: String
    public var spec: String
    public var parameters: Int
    public var bytes: Int
    public var accuracy: Double
    public var latencyMicroseconds: Double

    public init(role: String, spec: String, parameters: Int, bytes: Int, accuracy: Double, latencyMicroseconds: Double) {
        self.role = role; self.spec = spec; self.parameters = parameters; self.bytes = bytes
        self.accuracy = accuracy; self.latencyMicroseconds = latencyMicroseconds
    }

    public var json: [String: Any] {
        ["role": role, "spec": spec, "params": parameters, "bytes": bytes, "accuracy": accuracy, "latency_us": latencyMicroseconds]
    }
}

/// Renders summaries as an aligned text table.
public func summaryTable(_ rows: [ModelSummary]) -> String {
    func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) }
    var lines = [pad("model", 12) + pad("spec", 18) + "   params      bytes  test acc  batch-1 latency"]
    for r in rows {
        lines.append(pad(r.role, 12) + pad(r.spec, 18) + String(format: " %8d %10d   %6.2f%%  %9.1f µs",
                                                                  r.parameters, r.bytes, r.accuracy * 100, r.latencyMicroseconds))
    }
    return lines.joined(separator: "\n")
}

/// Loads a teacher from a file: a DistillKit model (.safetensors) or an ONNX model (.onnx);
/// `options` say how to read an ONNX teacher (input normalisation, output kind); DistillKit models
/// carry their own preprocessing and give logits.
public func loadTeacher(_ path: String, options: ONNXTeacherOptions = .init()) throws -> Teacher {
    let url = URL(fileURLWithPath: path)
    guard FileManager.default.fileExists(atPath: path) else { throw TensorError("teacher file \(path) does not exist") }
    try options.validate()
    switch url.pathExtension.lowercased() {
    case "safetensors":
        guard !options.isSet else {
            throw TensorError("\(path): --teacher-input-mean/--teacher-input-std/--teacher-output are for ONNX teachers; a DistillKit model carries its own preprocessing and gives logits")
        }
        let (model, info) = try SavedModel.load(url)
        _ = try Tabular.statistics(of: info, source: path)  // validated even where they are not used
        return ModuleTeacher(model, name: "\(info.spec) (\(url.lastPathComponent))")
    case "onnx":
        return try ONNXTeacher(url: url, inputMean: options.mean, inputStd: options.std, outputKind: options.output)
    default:
        throw TensorError("\(path): unsupported teacher format '.\(url.pathExtension)'; DistillKit reads .safetensors and .onnx models")
    }
}

/// Throws unless a teacher model takes examples of `exampleShape` and gives `numClasses` outputs
/// (any number when nil), so that a teacher that does not fit the data is an error naming its file
/// before anything runs.
public func checkTeacher(_ teacher: Teacher, path: String, exampleShape: [Int], numClasses: Int?) throws {
    let base = (teacher as? StandardizingTeacher)?.base ?? teacher
    if let module = (base as? ModuleTeacher)?.model {
        let output = try ModelShapes.outputShape(of: module, path: "", input: exampleShape, orThrowFor: path)
        guard output.count == 1, numClasses.map({ output == [$0] }) ?? true else {
            throw TensorError("\(path): the teacher gives outputs of shape \(output) per example; the data has \(numClasses.map(String.init) ?? "?") classes")
        }
    } else if let onnx = base as? ONNXTeacher {
        try onnx.checkExampleShape(exampleShape)
    }
}

/// Prints a loud warning when `teacher` scores near chance on the first labelled rows of `data`:
/// a teacher fed other inputs than it was trained on (no normalisation, BGR instead of RGB, 0-1
/// instead of 0-255) still runs, and would silently teach noise. Returns the accuracy measured.
@discardableResult
public func warnIfNearChance(_ teacher: Teacher, path: String, on data: LabeledDataset, rows: Int = 512) throws -> Double? {
    guard !data.labels.isEmpty else { return nil }
    let labelled = (0..<data.count).lazy.filter { data.labels[$0] >= 0 }.prefix(rows)
    guard labelled.count >= 20, data.numClasses >= 2 else { return nil }
    let indices = Array(labelled)
    let predictions = try teacher.logits(data.rows(indices), indices: indices).argmaxLastAxis()
    let labels = indices.map { data.labels[$0] }
    let accuracy = Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(indices.count)
    var counts = [Int](repeating: 0, count: data.numClasses)
    for l in labels where l < counts.count { counts[l] += 1 }
    let chance = Double(counts.max() ?? 0) / Double(indices.count)  // always guessing the commonest class
    if accuracy < chance + 0.3 * (1 - chance) {
        log(String(format: "WARNING: the teacher %@ scores %.1f%% on the first %d labelled training rows, near chance (%.1f%%). Is it fed what it was trained on? Check its input normalisation (--teacher-input-mean/--teacher-input-std, e.g. ImageNet's 0.485,0.456,0.406 and 0.229,0.224,0.225), the channel order (RGB or BGR) and the scale (DistillKit feeds images in [0, 1]; a teacher trained on 0-255 needs --teacher-input-std 0.00392157).",
                   path, accuracy * 100, indices.count, chance * 100))
    }
    return accuracy
}

/// Runs an experiment end to end: data, teacher(s), student, training, the summary table.
public enum ExperimentRunner {
    public struct Result {
        public var rows: [ModelSummary]
        public var training: TrainingSummary
        public var runFolder: RunFolder?
        public var student: Sequential
    }

    public static func run(_ experiment: Experiment, resume: Bool = false,
                           preloaded: (train: LabeledDataset, test: LabeledDataset)? = nil) throws -> Result {
        var experiment = experiment
        experiment.teachers = experiment.teachers.map(RunFolder.modelFile)
        try experiment.validate()
        try BLAS.ensureLoaded()
        let quiet = experiment.options.quiet
        var (train, test) = try preloaded ?? DataSource.load(experiment.data, testData: experiment.testData,
                                                              labelColumn: experiment.labelColumn, seed: experiment.options.seed)
        let fileRows = TeacherOutputs.trainingFileRows(experiment, loadedTrain: train.count, loadedTest: test.count, preloaded: preloaded != nil)
        if let limit = experiment.trainLimit { train = train.prefix(limit) }
        guard train.count > 0 else { throw TensorError("\(experiment.data): no training rows\(experiment.trainLimit != nil ? " after --train-limit" : ""); a run needs at least one") }
        try DataSource.requireFinite(test, name: "\(experiment.testData ?? experiment.data) (test split)")
        guard test.count > 0 else { throw TensorError("\(experiment.testData ?? experiment.data): the test set is empty; a run needs test rows to report accuracy") }
        if let chosen = experiment.options.chooseSizes(trainingRows: train.count) {
            try experiment.validate()  // warm-up epochs are checked against the chosen epochs
            if !quiet { log(chosen) }
        }
        let objective = try DistillationObjective(terms: experiment.losses)
        var teachers = try experiment.teachers.map { try loadTeacher($0, options: experiment.onnxTeacher) }
        // Cached teacher outputs: read and checked here, before anything is built or trained.
        var cachedOutputs = false
        if experiment.teacherOutputs != nil {
            let loaded = try TeacherOutputs.teacher(for: experiment, train: train, fileRows: fileRows, objective: objective)
            teachers = [loaded.teacher]
            train = loaded.train
            cachedOutputs = true
        }
        // Tabular data: standardise with the training split's statistics, kept in the saved model.
        var extra: [String: String] = [:]
        let rawTest = test  // teachers are scored on the rows as the user gave them
        if let statistics = try Tabular.standardization(for: experiment.data, train: train) {
            let rawTrain = train
            teachers = try teachers.enumerated().map { i, t in
                try cachedOutputs ? t : Tabular.teacher(t, path: experiment.teachers[i], inputStatistics: statistics, rawRows: rawTrain)
            }
            train = try train.standardized(with: statistics)
            test = try test.standardized(with: statistics)
            extra[Tabular.statisticsKey] = try Tabular.encode(statistics)
        }
        var options = experiment.options
        options.labelLimit = experiment.labelLimit
        options.mixup = experiment.mixup
        let student: Sequential
        do { student = try ModelZoo.build(experiment.student, inputShape: train.exampleShape, numClasses: train.numClasses, seed: experiment.options.seed) }
        catch let error as TensorError { throw TensorError("\(Experiment.setting("student")): \(error.message)") }
        try ModelShapes.check(student, inputShape: train.exampleShape, numClasses: train.numClasses,
                              what: "student '\(experiment.student.prefix(80))' on \(experiment.data) (examples \(train.exampleShape), \(train.numClasses) classes)")
        for (i, teacher) in teachers.enumerated() where i < experiment.teachers.count {
            try checkTeacher(teacher, path: experiment.teachers[i], exampleShape: train.exampleShape, numClasses: train.numClasses)
        }
        let info = SavedModel(spec: experiment.student, inputShape: train.exampleShape, numClasses: train.numClasses, extra: extra)

        let run = experiment.output.map { RunFolder(URL(fileURLWithPath: $0)) }
        if let run {
            try run.create()
            if !resume { try run.writeJSON(experiment.json, to: run.config) }
        }
        for (i, teacher) in teachers.enumerated() where !cachedOutputs && i < experiment.teachers.count {
            try warnIfNearChance(teacher, path: experiment.teachers[i], on: train)
            if !quiet, let onnx = ((teacher as? StandardizingTeacher)?.base ?? teacher) as? ONNXTeacher {
                log("teacher \(experiment.teachers[i]): \(onnx.outputDescription)")
            }
        }
        // Offline distillation: without augmentation or feature losses the teacher's logits never
        // change, so they are computed once instead of every epoch.
        let originalTeachers = teachers
        if objective.needsTeacher && experiment.options.augmentation == nil && objective.teacherFeatureNames.isEmpty && !cachedOutputs && experiment.mixup == nil {
            if !quiet { log("computing the teacher's logits for \(train.count) training samples once (no augmentation: offline distillation)") }
            teachers = try teachers.map { try CachedTeacher.precomputed(from: $0, inputs: train) }
        }
        let trainer = try Trainer(student: student, studentInfo: info, teachers: teachers, objective: objective,
                                  options: options, train: train, test: test, run: run)
        let summary = try trainer.fit(resume: resume)

        var rows: [ModelSummary] = []
        for (i, teacher) in originalTeachers.enumerated() {
            // DistillKit and ONNX teachers are scored on the test set like the student (tabular
            // ones on raw rows, as they were trained); cached outputs have no model to score.
            let base = (teacher as? StandardizingTeacher)?.base ?? teacher
            let model: Module? = (base as? ModuleTeacher)?.model ?? (base as? ONNXTeacher)?.asModule(classes: test.numClasses)
            guard let model else { continue }
            var view = test
            if let standardizing = teacher as? StandardizingTeacher {  // the raw rows, in the teacher's own standardisation
                view = try standardizing.own.map { try rawTest.standardized(with: $0) } ?? rawTest
            }
            let accuracy = try evaluate(model, on: view).accuracy
            let latency = batchOneLatencyMicroseconds(model, exampleShape: view.exampleShape)
            if let failure = (model as? ONNXTeacherModule)?.failure { throw failure }
            rows.append(ModelSummary(role: originalTeachers.count > 1 ? "teacher \(i + 1)" : "teacher",
                                     spec: base is ONNXTeacher && i < experiment.teachers.count ? URL(fileURLWithPath: experiment.teachers[i]).lastPathComponent
                                         : base.name.components(separatedBy: " ").first ?? base.name,
                                     parameters: base.parameterCount, bytes: base.bytes, accuracy: accuracy, latencyMicroseconds: latency))
        }
        rows.append(ModelSummary(role: objective.needsTeacher ? "distilled" : "trained", spec: experiment.student,
                                 parameters: student.parameterCount, bytes: student.stateBytes, accuracy: summary.test.accuracy,
                                 latencyMicroseconds: batchOneLatencyMicroseconds(student, exampleShape: train.exampleShape)))
        if let run {
            var summaryJSON: [String: Any] = ["models": rows.map(\.json), "test": summary.test.json, "best_test_accuracy": summary.bestTestAccuracy,
                                              "samples_per_second": summary.samplesPerSecond]
            let onnxTeachers = originalTeachers.compactMap { ((($0 as? StandardizingTeacher)?.base ?? $0) as? ONNXTeacher)?.outputDescription }
            if !onnxTeachers.isEmpty { summaryJSON["teacher_outputs"] = onnxTeachers }
            try run.writeJSON(summaryJSON, to: run.url.appendingPathComponent("summary.json"))
            try AtomicFile.write(Data((summaryTable(rows) + "\n").utf8), to: run.url.appendingPathComponent("summary.txt"))
            try writeReport(run, experiment: experiment, rows: rows, test: summary.test, train: train, classNames: test.classNames,
                            teacher: teachers.first, teacherInLoop: objective.needsTeacher && !(teachers.first is CachedTeacher))
        }
        return Result(rows: rows, training: summary, runFolder: run, student: student)
    }

    /// `report.html`: the run's summary with the transfer-set report, in the teacher's view when
    /// its logits for the training rows are at hand (computed once, or read from a file).
    static func writeReport(_ run: RunFolder, experiment: Experiment, rows: [ModelSummary], test: EvaluationReport,
                            train: LabeledDataset, classNames: [String], teacher: Teacher?, teacherInLoop: Bool) throws {
        var probabilities: Tensor? = nil
        var note: String? = nil
        if let cached = teacher as? CachedTeacher, cached.logitTable.rank == 2, cached.logitTable.shape[0] == train.count {
            probabilities = withNoGrad { cached.logitTable.softmax(axis: 1) }
        } else if teacherInLoop {
            note = "The teacher ran inside the training loop (on augmented, mixed or feature inputs), so this report shows the data without its view; `distill data-report --data \(experiment.data) --teacher T` adds it."
        }
        let transfer = try DataReport(train, teacherProbabilities: probabilities)
        let role = rows.last?.role ?? "trained"
        let report = RunReport(title: "\(role) \(experiment.student) on \(experiment.data)", models: rows, metrics: run.readMetrics(),
                               test: test, classNames: classNames, transfer: transfer, transferNote: note, configuration: experiment.json)
        try AtomicFile.write(Data(report.html.utf8), to: run.report)
    }
}
