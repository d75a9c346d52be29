import CKernels
import DistillTensor

/// An int8 student compiled for prediction: the int8 analogue of `InferencePlan` (and of its
/// `ConvStack` for a CNN's convolutional front).
///
/// Activations are bytes (`ActivationQuantization`: a scale and a zero point per tensor), weights
/// signed bytes with a scale per output channel. Each linear or convolution layer is one integer
/// product (`dk_int8_linear`, Sources/CKernels/int8_gemm.c: AVX-512 VNNI `vpdpbusd` where the CPU
/// has it, AVX2 otherwise, a scalar loop elsewhere) accumulated in int32; its epilogue removes the
/// input's zero point (a precomputed column sum), applies the scales and bias, the ReLU (a clamp
/// at the output's zero point) and rounds straight into the next layer's bytes. Only the model's
/// input is quantized from floats, and only its last layer writes floats (the logits).
///
/// Layout as in `ConvStack`: a CNN's activations are NHWC, one image at a time, each inside a
/// border of its own zero point (the padding of the convolution that reads it, written once);
/// a convolution runs straight from those bytes (`dk_int8_conv2d_direct`,
/// Sources/CKernels/int8_conv.c: output pixels in the lanes for a one-channel first layer, output
/// channels otherwise), and a 2×2 max-pooling at stride 2 after it runs in the same pass, on the
/// int32 sums before they are rounded (exact: the requantisation is monotone); other pooling runs
/// on the bytes (max is exact: it commutes with the monotone quantization).
/// The first linear layer's columns are permuted to read the NHWC features. Rows are split across
/// the worker threads for large batches, as the float plan does. One plan must not run on two
/// threads at once.
public final class QuantizedPlan: RowPredictor, @unchecked Sendable {
    /// A fully connected layer: the packed weight and the epilogue's arrays (padded to 16 outputs).
    struct LinearStage {
        let inputs, outputs: Int
        /// Bytes per row of this layer's input buffer: `inputs` rounded up to 4.
        let rowBytes: Int
        let packed: [Int8]
        let offset: [Int32], scale: [Float], bias: [Float]
        let zeroPoint: Int32, relu: Bool, floatOutput: Bool
    }

    /// One image's activation: NHWC bytes inside a border of `padH` rows and `padW` columns.
    struct Activation {
        let channels, height, width: Int
        var padH = 0, padW = 0
        let zeroPoint: Int32
        var rowStride: Int { (width + 2 * padW) * channels }
        var count: Int { (height + 2 * padH) * rowStride }
        var interior: Int { padH * rowStride + padW * channels }
        var values: Int { channels * height * width }
    }

    enum SpatialStage {
        /// `pooled`: a 2×2 max-pooling at stride 2 follows in the same pass, and the stage's
        /// output is the pooled activation.
        case convolution(dk_int8_conv_shape, packed: [Int8], offset: [Int32], scale: [Float], bias: [Float], zeroPoint: Int32, relu: Bool,
                         pooled: Bool)
        case pool(kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), average: Bool)
    }

    let input: ActivationQuantization
    /// The CNN front: `activations[0]` is the input image, stage k reads activations[k] and writes activations[k + 1].
    private(set) var activations: [Activation]
    private(set) var spatial: [SpatialStage]
    private var offsets: [Int] = []
    private var imageScratchBytes = 0, patchBytes = 0
    let linears: [LinearStage]
    /// Values per example going in and coming out.
    public let inputSize: Int, outputSize: Int
    /// The instruction set of the integer products: "avx512-vnni", "avx2" or "scalar".
    public static var kernelDescription: String { ["scalar", "avx2", "avx512-vnni"][Int(dk_int8_level())] }

    private var rowBuffers: [UnsafeMutablePointer<UInt8>] = []
    private var bufferRows = 0
    private var imageScratch: [UnsafeMutablePointer<UInt8>] = []

    /// Products one int32 sum of `(q − zero point) · w` holds without overflow: each is at most
    /// 255 · 127 = 32,385 in magnitude (q and the zero point are bytes, |w| ≤ 127), and 66,311 ·
    /// 32,385 < 2³¹ − 1. A layer summing more per output (a linear layer of more inputs, a
    /// convolution of more channels × kernel taps) is refused: its sums could wrap.
    public static let maxProductsPerSum = Int(Int32.max) / (255 * 127)

    static func tooWide(_ layer: String, products: Int?) -> String {
        "\(layer) sums \(products.map(String.init) ?? "too many") products per output, more than the \(maxProductsPerSum) an int32 sum of 8-bit products holds without overflow; keep this model in float32"
    }

    /// Plans `student`; throws naming the problem when its layers do not chain (a corrupt file),
    /// or when a layer sums more than `maxProductsPerSum` products.
    public init(_ student: QuantizedStudent) throws {
        func fail(_ why: String) -> TensorError { TensorError("int8 model '\(student.info.spec.prefix(80))': \(why)") }
        guard student.input.isValid else { throw fail("input scale \(student.input.scale) / zero point \(student.input.zeroPoint) out of range") }
        input = student.input
        let shape = student.info.inputShape
        inputSize = shape.reduce(1, *)
        var quantization = student.input
        var layers = student.layers[...]
        var activations: [Activation] = [], spatial: [SpatialStage] = []
        // The convolutional front, if any.
        if let first = layers.first, !(first == .flatten), !({ if case .linear = first { return true }; return false }()) {
            guard shape.count == 3, shape.allSatisfy({ $0 > 0 }) else { throw fail("spatial layers need images [C, H, W], the input is \(shape)") }
            activations = [Activation(channels: shape[0], height: shape[1], width: shape[2], zeroPoint: quantization.zeroPoint)]
            scan: while let layer = layers.first {
                let a = activations[activations.count - 1]
                switch layer {
                case .convolution(let w, let bias, let stride, let padding, let relu, let output):
                    guard w.shape.count == 4, w.shape[1] == a.channels, w.shape.allSatisfy({ $0 > 0 }), w.values.count == w.shape.reduce(1, *),
                          w.scales.count == w.shape[0], w.scales.allSatisfy({ $0 > 0 && $0.isFinite }), bias == nil || bias!.count == w.shape[0],
                          stride.count == 2, padding.count == 2, stride.allSatisfy({ $0 > 0 }), padding.allSatisfy({ $0 >= 0 && $0 < 1 << 12 }), output.isValid else {
                        throw fail("convolution \(w.shape) does not fit its input of \(a.channels) channels or holds invalid scales")
                    }
                    let (outs, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
                    guard let taps = CheckedSize.product([a.channels, kh, kw]), taps <= Self.maxProductsPerSum else {
                        throw fail(Self.tooWide("convolution \(w.shape)", products: CheckedSize.product([a.channels, kh, kw])))
                    }
                    let p = a.height + 2 * padding[0] - kh, q = a.width + 2 * padding[1] - kw
                    guard p >= 0, q >= 0 else { throw fail("convolution kernel \(kh)×\(kw) larger than its \(a.height)×\(a.width) input") }
                    activations[activations.count - 1].padH = padding[0]
                    activations[activations.count - 1].padW = padding[1]
                    let out = Activation(channels: outs, height: p / stride[0] + 1, width: q / stride[1] + 1, zeroPoint: output.zeroPoint)
                    // [out][c][kh][kw] → [out][kh][kw][c], the patches' order.
                    let cin = a.channels
                    var reordered = [Int8](repeating: 0, count: w.values.count)
                    for o in 0..<outs { for c in 0..<cin { for y in 0..<kh { for x in 0..<kw {
                        reordered[((o * kh + y) * kw + x) * cin + c] = w.values[((o * cin + c) * kh + y) * kw + x]
                    } } } }
                    var convShape = dk_int8_conv_shape(channels: cin, in_row_stride: 0, kernel_h: kh, kernel_w: kw, stride_h: stride[0], stride_w: stride[1],
                                                       out_channels: outs, out_h: out.height, out_w: out.width, out_row_stride: 0)
                    var packed = [Int8](repeating: 0, count: dk_int8_conv_packed_size(&convShape))
                    var sums = [Int32](repeating: 0, count: (outs + 15) / 16 * 16)
                    guard dk_int8_conv_pack_weights(&convShape, reordered, &packed, &sums) == 0 else { throw fail("out of memory packing a convolution") }
                    let (offset, scale, b) = Self.epilogue(sums: sums, input: quantization, weightScales: w.scales, bias: bias, output: output)
                    spatial.append(.convolution(convShape, packed: packed, offset: offset, scale: scale, bias: b, zeroPoint: output.zeroPoint, relu: relu,
                                                pooled: false))
                    activations.append(out)
                    quantization = output
                case .maxPool(let k, let s, let p), .avgPool(let k, let s, let p):
                    guard k.count == 2, s.count == 2, p.count == 2, k.allSatisfy({ $0 > 0 }), s.allSatisfy({ $0 > 0 }),
                          p[0] >= 0, p[1] >= 0, 2 * p[0] <= k[0], 2 * p[1] <= k[1] else { throw fail("pooling window \(k), stride \(s), padding \(p) invalid") }
                    let spanH = a.height + 2 * p[0] - k[0], spanW = a.width + 2 * p[1] - k[1]
                    guard spanH >= 0, spanW >= 0 else { throw fail("pooling window \(k) larger than its \(a.height)×\(a.width) input") }
                    var average = false
                    if case .avgPool = layer { average = true }
                    let next = Activation(channels: a.channels, height: spanH / s[0] + 1, width: spanW / s[1] + 1, zeroPoint: a.zeroPoint)
                    // A 2×2 max-pooling at stride 2 right after a convolution runs inside it.
                    if !average, (k[0], k[1], s[0], s[1], p[0], p[1]) == (2, 2, 2, 2, 0, 0), let last = spatial.indices.last,
                       case .convolution(let shape, let packed, let offset, let scale, let bias, let zp, let relu, false) = spatial[last] {
                        spatial[last] = .convolution(shape, packed: packed, offset: offset, scale: scale, bias: bias, zeroPoint: zp, relu: relu, pooled: true)
                        activations[activations.count - 1] = next
                        layers = layers.dropFirst()
                        continue scan
                    }
                    spatial.append(.pool(kernel: (k[0], k[1]), stride: (s[0], s[1]), padding: (p[0], p[1]), average: average))
                    activations.append(next)
                case .globalAvgPool:
                    spatial.append(.pool(kernel: (a.height, a.width), stride: (a.height, a.width), padding: (0, 0), average: true))
                    activations.append(Activation(channels: a.channels, height: 1, width: 1, zeroPoint: a.zeroPoint))
                case .flatten:
                    layers = layers.dropFirst()
                    break scan
                case .linear: break scan
                }
                layers = layers.dropFirst()
            }
            guard !spatial.isEmpty else { throw fail("a spatial front without layers") }
        } else if layers.first == .flatten {
            layers = layers.dropFirst()
        }
        // The fully connected part.
        var features = activations.last?.values ?? inputSize
        var stages: [LinearStage] = []
        for (j, layer) in layers.enumerated() {
            guard case .linear(let w, let bias, let relu, let output) = layer else {
                if layer == .flatten { continue }
                throw fail("layer \(j) after the fully connected part begins is not a linear layer")
            }
            guard w.shape.count == 2, w.shape[1] == features, w.shape[0] > 0, w.values.count == w.shape[0] * w.shape[1],
                  w.scales.count == w.shape[0], w.scales.allSatisfy({ $0 > 0 && $0.isFinite }), bias == nil || bias!.count == w.shape[0],
                  output?.isValid ?? true, (output == nil) == (j == layers.count - 1) else {
                throw fail("linear layer \(w.shape) does not take \(features) features, holds invalid scales, or its output kind is wrong (only the last layer gives floats)")
            }
            guard features <= Self.maxProductsPerSum else { throw fail(Self.tooWide("linear layer \(w.shape)", products: features)) }
            var values = w.values
            if stages.isEmpty, let last = activations.last {
                // The front writes [H, W, C]; the weight reads [C, H, W].
                for o in 0..<w.shape[0] { for y in 0..<last.height { for x in 0..<last.width { for c in 0..<last.channels {
                    values[o * features + (y * last.width + x) * last.channels + c] = w.values[o * features + (c * last.height + y) * last.width + x]
                } } } }
            }
            let (packed, sums) = Self.pack(values, outputs: w.shape[0], inputs: features)
            let (offset, scale, b) = Self.epilogue(sums: sums, input: quantization, weightScales: w.scales, bias: bias, output: output)
            stages.append(LinearStage(inputs: features, outputs: w.shape[0], rowBytes: (features + 3) / 4 * 4, packed: packed, offset: offset,
                                      scale: scale, bias: b, zeroPoint: output?.zeroPoint ?? 0, relu: relu, floatOutput: output == nil))
            features = w.shape[0]
            if let output { quantization = output }
        }
        guard let last = stages.last, last.floatOutput else { throw fail("no linear layer gives the output") }
        guard last.outputs == student.info.numClasses else {
            throw fail("the last layer gives \(last.outputs) outputs, but distillkit.num_classes says \(student.info.numClasses) classes")
        }
        linears = stages
        outputSize = last.outputs
        (self.activations, self.spatial) = (activations, spatial)
        finishSpatial()
    }

    deinit {
        rowBuffers.forEach { $0.deallocate() }
        imageScratch.forEach { $0.deallocate() }
    }

    /// Packs `values` ([outputs][inputs]) for `dk_int8_linear` and returns their per-output sums.
    private static func pack(_ values: [Int8], outputs: Int, inputs: Int) -> ([Int8], [Int32]) {
        var packed = [Int8](repeating: 0, count: dk_int8_packed_size(inputs, outputs))
        var sums = [Int32](repeating: 0, count: (outputs + 15) / 16 * 16)
        values.withUnsafeBufferPointer { v in dk_int8_pack_weights(v.baseAddress!, outputs, inputs, &packed, &sums) }
        return (packed, sums)
    }

    /// The epilogue's arrays (padded to whole vectors of 16): offset −z_in · Σw, scale
    /// s_in · s_w / s_out, bias / s_out (no division for a float output).
    private static func epilogue(sums: [Int32], input: ActivationQuantization, weightScales: [Float], bias: [Float]?,
                                 output: ActivationQuantization?) -> ([Int32], [Float], [Float]) {
        let padded = sums.count, outScale = output?.scale ?? 1
        let offset = sums.map { -input.zeroPoint &* $0 }
        let scale = (0..<padded).map { $0 < weightScales.count ? input.scale * weightScales[$0] / outScale : 0 }
        let b = (0..<padded).map { $0 < (bias?.count ?? 0) ? bias![$0] / outScale : 0 }
        return (offset, scale, b)
    }

    /// Fixes the row strides (a convolution's input border is known only once it is appended) and
    /// where each activation lies in one image's scratch.
    private func finishSpatial() {
        for k in spatial.indices {
            if case .convolution(var shape, let packed, let offset, let scale, let bias, let zp, let relu, let pooled) = spatial[k] {
                shape.in_row_stride = activations[k].rowStride
                shape.out_row_stride = activations[k + 1].rowStride  // the pooled rows when pooled
                // Also the slack past the last activation that the kernels may read (dk_int8.h).
                patchBytes = Swift.max(patchBytes, dk_int8_conv_direct_scratch_size(&shape))
                spatial[k] = .convolution(shape, packed: packed, offset: offset, scale: scale, bias: bias, zeroPoint: zp, relu: relu, pooled: pooled)
            }
        }
        offsets = []
        imageScratchBytes = 0
        for a in activations.dropLast() { offsets.append(imageScratchBytes); imageScratchBytes += a.count }
    }

    /// Predictions (float logits) for `rows` examples at `input` into `output` (`rows × outputSize`).
    public func predict(_ input: UnsafePointer<Float>, rows: Int, into output: UnsafeMutablePointer<Float>) {
        guard rows > 0 else { return }
        if rows > bufferRows {
            rowBuffers.forEach { $0.deallocate() }
            rowBuffers = linears.map { stage in
                let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: rows * stage.rowBytes)
                buffer.initialize(repeating: 0, count: rows * stage.rowBytes)
                return buffer
            }
            bufferRows = rows
        }
        if !activations.isEmpty, imageScratch.isEmpty {
            imageScratch = (0..<Swift.max(1, Parallel.workers)).map { _ in
                let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: imageScratchBytes + patchBytes)
                // Each activation's border holds its zero point and is never written again.
                for (k, a) in activations.dropLast().enumerated() {
                    (scratch + offsets[k]).initialize(repeating: UInt8(a.zeroPoint), count: a.count)
                }
                (scratch + imageScratchBytes).initialize(repeating: 0, count: patchBytes)
                return scratch
            }
        }
        let chunks: Int
        if !activations.isEmpty {
            chunks = rows >= 2 ? Swift.min(rows, imageScratch.count) : 1
        } else {
            let work = rows * linears.reduce(0) { $0 + $1.inputs * $1.outputs }
            chunks = work >= Self.minimumSplitWork ? Swift.min(Swift.max(1, rows / 4), Parallel.workers) : 1
        }
        if chunks <= 1 { return predict(input, rows: 0..<rows, chunk: 0, into: output) }
        let X = SharedPointer(UnsafeMutablePointer(mutating: input)), Y = SharedPointer(output)
        Parallel.forEachChunk(rows, chunks: chunks) { chunk, range in self.predict(X.p, rows: range, chunk: chunk, into: Y.p) }
    }

    /// Multiply-adds (all layers) from which an MLP's rows are split across the workers (int8
    /// products run about four times as many per cycle as the float plan's).
    static let minimumSplitWork = 1 << 23

    private func predict(_ x: UnsafePointer<Float>, rows range: Range<Int>, chunk: Int, into output: UnsafeMutablePointer<Float>) {
        let rows = range.count, first = linears[0]
        var a = rowBuffers[0] + range.lowerBound * first.rowBytes
        if activations.isEmpty {
            for r in 0..<rows {
                dk_int8_quantize(x + (range.lowerBound + r) * inputSize, inputSize, 1 / input.scale, input.zeroPoint, a + r * first.rowBytes)
            }
        } else {
            for r in 0..<rows { runImage(x + (range.lowerBound + r) * inputSize, scratch: imageScratch[chunk], into: a + r * first.rowBytes) }
        }
        for (j, stage) in linears.enumerated() {
            stage.packed.withUnsafeBufferPointer { w in
                stage.offset.withUnsafeBufferPointer { offset in
                    stage.scale.withUnsafeBufferPointer { scale in
                        stage.bias.withUnsafeBufferPointer { bias in
                            var e = dk_int8_epilogue(offset: offset.baseAddress, scale: scale.baseAddress, bias: bias.baseAddress,
                                                     zero_point: stage.zeroPoint, relu: stage.relu ? 1 : 0)
                            if stage.floatOutput {
                                dk_int8_linear(a, stage.rowBytes, rows, stage.inputs, w.baseAddress!, stage.outputs, &e, nil,
                                               output + range.lowerBound * outputSize, outputSize)
                            } else {
                                let next = linears[j + 1].rowBytes, y = rowBuffers[j + 1] + range.lowerBound * next
                                dk_int8_linear(a, stage.rowBytes, rows, stage.inputs, w.baseAddress!, stage.outputs, &e, y, nil, next)
                                a = y
                            }
                        }
                    }
                }
            }
        }
    }

    /// One image ([C, H, W] floats) through the convolutional front; its NHWC feature bytes go to `features`.
    private func runImage(_ image: UnsafePointer<Float>, scratch: UnsafeMutablePointer<UInt8>, into features: UnsafeMutablePointer<UInt8>) {
        let a0 = activations[0], plane = a0.height * a0.width
        let first = scratch + offsets[0] + a0.interior, inverse = 1 / input.scale
        if a0.channels == 1 {
            for y in 0..<a0.height { dk_int8_quantize(image + y * a0.width, a0.width, inverse, input.zeroPoint, first + y * a0.rowStride) }
        } else {
            for c in 0..<a0.channels { for y in 0..<a0.height { for x in 0..<a0.width {
                let v = (image[c * plane + y * a0.width + x] * inverse).rounded(.toNearestOrEven)
                let q = v.isNaN ? Float(input.zeroPoint) : Swift.max(0, Swift.min(255, v + Float(input.zeroPoint)))
                first[y * a0.rowStride + x * a0.channels + c] = UInt8(q)
            } } }
        }
        let patches = scratch + imageScratchBytes
        for (k, stage) in spatial.enumerated() {
            let x = UnsafePointer(scratch + offsets[k])
            let y = k == spatial.count - 1 ? features : scratch + offsets[k + 1] + activations[k + 1].interior
            switch stage {
            case .convolution(var shape, let packed, let offset, let scale, let bias, let zp, let relu, let pooled):
                packed.withUnsafeBufferPointer { w in
                    offset.withUnsafeBufferPointer { o in
                        scale.withUnsafeBufferPointer { s in
                            bias.withUnsafeBufferPointer { b in
                                var e = dk_int8_epilogue(offset: o.baseAddress, scale: s.baseAddress, bias: b.baseAddress, zero_point: zp, relu: relu ? 1 : 0)
                                dk_int8_conv2d_direct(&shape, pooled ? 1 : 0, x, w.baseAddress!, &e, y, patches)
                            }
                        }
                    }
                }
            case .pool(let kernel, let stride, let padding, let average):
                let input = activations[k], out = activations[k + 1]
                dk_int8_pool2d(input.channels, input.height, input.width, input.rowStride, kernel.0, kernel.1, stride.0, stride.1,
                               padding.0, padding.1, out.height, out.width, out.rowStride, input.zeroPoint, x + input.interior, y, average ? 1 : 0)
            }
        }
    }
}

/// An int8 student as a module: what `SavedModel.load` returns (inside a `Sequential`) for a
/// quantized file, so that evaluation and benchmarks take it like any model. Inference only:
/// it has no float parameters and no gradient.
public final class QuantizedModel: Module {
    public let student: QuantizedStudent
    let _plan: QuantizedPlan

    public init(_ student: QuantizedStudent) throws {
        self.student = student
        _plan = try QuantizedPlan(student)
    }

    public override func forward(_ x: Tensor) -> Tensor { _plan(x) }
}
