import ArgumentParser
import DistillData
import DistillTensor
import DistillTraining
import Foundation

/// Data and training options shared by `sweep` and `fit`.
struct SearchDataFlags: ParsableArguments {
    @Option(help: "Teacher model file (or a run folder: its best.safetensors). Repeat for several teachers (averaged).", transform: RunFolder.modelFile)
    var teacher: [String] = []
    @OptionGroup var dataFlags: DataFlags
    @OptionGroup var optimizerFlags: OptimizerFlags
    @Option(help: "First random seed.") var seed: UInt64 = 0
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Flag(help: "No progress output.") var quiet = false

    /// The experiment every run starts from.
    func experiment() -> Experiment {
        var e = Experiment()
        dataFlags.apply(to: &e)
        e.teachers = teacher
        optimizerFlags.apply(to: &e.options)
        e.options.seed = seed
        e.options.quiet = quiet
        return e
    }
}

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train many students from scratch and distilled, and show the trade-off: accuracy against latency and size.",
        discussion: """
        Every student is trained twice per seed, from scratch and distilled (same initialisation, \
        same batches), then measured: parameters, bytes, FLOPs, test accuracy (mean ± std over \
        seeds), batch-1 latency and batch-256 throughput, and whether it is on the Pareto frontier. \
        The output folder gets sweep.jsonl (one line per student and seed), sweep.csv and \
        sweep.html (table, Pareto plots, training curves). A killed sweep continues with the same \
        command plus --resume.

        Instead of --teacher, --teacher-outputs gives the teacher's cached logits (distill \
        cache-teacher). A file of K augmented views (cache-teacher --views K) is replayed by each \
        distilled run for 1/K of the epochs, so that both runs of a pair take the same number of \
        steps; the scratch twin sees the views' augmentation online unless --shift/--flip are given.

        Students: a comma-separated list with brace lists (mlp:784-{32,64,128}-10), presets \
        (lenet5, cnn-tiny), YAML model files, or a YAML file with a `students:` list whose entries \
        may override epochs, batch_size, learning_rate, optimizer, schedule, weight_decay, ...
        """)
    @Option(help: "Students, e.g. \"mlp:784-{32,64,128}-10,lenet5,cnn-tiny\", or a YAML student list.") var students: String
    @Option(help: "Seeds per student (the first is --seed).") var seeds = 3
    @Option(help: "Epochs per run (default: chosen from the data, as in distill train).") var epochs: Int?
    @Option(help: "Random shift augmentation, in pixels (images only).") var shift: Int?
    @Flag(help: "Random horizontal flips (images only).") var flip = false
    @Option(help: "Sweep folder.") var output = "runs/sweep"
    @Flag(help: "Continue the sweep in --output: keep its finished students, continue the interrupted run.") var resume = false
    @Option(help: "Seconds spent timing each trained student (half at batch 1, half at batch 256).") var speedSeconds = 1.0
    @Flag(help: "Also quantize each distilled student to int8 (as distill quantize does) and measure it: the *_int8 columns.") var int8 = false
    @OptionGroup var cachedTeacher: TeacherOutputsFlags
    @OptionGroup var distillation: DistillationFlags
    @OptionGroup var flags: SearchDataFlags

    func validate() throws {
        try distillation.requireLogitMethod()
        guard speedSeconds > 0 && speedSeconds <= 600 else {
            throw ValidationError("--speed-seconds \(speedSeconds): must be in (0, 600] seconds per student")
        }
        guard (1...SweepSettings.maxSeeds).contains(seeds) else { throw ValidationError("--seeds \(seeds): must be 1...\(SweepSettings.maxSeeds)") }
        if let epochs, !(1...Experiment.maxEpochs).contains(epochs) { throw ValidationError("--epochs \(epochs): must be 1...\(Experiment.maxEpochs)") }
    }

    func run() throws {
        var settings = SweepSettings(output: URL(fileURLWithPath: output))
        settings.base = flags.experiment()
        cachedTeacher.apply(to: &settings.base)
        if let epochs { settings.base.options.epochs = epochs }
        if let shift { settings.base.options.shift = shift }
        if flip { settings.base.options.flip = true }
        settings.students = try StudentList.parse(students)
        settings.distillation = try distillation.losses()
        settings.seeds = seeds
        settings.resume = resume
        settings.speedSeconds = speedSeconds
        settings.int8 = int8 ? StudentQuantization.sweepMeasurement(seconds: speedSeconds) : nil
        let result = try SweepRunner.run(settings)
        guard isMainRank else { return }  // under mpirun, rank 0 gathers the rows and prints
        if flags.json { return printJSON(result.json) }
        print(SweepRunner.table(result.rows))
        print(String(format: "%d students × %d seeds in %.1f min; %@/{%@,%@,%@}", result.rows.count, seeds, result.minutes, result.folder.path,
                     SweepRunner.jsonlName, SweepRunner.csvName, SweepRunner.htmlName))
    }
}

struct Fit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find the smallest student that meets an objective (accuracy, latency, size) by successive halving.",
        discussion: """
        Candidates (MLP widths and depths, small CNNs) are trained for a few epochs, the promising \
        half for twice as long, and so on; a candidate larger than one that already met the \
        objective is never trained further. The choice is made on a validation split of the \
        training data; the test accuracy is measured once, after it. The answer is the smallest \
        (bytes, then latency) student that meets every constraint, saved as best.safetensors with \
        fit.html beside it. When none does within the budget, the closest is returned with how \
        much it misses each constraint, and the exit status is 3.
        """)
    @Option(help: "Accuracy to reach, a fraction (0.88 for 88%).") var minAccuracy: Double
    @Option(help: "Batch-1 latency ceiling, microseconds (measured on this machine).") var maxLatencyUs: Double?
    @Option(help: "Size ceiling in bytes of float32 weights: 100000, 100k, 1.5M, 2G (k, M, G: powers of 1000; Ki, Mi, Gi: of 1024).") var maxBytes: String?
    @Option(help: "Students to search.") var family: FitFamily = .any
    @Option(help: "Time budget for the search, minutes.") var budgetMinutes = 20.0
    @Option(help: "Epochs of the last rung (earlier rungs have 1/2, 1/4, 1/8).") var epochs = 16
    @Option(help: "Fit folder.") var output = "runs/fit"
    @OptionGroup var distillation: DistillationFlags
    @OptionGroup var flags: SearchDataFlags

    func validate() throws {
        try distillation.requireLogitMethod()
        try usage { try objective().validate() }
        guard (1...Experiment.maxEpochs).contains(epochs) else { throw ValidationError("--epochs \(epochs): must be 1...\(Experiment.maxEpochs)") }
    }

    func objective() throws -> FitObjective {
        FitObjective(minAccuracy: minAccuracy, maxLatencyMicroseconds: maxLatencyUs,
                     maxBytes: try maxBytes.map { try ByteCount.parse($0) }, budgetMinutes: budgetMinutes)
    }

    func run() throws {
        var settings = FitSettings(objective: try objective(), output: URL(fileURLWithPath: output))
        settings.base = flags.experiment()
        settings.family = family
        settings.finalEpochs = epochs
        settings.distillation = try distillation.losses()
        let result = try FitRunner.run(settings)
        let o = result.outcome, c = o.chosen
        if flags.json {
            printJSON(result.json)
        } else {
            print(String(format: "%@ %@: %d parameters, %d bytes, %.1f µs at batch 1; validation accuracy %.2f%%, test accuracy %.2f%%",
                         o.met ? "chosen" : "objective not met; closest", c.name, c.size.parameters, c.size.bytes, c.latencyMicrosecondsP50,
                         o.validationAccuracy * 100, o.testAccuracy * 100))
            for (k, v) in o.missed.sorted(by: { $0.key < $1.key }) {
                print(k == "accuracy" ? String(format: "  misses accuracy by %.2f points", v * 100) : "  misses \(k) by \(v)")
            }
            print(String(format: "%d of %d candidates trained in %.1f min; model %@, report %@", o.trainedCount, result.candidateCount, result.minutes,
                         result.model.path, result.model.deletingLastPathComponent().appendingPathComponent("fit.html").path))
        }
        if !o.met { throw ExitCode(3) }
    }
}

extension FitFamily: ExpressibleByArgument {}
