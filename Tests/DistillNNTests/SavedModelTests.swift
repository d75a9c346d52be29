import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

@Suite("SavedModel")
struct SavedModelTests {
    @Test("save then load rebuilds the model: same description, same tensors, same outputs",
          arguments: ["mlp:784-32-10", "cnn-tiny", "resnet8"])
    func roundTrip(_ spec: String) throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("model.safetensors")
        let model = try ModelZoo.build(spec, seed: 11)
        let x = Tensor.testUniform([2, 1, 28, 28], seed: 95, low: 0, high: 1, requiresGrad: false)
        _ = withNoGrad { model(x) }  // a training-mode pass, so batch-norm statistics are not the defaults
        model.eval()
        let expected = withNoGrad { model(x) }

        let info = SavedModel(spec: spec, inputShape: [1, 28, 28], numClasses: 10, extra: ["distilled_from": "cnn-small", "epochs": "3"])
        try info.save(model, to: url)
        let (loaded, loadedInfo) = try SavedModel.load(url)
        #expect(loadedInfo.spec == spec)
        #expect(loadedInfo.inputShape == [1, 28, 28])
        #expect(loadedInfo.numClasses == 10)
        #expect(loadedInfo.extra == ["distilled_from": "cnn-small", "epochs": "3"])

        let original = model.stateDict(), restored = loaded.stateDict()
        #expect(Set(restored.keys) == Set(original.keys))
        for (name, t) in original { #expect(restored[name]?.scalars == t.scalars, "\(name)") }
        loaded.eval()
        #expect(withNoGrad { loaded(x) }.scalars == expected.scalars)
    }

    @Test("a saved model keeps a non-default input shape and class count")
    func shapeMetadata() throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("small.safetensors")
        let model = try ModelZoo.build("cnn-tiny", inputShape: [3, 16, 16], numClasses: 4, seed: 2)
        try SavedModel(spec: "cnn-tiny", inputShape: [3, 16, 16], numClasses: 4).save(model, to: url)
        let (loaded, info) = try SavedModel.load(url)
        #expect(info.inputShape == [3, 16, 16] && info.numClasses == 4)
        let x = Tensor.testUniform([1, 3, 16, 16], seed: 96, low: 0, high: 1, requiresGrad: false)
        #expect(withNoGrad { loaded(x) }.scalars == withNoGrad { model(x) }.scalars)
    }

    @Test("a safetensors file without DistillKit's metadata is refused with a clear message")
    func noMetadata() throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("plain.safetensors")
        try Safetensors.save(try ModelZoo.build("cnn-tiny").stateDict(), to: url, metadata: ["format": "pt"])
        expectTensorError([url.path, "distillkit.spec"]) { _ = try SavedModel.load(url) }
    }

    @Test("weights that do not fit the described architecture are refused, naming the entries")
    func mismatchedWeights() throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("wrong.safetensors")
        try SavedModel(spec: "cnn-small", inputShape: [1, 28, 28], numClasses: 10).save(try ModelZoo.build("cnn-tiny"), to: url)
        expectTensorError([url.path, "does not fit", "0.weight"]) { _ = try SavedModel.load(url) }
    }

    @Test("a missing or corrupt file gives an error naming it")
    func unreadable() throws {
        let dir = try TemporaryDirectory()
        let missing = dir.file("absent.safetensors")
        expectTensorError([missing.path]) { _ = try SavedModel.load(missing) }
        let corrupt = dir.file("corrupt.safetensors")
        try Data([1, 2, 3]).write(to: corrupt)
        expectTensorError([corrupt.path]) { _ = try SavedModel.load(corrupt) }
    }
}
