import DistillData
import DistillNN
import DistillTensor
import Foundation

/// The optimizers a run can use: Adam (L2 decay added to the gradient), AdamW (decoupled decay),
/// SGD (Nesterov momentum when momentum > 0).
public enum OptimizerKind: String, CaseIterable, Sendable { case adam, adamw, sgd }

/// Learning-rate schedules: constant, cosine decay to 0, or step (×0.1 once, half-way through).
public enum ScheduleKind: String, CaseIterable, Sendable { case constant, cosine, step }

/// How a model is trained: epochs, batches, optimizer, schedule, augmentation, seed.
public struct TrainingOptions: Sendable {
    /// Setting either one explicitly stops it being chosen from the data (`chooseSizes`).
    public var epochs = 10 { didSet { epochsFromData = false } }
    public var batchSize = 128 { didSet { batchSizeFromData = false } }
    /// Whether `chooseSizes(trainingRows:)` picks the epochs / batch size from the training set's
    /// size. An `Experiment` starts with both on (the command line and config files turn one off
    /// by giving it); a bare `TrainingOptions` keeps 10 epochs of 128.
    public var epochsFromData = false, batchSizeFromData = false
    public var optimizer = OptimizerKind.adam
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 0
    public var momentum: Float = 0.9
    public var schedule = ScheduleKind.constant
    public var warmupEpochs = 0
    /// Clip gradients to this global L2 norm.
    public var gradientClip: Float? = nil
    public var seed: UInt64 = 0
    /// Pixels of random shift (0: none), applied to the one view teacher and student both see.
    public var shift = 0
    public var flip = false
    public var quiet = false
    /// Labels only for training rows with index below this (the rest is transfer data: no CE, KD only).
    public var labelLimit: Int? = nil
    /// Mixup α: each batch is enlarged by as many mixed inputs (λ ~ Beta(α, α)), labelled by the teacher only.
    public var mixup: Float? = nil
    public init() {}

    /// Optimizer steps a run without given epochs aims for: the digits example (1,347 rows) needs
    /// about 2,500 at batch 32 to converge, and 10 epochs of Fashion-MNIST at batch 128 are 4,690.
    public static let targetSteps = 2_500
    /// Epochs chosen from the data stay in this range.
    public static let chosenEpochs = 10...200

    /// Chooses the settings left to the data, and says what it chose (nil when nothing was left):
    /// - batch size: the power of two nearest below rows/32, within 16...128 (about 32 batches an
    ///   epoch for small tables; 128 from 4,096 rows up);
    /// - epochs: enough for `targetSteps` optimizer steps, within `chosenEpochs` (10 for any set
    ///   of 320,000 rows or more at batch 128: Fashion-MNIST keeps its 10).
    public mutating func chooseSizes(trainingRows rows: Int) -> String? {
        guard epochsFromData || batchSizeFromData else { return nil }
        var chosen: [String] = []
        if batchSizeFromData {
            var size = 16
            while size < 128 && size * 2 * 32 <= rows { size *= 2 }
            batchSize = size
            chosen.append("batch size \(size)")
        }
        if epochsFromData {
            let stepsPerEpoch = max(1, (rows + batchSize - 1) / batchSize)
            let wanted = (Self.targetSteps + stepsPerEpoch - 1) / stepsPerEpoch
            epochs = min(max(wanted, Self.chosenEpochs.lowerBound), Self.chosenEpochs.upperBound)
            chosen.append("\(epochs) epochs")
        }
        return "\(chosen.joined(separator: ", ")) for \(rows) training rows (about \(Self.targetSteps) optimizer steps, at least \(Self.chosenEpochs.lowerBound) epochs); --epochs and --batch-size choose them"
    }

    public var augmentation: Augmentation? {
        var ops: [Augmentation.Operation] = []
        if shift > 0 { ops.append(.shift(maxPixels: shift)) }
        if flip { ops.append(.horizontalFlip(probability: 0.5)) }
        return ops.isEmpty ? nil : try? Augmentation(ops)
    }

    public var json: [String: Any] {
        var j: [String: Any] = ["epochs": epochs, "batch_size": batchSize, "optimizer": optimizer.rawValue, "learning_rate": decimal(learningRate),
                                "weight_decay": decimal(weightDecay), "momentum": decimal(momentum), "schedule": schedule.rawValue,
                                "warmup_epochs": warmupEpochs, "seed": Int(seed), "shift": shift, "flip": flip]
        if let gradientClip { j["gradient_clip"] = decimal(gradientClip) }
        if let labelLimit { j["label_limit"] = labelLimit }
        if let mixup { j["mixup"] = decimal(mixup) }
        return j
    }

    /// The optimizer for `named` parameters; its checkpointed state is keyed by their names.
    func makeOptimizer(_ named: [(name: String, tensor: Tensor)]) throws -> any Optimizer {
        let optimizer = try makeOptimizer(named.map(\.tensor))
        optimizer.parameterNames = named.map(\.name)
        return optimizer
    }

    func makeOptimizer(_ parameters: [Tensor]) throws -> any Optimizer {
        switch optimizer {
        case .adam: return Adam(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay)
        case .adamw: return Adam.adamW(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay)
        case .sgd: return SGD(parameters: parameters, learningRate: learningRate, momentum: momentum, weightDecay: weightDecay, nesterov: momentum > 0)
        }
    }

    func makeSchedule(totalSteps: Int, stepsPerEpoch: Int) throws -> any LearningRateSchedule {
        let base: any LearningRateSchedule
        switch schedule {
        case .constant: base = ConstantSchedule(learningRate)
        case .cosine: base = CosineSchedule(base: learningRate, totalSteps: totalSteps)
        case .step: base = StepSchedule(base: learningRate, stepSize: max(1, totalSteps / 2), gamma: 0.1)
        }
        return warmupEpochs > 0 ? WarmupSchedule(warmupSteps: warmupEpochs * stepsPerEpoch, then: base) : base
    }
}

/// A Float as the Double with the same shortest decimal form (0.001, not 0.0010000000474974513),
/// for configuration files people read.
func decimal(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }

/// What a finished (or resumed and finished) training run reports.
public struct TrainingSummary<Report: TestReport> {
    public var test: Report
    /// The best `score` over the epochs (the test accuracy for a classifier).
    public var bestScore: Double
    public var epochsRun: Int
    public var samplesPerSecond: Double
}

/// An error during training that stops the run (the last good checkpoint is kept).
public struct TrainingError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// The one training loop, for every task: a classifier trained with a distillation objective
/// (plain cross-entropy is the objective `[ce]`) or a regression model (`RegressionObjective`).
///
/// Each epoch: seeded shuffle, optional augmentation (one view, seen by teacher and student
/// alike), teacher forward without gradients, student forward/backward, optimizer step. After
/// each epoch: the test report (`evaluate`), a line in `metrics.jsonl`, the best model, and an
/// atomic checkpoint from which `--resume` continues. Ctrl-C and SIGTERM stop after the current
/// step with a checkpoint; a non-finite loss or gradient stops the run, keeping the last checkpoint.
public final class Trainer<Report: TestReport> {
    public let student: Sequential
    public let studentInfo: SavedModel
    public let teachers: [Teacher]
    public let objective: any TrainingObjective
    public let options: TrainingOptions
    public let train: LabeledDataset
    /// Scores the student on held-out data after each epoch.
    public let evaluate: (Sequential) throws -> Report
    public let run: RunFolder?
    /// Called after each epoch with (epoch, the test report's score).
    public var onEpoch: ((Int, Double) -> Void)?

    public init(student: Sequential, studentInfo: SavedModel, teachers: [Teacher], objective: any TrainingObjective,
                options: TrainingOptions, train: LabeledDataset, run: RunFolder?, evaluate: @escaping (Sequential) throws -> Report) throws {
        if objective.needsTeacher && teachers.isEmpty {
            throw TensorError("the losses \(objective.termNames) need a teacher (--teacher)")
        }
        if objective.needsLabels && !train.isLabeled {
            throw TensorError("the losses include ce or dkd, which need labels; this training data has none")
        }
        self.student = student; self.studentInfo = studentInfo; self.teachers = teachers; self.objective = objective
        self.options = options; self.train = train; self.run = run; self.evaluate = evaluate
    }

    /// An MLP student trained on its logits alone runs through a `TrainingPlan` (its first layer
    /// split across the cores, no graph); anything else (feature losses, dropout, convolutions)
    /// through the autograd graph. nil for the latter.
    public var trainingPlan: TrainingPlan? {
        objective.studentFeatureNames.isEmpty ? TrainingPlan(student, exampleShape: Array(train.featureShape.dropFirst())) : nil
    }

    public func fit(resume: Bool = false) throws -> TrainingSummary<Report> {
        let loader = try BatchLoader(dataset: train, batchSize: options.batchSize, shuffle: true, seed: options.seed,
                                     augmentation: options.augmentation)
        let stepsPerEpoch = loader.batchesPerEpoch
        student.train()

        // Feature taps and adapters, sized from one batch.
        let studentTaps = objective.studentFeatureNames.isEmpty ? nil : try student.tapOutputs(objective.studentFeatureNames)
        defer { student.removeTaps() }
        if !objective.studentFeatureNames.isEmpty {
            let probe = try loader.batch(at: BatchPosition(epoch: 0, batch: 0))
            _ = withNoGrad { student(probe.inputs) }
            let teacherFeatures = try teachers[0].forward(probe.inputs, indices: probe.indices, features: objective.teacherFeatureNames).features
            try objective.prepareAdapters(studentFeatures: studentTaps?.outputs ?? [:], teacherFeatures: teacherFeatures, seed: options.seed)
        }
        let optimizer = try options.makeOptimizer(student.namedParameters().filter(\.tensor.requiresGrad).map { ("student.\($0.name)", $0.tensor) }
                                                  + objective.adapterParameters.enumerated().map { ("adapter.\($0.offset)", $0.element) })
        let plan = trainingPlan
        let schedule = try options.makeSchedule(totalSteps: options.epochs * stepsPerEpoch, stepsPerEpoch: stepsPerEpoch)

        var startEpoch = 0
        var best = 0.0
        var resumed = RunFolder.CheckpointState()
        if resume, let run {
            resumed = try run.loadCheckpoint(student: student, optimizer: optimizer, adapters: objective.adapterParameters)
            guard resumed.epochsDone <= options.epochs else {
                throw TrainingError(message: "\(run.checkpoint.path) is after epoch \(resumed.epochsDone), past the \(options.epochs) epochs of this run")
            }
            guard resumed.nextBatch < stepsPerEpoch else {
                throw TrainingError(message: "\(run.checkpoint.path) stops at batch \(resumed.nextBatch) of an epoch that has \(stepsPerEpoch); was the data or batch size changed?")
            }
            startEpoch = resumed.epochsDone
            best = resumed.bestAccuracy
            if !options.quiet {
                let position = resumed.nextBatch > 0 ? "at batch \(resumed.nextBatch + 1) of epoch \(startEpoch + 1)" : "after epoch \(startEpoch)"
                log("resuming \(run.url.path) \(position) (best test score \(String(format: "%.4f", best)))")
            }
        }
        // With a run folder (the CLI), Ctrl-C and SIGTERM stop after the current step with a checkpoint.
        let stop = run == nil ? nil : StopRequest.install()
        defer { stop?.uninstall() }
        func interrupted(_ signal: Int32, _ position: String, _ folder: RunFolder) -> TrainingInterrupted {
            TrainingInterrupted(message: "interrupted (signal \(signal)) \(position); checkpoint saved, continue with: distill train --resume \(folder.url.path)", signal: signal)
        }
        /// A run-folder write, with the context a failed one needs (a full disk keeps the previous file).
        func save(_ what: String, _ write: () throws -> Void) throws {
            do { try write() } catch {
                throw TrainingError(message: "cannot write the \(what): \(error); training stopped, the previous checkpoint\(run.map { " in \($0.url.path)" } ?? "") is intact (free some disk space, then --resume)")
            }
        }
        let dropouts = student.namedModules().compactMap { $0.module as? Dropout }
        let parameterNames = student.namedParameters().map { ($0.name, $0.tensor) } + objective.adapterParameters.enumerated().map { ("adapter.\($0.offset)", $0.element) }
        var lastReport: Report? = nil
        var throughput: [Double] = []
        for epoch in startEpoch..<options.epochs {
            let bar = ProgressBar(title: "epoch \(epoch + 1)/\(options.epochs)", total: stepsPerEpoch, quiet: options.quiet)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let firstBatch = epoch == startEpoch ? resumed.nextBatch : 0
            var seen = 0, lossSum = 0.0
            var partSums: [String: Double] = [:]
            if firstBatch > 0 {
                seen = Int(resumed.sums["seen"] ?? 0)
                lossSum = resumed.sums["loss"] ?? 0
                for (k, v) in resumed.sums where k.hasPrefix("part.") { partSums[String(k.dropFirst(5))] = v }
            }
            for (offset, batch) in try loader.batches(epoch: epoch, startingAt: firstBatch).enumerated() {
                let step = firstBatch + offset
                if let bad = batch.inputs.firstNonFiniteIndex {
                    let row = bad / max(1, batch.inputs.count / batch.count)
                    throw TrainingError(message: "\(train.source.map { "\($0): " } ?? "")non-finite input value in training sample \(batch.indices[row]) (epoch \(epoch + 1), step \(step + 1)); nothing was trained on it")
                }
                let globalStep = epoch * stepsPerEpoch + step
                optimizer.learningRate = schedule.learningRate(atStep: globalStep)
                for (k, dropout) in dropouts.enumerated() {  // masks from (seed, step): the same after --resume
                    dropout.reseed(options.seed ^ UInt64(globalStep) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(k + 1) &* 0xD1B5_4A32_D192_ED03)
                }
                // Label-scarce training and mixup (TeacherOutputs.swift): a label of -1 means "no label here".
                let (inputs, labels, indices) = TransferSet.prepare(inputs: batch.inputs, labels: batch.labels, indices: batch.indices, labelLimit: options.labelLimit, mixup: options.mixup,
                                                                   seed: options.seed, step: globalStep)
                var teacherLogits: [Tensor] = []
                var teacherFeatures: [String: Tensor] = [:]
                if objective.needsTeacher {
                    for (i, teacher) in teachers.enumerated() {
                        let out = try teacher.forward(inputs, indices: indices, features: i == 0 ? objective.teacherFeatureNames : [])
                        guard out.logits.isFinite else {
                            throw TrainingError(message: "teacher \(teacher.name) gave non-finite outputs at epoch \(epoch + 1), step \(step + 1) (samples \(indices.prefix(4))...)")
                        }
                        teacherLogits.append(out.logits)
                        if i == 0 { teacherFeatures = out.features }
                    }
                }
                optimizer.zeroGrad()
                let logits = plan?.forward(inputs) ?? student(inputs)
                let (loss, parts) = try objective.loss(studentOutputs: logits, studentFeatures: studentTaps?.outputs ?? [:],
                                                       teacherOutputs: teacherLogits, teacherFeatures: teacherFeatures,
                                                       labels: labels, indices: indices, epoch: epoch)
                let value = loss.item()
                guard value.isFinite else {
                    throw TrainingError(message: "the loss became \(value) at epoch \(epoch + 1), step \(step + 1) (terms: \(parts)); training stopped\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate.")
                }
                loss.backward()
                if let plan, let g = logits.grad { plan.backward(g) }
                for (name, parameter) in parameterNames {
                    if let g = parameter.grad, let i = g.firstNonFiniteIndex {
                        throw TrainingError(message: "non-finite gradient (\(g.data[i])) in \(name) at epoch \(epoch + 1), step \(step + 1), with a finite loss \(value); the weights were not updated\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate or --gradient-clip.")
                    }
                }
                if let clip = options.gradientClip { clipGradientNorm(optimizer.parameters, maxNorm: clip) }
                optimizer.step()
                seen += batch.count
                lossSum += Double(value) * Double(batch.count)
                for (k, v) in parts { partSums[k, default: 0] += Double(v) * Double(batch.count) }
                if let run, let signal = stop?.received, step + 1 < stepsPerEpoch {
                    var state = RunFolder.CheckpointState(epochsDone: epoch, bestAccuracy: best, nextBatch: step + 1)
                    state.sums = ["seen": Double(seen), "loss": lossSum]
                    for (k, v) in partSums { state.sums["part.\(k)"] = v }
                    try save("checkpoint") { try run.saveCheckpoint(student: student, optimizer: optimizer, adapters: objective.adapterParameters, state: state) }
                    throw interrupted(signal, "at epoch \(epoch + 1), after step \(step + 1) of \(stepsPerEpoch)", run)
                }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                if step % 20 == 0 || step + 1 == stepsPerEpoch {
                    bar.update(step + 1, unitsPerSecond: Double(seen) / elapsed, detail: String(format: "loss %.4f", lossSum / Double(seen)))
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            throughput.append(Double(seen) / seconds)
            let report: Report
            do { report = try evaluate(student) } catch let error as TensorError {
                throw TrainingError(message: "after epoch \(epoch + 1) the student's test outputs are not usable (\(error.message)); training stopped\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate or --gradient-clip.")
            }
            lastReport = report
            let improved = report.score > best
            best = max(best, report.score)
            var line: [String: Any] = ["epoch": epoch + 1, "train_loss": lossSum / Double(max(seen, 1)),
                                       "learning_rate": optimizer.learningRate, "seconds": seconds,
                                       "samples_per_second": Double(seen) / seconds]
            line.merge(report.metrics) { _, new in new }
            for (k, v) in partSums { line["loss_\(k)"] = v / Double(max(seen, 1)) }
            if let run {
                try save("metrics") { try run.appendMetrics(line, epoch: epoch + 1) }
                if improved { try save("best model") { try studentInfo.save(student, to: run.bestModel) } }
                try save("checkpoint") {
                    try run.saveCheckpoint(student: student, optimizer: optimizer, adapters: objective.adapterParameters,
                                           state: RunFolder.CheckpointState(epochsDone: epoch + 1, bestAccuracy: best))
                }
                if let signal = stop?.received, epoch + 1 < options.epochs {
                    throw interrupted(signal, "after epoch \(epoch + 1)", run)
                }
            }
            if !options.quiet {
                log(String(format: "epoch %d/%d  loss %.4f  ", epoch + 1, options.epochs, lossSum / Double(max(seen, 1))) + report.line
                    + String(format: "  (%.1f s, %.0f samples/s)", seconds, Double(seen) / seconds))
            }
            onEpoch?(epoch + 1, report.score)
        }
        let final = try lastReport ?? evaluate(student)
        if let run { try studentInfo.save(student, to: run.finalModel) }
        return TrainingSummary(test: final, bestScore: max(best, final.score), epochsRun: options.epochs - startEpoch,
                               samplesPerSecond: throughput.isEmpty ? 0 : throughput.reduce(0, +) / Double(throughput.count))
    }
}

extension Trainer where Report == EvaluationReport {
    /// A classifier's trainer, scored by its accuracy on `test`.
    public convenience init(student: Sequential, studentInfo: SavedModel, teachers: [Teacher], objective: DistillationObjective,
                            options: TrainingOptions, train: LabeledDataset, test: LabeledDataset, run: RunFolder?) throws {
        try self.init(student: student, studentInfo: studentInfo, teachers: teachers, objective: objective, options: options,
                      train: train, run: run, evaluate: { try DistillTraining.evaluate($0, on: test) })
    }
}
