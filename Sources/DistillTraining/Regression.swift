import DistillData
import DistillNN
import DistillTensor
import Foundation

// MARK: - Tabular standardisation, kept with the model

/// Tabular (CSV) inputs are standardised with statistics fitted on the training split only; the
/// statistics are stored in the saved model's metadata under `feature_statistics` (JSON of
/// `FeatureStatistics`), so `distill eval`, a teacher loaded from the file, and `cache-teacher`
/// apply them to raw rows themselves: users never standardise by hand. Regression models also keep
/// `target_statistics` (`mean,std` of the target), their outputs being in standardised units.
public enum Tabular {
    /// SavedModel metadata key of the feature statistics.
    public static let statisticsKey = "feature_statistics"
    /// SavedModel metadata key of the regression target's `mean,std`.
    public static let targetKey = "target_statistics"

    /// Statistics fitted on `train` when `data` is a `.csv` file; nil for images.
    public static func standardization(for data: String, train: LabeledDataset) throws -> FeatureStatistics? {
        guard data.lowercased().hasSuffix(".csv"), train.count > 0 else { return nil }
        return try FeatureStatistics(computedFrom: train)
    }

    public static func encode(_ statistics: FeatureStatistics) throws -> String {
        String(decoding: try JSONEncoder().encode(statistics), as: UTF8.self)
    }

    public static func decode(_ text: String, source: String) throws -> FeatureStatistics {
        let decoded: FeatureStatistics
        do { decoded = try JSONDecoder().decode(FeatureStatistics.self, from: Data(text.utf8)) } catch {
            throw TensorError("\(source): the stored feature statistics cannot be read (\("\(error)".prefix(200)))")
        }
        // Decoding does not run the validating initializer: run it, so that counts, shape and
        // finiteness are checked for stored statistics exactly as for computed ones.
        do {
            try ModelShapes.checkExampleShape(decoded.exampleShape, what: "feature statistics")
            return try FeatureStatistics(exampleShape: decoded.exampleShape, mean: decoded.mean, std: decoded.std)
        } catch {
            throw TensorError("\(source): the stored feature statistics are invalid (\(error))")
        }
    }

    /// The feature statistics a saved model keeps, if any.
    public static func statistics(of info: SavedModel, source: String) throws -> FeatureStatistics? {
        guard let text = info.extra[statisticsKey] else { return nil }
        let statistics = try decode(text, source: source)
        guard statistics.mean.count == info.inputShape.reduce(1, *) else {
            throw TensorError("\(source): the stored feature statistics are for \(statistics.mean.count) features, the model takes \(info.inputShape)")
        }
        return statistics
    }

    /// A regression model's target scaling (`y = output · std + mean`), or nil for a classifier.
    /// Stored as "mean,std" under `targetKey`; anything else there is an error naming the file.
    public static func targetScaling(of info: SavedModel, source: String) throws -> (mean: Float, std: Float)? {
        guard let text = info.extra[targetKey] else { return nil }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let mean = parts[0], let std = parts[1], mean.isFinite, std.isFinite, std > 0 else {
            throw TensorError("\(source): \(targetKey) must be 'mean,std' (finite, std > 0), got '\(text.prefix(60))'")
        }
        return (mean, std)
    }

    /// `x · std + mean` per feature: raw features from standardised ones.
    public static func unstandardize(_ x: Tensor, with s: FeatureStatistics) -> Tensor {
        let f = s.mean.count, n = x.count / max(f, 1)
        let out = Tensor(uninitializedShape: x.shape)
        let src = x.data, dst = out.data
        let scale = s.std.map { $0 < FeatureStatistics.minStd ? 1 : $0 }
        for i in 0..<n { for j in 0..<f { dst[i * f + j] = src[i * f + j] * scale[j] + s.mean[j] } }
        return out
    }

    /// `teacher`, fed inputs standardised with `inputStatistics`, given the inputs it expects:
    /// raw rows (an ONNX model), or rows standardised with its own stored statistics. `rawRows`
    /// are the rows the user gave, indexed like the batches: the teacher gets those very values
    /// (un-standardising would change them by rounding, enough to flip a tree's split).
    public static func teacher(_ teacher: Teacher, path: String, inputStatistics: FeatureStatistics, rawRows: LabeledDataset? = nil) throws -> Teacher {
        var own: FeatureStatistics? = nil
        if path.lowercased().hasSuffix(".safetensors") {
            own = try statistics(of: SavedModel.load(URL(fileURLWithPath: path)).info, source: path)
        }
        return StandardizingTeacher(teacher, own: own, input: inputStatistics, rawRows: rawRows)
    }
}

/// A teacher that converts its inputs: from the student's standardisation (`input`, nil: raw) to
/// raw rows, then to its own (`own`, nil: raw). Rows of a batch that are rows of `rawRows` (index
/// ≥ 0) are taken from there as the user gave them; only rows made in training (mixup, index −1)
/// are un-standardised.
public final class StandardizingTeacher: Teacher {
    public let base: Teacher
    public let own: FeatureStatistics?
    public let input: FeatureStatistics?
    public let rawRows: LabeledDataset?
    public init(_ base: Teacher, own: FeatureStatistics?, input: FeatureStatistics?, rawRows: LabeledDataset? = nil) {
        self.base = base; self.own = own; self.input = input; self.rawRows = rawRows
    }
    public var name: String { base.name }
    public var parameterCount: Int { base.parameterCount }
    public var bytes: Int { base.bytes }

    /// The raw rows behind `x` (standardised like the student's inputs; row r is dataset row `indices[r]` when ≥ 0).
    func raw(_ x: Tensor, indices: [Int]) -> Tensor {
        guard let input else { return x }
        guard let rawRows, indices.count == x.shape[0] else { return Tabular.unstandardize(x, with: input) }
        let real = indices.indices.filter { indices[$0] >= 0 && indices[$0] < rawRows.count }
        if real.count == indices.count { return rawRows.rows(indices) }
        let out = Tabular.unstandardize(x, with: input)
        let given = rawRows.rows(real.map { indices[$0] })  // one gather for every real row of the batch
        let f = x.count / max(x.shape[0], 1)
        for (k, r) in real.enumerated() { (out.data + r * f).update(from: given.data + k * f, count: f) }
        return out
    }

    public func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        let x = raw(inputs, indices: indices)
        return try base.forward(own.map { try $0.apply(to: x) } ?? x, indices: indices, features: features)
    }
}

// MARK: - Regression students

/// A regression run: a CSV with a numeric target column, an MLP student with one output trained
/// with MSE, optionally distilled from a teacher (a saved regression model, or cached outputs of
/// one value per training row) with `regressionDistillationLoss`:
/// `w · MSE(s, t) + (1 − w) · MSE(s, y)`.
///
/// Features are standardised with the training split's statistics and the target with its mean
/// and standard deviation (both stored in the saved model; predictions are reported in the
/// target's own units). Without a test file, 20% of the training file is held out (seeded).
public struct RegressionExperiment {
    public var data: String
    public var testData: String? = nil
    public var target: String
    public var student = "mlp:64-1"
    public var teacher: String? = nil
    public var teacherOutputs: String? = nil
    public var teacherOutputsArray: String? = nil
    /// `w`, the weight of the teacher term (1: the teacher only; ignored without a teacher).
    public var teacherWeight: Float = 0.5
    /// Use only the first N training rows.
    public var trainLimit: Int? = nil
    public var options = TrainingOptions()
    public var output: String? = nil
    public init(data: String, target: String) { self.data = data; self.target = target }
}

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

public enum RegressionRunner {
    public struct Result {
        public var test: RegressionReport
        public var teacherTest: RegressionReport?
        public var student: Sequential
        public var parameters: Int
        public var runFolder: RunFolder?
    }

    public static func run(_ e: RegressionExperiment) throws -> Result {
        var e = e
        try BLAS.ensureLoaded()
        guard e.options.epochs >= 1, e.options.batchSize >= 1 else { throw TensorError("epochs and batch size must be at least 1") }
        guard e.teacher == nil || e.teacherOutputs == nil else { throw TensorError("give either a teacher model or cached teacher outputs, not both") }
        let table = try CSVTable.load(URL(fileURLWithPath: e.data))
        let schema = try table.inferSchema(targetColumn: e.target)
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
        if let chosen = e.options.chooseSizes(trainingRows: train.count), !e.options.quiet { log(chosen) }

        // Teacher predictions for the training rows, in the target's units (checked before training).
        var teacherTrain: [Float]? = nil
        var teacherTest: RegressionReport? = nil
        if let path = e.teacherOutputs {
            let file = try TeacherOutputs.read(path, array: e.teacherOutputsArray)
            guard file.views == 1 else { throw TensorError("\(path): regression outputs must be [N] or [N, 1]") }
            try TeacherOutputs.check(file, kind: .logits, expectedRows: file.rows == train.count ? train.count : all.count, expectedClasses: 1)
            let rows = file.rows == train.count ? Array(0..<train.count) : trainRows
            teacherTrain = rows.map { file.values.data[$0] }
        } else if let path = e.teacher {
            let predict = try regressionTeacher(path, features: train.features.shape[1])
            teacherTrain = try predict(train.features)
            teacherTest = report(try predict(test.features), test.targets.scalars)
        }

        let featureStats = try FeatureStatistics(computedFrom: train.features)
        let y = train.targets.scalars
        let mean = y.reduce(0, +) / Float(y.count)
        let std = max((y.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(y.count)).squareRoot(), 1e-6)
        let xs = try featureStats.apply(to: train.features)
        let ys = y.map { ($0 - mean) / std }
        let ts = teacherTrain?.map { ($0 - mean) / std }

        let f = train.features.shape[1]
        let spec = e.student
        let student = try ModelZoo.build(spec, inputShape: [f], numClasses: 1, seed: e.options.seed)
        try ModelShapes.check(student, inputShape: [f], numClasses: 1, what: "student '\(spec.prefix(80))' on \(e.data) (\(f) features, one target)")
        let info = SavedModel(spec: spec, inputShape: [f], numClasses: 1, extra: [
            Tabular.statisticsKey: try Tabular.encode(featureStats), Tabular.targetKey: "\(mean),\(std)",
            "task": "regression", "target": e.target,
        ])
        let loaderData = try LabeledDataset(features: xs, labels: [], numClasses: 0)
        let loader = try BatchLoader(dataset: loaderData, batchSize: e.options.batchSize, shuffle: true, seed: e.options.seed)
        let optimizer = try e.options.makeOptimizer(student.trainableParameters())
        let schedule = try e.options.makeSchedule(totalSteps: e.options.epochs * loader.batchesPerEpoch, stepsPerEpoch: loader.batchesPerEpoch)
        let run = e.output.map { RunFolder(URL(fileURLWithPath: $0)) }
        try run?.create()
        let model = RegressionModel(net: student, info: info, featureStats: featureStats, mean: mean, std: std)
        student.train()
        var last = report([], [])
        for epoch in 0..<e.options.epochs {
            var lossSum = 0.0, seen = 0
            for (step, batch) in try loader.batches(epoch: epoch).enumerated() {
                optimizer.learningRate = schedule.learningRate(atStep: epoch * loader.batchesPerEpoch + step)
                optimizer.zeroGrad()
                let out = student(batch.inputs)
                let target = Tensor(shape: [batch.count, 1], scalars: batch.indices.map { ys[$0] })
                let loss: Tensor
                if let ts {
                    let teacher = Tensor(shape: [batch.count, 1], scalars: batch.indices.map { ts[$0] })
                    loss = regressionDistillationLoss(student: out, teacher: teacher, target: target, teacherWeight: e.teacherWeight)
                } else {
                    loss = mseLoss(out, target)
                }
                let value = loss.item()
                guard value.isFinite else { throw TrainingError(message: "the loss became \(value) at epoch \(epoch + 1), step \(step + 1); try a lower learning rate") }
                loss.backward()
                optimizer.step()
                lossSum += Double(value) * Double(batch.count); seen += batch.count
            }
            last = report(try model.predict(test.features), test.targets.scalars)
            if !e.options.quiet {
                log(String(format: "epoch %d/%d  loss %.4f  test RMSE %.4f  R² %.4f", epoch + 1, e.options.epochs, lossSum / Double(max(seen, 1)), last.rmse, last.r2))
            }
            if let run {
                try run.appendMetrics(["epoch": epoch + 1, "train_loss": lossSum / Double(max(seen, 1)), "test_rmse": last.rmse, "test_r2": last.r2], epoch: epoch + 1)
            }
        }
        if let run {
            try info.save(student, to: run.finalModel)
            try run.writeJSON(["test": last.json, "teacher_test": teacherTest?.json ?? NSNull(), "params": student.parameterCount],
                              to: run.url.appendingPathComponent("summary.json"))
        }
        return Result(test: last, teacherTest: teacherTest, student: student, parameters: student.parameterCount, runFolder: run)
    }

    /// A regression teacher as a function from raw rows [N, F] to predictions in the target's
    /// units: a DistillKit regression model (`distill train --target`), or an ONNX regressor
    /// (scikit-learn, XGBoost, LightGBM, PyTorch: one FLOAT output of one value per row) fed the rows as given.
    public static func regressionTeacher(_ path: String, features: Int) throws -> (Tensor) throws -> [Float] {
        guard path.lowercased().hasSuffix(".onnx") else { return try RegressionModel.load(path).predict }
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
                let out = try onnx.logits(withNoGrad { rows.indexSelect(axis: 0, indices: part) })
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
