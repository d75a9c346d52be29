@testable import DistillONNX
import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Export round trips: a DistillKit model written as ONNX and read back by the importer gives the
// model's own outputs, at any batch size. (tests/interop/test_onnx_export.py checks the same files
// in onnxruntime.)

/// Sets every tensor to a deterministic pattern (batch-norm statistics included, so they matter).
func setWeights(_ model: Module, seed: UInt64) {
    var g = SeededGenerator(seed: seed)
    for (name, t, _) in model.namedTensors() {
        if name.hasSuffix("num_batches_tracked") { continue }
        let fresh = name.hasSuffix("running_var") ? Tensor.randomUniform(t.shape, low: 0.5, high: 1.5, using: &g)
                                                  : Tensor.randomUniform(t.shape, low: -0.5, high: 0.5, using: &g)
        t.assign(fresh)
    }
}

func roundTrip(_ model: Module, inputShape: [Int], opset: Int = 17, batch: Int = 3) throws -> (Float, ONNXModel) {
    setWeights(model, seed: 11)
    model.eval()
    let imported = try ONNXModel(data: try ONNXExport.serialize(model, inputShape: inputShape, opset: opset), source: "export")
    var g = SeededGenerator(seed: 5)
    let x = Tensor.randomUniform([batch] + inputShape, using: &g)
    let expected = withNoGrad { model(x) }
    let actual = try imported(x).floatTensor!
    #expect(actual.shape == expected.shape)
    let diff = zip(actual.scalars, expected.scalars).map { Swift.abs($0 - $1) }.max() ?? .infinity
    return (diff, imported)
}

@Suite("ONNX export")
struct ExportTests {
    @Test("every preset and layer type round-trips through ONNX", arguments: ["mlp:784-64-10", "cnn-tiny", "lenet5", "resnet8", "mobilenet-tiny"])
    func presets(_ spec: String) throws {
        let model = try ModelZoo.build(spec)
        let (diff, imported) = try roundTrip(model, inputShape: [1, 28, 28])
        #expect(diff < 1e-4, "\(spec): max difference \(diff)")
        #expect(imported.inputs[0].description == "input: FLOAT[N,1,28,28]")
        #expect(imported.outputs[0].description == "logits: FLOAT[N,10]")
    }

    @Test("activations, pooling, batch-norm over features and dropout")
    func layerList() throws {
        var g = SeededGenerator(seed: 2)
        let model = Sequential([
            Conv2d(1, 4, kernel: 3, stride: 2, padding: 1, dilation: 1, generator: &g), BatchNorm2d(4), GELU(),
            AvgPool2d(3, stride: 2, padding: 1), Conv2d(4, 4, kernel: 3, padding: 2, dilation: 2, groups: 2, generator: &g), LeakyReLU(slope: 0.2),
            MaxPool2d(2, padding: 1), Flatten(), Dropout(0.3), Linear(4 * 2 * 2, 16, generator: &g), BatchNorm1d(16), Sigmoid(),
            Linear(16, 8, bias: false, generator: &g), Tanh(), Linear(8, 5, generator: &g),
        ])
        for opset in [11, 17, 20] {
            let (diff, imported) = try roundTrip(model, inputShape: [1, 12, 12], opset: opset)
            #expect(diff < 1e-5, "opset \(opset): max difference \(diff)")
            #expect(imported.operatorCounts["Gelu"] == (opset >= 20 ? 1 : nil))
        }
        // The batch axis is dynamic: one example works as well as many.
        let imported = try ONNXModel(data: try ONNXExport.serialize(model, inputShape: [1, 12, 12]))
        #expect(try imported(Tensor.zeros([1, 1, 12, 12])).shape == [1, 5])
        #expect(try imported(Tensor.zeros([7, 1, 12, 12])).shape == [7, 5])
    }

    @Test("initializers keep the state-dict names")
    func names() throws {
        let model = try ModelZoo.build("resnet8")
        let proto = try ONNXExport.modelProto(model, inputShape: [1, 28, 28], opset: 17, metadata: ["distillkit.spec": "resnet8"], inputName: "input", outputName: "logits")
        let names = Set(proto.graph.initializer.map(\.name))
        #expect(names.contains("0.weight") && names.contains("3.conv1.weight") && names.contains("4.shortcut.1.running_var"))
        #expect(proto.metadataProps.map(\.key) == ["distillkit.spec"])
        #expect(proto.irVersion == 8 && proto.opsetImport.first?.version == 17)
    }

    @Test("preprocessing and postprocessing travel with the model")
    func preprocessing() throws {
        var g = SeededGenerator(seed: 4)
        let model = Sequential([Linear(3, 1, generator: &g)])
        let data = try ONNXExport.serialize(model, inputShape: [3], preprocessing: .init(inputMean: [1, 2, 3], inputStd: [2, 0, 4], outputScale: 10, outputShift: 5))
        let x = Tensor(shape: [1, 3], scalars: [3, 5, 7])
        let standardized = Tensor(shape: [1, 3], scalars: [1, 3, 1])  // std 0 only centres
        let expected = withNoGrad { model(standardized) }.item() * 10 + 5
        #expect(Swift.abs(try ONNXModel(data: data)(x).floatTensor!.item() - expected) < 1e-5)
    }

    @Test("unsupported layers and opsets are errors")
    func refusals() {
        final class Custom: Module { override func forward(_ x: Tensor) -> Tensor { x } }
        #expect(errorMessage { _ = try ONNXExport.serialize(Sequential([Flatten(), Custom()]), inputShape: [4]) }
            .contains("cannot export layer '1' of type Custom"))
        #expect(errorMessage { _ = try ONNXExport.serialize(Sequential([Flatten()]), inputShape: [4], opset: 9) }.contains("opset 9 cannot be exported"))
    }
}

@Suite("model inspection")
struct InspectTests {
    @Test("parameters and FLOPs of a known network")
    func counts() throws {
        var g = SeededGenerator(seed: 1)
        // Conv 1→4, 3×3, padding 1 on 8×8: 4·64 outputs × 2·9 FLOPs + bias 256 = 4,864;
        // ReLU 256; max-pool 2×2: 64 outputs × 4 = 256; Gemm 64→10: 2·640 + 10 = 1,290.
        let model = Sequential([Conv2d(1, 4, kernel: 3, padding: 1, generator: &g), ReLU(), MaxPool2d(2), Flatten(), Linear(64, 10, generator: &g)])
        let summary = ModelInspector.summary(model, spec: "custom", inputShape: [1, 8, 8], source: "m.safetensors")
        #expect(summary.parameters == 4 * 9 + 4 + 640 + 10)
        #expect(summary.bytes == summary.parameters * 4)
        #expect(summary.flops == 4_864 + 256 + 256 + 1_290)
        #expect(summary.operators.map(\.name) == ["Conv", "Flatten", "Gemm", "Identity", "MaxPool", "Relu"])
        #expect(summary.text.contains("FLOPs per example: 6,666"))
        #expect(summary.text.contains("inputs:  input: FLOAT[N,1,8,8]"))
        let json = summary.json
        #expect(json["flops"] as? Int == 6_666 && json["nodes"] as? Int == 6)
    }

    @Test("recurrent layers count their products per step: LSTM, GRU and RNN")
    func recurrentFlops() throws {
        // 5 steps, batch 1, 3 inputs, hidden 2: per step 2·G·2·(3 + 2) + 2·G·2 + e·2, e = 10, 8, 2 for G = 4, 3, 1.
        for (op, gates, elementwise) in [("LSTM", 4, 10), ("GRU", 3, 8), ("RNN", 1, 2)] {
            let node = makeNode(op, ["x", "W", "R"], ["y"], name: "rnn", [intAttribute("hidden_size", 2)])
            let model = try load(makeModel(nodes: [node], inputs: [tensorInfo("x", [5, 1, 3])], outputs: [tensorInfo("y", [])],
                                           initializers: [floatTensor("W", [1, gates * 2, 3], [Float](repeating: 0.1, count: gates * 6)),
                                                          floatTensor("R", [1, gates * 2, 2], [Float](repeating: 0.1, count: gates * 4))]))
            let perStep = 2 * gates * 2 * 5 + 2 * gates * 2 + elementwise * 2
            #expect(try ModelInspector.countFlops(model) == 5 * perStep, "\(op)")
        }
    }

    @Test("an ONNX file's summary names its opsets and producer")
    func onnxSummary() throws {
        let summary = ModelInspector.summary(try load(tinyMLP()))
        #expect(summary.format == "ONNX (IR 8, opset 17)")
        #expect(summary.parameters == 15 && summary.bytes == 60)
        #expect(summary.flops == 2 * 4 * 3 + 3 + 3)
    }
}
