import DistillKit
import Foundation
import Testing

/// `import DistillKit` alone reaches every module's public API. (The README's whole program is
/// the package in examples/library, which scripts/test.sh builds and runs.)
@Suite("DistillKit as a library")
struct LibraryUsageTests {
    @Test("one import brings tensors, layers, data, ONNX and distillation")
    func oneImport() throws {
        let x = Tensor.zeros([2, 4])                                           // DistillTensor
        let net = try ModelZoo.build("mlp:4-8-3", inputShape: [4], numClasses: 3, seed: 0)  // DistillNN
        let data = try LabeledDataset(features: x, labels: [0, 1], numClasses: 3)           // DistillData
        let onnx = try ONNXModel(data: ONNXExport.serialize(net, inputShape: [4]))          // DistillONNX
        var experiment = Experiment()                                          // DistillTraining
        experiment.teachers = ["teacher.onnx"]
        experiment.losses = [LossTerm(.kd, weight: 0.5), LossTerm(.ce, weight: 0.5)]
        try experiment.validate()
        #expect(withNoGrad { net(x) }.shape == [2, 3])
        #expect(data.count == 2 && onnx.inputs.count == 1)
    }
}
