// Fake quantization for quantization-aware training: the forward pass rounds a float tensor to
// the integers an int8 model stores and returns their float value (quantize, then dequantize), so
// training sees the int8 model's rounding and clipping; the backward pass is the straight-through
// estimator (Bengio, Léonard and Courville 2013, "Estimating or Propagating Gradients Through
// Stochastic Neurons", arXiv:1308.3432), as Jacob et al. 2018 ("Quantization and Training of
// Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR, section 3) use it:
// rounding is treated as the identity, clipping keeps its true derivative (1 inside the range,
// 0 outside). Both rules are in Gradients.swift (`.straightThrough`, `.fakeQuantize`).
//
// The arithmetic is the int8 path's own (Sources/DistillNN/Quantization.swift for weights,
// `dk_int8_quantize` in Sources/CKernels/int8_gemm.c for activations): the same scales, a
// multiplication by the inverse scale, rounding half to even, so the values are bit for bit those
// an int8 student computes with.

extension Tensor {
    /// Per-output-channel symmetric int8 (the first axis is the output channel):
    /// s_o = max_j |w[o, j]| / 127 (1 for an all-zero channel), y = clamp(round(w / s_o), −127, 127) · s_o,
    /// the float value of what `QuantizedWeight(quantizing:)` stores.
    ///
    /// Straight-through backward: ∂y/∂w = 1 everywhere. Nothing is clipped (|w| ≤ 127·s_o by the
    /// choice of s_o), and the scale's dependence on the channel's largest weight is not
    /// differentiated (Jacob et al. 2018 likewise take the weight range as given).
    public func fakeQuantizedPerChannel() -> Tensor {
        precondition(rank >= 1, "fakeQuantizedPerChannel: the weight needs an output-channel axis, got shape \(shape)")
        let outs = shape[0], per = outs == 0 ? 0 : count / outs
        let out = Tensor(uninitializedShape: shape)
        let p = data, o = out.data
        for c in 0..<outs {
            var largest: Float = 0
            for j in 0..<per { largest = Swift.max(largest, Swift.abs(p[c * per + j])) }
            let scale = largest > 0 ? largest / 127 : 1
            for j in 0..<per {
                let q = Swift.max(-127, Swift.min(127, (p[c * per + j] / scale).rounded(.toNearestOrEven)))
                o[c * per + j] = q * scale
            }
        }
        return Tensor.result(out, inputs: [self], .straightThrough)
    }

    /// Per-tensor asymmetric uint8 with `scale` s and `zeroPoint` z (0...255):
    /// q = clamp(round(x · (1/s)) + z, 0, 255), y = (q − z) · s. The representable range is
    /// [−z·s, (255 − z)·s]; NaN becomes the byte z (the value 0), as in the int8 kernels.
    ///
    /// Straight-through backward: ∂y/∂x = 1 where round(x/s) + z lies in 0...255 (the byte was not
    /// clipped), 0 where it was clipped. Scale and zero point are constants (calibrated ranges, not
    /// trained).
    public func fakeQuantized(scale: Float, zeroPoint: Int32) -> Tensor {
        precondition(scale > 0 && scale.isFinite, "fakeQuantized: scale \(scale) must be positive and finite")
        precondition((0...255).contains(zeroPoint), "fakeQuantized: zero point \(zeroPoint) must be in 0...255")
        let inverse = 1 / scale, z = Float(zeroPoint)
        let storage = unaryKernel(self) { x in
            let r = (x * inverse).rounded(.toNearestOrEven)
            guard !r.isNaN else { return 0 }
            return (Swift.max(0, Swift.min(255, r + z)) - z) * scale
        }
        return Tensor.result(shape, storage, inputs: [self], .fakeQuantize(scale: scale, zeroPoint: zeroPoint))
    }
}

/// The straight-through gradient of `fakeQuantized(scale:zeroPoint:)`: g where x's byte was not
/// clipped (0 ≤ round(x/s) + z ≤ 255, the forward pass's arithmetic), 0 where it was (and at NaN).
func fakeQuantizeBackward(_ grad: Tensor, input x: Tensor, scale: Float, zeroPoint: Int32) -> Tensor {
    let inverse = 1 / scale, z = Float(zeroPoint)
    return zipKernel(grad, x) { g, v in
        let q = (v * inverse).rounded(.toNearestOrEven) + z
        return q >= 0 && q <= 255 ? g : 0
    }
}
