import ArgumentParser
import DistillTensor
import DistillNN
import DistillTraining
import Foundation

@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "DistillKit: knowledge distillation on the CPU, in Swift.",
        discussion: "Start with `distill demo`: a teacher, a scratch student and a distilled student on Fashion-MNIST, side by side.",
        subcommands: [Demo.self, Train.self, KD.self, Eval.self, Run.self, Bench.self, Export.self, Inspect.self, CacheTeacher.self, DataReportCommand.self, Quantize.self, Sweep.self, Fit.self, DataCommand.self, Embed.self, TextKD.self])

    /// ParsableCommand's `main`, except that `DISTILL_MAX_CPU_ISA` is checked and OpenBLAS loaded
    /// once for every command (a clear error, with install advice where OpenBLAS is missing), and a run stopped by Ctrl-C (after saving
    /// its checkpoint) exits with 128 + the signal, 130 for SIGINT, as shells expect.
    static func main() {
        var command: ParsableCommand
        do { command = try parseAsRoot() } catch { exitWithMessage(for: error) }
        do {
            try CPUFeatures.checkEnvironment()
            try MemoryBudget.checkEnvironment()
            try BLAS.ensureLoaded()
            try command.run()
        } catch let interrupted as TrainingInterrupted {
            var message = interrupted.message
            if let folder = interrupted.runFolder {
                // `--resume DIR` takes no other option; `run` keeps its experiment file; demo
                // continues by itself, and text-kd takes its own options again plus --resume.
                let arguments = CommandLine.arguments.dropFirst()
                switch arguments.first {
                case "demo": message += "; run the same `distill demo` command again to continue it"
                case "text-kd": message += "; run the same `distill text-kd` command with --resume to continue it"
                case "run": message += "; continue with: distill \(arguments.prefix(2).joined(separator: " ")) --resume \(folder)"
                case let command?: message += "; continue with: distill \(command) --resume \(folder)"
                case nil: break
                }
            }
            FileHandle.standardError.write(Data("\(message)\n".utf8))
            Foundation.exit(interrupted.exitStatus)
        } catch {
            // The options parsed: the message alone, without the root command's usage.
            exitWithMessage(for: error, usage: false)
        }
    }

    /// ArgumentParser's `exit(withError:)`, except that the message leaves in one write (its own
    /// writes a byte at a time, and under mpirun the ranks' letters would interleave) and, for an
    /// error found after parsing, without the usage lines.
    static func exitWithMessage(for error: Error, usage: Bool = true) -> Never {
        let code = exitCode(for: error)
        var text = usage ? fullMessage(for: error) : message(for: error)
        if !usage && !text.isEmpty && code != .success { text = "Error: " + text }
        if !text.isEmpty {
            (code == .success ? FileHandle.standardOutput : FileHandle.standardError).write(Data((text + "\n").utf8))
        }
        Foundation.exit(code.rawValue)
    }
}

/// Where the training data comes from: shared by every command that trains.
struct DataFlags: ParsableArguments {
    @Option(help: "Data: fashion-mnist, mnist, a .csv file (with --label) or a .npz file.") var data = "fashion-mnist"
    @Option(help: "Test data for a .csv training file (default: a 20% split of the training file).") var testData: String?
    @Option(help: "Label column of a .csv file.") var label: String?
    @Option(help: "Use only the first N training samples.") var trainLimit: Int?

    func apply(to e: inout Experiment) {
        e.data = data
        e.testData = testData
        e.labelColumn = label
        e.trainLimit = trainLimit
    }
}

/// Batch size, learning rate and optimizer: shared by every command that trains.
struct OptimizerFlags: ParsableArguments {
    @Option(help: "Batch size (default: 16 to 128, about 32 batches an epoch for small data).") var batchSize: Int?
    @Option(name: [.customLong("lr"), .customLong("learning-rate")], help: "Learning rate.") var learningRate: Float?
    @Option(help: "Optimizer (default: adam).") var optimizer: OptimizerKind?

    func apply(to options: inout TrainingOptions) {
        if let batchSize { options.batchSize = batchSize }
        if let learningRate { options.learningRate = learningRate }
        if let optimizer { options.optimizer = optimizer }
    }
}

/// Options shared by every command that trains one model.
struct TrainingFlags: ParsableArguments {
    @OptionGroup var dataFlags: DataFlags
    @Option(help: "Numeric target column of a .csv file: a regression student (mlp:F-...-1) trained with MSE.") var target: String?
    @Option(help: "Hold out this share of the training rows (e.g. 0.1) to score each epoch and pick best.safetensors; the test set is then scored once, at the end. Default: each epoch is scored on the test set.") var validation: Double?
    @Option(help: "Epochs (default: enough for about 2,500 optimizer steps, at least 10).") var epochs: Int?
    @OptionGroup var optimizerFlags: OptimizerFlags
    @Option(help: "Learning-rate schedule (default: constant).") var schedule: ScheduleKind?
    @Option(help: "Weight decay.") var weightDecay: Float?
    @Option(help: "SGD momentum (0 ≤ m < 1).") var momentum: Float?
    @Option(help: "Epochs of linear learning-rate warm-up.") var warmupEpochs: Int?
    @Option(help: "Clip gradients to this global L2 norm.") var gradientClip: Float?
    @Option(help: "Random seed (initialisation, data order, augmentation).") var seed: UInt64?
    @Option(help: "Random shift augmentation, in pixels (images only).") var shift: Int?
    @Flag(help: "Random horizontal flips (images only).") var flip = false
    @Option(help: "Run folder for checkpoints, metrics and the trained model.") var output: String?
    @Option(help: "Continue the interrupted run in this folder.") var resume: String?
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Flag(help: "No progress output.") var quiet = false

    func apply(to e: inout Experiment) {
        dataFlags.apply(to: &e)
        e.target = target
        e.validation = validation
        optimizerFlags.apply(to: &e.options)
        if let epochs { e.options.epochs = epochs }
        if let schedule { e.options.schedule = schedule }
        if let weightDecay { e.options.weightDecay = weightDecay }
        if let momentum { e.options.momentum = momentum }
        if let warmupEpochs { e.options.warmupEpochs = warmupEpochs }
        if let gradientClip { e.options.gradientClip = gradientClip }
        if let seed { e.options.seed = seed }
        if let shift { e.options.shift = shift }
        if flip { e.options.flip = true }
        e.output = output
        e.options.quiet = quiet
    }
}

/// How to read an ONNX teacher (input normalisation, output kind), for every command that takes a teacher.
struct ONNXTeacherFlags: ParsableArguments {
    // Unconditional: a mean may be negative, and "-0.5" must not read as an option.
    @Option(parsing: .unconditional, help: "An ONNX teacher trained on normalised inputs: mean to subtract (one value, or one per channel, e.g. 0.485,0.456,0.406). Default: the model's distillkit.input_mean metadata.")
    var teacherInputMean: String?
    @Option(help: "An ONNX teacher trained on normalised inputs: standard deviation to divide by (e.g. 0.229,0.224,0.225). Default: the model's distillkit.input_std metadata.")
    var teacherInputStd: String?
    @Option(help: "What an ONNX teacher's output holds: logits, probs, logprobs, sigmoid (one probability per class, or one column for a binary classifier's positive class) or svm (an SVMClassifier's decision values). Default: what the graph says (Softmax, Sigmoid, a classifier's post_transform, ...), confirmed on the first batch.")
    var teacherOutput: String?
    @Option(help: "Which output of an ONNX teacher holds the class scores, when the graph has several FLOAT [N, C] outputs. Default: the only one, else the one named logits, probabilities, probs, output_probability or log_probs.")
    var teacherOutputName: String?

    /// Whether any of the options was given.
    var isSet: Bool { teacherInputMean != nil || teacherInputStd != nil || teacherOutput != nil || teacherOutputName != nil }

    var options: ONNXTeacherOptions {
        get throws {
            ONNXTeacherOptions(mean: try parseNumberList(teacherInputMean, option: "--teacher-input-mean"),
                               std: try parseNumberList(teacherInputStd, option: "--teacher-input-std"),
                               output: try teacherOutput.map(ONNXTeacherOptions.outputKind), outputName: teacherOutputName)
        }
    }
}

/// Cached teacher outputs instead of a teacher model, for `kd` and `sweep`.
struct TeacherOutputsFlags: ParsableArguments {
    @Option(help: "Cached teacher outputs instead of a teacher model: .npy, .npz, .safetensors or .csv, one row per training sample (see distill cache-teacher).") var teacherOutputs: String?
    @Option(help: "What --teacher-outputs holds: logits or probs (probabilities at temperature 1, e.g. predict_proba).") var teacherOutputsKind = TeacherOutputs.Kind.logits
    @Option(help: "The array to use from a multi-array .npz or .safetensors --teacher-outputs file.") var teacherOutputsArray: String?

    func apply(to e: inout Experiment) {
        e.teacherOutputs = teacherOutputs
        e.teacherOutputsKind = teacherOutputsKind
        e.teacherOutputsArray = teacherOutputsArray
    }
}

/// Runs an experiment (or resumes the one in `--resume`) and prints the summary.
func runAndReport(_ experiment: Experiment, flags: TrainingFlags) throws {
    var experiment = experiment
    var resume = false
    if let folder = flags.resume {
        // The settings come from the folder's config.json: any other option would be ignored.
        let kept: Set<String> = ["--resume", "--quiet", "--json"]
        let given = CommandLine.arguments.dropFirst(2).filter { $0.hasPrefix("--") && !kept.contains(String($0.prefix { $0 != "=" })) }
        guard given.isEmpty else {
            throw ValidationError("--resume \(folder) continues the run as its config.json records it, so \(given.joined(separator: ", ")) would be ignored; resume with --resume alone (and --quiet, --json), or start a new run with --output")
        }
        experiment = try RunFolder(URL(fileURLWithPath: folder)).readExperiment()
        experiment.output = folder
        experiment.options.quiet = flags.quiet
        resume = true
    } else {
        // Every setting came from an option: one out of range is a misused option (exit 64).
        try usage { try experiment.validate() }
    }
    try runExperiment(experiment, resume: resume, source: flags.resume, json: flags.json)
}

/// Under mpirun only rank 0 prints results (every rank trains; rank 0 writes the run folder).
var isMainRank: Bool { (try? Distributed.world)?.isMain ?? true }

/// Runs a classification or (with a target column) regression experiment and prints its summary.
func runExperiment(_ experiment: Experiment, resume: Bool, source: String?, json: Bool) throws {
    if experiment.target != nil {
        let result = try naming(source) { try RegressionRunner.run(experiment, resume: resume) }
        guard isMainRank else { return }
        return json ? printJSON(result.json) : print(result.text)
    }
    report(try naming(source) { try ExperimentRunner.run(experiment, resume: resume) }, json: json)
}

/// Runs a library check of command-line values in `validate()`: its error becomes a usage error
/// (exit status 64), like ArgumentParser's own.
func usage<T>(_ check: () throws -> T) throws -> T {
    do { return try check() } catch let error as TensorError { throw ValidationError(error.message) }
}

/// Runs `body`; an error that does not already name `source` (the experiment file or the run
/// folder the settings came from) gets it in front, so the user knows where to look.
func naming<T>(_ source: String?, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as TensorError {
        guard let source, !error.message.contains(source) else { throw error }
        throw TensorError("\(source): \(error.message)")
    }
}

func report(_ result: ExperimentRunner.Result, json: Bool) {
    guard isMainRank else { return }
    if json {
        var object = result.training.test.json
        object["params"] = result.student.parameterCount
        object["bytes"] = result.student.stateBytes
        object["models"] = result.rows.map(\.json)
        if let run = result.runFolder { object["run"] = run.url.path }
        printJSON(object)
    } else {
        print(summaryTable(result.rows))
        print(result.runFolder.map { "run folder: \($0.url.path)" } ?? "no run folder (no --output): the model was not saved; add --output DIR to keep it")
    }
}

func printJSON(_ object: Any) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

extension OptimizerKind: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}
extension WeightRounding: ExpressibleByArgument {}
extension TeacherOutputs.Kind: ExpressibleByArgument {}
