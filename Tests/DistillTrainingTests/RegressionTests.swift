import DistillData
import DistillNN
import DistillTensor
import DistillTraining
import Foundation
import Testing

/// `x0..x3` uniform in [-2, 2] (x3 shifted by 100), `y = x0 + x1 + x2 + (x3 − 100) + noise`.
func sumCSV(rows: Int, seed: UInt64, noise: Double = 0.1) -> (text: String, exact: [Float]) {
    var g = SeededGenerator(seed: seed)
    var text = "x0,x1,x2,x3,y\n"
    var exact: [Float] = []
    for _ in 0..<rows {
        let x = (0..<4).map { _ in g.nextUnitDouble() * 4 - 2 }
        let f = x.reduce(0, +)
        exact.append(Float(f))
        text += "\(x[0]),\(x[1]),\(x[2]),\(x[3] + 100),\(f + noise * g.nextGaussian())\n"
    }
    return (text, exact)
}

/// A regression experiment on `data`'s column y.
func regression(_ data: String) -> Experiment {
    var e = Experiment()
    e.data = data
    e.target = "y"
    return e
}

@Suite("Regression students on a CSV")
struct RegressionTests {
    @Test func mlpLearnsTheSumAndDistillsFromCachedOutputs() throws {
        let folder = scratchFolder("regression")
        let train = folder.appendingPathComponent("train.csv"), test = folder.appendingPathComponent("test.csv")
        let (trainText, exact) = sumCSV(rows: 800, seed: 1)
        try write(trainText, train)
        try write(sumCSV(rows: 200, seed: 2).text, test)

        var e = regression(train.path)
        e.testData = test.path
        e.student = "mlp:4-32-1"
        e.options.epochs = 30; e.options.quiet = true; e.options.batchSize = 32
        e.output = folder.appendingPathComponent("teacher").path
        let trained = try RegressionRunner.run(e)
        #expect(trained.test.r2 > 0.95, "R² \(trained.test.r2)")

        // The saved model predicts in the target's units from raw rows.
        let model = try RegressionModel.load(folder.appendingPathComponent("teacher/student.safetensors").path)
        let predictions = try model.predict(Tensor(shape: [1, 4], scalars: [1, 1, 0, 100]))
        #expect(abs(predictions[0] - 2) < 0.4, "f(1, 1, 0, 0) ≈ 2, got \(predictions[0])")

        // Regression distillation from the exact function as cached outputs (one value per row).
        let npy = folder.appendingPathComponent("exact.npy")
        try NPY.write(Tensor(exact), to: npy)
        var d = regression(train.path)
        d.testData = test.path
        d.student = "mlp:4-8-1"
        d.teacherOutputs = npy.path
        d.losses = [LossTerm(.kd, weight: 0.7), LossTerm(.ce, weight: 0.3)]
        d.options.epochs = 30; d.options.quiet = true; d.options.batchSize = 32
        let distilled = try RegressionRunner.run(d)
        #expect(distilled.test.r2 > 0.95, "R² \(distilled.test.r2)")

        // And from the trained teacher model in the loop.
        d.teacherOutputs = nil
        d.teachers = [folder.appendingPathComponent("teacher/student.safetensors").path]
        let fromModel = try RegressionRunner.run(d)
        #expect(fromModel.test.r2 > 0.9 && fromModel.teacherTest != nil)
    }

    @Test func badTeacherOutputsAreRefused() throws {
        let folder = scratchFolder("regression-bad")
        let train = folder.appendingPathComponent("train.csv")
        try write(sumCSV(rows: 50, seed: 3).text, train)
        let npy = folder.appendingPathComponent("short.npy")
        try NPY.write(Tensor.zeros([49]), to: npy)
        var d = regression(train.path)
        d.student = "mlp:4-8-1"; d.teacherOutputs = npy.path; d.losses = [LossTerm(.kd, weight: 0.5), LossTerm(.ce, weight: 0.5)]; d.options.quiet = true
        do { _ = try RegressionRunner.run(d); Issue.record("wrong row count accepted") } catch {
            #expect("\(error)".contains("49 rows"))
        }
        var values = [Float](repeating: 0, count: 50)
        values[7] = .infinity
        try NPY.write(Tensor(values), to: npy)
        do { _ = try RegressionRunner.run(d); Issue.record("inf accepted") } catch {
            #expect("\(error)".contains("row 7"))
        }
    }

    /// Regression runs in the one training loop: a run folder with checkpoint, metrics and
    /// report, `--resume` continuing where it stopped, and a clear stop on a diverging loss.
    @Test func regressionResumesReportsAndStopsOnNaN() throws {
        let folder = scratchFolder("regression-loop")
        let train = folder.appendingPathComponent("train.csv")
        try write(sumCSV(rows: 300, seed: 6).text, train)
        var e = regression(train.path)
        e.student = "mlp:4-16-1"; e.options.epochs = 2; e.options.batchSize = 32; e.options.quiet = true
        e.output = folder.appendingPathComponent("run").path
        let first = try RegressionRunner.run(e)
        let run = try #require(first.runFolder)
        #expect(FileManager.default.fileExists(atPath: run.checkpoint.path) && FileManager.default.fileExists(atPath: run.bestModel.path))
        let page = try String(contentsOf: run.report, encoding: .utf8)
        #expect(page.contains("test RMSE") && page.contains("RMSE</th>"))
        #expect(run.readMetrics().count == 2 && run.readMetrics().allSatisfy { $0["test_rmse"] != nil })

        // Resuming with more epochs trains only the new ones, from the saved state.
        e.options.epochs = 4
        let resumed = try RegressionRunner.run(e, resume: true)
        #expect(resumed.training.epochsRun == 2 && run.readMetrics().count == 4)
        #expect(resumed.test.rmse <= first.test.rmse * 1.5)

        var diverging = regression(train.path)
        diverging.student = "mlp:4-16-1"; diverging.options.epochs = 2; diverging.options.quiet = true
        diverging.options.learningRate = 1e30; diverging.options.optimizer = .sgd
        do { _ = try RegressionRunner.run(diverging); Issue.record("a diverging regression run finished") } catch {
            #expect("\(error)".contains("non-finite") || "\(error)".contains("became"), "\(error)")
        }
    }

    @Test func classifierOnlySettingsAreRefusedForRegression() {
        var e = regression("table.csv")
        e.mixup = 0.2
        #expect(throws: TensorError.self) { try e.validate() }
        e = regression("fashion-mnist")
        #expect(throws: TensorError.self) { try e.validate() }
        e = regression("table.csv")
        e.teacherOutputs = "t.npy"; e.losses = [LossTerm(.dkd)]
        #expect(throws: TensorError.self) { try e.validate() }
    }

    @Test func reportMeasures() {
        let r = RegressionRunner.report([1, 2, 3], [1, 2, 4])
        #expect(abs(r.rmse - (1.0 / 3).squareRoot()) < 1e-9 && abs(r.mae - 1.0 / 3) < 1e-9)
        #expect(abs(r.r2 - (1 - 1 / (14.0 / 3))) < 1e-9)
    }

    @Test func tabularStatisticsTravelWithTheModel() throws {
        let folder = scratchFolder("tabular-stats")
        let e = try blobExperiment(in: folder, rows: (300, 100), seeds: (4, 5), offset: 1000, student: "mlp:4-16-3", output: "run")
        let result = try ExperimentRunner.run(e)
        // Features near 1000 train only because they are standardised.
        #expect(result.training.test.accuracy > 0.8)
        let (model, info) = try SavedModel.load(folder.appendingPathComponent("run/student.safetensors"))
        let stats = try #require(try Tabular.statistics(of: info, source: "student"))
        #expect(stats.mean.allSatisfy { $0 > 990 })
        let raw = try CSVTable.read(URL(fileURLWithPath: e.testData!), labelColumn: "label")
        let accuracy = try evaluate(model, on: raw.standardized(with: stats)).accuracy
        #expect(abs(accuracy - result.training.test.accuracy) < 1e-9)
    }
}
