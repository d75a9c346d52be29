import ArgumentParser
import DistillNN
import DistillTensor
import DistillTraining
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed: training steps, distillation steps, inference latency.",
        subcommands: [BenchTrain.self])
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
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        try BLAS.ensureLoaded()
        let net = try ModelZoo.build(model, seed: 0)
        net.train()
        var g = SeededGenerator(seed: 1)
        let x = Tensor.randomUniform([batch, 1, 28, 28], using: &g)
        let labels = (0..<batch).map { _ in g.nextInt(below: 10) }
        let opt = Adam(parameters: net.trainableParameters(), learningRate: 1e-3)
        func step() {
            opt.zeroGrad()
            let loss = crossEntropy(logits: net(x), labels: labels)
            loss.backward()
            opt.step()
        }
        let rate = measureRate(batch: batch, steps: steps, repeats: repeats, warmup: 5, step)
        let report: [String: Any] = [
            "workload": "train", "model": model, "batch": batch, "samples_per_second": rate,
            "params": net.parameterCount, "threads": Parallel.workers, "blas": BLAS.kernelDescription,
            "peak_memory_bytes": peakMemoryBytes(),
        ]
        printReport(report, json: json)
    }
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
