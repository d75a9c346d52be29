import ArgumentParser
import DistillONNX
import DistillTensor
import Foundation

/// `distill bench onnx`: the ONNX executor's speed on an imported model, fed random inputs of the
/// declared shapes (the leading dimension is the batch). `scripts/ort_reference.py` times
/// onnxruntime on the same file the same way, so the two can be compared back to back.
struct BenchONNX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx",
        abstract: "Speed of an imported ONNX model: batch-1 latency percentiles, or batch throughput.")

    @Option(help: "The .onnx file.") var model: String
    @Option(help: "Batch size (the leading dimension of every input).") var batch = 1
    @Option(help: "Timed calls (default: as many as fit in about three seconds).") var calls: Int?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws { try requireCounts(["--batch": batch, "--calls": calls ?? 1]) }

    func run() throws {
        let onnx = try ONNXModel(contentsOf: URL(fileURLWithPath: model))
        let feeds = try Dictionary(uniqueKeysWithValues: onnx.inputs.map { ($0.name, try randomInput(for: $0)) })
        var report: [String: Any] = ["workload": "onnx-b\(batch)", "model": model, "batch": batch,
                                     "threads": Parallel.workers, "blas": BLAS.kernelDescription, "kernels": CPUFeatures.kernelDescription]
        var failure: Error?
        let timing = timeCalls(batch: batch, calls: calls, warmup: batch == 1 ? 50 : 2) {
            do { _ = try onnx.run(feeds) } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
        report.merge(timing) { $1 }
        report["us_per_sample"] = 1e6 / timing["samples_per_second"]!
        report["peak_memory_bytes"] = peakMemoryBytes()
        printReport(report, json: json)
    }

    /// Uniform [0, 1) floats, or zeros for integer inputs, shaped as declared with the batch first.
    func randomInput(for input: ONNXValueInfo) throws -> ONNXValue {
        guard let declared = input.shape, let type = input.type else {
            throw ValidationError("\(model): input '\(input.name)' has no declared tensor type and shape to bench with")
        }
        let shape = try declared.enumerated().map { axis, dim -> Int in
            if axis == 0 {
                if let fixed = dim.value, fixed != batch {
                    throw ValidationError("\(model): input '\(input.name)' has a fixed batch of \(fixed); use --batch \(fixed)")
                }
                return batch
            }
            guard let fixed = dim.value else {
                throw ValidationError("\(model): input '\(input.name)' axis \(axis) is '\(dim)', not a number: only the batch axis may vary")
            }
            return fixed
        }
        _ = try MemoryBudget.check(shape: shape, elementBytes: 8, for: "input '\(input.name)'")
        var generator = SeededGenerator(seed: 1)
        switch type {
        case .float: return .float(Tensor.randomUniform(shape, using: &generator))
        case _ where type.isInteger:
            return .int(IntTensor(shape: shape, values: [Int64](repeating: 0, count: shape.reduce(1, *)), type: type))
        default: throw ValidationError("\(model): input '\(input.name)' is \(type); bench feeds FLOAT or integer inputs")
        }
    }
}
