@testable import DistillONNX
import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// int8 students as QDQ ONNX: the graph DistillKit writes, read back by its own importer (which
/// runs QuantizeLinear and DequantizeLinear), gives the int8 plan's logits.
@Suite struct QDQExportTests {
    static func student(_ spec: String, shape: [Int], seed: UInt64) throws -> QuantizedStudent {
        let model = try ModelZoo.build(spec, inputShape: shape, seed: seed)
        model.eval()
        let samples = Tensor.testUniform([200] + shape, seed: seed, low: 0, high: 1, requiresGrad: false)
        let labels = withNoGrad { model(samples) }.argmaxLastAxis()
        let info = SavedModelDescription(spec: spec, inputShape: shape, numClasses: 10, extra: [:])
        return try Quantizer.quantize(model, info: info, samples: samples, labels: labels).student
    }

    @Test(arguments: ["mlp:784-64-32-10", "lenet5", "cnn-tiny"])
    func importedGraphGivesThePlansLogits(spec: String) throws {
        let student = try Self.student(spec, shape: [1, 28, 28], seed: 3)
        let data = try ONNXExport.serializeQDQ(student, opset: 17)
        let imported = try ONNXModel(data: data, source: "\(spec).onnx")
        let counts = imported.operatorCounts
        let computational = student.layers.filter { if case .flatten = $0 { return false }; return true }.count
        #expect(counts["DequantizeLinear", default: 0] >= computational, "\(spec): \(counts)")
        let x = Tensor.testUniform([16, 1, 28, 28], seed: 9, low: 0, high: 1, requiresGrad: false)
        let expected = try QuantizedPlan(student)(x)
        let got = try #require(try imported(x).floatTensor)
        #expect(got.shape == expected.shape)
        let range = expected.scalars.map(Swift.abs).max()!
        let worst = zip(got.scalars, expected.scalars).map { Swift.abs($0 - $1) }.max()!
        #expect(worst <= 0.02 * range, "\(spec): QDQ logits differ from the int8 plan's by \(worst) (logits span ±\(range))")
        #expect(got.argmaxLastAxis() == expected.argmaxLastAxis())
        // Weights travel as INT8 initializers.
        let proto = try Onnx_ModelProto(serializedBytes: data)
        let weights = proto.graph.initializer.filter { $0.name.hasSuffix(".weight_int8") }
        #expect(weights.count == student.layers.filter { if case .linear = $0 { return true }; if case .convolution = $0 { return true }; return false }.count)
        #expect(weights.allSatisfy { $0.dataType == ONNXDataType.int8.rawValue })
    }

    @Test func opsetsBeforePerChannelScalesAreRefused() throws {
        let student = try Self.student("mlp:784-16-10", shape: [1, 28, 28], seed: 1)
        #expect { try ONNXExport.serializeQDQ(student, opset: 12) } throws: { error in
            "\(error)".contains("opset 12")
        }
    }
}
