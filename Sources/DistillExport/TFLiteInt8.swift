import DistillNN
import Foundation

/// An int8 student (`distill quantize`) as a fully integer LiteRT (TFLite) model.
///
/// TFLite's int8 scheme, in our words: an int8 tensor stands for `scale · (q − zero point)` with q
/// in −128...127. Activations have one scale and zero point per tensor; the weights of CONV_2D and
/// FULLY_CONNECTED are symmetric (zero point 0) with one scale per output channel (axis 0); their
/// biases are int32 with scale `input scale · weight scale` per channel. Every layer's sum runs in
/// int32 and is requantised into the next layer's int8 tensor.
///
/// DistillKit's int8 activations are bytes 0...255 with the same scales (`ActivationQuantization`):
/// `q − 128` with zero point `z − 128` is the same value, so every DistillKit quantization carries
/// over exactly, and a layer's integer sum `Σ (q − z) · w` is the same number in both. The graph:
/// the float input (tabular models: standardised by float SUB and MUL first), QUANTIZE, the layers
/// (ReLUs fused into the layer before as TFLite's RELU activation, which clamps at the zero point
/// as DistillKit does), the last layer into integer logits (`Logits`), DEQUANTIZE to float32.
/// Images are NHWC; the first dense layer's columns are permuted to read NHWC features, as
/// `QuantizedPlan` does, so no TRANSPOSE runs.
///
/// Where TFLite's arithmetic differs from DistillKit's (the outputs agree within a step or two of
/// the logits' scale, not bit for bit):
/// - DistillKit adds the float bias after scaling; TFLite adds the bias rounded to an integer in
///   units of `input scale · weight scale` to the sum: up to half a unit off, which moves a hidden
///   value that lands that close to a half step to the other neighbour. The unit is fixed by the
///   scales both sides share, so no choice of parameters removes it.
/// - DistillKit requantises with a float multiply and rounds half to even; TFLite's optimized
///   kernels (XNNPACK) multiply in float and round to nearest too, but its reference kernels use a
///   32-bit fixed-point multiplier and a shift, rounding twice, half away from zero, so a value
///   within 2^−(shift+1) below a half step goes up.
/// - Average pooling rounds the mean of the int8 values half away from zero (DistillKit: of
///   `q − z`, half to even).
/// - The logits are stored as integers, one more rounding (DistillKit's int8 path writes the last
///   layer's floats directly). As int8 (`Logits.int8`) the step is a 255th of the logits' range, and
///   two logits closer than that become equal: on briefly trained students, whose top two logits
///   are often that close, 1-3% of predictions then differ. As int16 (`Logits.int16`, the default)
///   the step is 25-50 times finer for these students and the predictions agree as with float logits.
///
/// Measured on 1,000 Fashion-MNIST test images (tests/interop/test_student_shipping.py): hidden
/// values one step off are 0.002-0.7% of them (default kernels) or 0.002-2.5% (reference
/// kernels); they alone change 0-0.1% of predictions (0-0.5% with the reference kernels).
extension TFLiteExport {
    /// How an int8 TFLite file gives its logits.
    public enum Logits: Sendable, Equatable {
        /// The last layer runs as TFLite's 16x8 FULLY_CONNECTED (int16 inputs, int8 weights, int64
        /// bias, int16 outputs): CAST widens its int8 input, whose zero point moves into the bias,
        /// and the logits are int16 with zero point 0 and `int16LogitsScale`'s step, the largest
        /// logit the layer can produce over 32,766: every layer is integer, nothing saturates, and
        /// no data is needed. LiteRT's CPU kernels run it (its default and reference kernels are
        /// tested), the 16x8 layer in a plain loop that reads the int64 bias: slower than an int8
        /// layer when the last layer is wide. An accelerator that runs only int8 operators needs `int8`.
        case int16
        /// The last FULLY_CONNECTED writes int8 logits stored as this quantization (bytes 0...255 as
        /// DistillKit's activations; see `ActivationQuantization(low:high:)`), then DEQUANTIZE: every
        /// operator is int8, for accelerators that run nothing else; near-ties decide differently.
        case int8(ActivationQuantization)
        /// DEQUANTIZE before the last layer, a float32 FULLY_CONNECTED with the int8 weights
        /// dequantized: the logits DistillKit's int8 path gives, up to float rounding; no range needed.
        case float
    }

    /// TFLite's parameters for a DistillKit activation quantization: the same scale, the zero point moved by −128.
    static func int8Parameters(_ a: ActivationQuantization) -> Builder.Quantization {
        Builder.Quantization(scales: [a.scale], zeroPoints: [Int64(a.zeroPoint) - 128])
    }

    /// The .tflite bytes of `student`. `logits` says how the last layer gives them: as int16 (the
    /// step from the weights), as int8 with a quantization the caller chooses from calibration data
    /// (an int8 file does not record the logits' range), or in float. `preprocessing` holds a tabular model's input standardisation
    /// (applied in float before QUANTIZE).
    public static func serialize(_ student: QuantizedStudent, logits: Logits, preprocessing: ExportPreprocessing = .init(),
                                 classNames: [String]? = nil, description: String = "DistillKit int8 student") throws -> Data {
        let shape = student.info.inputShape
        guard shape.count == 1 || shape.count == 3, shape.allSatisfy({ $0 > 0 }) else {
            throw ExportError(format: format, "int8 inputs of shape \(shape): DistillKit exports feature vectors [F] and images [C, H, W]")
        }
        if case let .int8(q) = logits, !(q.scale > 0 && q.scale.isFinite && (0...255).contains(q.zeroPoint)) {
            throw ExportError(format: format, "the logits' quantization (scale \(q.scale), zero point \(q.zeroPoint)) is not a positive finite scale and a byte")
        }
        var b = Builder()
        let input = b.activation(shape, name: "input")
        var x = input
        if let mean = preprocessing.inputMean, let std = preprocessing.inputStd {
            let features = shape.reduce(1, *)
            guard mean.count == std.count, mean.count == features || mean.count == 1 else {
                throw ExportError(format: format, "the input statistics have \(mean.count) means and \(std.count) standard deviations; the model takes \(features) features")
            }
            // DistillKit's FeatureStatistics.apply: (x − mean) · (1 / std), a tiny std only centring.
            let scale = std.map { $0 < 1e-6 ? 1 : 1 / $0 }
            let constantShape = mean.count == 1 ? [1] : (shape.count == 3 ? [1, shape[1], shape[2], shape[0]] : [1, shape[0]])
            let m = b.constant(mean.count == 1 ? mean : b.toNHWC(mean, shape), shape: constantShape, name: "preprocessing.mean")
            let s = b.constant(scale.count == 1 ? scale : b.toNHWC(scale, shape), shape: constantShape, name: "preprocessing.scale")
            let centred = b.value(shape, "preprocessing.centred")
            b.op(.sub, [x, m], [centred], (.sub, [.int8(0)]))
            x = b.value(shape, "preprocessing")
            b.op(.mul, [centred, s], [x], (.mul, [.int8(0)]))
        }
        let quantized = b.int8Value(shape, "input.quantized", student.input)
        b.op(.quantize, [x], [quantized])
        x = quantized

        var current = shape, quantization = student.input
        // For the first dense layer after the convolutions: the CHW column each NHWC feature is.
        var nhwcColumns: [Int]?
        var logitsTensor: Int?
        func fail(_ index: Int, _ why: String) -> ExportError { ExportError(format: format, "int8 layer \(index): \(why)") }
        for (index, layer) in student.layers.enumerated() {
            let name = "l\(index)"
            guard logitsTensor == nil else { throw fail(index, "follows the layer that writes the logits; the last layer must be the only one without an output quantization") }
            switch layer {
            case let .convolution(w, bias, stride, padding, relu, output):
                guard current.count == 3, w.shape.count == 4, w.shape[1] == current[0], w.scales.count == w.shape[0],
                      stride.count == 2, padding.count == 2, stride.allSatisfy({ $0 > 0 }), padding.allSatisfy({ $0 >= 0 }) else {
                    throw fail(index, "a convolution \(w.shape) does not fit its input \(current)")
                }
                let (outs, cin, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
                let oh = (current[1] + 2 * padding[0] - kh) / stride[0] + 1, ow = (current[2] + 2 * padding[1] - kw) / stride[1] + 1
                guard current[1] + 2 * padding[0] >= kh, current[2] + 2 * padding[1] >= kw else { throw fail(index, "kernel \(kh)×\(kw) larger than its input \(current)") }
                // Implicit SAME padding adds `input zero point` bytes, which count as 0: DistillKit's padding.
                var padded = x, mode = Padding.valid
                if padding.contains(where: { $0 > 0 }) {
                    if sameMatches(current, kernel: [kh, kw], stride: stride, padding: padding, output: [oh, ow]) { mode = .same }
                    else { padded = b.int8Padded(x, shape: current, padding: padding, quantization: quantization, fill: nil, name: name) }
                }
                // [out, in, kh, kw] → TFLite's [out, kh, kw, in].
                var reordered = [Int8](repeating: 0, count: w.values.count)
                for o in 0..<outs { for c in 0..<cin { for u in 0..<kh { for v in 0..<kw {
                    reordered[((o * kh + u) * kw + v) * cin + c] = w.values[((o * cin + c) * kh + u) * kw + v]
                } } } }
                let weight = b.constant(int8: reordered, shape: [outs, kh, kw, cin], name: "\(name).weight",
                                        quantization: .init(scales: w.scales, zeroPoints: [Int64](repeating: 0, count: outs)))
                let biasTensor = b.quantizedBias(bias, inputScale: quantization.scale, weightScales: w.scales, name: "\(name).bias")
                let y = b.int8Value([outs, oh, ow], name, output)
                b.op(.conv2D, [padded, weight, biasTensor], [y], (.conv2D, [
                    .int8(mode.rawValue), .int32(Int32(stride[1])), .int32(Int32(stride[0])), .int8(relu ? 1 : 0), .int32(1), .int32(1),
                ]), version: 3)
                (x, current, quantization) = (y, [outs, oh, ow], output)
            case let .maxPool(k, s, p), let .avgPool(k, s, p):
                guard current.count == 3, k.count == 2, s.count == 2, p.count == 2, k.allSatisfy({ $0 > 0 }), s.allSatisfy({ $0 > 0 }),
                      p.allSatisfy({ $0 >= 0 }), current[1] + 2 * p[0] >= k[0], current[2] + 2 * p[1] >= k[1] else {
                    throw fail(index, "pooling window \(k), stride \(s), padding \(p) on a \(current) value")
                }
                var isMax = false
                if case .maxPool = layer { isMax = true }
                let out = [current[0], (current[1] + 2 * p[0] - k[0]) / s[0] + 1, (current[2] + 2 * p[1] - k[1]) / s[1] + 1]
                var padded = x, mode = Padding.valid
                if p.contains(where: { $0 > 0 }) {
                    if isMax && sameMatches(current, kernel: k, stride: s, padding: p, output: [out[1], out[2]]) {
                        mode = .same  // TFLite's max over a SAME window skips the outside: padding never wins
                    } else {
                        // Max: the lowest int8, so padding never wins. Average: the zero point (the value 0),
                        // counted in the divisor, as DistillKit does.
                        padded = b.int8Padded(x, shape: current, padding: p, quantization: quantization, fill: isMax ? -128 : nil, name: name)
                    }
                }
                let y = b.int8Value(out, name, quantization)
                b.op(isMax ? .maxPool2D : .averagePool2D, [padded], [y], (.pool2D, [
                    .int8(mode.rawValue), .int32(Int32(s[1])), .int32(Int32(s[0])), .int32(Int32(k[1])), .int32(Int32(k[0])), .int8(0),
                ]), version: 2)
                (x, current) = (y, out)
            case .globalAvgPool:
                guard current.count == 3 else { throw fail(index, "global pooling on a \(current) value") }
                let y = b.int8Value([current[0], 1, 1], name, quantization)
                b.op(.averagePool2D, [x], [y], (.pool2D, [
                    .int8(Padding.valid.rawValue), .int32(1), .int32(1), .int32(Int32(current[2])), .int32(Int32(current[1])), .int8(0),
                ]), version: 2)
                (x, current) = (y, [current[0], 1, 1])
            case .flatten:
                guard current.count == 3 else { continue }
                x = b.flattened(x, current, quantization: quantization, name: name)
                nhwcColumns = Self.nhwcColumns(current)
                current = [current.reduce(1, *)]
            case let .linear(w, bias, relu, output):
                if current.count == 3 {
                    // A dense layer straight after the convolutions (QuantizedPlan accepts it) flattens first.
                    x = b.flattened(x, current, quantization: quantization, name: "\(name).flatten")
                    nhwcColumns = Self.nhwcColumns(current)
                    current = [current.reduce(1, *)]
                }
                let inputs = current[0]
                guard w.shape.count == 2, w.shape[1] == inputs, w.shape[0] > 0, w.values.count == w.shape[0] * inputs, w.scales.count == w.shape[0] else {
                    throw fail(index, "a linear layer \(w.shape) does not fit its \(inputs) inputs")
                }
                let outs = w.shape[0]
                var values = w.values
                if let columns = nhwcColumns {
                    for o in 0..<outs { for j in 0..<inputs { values[o * inputs + j] = w.values[o * inputs + columns[j]] } }
                    nhwcColumns = nil
                }
                if output == nil, logits == .float {
                    // The float last layer: s_in · (q − z) times s_w · w, plus the float bias.
                    let dequantized = b.value([inputs], "\(name).dequantized")
                    b.op(.dequantize, [x], [dequantized], nil, version: 2)
                    let weight = b.constant(values.enumerated().map { Float($0.element) * w.scales[$0.offset / inputs] }, shape: [outs, inputs], name: "\(name).weight")
                    let biasTensor = b.constant(bias ?? [Float](repeating: 0, count: outs), shape: [outs], name: "\(name).bias")
                    let y = b.value([outs], "output")
                    b.op(.fullyConnected, [dequantized, weight, biasTensor], [y], (.fullyConnected, [.int8(relu ? 1 : 0)]))
                    (x, current, logitsTensor) = (y, [outs], y)
                    continue
                }
                let weight = b.constant(int8: values, shape: [outs, inputs], name: "\(name).weight",
                                        quantization: .init(scales: w.scales, zeroPoints: [Int64](repeating: 0, count: outs)))
                if output == nil, logits == .int16 {
                    // CAST keeps the int8 values q; the 16x8 kernel takes zero point 0 only, so the
                    // int16 tensor reads q · s_in and the bias takes −z · Σ w instead:
                    // Σ q·w − z·Σ w = Σ (q − z)·w, the same integer sum.
                    let wide = b.activation([inputs], name: "\(name).int16")
                    b.tensors[wide].type = .int16
                    b.tensors[wide].quantization = Builder.Quantization(scales: [quantization.scale], zeroPoints: [0])
                    b.op(.cast, [x], [wide], nil, version: 3)
                    let zero = Int(quantization.zeroPoint) - 128
                    let offsets = (0..<outs).map { o in -zero * values[o * inputs..<(o + 1) * inputs].reduce(0) { $0 + Int($1) } }
                    let biasTensor = b.quantizedBias(bias, inputScale: quantization.scale, weightScales: w.scales, name: "\(name).bias", adding: offsets, type: .int64)
                    let scale = Self.int16LogitsScale(w, bias: bias, input: quantization)
                    let y = b.activation([outs], name: "logits.quantized")
                    b.tensors[y].type = .int16
                    b.tensors[y].quantization = Builder.Quantization(scales: [scale], zeroPoints: [0])
                    b.op(.fullyConnected, [wide, weight, biasTensor], [y], (.fullyConnected, [.int8(relu ? 1 : 0)]), version: 7)
                    (x, current, logitsTensor) = (y, [outs], y)
                    continue
                }
                let biasTensor = b.quantizedBias(bias, inputScale: quantization.scale, weightScales: w.scales, name: "\(name).bias")
                let stored: ActivationQuantization
                if let output { stored = output } else if case let .int8(q) = logits { stored = q } else { stored = quantization }
                let y = b.int8Value([outs], output == nil ? "logits.quantized" : name, stored)
                b.op(.fullyConnected, [x, weight, biasTensor], [y], (.fullyConnected, [.int8(relu ? 1 : 0)]), version: 4)
                (x, current) = (y, [outs])
                if let output { quantization = output } else { logitsTensor = y }
            }
        }
        guard logitsTensor != nil, current.count == 1 else {
            throw ExportError(format: format, "the int8 student does not end with a linear layer writing the logits")
        }
        var output = x
        if logits != .float {
            output = b.value(current, "output")
            b.op(.dequantize, [x], [output], nil, version: logits == .int16 ? 3 : 2)
        }

        let names = classNames ?? (0..<current[0]).map(String.init)
        guard names.count == current[0] else { throw ExportError(format: format, "\(names.count) class names for \(current[0]) outputs") }
        var metadata: [String: Any] = ["producer": "DistillKit", "class_names": names, "input_layout": shape.count == 3 ? "NHWC" : "NF",
                                       "input_shape": shape, "quantization": "int8", "logits": "float32"]
        if case let .int8(q) = logits { metadata["logits"] = "int8"; metadata["logits_scale"] = Double(q.scale); metadata["logits_zero_point"] = Int(q.zeroPoint) - 128 }
        if logits == .int16, let y = logitsTensor, let q = b.tensors[y].quantization {
            metadata["logits"] = "int16"; metadata["logits_scale"] = Double(q.scales[0]); metadata["logits_zero_point"] = 0
        }
        let json = try JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys])
        let root = b.model(input: input, output: output, metadata: ["distillkit": json], description: description)
        let data = FlatBufferWriter.serialize(root: root, identifier: "TFL3")
        guard data.count < Int(Int32.max) else {
            throw ExportError(format: format, "the model needs \(data.count) bytes; a TFLite flatbuffer holds less than 2 GiB")
        }
        return data
    }

    /// Writes the int8 `student` to `url` atomically (refusals come before any write).
    public static func write(_ student: QuantizedStudent, logits: Logits, preprocessing: ExportPreprocessing = .init(),
                             to url: URL, classNames: [String]? = nil, description: String = "DistillKit int8 student") throws {
        let data = try serialize(student, logits: logits, preprocessing: preprocessing, classNames: classNames, description: description)
        try writeAtomically(data, to: url, format: format)
    }

    /// The step of int16 logits: the largest |logit| the last layer can give, over 32,766 (one to
    /// spare for rounding), so nothing saturates whatever the input. Output o is
    /// b_o + s_in · s_w[o] · Σ_j w[o, j] · (q_j − z) with every q_j − z in [−128 − z, 127 − z]
    /// (int8 zero point z); each term's extreme is at one end of that interval, so the bound is
    /// the one the layer can reach. It depends on the weights alone: no data needed.
    static func int16LogitsScale(_ w: QuantizedWeight, bias: [Float]?, input: ActivationQuantization) -> Float {
        let zero = Int(input.zeroPoint) - 128
        let (lowest, highest) = (-128 - zero, 127 - zero)
        let outs = w.shape[0], inputs = w.values.count / max(outs, 1)
        var largest = 0.0
        for o in 0..<outs {
            var (low, high) = (0, 0)
            for v in w.values[o * inputs..<(o + 1) * inputs] {
                let (a, c) = (Int(v) * lowest, Int(v) * highest)
                low += min(a, c); high += max(a, c)
            }
            let b = Double(bias.map { o < $0.count ? $0[o] : 0 } ?? 0), step = Double(input.scale) * Double(w.scales[o])
            largest = max(largest, abs(b + step * Double(low)), abs(b + step * Double(high)))
        }
        let scale = Float(largest / 32766).nextUp
        return scale > 0 && scale.isFinite ? scale : 1
    }

    /// Whether TFLite's SAME padding is the layer's own: the same output size and `padding` on each
    /// side (SAME puts an odd total's extra row at the end).
    static func sameMatches(_ input: [Int], kernel: [Int], stride: [Int], padding: [Int], output: [Int]) -> Bool {
        (0..<2).allSatisfy { axis in
            let extent = input[1 + axis], sameOut = (extent + stride[axis] - 1) / stride[axis]
            let total = max((sameOut - 1) * stride[axis] + kernel[axis] - extent, 0)
            return sameOut == output[axis] && total == 2 * padding[axis]
        }
    }

    /// For a [C, H, W] value flattened in NHWC order: the C, H, W index of each NHWC position.
    static func nhwcColumns(_ chw: [Int]) -> [Int] {
        let (c, h, w) = (chw[0], chw[1], chw[2])
        var columns = [Int](repeating: 0, count: c * h * w)
        for y in 0..<h { for x in 0..<w { for k in 0..<c { columns[(y * w + x) * c + k] = (k * h + y) * w + x } } }
        return columns
    }
}

extension TFLiteExport.Builder {
    /// An int8 activation shaped like `shape` (DistillKit layout), stored as `q` says (zero point − 128).
    mutating func int8Value(_ shape: [Int], _ name: String, _ q: ActivationQuantization) -> Int {
        let t = activation(shape, name: name)
        tensors[t].type = .int8
        tensors[t].quantization = TFLiteExport.int8Parameters(q)
        return t
    }

    mutating func constant(int8 values: [Int8], shape: [Int], name: String, quantization: Quantization) -> Int {
        buffers.append(Data(values.map { UInt8(bitPattern: $0) }))
        tensors.append(TensorEntry(shape: shape, type: .int8, buffer: buffers.count - 1, name: name, dynamicBatch: false, quantization: quantization))
        return tensors.count - 1
    }

    /// The bias in units of `input scale · weight scale` (per output), rounded half away from zero
    /// as TFLite's converter does, plus `offsets` (integers already in those units); zeros for a
    /// layer without one. int32 for int8 layers; int64 for the 16x8 last layer, whose reference
    /// kernel reads its bias as int64.
    mutating func quantizedBias(_ bias: [Float]?, inputScale: Float, weightScales: [Float], name: String,
                                adding offsets: [Int]? = nil, type: TFLiteExport.TensorType = .int32) -> Int {
        let scales = weightScales.map { inputScale * $0 }
        let limit = type == .int64 ? 9.0e18 : Double(Int32.max)
        let values = scales.indices.map { o -> Int in
            var q = Double(offsets?[o] ?? 0)
            if let bias, o < bias.count { q += (Double(bias[o]) / Double(scales[o])).rounded(.toNearestOrAwayFromZero) }
            return Int(max(-limit, min(limit, q)))
        }
        let t = constant(integers: values, type: type, shape: [values.count], name: name)
        tensors[t].quantization = Quantization(scales: scales, zeroPoints: [Int64](repeating: 0, count: scales.count))
        return t
    }

    /// PAD (zero point, the value 0) or PADV2 with `fill` around an int8 [C, H, W] value; same quantization in and out.
    mutating func int8Padded(_ x: Int, shape: [Int], padding: [Int], quantization q: ActivationQuantization, fill: Int8?, name: String) -> Int {
        let paddings = constant(int32: [0, 0, padding[0], padding[0], padding[1], padding[1], 0, 0], shape: [4, 2], name: "\(name).paddings")
        let out = int8Value([shape[0], shape[1] + 2 * padding[0], shape[2] + 2 * padding[1]], "\(name).padded", q)
        if let fill {
            let value = constant(int8: [fill], shape: [], name: "\(name).pad_value", quantization: TFLiteExport.int8Parameters(q))
            op(.padV2, [x, paddings, value], [out], (.padV2, []), version: 2)
        } else {
            op(.pad, [x, paddings], [out], (.pad, []), version: 2)
        }
        return out
    }

    /// RESHAPE of an int8 NHWC [C, H, W] value to [N, C·H·W] (in NHWC order; the next dense layer's
    /// columns follow it).
    mutating func flattened(_ x: Int, _ chw: [Int], quantization q: ActivationQuantization, name: String) -> Int {
        let features = chw.reduce(1, *)
        let newShape = constant(int32: [-1, features], shape: [2], name: "\(name).shape")
        let out = int8Value([features], name, q)
        op(.reshape, [x, newShape], [out], (.reshape, [.object(.int32s([-1, features]))]))
        return out
    }
}
