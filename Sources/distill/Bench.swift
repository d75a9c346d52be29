import ArgumentParser
import DistillData
import DistillNN
import DistillONNX
import DistillTensor
import DistillTraining
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed: training steps, distillation steps, inference latency.",
        subcommands: [BenchTrain.self, BenchKD.self, BenchInfer.self, BenchONNX.self, BenchGEMM.self, BenchEmbed.self])
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training-step throughput (forward, cross-entropy, backward, Adam step) on random data.",
        discussion: "Times the training loop's own step (Trainer.takeSteps) on 60,000 random images, as distill train runs it.")

    @Option(help: "Model spec: mlp:784-64-10 or a preset (cnn-small, cnn-tiny, lenet5, resnet8, mobilenet-tiny).")
    var model = "cnn-small"
    @Option(help: "Batch size.") var batch = 128
    @Option(help: "Timed steps per repeat.") var steps = 20
    @Option(help: "Repeats (the median is reported).") var repeats = 7
    @Flag(help: "Run an MLP through the autograd graph even though a TrainingPlan covers it.") var useModule = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let bench = try BenchTraining(student: model, teacher: nil, losses: [LossTerm(.ce)], batch: batch, useModule: useModule)
        let rate = try measureRate(batch: batch, steps: steps, repeats: repeats, warmup: 5) { try bench.trainer.takeSteps(1) }
        printReport([
            "workload": "train", "model": model, "batch": batch, "samples_per_second": rate, "path": bench.path,
            "params": bench.trainer.student.parameterCount, "threads": Parallel.workers, "blas": BLAS.kernelDescription, "kernels": CPUFeatures.kernelDescription,
            "convolution": ConvolutionPath.description, "peak_memory_bytes": peakMemoryBytes(),
        ], json: json)
    }
}

struct BenchKD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kd",
        abstract: "Distillation-step throughput: teacher forward (or cached logits), student forward, KD loss, backward, Adam step.",
        discussion: "Times the training loop's own step (Trainer.takeSteps) on 60,000 random images, as distill kd runs it, with the reference script's loss: 0.9 KD at T = 4 + 0.1 CE.")

    @Option(help: "Teacher spec (random weights: speed does not depend on them).") var teacher = "cnn-small"
    @Option(help: "Student spec.") var student = "mlp:784-64-10"
    @Option(help: "Batch size.") var batch = 128
    @Flag(help: "Use cached teacher logits instead of running the teacher.") var cachedTeacher = false
    @Flag(help: "Run the student through the autograd graph even when a TrainingPlan covers it.") var useModule = false
    @Option(help: "Timed steps per repeat (default: 300 with --cached-teacher, whose steps take a fraction of a millisecond; 50 otherwise).") var steps: Int?
    @Option(help: "Repeats (the median is reported).") var repeats = 7
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        // Cached-teacher steps are short: 300 timed steps after 50 warm-up ones, as the reference
        // script times them (50 steps, about 12 ms, moved by ±25% from run to run).
        let steps = self.steps ?? (cachedTeacher ? 300 : 50), warmup = cachedTeacher ? 50 : 10
        var kd = LossTerm(.kd, weight: 0.9)
        kd.temperature = 4
        let model = try ModelZoo.build(teacher, seed: 1)
        let source: BenchTraining.TeacherSource = cachedTeacher ? .cachedLogits(name: teacher, parameters: model.parameterCount) : .model(model, name: teacher)
        let bench = try BenchTraining(student: student, teacher: source, losses: [kd, LossTerm(.ce, weight: 0.1)], batch: batch, useModule: useModule)
        let rate = try measureRate(batch: batch, steps: steps, repeats: repeats, warmup: warmup) { try bench.trainer.takeSteps(1) }
        printReport([
            "workload": cachedTeacher ? "kd-offline" : "kd-online", "teacher": teacher, "student": student, "batch": batch,
            "samples_per_second": rate, "path": bench.path,
            "threads": Parallel.workers, "blas": BLAS.kernelDescription, "kernels": CPUFeatures.kernelDescription, "peak_memory_bytes": peakMemoryBytes(),
            "convolution": ConvolutionPath.description,
        ], json: json)
    }
}

/// A `Trainer` on the reference script's data: 60,000 uniform random 28×28 images with random
/// labels (and, for a cached teacher, random logits), batches drawn from a fresh permutation each
/// pass. The benchmarks time `Trainer.takeSteps`, the step `distill train` and `distill kd` take.
struct BenchTraining {
    enum TeacherSource {
        case model(Module, name: String)
        case cachedLogits(name: String, parameters: Int)
    }

    let trainer: Trainer<EvaluationReport>

    init(student spec: String, teacher: TeacherSource?, losses: [LossTerm], batch: Int, useModule: Bool) throws {
        let rows = 60_000, shape = [1, 28, 28]
        var g = SeededGenerator(seed: 1)
        let pool = Tensor.randomUniform([rows] + shape, using: &g)
        let labels = (0..<rows).map { _ in g.nextInt(below: 10) }
        let data = try LabeledDataset(features: pool, labels: labels, numClasses: 10)
        let teachers: [Teacher]
        switch teacher {
        case .model(let model, let name)?: teachers = [ModuleTeacher(model, name: name)]
        case .cachedLogits(let name, let parameters)?:
            teachers = [CachedTeacher(logits: Tensor.randomNormal([rows, 10], std: 3, using: &g), name: name, parameterCount: parameters)]
        case nil: teachers = []
        }
        var options = TrainingOptions()
        options.batchSize = batch
        options.epochs = 1
        options.quiet = true
        let model = try ModelZoo.build(spec, seed: 0)
        try ModelShapes.check(model, inputShape: shape, numClasses: 10, what: "--student '\(spec.prefix(80))' on the benchmark's data (random [1, 28, 28] images, 10 classes)")
        if case .model(let teacher, let name)? = teacher {
            try ModelShapes.check(teacher, inputShape: shape, numClasses: 10, what: "--teacher '\(name.prefix(80))' on the benchmark's data (random [1, 28, 28] images, 10 classes)")
        }
        trainer = try Trainer(student: model, studentInfo: SavedModel(spec: spec, inputShape: shape, numClasses: 10), teachers: teachers,
                              objective: try DistillationObjective(terms: losses), options: options, train: data, test: data.prefix(1), run: nil)
        trainer.usesTrainingPlan = !useModule
    }

    /// "training-plan" when an MLP student runs through a `TrainingPlan`, else "module".
    var path: String { trainer.trainingPlan == nil ? "module" : "training-plan" }
}

struct BenchInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Inference speed of a model: batch-1 latency percentiles, or batch throughput.")

    @Option(help: "Model spec or model file (.safetensors).") var model = "mlp:784-64-10"
    @Option(help: "Batch size (1: latency percentiles; larger: throughput).") var batch = 1
    @Option(help: "Timed calls per repeat.") var calls = 2000
    @Flag(help: "Time the module's forward pass even when an InferencePlan covers the model.") var useModule = false
    @Option(help: ArgumentHelp("Also write the benchmarked model as ONNX, for timing the same network in onnxruntime (scripts/ort_reference.py).", valueName: "file.onnx"))
    var onnx: String?
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        // A saved model brings its own input shape (e.g. [64] for a tabular MLP).
        let saved = model.hasSuffix(".safetensors") ? try SavedModel.load(URL(fileURLWithPath: model)) : nil
        let net: Module = try saved?.model ?? ModelZoo.build(model, seed: 0)
        net.eval()
        let exampleShape = saved?.info.inputShape ?? [1, 28, 28]
        if saved == nil {
            try ModelShapes.check(net, inputShape: exampleShape, what: "--model '\(model.prefix(80))' on the benchmark's random [1, 28, 28] images (time other input shapes with a saved .safetensors model)")
        }
        if let onnx { try ONNXExport.write(net, inputShape: exampleShape, to: URL(fileURLWithPath: onnx)) }
        var g = SeededGenerator(seed: 1)
        let x = Tensor.randomUniform([batch] + exampleShape, using: &g)
        // A tabular student standardises raw rows with the statistics it keeps: timed too. An MLP or CNN
        // runs through its InferencePlan (as a deployed student would, standardisation included);
        // --use-module times the module's own forward pass instead.
        let statistics = try saved.flatMap { try Tabular.statistics(of: $0.info, source: model) }
        if let statistics { _ = try statistics.apply(to: x) }  // shapes checked once, here
        let plan = useModule ? nil : InferencePlan(net, exampleShape: Array(x.shape.dropFirst()),
                                                   standardize: statistics.map { ($0.mean, $0.scale) })
        let predict: (Tensor) -> Tensor = plan.map { p in { p($0) } }
            ?? statistics.map { s in { net(try! s.apply(to: $0)) } } ?? { net($0) }
        var report: [String: Any] = ["workload": batch == 1 ? "infer-b1" : "infer-b\(batch)", "model": model, "batch": batch,
                                     "threads": Parallel.workers, "blas": BLAS.kernelDescription, "kernels": CPUFeatures.kernelDescription,
                                     "path": plan == nil ? int8PlanDescription(net) ?? "module" : "inference-plan", "standardizes_inputs": statistics != nil]
        withNoGrad {
            report.merge(timeCalls(batch: batch, calls: calls, warmup: 200) { _ = predict(x) }) { $1 }
        }
        report["peak_memory_bytes"] = peakMemoryBytes()
        printReport(report, json: json)
    }
}

struct BenchGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "One matrix product C[m,n] = op(A)·op(B), the kernel under Linear and convolution: GFLOP/s on one thread and split across DISTILL_THREADS.")

    @Option(help: "Rows of C (the batch, for a Linear layer).") var m = 256
    @Option(help: "Columns of C (the layer's outputs).") var n = 64
    @Option(help: "The shared dimension (the layer's inputs).") var k = 784
    @Flag(help: "B is stored transposed, [n, k], as a Linear layer's weight is.") var transposeB = false
    @Option(help: "Timed products per repeat.") var calls = 500
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        var g = SeededGenerator(seed: 1)
        let a = Tensor.randomUniform([m, k], using: &g), b = Tensor.randomUniform(transposeB ? [n, k] : [k, n], using: &g)
        let c = Tensor.zeros([m, n])
        var report: [String: Any] = ["workload": "gemm", "m": m, "n": n, "k": k, "transpose_b": transposeB,
                                     "threads": Parallel.workers, "blas": BLAS.kernelDescription, "kernels": CPUFeatures.kernelDescription]
        for split in [false, true] {
            let rate = measureRate(batch: 1, steps: calls, repeats: 5, warmup: 20) {
                BLAS.sgemm(transposeB: transposeB, m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: transposeB ? k : n,
                           c: c.data, ldc: n, split: split ? .automatic : .none)
            }
            report[split ? "gflops_split" : "gflops_one_thread"] = rate * Double(2 * m * n * k) / 1e9
        }
        report["peak_memory_bytes"] = peakMemoryBytes()
        printReport(report, json: json)
    }
}

/// The least time `timeCalls` warms up for. A process's first half second runs slower on the
/// 2-core VMs: the MLP's batch 256 timed over its first 2,000 calls ran at 2.4-2.7M samples/s,
/// and at 3.7-4.0M after half a second of warm-up (three runs of each, back to back;
/// scripts/ort_reference.py warms onnxruntime up as long).
let minimumWarmupNanoseconds: UInt64 = 500_000_000

/// Times `calls` calls of `call` on a batch of `batch` (after at least `warmup` untimed calls and
/// `minimumWarmupNanoseconds`; nil calls:
/// as many as fit in about three seconds, at least five): per-call latency percentiles in µs and
/// samples per second over the whole timed run.
func timeCalls(batch: Int, calls: Int?, warmup: Int, _ call: () -> Void) -> [String: Double] {
    func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    let warmStart = now()
    var warmed = 0
    while warmed < max(warmup, 1) || now() - warmStart < minimumWarmupNanoseconds { call(); warmed += 1 }
    let perCall = Double(now() - warmStart) / 1e9 / Double(warmed)
    let count = calls ?? max(5, Int(3 / max(perCall, 1e-7)))
    var times: [Double] = []
    times.reserveCapacity(count)
    let start = now()
    for _ in 0..<count {
        let a = now()
        call()
        times.append(Double(now() - a) / 1000)
    }
    let total = Double(now() - start) / 1e9
    times.sort()
    func percentile(_ p: Double) -> Double { times[min(times.count - 1, Int(Double(times.count) * p))] }
    return ["latency_us_p50": percentile(0.5), "latency_us_p90": percentile(0.9), "latency_us_p99": percentile(0.99),
            "samples_per_second": Double(count * batch) / total, "calls": Double(count)]
}

/// Median samples per second over `repeats` timed runs of `steps` steps, after `warmup` steps.
func measureRate(batch: Int, steps: Int, repeats: Int, warmup: Int, _ step: () throws -> Void) rethrows -> Double {
    for _ in 0..<warmup { try step() }
    var rates: [Double] = []
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps { try step() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        rates.append(Double(steps * batch) / seconds)
    }
    return rates.sorted()[rates.count / 2]
}

/// Peak resident memory of this process (Linux: VmHWM).
func peakMemoryBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
    return kb * 1024
}

func printReport(_ report: [String: Any], json: Bool) {
    if json {
        let data = try! JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        for key in report.keys.sorted() { print("\(key.padding(toLength: 20, withPad: " ", startingAt: 0)) \(report[key]!)") }
    }
}

/// Throws a usage error naming the first option whose value is outside 1...limit.
func requireCounts(_ options: KeyValuePairs<String, Int>, limit: Int = 1 << 20) throws {
    for (name, value) in options where !(1...limit).contains(value) {
        throw ValidationError("\(name) \(value): must be 1...\(limit)")
    }
}

extension BenchTrain { func validate() throws { try requireCounts(["--batch": batch, "--steps": steps, "--repeats": repeats]) } }
extension BenchKD { func validate() throws { try requireCounts(["--batch": batch, "--steps": steps ?? 1, "--repeats": repeats]) } }
extension BenchInfer { func validate() throws { try requireCounts(["--batch": batch, "--calls": calls]) } }
extension BenchGEMM { func validate() throws { try requireCounts(["--m": m, "--n": n, "--k": k, "--calls": calls], limit: 1 << 16) } }
