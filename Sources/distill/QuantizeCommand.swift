import ArgumentParser
import DistillNN
import DistillTensor
import DistillTraining
import Foundation

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a student to int8: per-channel int8 weights, calibrated uint8 activations, integer kernels.",
        discussion: """
        Post-training quantization: weights per output channel (symmetric int8), activations per \
        tensor with ranges calibrated on --samples rows of the training split (min/max and \
        percentile ranges are both tried; the one with the better accuracy on those rows is kept). \
        Prints the float32 and int8 test accuracy, the bytes and the calibration chosen. The int8 \
        file works with `distill eval`, `distill bench infer` and `distill export --onnx` (QDQ).
        """)
    @Argument(help: "Model file (.safetensors from distill train or distill kd), or a run folder (its best.safetensors).", transform: RunFolder.modelFile) var model: String
    @Option(help: "Calibration data (its training split calibrates, its test split scores): fashion-mnist, mnist, a .csv (with --label) or .npz file.") var calibration: String
    @Option(help: "Label column of a .csv file.") var label: String?
    @Option(help: "Calibration samples, drawn from the training split.") var samples = 1000
    @Option(help: "Seed of the sample draw (and of a .csv file's validation split).") var seed: UInt64 = 0
    @Option(help: "The int8 model file to write (.safetensors).") var output: String
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        guard (1...StudentQuantization.maxSamples).contains(samples) else {
            throw ValidationError("--samples \(samples): must be in 1...\(StudentQuantization.maxSamples)")
        }
        guard output.lowercased().hasSuffix(".safetensors") else { throw ValidationError("--output \(output): name a .safetensors file") }
    }

    func run() throws {
        let report = try StudentQuantization.run(modelAt: URL(fileURLWithPath: model), data: calibration, labelColumn: label,
                                                 samples: samples, seed: seed, output: URL(fileURLWithPath: output))
        if json { printJSON(report.json) } else { print(report.text) }
    }
}

/// Parameters and bytes of a loaded model, as `distill eval` reports them: an int8 student's own
/// (one byte per weight, see `QuantizedStudent.stateBytes`), else the float module's.
func modelSize(_ net: Module) -> (parameters: Int, bytes: Int) {
    if let quantized = (net as? Sequential)?.layers.first as? QuantizedModel {
        return (quantized.student.parameterCount, quantized.student.stateBytes)
    }
    return (net.parameterCount, net.stateBytes)
}

/// "int8-plan (KERNEL)" for an int8 student (`distill bench infer` names the path it timed), else nil.
func int8PlanDescription(_ net: Module) -> String? {
    (net as? Sequential)?.layers.first is QuantizedModel ? "int8-plan (\(QuantizedPlan.kernelDescription))" : nil
}
