import DistillData
import DistillNN
import DistillONNX
import DistillTensor
import Foundation

// MARK: - Regression students

/// Test-set quality of a regression model, in the target's units.
public struct RegressionReport: Sendable {
    public var count: Int
    public var rmse: Double
    public var mae: Double
    /// Coefficient of determination, 1 − SSE/SST.
    public var r2: Double
    public var json: [String: Any] { ["count": count, "rmse": rmse, "mae": mae, "r2": r2] }
}

/// A regression dataset: standardised features `[N, F]` and raw targets.
struct RegressionSplit {
    var features: Tensor
    var targets: [Float]
}

/// A regression run (an `Experiment` with a `target` column): a CSV with a numeric target, an
/// MLP student with one output trained with MSE, optionally distilled from a teacher (a saved
/// regression model, an ONNX regressor, or cached outputs of one value per training row) with
/// `regressionDistillationLoss`: `w · MSE(s, t) + (1 − w) · MSE(s, y)`, w the `kd` term's weight.
///
/// It runs in the one training loop (`Trainer`), so it resumes, checkpoints, stops cleanly on
/// Ctrl-C and on non-finite values like a classifier's run, and writes the same run folder.
/// Features are standardised with the training split's statistics and the target with its mean
/// and standard deviation (both stored in the saved model; reports are in the target's own
/// units). Without a test file, 20% of the training file is held out (seeded).
public enum RegressionRunner {
    public struct Result {
        public var test: RegressionReport
        public var teacherTest: RegressionReport?
        public var student: Sequential
        public var parameters: Int
        public var runFolder: RunFolder?
        public var training: TrainingSummary<RegressionReport>

        /// What `distill train/kd --target --json` prints.
        public var json: [String: Any] {
            var object = test.json
            object["params"] = parameters
            if let teacherTest { object["teacher"] = teacherTest.json }
            if let runFolder { object["run"] = runFolder.url.path }
            return object
        }

        /// What `distill train/kd --target` prints: the teacher's and the student's test errors.
        public var text: String {
            var lines: [String] = []
            if let t = teacherTest { lines.append(String(format: "teacher   test RMSE %.4f  MAE %.4f  R² %.4f", t.rmse, t.mae, t.r2)) }
            lines.append((teacherTest == nil ? "trained  " : "distilled") + String(format: " test RMSE %.4f  MAE %.4f  R² %.4f  (%d parameters, %d rows)",
                                                                                    test.rmse, test.mae, test.r2, parameters, test.count))
            lines.append(runFolder.map { "run folder: \($0.url.path)" } ?? "no run folder (no --output): the model was not saved; add --output DIR to keep it")
            return lines.joined(separator: "\n")
        }
    }

    public static func run(_ e: Experiment, resume: Bool = false) throws -> Result {
        var e = e
        guard let targetColumn = e.target else { throw TensorError("a regression run needs a target column ('target', --target)") }
        try e.validate()
        try BLAS.ensureLoaded()
        let table = try CSVTable.load(URL(fileURLWithPath: e.data))
        let schema = try table.inferSchema(targetColumn: targetColumn)
        let all = try table.regression(schema: schema)
        var trainRows: [Int], test: RegressionDataset
        if let testData = e.testData {
            trainRows = Array(0..<all.count)
            test = try CSVTable.load(URL(fileURLWithPath: testData)).regression(schema: schema)
        } else {
            trainRows = DataSource.csvTrainingRows(total: all.count, seed: e.options.seed)
            let held = Set(trainRows)
            test = try subset(all, (0..<all.count).filter { !held.contains($0) })
        }
        if let limit = e.trainLimit { trainRows = Array(trainRows.prefix(max(0, limit))) }
        let train = try subset(all, trainRows)
        guard train.count > 0, test.count > 0 else { throw TensorError("\(e.data): need training and test rows, got \(train.count) and \(test.count)") }
        if let bad = train.features.firstNonFiniteIndex { throw TensorError("\(e.data): non-finite feature in training row \(trainRows[bad / train.features.shape[1]])") }
        if let bad = train.targets.firstNonFiniteIndex { throw TensorError("\(e.data): non-finite target in training row \(trainRows[bad])") }
        if let chosen = e.options.chooseSizes(trainingRows: train.count) {
            try e.validate()
            if !e.options.quiet { log(chosen) }
        }

        // Teacher predictions for the training rows, in the target's units (checked before training).
        var teacherTrain: [Float]? = nil
        var teacherTest: RegressionReport? = nil
        if let path = e.teacherOutputs {
            let file = try TeacherOutputs.read(path, array: e.teacherOutputsArray)
            guard file.views == 1 else { throw TensorError("\(path): regression outputs must be [N] or [N, 1]") }
            try TeacherOutputs.check(file, kind: .logits, expectedRows: file.rows == train.count ? train.count : all.count, expectedClasses: 1)
            let rows = file.rows == train.count ? Array(0..<train.count) : trainRows
            teacherTrain = rows.map { file.values.data[$0] }
        } else if let path = e.teachers.first {
            let predict = try regressionTeacher(path, features: train.features.shape[1])
            teacherTrain = try predict(train.features)
            teacherTest = report(try predict(test.features), test.targets.scalars)
        }

        let featureStats = try FeatureStatistics(computedFrom: train.features)
        let y = train.targets.scalars
        let mean = y.reduce(0, +) / Float(y.count)
        let std = max((y.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(y.count)).squareRoot(), 1e-6)
        let f = train.features.shape[1]
        let student = try ModelZoo.build(e.student, inputShape: [f], numClasses: 1, seed: e.options.seed)
        try ModelShapes.check(student, inputShape: [f], numClasses: 1, what: "student '\(e.student.prefix(80))' on \(e.data) (\(f) features, one target)")
        let info = SavedModel(spec: e.student, inputShape: [f], numClasses: 1, extra: [
            Tabular.statisticsKey: try Tabular.encode(featureStats), Tabular.targetKey: "\(mean),\(std)",
            "task": "regression", "target": targetColumn,
        ])
        let teachers: [Teacher] = teacherTrain.map { values in
            [CachedTeacher(logits: Tensor(shape: [values.count, 1], scalars: values.map { ($0 - mean) / std }),
                           name: e.teacherOutputs ?? e.teachers.first ?? "teacher")]
        } ?? []
        let objective = RegressionObjective(targets: y.map { ($0 - mean) / std }, teacherWeight: teacherTrain == nil ? nil : e.regressionTeacherWeight)
        let run = e.output.map { RunFolder(URL(fileURLWithPath: $0)) }
        let isMain = try Distributed.world.isMain  // under mpirun, rank 0 alone writes the run folder
        if let run, isMain {
            try run.create(replacingEarlierRun: !resume)
            if !resume { try run.writeJSON(e.json, to: run.config) }
        }
        let testTargets = test.targets.scalars, testFeatures = test.features
        let trainer = try Trainer(student: student, studentInfo: info, teachers: teachers, objective: objective, options: e.options,
                                  train: LabeledDataset(features: try featureStats.apply(to: train.features), labels: [], numClasses: 0, source: e.data),
                                  run: run) { net in
            report(try RegressionModel(net: net, info: info, featureStats: featureStats, mean: mean, std: std).predict(testFeatures), testTargets)
        }
        // Under mpirun each rank predicts its share of the test rows (`predictions`).
        trainer.evaluateOnRanks = { net, world in
            let model = RegressionModel(net: net, info: info, featureStats: featureStats, mean: mean, std: std)
            return report(try predictions(model.predict, features: testFeatures, world: world), testTargets)
        }
        let summary = try trainer.fit(resume: resume)
        if let run, isMain {
            try run.writeJSON(["test": summary.test.json, "teacher_test": teacherTest?.json ?? NSNull(), "params": student.parameterCount],
                              to: run.url.appendingPathComponent("summary.json"))
            let title = "\(teacherTrain == nil ? "trained" : "distilled") \(e.student) on \(e.data), target \(targetColumn)"
            let page = RunReport(title: title, metrics: run.readMetrics(), regression: summary.test, teacherRegression: teacherTest, configuration: e.json)
            try AtomicFile.write(Data(page.html.utf8), to: run.report)
        }
        return Result(test: summary.test, teacherTest: teacherTest, student: student, parameters: student.parameterCount, runFolder: run, training: summary)
    }

    /// `predict` over the rows of `features` ([N, F]). With several ranks each predicts its
    /// `blockShare` of blocks of `block` rows and every rank receives all N predictions in order
    /// (`allgather`), so a report made from them is the same on every rank; one process predicts
    /// every row in one call.
    static func predictions(_ predict: (Tensor) throws -> [Float], features: Tensor, world: Distributed, block: Int = 1024) throws -> [Float] {
        guard world.isDistributed else { return try predict(features) }
        let rows = features.shape[0], mine = world.blockShare(of: rows, block: block)
        var local: [Float] = []
        for start in stride(from: mine.lowerBound, to: mine.upperBound, by: block) {
            let part = Array(start..<min(start + block, mine.upperBound))
            local += try predict(withNoGrad { features.indexSelect(axis: 0, indices: part) })
        }
        var all: [Float] = []
        all.reserveCapacity(rows)
        for part in try world.allgather(local.withUnsafeBytes { Data($0) }) {
            part.withUnsafeBytes { all += $0.bindMemory(to: Float.self) }
        }
        guard all.count == rows else { throw TensorError("the ranks' predictions cover \(all.count) of \(rows) test rows") }
        return all
    }

    /// A regression teacher as a function from raw rows [N, F] to predictions in the target's
    /// units: a DistillKit regression model (`distill train --target`), or an ONNX regressor
    /// (scikit-learn, XGBoost, LightGBM, PyTorch: one FLOAT output of one value per row) fed the rows as given.
    public static func regressionTeacher(_ path: String, features: Int) throws -> (Tensor) throws -> [Float] {
        guard FileKind(path) == .onnx else { return try RegressionModel.load(path).predict }
        let onnx = try ONNXTeacher(url: URL(fileURLWithPath: path))
        try onnx.checkExampleShape([features])
        guard !onnx.outputIsProbability else {
            throw TensorError("\(path): the output '\(onnx.outputName)' holds class probabilities; a regression teacher gives one value per row")
        }
        return { rows in
            var predictions: [Float] = []
            predictions.reserveCapacity(rows.shape[0])
            for start in stride(from: 0, to: rows.shape[0], by: 1024) {
                let part = Array(start..<min(start + 1024, rows.shape[0]))
                let out = try onnx.outputs(withNoGrad { rows.indexSelect(axis: 0, indices: part) })
                guard out.shape == [part.count, 1] else {
                    throw TensorError("\(path): the output '\(onnx.outputName)' has shape \(out.shape) for \(part.count) rows; a regression teacher gives [N, 1]")
                }
                predictions += out.scalars
            }
            return predictions
        }
    }

    static func subset(_ d: RegressionDataset, _ rows: [Int]) throws -> RegressionDataset {
        try RegressionDataset(features: withNoGrad { d.features.indexSelect(axis: 0, indices: rows) },
                              targets: Tensor(shape: [rows.count], scalars: rows.map { d.targets.data[$0] }),
                              featureNames: d.featureNames, targetName: d.targetName)
    }

    /// RMSE, MAE and R² of `predictions` against `targets`.
    public static func report(_ predictions: [Float], _ targets: [Float]) -> RegressionReport {
        let n = Double(max(targets.count, 1))
        var sse = 0.0, sae = 0.0
        for (p, t) in zip(predictions, targets) { let d = Double(p - t); sse += d * d; sae += abs(d) }
        let mean = targets.reduce(0.0) { $0 + Double($1) } / n
        let sst = targets.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) }
        return RegressionReport(count: targets.count, rmse: (sse / n).squareRoot(), mae: sae / n, r2: sst > 0 ? 1 - sse / sst : 0)
    }
}

/// A saved regression model with its standardisation: predicts in the target's units from raw rows.
public struct RegressionModel {
    public let net: Sequential
    public let info: SavedModel
    public let featureStats: FeatureStatistics
    public let mean: Float, std: Float

    public static func load(_ path: String) throws -> RegressionModel {
        let (net, info) = try SavedModel.load(URL(fileURLWithPath: path))
        guard info.extra["task"] == "regression", let stats = try Tabular.statistics(of: info, source: path),
              let target = try Tabular.targetScaling(of: info, source: path) else {
            throw TensorError("\(path): not a regression model from `distill train --target` (no feature and target statistics)")
        }
        return RegressionModel(net: net, info: info, featureStats: stats, mean: target.mean, std: target.std)
    }

    /// Predictions for raw feature rows `[N, F]`, in the target's units.
    public func predict(_ raw: Tensor) throws -> [Float] {
        let wasTraining = net.isTraining
        net.eval()
        defer { if wasTraining { net.train() } }
        let x = try featureStats.apply(to: raw)
        let out = withNoGrad { net(x) }
        return out.scalars.map { $0 * std + mean }
    }
}
