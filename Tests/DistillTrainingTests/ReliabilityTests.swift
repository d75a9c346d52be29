import DistillData
import DistillNN
import DistillONNX
import DistillTensor
import DistillTestSupport
import DistillTraining
import Foundation
import Testing

/// Hostile and broken inputs at the training level, numerical faults, failed writes, and
/// determinism. The file-format cases are in DistillDataTests/MalformedFileTests.swift; the files
/// themselves in DistillDataTests/Malformed (written by fuzz/make_malformed.py).
@Suite("Reliability", .serialized) struct ReliabilityTests {
    static let malformed = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("DistillDataTests/Malformed")

    static func file(_ name: String) -> URL { malformed.appendingPathComponent(name) }

    static func folder(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-reliability-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: url)
        return url
    }

    /// 96 samples of 8 features in 3 well-separated classes: trains in milliseconds.
    static func blobs(seed: UInt64 = 1, count: Int = 96) throws -> LabeledDataset {
        var g = SeededGenerator(seed: seed)
        var x: [Float] = [], y: [Int] = []
        for i in 0..<count {
            let c = i % 3
            y.append(c)
            for f in 0..<8 { x.append(Float(f % 3 == c ? 2 : 0) + Float(g.nextInt(below: 1000)) / 1000) }
        }
        return try LabeledDataset(features: Tensor(shape: [count, 8], scalars: x), labels: y, numClasses: 3)
    }

    static func experiment(epochs: Int, output: URL?, seed: UInt64 = 7) -> Experiment {
        var e = Experiment()
        e.student = "mlp:8-16-3"
        e.options.epochs = epochs
        e.options.batchSize = 16
        e.options.seed = seed
        e.options.quiet = true
        e.output = output?.path
        return e
    }

    // MARK: Hostile files at the training level

    @Test func nanFeaturesInADataFileAreRefusedNamingTheSample() throws {
        var e = Self.experiment(epochs: 1, output: nil)
        e.data = Self.file("npz-nan-features.npz").path
        e.student = "mlp:4-8-3"
        expectMessage(["npz-nan-features.npz (training rows): row 5 holds nan", "features must be finite"]) { _ = try ExperimentRunner.run(e) }
    }

    @Test func aTeacherWithNaNWeightsIsRefused() throws {
        let data = try LabeledDataset(features: Tensor(shape: [6, 4], scalars: (0..<24).map { Float($0 % 5) }), labels: [0, 1, 2, 0, 1, 2], numClasses: 3)
        var e = Self.experiment(epochs: 1, output: nil)
        e.student = "mlp:4-8-3"
        e.teachers = [Self.file("model-nan-teacher.safetensors").path]
        e.losses = [LossTerm(.kd)]
        expectMessage(["model-nan-teacher.safetensors", "a model's weights must be finite"]) { _ = try ExperimentRunner.run(e, preloaded: (data, data)) }
    }

    static let modelCases: [(String, [String])] = [
        ("model-huge-spec.safetensors", ["model spec 'mlp:100000-100000-10' needs more than 1048576 parameters", "maxParameters"]),
        ("model-lenet5-tiny-images.safetensors", ["model 'lenet5' cannot take images of shape [1, 4, 40]"]),
        ("model-negative-classes.safetensors", ["distillkit.num_classes '-3' is not a class count"]),
    ]

    /// A saved model's metadata names its architecture: a hostile one must not make the loader
    /// allocate more than the file holds, nor build an impossible layer.
    @Test(arguments: modelCases) func hostileModelDescriptions(_ name: String, _ fragments: [String]) throws {
        expectMessage(fragments) { _ = try SavedModel.load(Self.file(name)) }
    }

    static let yamlCases: [(String, [String])] = [
        ("yaml-deep.yaml", ["nesting", "levels deep", "Experiment.maxYAMLDepth"]),
        ("yaml-deep-block.yaml", ["nesting", "levels deep", "Experiment.maxYAMLDepth"]),
        ("yaml-billion-laughs.yaml", ["expands to more than 100000 YAML values", "Experiment.maxYAMLNodes"]),
        ("yaml-unknown-key.yaml", ["unknown setting learning_rat; valid:"]),
        ("yaml-not-a-map.yaml", ["the experiment must be a YAML map of settings"]),
        // Found by fuzz/FuzzExperiment: Yams traps on `{ce, {weight: 1}}` (a map used as a key).
        ("crash-Experiment-complex-key.yaml", ["line 4: a key is itself a list or a map"]),
    ]

    @Test(arguments: yamlCases) func hostileExperimentFiles(_ name: String, _ fragments: [String]) throws {
        if name.hasPrefix("crash-") {  // fuzzer inputs need not be UTF-8: decode leniently, as the fuzz target does
            let text = String(decoding: try Data(contentsOf: Self.file(name)), as: UTF8.self)
            expectMessage([name] + fragments) { _ = try Experiment.parse(yaml: text, name: name) }
        } else {
            expectMessage([name] + fragments) { _ = try Experiment.load(Self.file(name)) }
        }
    }

    /// Settings that would silently lose a value or train nothing: a key set twice, `teacher` and
    /// `teachers` together, every loss weight 0, a map where a string goes; and files that are not
    /// regular UTF-8 files.
    @Test func ambiguousExperimentFilesAreRefused() throws {
        let cases: [(String, [String])] = [
            ("student: mlp:4-8-3\nepochs: 2\nepochs: 5\n", ["line 3", "'epochs' is set twice"]),
            ("teacher: a.safetensors\nteachers: [b.safetensors]\n", ["both 'teacher' and 'teachers'"]),
            ("teacher: a.safetensors\nlosses: [{kd: {weight: 0}}, {ce: {weight: 0}}]\n", ["every weight is 0", "kd 0.0, ce 0.0"]),
            ("name: {x: 1}\n", ["'name' must be a string"]),
        ]
        for (text, fragments) in cases {
            expectMessage(["x.yaml"] + fragments, text) { try Experiment.parse(yaml: text, name: "x.yaml").validate() }
        }
        let dir = try TemporaryDirectory()
        try Data([0x65, 0x70, 0x6F, 0x63, 0x68, 0x73, 0x3A, 0x20, 0xE9, 0x0A]).write(to: dir.file("latin1.yaml"))
        expectMessage(["latin1.yaml", "not UTF-8"]) { _ = try Experiment.load(dir.file("latin1.yaml")) }
        expectMessage([dir.url.path, "is a folder"]) { _ = try Experiment.load(dir.url) }
        expectMessage(["/dev/zero", "is a device"]) { _ = try Experiment.load(URL(fileURLWithPath: "/dev/zero")) }
    }

    @Test func realExperimentFilesStayFarBelowTheDepthLimit() throws {
        let examples = Self.malformed.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples")
        for name in try FileManager.default.contentsOfDirectory(atPath: examples.path) where name.hasSuffix(".yaml") {
            let text = try String(contentsOf: examples.appendingPathComponent(name), encoding: .utf8)
            #expect(Experiment.yamlDepthBound(text) < Experiment.maxYAMLDepth / 2, "\(name)")
            _ = try Experiment.parse(yaml: text, name: name)
        }
    }

    static let onnxCases: [(String, [String])] = [
        ("onnx-cycle.onnx", ["the graph has a cycle"]),
        ("onnx-missing-initializer.onnx", ["reads 'W', which no node, graph input or initializer defines (a missing initializer?)"]),
        ("onnx-truncated.onnx", ["not a valid ONNX model: the protobuf is truncated or corrupt"]),
    ]

    @Test(arguments: onnxCases) func malformedONNXModels(_ name: String, _ fragments: [String]) throws {
        expectMessage(fragments) { _ = try ONNXModel(contentsOf: Self.file(name)) }
    }

    /// Inputs the fuzzer crashed on (fuzz/.build/crashes, copied to Malformed/crash-*): each must
    /// now be an error or a successful load, never a crash.
    @Test func fuzzerCrashInputsNoLongerCrash() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.malformed.path).filter { $0.hasPrefix("crash-") }
        for name in names {
            let data = try Data(contentsOf: Self.file(name))
            switch name.split(separator: "-")[1] {
            case "SavedModel": _ = try? SavedModel.decode(data, name: name)
            case "Experiment": _ = try? Experiment.parse(yaml: String(decoding: data, as: UTF8.self), name: name)
            case "Safetensors": _ = try? Safetensors.decode(data, name: name)
            case "NPZ": _ = try? NPZ.decode(data, name: name)
            case "NPY": _ = try? NPY.decode(data, name: name)
            case "IDX": _ = try? IDX.decodeFloats(data, name: name)
            case "CSV": _ = try? CSVTable.parse(data, name: name).dataset(labelColumn: nil)
            case "ONNX": _ = try? ONNXModel(data: data, directory: nil, source: name)
            default: Issue.record("\(name): unknown fuzz target")
            }
        }
    }

    // MARK: Numerical faults

    /// Weights chosen so that the loss is finite (the logits cancel to 0) but the first layer's
    /// weight gradient overflows: the step must stop before the optimizer applies it.
    @Test func aNonFiniteGradientStopsAtItsStepWithoutUpdating() throws {
        let student = try ModelZoo.build("mlp:2-2-2")
        try student.loadStateDict([
            "1.weight": Tensor.zeros([2, 2]), "1.bias": Tensor(shape: [2], scalars: [1, 1]),
            "3.weight": Tensor(shape: [2, 2], scalars: [3e38, -3e38, -3e38, 3e38]), "3.bias": Tensor.zeros([2]),
        ], source: "test")
        let data = try LabeledDataset(features: Tensor(shape: [4, 2], scalars: Array(repeating: 10, count: 8)), labels: [0, 0, 0, 0], numClasses: 2)
        var options = TrainingOptions()
        options.epochs = 1
        options.batchSize = 4
        options.quiet = true
        let trainer = try Trainer(student: student, studentInfo: SavedModel(spec: "mlp:2-2-2", inputShape: [2], numClasses: 2), teachers: [],
                                  objective: DistillationObjective(terms: [LossTerm(.ce)]), options: options, train: data, test: data, run: nil)
        expectMessage(["non-finite gradient", "in 1.weight at epoch 1, step 1", "with a finite loss", "the weights were not updated"]) { _ = try trainer.fit() }
        #expect(student.stateDict()["1.weight"]!.scalars == [0, 0, 0, 0])
    }

    // MARK: Failed writes

    /// A checkpoint write that fails (here the temporary file cannot be created, as on a full or
    /// read-only disk) stops the run with a message, and the previous checkpoint stays as it was.
    @Test func aFailedCheckpointWriteKeepsThePreviousCheckpoint() throws {
        let data = try Self.blobs()
        let folder = Self.folder("diskfull")
        defer { try? FileManager.default.removeItem(at: folder) }
        _ = try ExperimentRunner.run(Self.experiment(epochs: 1, output: folder), preloaded: (data, data))
        let run = RunFolder(folder)
        let before = try Data(contentsOf: run.checkpoint)
        // AtomicFile writes `.<name>.tmp-<pid>` first; a folder in its place makes that fail.
        let blocker = folder.appendingPathComponent(".checkpoint.safetensors.tmp-\(getpid())")
        try FileManager.default.createDirectory(at: blocker.appendingPathComponent("x"), withIntermediateDirectories: true)
        expectMessage(["cannot write the checkpoint", "training stopped, the previous checkpoint in \(folder.path) is intact"]) {
            _ = try ExperimentRunner.run(Self.experiment(epochs: 3, output: folder), resume: true, preloaded: (data, data))
        }
        #expect(try Data(contentsOf: run.checkpoint) == before, "the previous checkpoint must be untouched")
        try FileManager.default.removeItem(at: blocker)
        // Once the disk is fixed, --resume finishes and matches a run that never failed.
        let resumed = try ExperimentRunner.run(Self.experiment(epochs: 3, output: folder), resume: true, preloaded: (data, data))
        let straight = try ExperimentRunner.run(Self.experiment(epochs: 3, output: Self.folder("diskfull-straight")), preloaded: (data, data))
        #expect(resumed.student.stateDict().mapValues(\.scalars) == straight.student.stateDict().mapValues(\.scalars))
    }

    /// A checkpoint from further than the run goes (another config, or edited metadata) is an
    /// error, not an invalid range.
    @Test func aCheckpointPastTheLastEpochIsRefused() throws {
        let data = try Self.blobs()
        let folder = Self.folder("past")
        defer { try? FileManager.default.removeItem(at: folder) }
        _ = try ExperimentRunner.run(Self.experiment(epochs: 3, output: folder), preloaded: (data, data))
        expectMessage(["is after epoch 3, past the 2 epochs of this run"]) {
            _ = try ExperimentRunner.run(Self.experiment(epochs: 2, output: folder), resume: true, preloaded: (data, data))
        }
    }

    // MARK: Determinism

    @Test func theSameSeedGivesBitIdenticalWeights() throws {
        let data = try Self.blobs()
        let a = try ExperimentRunner.run(Self.experiment(epochs: 3, output: nil), preloaded: (data, data))
        let b = try ExperimentRunner.run(Self.experiment(epochs: 3, output: nil), preloaded: (data, data))
        let c = try ExperimentRunner.run(Self.experiment(epochs: 3, output: nil, seed: 8), preloaded: (data, data))
        #expect(a.student.stateDict().mapValues(\.scalars) == b.student.stateDict().mapValues(\.scalars))
        #expect(a.student.stateDict().mapValues(\.scalars) != c.student.stateDict().mapValues(\.scalars), "another seed should give other weights")
    }

    /// Dropout masks come from (seed, step), so a run resumed after an epoch draws the same masks
    /// as one never interrupted.
    @Test func resumingAModelWithDropoutIsBitIdentical() throws {
        let data = try Self.blobs()
        func experiment(_ epochs: Int, _ output: URL) -> Experiment {
            var e = Self.experiment(epochs: epochs, output: output)
            e.student = #"layers:["flatten",{"linear":{"in":8,"out":16}},"relu",{"dropout":{"p":0.3}},{"linear":{"in":16,"out":3}}]"#
            return e
        }
        let straight = try ExperimentRunner.run(experiment(3, Self.folder("dropout-straight")), preloaded: (data, data))
        let folder = Self.folder("dropout-resumed")
        _ = try ExperimentRunner.run(experiment(1, folder), preloaded: (data, data))
        let resumed = try ExperimentRunner.run(experiment(3, folder), resume: true, preloaded: (data, data))
        #expect(straight.student.stateDict().mapValues(\.scalars) == resumed.student.stateDict().mapValues(\.scalars))
    }

    /// DistillKit's own parallel loops split work into disjoint output ranges, so the number of
    /// workers does not change any sum's order.
    @Test func theNumberOfWorkersDoesNotChangeTheWeights() throws {
        let data = try Self.blobs(count: 300)
        var e = Self.experiment(epochs: 2, output: nil)
        e.student = "mlp:8-2048-3"  // batch 128 × 8 × 2048: the TrainingPlan splits the first layer
        e.options.batchSize = 128
        let saved = Parallel.workers
        defer { Parallel.workers = saved }
        Parallel.workers = 1
        let one = try ExperimentRunner.run(e, preloaded: (data, data))
        Parallel.workers = 4
        let four = try ExperimentRunner.run(e, preloaded: (data, data))
        #expect(one.student.stateDict().mapValues(\.scalars) == four.student.stateDict().mapValues(\.scalars))
    }

    /// MLP students trained on their logits go through a TrainingPlan; convolutions (and feature
    /// losses, dropout: `TrainingPlanTests`) through the graph.
    @Test func mlpStudentsTrainThroughAPlan() throws {
        let data = try Self.blobs()
        let images = try LabeledDataset(features: Tensor.zeros([6, 1, 28, 28]), labels: [0, 1, 2, 0, 1, 2], numClasses: 3)
        func trainer(_ spec: String, _ terms: [LossTerm], inputShape: [Int] = [8]) throws -> Trainer<EvaluationReport> {
            let data = inputShape == [8] ? data : images
            return try Trainer(student: ModelZoo.build(spec, inputShape: inputShape, numClasses: 3), studentInfo: SavedModel(spec: spec, inputShape: inputShape, numClasses: 3),
                               teachers: [], objective: DistillationObjective(terms: terms), options: TrainingOptions(), train: data, test: data, run: nil)
        }
        #expect(try trainer("mlp:8-16-3", [LossTerm(.ce)]).trainingPlan != nil)
        #expect(try trainer("cnn-tiny", [LossTerm(.ce)], inputShape: [1, 28, 28]).trainingPlan == nil)
        let graph = try trainer("mlp:8-16-3", [LossTerm(.ce)])
        graph.usesTrainingPlan = false
        #expect(graph.trainingPlan == nil)
    }

    /// `takeSteps`, which `distill bench train|kd` times, is the step `fit` takes: an epoch of
    /// it leaves the same weights, bit for bit, through a plan and through the graph.
    @Test func takeStepsIsTheStepFitTakes() throws {
        let data = try Self.blobs()
        var options = TrainingOptions()
        options.epochs = 1
        options.batchSize = 16
        options.quiet = true
        var kd = LossTerm(.kd, weight: 0.9)
        kd.temperature = 4
        let teacher = ModuleTeacher(try ModelZoo.build("mlp:8-32-3", inputShape: [8], numClasses: 3, seed: 7), name: "teacher")
        for usesPlan in [true, false] {
            func trainer() throws -> Trainer<EvaluationReport> {
                let t = try Trainer(student: ModelZoo.build("mlp:8-16-3", inputShape: [8], numClasses: 3, seed: 1),
                                    studentInfo: SavedModel(spec: "mlp:8-16-3", inputShape: [8], numClasses: 3), teachers: [teacher],
                                    objective: DistillationObjective(terms: [kd, LossTerm(.ce, weight: 0.1)]), options: options, train: data, test: data, run: nil)
                t.usesTrainingPlan = usesPlan
                return t
            }
            let fitted = try trainer(), stepped = try trainer()
            _ = try fitted.fit()
            let steps = (data.count + options.batchSize - 1) / options.batchSize
            try stepped.takeSteps(steps - 1)
            #expect(stepped.student.stateDict().mapValues(\.scalars) != fitted.student.stateDict().mapValues(\.scalars))
            try stepped.takeSteps(1)
            #expect(stepped.student.stateDict().mapValues(\.scalars) == fitted.student.stateDict().mapValues(\.scalars), "plan: \(usesPlan)")
        }
    }
}


/// A teacher that answers with the labels' one-hot logits and records the largest batch it saw.
private final class BatchRecordingTeacher: Teacher {
    let name = "recording", parameterCount = 0, bytes = 0
    let labels: [Int], classes: Int
    var largestBatch = 0
    init(labels: [Int], classes: Int) { self.labels = labels; self.classes = classes }
    func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        largestBatch = max(largestBatch, inputs.shape[0])
        var logits = [Float](repeating: 0, count: indices.count * classes)
        for (row, index) in indices.enumerated() { logits[row * classes + labels[index]] = 1 }
        return (Tensor(shape: [indices.count, classes], scalars: logits), [:])
    }
}

@Suite("Teacher check") struct TeacherCheckTests {
    /// The near-chance check scores 512 rows in training-batch-sized calls (one call on all of them
    /// left a CNN teacher's 38 MB of activations in the heap for the whole run), and still sees
    /// every row: a perfect teacher scores 1.
    @Test func nearChanceCheckCallsTheTeacherInSmallBatches() throws {
        let rows = 600, labels = (0..<rows).map { $0 % 10 }
        let data = try LabeledDataset(features: Tensor(shape: [rows, 4], scalars: [Float](repeating: 0.5, count: rows * 4)), labels: labels, numClasses: 10)
        let teacher = BatchRecordingTeacher(labels: labels, classes: 10)
        let accuracy = try warnIfNearChance(teacher, path: "t", on: data)
        #expect(accuracy == 1)
        #expect(teacher.largestBatch == 128)
    }
}
