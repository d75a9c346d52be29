import ArgumentParser
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
        abstract: "Training-step throughput (forward, cross-entropy, backward, Adam step) on random data.")

    @Option(help: "Model spec: mlp:784-64-10 or a preset (cnn-small, cnn-tiny, lenet5, resnet8, mobilenet-tiny).")
    var model = "cnn-small"
    @Option(help: "Batch size.") var batch = 128
    @Option(help: "Timed steps per repeat.") var steps = 20
    @Option(help: "Repeats (the median is reported).") var repeats = 7
    @Flag(help: "Run an MLP through the autograd graph even though a TrainingPlan covers it.") var useModule = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let net = try ModelZoo.build(model, seed: 0)
        net.train()
        var g = SeededGenerator(seed: 1)
        let x = Tensor.randomUniform([batch, 1, 28, 28], using: &g)
        let labels = (0..<batch).map { _ in g.nextInt(below: 10) }
        let opt = Adam(parameters: net.trainableParameters(), learningRate: 1e-3)
        let plan = useModule ? nil : TrainingPlan(net, exampleShape: [1, 28, 28])  // MLPs, as `distill train` runs them
        func step() {
            opt.zeroGrad()
            let logits = plan?.forward(x) ?? net(x)
            crossEntropy(logits: logits, labels: labels).backward()
            if let plan, let g = logits.grad { plan.backward(g) }
            opt.step()
        }
        let rate = measureRate(batch: batch, steps: steps, repeats: repeats, warmup: 5, step)
        let report: [String: Any] = [
            "workload": "train", "model": model, "batch": batch, "samples_per_second": rate, "path": plan == nil ? "module" : "training-plan",
            "params": net.parameterCount, "threads": Parallel.workers, "blas": BLAS.kernelDescription,
            "convolution": ConvolutionPath.description, "peak_memory_bytes": peakMemoryBytes(),
        ]
        printReport(report, json: json)
    }
}

struct BenchKD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kd",
        abstract: "Distillation-step throughput: teacher forward (or cached logits), student forward, KD loss, backward, Adam step.")

    @Option(help: "Teacher spec (random weights: speed does not depend on them).") var teacher = "cnn-small"
    @Option(help: "Student spec.") var student = "mlp:784-64-10"
    @Option(help: "Batch size.") var batch = 128
    @Flag(help: "Use cached teacher logits instead of running the teacher.") var cachedTeacher = false
    @Flag(help: "Run the student through the autograd graph even when a TrainingPlan covers it.") var useModule = false
    @Option(help: "Timed steps per repeat.") var steps = 50
    @Option(help: "Repeats (the median is reported).") var repeats = 7
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let t = try ModelZoo.build(teacher, seed: 1)
        t.freeze()
        let s = try ModelZoo.build(student, seed: 0)
        var g = SeededGenerator(seed: 1)
        // As in the reference script: 60,000 random images (188 MB) and each step a batch of 128
        // rows drawn from a permutation, a fresh one for each pass.
        let n = 60_000
        let pool = Tensor.randomUniform([n, 1, 28, 28], using: &g)
        var order = Array(0..<n), position = n
        func nextBatch() -> [Int] {
            if position + batch > n { order.shuffle(using: &g); position = 0 }
            defer { position += batch }
            return Array(order[position..<(position + batch)])
        }
        let cached = Tensor.randomNormal([n, 10], std: 3, using: &g)
        let labels = (0..<n).map { _ in g.nextInt(below: 10) }
        let opt = Adam(parameters: s.trainableParameters(), learningRate: 1e-3)
        // An MLP student runs through a TrainingPlan, as `distill kd` runs it; --use-module
        // times the autograd graph instead.
        let plan = useModule ? nil : TrainingPlan(s, exampleShape: [1, 28, 28])
        var cursor = 0
        // Where a step's time goes, summed over every step (warm-up included): data (the batch and
        // the teacher's logits), forward, loss, backward, optimizer.
        var phases = [UInt64](repeating: 0, count: 5)
        var mark = DispatchTime.now().uptimeNanoseconds
        func lap(_ phase: Int) {
            let now = DispatchTime.now().uptimeNanoseconds
            phases[phase] += now - mark
            mark = now
        }
        func step() {
            mark = DispatchTime.now().uptimeNanoseconds
            cursor += 1
            let rows = nextBatch()
            // The batch is gathered from the pool: once for the teacher and the graph, or by each
            // core for itself when a plan runs the student from cached logits.
            let x = plan == nil || !cachedTeacher ? pool.indexSelect(axis: 0, indices: rows) : nil
            let teacherLogits = cachedTeacher ? cached.indexSelect(axis: 0, indices: rows) : withNoGrad { t(x!) }
            opt.zeroGrad()
            lap(0)
            let source = SharedPointer(pool.data)
            let logits = x.map { plan?.forward($0) ?? s($0) } ?? plan!.forward(rows: batch) { buffer in
                for (j, row) in rows.enumerated() { (buffer + j * 784).update(from: source.p + row * 784, count: 784) }
            }
            lap(1)
            let loss = kdLoss(student: logits, teacher: teacherLogits, temperature: 4) * 0.9
                + crossEntropy(logits: logits, labels: rows.map { labels[$0] }) * 0.1
            lap(2)
            loss.backward()
            if let plan, let g = logits.grad { plan.backward(g) }
            lap(3)
            opt.step()
            lap(4)
        }
        let rate = measureRate(batch: batch, steps: steps, repeats: repeats, warmup: 10, step)
        printReport([
            "workload": cachedTeacher ? "kd-offline" : "kd-online", "teacher": teacher, "student": student, "batch": batch,
            "samples_per_second": rate, "path": plan == nil ? "module" : "training-plan",
            "phase_us": Dictionary(uniqueKeysWithValues: zip(["data", "forward", "loss", "backward", "optimizer"],
                                                             phases.map { Double($0) / Double(max(cursor, 1)) / 1000 })),
            "threads": Parallel.workers, "blas": BLAS.kernelDescription, "peak_memory_bytes": peakMemoryBytes(),
            "convolution": ConvolutionPath.description,
        ], json: json)
    }
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
                                     "threads": Parallel.workers, "blas": BLAS.kernelDescription,
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
                                     "threads": Parallel.workers, "blas": BLAS.kernelDescription]
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

/// Times `calls` calls of `call` on a batch of `batch` (after `warmup` untimed calls; nil calls:
/// as many as fit in about three seconds, at least five): per-call latency percentiles in µs and
/// samples per second over the whole timed run.
func timeCalls(batch: Int, calls: Int?, warmup: Int, _ call: () -> Void) -> [String: Double] {
    func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    let warmStart = now()
    for _ in 0..<max(warmup, 1) { call() }
    let perCall = Double(now() - warmStart) / 1e9 / Double(max(warmup, 1))
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
func measureRate(batch: Int, steps: Int, repeats: Int, warmup: Int, _ step: () -> Void) -> Double {
    for _ in 0..<warmup { step() }
    var rates: [Double] = []
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps { step() }
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
extension BenchKD { func validate() throws { try requireCounts(["--batch": batch, "--steps": steps, "--repeats": repeats]) } }
extension BenchInfer { func validate() throws { try requireCounts(["--batch": batch, "--calls": calls]) } }
extension BenchGEMM { func validate() throws { try requireCounts(["--m": m, "--n": n, "--k": k, "--calls": calls], limit: 1 << 16) } }
