import DistillData
import DistillNN
import DistillONNX
import DistillTensor
import Foundation

/// Speed of a trained student as it would be deployed: through its `InferencePlan` when the plan
/// covers the model (MLPs and plain CNNs), otherwise through the module, in evaluation mode.
public struct StudentSpeed: Sendable, Equatable {
    /// Median batch-1 latency, microseconds.
    public var latencyMicrosecondsP50: Double
    /// Samples per second at batch `StudentSpeed.throughputBatch`.
    public var samplesPerSecond: Double
    /// "inference-plan" or "module".
    public var path: String

    public init(latencyMicrosecondsP50: Double, samplesPerSecond: Double, path: String) {
        self.latencyMicrosecondsP50 = latencyMicrosecondsP50; self.samplesPerSecond = samplesPerSecond; self.path = path
    }

    /// The batch of the throughput figure (the "batch-256 throughput").
    public static let throughputBatch = 256

    /// Times `model` on random inputs of `exampleShape`: batch-1 calls for about half of
    /// `seconds` (the median is reported; at least 20 calls), then batch-256 calls for the other
    /// half (at least 3). `standardize` (a tabular student's stored statistics) is part of the
    /// timed call, as in `distill bench infer`.
    public static func measure(_ model: Module, exampleShape: [Int], standardize: FeatureStatistics? = nil, seconds: Double = 1) -> StudentSpeed {
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        let plan = InferencePlan(model, exampleShape: exampleShape, standardize: standardize.map { ($0.mean, $0.scale) })
        let predict: (Tensor) -> Tensor = plan.map { p in { p($0) } }
            ?? standardize.map { s in { x in model((try? s.apply(to: x)) ?? x) } } ?? { model($0) }
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        var g = SeededGenerator(seed: 1)
        let one = Tensor.randomUniform([1] + exampleShape, using: &g)
        let batch = Tensor.randomUniform([throughputBatch] + exampleShape, using: &g)
        let half = UInt64(max(seconds, 0.001) / 2 * 1e9)
        return withNoGrad {
            for _ in 0..<20 { _ = predict(one) }
            var times: [Double] = []
            let start = now()
            while times.count < 20 || (now() - start < half && times.count < 100_000) {
                let t0 = now()
                _ = predict(one)
                times.append(Double(now() - t0) / 1000)
            }
            times.sort()
            _ = predict(batch)
            var calls = 0
            let batchStart = now()
            while calls < 3 || now() - batchStart < half {
                _ = predict(batch)
                calls += 1
            }
            let elapsed = Double(now() - batchStart) / 1e9
            return StudentSpeed(latencyMicrosecondsP50: times[times.count / 2], samplesPerSecond: Double(calls * throughputBatch) / elapsed,
                                path: plan == nil ? "module" : "inference-plan")
        }
    }
}

/// The size of a student: parameters, bytes of its weights and buffers (float32), and the
/// floating-point operations of one example (a multiply-add counts 2; counted on its ONNX export,
/// as `distill inspect` does; nil when the export does not cover a layer).
public struct StudentSize: Sendable, Equatable {
    public var parameters: Int
    public var bytes: Int
    public var flops: Int?

    public init(parameters: Int, bytes: Int, flops: Int?) {
        self.parameters = parameters; self.bytes = bytes; self.flops = flops
    }

    public init(_ model: Module, spec: String, exampleShape: [Int]) {
        parameters = model.parameterCount
        bytes = model.stateBytes
        flops = ModelInspector.summary(model, spec: spec, inputShape: exampleShape, source: spec).flops
    }
}

/// What a student gives at int8 (`distill quantize`), for the sweep's `*_int8` columns.
public struct Int8Figures: Sendable, Equatable {
    public var bytes: Int
    /// Test accuracy, a fraction of 1.
    public var accuracy: Double
    public var latencyMicrosecondsP50: Double
    public var samplesPerSecond: Double

    public init(bytes: Int, accuracy: Double, latencyMicrosecondsP50: Double, samplesPerSecond: Double) {
        self.bytes = bytes; self.accuracy = accuracy; self.latencyMicrosecondsP50 = latencyMicrosecondsP50; self.samplesPerSecond = samplesPerSecond
    }
}

/// THE hook for int8 in `distill sweep`: quantizes one trained float student (its saved file,
/// as `SavedModel.load` gives it back) with `calibration` rows from the training data, and
/// measures it on `test` (raw rows; a tabular student's stored statistics apply as for the float
/// one). `SweepSettings.int8` holds it; while it is nil every `*_int8` field stays null in
/// `sweep.jsonl`, `sweep.csv`, `--json` and the HTML table.
public typealias Int8Measurement = (_ student: Sequential, _ info: SavedModel, _ calibration: LabeledDataset, _ test: LabeledDataset) throws -> Int8Figures
