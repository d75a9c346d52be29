import DistillData
import DistillNN
import DistillTensor
import Foundation

/// The main job (`distill demo`): a teacher, a student trained from scratch and the same student
/// distilled from the teacher, side by side on one dataset.
///
/// - The teacher is trained once and cached in `output/teacher`; a later run reuses it.
///   `teacherValidationShare` of the training rows are held out to pick its best epoch, so the
///   test set is scored, never used to choose.
/// - The student is trained twice from the same initialisation and batch order (same seed): from
///   scratch with cross-entropy, and distilled from the teacher's soft targets (T = 2,
///   0.5·T²·KL + 0.5·CE). Both rows report the last epoch's student.
public struct DemoJob: Sendable {
    public var output: URL
    public var teacher = "cnn-small"
    public var student = "mlp:784-64-10"
    public var teacherEpochs = 8
    public var studentEpochs = 60
    public var seed: UInt64 = 0
    public var retrainTeacher = false
    public var quiet = false

    /// The share of the training rows (5,000 of Fashion-MNIST's 60,000) held out to pick the
    /// teacher's best epoch.
    public static let teacherValidationShare = 1.0 / 12

    public init(output: URL) { self.output = output }

    public struct Result: Sendable {
        public var teacher: ModelSummary, scratch: ModelSummary, distilled: ModelSummary
        /// Whether this run trained the teacher (false: the cached one was reused).
        public var trainedTeacher: Bool
        public var minutes: Double
        /// Distilled minus scratch test accuracy, in points.
        public var gainPoints: Double { (distilled.accuracy - scratch.accuracy) * 100 }
        public var rows: [ModelSummary] { [teacher, scratch, distilled] }
    }

    public var teacherFile: URL { output.appendingPathComponent("teacher/best.safetensors") }

    /// The teacher's and the student's specs, resolved (a `.yaml` model file becomes its layer
    /// list) and checked: settings that cannot work are refused naming the demo's own options, and
    /// so are models that do not fit `data`, before anything trains, so that a bad student does
    /// not cost the teacher's minute of training first.
    public func checkedSpecs(for data: LabeledDataset) throws -> (teacher: String, student: String) {
        for (value, option) in [(teacherEpochs, "teacher-epochs"), (studentEpochs, "student-epochs")]
        where !(1...Experiment.maxEpochs).contains(value) {
            throw TensorError("--\(option) must be 1...\(Experiment.maxEpochs), got \(value)")
        }
        guard seed <= TrainingOptions.maxSeed else { throw TensorError("--seed must be 0...\(TrainingOptions.maxSeed), got \(seed)") }
        let what = "on Fashion-MNIST (examples \(data.exampleShape), \(data.numClasses) classes)"
        func checked(_ spec: String, _ option: String) throws -> String {
            do {
                let resolved = try Experiment.resolveModelSpec(spec)
                let model = try ModelZoo.build(resolved, inputShape: data.exampleShape, numClasses: data.numClasses, seed: seed)
                _ = try ModelShapes.check(model, inputShape: data.exampleShape, numClasses: data.numClasses,
                                          what: "--\(option) '\(spec.prefix(80))' \(what)")
                return resolved
            } catch let error as TensorError where !error.message.hasPrefix("--\(option) ") {
                throw TensorError("--\(option) '\(spec.prefix(80))': \(error.message)")
            }
        }
        return (try checked(teacher, "teacher"), try checked(student, "student"))
    }

    /// Runs the three trainings on `data` (nil: Fashion-MNIST, loaded inside the timed run) and
    /// writes `summary.txt` next to their run folders.
    public func run(on data: (train: LabeledDataset, test: LabeledDataset)? = nil) throws -> Result {
        let started = DispatchTime.now().uptimeNanoseconds
        let data = try data ?? FashionMNIST.load()
        let specs = try checkedSpecs(for: data.train)
        var t = Experiment()
        t.student = specs.teacher
        t.options.epochs = teacherEpochs
        t.options.seed = seed
        t.options.quiet = quiet
        t.validation = Self.teacherValidationShare
        t.output = output.appendingPathComponent("teacher").path
        let teacherFolder = RunFolder(URL(fileURLWithPath: t.output!))
        var trainTeacher = retrainTeacher || !FileManager.default.fileExists(atPath: teacherFile.path)
            || teacherFolder.interruptedEpochs(of: t) != nil
        if !trainTeacher {
            // A teacher cached with other settings (--teacher-epochs, --seed, --teacher) is not the one asked for.
            let recorded = try? RunFolder(URL(fileURLWithPath: t.output!)).readExperiment()
            let changed = recorded.map { t.settingsDiffering(from: $0) } ?? ["its config.json is unreadable"]
            if !changed.isEmpty {
                trainTeacher = true
                if !quiet { log("== the cached teacher \(teacherFile.path) was trained otherwise (\(changed.prefix(3).joined(separator: "; "))): training it again") }
            }
        }
        if trainTeacher {
            if !quiet { log("== training the teacher (\(teacher), \(teacherEpochs) epochs); it is cached in \(teacherFile.path)") }
            _ = try runStep(t, data: data, resuming: !retrainTeacher)
        } else if !quiet {
            log("== reusing the cached teacher \(teacherFile.path) (--retrain-teacher to train it again)")
        }

        var scratch = Experiment()
        scratch.student = specs.student
        scratch.options.epochs = studentEpochs
        scratch.options.seed = seed
        scratch.options.quiet = quiet
        scratch.output = output.appendingPathComponent("scratch").path
        if !quiet { log("== training the student from scratch (\(student), \(studentEpochs) epochs)") }
        let scratchResult = try runStep(scratch, data: data)

        var kd = scratch
        kd.teachers = [teacherFile.path]
        kd.losses = LossTerm.recipe()
        kd.output = output.appendingPathComponent("distilled").path
        if !quiet { log("== distilling the teacher into the student (same initialisation and batch order)") }
        let kdResult = try runStep(kd, data: data)

        guard let teacherRow = kdResult.rows.first(where: { $0.role == "teacher" }),
              var scratchRow = scratchResult.rows.last, var kdRow = kdResult.rows.last else {
            throw TensorError("distill demo: the runs returned no summary rows")
        }
        scratchRow.role = "scratch"
        kdRow.role = "distilled"
        let result = Result(teacher: teacherRow, scratch: scratchRow, distilled: kdRow, trainedTeacher: trainTeacher,
                            minutes: Double(DispatchTime.now().uptimeNanoseconds - started) / 60e9)
        try AtomicFile.write(Data((summaryTable(result.rows) + "\n").utf8), to: output.appendingPathComponent("summary.txt"))
        return result
    }

    /// Runs one of the three trainings; one that an earlier `distill demo` left interrupted (Ctrl-C,
    /// a kill) with the same settings continues from its checkpoint instead of starting again.
    func runStep(_ experiment: Experiment, data: (train: LabeledDataset, test: LabeledDataset), resuming: Bool = true) throws -> ExperimentRunner.Result {
        let folder = RunFolder(URL(fileURLWithPath: experiment.output!))
        let done = resuming ? folder.interruptedEpochs(of: experiment) : nil
        if let done, !quiet { log("== continuing the interrupted run in \(folder.url.path) from its checkpoint (\(done) of \(experiment.options.epochs) epochs done)") }
        return try ExperimentRunner.run(experiment, resume: done != nil, preloaded: data)
    }
}
