import DistillNN
import DistillONNX
import DistillTensor
import Foundation

extension StudentExport {
    /// Most a logit of the exported QDQ graph may differ from the int8 plan's, as a fraction of
    /// the largest logit: the graph sums in float, so a value at the midpoint between two steps
    /// may round to the other one and move what follows by a step.
    static let qdqTolerance: Float = 0.02

    /// An int8 student (`distill quantize`) exported as QDQ ONNX (`ONNXExport.serializeQDQ`), read
    /// back by DistillKit's importer and compared with the int8 plan on random inputs in the
    /// model's domain; outputs further apart than `qdqTolerance` are an error.
    static func qdq(_ student: QuantizedStudent, source model: URL, to onnx: URL, opset: Int) throws -> Report {
        let info = student.info.savedModel
        let preprocessing = try Self.preprocessing(of: info, source: model.path)
        guard preprocessing.outputScale == nil else { throw TensorError("\(model.path): int8 students are classifiers; a regression target scaling cannot be exported") }
        var metadata = info.extra.filter { $0.key != Tabular.statisticsKey }
        metadata["distillkit.spec"] = info.spec
        metadata["distillkit.num_classes"] = String(info.numClasses)
        metadata["distillkit.quantization"] = QuantizedStudent.marker
        metadata["distillkit.int8.calibration"] = student.calibration.rawValue
        try ONNXExport.writeQDQ(student, to: onnx, opset: opset, metadata: metadata, preprocessing: preprocessing)

        let imported = try ONNXModel(contentsOf: onnx)
        var g = SeededGenerator(seed: 1)
        var x = Tensor.randomUniform([8] + info.inputShape, using: &g)
        var standardized = x
        if let mean = preprocessing.inputMean, let std = preprocessing.inputStd {
            let f = mean.count, safeStd = std.map { $0 < 1e-6 ? 1 : $0 }
            x = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in mean[i % f] + (v * 2 - 1) * std[i % f] })
            standardized = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - mean[i % f]) / safeStd[i % f] })
        }
        let direct = try QuantizedPlan(student)(standardized)
        guard let viaONNX = try imported(x).floatTensor, viaONNX.shape == direct.shape else {
            throw TensorError("\(onnx.path): the exported model's output does not have the model's shape \(direct.shape)")
        }
        let maxDifference = zip(direct.scalars, viaONNX.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
        guard maxDifference <= qdqTolerance * Swift.max(1, direct.scalars.map(Swift.abs).max() ?? 1) else {
            throw TensorError("\(onnx.path): read back, the exported QDQ model differs from \(model.path) by up to \(maxDifference)")
        }
        return Report(file: onnx, opset: opset, inputs: imported.inputs, outputs: imported.outputs, parameters: student.parameterCount,
                      summary: ModelInspector.summary(imported), maxDifference: maxDifference)
    }
}
