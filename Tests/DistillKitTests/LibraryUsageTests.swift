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

    /// The README's `DemoJob` call: its settings are checked against the data before anything
    /// trains (the whole job is run by EndToEndTests on a subset).
    @Test("distill demo is a library call")
    func demoJob() throws {
        var job = DemoJob(output: URL(fileURLWithPath: "runs/demo"))
        job.student = "mlp:784-32-10"
        let images = try LabeledDataset(features: Tensor.zeros([2, 1, 28, 28]), labels: [0, 1], numClasses: 10)
        let specs = try job.checkedSpecs(for: images)
        #expect(specs.teacher == "cnn-small" && specs.student == "mlp:784-32-10")
        job.studentEpochs = 0
        #expect(throws: TensorError.self) { _ = try job.checkedSpecs(for: images) }
    }
}
