import DistillData
import DistillNN
import DistillTensor
import DistillTraining
import Foundation
import Testing

/// Fashion-MNIST, when Debian's dataset-fashion-mnist is installed (scripts/setup.sh installs it).
private let fashion: (train: LabeledDataset, test: LabeledDataset)? = {
    guard let full = try? FashionMNIST.load() else { return nil }
    return (full.train.prefix(2000), full.test.prefix(1000))
}()

private func temporaryFolder(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-e2e-\(name)-\(getpid())")
    try? FileManager.default.removeItem(at: url)
    return url
}

/// A quiet experiment training `student` for `epochs` epochs, writing its run folder to `output` when given.
private func experiment(student: String = "mlp:784-32-10", epochs: Int, output: URL? = nil) -> Experiment {
    var e = Experiment()
    e.student = student
    e.options.epochs = epochs
    e.options.quiet = true
    e.output = output?.path
    return e
}

@Suite("End to end on a 2,000-image subset", .serialized, .enabled(if: fashion != nil, "needs dataset-fashion-mnist"))
struct EndToEndTests {
    let data = fashion!

    func teacherFile() throws -> URL {
        let folder = temporaryFolder("teacher")
        let result = try ExperimentRunner.run(experiment(student: "mlp:784-128-10", epochs: 4, output: folder), preloaded: data)
        #expect(result.training.test.accuracy > 0.6)
        return folder.appendingPathComponent("student.safetensors")
    }

    @Test func distilledStudentLearns() throws {
        let teacher = try teacherFile()
        var e = experiment(epochs: 3, output: temporaryFolder("kd"))
        e.teachers = [teacher.path]
        var kd = LossTerm(.kd, weight: 0.9)
        kd.temperature = 4
        e.losses = [kd, LossTerm(.ce, weight: 0.1)]
        let result = try ExperimentRunner.run(e, preloaded: data)
        #expect(result.training.test.accuracy > 0.6, "a distilled student should be far above chance (10%)")
        #expect(result.rows.map(\.role) == ["teacher", "distilled"])
        // The run folder holds what the README promises.
        let run = try #require(result.runFolder)
        for file in [run.config, run.metrics, run.checkpoint, run.bestModel, run.finalModel, run.report] {
            #expect(FileManager.default.fileExists(atPath: file.path), "\(file.lastPathComponent) missing")
        }
        // The HTML report: both models, three epochs of curves, and the transfer set in the
        // teacher's view (its logits were computed once: no augmentation).
        let html = try String(contentsOf: run.report, encoding: .utf8)
        for fragment in ["<h2>Size, accuracy, latency</h2>", "<td class=l>teacher</td>", "<td class=l>distilled</td>",
                         "epoch 3", "<h2>Transfer set</h2>", "2000 training rows", "The teacher agrees with the label on",
                         "Confusion matrix", String(format: "%.2f%%", result.training.test.accuracy * 100)] {
            #expect(html.contains(fragment), "report.html lacks \(fragment)")
        }
        let lines = try String(contentsOf: run.metrics, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        // The saved student reloads and scores the same.
        let (reloaded, _) = try SavedModel.load(run.finalModel)
        let again = try evaluate(reloaded, on: data.test)
        #expect(abs(again.accuracy - result.training.test.accuracy) < 1e-9)
    }

    @Test func labelFreeDistillationNeedsNoLabels() throws {
        let teacher = try teacherFile()
        var e = experiment(epochs: 2)
        e.teachers = [teacher.path]
        e.losses = [LossTerm(.kd)]
        let unlabeled = try LabeledDataset(features: data.train.features, labels: [], numClasses: 10)
        let result = try ExperimentRunner.run(e, preloaded: (unlabeled, data.test))
        #expect(result.training.test.accuracy > 0.5)
    }

    @Test func resumeContinuesExactlyWhereItStopped() throws {
        let straight = try ExperimentRunner.run(experiment(epochs: 4, output: temporaryFolder("straight")), preloaded: data)
        // Two epochs, then a new process would resume the run folder for the remaining two.
        let folder = temporaryFolder("resumed")
        _ = try ExperimentRunner.run(experiment(epochs: 2, output: folder), preloaded: data)
        let resumed = try ExperimentRunner.run(experiment(epochs: 4, output: folder), resume: true, preloaded: data)
        for (name, a) in straight.student.stateDict() {
            let b = try #require(resumed.student.stateDict()[name])
            #expect(a.scalars == b.scalars, "parameter \(name) differs after resuming")
        }
        let lines = try String(contentsOf: RunFolder(folder).metrics, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4, "metrics.jsonl holds each epoch once")
    }

    @Test func nanLossStopsTheRunAndKeepsTheCheckpoint() throws {
        let folder = temporaryFolder("nan")
        var e = experiment(epochs: 1, output: folder)
        _ = try ExperimentRunner.run(e, preloaded: data)
        let before = try Data(contentsOf: RunFolder(folder).checkpoint)
        // A learning rate this large makes the loss overflow within the first epoch.
        e.options.epochs = 3
        e.options.optimizer = .sgd
        e.options.momentum = 0
        e.options.learningRate = 1e30
        try RunFolder(folder).writeJSON(e.json, to: RunFolder(folder).config)  // as if recorded so: a resume continues what config.json says
        do {
            _ = try ExperimentRunner.run(e, resume: true, preloaded: data)
            Issue.record("training with lr 1e30 should stop on a non-finite loss")
        } catch let error as TrainingError {
            #expect(error.message.contains("epoch 2, step"), "\(error.message)")
            #expect(error.message.contains("last good checkpoint"))
        }
        #expect(try Data(contentsOf: RunFolder(folder).checkpoint) == before, "the last good checkpoint must be kept")
    }

    @Test func nonFiniteInputNamesTheSample() throws {
        let features = data.train.features.copy()
        features.data[5 * 784 + 3] = .nan
        let bad = try LabeledDataset(features: features, labels: data.train.labels, numClasses: 10)
        let e = experiment(epochs: 1)
        // Refused before the first step, naming the row and the feature.
        #expect(throws: TensorError.self) { try ExperimentRunner.run(e, preloaded: (bad, data.test)) }
        do { _ = try ExperimentRunner.run(e, preloaded: (bad, data.test)) } catch let error as TensorError {
            #expect(error.message.contains("(training rows): row 5 holds nan (feature 3)"), "\(error.message)")
        }
    }

    /// `distill demo`'s job on the subset, with a small MLP teacher: three rows, the teacher's
    /// best epoch picked on held-out training rows (never on the test set), scratch and distilled
    /// students of one spec, a second run that reuses the cached teacher, and a third, asking for
    /// other teacher epochs, that trains it again.
    @Test func demoJobPicksTheTeacherOnValidationRowsAndReusesIt() throws {
        var job = DemoJob(output: temporaryFolder("demo"))
        job.teacher = "mlp:784-128-10"
        job.student = "mlp:784-32-10"
        job.teacherEpochs = 3
        job.studentEpochs = 2
        job.quiet = true
        let first = try job.run(on: data)
        #expect(first.trainedTeacher)
        #expect(first.rows.map(\.role) == ["teacher", "scratch", "distilled"])
        #expect(first.rows.map(\.spec) == ["mlp:784-128-10", "mlp:784-32-10", "mlp:784-32-10"])
        #expect(first.teacher.accuracy > 0.6 && first.distilled.accuracy > 0.5)
        let summary = try #require(JSONSerialization.jsonObject(
            with: Data(contentsOf: job.output.appendingPathComponent("teacher/summary.json"))) as? [String: Any])
        let validation = try #require(summary["validation"] as? [String: Any], "the teacher's best epoch must be picked on validation rows")
        #expect(validation["rows"] as? Int == Int((Double(data.train.count) * DemoJob.teacherValidationShare).rounded()))
        #expect(summary["best_test_accuracy"] == nil, "no model may be picked on the test set")
        #expect(FileManager.default.fileExists(atPath: job.output.appendingPathComponent("summary.txt").path))

        let teacherBytes = try Data(contentsOf: job.teacherFile)
        let second = try job.run(on: data)
        #expect(!second.trainedTeacher)
        #expect(try Data(contentsOf: job.teacherFile) == teacherBytes)
        #expect(second.teacher.accuracy == first.teacher.accuracy)
        #expect(second.distilled.accuracy == first.distilled.accuracy, "same seed, same teacher: the same student")
        // Other teacher epochs than the cached teacher's: trained again, not silently reused.
        job.teacherEpochs = 2
        #expect(try job.run(on: data).trainedTeacher)
        #expect(try RunFolder(job.output.appendingPathComponent("teacher")).readExperiment().options.epochs == 2)
    }

    /// A demo stopped during the teacher's training (Ctrl-C after epoch 1 of 3) continues that
    /// teacher from its checkpoint when run again, rather than reusing it half-trained or starting
    /// it again: its model ends byte for byte as an uninterrupted demo's.
    @Test func demoJobContinuesAnInterruptedTeacher() throws {
        func job(_ name: String, teacherEpochs: Int) -> DemoJob {
            var job = DemoJob(output: temporaryFolder(name))
            job.teacher = "mlp:784-64-10"
            job.student = "mlp:784-16-10"
            job.teacherEpochs = teacherEpochs
            job.studentEpochs = 1
            job.quiet = true
            return job
        }
        let straight = job("demo-straight", teacherEpochs: 3)
        _ = try straight.run(on: data)
        // What a kill after the teacher's first epoch leaves: its checkpoint, best model and
        // metrics after epoch 1, and config.json recording 3 epochs.
        var interrupted = job("demo-interrupted", teacherEpochs: 1)
        _ = try interrupted.run(on: data)
        let teacherFolder = RunFolder(interrupted.output.appendingPathComponent("teacher"))
        var config = try teacherFolder.readConfig()
        config["epochs"] = 3
        try teacherFolder.writeJSON(config, to: teacherFolder.config)
        let firstEpoch = try #require(teacherFolder.readMetrics().first)

        interrupted.teacherEpochs = 3
        #expect(try interrupted.run(on: data).trainedTeacher)
        #expect(teacherFolder.readMetrics().count == 3)
        #expect((teacherFolder.readMetrics().first?["seconds"] as? Double) == (firstEpoch["seconds"] as? Double), "the teacher started again instead of continuing")
        #expect(try Data(contentsOf: interrupted.teacherFile) == Data(contentsOf: straight.teacherFile))
    }

    /// A student that does not fit the data, or epochs out of range, fail before the teacher's
    /// training, naming the demo's option: no run folder is written.
    @Test(arguments: [
        ("mlp:784-64-5", 8, 60, "--student 'mlp:784-64-5'"), ("nonsense", 8, 60, "--student 'nonsense': unknown model"),
        ("mlp:784-64-10", 0, 60, "--teacher-epochs must be 1...100000, got 0"),
        ("mlp:784-64-10", 8, 0, "--student-epochs must be 1...100000, got 0"),
    ])
    func demoJobRefusesBadSettingsBeforeTraining(student: String, teacherEpochs: Int, studentEpochs: Int, message: String) {
        var job = DemoJob(output: temporaryFolder("demo-bad"))
        job.student = student
        job.teacherEpochs = teacherEpochs
        job.studentEpochs = studentEpochs
        job.quiet = true
        #expect(throws: TensorError.self) { _ = try job.run(on: data) }
        do { _ = try job.run(on: data) } catch { #expect("\(error)".contains(message), "\(error)") }
        #expect(!FileManager.default.fileExists(atPath: job.output.appendingPathComponent("teacher").path))
    }
}

@Suite("Experiment files and loss terms")
struct ExperimentParsingTests {
    @Test func parsesLossesWithWeights() throws {
        let e = try Experiment([
            "teacher": "t.safetensors", "student": "mlp:784-64-10", "epochs": 3,
            "losses": [["kd": ["temperature": 4, "weight": 0.9]], ["ce": ["weight": 0.1]]],
        ])
        #expect(e.losses.count == 2)
        #expect(e.losses[0].method == .kd && e.losses[0].temperature == 4 && abs(e.losses[0].weight - 0.9) < 1e-6)
        #expect(e.losses[1].method == .ce && abs(e.losses[1].weight - 0.1) < 1e-6)
        // The resolved config parses back to the same experiment.
        let again = try Experiment(e.json)
        #expect(again.losses == e.losses && again.options.epochs == 3 && again.teachers == e.teachers)
    }

    @Test func unknownNamesListTheValidOnes() {
        #expect { try LossTerm.parse(["kdd": [:] as [String: Any]]) } throws: { "\($0)".contains("valid: ce, kd, dkd") }
        #expect { try LossTerm.parse(["kd": ["temprature": 2]]) } throws: { "\($0)".contains("unknown option 'temprature'") }
        #expect { try Experiment(["epocs": 3]) } throws: { "\($0)".contains("valid:") }
        #expect { try Experiment(["optimizer": "adagrad"]) } throws: { "\($0)".contains("adam, adamw, sgd") }
        #expect { try Experiment(["losses": [["kd": [:] as [String: Any]]]]) } throws: { "\($0)".contains("need a teacher") }
        #expect { try ModelZoo.build("resnet9000") } throws: { "\($0)".contains("cnn-small") }
    }

    @Test func yamlLayerListBuildsAModel() throws {
        let spec = try Experiment.layerSpec(["flatten", ["linear": ["in": 784, "out": 16]], "relu", ["linear": ["in": 16, "out": 10]]])
        let model = try ModelZoo.build(spec)
        #expect(model.parameterCount == 784 * 16 + 16 + 16 * 10 + 10)
        #expect { try ModelZoo.build("layers:[{\"convolution\": {}}]") } throws: { "\($0)".contains("unknown layer 'convolution'") }
    }
}
