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

/// Runs an experiment end to end: data, teacher(s), student, training, the summary table.
public enum ExperimentRunner {
    /// Mixed into the run's seed for its validation split, so that the split is not the batch order's first rows.
    static let validationSeedSalt: UInt64 = 0x7A11_DA7E
    public struct Result {
        public var rows: [ModelSummary]
        public var training: TrainingSummary<EvaluationReport>
        public var runFolder: RunFolder?
        /// The trained student. On a table (a `.csv`) it takes standardised rows: `info` holds the
        /// statistics (`Tabular.statistics(of: info, source:)`, then `LabeledDataset.standardized(with:)`),
        /// as the saved model file does.
        public var student: Sequential
        /// The student's description, as its model file holds it (spec, input shape, classes and,
        /// for tables, the input standardisation).
        public var info: SavedModel
    }

    /// `world`: the ranks the run is split across; nil: `Distributed.world` (every rank mpirun
    /// started; one process otherwise). A sweep passes `Distributed.oneProcess` to each run.
    /// `heldOutName` names the preloaded held-out rows in the epoch lines and `metrics.jsonl`
    /// ("validation" when a caller such as `distill fit` preloads a validation split as them).
    public static func run(_ experiment: Experiment, resume: Bool = false,
                           preloaded: (train: LabeledDataset, test: LabeledDataset)? = nil, heldOutName: String = "test",
                           world: Distributed? = nil) throws -> Result {
        var experiment = experiment
        experiment.teachers = experiment.teachers.map(RunFolder.modelFile)
        try experiment.validate()
        // A resumed run continues the one its config.json records: other settings would be
        // silently mixed into it. More epochs extend it (distill fit's rungs), and are recorded.
        var extendsRecordedEpochs = false
        if resume {
            guard let output = experiment.output else { throw TensorError("resume: the experiment names no run folder (output) to resume") }
            let recorded = try RunFolder(URL(fileURLWithPath: output)).readExperiment()
            let changed = experiment.settingsDiffering(from: recorded).filter { !$0.hasPrefix("epochs:") }
            guard changed.isEmpty else {
                throw TensorError("--resume \(output) continues the run recorded in its config.json; these settings differ from it: \(changed.prefix(6).joined(separator: "; "))\(changed.count > 6 ? "; and \(changed.count - 6) more" : "")")
            }
            extendsRecordedEpochs = recorded.options.epochs != experiment.options.epochs
        }
        // Under mpirun: rank 0 alone prints and writes the run folder (Trainer.swift, data parallel).
        let world = try world ?? Distributed.world
        if !world.isMain { experiment.options.quiet = true }
        try BLAS.ensureLoaded()
        let quiet = experiment.options.quiet
        var (train, test) = try preloaded ?? DataSource.load(experiment.data, testData: experiment.testData,
                                                              labelColumn: experiment.labelColumn, seed: experiment.options.seed)
        let fileRows = TeacherOutputs.trainingFileRows(experiment, loadedTrain: train.count, loadedTest: test.count, preloaded: preloaded != nil)
        if let limit = experiment.trainLimit { train = train.prefix(limit) }
        guard train.count > 0 else { throw TensorError("\(experiment.data): no training rows\(experiment.trainLimit != nil ? " after --train-limit" : ""); a run needs at least one") }
        try DataSource.requireFinite(test, name: "\(experiment.testData ?? experiment.data) (test split)")
        guard test.count > 0 else { throw TensorError("\(experiment.testData ?? experiment.data): the test set is empty; a run needs test rows to report accuracy") }
        try experiment.options.validate(exampleShape: train.exampleShape)
        guard test.exampleShape == train.exampleShape, test.numClasses == train.numClasses else {
            throw TensorError("\(experiment.testData ?? experiment.data): the test split's examples are \(test.exampleShape) with \(test.numClasses) classes, the training split's \(train.exampleShape) with \(train.numClasses); they must match")
        }
        // A validation split, held out before anything learns from the training rows (sizes,
        // standardisation, cached teacher outputs).
        let loadedTrain = train
        var validation: LabeledDataset? = nil, keptRows: [Int]? = nil
        if let share = experiment.validation {
            let rows = LabeledDataset.splitRows(count: train.count, validationFraction: share, seed: experiment.options.seed ^ validationSeedSalt)
            guard !rows.train.isEmpty, !rows.validation.isEmpty else {
                throw TensorError("\(Experiment.setting("validation")) \(share) of \(train.count) training rows leaves \(rows.train.count) to train on and \(rows.validation.count) to validate on; both need at least one")
            }
            validation = try train.subset(rows.validation)
            train = try train.subset(rows.train)
            keptRows = rows.train
            if !quiet { log("validation: \(rows.validation.count) of the \(loadedTrain.count) training rows held out to score each epoch and pick best.safetensors; the test set is scored once, at the end") }
        }
        if let chosen = experiment.options.chooseSizes(trainingRows: train.count) {
            try experiment.validate()  // warm-up epochs are checked against the chosen epochs
            if !quiet { log(chosen) }
        }
        let objective = try DistillationObjective(terms: experiment.losses)
        // Cached teacher outputs: read and checked here, before anything is built or trained.
        var teachers: [Teacher] = []
        var cachedOutputs = false
        if experiment.teacherOutputs != nil {
            let loaded = try TeacherOutputs.teacher(for: experiment, train: loadedTrain, fileRows: fileRows, objective: objective, keeping: keptRows)
            teachers = [loaded.teacher]
            train = loaded.train
            cachedOutputs = true
        }
        // Tabular data: standardise with the training split's statistics, kept in the saved model;
        // teachers are given (and scored on) the rows as the user gave them.
        var extra: [String: String] = [:]
        let rawTrain = train, rawTest = test
        let statistics = try Tabular.standardization(for: experiment.data, train: train)
        if let statistics {
            train = try train.standardized(with: statistics)
            test = try test.standardized(with: statistics)
            validation = try validation?.standardized(with: statistics)
            extra[Tabular.statisticsKey] = try Tabular.encode(statistics)
        }
        if !cachedOutputs {
            teachers = try experiment.teachers.map { try loadTeacher($0, options: experiment.onnxTeacher, standardizedWith: statistics, rawRows: rawTrain) }
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
            try checkTeacher(teacher, path: experiment.teachers[i], exampleShape: train.exampleShape, numClasses: train.numClasses, classNames: train.classNames)
        }
        let info = SavedModel(spec: experiment.student, inputShape: train.exampleShape, numClasses: train.numClasses, extra: extra)
        try world.requireSameConfiguration(String(decoding: try JSONSerialization.data(withJSONObject: experiment.json, options: [.sortedKeys]), as: UTF8.self)
                                           + " resume=\(resume) rows=\(train.count)/\(test.count)",
                                           data: world.isDistributed ? train.fingerprint(continuing: test.fingerprint()) : 0)

        let run = experiment.output.map { RunFolder(URL(fileURLWithPath: $0)) }
        if let run, world.isMain {
            let teacherFiles = experiment.teachers + [experiment.teacherOutputs].compactMap { $0 }
            if resume { try run.checkTeachers(teacherFiles) }
            try run.create(replacingEarlierRun: !resume)
            if !resume || extendsRecordedEpochs { try run.writeJSON(experiment.json, to: run.config) }
            if !resume { try run.recordTeachers(teacherFiles) }
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
            if !quiet { log("computing the teacher's logits for \(train.count) training samples once (no augmentation: offline distillation)\(world.isDistributed ? ", shared out among \(world.size) ranks" : "")") }
            teachers = try teachers.map { try CachedTeacher.precomputed(from: $0, inputs: train, world: world) }
        }
        let trainer = try Trainer(student: student, studentInfo: info, teachers: teachers, objective: objective,
                                  options: options, train: train, test: validation ?? test, run: run)
        trainer.world = world
        trainer.heldOutName = validation != nil ? "validation" : heldOutName
        var summary = try trainer.fit(resume: resume)
        // With a validation split: the last epoch's student and the best one scored on the test set, once.
        var bestModelTest: EvaluationReport? = nil
        if validation != nil {
            let validationSummary = summary
            summary.test = try evaluate(student, on: test, world: world)
            if let run, world.isMain {
                bestModelTest = try evaluate(try SavedModel.load(run.bestModel).model, on: test)
                if !quiet {
                    log(String(format: "test accuracy %.2f%% after the last epoch (validation %.2f%%); best.safetensors (validation %.2f%%): test accuracy %.2f%%",
                               summary.test.accuracy * 100, validationSummary.test.accuracy * 100, validationSummary.bestScore * 100, bestModelTest!.accuracy * 100))
                }
            }
        }

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
            let accuracy = try evaluate(model, on: view, world: world).accuracy
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
        if let run, world.isMain {
            var summaryJSON: [String: Any] = ["models": rows.map(\.json), "test": summary.test.json, "samples_per_second": summary.samplesPerSecond]
            if let validation {  // best.safetensors was picked on the validation rows
                summaryJSON["validation"] = ["rows": validation.count, "best_accuracy": summary.bestScore,
                                             "best_model_test_accuracy": bestModelTest?.accuracy ?? NSNull()] as [String: Any]
            } else {  // best.safetensors was picked on the test set
                summaryJSON["best_test_accuracy"] = summary.bestScore
            }
            let onnxTeachers = originalTeachers.compactMap { ((($0 as? StandardizingTeacher)?.base ?? $0) as? ONNXTeacher)?.outputDescription }
            if !onnxTeachers.isEmpty { summaryJSON["teacher_outputs"] = onnxTeachers }
            try run.writeJSON(summaryJSON, to: run.url.appendingPathComponent("summary.json"))
            try AtomicFile.write(Data((summaryTable(rows) + "\n").utf8), to: run.url.appendingPathComponent("summary.txt"))
            try writeReport(run, experiment: experiment, rows: rows, test: summary.test, train: train, classNames: test.classNames,
                            teacher: teachers.first, teacherInLoop: objective.needsTeacher && !(teachers.first is CachedTeacher))
        }
        return Result(rows: rows, training: summary, runFolder: run, student: student, info: info)
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

extension LabeledDataset {
    /// FNV-1a (`Distributed.fnv1a(words:)`) of every value and label, continuing from `hash`:
    /// under mpirun the ranks compare it (`requireSameConfiguration`), so that a host whose copy
    /// of the data differs is named before anything is trained. Reads about 4 MB of rows at a time.
    func fingerprint(continuing hash: UInt64 = Distributed.fnvOffset) -> UInt64 {
        var h = hash
        let block = max(1, (1 << 20) / max(1, exampleSize))
        var values = [Float](repeating: 0, count: min(block, count) * exampleSize)
        values.withUnsafeMutableBufferPointer { buffer in
            guard !buffer.isEmpty else { return }  // no rows, or rows of no values
            for start in stride(from: 0, to: count, by: block) {
                let rows = start..<min(start + block, count)
                copyRows(rows, into: buffer.baseAddress!)
                h = Distributed.fnv1a(words: UnsafeRawBufferPointer(start: buffer.baseAddress, count: rows.count * exampleSize * 4), continuing: h)
            }
        }
        return labels.withUnsafeBytes { Distributed.fnv1a(words: $0, continuing: h) }
    }
}
