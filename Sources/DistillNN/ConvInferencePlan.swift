import CKernels
import DistillTensor
import Foundation

/// The convolutional front of a CNN student (its `Conv2d`, `BatchNorm2d`, `ReLU`, `MaxPool2d`,
/// `AvgPool2d`, `GlobalAvgPool2d` and `Dropout` layers before the first `Linear`), compiled to
/// run one image at a time: what `InferencePlan` runs before a CNN's fully connected layers.
///
/// Why: a student's convolutions are small (LeNet-5: 1→6 and 6→16 channels on 28×28 images), so
/// the module's path (an im2col copy and a BLAS call per layer, a tensor per layer, pooling
/// and ReLU as passes of their own) spends more time around the arithmetic than in it. Here:
/// - activations are NHWC (channels innermost), the layout of the direct kernels in
///   Sources/CKernels/conv_nhwc.c, which vectorise over output channels (over pixels for a
///   grayscale first layer, whose 2×2 max-pooling then runs in the same pass);
/// - every activation lives in a per-thread buffer allocated once, with the zero border its
///   convolution's padding needs; the layer before writes into the border's interior, so
///   padding costs no copy;
/// - a `BatchNorm2d` after a convolution is folded into its weights and bias, and a `ReLU`
///   after a convolution or a pooling is applied as the values are stored;
/// - one image runs through every layer while its activations (tens of KB) stay in the
///   core's cache; `InferencePlan` gives each core its own images.
///
/// The stack's output (the flattened features) is in NHWC order; `InferencePlan` permutes the
/// first `Linear`'s columns to match, so no transpose runs. Batch-norm layers use their running
/// statistics (evaluation mode), read when the plan is made.
struct ConvStack {
    /// An activation of one image: `channels × height × width`, stored NHWC inside a zero border
    /// of `padH` rows and `padW` columns on each side (the padding of the convolution reading it).
    struct Activation {
        let channels, height, width: Int
        var padH = 0, padW = 0
        /// Floats from one row to the next, border included.
        var rowStride: Int { (width + 2 * padW) * channels }
        /// Floats of the whole buffer, border included.
        var count: Int { (height + 2 * padH) * rowStride }
        /// Where row 0, column 0 of the values (inside the border) starts.
        var interior: Int { padH * rowStride + padW * channels }
        var values: Int { channels * height * width }
    }

    enum Operation {
        /// Weights packed as [kh][kw][in][padded out] for `dk_conv2d_nhwc`; bias padded the same.
        /// `pooled`: a 2×2 max-pooling at stride 2 follows in the same pass
        /// (`dk_conv2d_maxpool2_nhwc`), and the stage's output is the pooled activation.
        case convolution(dk_conv_shape, weight: [Float], bias: [Float]?, pooled: Bool)
        case pooling(dk_pool_shape, average: Bool)
        /// A 3×3 convolution and its 2×2 max-pooling by Winograd's F(2×2, 3×3)
        /// (`dk_conv2d_maxpool2_winograd_nhwc`), its weights transformed once by `dk_winograd_pack`.
        case winogradMaxPool(dk_conv_shape, weight: [Float], bias: [Float]?)
    }

    struct Stage {
        var operation: Operation
        var relu = false
    }

    /// `activations[0]` is the input image; stage `k` reads `activations[k]` and writes `activations[k + 1]`.
    private(set) var activations: [Activation]
    private(set) var stages: [Stage] = []
    /// Where each activation starts in one image's scratch (the last, the output, is not in it).
    private var offsets: [Int] = []
    /// Floats of scratch one image needs (every activation but the output).
    private(set) var scratchSize = 0

    var inputSize: Int { activations[0].values }
    var outputSize: Int { activations[activations.count - 1].values }
    /// The output's shape [C, H, W] (the module's order; the stack writes it as [H, W, C]).
    var outputShape: [Int] { let a = activations[activations.count - 1]; return [a.channels, a.height, a.width] }
    var isEmpty: Bool { stages.isEmpty }

    /// An empty stack for images of `shape` [C, H, W]; nil for any other rank or a non-positive size.
    init?(imageShape shape: [Int]) {
        guard shape.count == 3, shape.allSatisfy({ $0 > 0 }) else { return nil }
        activations = [Activation(channels: shape[0], height: shape[1], width: shape[2])]
    }

    private var last: Activation { activations[activations.count - 1] }

    /// Appends `conv`; false when the plan does not cover it (groups) or the image is too small.
    mutating func append(_ conv: Conv2d) -> Bool {
        let w = conv.weight, c = conv.config, input = last
        guard c.groups == 1, w.rank == 4, w.shape[1] == input.channels,
              c.stride.0 > 0, c.stride.1 > 0, c.dilation.0 > 0, c.dilation.1 > 0, c.padding.0 >= 0, c.padding.1 >= 0 else { return false }
        let (outs, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        func extent(_ n: Int, _ k: Int, _ s: Int, _ p: Int, _ d: Int) -> Int {
            let span = n + 2 * p - d * (k - 1) - 1
            return span < 0 ? 0 : span / s + 1
        }
        let p = extent(input.height, kh, c.stride.0, c.padding.0, c.dilation.0)
        let q = extent(input.width, kw, c.stride.1, c.padding.1, c.dilation.1)
        guard p > 0, q > 0 else { return false }
        activations[activations.count - 1].padH = c.padding.0
        activations[activations.count - 1].padW = c.padding.1
        let padded = (outs + 15) / 16 * 16, cin = input.channels
        var packed = [Float](repeating: 0, count: kh * kw * cin * padded)
        let source = w.data
        for o in 0..<outs { for ci in 0..<cin { for ky in 0..<kh { for kx in 0..<kw {
            packed[((ky * kw + kx) * cin + ci) * padded + o] = source[((o * cin + ci) * kh + ky) * kw + kx]
        } } } }
        let bias = conv.bias.map { b in (0..<padded).map { $0 < outs ? b.data[$0] : 0 } }
        let output = Activation(channels: outs, height: p, width: q)
        let shape = dk_conv_shape(channels: cin, in_row_stride: last.rowStride, kernel_h: kh, kernel_w: kw,
                                  stride_h: c.stride.0, stride_w: c.stride.1, dilation_h: c.dilation.0, dilation_w: c.dilation.1,
                                  out_channels: outs, padded_out: padded, out_h: p, out_w: q, out_row_stride: output.rowStride)
        stages.append(Stage(operation: .convolution(shape, weight: packed, bias: bias, pooled: false)))
        activations.append(output)
        return true
    }

    /// Folds `norm` (running statistics) into the convolution just appended; false when the last
    /// stage is not a convolution without ReLU or pooling, or the channels differ.
    mutating func fold(_ norm: BatchNorm) -> Bool {
        guard let k = stages.indices.last, !stages[k].relu, case .convolution(let shape, var weight, let bias, false) = stages[k].operation,
              norm.weight.count == shape.out_channels else { return false }
        let padded = shape.padded_out
        var newBias = bias ?? [Float](repeating: 0, count: padded)
        for o in 0..<shape.out_channels {
            let scale = norm.weight.data[o] / (norm.runningVar.data[o] + norm.epsilon).squareRoot()
            for row in 0..<(weight.count / padded) { weight[row * padded + o] *= scale }
            newBias[o] = (newBias[o] - norm.runningMean.data[o]) * scale + norm.bias.data[o]
        }
        stages[k].operation = .convolution(shape, weight: weight, bias: newBias, pooled: false)
        return true
    }

    /// Appends a pooling of `config` (average or max); false when the window does not fit.
    mutating func appendPool(_ config: Pool2dConfig, average: Bool) -> Bool {
        let input = last, (kh, kw) = config.kernel, (sh, sw) = config.stride, (ph, pw) = config.padding
        guard kh > 0, kw > 0, sh > 0, sw > 0, ph >= 0, pw >= 0, 2 * ph <= kh, 2 * pw <= kw else { return false }
        let spanH = input.height + 2 * ph - kh, spanW = input.width + 2 * pw - kw
        guard spanH >= 0, spanW >= 0 else { return false }
        let output = Activation(channels: input.channels, height: spanH / sh + 1, width: spanW / sw + 1)
        // A 2×2 max-pooling runs inside the convolution before it, which pools in registers: a
        // grayscale first layer's on every vector CPU, others' where the CPU has the kernel
        // (`dk_conv2d_maxpool2_nhwc_is_fused`). Measured (thread CPU time per image): LeNet-5's
        // first convolution and pooling 3.0 µs against 3.9 µs apart, cnn-tiny's 2.1 µs against 3.2 µs.
        if !average, (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0), let k = stages.indices.last,
           case .convolution(let shape, let weight, let bias, false) = stages[k].operation,
           shape.channels == 1 ? shape.stride_w == 1 && shape.out_channels <= 8
                               : withUnsafePointer(to: shape, dk_conv2d_maxpool2_nhwc_is_fused) == 1 {
            if withUnsafePointer(to: shape, dk_conv2d_maxpool2_winograd_applies) == 1 {
                // cnn-tiny's second layer: 3.6 µs against 4.8 µs direct (conv_winograd.c).
                var transformed = [Float](repeating: 0, count: withUnsafePointer(to: shape, dk_winograd_weight_count))
                withUnsafePointer(to: shape) { dk_winograd_pack($0, weight, &transformed) }
                stages[k].operation = .winogradMaxPool(shape, weight: transformed, bias: bias)
            } else {
                stages[k].operation = .convolution(shape, weight: weight, bias: bias, pooled: true)
            }
            activations[activations.count - 1] = output
            return true
        }
        let shape = dk_pool_shape(channels: input.channels, in_h: input.height, in_w: input.width, in_row_stride: input.rowStride,
                                  kernel_h: kh, kernel_w: kw, stride_h: sh, stride_w: sw, pad_h: ph, pad_w: pw,
                                  out_h: output.height, out_w: output.width, out_row_stride: output.rowStride)
        stages.append(Stage(operation: .pooling(shape, average: average)))
        activations.append(output)
        return true
    }

    /// Applies ReLU to the last stage's output as it is stored; false with no stage yet.
    mutating func appendReLU() -> Bool {
        guard !stages.isEmpty else { return false }
        stages[stages.count - 1].relu = true
        return true
    }

    /// Fixes the buffers' layout once every stage is in: each convolution's input row stride
    /// includes the border its padding asked for (set when the convolution was appended, after
    /// the producer's own shape was written).
    mutating func finish() {
        for k in stages.indices {
            let input = activations[k], output = activations[k + 1]
            switch stages[k].operation {
            case .convolution(var shape, let weight, let bias, let pooled):
                shape.in_row_stride = input.rowStride
                shape.out_row_stride = output.rowStride  // the pooled rows when pooled
                stages[k].operation = .convolution(shape, weight: weight, bias: bias, pooled: pooled)
            case .pooling(var shape, let average):
                shape.in_row_stride = input.rowStride
                shape.out_row_stride = output.rowStride
                stages[k].operation = .pooling(shape, average: average)
            case .winogradMaxPool(var shape, let weight, let bias):
                shape.in_row_stride = input.rowStride
                shape.out_row_stride = output.rowStride
                stages[k].operation = .winogradMaxPool(shape, weight: weight, bias: bias)
            }
        }
        offsets = []
        scratchSize = 0
        for a in activations.dropLast() { offsets.append(scratchSize); scratchSize += a.count }
    }

    /// One image (`inputSize` values, [C, H, W] as the module takes it, each first standardised
    /// as `(x - shift) * scale` when given) through every stage, into `output` (`outputSize`
    /// values, [H, W, C]). `scratch` holds `scratchSize` floats whose borders are zero (they are
    /// never written).
    func run(_ image: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>, into output: UnsafeMutablePointer<Float>,
             shift: [Float]? = nil, scale: [Float]? = nil) {
        let input = activations[0], plane = input.height * input.width, channels = input.channels
        let first = scratch + offsets[0] + input.interior
        if let shift, let scale {
            for c in 0..<channels { for y in 0..<input.height {
                let row = first + y * input.rowStride + c, i0 = c * plane + y * input.width
                for x in 0..<input.width { row[x * channels] = (image[i0 + x] - shift[i0 + x]) * scale[i0 + x] }
            } }
        } else if channels == 1 {
            for y in 0..<input.height { (first + y * input.rowStride).update(from: image + y * input.width, count: input.width) }
        } else {
            for c in 0..<channels { for y in 0..<input.height {
                let row = first + y * input.rowStride + c, source = image + c * plane + y * input.width
                for x in 0..<input.width { row[x * channels] = source[x] }
            } }
        }
        for (k, stage) in stages.enumerated() {
            let x = UnsafePointer(scratch + offsets[k])
            let y = k == stages.count - 1 ? output : scratch + offsets[k + 1] + activations[k + 1].interior
            switch stage.operation {
            case .convolution(var shape, let weight, let bias, let pooled):
                // `x` is the border's corner: the kernel reads the padding from the buffer.
                let convolve = pooled ? dk_conv2d_maxpool2_nhwc : dk_conv2d_nhwc
                weight.withUnsafeBufferPointer { w in
                    if let bias {
                        bias.withUnsafeBufferPointer { b in convolve(&shape, x, w.baseAddress!, b.baseAddress!, y, stage.relu ? 1 : 0) }
                    } else {
                        convolve(&shape, x, w.baseAddress!, nil, y, stage.relu ? 1 : 0)
                    }
                }
            case .winogradMaxPool(var shape, let weight, let bias):
                // Cannot fail: the plan checked `dk_conv2d_maxpool2_winograd_applies` on this CPU.
                _ = weight.withUnsafeBufferPointer { u in
                    (bias ?? []).withUnsafeBufferPointer { b in
                        dk_conv2d_maxpool2_winograd_nhwc(&shape, x, u.baseAddress!, bias == nil ? nil : b.baseAddress!, y, stage.relu ? 1 : 0)
                    }
                }
            case .pooling(var shape, let average):
                dk_pool2d_nhwc(&shape, x + activations[k].interior, y, average ? 1 : 0, stage.relu ? 1 : 0)
            }
        }
    }

    /// Column `j` of a weight that reads the module's flattened [C, H, W] features, for each
    /// position of the stack's [H, W, C] output: `permutation[nhwc] = nchw`.
    var flattenPermutation: [Int] {
        let a = last
        var permutation = [Int](repeating: 0, count: a.values)
        for y in 0..<a.height { for x in 0..<a.width { for c in 0..<a.channels {
            permutation[(y * a.width + x) * a.channels + c] = (c * a.height + y) * a.width + x
        } } }
        return permutation
    }
}

extension ConvStack {
    /// The stack of `model`'s layers up to its first `Linear`, and those remaining layers (which
    /// the caller plans as a `LinearChain`); nil when a layer is outside the plan, a feature tap
    /// is installed, or the shapes do not chain. An empty stack (no spatial layer) is nil too:
    /// such a model is an MLP.
    static func split(_ model: Module, imageShape: [Int]) -> (stack: ConvStack, rest: [Module])? {
        var layers: [Module] = []
        func flatten(_ m: Module) -> Bool {
            guard m.tap == nil else { return false }
            if let s = m as? Sequential { return s.layers.allSatisfy(flatten) }
            layers.append(m)
            return true
        }
        guard flatten(model), var stack = ConvStack(imageShape: imageShape) else { return nil }
        var index = 0
        scan: while index < layers.count {
            switch layers[index] {
            case let conv as Conv2d: guard stack.append(conv) else { return nil }
            case let norm as BatchNorm2d: guard stack.fold(norm) else { return nil }
            case is ReLU: guard stack.appendReLU() else { return nil }
            case let pool as MaxPool2d: guard stack.appendPool(pool.config, average: false) else { return nil }
            case let pool as AvgPool2d: guard stack.appendPool(pool.config, average: true) else { return nil }
            case is GlobalAvgPool2d:
                let a = stack.last
                guard stack.appendPool(Pool2dConfig(kernel: (a.height, a.width)), average: true) else { return nil }
                index += 1
                break scan  // [N, C]: what follows is the fully connected part
            case is Dropout: break
            case is Flatten:
                index += 1
                break scan
            default: return nil
            }
            index += 1
        }
        guard !stack.isEmpty else { return nil }
        stack.finish()
        return (stack, Array(layers[index...]))
    }
}
