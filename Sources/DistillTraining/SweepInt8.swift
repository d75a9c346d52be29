import DistillData
import DistillNN
import DistillTensor
import Foundation

extension StudentQuantization {
    /// The int8 columns of `distill sweep --int8` (an `Int8Measurement`): each trained student is
    /// quantized as `distill quantize` does it (up to `samples` calibration rows, a seeded pick;
    /// min/max or percentile ranges, whichever classifies them better), scored on the test rows,
    /// and timed on its int8 plan like the float student (`seconds`, half at batch 1, half at 256).
    public static func sweepMeasurement(samples: Int = 1000, seconds: Double) -> Int8Measurement {
        { student, info, calibration, test in
            var calibration = calibration, test = test
            if let statistics = try Tabular.statistics(of: info, source: info.spec) {  // int8 plans take standardised rows
                calibration = try calibration.standardized(with: statistics)
                test = try test.standardized(with: statistics)
            }
            var g = SeededGenerator(seed: 0)
            let rows = Array((0..<calibration.count).filter { calibration.labels[$0] >= 0 }.shuffled(using: &g).prefix(samples))
            guard !rows.isEmpty else { throw TensorError("int8 calibration needs labelled training rows") }
            let (quantized, _) = try Quantizer.quantize(student, info: SavedModelDescription(info), samples: calibration.rows(rows),
                                                        labels: rows.map { calibration.labels[$0] })
            let model = try QuantizedModel(quantized)
            let speed = StudentSpeed.measure(model, exampleShape: info.inputShape, seconds: seconds)
            return Int8Figures(bytes: quantized.stateBytes, accuracy: try evaluate(model, on: test).accuracy,
                               latencyMicrosecondsP50: speed.latencyMicrosecondsP50, samplesPerSecond: speed.samplesPerSecond)
        }
    }
}
