import DistillData
import DistillNN
import DistillTensor
import Foundation

/// The students `distill fit` searches.
public enum FitFamily: String, CaseIterable, Sendable {
    /// MLPs of one to three hidden layers, 8 to 512 units wide.
    case mlp
    /// Two-convolution CNNs (3×3, ReLU, 2×2 max-pool, twice), 4 to 32 channels first, with or
    /// without a 64-unit hidden layer; images only.
    case cnn
    /// Both.
    case any

    /// Hidden widths of the MLP candidates.
    static let mlpHiddenLayers: [[Int]] = [[8], [16], [32], [64], [128], [256], [512],
                                           [32, 16], [64, 32], [128, 64], [256, 128], [512, 256], [128, 64, 32], [256, 128, 64]]
    /// (first, second) convolution channels and the hidden width (0: none) of the CNN candidates.
    static let cnnShapes: [(Int, Int, Int)] = [(4, 8, 0), (8, 16, 0), (16, 32, 0), (32, 64, 0), (4, 8, 64), (8, 16, 64), (16, 32, 64), (32, 64, 64)]

    /// (name, spec) of every candidate for examples of `exampleShape` and `classes` classes.
    /// CNNs need images [C, H, W] with sides of at least 4; `--family cnn` on other data is an error.
    public func candidates(exampleShape: [Int], classes: Int) throws -> [(name: String, spec: String)] {
        var list: [(String, String)] = []
        if self != .cnn {
            let inputs = exampleShape.reduce(1, *)
            for hidden in Self.mlpHiddenLayers {
                let spec = "mlp:" + ([inputs] + hidden + [classes]).map(String.init).joined(separator: "-")
                list.append((spec, spec))
            }
        }
        let isImage = exampleShape.count == 3 && exampleShape[1] >= 4 && exampleShape[2] >= 4
        if self == .cnn && !isImage {
            throw TensorError("--family cnn needs images [C, H, W] (sides of at least 4); the data has examples of shape \(exampleShape): use --family mlp")
        }
        if self != .mlp && isImage {
            for (a, b, hidden) in Self.cnnShapes {
                let spec = "cnn:\(a)-\(b)" + (hidden > 0 ? "-fc\(hidden)" : "")  // ModelZoo.smallCNN
                list.append((spec, spec))
            }
        }
        return list
    }
}

/// Sizes on the command line: `100000`, `100k`, `1.5M`, `2G` (k, M, G = 1,000, 1,000,000,
/// 1,000,000,000; `Ki`, `Mi`, `Gi` are powers of 1,024), with an optional `B`. Only decimal numbers:
/// `0x10` and `inf` are refused.
public enum ByteCount {
    public static func parse(_ text: String, option: String = "--max-bytes") throws -> Int {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("k", 1e3), ("K", 1e3), ("M", 1e6), ("G", 1e9)]
        var number = t, scale = 1.0
        if number.hasSuffix("B") || number.hasSuffix("b") { number.removeLast() }
        for (suffix, value) in units where number.hasSuffix(suffix) {
            number = String(number.dropLast(suffix.count)); scale = value
            break
        }
        number = number.trimmingCharacters(in: .whitespaces)
        guard number.wholeMatch(of: /[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?/) != nil || number.wholeMatch(of: /[0-9]+\./) != nil,
              let value = Double(number), value > 0, value * scale <= 1e15 else {
            throw TensorError("\(option) '\(text.prefix(40))': write a positive size in bytes, e.g. 100000, 100k, 1.5M or 2G")
        }
        return Int((value * scale).rounded())
    }
}

/// What `distill fit` does.
public struct FitSettings {
    /// Data, teacher(s), training options (batch size, learning rate, seed), shared by every candidate.
    public var base = Experiment()
    public var family = FitFamily.any
    public var objective: FitObjective
    /// Epochs of the last rung (each earlier rung has half).
    public var finalEpochs = 16
    /// Share of the training rows held out for the choice.
    public var validationFraction = 0.1
    /// The fit folder: `candidates/NAME/` (one run folder each), `best.safetensors`, `fit.json`, `fit.html`.
    public var output: URL
    /// Candidates' losses: distillation when there is a teacher (0.5·KD at T = 2 + 0.5·CE), else CE.
    public var distillation: [LossTerm]
    /// Seconds spent timing each candidate's batch-1 latency before the search.
    public var speedSeconds = 0.4
    public var preloaded: (train: LabeledDataset, test: LabeledDataset)? = nil

    public init(objective: FitObjective, output: URL) {
        self.objective = objective
        self.output = output
        distillation = LossTerm.recipe()
    }
}

/// A finished `distill fit`.
public struct FitResult {
    public var outcome: FitOutcome
    /// All candidates of the family (within the ceilings or not).
    public var candidateCount: Int
    public var minutes: Double
    /// The chosen student's file (`best.safetensors` in the fit folder).
    public var model: URL

    /// What `distill fit --json` prints.
    public var json: [String: Any] {
        let c = outcome.chosen
        return ["spec": c.spec, "name": c.name, "params": c.size.parameters, "bytes": c.size.bytes, "accuracy": outcome.testAccuracy,
                "validation_accuracy": outcome.validationAccuracy, "latency_us_p50": c.latencyMicrosecondsP50, "met": outcome.met,
                "missed": outcome.missed, "candidates": candidateCount, "trained": outcome.trainedCount, "minutes": minutes]
    }
}

/// Runs `distill fit`.
public enum FitRunner {
    /// Checks the objective and the data, measures every candidate of the family, searches with
    /// `SuccessiveHalving` on a validation split of the training rows, scores the choice on the
    /// test set, and writes `best.safetensors`, `fit.json` and `fit.html`. An objective no
    /// candidate can meet in size or latency is an error before any training; one whose accuracy
    /// is not reached returns the closest candidate with `met == false`.
    public static func run(_ settings: FitSettings) throws -> FitResult {
        let started = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }
        let quiet = settings.base.options.quiet
        // Its choices depend on each process's clock and latency timings, which ranks would not
        // agree on: one process only (distill sweep shares its runs out across ranks).
        let world = try Distributed.world
        guard !world.isDistributed else {
            throw TensorError("distill fit runs as one process, not under mpirun (\(world.size) ranks): its search decides by each process's clock and latency timings, which ranks would not agree on; run it without mpirun, or compare students across ranks with distill sweep")
        }
        try settings.objective.validate()
        try settings.base.options.validate()
        guard settings.validationFraction > 0 && settings.validationFraction < 1 else {
            throw TensorError("the validation share must be in (0, 1), got \(settings.validationFraction)")
        }
        guard (1...Experiment.maxEpochs).contains(settings.finalEpochs) else { throw TensorError("--epochs \(settings.finalEpochs): must be 1...\(Experiment.maxEpochs)") }
        var base = settings.base
        guard base.target == nil else { throw TensorError("distill fit chooses classifiers; --target (regression) is not supported") }
        base.teachers = base.teachers.map(RunFolder.modelFile)
        let data = try settings.preloaded ?? DataSource.load(base.data, testData: base.testData, labelColumn: base.labelColumn, seed: base.options.seed)
        var train = data.train
        if let limit = base.trainLimit { train = train.prefix(limit) }
        let exampleShape = train.exampleShape, classes = train.numClasses
        for path in base.teachers {
            try checkTeacher(try loadTeacher(path, options: base.onnxTeacher), path: path, exampleShape: exampleShape, numClasses: classes, classNames: train.classNames)
        }

        // Every candidate, measured before any training: size from the architecture, latency timed once.
        var candidates: [FitCandidate] = []
        for (name, spec) in try settings.family.candidates(exampleShape: exampleShape, classes: classes) {
            let model = try ModelZoo.build(spec, inputShape: exampleShape, numClasses: classes, seed: base.options.seed)
            try ModelShapes.check(model, inputShape: exampleShape, numClasses: classes, what: "candidate \(name)")
            let speed = StudentSpeed.measure(model, exampleShape: exampleShape, seconds: settings.speedSeconds)
            candidates.append(FitCandidate(name: name, spec: spec, size: StudentSize(model, spec: spec, exampleShape: exampleShape),
                                           latencyMicrosecondsP50: speed.latencyMicrosecondsP50))
        }
        try checkReachable(candidates, objective: settings.objective, family: settings.family)

        let folder = RunFolder(settings.output)
        let candidatesFolder = settings.output.appendingPathComponent("candidates")
        if FileManager.default.fileExists(atPath: candidatesFolder.path) {
            throw TensorError("\(settings.output.path) already holds a fit (candidates/); choose another --output")
        }
        try folder.create()
        // The choice is made on rows carved from the training data; the test set is read once, at the end.
        let split = try train.split(validationFraction: settings.validationFraction, seed: base.options.seed ^ 0xF17)
        guard split.train.count > 0, split.validation.count > 0 else {
            throw TensorError("\(base.data): \(train.count) training rows are too few to hold out a validation split")
        }
        var experiment = base
        experiment.trainLimit = nil
        experiment.losses = base.teachers.isEmpty && base.teacherOutputs == nil ? [LossTerm(.ce)] : settings.distillation
        experiment = try SharedTeacherLogits(folder: settings.output, train: split.train, quiet: quiet).sharing(experiment)
        let trainer = ExperimentFitTrainer(base: experiment, train: split.train, validation: split.validation, test: data.test,
                                           folder: candidatesFolder)
        // The budget counts from the start of the job, as the search's clock does.
        trainer.deadline = DispatchTime(uptimeNanoseconds: started + UInt64(settings.objective.budgetMinutes * 60e9))
        if !quiet {
            log("fit: \(candidates.count) \(settings.family.rawValue) candidates; \(split.train.count) training rows, \(split.validation.count) validation rows held out for the choice; budget \(settings.objective.budgetMinutes) min")
        }
        let search = SuccessiveHalving(finalEpochs: settings.finalEpochs)
        let outcome = try search.search(candidates, objective: settings.objective, trainer: trainer, clock: elapsed, log: { if !quiet { log($0) } })
        let best = folder.bestModel
        try AtomicFile.write(try Data(contentsOf: trainer.runFolder(outcome.chosen).finalModel), to: best)
        let result = FitResult(outcome: outcome, candidateCount: candidates.count, minutes: elapsed() / 60, model: best)
        try folder.writeJSON(result.json, to: settings.output.appendingPathComponent("fit.json"))
        let report = FitReport(title: "distill fit on \(base.data)", objective: settings.objective, outcome: outcome,
                               rungEpochs: search.rungEpochs, family: settings.family, minutes: result.minutes)
        try AtomicFile.write(Data(report.html.utf8), to: settings.output.appendingPathComponent("fit.html"))
        return result
    }

    /// Throws when no candidate can meet the size or latency ceilings (alone, or together): an
    /// objective that training cannot change.
    static func checkReachable(_ candidates: [FitCandidate], objective: FitObjective, family: FitFamily) throws {
        let kind = family == .any ? "" : "\(family.rawValue) "
        guard let smallest = candidates.min(by: { $0.size.bytes < $1.size.bytes }),
              let fastest = candidates.min(by: { $0.latencyMicrosecondsP50 < $1.latencyMicrosecondsP50 }) else {
            throw TensorError("--family \(family.rawValue): no candidates for this data")
        }
        if let m = objective.maxBytes, smallest.size.bytes > m {
            throw TensorError("unreachable objective: --max-bytes \(m), but the smallest \(kind)candidate (\(smallest.name)) takes \(smallest.size.bytes) bytes")
        }
        if let m = objective.maxLatencyMicroseconds, fastest.latencyMicrosecondsP50 > m {
            throw TensorError(String(format: "unreachable objective: --max-latency-us %g, but the fastest %@candidate (%@) takes %.1f µs at batch 1 on this machine",
                                     m, kind, fastest.name, fastest.latencyMicrosecondsP50))
        }
        guard candidates.contains(where: objective.allowsSize) else {
            throw TensorError(String(format: "contradictory objective: the candidates within --max-bytes %d are all slower than --max-latency-us %g, and the faster ones are larger",
                                     objective.maxBytes ?? 0, objective.maxLatencyMicroseconds ?? 0))
        }
    }
}

/// Trains fit candidates as ordinary runs (`ExperimentRunner`), one run folder each under
/// `folder`, on the training rows minus the validation split; the run's "test" set is the
/// validation split, so every figure the search sees comes from it. A later rung continues the
/// candidate's run from its checkpoint (same batches as one longer run).
final class ExperimentFitTrainer: FitTrainer {
    let base: Experiment
    let train: LabeledDataset, validation: LabeledDataset, test: LabeledDataset
    let folder: URL
    private var started: Set<String> = []
    /// When the search's budget runs out: a candidate still training then stops after its epoch.
    var deadline: DispatchTime?

    init(base: Experiment, train: LabeledDataset, validation: LabeledDataset, test: LabeledDataset, folder: URL) {
        self.base = base; self.train = train; self.validation = validation; self.test = test; self.folder = folder
    }

    func runFolder(_ c: FitCandidate) -> RunFolder { RunFolder(folder.appendingPathComponent(StudentList.folderName(c.name))) }

    func train(_ c: FitCandidate, toEpochs epochs: Int) throws -> Double {
        var e = base
        e.student = c.spec
        e.options.epochs = epochs
        e.options.deadline = deadline
        e.output = runFolder(c).url.path
        let resume = started.contains(c.name)
        started.insert(c.name)
        do {
            return try ExperimentRunner.run(e, resume: resume, preloaded: (train, validation), heldOutName: "validation").training.test.accuracy
        } catch let interrupted as TrainingInterrupted {
            throw TrainingInterrupted(message: "fit interrupted (signal \(interrupted.signal)) while training \(c.name); distill fit starts again from scratch in a new --output", signal: interrupted.signal)
        }
    }

    func testAccuracy(_ c: FitCandidate) throws -> Double {
        let file = runFolder(c).finalModel
        let (model, info) = try SavedModel.load(file)
        var view = test
        if let statistics = try Tabular.statistics(of: info, source: file.path) { view = try test.standardized(with: statistics) }
        return try evaluate(model, on: view).accuracy
    }
}

/// `fit.html`: every candidate on the accuracy-against-bytes plot (validation accuracy at the
/// last rung it reached), the objective's lines, and a table of where the search stopped each one.
struct FitReport {
    var title: String
    var objective: FitObjective
    var outcome: FitOutcome
    var rungEpochs: [Int]
    var family: FitFamily
    var minutes: Double

    var html: String {
        let c = outcome.chosen
        var body = "<h1>\(SVGChart.escape(title))</h1>\n"
        var goal = String(format: "accuracy ≥ %.2f%%", objective.minAccuracy * 100)
        if let m = objective.maxBytes { goal += ", bytes ≤ \(m)" }
        if let m = objective.maxLatencyMicroseconds { goal += String(format: ", batch-1 latency ≤ %g µs", m) }
        body += "<p>Objective: \(goal); family \(family.rawValue); budget \(objective.budgetMinutes) min; rungs of \(rungEpochs.map(String.init).joined(separator: ", ")) epochs. "
        body += "The choice is made on a validation split of the training rows; the test accuracy is measured once, after it.</p>\n"
        body += String(format: "<p><b>%@</b> %@: %d parameters, %d bytes, %.1f µs at batch 1; validation accuracy %.2f%%, test accuracy %.2f%%. %d of %d candidates trained in %.1f min.</p>\n",
                        outcome.met ? "Chosen:" : "Objective not met; closest:", SVGChart.escape(c.name), c.size.parameters, c.size.bytes,
                        c.latencyMicrosecondsP50, outcome.validationAccuracy * 100, outcome.testAccuracy * 100,
                        outcome.trainedCount, outcome.trials.count, minutes)
        if !outcome.missed.isEmpty {
            body += "<p>Missed by: " + outcome.missed.sorted { $0.key < $1.key }.map { k, v in
                k == "accuracy" ? String(format: "accuracy %.2f points", v * 100) : String(format: "%@ %g", k, v)
            }.joined(separator: ", ") + "</p>\n"
        }
        var points: [SVGChart.Point] = []
        for (i, t) in outcome.trials.enumerated() {
            guard let accuracy = t.lastAccuracy else { continue }
            let style: SVGChart.Style = i == outcome.chosenIndex ? .winner : t.stop == .halved || t.stop == .budget ? .muted : .regular
            points.append(SVGChart.Point(x: Double(t.candidate.size.bytes), y: accuracy * 100, label: t.candidate.name, style: style))
        }
        body += "<h2>Candidates</h2>\n<p>Validation accuracy at the last rung each candidate reached; green: the answer; grey: stopped by the halving or the budget; dashed: the objective.</p>\n"
        body += SVGChart.scatter(points, title: "validation accuracy against size", xTitle: "bytes (float32, log scale)", yTitle: "validation accuracy (%)",
                                 logX: true, guides: (objective.maxBytes.map(Double.init), objective.minAccuracy * 100))
        body += "<table><tr><th class=l>candidate</th><th>parameters</th><th>bytes</th><th>batch-1 latency</th><th class=l>validation accuracy by rung</th><th class=l>where the search stopped it</th></tr>\n"
        for t in outcome.trials {
            let rungs = t.rungs.map { String(format: "%d ep: %.2f%%", $0.epochs, $0.accuracy * 100) }.joined(separator: " · ")
            body += String(format: "<tr><td class=l title=\"%@\">%@</td><td>%d</td><td>%d</td><td>%.1f µs</td><td class=l>%@</td><td class=l>%@</td></tr>\n",
                           SVGChart.escape(t.candidate.spec), SVGChart.escape(t.candidate.name), t.candidate.size.parameters, t.candidate.size.bytes,
                           t.candidate.latencyMicrosecondsP50, rungs.isEmpty ? "—" : rungs, SVGChart.escape(t.stop?.rawValue ?? ""))
        }
        body += "</table>\n"
        return SVGChart.page(title: title, body: body)
    }
}
