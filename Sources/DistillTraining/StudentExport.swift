import DistillNN
import DistillONNX
import DistillTensor
import Foundation

/// A trained DistillKit model written as ONNX, ready for any ONNX runtime, then checked.
///
/// The model's own preprocessing goes into the graph: a tabular model's input standardisation
/// (the training split's statistics, kept in the saved model) and a regression model's target
/// scaling, so the exported file takes raw rows and gives outputs in the target's units. The file
/// is read back by DistillKit's importer and compared with the model on random inputs in the
/// model's own domain; a difference beyond float rounding is an error.
public enum StudentExport {
    /// What was written and how it compared.
    public struct Report {
        public var file: URL
        public var opset: Int
        public var inputs: [ONNXValueInfo], outputs: [ONNXValueInfo]
        public var parameters: Int
        public var summary: InspectionSummary
        /// Largest |model − exported| over the check's outputs.
        public var maxDifference: Float

        public var json: [String: Any] {
            ["onnx": file.path, "opset": opset, "inputs": inputs.map(\.shapeDescription), "outputs": outputs.map(\.shapeDescription), "params": parameters,
             "nodes": summary.nodeCount, "max_abs_difference": Double(maxDifference)]
        }
        public var text: String {
            """
            wrote \(file.path): ONNX opset \(opset), input \(inputs.map(\.description).joined(separator: ", ")), output \(outputs.map(\.description).joined(separator: ", "))
            \(summary.nodeCount) nodes (\(summary.operators.map { "\($0.name) \($0.count)" }.joined(separator: ", "))), \(parameters) parameters
            \(String(format: "read back by DistillKit's importer: outputs match the model (max |difference| %.2g)", Double(maxDifference)))
            """
        }
    }

    /// Exports the saved model at `model` (a `.safetensors` file from `distill train`/`kd`) to `onnx`.
    public static func onnx(modelAt model: URL, to onnx: URL, opset: Int = 17) throws -> Report {
        guard ONNXExport.supportedOpsets.contains(opset) else {
            throw TensorError("opset \(opset): DistillKit writes opsets \(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound)")
        }
        let (net, info) = try SavedModel.load(model)
        let preprocessing = try Self.preprocessing(of: info, source: model.path)
        var metadata = info.extra.filter { $0.key != Tabular.statisticsKey }
        metadata["distillkit.spec"] = info.spec
        metadata["distillkit.num_classes"] = String(info.numClasses)
        try ONNXExport.write(net, inputShape: info.inputShape, to: onnx, opset: opset, metadata: metadata, preprocessing: preprocessing)

        let imported = try ONNXModel(contentsOf: onnx)
        let maxDifference = try compare(net, info: info, preprocessing: preprocessing, with: imported, file: onnx.path, source: model.path)
        return Report(file: onnx, opset: opset, inputs: imported.inputs, outputs: imported.outputs,
                      parameters: net.parameterCount, summary: ModelInspector.summary(imported), maxDifference: maxDifference)
    }

    /// The preprocessing a saved model carries: input standardisation and, for regression, the
    /// target's mean and standard deviation (`y = output · std + mean`).
    public static func preprocessing(of info: SavedModel, source: String) throws -> ONNXExport.Preprocessing {
        var preprocessing = ONNXExport.Preprocessing()
        if let statistics = try Tabular.statistics(of: info, source: source) {
            preprocessing.inputMean = statistics.mean
            preprocessing.inputStd = statistics.std
        }
        if let target = try Tabular.targetScaling(of: info, source: source) {
            preprocessing.outputShift = target.mean
            preprocessing.outputScale = target.std
        }
        return preprocessing
    }

    /// Runs four random inputs (spread over ±1 standard deviation of the training data for a
    /// tabular model) through the model and the exported graph; returns the largest difference.
    static func compare(_ net: Sequential, info: SavedModel, preprocessing p: ONNXExport.Preprocessing,
                        with imported: ONNXModel, file: String, source: String) throws -> Float {
        var g = SeededGenerator(seed: 1)
        var x = Tensor.randomUniform([4] + info.inputShape, using: &g)
        var standardized = x
        if let mean = p.inputMean, let std = p.inputStd {
            let f = mean.count, safeStd = std.map { $0 < 1e-6 ? 1 : $0 }
            x = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in mean[i % f] + (v * 2 - 1) * std[i % f] })
            standardized = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - mean[i % f]) / safeStd[i % f] })
        }
        net.eval()
        var direct = withNoGrad { net(standardized) }
        if let s = p.outputScale { direct = direct * s }
        if let b = p.outputShift { direct = direct + b }
        guard let viaONNX = try imported(x).floatTensor, viaONNX.shape == direct.shape else {
            throw TensorError("\(file): the exported model's output does not have the model's shape \(direct.shape)")
        }
        let maxDifference = zip(direct.scalars, viaONNX.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
        guard maxDifference <= 1e-4 * Swift.max(1, direct.scalars.map(Swift.abs).max() ?? 1) else {
            throw TensorError("\(file): read back, the exported model differs from \(source) by up to \(maxDifference)")
        }
        return maxDifference
    }
}
