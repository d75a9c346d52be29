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
    /// When set, a run still going at this time stops after the epoch that ends past it (its
    /// checkpoint written) with `TrainingDeadlinePassed`: `distill fit`'s time budget. Not a
    /// setting of the run (never in config.json).
    public var deadline: DispatchTime? = nil
    public init() {}

    /// The largest seed: config files and JSON hold seeds as signed 64-bit integers.
    public static let maxSeed = UInt64(Int64.max)

    /// Throws, naming the setting (as config files and the command line call it), unless every
    /// value is in its range: no 0 or negative epochs, a finite positive learning rate, momentum in
    /// [0, 1), and so on. `Trainer` checks its options with it, as `Experiment.validate` does.
    public func validate() throws {
        func require(_ ok: Bool, _ key: String, _ rule: String, _ value: Any) throws {
            guard ok else { throw TensorError("\(Experiment.setting(key)) must be \(rule), got \("\(value)".prefix(40))") }
        }
        try require((1...Experiment.maxEpochs).contains(epochs), "epochs", "1...\(Experiment.maxEpochs)", epochs)
        try require(seed <= Self.maxSeed, "seed", "0...\(Self.maxSeed)", seed)
        try require((1...Experiment.maxBatchSize).contains(batchSize), "batch_size", "1...\(Experiment.maxBatchSize)", batchSize)
        try require(learningRate > 0 && learningRate.isFinite, "learning_rate", "a positive finite number", learningRate)
        try require(weightDecay >= 0 && weightDecay.isFinite, "weight_decay", "a non-negative finite number", weightDecay)
        try require(momentum >= 0 && momentum < 1, "momentum", "in [0, 1)", momentum)
        if let clip = gradientClip { try require(clip > 0 && clip.isFinite, "gradient_clip", "a positive finite number", clip) }
        if !epochsFromData {  // otherwise checked once the epochs are chosen
            try require((0...epochs).contains(warmupEpochs), "warmup_epochs", "0...epochs (\(epochs))", warmupEpochs)
        }
        try require((0...Experiment.maxShift).contains(shift), "shift", "0...\(Experiment.maxShift) pixels", shift)
        if let labelLimit { try require(labelLimit >= 0, "label_limit", "non-negative", labelLimit) }
        if let mixup { try require(mixup > 0 && mixup.isFinite, "mixup", "a positive finite α", mixup) }
    }

    /// Throws unless the augmentation fits examples of `shape`: a shift or flip moves images
    /// [C, H, W], and a shift as large as a side moves the image out of view (training would see
    /// blank images and learn nothing, silently).
    public func validate(exampleShape shape: [Int]) throws {
        guard shift > 0 || flip else { return }
        guard shape.count == 3 else {
            throw TensorError("'shift' and 'flip' (--shift, --flip) move images [C, H, W]; these examples have shape \(shape)")
        }
        guard shift < min(shape[1], shape[2]) else {
            throw TensorError("\(Experiment.setting("shift")) must be smaller than the images' sides (\(shape[1])×\(shape[2])), got \(shift): a shift that large moves the whole image out of view")
        }
    }

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
        // The note names only the rules applied: a run with given epochs gets no word on steps.
        var chosen: [String] = [], rules: [String] = [], options: [String] = []
        if batchSizeFromData {
            var size = 16
            while size < 128 && size * 2 * 32 <= rows { size *= 2 }
            batchSize = size
            chosen.append("batch size \(size)")
            rules.append("about 32 batches an epoch, 16 to 128 rows each")
            options.append("--batch-size")
        }
        if epochsFromData {
            let stepsPerEpoch = max(1, (rows + batchSize - 1) / batchSize)
            let wanted = (Self.targetSteps + stepsPerEpoch - 1) / stepsPerEpoch
            epochs = min(max(wanted, Self.chosenEpochs.lowerBound), Self.chosenEpochs.upperBound)
            chosen.append("\(epochs) epochs")
            rules.append("about \(Self.targetSteps) optimizer steps, at least \(Self.chosenEpochs.lowerBound) epochs")
            options.append("--epochs")
        }
        return "\(chosen.joined(separator: ", ")) for \(rows) training rows (\(rules.joined(separator: "; "))); "
            + "\(options.joined(separator: " and ")) \(options.count == 1 ? "chooses it" : "choose them")"
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
                                "warmup_epochs": warmupEpochs, "seed": Int(exactly: seed) ?? Int.max /* refused by validate() */, "shift": shift, "flip": flip]
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
///
/// Data parallel (under `mpirun`, or any `Distributed` group): every rank sees the same global
/// batches (same seed, same permutation) and trains on its contiguous `share` of each; the
/// gradients are averaged over the ranks, weighted by each rank's rows, before the non-finite
/// checks, clipping and the step, so every rank takes the same step a single process would (up to
/// float summation order) on a model whose loss is a mean of per-row terms. Batch-norm running
/// statistics are averaged at each epoch's end, and each rank scores its share of the test set
/// (`evaluate(_:on:world:)`: one process's report, bit for bit). Rank 0 alone writes the run folder and prints;
/// a resumed run reads rank 0's checkpoint on every rank. Differences from one process: batch
/// statistics (batch norm in training mode, relation losses, mixup pairs) come from each rank's
/// rows, and dropout masks are drawn per rank.
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
    /// What `evaluate` scores, as `metrics.jsonl` and the epoch lines name it: "test", or
    /// "validation" for rows held out of the training set (`Experiment.validation`).
    public var heldOutName = "test"
    /// The ranks this run is split across; nil: `Distributed.world` (one process unless started by mpirun).
    public var world: Distributed?
    /// `evaluate` split over the ranks (each scores its share of the held-out rows, the tallies
    /// are added up): set for classifiers; nil runs `evaluate` on every rank.
    var evaluateOnRanks: ((Sequential, Distributed) throws -> Report)?

    public init(student: Sequential, studentInfo: SavedModel, teachers: [Teacher], objective: any TrainingObjective,
                options: TrainingOptions, train: LabeledDataset, run: RunFolder?, evaluate: @escaping (Sequential) throws -> Report) throws {
        if objective.needsTeacher && teachers.isEmpty {
            throw TensorError("the losses \(objective.termNames) need a teacher (--teacher)")
        }
        if objective.needsLabels && !train.isLabeled {
            throw TensorError("the losses include ce or dkd, which need labels; this training data has none")
        }
        if (objective as? DistillationObjective)?.terms.contains(where: { $0.method == .dkd }) == true && (options.labelLimit != nil || options.mixup != nil) {
            throw TensorError(LossTerm.dkdNeedsEveryLabel)
        }
        try options.validate()
        try options.validate(exampleShape: train.exampleShape)
        guard train.count > 0 else { throw TensorError("\(train.source ?? "the training data"): no training rows") }
        // A student or teacher that does not fit the data is an error here, not a failed
        // precondition inside a layer or a loss on the first batch.
        let classes = objective is DistillationObjective && train.numClasses > 0 ? train.numClasses : nil
        if ModelShapes.understands(student) {
            _ = try ModelShapes.check(student, inputShape: train.exampleShape, numClasses: classes, what: "the student (\(studentInfo.spec.prefix(80)))")
        }
        if objective is DistillationObjective {
            for teacher in teachers { try checkTeacher(teacher, path: teacher.name, exampleShape: train.exampleShape, numClasses: classes, classNames: train.classNames) }
        }
        self.student = student; self.studentInfo = studentInfo; self.teachers = teachers; self.objective = objective
        self.options = options; self.train = train; self.run = run; self.evaluate = evaluate
    }

    /// An MLP student trained on its logits alone runs through a `TrainingPlan` (its first layer
    /// split across the cores, no graph); anything else (feature losses, dropout, convolutions)
    /// through the autograd graph. nil for the latter.
    public var trainingPlan: TrainingPlan? {
        usesTrainingPlan && objective.studentFeatureNames.isEmpty ? TrainingPlan(student, exampleShape: Array(train.featureShape.dropFirst())) : nil
    }
    /// Whether an MLP student may run through a `TrainingPlan` (the default); false keeps it on
    /// the autograd graph, which `distill bench --use-module` times for comparison.
    public var usesTrainingPlan = true

    /// The state of `takeSteps`: the session, the batches, and how many steps were taken.
    private var timed: (session: Session, batches: Batches.Iterator, steps: Int)?

    /// Takes `count` optimizer steps exactly as `fit` does (the training batches epoch after
    /// epoch, each built in the background while the previous one trains), without evaluation,
    /// checkpoints or output: what `distill bench train|kd` times, so that the benchmark measures
    /// the step a run takes. The first call prepares the loader, optimizer and plan.
    public func takeSteps(_ count: Int) throws {
        if timed == nil {
            let session = try prepare()
            timed = (session, try session.loader.batches(epochs: 0..<1_000_000).makeIterator(), 0)
        }
        let perEpoch = timed!.session.stepsPerEpoch
        for _ in 0..<count {
            guard let batch = timed!.batches.next() else { return }
            let position = StepPosition(epoch: timed!.steps / perEpoch, step: timed!.steps % perEpoch, stepsPerEpoch: perEpoch)
            _ = try step(batch, at: position, timed!.session)
            timed!.steps += 1
        }
    }

    /// Trains for `options.epochs` (continuing from the run folder's checkpoint with `resume`)
    /// and returns the last epoch's test report. The steps: `prepare`, `restore`, then for each
    /// epoch `step` over its batches (with `checkpointAndStop` after a signal) and `endEpoch`.
    public func fit(resume: Bool = false) throws -> TrainingSummary<Report> {
        let session = try prepare()
        defer { student.removeTaps(); session.stop?.uninstall() }
        let resumed = resume ? try restore(session) : RunFolder.CheckpointState()
        var lastReport: Report? = nil
        var throughput: [Double] = []
        for epoch in resumed.epochsDone..<options.epochs {
            let bar = ProgressBar(title: "epoch \(epoch + 1)/\(options.epochs)", total: session.stepsPerEpoch, quiet: session.quiet)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let firstBatch = epoch == resumed.epochsDone ? resumed.nextBatch : 0
            var sums = firstBatch > 0 ? EpochSums(checkpoint: resumed.sums) : EpochSums()
            for (offset, batch) in try session.loader.batches(epoch: epoch, startingAt: firstBatch).enumerated() {
                let position = StepPosition(epoch: epoch, step: firstBatch + offset, stepsPerEpoch: session.stepsPerEpoch)
                let (value, parts) = try step(batch, at: position, session)
                sums.add(value, parts, rows: batch.count)
                try checkpointAndStop(after: position, sums: sums, session)
                if position.step % 20 == 0 || position.step + 1 == session.stepsPerEpoch {
                    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                    bar.update(position.step + 1, unitsPerSecond: Double(sums.seen) / elapsed, detail: String(format: "loss %.4f", sums.meanLoss))
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            throughput.append(Double(sums.seen) / seconds)
            lastReport = try endEpoch(epoch, sums: sums, seconds: seconds, session)
            if let deadline = options.deadline, epoch + 1 < options.epochs, DispatchTime.now() >= deadline {
                throw TrainingDeadlinePassed(epochsDone: epoch + 1)
            }
        }
        let final = try lastReport ?? score(session.world)
        if let run, session.world.isMain { try studentInfo.save(student, to: run.finalModel) }
        return TrainingSummary(test: final, bestScore: max(session.best, final.score), epochsRun: options.epochs - resumed.epochsDone,
                               samplesPerSecond: throughput.isEmpty ? 0 : throughput.reduce(0, +) / Double(throughput.count))
    }

    // MARK: The steps of a run

    /// What one `fit` holds from start to end.
    final class Session {
        let loader: BatchLoader
        let optimizer: any Optimizer
        let schedule: any LearningRateSchedule
        let plan: TrainingPlan?
        let studentTaps: FeatureTaps?
        let dropouts: [Dropout]
        /// Every trained tensor by name, for the non-finite gradient check's message.
        let parameterNames: [(String, Tensor)]
        /// Ctrl-C and SIGTERM, with a run folder: stop after the current step with a checkpoint.
        let stop: StopRequest?
        var best = 0.0
        var stepsPerEpoch: Int { loader.batchesPerEpoch }
        /// The ranks (one, in a single process); rank 0 alone writes the run folder and prints.
        let world: Distributed
        let quiet: Bool
        /// Batch-norm running statistics, averaged over the ranks at each epoch's end.
        let batchNormBuffers: [Tensor]
        /// With several ranks, a stop signal any rank received, agreed on by all in a step's reduction.
        var agreedSignal: Int32?
        /// The rank's time in allreduce and in whole steps, since the epoch started.
        var reduceSeconds = 0.0, stepSeconds = 0.0

        init(loader: BatchLoader, optimizer: any Optimizer, schedule: any LearningRateSchedule, plan: TrainingPlan?,
             studentTaps: FeatureTaps?, dropouts: [Dropout], parameterNames: [(String, Tensor)], stop: StopRequest?,
             world: Distributed, quiet: Bool, batchNormBuffers: [Tensor]) {
            self.loader = loader; self.optimizer = optimizer; self.schedule = schedule; self.plan = plan; self.studentTaps = studentTaps
            self.dropouts = dropouts; self.parameterNames = parameterNames; self.stop = stop
            self.world = world; self.quiet = quiet; self.batchNormBuffers = batchNormBuffers
        }

        /// The signal to stop on after this step: this process's in one process; with several
        /// ranks, the one they agreed on (so all stop after the same step).
        var signal: Int32? { world.isDistributed ? agreedSignal : stop?.received }
    }

    /// Where a step is, for schedules, seeds and messages.
    struct StepPosition {
        var epoch: Int, step: Int, stepsPerEpoch: Int
        var global: Int { epoch * stepsPerEpoch + step }
        var text: String { "epoch \(epoch + 1), step \(step + 1)" }
    }

    /// Running sums of an epoch; an interrupted epoch's are saved in the checkpoint and restored.
    struct EpochSums {
        var seen = 0, loss = 0.0
        var parts: [String: Double] = [:]
        init() {}
        init(checkpoint sums: [String: Double]) {
            seen = Int(sums["seen"] ?? 0)
            loss = sums["loss"] ?? 0
            for (k, v) in sums where k.hasPrefix("part.") { parts[String(k.dropFirst(5))] = v }
        }
        mutating func add(_ value: Float, _ terms: [String: Float], rows: Int) {
            seen += rows
            loss += Double(value) * Double(rows)
            for (k, v) in terms { parts[k, default: 0] += Double(v) * Double(rows) }
        }
        var meanLoss: Double { loss / Double(max(seen, 1)) }
        var checkpoint: [String: Double] {
            var sums = ["seen": Double(seen), "loss": loss]
            for (k, v) in parts { sums["part.\(k)"] = v }
            return sums
        }
    }

    /// The loader, feature taps and adapters (sized from one batch), optimizer, schedule and plan.
    func prepare() throws -> Session {
        // Every training row is checked once, before the first step: a NaN or infinite feature is
        // named by its row and nothing trains on it. Batches are built from these rows (shifts,
        // flips and mixup of finite values stay finite), so the steps need not scan each batch:
        // that scan was 5% of the cached-logits KD step's profile.
        try DataSource.requireFinite(train, name: "\(train.source ?? "the training data") (training rows)")
        let world = try self.world ?? Distributed.world
        let plan = trainingPlan
        // The next batch is built on a background thread while a step runs, except for a student
        // on a `TrainingPlan` whose workers take every core: the builder then preempts one of them
        // and the other spins at the next join (`distill bench kd --cached-teacher`: 13% faster
        // without it, 12 of 15 alternating pairs; the CNN teacher's step, whose serial parts leave
        // a core idle, was 3% faster with it, and the MLP with the teacher in the loop even).
        let spareCore = !world.isDistributed && Parallel.workers < ProcessInfo.processInfo.activeProcessorCount
        let loader = try BatchLoader(dataset: train, batchSize: options.batchSize, shuffle: true, seed: options.seed,
                                     augmentation: options.augmentation, prefetch: plan == nil || spareCore)
        student.train()
        let studentTaps = objective.studentFeatureNames.isEmpty ? nil : try student.tapOutputs(objective.studentFeatureNames)
        if let studentTaps {
            do {
                let probe = try loader.batch(at: BatchPosition(epoch: 0, batch: 0))
                _ = withNoGrad { student(probe.inputs) }
                let teacherFeatures = try teachers[0].forward(probe.inputs, indices: probe.indices, features: objective.teacherFeatureNames).features
                try objective.prepareAdapters(studentFeatures: studentTaps.outputs, teacherFeatures: teacherFeatures, seed: options.seed)
            } catch {
                student.removeTaps()
                throw error
            }
        }
        let adapters = objective.adapterParameters.enumerated().map { ("adapter.\($0.offset)", $0.element) }
        let optimizer = try options.makeOptimizer(student.namedParameters().filter(\.tensor.requiresGrad).map { ("student.\($0.name)", $0.tensor) } + adapters)
        let steps = loader.batchesPerEpoch
        return Session(loader: loader, optimizer: optimizer,
                       schedule: try options.makeSchedule(totalSteps: options.epochs * steps, stepsPerEpoch: steps),
                       plan: plan, studentTaps: studentTaps,
                       dropouts: student.namedModules().compactMap { $0.module as? Dropout },
                       parameterNames: student.namedParameters().map { ($0.name, $0.tensor) } + adapters,
                       stop: run == nil ? nil : StopRequest.install(), world: world, quiet: options.quiet || !world.isMain,
                       batchNormBuffers: student.namedModules().compactMap { $0.module as? BatchNorm }.flatMap { [$0.runningMean, $0.runningVar] })
    }

    /// Loads the run folder's checkpoint (weights, optimizer, adapters, position, best score).
    func restore(_ session: Session) throws -> RunFolder.CheckpointState {
        guard let run else { return RunFolder.CheckpointState() }
        var bytes: Data? = nil
        if session.world.isDistributed {  // rank 0's checkpoint, on every rank (no shared storage needed)
            var data = session.world.isMain ? try run.checkpointBytes() ?? Data() : Data()
            try session.world.broadcast(&data)
            bytes = data
        }
        let resumed = try run.loadCheckpoint(student: student, optimizer: session.optimizer, adapters: objective.adapterParameters, bytes: bytes)
        guard resumed.epochsDone <= options.epochs else {
            throw TrainingError(message: "\(run.checkpoint.path) is after epoch \(resumed.epochsDone), past the \(options.epochs) epochs of this run")
        }
        guard resumed.nextBatch < session.stepsPerEpoch else {
            throw TrainingError(message: "\(run.checkpoint.path) stops at batch \(resumed.nextBatch) of an epoch that has \(session.stepsPerEpoch); was the data or batch size changed?")
        }
        session.best = resumed.bestAccuracy
        if !session.quiet {
            let position = resumed.nextBatch > 0 ? "at batch \(resumed.nextBatch + 1) of epoch \(resumed.epochsDone + 1)" : "after epoch \(resumed.epochsDone)"
            log("resuming \(run.url.path) \(position) (best \(heldOutName) score \(String(format: "%.4f", session.best)))")
        }
        return resumed
    }

    /// One optimizer step on `batch`: teacher outputs, student forward, loss, backward, the
    /// non-finite checks (the inputs were checked once by `prepare`), clipping, update. Returns
    /// the loss and its terms.
    func step(_ batch: Batch, at position: StepPosition, _ session: Session) throws -> (Float, [String: Float]) {
        let optimizer = session.optimizer
        optimizer.learningRate = session.schedule.learningRate(atStep: position.global)
        for (k, dropout) in session.dropouts.enumerated() {  // masks from (seed, step): the same after --resume
            dropout.reseed(options.seed ^ UInt64(position.global) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(k + 1) &* 0xD1B5_4A32_D192_ED03)
        }
        // With several ranks, this rank's rows of the global batch (see `Shard`).
        let world = session.world, shard = Shard(batch, world: world)
        let t0 = DispatchTime.now().uptimeNanoseconds
        // Label-scarce training and mixup (TransferSet.swift): a label of -1 means "no label here".
        let (inputs, labels, indices) = TransferSet.prepare(inputs: shard.inputs, labels: shard.labels, indices: shard.indices, labelLimit: options.labelLimit,
                                                           mixup: options.mixup, seed: options.seed, step: position.global)
        var teacherLogits: [Tensor] = []
        var teacherFeatures: [String: Tensor] = [:]
        if objective.needsTeacher {
            for (i, teacher) in teachers.enumerated() {
                let out = try teacher.forward(inputs, indices: indices, features: i == 0 ? objective.teacherFeatureNames : [])
                guard out.logits.isFinite else {
                    throw TrainingError(message: "teacher \(teacher.name) gave non-finite outputs at \(position.text) (samples \(indices.prefix(4))...)")
                }
                teacherLogits.append(out.logits)
                if i == 0 { teacherFeatures = out.features }
            }
        }
        optimizer.zeroGrad()
        let logits = session.plan?.forward(inputs) ?? student(inputs)
        let (loss, terms) = try objective.loss(studentOutputs: logits, studentFeatures: session.studentTaps?.outputs ?? [:],
                                               teacherOutputs: teacherLogits, teacherFeatures: teacherFeatures,
                                               labels: labels, indices: indices, epoch: position.epoch)
        var value = loss.item(), parts = terms
        if !world.isDistributed {
            guard value.isFinite else {
                throw TrainingError(message: "the loss became \(value) at \(position.text) (terms: \(parts)); training stopped\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate.")
            }
        }
        loss.backward()
        if let plan = session.plan, let g = logits.grad { plan.backward(g) }
        if world.isDistributed {
            // One allreduce: the gradients weighted by this rank's share of the batch, then the
            // loss and its terms (× rows) and whether a stop signal came, summed.
            for p in optimizer.parameters where p.grad == nil { p.grad = Tensor.zeros(p.shape) }
            let names = parts.keys.sorted()
            var scalars: [Float] = [value * shard.weight]
            for name in names { scalars.append(parts[name]! * shard.weight) }
            scalars.append(session.stop?.received == nil ? 0 : 1)
            let r0 = DispatchTime.now().uptimeNanoseconds
            let sums = try world.allreduceMean(optimizer.parameters.map { $0.grad! }, weight: shard.weight, scalars: scalars)
            session.reduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - r0) / 1e9
            value = sums[0]
            for (k, name) in names.enumerated() { parts[name] = sums[k + 1] }
            if sums[names.count + 1] > 0 { session.agreedSignal = session.stop?.received ?? SIGTERM }
            guard value.isFinite else {  // the same reduced value on every rank: all stop here
                world.exitTogether()
                throw TrainingError(message: "the loss became \(value) at \(position.text) (terms: \(parts)); training stopped\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate.")
            }
        }
        defer { session.stepSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        for (name, parameter) in session.parameterNames {
            if let g = parameter.grad, let i = g.firstIndexWithNonFiniteSquare {
                let what = g.data[i].isFinite ? "a gradient too large for float32 (\(g.data[i]): its square overflows)" : "non-finite gradient (\(g.data[i]))"
                throw TrainingError(message: "\(what) in \(name) at \(position.text), with a finite loss \(value); the weights were not updated\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate, smaller loss weights or weight decay, or --gradient-clip.")
            }
        }
        if let clip = options.gradientClip { clipGradientNorm(optimizer.parameters, maxNorm: clip) }
        optimizer.step()
        return (value, parts)
    }

    /// After a Ctrl-C or SIGTERM in the middle of an epoch: a checkpoint of this position, then stop.
    func checkpointAndStop(after position: StepPosition, sums: EpochSums, _ session: Session) throws {
        guard let run, let signal = session.signal, position.step + 1 < position.stepsPerEpoch else { return }
        try requireFiniteOptimizerState(after: position.text, session)
        var state = RunFolder.CheckpointState(epochsDone: position.epoch, bestAccuracy: session.best, nextBatch: position.step + 1)
        state.sums = sums.checkpoint
        if session.world.isMain {
            try save("checkpoint") { try run.saveCheckpoint(student: student, optimizer: session.optimizer, adapters: objective.adapterParameters, state: state) }
        }
        try session.world.barrier()  // no rank stops before rank 0's checkpoint is written
        session.world.exitTogether()  // every rank stops here: not a failed rank (no MPI_Abort)
        throw interrupted(signal, "at epoch \(position.epoch + 1), after step \(position.step + 1) of \(position.stepsPerEpoch)", run)
    }

    /// Stops the run before a checkpoint would record a non-finite optimizer state: Adam squares
    /// each gradient (weight decay included), and a second moment that overflowed freezes its
    /// weight without any NaN in the loss or the weights.
    func requireFiniteOptimizerState(after position: String, _ session: Session) throws {
        guard let (name, _) = session.optimizer.stateDict().sorted(by: { $0.key < $1.key }).first(where: { !$0.value.isFinite }) else { return }
        throw TrainingError(message: "after \(position) the optimizer's state '\(name)' is no longer finite (a gradient or weight decay too large for float32); training stopped\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate, weight decay or loss weights, or --gradient-clip.")
    }

    /// The end of an epoch: the test report, a metrics line, the best model, a checkpoint (and a
    /// stop, after a signal), the progress line.
    func endEpoch(_ epoch: Int, sums: EpochSums, seconds: Double, _ session: Session) throws -> Report {
        let world = session.world
        var communication: [String: Any] = [:]
        if world.isDistributed {
            // Running statistics from every rank's rows; and a stop signal any rank received.
            try world.average(session.batchNormBuffers)
            var flag = [session.stop?.received == nil ? 0.0 : 1.0]
            try world.allreduceSum(&flag)
            if flag[0] > 0 { session.agreedSignal = session.agreedSignal ?? session.stop?.received ?? SIGTERM }
            let steps = Double(max(1, world.reductions))
            communication = ["ranks": world.size, "allreduce_seconds": session.reduceSeconds, "step_seconds": session.stepSeconds,
                             "allreduce_bytes_per_step": Double(world.bytesReduced) / steps]
            if !session.quiet {
                log(String(format: "%d ranks: allreduce %.1f KB per step, %.2f s of %.2f s in steps (%.1f%%) on rank 0", world.size,
                           Double(world.bytesReduced) / steps / 1024, session.reduceSeconds, session.stepSeconds,
                           100 * session.reduceSeconds / max(session.stepSeconds, 1e-9)))
            }
            session.reduceSeconds = 0; session.stepSeconds = 0
        }
        let report: Report
        do { report = try score(world) } catch let error as TensorError {
            throw TrainingError(message: "after epoch \(epoch + 1) the student's test outputs are not usable (\(error.message)); training stopped\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate or --gradient-clip.")
        }
        // The first epoch always writes best.safetensors, even at a score of 0.
        let improved = epoch == 0 || report.score > session.best
        if improved { session.best = report.score }
        var line: [String: Any] = ["epoch": epoch + 1, "train_loss": sums.meanLoss, "learning_rate": session.optimizer.learningRate,
                                   "seconds": seconds, "samples_per_second": Double(sums.seen) / seconds]
        line.merge(report.metrics.map { (named($0.key), $0.value) }) { _, new in new }
        line.merge(communication) { _, new in new }
        for (k, v) in sums.parts { line["loss_\(k)"] = v / Double(max(sums.seen, 1)) }
        try requireFiniteOptimizerState(after: "epoch \(epoch + 1)", session)
        // A metric that is NaN or infinite (weights that diverged in the epoch's last steps) stops
        // the run here, named, rather than as a failed write of metrics.jsonl.
        if let (name, value) = line.sorted(by: { $0.key < $1.key }).first(where: { ($0.value as? Double)?.isFinite == false || ($0.value as? Float)?.isFinite == false }) {
            throw TrainingError(message: "after epoch \(epoch + 1) the \(name) is \(value): the student's weights diverged; training stopped\(run.map { ", \($0.checkpointNote)" } ?? ""). Try a lower learning rate, smaller loss weights or --gradient-clip.")
        }
        if let run, world.isMain {
            try save("metrics") { try run.appendMetrics(line, epoch: epoch + 1) }
            if improved { try save("best model") { try studentInfo.save(student, to: run.bestModel) } }
            try save("checkpoint") {
                try run.saveCheckpoint(student: student, optimizer: session.optimizer, adapters: objective.adapterParameters,
                                       state: RunFolder.CheckpointState(epochsDone: epoch + 1, bestAccuracy: session.best))
            }
        }
        try world.barrier()  // every rank continues (or stops) once rank 0's checkpoint is written
        if let run, let signal = session.signal, epoch + 1 < options.epochs {
            world.exitTogether()
            throw interrupted(signal, "after epoch \(epoch + 1)", run)
        }
        if !session.quiet {
            log(String(format: "epoch %d/%d  loss %.4f  ", epoch + 1, options.epochs, sums.meanLoss) + named(report.line)
                + String(format: "  (%.1f s, %.0f samples/s)", seconds, Double(sums.seen) / seconds))
        }
        onEpoch?(epoch + 1, report.score)
        return report
    }

    /// A report's metric key or line ("test_accuracy", "test accuracy 91.20%") with the held-out
    /// set's name in place of "test".
    func named(_ text: String) -> String {
        heldOutName == "test" || !text.hasPrefix("test") ? text : heldOutName + text.dropFirst(4)
    }

    /// The test report, each rank scoring its share where the task allows it (`evaluateOnRanks`).
    func score(_ world: Distributed) throws -> Report {
        try evaluateOnRanks.map { try $0(student, world) } ?? evaluate(student)
    }

    func interrupted(_ signal: Int32, _ position: String, _ folder: RunFolder) -> TrainingInterrupted {
        TrainingInterrupted(message: "interrupted (signal \(signal)) \(position); checkpoint saved in \(folder.url.path)", signal: signal, runFolder: folder.url.path)
    }

    /// A run-folder write, with the context a failed one needs (a full disk keeps the previous file).
    func save(_ what: String, _ write: () throws -> Void) throws {
        do { try write() } catch {
            throw TrainingError(message: "cannot write the \(what): \(error); training stopped, the previous checkpoint\(run.map { " in \($0.url.path)" } ?? "") is intact (free some disk space, then --resume)")
        }
    }
}

/// This rank's rows of a global batch: rows `world.share(of: batch.count)`, and the weight its
/// mean gradient gets in the sum over ranks (its rows / the batch's rows), so that the sum is the
/// mean over the whole batch even when shares differ by a row. A rank whose share is empty (a
/// batch smaller than the number of ranks) still runs a step, on the batch's first row with
/// weight 0, so that every rank takes part in the same reductions with the same loss terms.
struct Shard {
    let inputs: Tensor
    let labels: [Int]
    let indices: [Int]
    let weight: Float

    init(_ batch: Batch, world: Distributed) {
        guard world.isDistributed else {
            inputs = batch.inputs; labels = batch.labels; indices = batch.indices; weight = 1
            return
        }
        var rows = world.share(of: batch.count)
        weight = Float(rows.count) / Float(batch.count)
        if rows.isEmpty { rows = 0..<1 }
        let width = batch.inputs.count / max(batch.count, 1)
        let slice = Tensor(uninitializedShape: [rows.count] + batch.inputs.shape.dropFirst())
        slice.data.update(from: batch.inputs.data + rows.lowerBound * width, count: rows.count * width)
        inputs = slice
        labels = batch.labels.isEmpty ? [] : Array(batch.labels[rows])
        indices = Array(batch.indices[rows])
    }
}

extension Trainer where Report == EvaluationReport {
    /// A classifier's trainer, scored by its accuracy on `test`.
    public convenience init(student: Sequential, studentInfo: SavedModel, teachers: [Teacher], objective: DistillationObjective,
                            options: TrainingOptions, train: LabeledDataset, test: LabeledDataset, run: RunFolder?) throws {
        try self.init(student: student, studentInfo: studentInfo, teachers: teachers, objective: objective, options: options,
                      train: train, run: run, evaluate: { try DistillTraining.evaluate($0, on: test) })
        evaluateOnRanks = { try DistillTraining.evaluate($0, on: test, world: $1) }
    }
}
