import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

@Suite("Module mechanics and the model zoo")
struct ModuleTests {
    // MARK: State-dict names

    @Test("cnn-small's state dict is PyTorch's nn.Sequential naming, 421,642 parameters")
    func cnnSmallNames() throws {
        let model = try ModelZoo.build("cnn-small")
        #expect(model.namedParameters().map(\.name) == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"])
        #expect(Set(model.stateDict().keys) == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"])
        #expect(model.parameterCount == 421_642)
        #expect(model.stateBytes == 421_642 * 4)
    }

    @Test("mlp:784-64-10 has 50,890 parameters named 1.* and 3.* (0 is the Flatten)")
    func mlpNames() throws {
        let model = try ModelZoo.build("mlp:784-64-10")
        #expect(model.namedParameters().map(\.name) == ["1.weight", "1.bias", "3.weight", "3.bias"])
        #expect(model.parameterCount == 50_890)
        #expect(model.stateDict()["1.weight"]?.shape == [64, 784])
        #expect(model(Tensor.zeros([3, 784])).shape == [3, 10])
        #expect(model(Tensor.zeros([3, 1, 28, 28])).shape == [3, 10])
    }

    @Test("cnn-tiny has 9,098 parameters")
    func cnnTinyCount() throws {
        #expect(try ModelZoo.build("cnn-tiny").parameterCount == 9_098)
    }

    /// Every preset against its torch.nn.Sequential twin (make_nn_golden.py `torch_model`):
    /// identical state-dict names, shapes and buffers, the same parameter count, and the same
    /// logits once every tensor is set by `pattern` on both sides.
    @Test("presets match their PyTorch twins: names, shapes, buffers, logits", arguments: NNGolden.zooCases)
    func zooAgainstTorch(_ c: NNGolden.ZooCase) throws {
        let model = try ModelZoo.build(c.spec)
        let tensors = model.namedTensors().sorted { $0.name < $1.name }
        #expect(tensors.map(\.name) == c.names)
        #expect(tensors.map(\.tensor.shape) == c.shapes)
        #expect(tensors.filter(\.isBuffer).map(\.name) == c.buffers)
        #expect(model.parameterCount == c.parameterCount)

        setPatternWeights(model)
        let x = imageInput([2, 1, 28, 28])
        model.eval()
        let logits = withNoGrad { model(x) }
        #expect(logits.shape == [2, 10])
        assertClose(logits.scalars, c.evalLogits, atol: 1e-5, rtol: 1e-4, "\(c.spec) evaluation logits")
        if !c.trainLogits.isEmpty {
            model.train()
            assertClose(withNoGrad { model(x) }.scalars, c.trainLogits, atol: 1e-5, rtol: 1e-4, "\(c.spec) training logits")
        }
    }

    @Test("batch-norm buffers are named running_mean, running_var, num_batches_tracked and are not parameters",
          arguments: ["resnet8", "mobilenet-tiny"])
    func batchNormBuffers(_ spec: String) throws {
        let model = try ModelZoo.build(spec)
        let buffers = model.namedTensors().filter(\.isBuffer).map(\.name)
        #expect(buffers.contains("1.running_mean") && buffers.contains("1.running_var") && buffers.contains("1.num_batches_tracked"))
        #expect(buffers.allSatisfy { $0.hasSuffix(".running_mean") || $0.hasSuffix(".running_var") || $0.hasSuffix(".num_batches_tracked") })
        #expect(!model.namedParameters().contains { $0.name.contains("running") || $0.name.contains("num_batches") })
        #expect(model.trainableParameters().count == model.namedParameters().count)
        if spec == "resnet8" {
            // The projection shortcut of the second block, inside the block's own Sequential.
            #expect(buffers.contains("4.shortcut.1.running_var"))
            #expect(model.stateDict()["4.shortcut.0.weight"]?.shape == [32, 16, 1, 1])
            #expect(model.stateDict()["3.shortcut.0.weight"] == nil, "an identity shortcut has no weights")
        }
    }

    @Test("every preset builds and maps [2,1,28,28] to [2,10] in training and evaluation", arguments: ModelZoo.presets)
    func presetForward(_ spec: String) throws {
        let model = try ModelZoo.build(spec, seed: 3)
        let x = Tensor.testUniform([2, 1, 28, 28], seed: 90, low: 0, high: 1, requiresGrad: false)
        #expect(model(x).shape == [2, 10])
        model.eval()
        let y = model(x)
        #expect(y.shape == [2, 10] && y.isFinite)
    }

    @Test("presets follow inputShape and numClasses; a non-image input shape is refused")
    func presetShapes() throws {
        let model = try ModelZoo.build("cnn-tiny", inputShape: [3, 32, 32], numClasses: 5)
        #expect(model(Tensor.zeros([1, 3, 32, 32])).shape == [1, 5])
        #expect(try ModelZoo.build("resnet8", inputShape: [3, 16, 16], numClasses: 7)(Tensor.zeros([2, 3, 16, 16])).shape == [2, 7])
        expectTensorError(["cnn-small", "[784]", "mlp:"]) { _ = try ModelZoo.build("cnn-small", inputShape: [784]) }
    }

    @Test("the same seed builds the same weights; another seed different ones")
    func seeds() throws {
        let a = try ModelZoo.build("cnn-tiny", seed: 5), b = try ModelZoo.build("cnn-tiny", seed: 5), c = try ModelZoo.build("cnn-tiny", seed: 6)
        #expect(a.stateDict()["0.weight"]!.scalars == b.stateDict()["0.weight"]!.scalars)
        #expect(a.stateDict()["0.weight"]!.scalars != c.stateDict()["0.weight"]!.scalars)
    }

    // MARK: ModelZoo errors

    @Test("an unknown spec throws, listing the valid ones")
    func unknownSpec() {
        expectTensorError(["vgg16", "mlp:IN-HIDDEN-...-OUT"] + ModelZoo.presets) { _ = try ModelZoo.build("vgg16") }
    }

    @Test("malformed mlp specs throw with the expected form", arguments: ["mlp:", "mlp:784-x-10", "mlp:0-10", "mlp:784", "mlp:784--10", "mlp:-5-10"])
    func malformedMLP(_ spec: String) {
        expectTensorError(["'\(spec)'", "mlp:IN-HIDDEN-...-OUT"]) { _ = try ModelZoo.build(spec) }
    }

    // MARK: Structure, modes, freezing

    @Test("Linear without bias has only a weight; namedModules, module(at:) and children follow the tree")
    func structure() throws {
        var g = SeededGenerator(seed: 0)
        #expect(Linear(3, 2, bias: false, generator: &g).namedParameters().map(\.name) == ["weight"])
        let model = try ModelZoo.build("resnet8")
        #expect(model.module(at: "4.conv1") is Conv2d)
        #expect(model.module(at: "4.shortcut.1") is BatchNorm2d)
        #expect(model.module(at: "9") == nil)
        #expect(model.namedModules().first?.name == "")
        #expect(model.children.map(\.name) == (0..<8).map(String.init))
        // The state dict shares the model's tensors.
        #expect(model.stateDict()["0.weight"] === (model.module(at: "0") as! Conv2d).weight)
    }

    @Test("train() and eval() reach nested modules")
    func modes() throws {
        let model = try ModelZoo.build("resnet8")
        model.eval()
        #expect(model.namedModules().allSatisfy { !$0.module.isTraining })
        model.train()
        #expect(model.namedModules().allSatisfy { $0.module.isTraining })
    }

    @Test("freeze() stops gradients and switches to evaluation; unfreeze() restores gradients")
    func freeze() throws {
        let model = try ModelZoo.build("resnet8")
        let x = Tensor.testUniform([2, 1, 28, 28], seed: 91, low: 0, high: 1, requiresGrad: false)
        crossEntropy(model(x), [1, 2]).backward()
        #expect(model.namedParameters().allSatisfy { $0.tensor.grad != nil })

        model.freeze()
        #expect(model.namedParameters().allSatisfy { !$0.tensor.requiresGrad && $0.tensor.grad == nil })
        #expect(model.namedModules().allSatisfy { !$0.module.isTraining })
        #expect(model.trainableParameters().isEmpty)
        let runningBefore = model.stateDict()["1.running_mean"]!.scalars
        let y = model(x)
        #expect(!y.requiresGrad, "a frozen model's output must not need a gradient")
        #expect(model.stateDict()["1.running_mean"]!.scalars == runningBefore, "a frozen model must not update batch statistics")
        // Gradients still flow to the input through a frozen teacher, but not to its weights.
        let xg = Tensor.testUniform([2, 1, 28, 28], seed: 92, low: 0, high: 1)
        crossEntropy(model(xg), [3, 4]).backward()
        #expect(xg.grad != nil)
        #expect(model.namedParameters().allSatisfy { $0.tensor.grad == nil })

        model.unfreeze()
        #expect(model.trainableParameters().count == model.namedParameters().count)
    }

    @Test("zeroGrad clears every parameter's gradient")
    func zeroGrad() throws {
        let model = try ModelZoo.build("mlp:4-3-2")
        crossEntropy(model(Tensor.testNormal([2, 4], seed: 93, requiresGrad: false)), [0, 1]).backward()
        #expect(model.namedParameters().allSatisfy { $0.tensor.grad != nil })
        model.zeroGrad()
        #expect(model.namedParameters().allSatisfy { $0.tensor.grad == nil })
    }

    // MARK: loadStateDict

    @Test("loadStateDict copies values and accepts a complete state dict")
    func loadStateDict() throws {
        let source = try ModelZoo.build("cnn-tiny", seed: 1), target = try ModelZoo.build("cnn-tiny", seed: 2)
        let copies = source.stateDict().mapValues { $0.copy() }
        try target.loadStateDict(copies)
        for (name, t) in target.stateDict() { #expect(t.scalars == source.stateDict()[name]!.scalars, "\(name)") }
        // Values were copied, not shared.
        copies["0.bias"]!.data[0] += 1
        #expect(target.stateDict()["0.bias"]!.scalars == source.stateDict()["0.bias"]!.scalars)
    }

    @Test("loadStateDict names missing, unexpected and wrongly shaped entries")
    func loadStateDictErrors() throws {
        let model = try ModelZoo.build("mlp:4-3-2")
        let good = model.stateDict().mapValues { $0.copy() }

        var missing = good; missing["3.bias"] = nil
        expectTensorError(["missing", "3.bias", "checkpoint.safetensors"]) { try model.loadStateDict(missing, source: "checkpoint.safetensors") }

        var unexpected = good; unexpected["5.weight"] = Tensor.zeros([2, 2])
        expectTensorError(["unexpected", "5.weight"]) { try model.loadStateDict(unexpected) }

        var wrong = good; wrong["1.weight"] = Tensor.zeros([4, 3])
        expectTensorError(["shape mismatch", "1.weight", "[3, 4]", "[4, 3]"]) { try model.loadStateDict(wrong) }

        var all = good; all["1.bias"] = nil; all["extra"] = Tensor.zeros([1]); all["3.weight"] = Tensor.zeros([1])
        expectTensorError(["missing 1.bias", "3.weight", "unexpected extra"]) { try model.loadStateDict(all) }
    }

    @Test("a rejected state dict leaves the model unchanged")
    func loadStateDictIsAllOrNothing() throws {
        let model = try ModelZoo.build("mlp:4-3-2", seed: 1)
        let before = model.stateDict().mapValues(\.scalars)
        // Another model's values, all fitting except one.
        var other = try ModelZoo.build("mlp:4-3-2", seed: 2).stateDict()
        other["3.bias"] = Tensor.zeros([5])
        expectTensorError(["3.bias"]) { try model.loadStateDict(other) }
        for (name, t) in model.stateDict() { #expect(t.scalars == before[name], "\(name) changed by a rejected load") }
    }

    // MARK: Feature taps

    @Test("tapOutputs records the outputs of named layers")
    func taps() throws {
        let model = try ModelZoo.build("cnn-tiny")
        let taps = try model.tapOutputs(["3", "5", "7"])
        let x = Tensor.testUniform([2, 1, 28, 28], seed: 94, low: 0, high: 1, requiresGrad: false)
        let y = model(x)
        #expect(taps.outputs["3"]?.shape == [2, 16, 14, 14])
        #expect(taps.outputs["5"]?.shape == [2, 16, 7, 7])
        #expect(taps.outputs["7"]?.scalars == y.scalars, "the last layer's tap is the output")
        // The tapped conv output is what the conv computes from conv 0 → ReLU → max-pool
        // (`forward` does not report to the tap, so the recorded value is left as it was).
        let conv0 = model.module(at: "0") as! Conv2d, conv3 = model.module(at: "3") as! Conv2d
        let manual = withNoGrad { conv3.forward(conv0(x).relu().maxPool2d(Pool2dConfig(kernel: (2, 2)))) }
        assertClose(taps.outputs["3"]!.scalars, manual.scalars, atol: 1e-6, rtol: 1e-5, "tapped conv output")

        // Nested paths work too.
        let resnet = try ModelZoo.build("resnet8")
        let nested = try resnet.tapOutputs(["4.shortcut", "5.bn2"])
        _ = resnet(x)
        #expect(nested.outputs["4.shortcut"]?.shape == [2, 32, 14, 14])
        #expect(nested.outputs["5.bn2"]?.shape == [2, 64, 7, 7])
    }

    @Test("tapOutputs throws for an unknown layer, listing the valid names")
    func unknownTap() throws {
        let model = try ModelZoo.build("cnn-tiny")
        let message = expectTensorError(["'features.3'", "0, 1, 2, 3, 4, 5, 6, 7"]) { _ = try model.tapOutputs(["0", "features.3"]) }
        #expect(message?.contains("layers are") == true)
    }
}
