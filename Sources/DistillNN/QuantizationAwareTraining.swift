import DistillTensor

// Quantization-aware training (Jacob et al. 2018, "Quantization and Training of Neural Networks
// for Efficient Integer-Arithmetic-Only Inference", CVPR): the float student with fake
// quantization (Sources/DistillTensor/Ops/FakeQuantization.swift) exactly where its int8 plan
// (QuantizedPlan.swift) rounds, so that fine-tuning sees the int8 model's rounding and clipping:
//
// - the input, quantized to bytes with the calibrated input range;
// - every linear and convolution weight, per output channel (symmetric int8), recomputed from
//   the float weight at every step as `QuantizedWeight(quantizing:)` does;
// - every linear or convolution output after its ReLU, with the calibrated range the int8 file
//   stores for it (the last linear layer's floats stay floats: they are the logits);
// - the output of an average pooling, which the int8 plan rounds back onto its input's bytes.
//   Max pooling needs nothing: it commutes with the monotone quantization.
//
// Batch norms are folded into their convolutions first (as `Quantizer.fold` does for the int8
// file), so the fine-tuned weights are the folded ones and the batch statistics are frozen
// (Jacob et al. 2018 section 3.2 also stop updating them late in training).
//
// Activation ranges are frozen at their calibrated values rather than updated by an exponential
// moving average during training: the int8 file then holds exactly the ranges the weights were
// fine-tuned against, the calibration's choice (min/max or percentile, picked by accuracy)
// stays, and a few epochs at a small learning rate barely move the activations' distribution.

/// A folded linear or convolution layer with a fake-quantized weight (and output).
public final class FakeQuantizedLayer: Module {
    public let weight: Tensor
    public let bias: Tensor?
    /// The convolution's geometry; nil for a linear layer.
    let _convolution: Conv2dConfig?
    let _relu: Bool
    /// How the output is stored; nil for the last layer (float logits).
    let _output: ActivationQuantization?
    /// The layer's index in the int8 student's layer list.
    let _index: Int

    init(weight: Tensor, bias: Tensor?, convolution: Conv2dConfig?, relu: Bool, output: ActivationQuantization?, index: Int) {
        // Copies: fine-tuning must not move the float model's (the teacher's) tensors.
        self.weight = Tensor(shape: weight.shape, scalars: weight.scalars, requiresGrad: true)
        self.bias = bias.map { Tensor(shape: $0.shape, scalars: $0.scalars, requiresGrad: true) }
        _convolution = convolution; _relu = relu; _output = output; _index = index
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let w = weight.fakeQuantizedPerChannel()
        var y: Tensor
        if let config = _convolution {
            y = conv2d(x, weight: w, bias: bias, config: config)
        } else {
            y = linear(x.rank > 2 ? x.flattened() : x, weight: w, bias: bias)
        }
        if _relu { y = y.relu() }
        if let q = _output { y = y.fakeQuantized(scale: q.scale, zeroPoint: q.zeroPoint) }
        return y
    }
}

/// Fake quantization of an activation with a fixed range: the model's input, or a pooling's output.
public final class ActivationFakeQuantizer: Module {
    let _quantization: ActivationQuantization
    init(_ quantization: ActivationQuantization) { _quantization = quantization }
    public override func forward(_ x: Tensor) -> Tensor { x.fakeQuantized(scale: _quantization.scale, zeroPoint: _quantization.zeroPoint) }
}

/// A pooling of a folded model (its configuration may be non-square, unlike `MaxPool2d`'s initialiser).
final class FoldedPool: Module {
    enum Kind { case max(Pool2dConfig), average(Pool2dConfig), global }
    let _kind: Kind
    init(_ kind: Kind) { _kind = kind }
    override func forward(_ x: Tensor) -> Tensor {
        switch _kind {
        case .max(let c): return x.maxPool2d(c)
        case .average(let c): return x.avgPool2d(c)
        case .global: return x.globalAvgPool2d()
        }
    }
}

extension Quantizer {
    /// The quantization-aware student of `model` for the int8 student `student` (from `quantize`
    /// on the same model): `model`'s folded layers with fake quantization where `student`'s plan
    /// rounds, with `student`'s activation ranges. It starts from the float weights and biases,
    /// rounded to their nearest steps (not from a compensated student's weights: fine-tuning is
    /// the other way to the same end). Its parameters are fresh copies (training it
    /// leaves `model` alone); it is in training mode. Throws when `student` was not quantized
    /// from `model` (the layer lists differ).
    public static func quantizationAwareStudent(of model: Module, for student: QuantizedStudent) throws -> Sequential {
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        let folded = try fold(model)
        guard folded.count == student.layers.count else {
            throw TensorError("the int8 student has \(student.layers.count) layers, the float model folds to \(folded.count); quantize this model first")
        }
        var modules: [Module] = [ActivationFakeQuantizer(student.input)]
        var range = student.input
        for (k, (layer, quantized)) in zip(folded, student.layers).enumerated() {
            switch (layer, quantized) {
            case (.linear(let w, let b, let relu), .linear(let qw, _, let qrelu, let output)) where qw.shape == w.shape && qrelu == relu:
                modules.append(FakeQuantizedLayer(weight: w, bias: b, convolution: nil, relu: relu, output: output, index: k))
                if let output { range = output }
            case (.convolution(let w, let b, let config, let relu), .convolution(let qw, _, _, _, let qrelu, let output)) where qw.shape == w.shape && qrelu == relu:
                modules.append(FakeQuantizedLayer(weight: w, bias: b, convolution: config, relu: relu, output: output, index: k))
                range = output
            case (.maxPool(let c), .maxPool): modules.append(FoldedPool(.max(c)))
            case (.avgPool(let c), .avgPool):
                modules.append(FoldedPool(.average(c)))
                modules.append(ActivationFakeQuantizer(range))
            case (.globalAvgPool, .globalAvgPool):
                modules.append(FoldedPool(.global))
                modules.append(ActivationFakeQuantizer(range))
            case (.flatten, .flatten): modules.append(Flatten())
            default:
                throw TensorError("layer \(k) of the int8 student does not match the float model's folded layer; quantize this model first")
            }
        }
        let qat = Sequential(modules)
        qat.train()
        return qat
    }

    /// The int8 student of a quantization-aware student from `quantizationAwareStudent(of:for:)`:
    /// `template` (the student it was built for) with each weight quantized from the fine-tuned
    /// float weight and the fine-tuned biases; the activation ranges stay `template`'s.
    public static func quantizedStudent(fromQuantizationAware qat: Sequential, template: QuantizedStudent) throws -> QuantizedStudent {
        var layers = template.layers
        for case let layer as FakeQuantizedLayer in qat.layers {
            guard layers.indices.contains(layer._index) else { throw TensorError("quantization-aware layer \(layer._index) is not in the int8 student") }
            let weight = QuantizedWeight(quantizing: layer.weight), bias = layer.bias?.scalars
            switch layers[layer._index] {
            case .linear(let old, _, let relu, let output) where old.shape == weight.shape:
                layers[layer._index] = .linear(weight: weight, bias: bias, relu: relu, output: output)
            case .convolution(let old, _, let stride, let padding, let relu, let output) where old.shape == weight.shape:
                layers[layer._index] = .convolution(weight: weight, bias: bias, stride: stride, padding: padding, relu: relu, output: output)
            default:
                throw TensorError("quantization-aware layer \(layer._index) does not match the int8 student's layer")
            }
        }
        return QuantizedStudent(info: template.info, input: template.input, layers: layers, calibration: template.calibration)
    }
}
