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
        Weights are rounded so that each layer's outputs on those rows, not its weights, stay \
        closest to the float layer's (GPTQ, then a bias correction of the mean shift; \
        --rounding nearest rounds each weight to its nearest step instead). \
        Prints the float32 and int8 test accuracy, the bytes and the calibration chosen. The int8 \
        file works with `distill eval`, `distill bench infer` and `distill export --onnx` (QDQ).

        When int8 loses more than 0.5 points, --qat fine-tunes the student with fake quantization \
        (weights per channel, activations with the calibrated ranges, frozen) for --qat-epochs \
        epochs while distilling from the float teacher (--teacher, by default the model itself), \
        then prints the post-training (PTQ) and the fine-tuned (QAT) int8 accuracy side by side \
        and writes whichever is better on validation rows set aside from the training split.
        """)
    @Argument(help: "Model file (.safetensors from distill train or distill kd), or a run folder (its best.safetensors).", transform: RunFolder.modelFile) var model: String
    @Option(help: "Calibration data (its training split calibrates, its test split scores): fashion-mnist, mnist, a .csv (with --label) or .npz file.") var calibration: String
    @Option(help: "Label column of a .csv file.") var label: String?
    @Option(help: "Calibration samples, drawn from the training split.") var samples = 1000
    @Option(help: "Seed of the sample draw (and of a .csv file's validation split).") var seed: UInt64 = 0
    @Option(help: "Weight rounding: compensated (errors compensated along the calibration rows, biases corrected) or nearest.") var rounding: WeightRounding = .compensated
    @Option(help: "The int8 model file to write (.safetensors).") var output: String
    @Flag(help: "Also fine-tune with fake quantization (quantization-aware training), distilling from the float teacher; report both and write the better.") var qat = false
    @Option(help: "Epochs of quantization-aware fine-tuning (with --qat).") var qatEpochs: Int?
    @Option(help: "Adam learning rate of the fine-tuning (with --qat).") var qatLearningRate: Float?
    @Option(help: "Teacher model file for --qat (default: the float model itself).") var teacher: String?
    @Option(help: "Training rows the fine-tuning uses (with --qat; default: all but the validation rows).") var trainLimit: Int?
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        guard (1...StudentQuantization.maxSamples).contains(samples) else {
            throw ValidationError("--samples \(samples): must be in 1...\(StudentQuantization.maxSamples)")
        }
        guard output.lowercased().hasSuffix(".safetensors") else { throw ValidationError("--output \(output): name a .safetensors file") }
        let same = { (path: String) in URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path }
        guard same(output) != same(model) else { throw ValidationError("--output \(output) is the model being quantized; write the int8 student to another file") }
        if !qat {
            for (given, name) in [(qatEpochs != nil, "--qat-epochs"), (qatLearningRate != nil, "--qat-learning-rate"),
                                  (teacher != nil, "--teacher"), (trainLimit != nil, "--train-limit")] where given {
                throw ValidationError("\(name) sets up quantization-aware fine-tuning: add --qat")
            }
        }
        try usage { try settings?.validate() }
    }

    /// The --qat settings, nil without --qat.
    var settings: StudentQuantization.QuantizationAwareSettings? {
        guard qat else { return nil }
        var s = StudentQuantization.QuantizationAwareSettings()
        if let qatEpochs { s.epochs = qatEpochs }
        if let qatLearningRate { s.learningRate = qatLearningRate }
        s.teacher = teacher
        s.trainLimit = trainLimit
        s.quiet = json
        return s
    }

    func run() throws {
        let report = try StudentQuantization.run(modelAt: URL(fileURLWithPath: model), data: calibration, labelColumn: label,
                                                 samples: samples, seed: seed, rounding: rounding, output: URL(fileURLWithPath: output), qat: settings)
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
