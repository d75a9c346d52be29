import DistillData
import DistillNN
import DistillTensor
import DistillTestSupport
import DistillTraining
import Foundation
import Testing

/// The library used directly (`Trainer`, `evaluate`, `DistillationObjective`,
/// `ExperimentRunner.run(preloaded:)`), the way a Swift program would: a model or setting that
/// does not fit the data throws an error naming it, where it used to stop the process on a
/// failed precondition inside a layer or a loss.
@Suite("The library refuses misuse with errors")
struct LibraryMisuseTests {
    /// 64 rows of 4 features, 3 classes.
    static func data(features: Int = 4, classes: Int = 3, rows: Int = 64) throws -> LabeledDataset {
        var g = SeededGenerator(seed: 3)
        let x = (0..<(rows * features)).map { _ in Float(g.nextInt(below: 1000)) / 1000 }
        return try LabeledDataset(features: Tensor(shape: [rows, features], scalars: x), labels: (0..<rows).map { $0 % classes }, numClasses: classes)
    }

    static func trainer(student spec: String, teacher: String? = nil, terms: [LossTerm] = [LossTerm(.ce)], options: TrainingOptions = TrainingOptions(),
                        train: LabeledDataset) throws -> Trainer<EvaluationReport> {
        let features = train.exampleShape[0]
        let student = try ModelZoo.build(spec, inputShape: [features], numClasses: train.numClasses)
        let teachers = try teacher.map { [ModuleTeacher(try ModelZoo.build($0, inputShape: [features], numClasses: train.numClasses), name: $0)] } ?? []
        return try Trainer(student: student, studentInfo: SavedModel(spec: spec, inputShape: [features], numClasses: train.numClasses), teachers: teachers,
                           objective: DistillationObjective(terms: terms), options: options, train: train, test: train, run: nil)
    }

    @Test func aStudentOrTeacherThatDoesNotFitTheDataIsAnError() throws {
        let data = try Self.data()
        expectMessage(["the student (mlp:8-4-3)", "takes 8 features, gets 4"]) { _ = try Self.trainer(student: "mlp:8-4-3", train: data) }
        expectMessage(["the student (mlp:4-4-2)", "shape [2]", "3 classes"]) { _ = try Self.trainer(student: "mlp:4-4-2", train: data) }
        var kd = LossTerm(.kd)
        kd.temperature = 2
        expectMessage(["mlp:4-8-5", "[5]", "3 classes"]) {
            _ = try Self.trainer(student: "mlp:4-8-3", teacher: "mlp:4-8-5", terms: [kd], train: data)
        }
        expectMessage(["no training rows"]) { _ = try Self.trainer(student: "mlp:4-8-3", train: data.prefix(0)) }
    }

    @Test func settingsOutOfRangeAreErrors() throws {
        let data = try Self.data()
        var cold = LossTerm(.kd)
        cold.temperature = 0
        expectMessage(["temperature", "(0, 1000]"]) { _ = try DistillationObjective(terms: [cold]) }
        let refused: [(String, (inout TrainingOptions) -> Void)] = [
            ("'epochs' (--epochs) must be 1...", { $0.epochs = -1 }),
            ("'batch_size'", { $0.batchSize = Int.max }),
            ("'momentum'", { $0.momentum = -1 }),
            ("'gradient_clip'", { $0.gradientClip = 0 }),
            ("'shift'", { $0.shift = -3 }),
            ("'label_limit'", { $0.labelLimit = -5 }),
            ("'mixup'", { $0.mixup = -1 }),
            ("'warmup_epochs'", { $0.epochs = 1; $0.warmupEpochs = 5 }),
            ("'seed' (--seed) must be 0...9223372036854775807", { $0.seed = UInt64(Int64.max) + 1 }),
            ("move images [C, H, W]", { $0.shift = 1 }),
        ]
        for (fragment, change) in refused {
            var options = TrainingOptions()
            change(&options)
            expectMessage([fragment]) { _ = try Self.trainer(student: "mlp:4-8-3", options: options, train: data) }
        }
        var shifted = TrainingOptions()
        shifted.shift = 28
        expectMessage(["smaller than the images' sides (28×28), got 28"]) { try shifted.validate(exampleShape: [1, 28, 28]) }
        shifted.shift = 27
        try shifted.validate(exampleShape: [1, 28, 28])
    }

    @Test func evaluateRefusesWhatItCannotScore() throws {
        let data = try Self.data()
        let model = try ModelZoo.build("mlp:8-4-3", inputShape: [8], numClasses: 3)
        expectMessage(["the model", "takes 8 features, gets 4"]) { _ = try evaluate(model, on: data) }
        let fits = try ModelZoo.build("mlp:4-4-3", inputShape: [4], numClasses: 3)
        expectMessage(["batch size 0"]) { _ = try evaluate(fits, on: data, batchSize: 0) }
        expectMessage(["no rows to evaluate on"]) { _ = try evaluate(fits, on: data.prefix(0)) }
        #expect(try evaluate(fits, on: data).accuracy >= 0)
    }

    /// Preloaded splits must agree with each other before anything trains.
    @Test func preloadedSplitsThatDisagreeAreAnError() throws {
        var e = Experiment()
        e.data = "tables.npz"
        e.student = "mlp:4-8-3"
        e.options.epochs = 1
        e.options.quiet = true
        expectMessage(["test split", "[5]", "[4]"]) { _ = try ExperimentRunner.run(e, preloaded: (try Self.data(), try Self.data(features: 5))) }
        expectMessage(["test split", "5 classes", "3"]) { _ = try ExperimentRunner.run(e, preloaded: (try Self.data(), try Self.data(classes: 5))) }
    }

    /// `resume: true` continues the run its config.json records: changed settings are refused,
    /// more epochs extend it (and are recorded), and a folder with no run is an error.
    @Test func resumingTheLibraryWayChecksTheRecord() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-resume-\(getpid())-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try Self.data()
        var e = Experiment()
        e.data = "tables.npz"
        e.student = "mlp:4-8-3"
        e.options.epochs = 1
        e.options.quiet = true
        e.output = folder.path
        let first = try ExperimentRunner.run(e, preloaded: (data, data))
        #expect(first.info.spec == "mlp:4-8-3" && first.info.inputShape == [4] && first.info.numClasses == 3)
        var changed = e
        changed.losses = [LossTerm(.ce, weight: 0.5)]
        expectMessage(["continues the run recorded in its config.json", "losses"]) { _ = try ExperimentRunner.run(changed, resume: true, preloaded: (data, data)) }
        var longer = e
        longer.options.epochs = 2
        _ = try ExperimentRunner.run(longer, resume: true, preloaded: (data, data))
        #expect(try RunFolder(folder).readExperiment().options.epochs == 2 && RunFolder(folder).readMetrics().count == 2)
        var nowhere = e
        nowhere.output = folder.appendingPathComponent("none").path
        expectMessage(["no such run folder to resume"]) { _ = try ExperimentRunner.run(nowhere, resume: true, preloaded: (data, data)) }
        nowhere.output = nil
        expectMessage(["names no run folder"]) { _ = try ExperimentRunner.run(nowhere, resume: true, preloaded: (data, data)) }
        #expect(LossTerm.recipe().map(\.method) == [.kd, .ce] && LossTerm.recipe()[0].temperature == 2 && LossTerm.recipe(labelled: false).count == 1)
    }

    /// A run that would write its student over its teacher is refused before anything is read.
    @Test func aRunMayNotWriteOverItsTeacher() throws {
        var e = Experiment()
        e.teachers = ["runs/t/best.safetensors"]
        e.losses = [LossTerm(.kd)]
        e.output = "runs/t"
        expectMessage(["'output' (--output) runs/t holds the teacher runs/t/best.safetensors"]) { try e.validate() }
        e.teachers = ["runs/t"]
        expectMessage(["holds the teacher runs/t"]) { try e.validate() }
        e.output = "runs/s"
        try e.validate()
    }
}
