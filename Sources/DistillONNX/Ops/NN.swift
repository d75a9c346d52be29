import CKernels
import DistillTensor
import Foundation

// Neural-network operators: convolution and pooling (1-D and 2-D; pooling 3-D too), matrix
// products, normalisations, softmax and dropout. Convolutions and products run on the
// engine's BLAS paths; the rest are direct loops (inference only, no gradients).

/// Kernel, stride, dilation and padding of a windowed operator along each spatial axis.
struct WindowGeometry {
    var kernel: [Int], strides: [Int], dilations: [Int], padsBegin: [Int], padsEnd: [Int], output: [Int]

    /// Reads `kernel_shape`/`strides`/`dilations`/`pads`/`auto_pad` (and `ceil_mode` for pooling)
    /// for an input with spatial extents `input`.
    init(_ c: OpContext, input: [Int], kernel: [Int], ceilMode: Bool = false, dilations allowDilations: Bool = true) throws {
        let r = input.count
        let a = c.attributes
        guard kernel.count == r, kernel.allSatisfy({ $0 >= 1 }) else { throw ONNXError("kernel_shape \(describeShape(kernel)) must be \(r) positive extents") }
        _ = try checkedSizes(kernel, "kernel_shape")
        let strides = try checkedSizes(try a.ints("strides") ?? [Int](repeating: 1, count: r), "strides")
        let dilations = try checkedSizes(allowDilations ? try a.ints("dilations") ?? [Int](repeating: 1, count: r) : [Int](repeating: 1, count: r), "dilations")
        guard strides.count == r, strides.allSatisfy({ $0 >= 1 }) else { throw ONNXError("strides \(describeShape(strides)) must be \(r) positive integers") }
        guard dilations.count == r, dilations.allSatisfy({ $0 >= 1 }) else { throw ONNXError("dilations \(describeShape(dilations)) must be \(r) positive integers") }
        let span = (0..<r).map { (kernel[$0] - 1) * dilations[$0] + 1 }
        var begin = [Int](repeating: 0, count: r), end = begin, output: [Int] = []
        let autoPad = try a.string("auto_pad", "NOTSET")
        switch autoPad {
        case "NOTSET", "":
            let pads = try checkedSizes(try a.ints("pads") ?? [Int](repeating: 0, count: 2 * r), "pads")
            guard pads.count == 2 * r, pads.allSatisfy({ $0 >= 0 }) else { throw ONNXError("pads \(describeShape(pads)) must be \(2 * r) non-negative integers") }
            begin = Array(pads[..<r]); end = Array(pads[r...])
            for i in 0..<r {
                let room = input[i] + begin[i] + end[i] - span[i]
                guard room >= 0 else { throw ONNXError("kernel \(kernel) (dilations \(dilations)) does not fit the padded input \(input)") }
                if !ceilMode { output.append(room / strides[i] + 1); continue }
                var n = (room + strides[i] - 1) / strides[i] + 1
                if (n - 1) * strides[i] >= input[i] + begin[i] { n -= 1 }  // the last window starts inside
                output.append(n)
            }
        case "VALID":
            for i in 0..<r {
                guard input[i] >= span[i] else { throw ONNXError("kernel \(kernel) does not fit the input \(input)") }
                output.append((input[i] - span[i]) / strides[i] + 1)
            }
        case "SAME_UPPER", "SAME_LOWER":
            for i in 0..<r {
                output.append((input[i] + strides[i] - 1) / strides[i])
                let total = Swift.max(0, (output[i] - 1) * strides[i] + span[i] - input[i])
                let small = total / 2
                begin[i] = autoPad == "SAME_UPPER" ? small : total - small
                end[i] = total - begin[i]
            }
        default:
            throw ONNXError("auto_pad '\(autoPad)' must be NOTSET, VALID, SAME_UPPER or SAME_LOWER")
        }
        self.kernel = kernel; self.strides = strides; self.dilations = dilations
        self.padsBegin = begin; self.padsEnd = end; self.output = output
    }

    /// Window taps that can land inside an input of spatial extents `input`: the work per output
    /// element of a pooling or a convolution (a window wider than the input only reads the input).
    func tapsPerOutput(input: [Int]) -> Int? {
        CheckedSize.product(zip(kernel, input).map { k, n in Swift.max(1, Swift.min(k, n)) })
    }
}

extension ONNXOps {
    // MARK: Convolution

    /// Conv: X [N, C, (H,) W], W [M, C/group, (kH,) kW], B [M] → [N, M, (P,) Q]. 1-D convolutions
    /// run as 2-D ones of height 1; asymmetric padding (SAME_UPPER with even kernels) pads the
    /// input explicitly.
    static func Conv(_ c: OpContext) throws -> [ONNXValue] { try convolution(c, activation: nil) }

    /// A Conv with what the graph optimiser folded into it (`step`, see `PlannedStep`): the Relu,
    /// Clip, Sigmoid, SiLU or HardSwish after it applied in its output pass; a Mul on its input
    /// (input 3, squeeze-excitation's gate); an Add on its output (input 4, a residual
    /// connection), added before the activation. Depthwise convolutions (group == C == M,
    /// MobileNet's and EfficientNet's) run on their own kernel, 1×1 ones as one GEMM per image,
    /// the others on the engine's conv2d.
    /// The gate: when one factor is [N, C, 1, 1] against the other's [N, C, H, W], a 1×1 Conv
    /// scales its weight per image instead (others multiply the input first); otherwise the Mul
    /// runs as written, then the Conv. The residual: when it has the Conv's output shape, a 1×1
    /// Conv's GEMM accumulates onto it (others add it in place); otherwise the Add runs as written
    /// (broadcasting), then the activation.
    static func fusedConvolution(_ c: OpContext, step: PlannedStep) throws -> [ONNXValue] {
        var x = try c.input(0)
        var gate: Tensor?
        if let mul = step.gate {
            let a = x, b = try c.input(3)
            func perImage(_ x: ONNXValue, _ g: ONNXValue) -> (Tensor, Tensor)? {
                guard case .float(let xt) = x, case .float(let gt) = g, xt.rank == 4, gt.shape == [xt.shape[0], xt.shape[1], 1, 1] else { return nil }
                return (xt, gt)
            }
            if let (xt, g) = perImage(a, b) ?? perImage(b, a) { x = .float(xt); gate = g } else { x = try Mul(OpContext(node: mul, inputs: [a, b]))[0] }
        }
        let conv = OpContext(node: c.node, inputs: [x] + Array(c.inputs[1..<Swift.min(3, c.inputs.count)]))
        guard let add = step.residual else { return try convolution(conv, activation: step.activation, gate: gate) }
        let r = try c.input(4)
        let (y, added) = try convolve(conv, activation: step.activation, gate: gate, residual: r.floatTensor)
        if added { return [.float(y)] }
        // Broadcasting (or a type error): the Add as written, in its operand order, then the activation.
        let convolved = ONNXValue.float(y)
        let sum = try Add(OpContext(node: add, inputs: add.inputs[0] == c.node.inputs[4] ? [r, convolved] : [convolved, r]))
        guard let activation = step.activation, case .float(let t) = sum[0] else { return sum }
        // Add gives a tensor of its own (never one of its operands): safe to activate in place.
        activation.apply(t.data, count: t.count)
        return [.float(t)]
    }

    /// `gate`, when given, multiplies the input per image and channel ([N, C, 1, 1]) first: folded
    /// into the weight for a 1×1 Conv, applied to the input otherwise.
    static func convolution(_ c: OpContext, activation: FusedActivation?, gate: Tensor? = nil) throws -> [ONNXValue] {
        [.float(try convolve(c, activation: activation, gate: gate, residual: nil).output)]
    }

    /// The convolution; `residual`, when it has the output's shape, is added before the
    /// activation (`added` says whether it was; when not, the activation is not applied either,
    /// for the caller to add the residual its own way first).
    static func convolve(_ c: OpContext, activation: FusedActivation?, gate: Tensor?, residual requested: Tensor?) throws -> (output: Tensor, added: Bool) {
        var x = try c.float(0)
        let w = try c.float(1), b = try c.optionalFloat(2)
        guard x.rank >= 3, x.rank == w.rank else { throw ONNXError("X \(x.shape) and W \(w.shape) must both be [N, C, spatial...]") }
        let r = x.rank - 2
        guard r <= 3 else { throw ONNXError("convolution over \(r) spatial axes is not supported (1-D to 3-D are)") }
        let group = try c.attributes.int("group", 1, in: 1...Int.max)!
        let (n, ch, m) = (x.shape[0], x.shape[1], w.shape[0])
        guard ch % group == 0, m % group == 0, CheckedSize.multiply(w.shape[1], group) == ch else {
            throw ONNXError("X \(x.shape), W \(w.shape) and group \(group) do not fit: W must be [M, C/group, ...] with group dividing C and M")
        }
        if let b { guard b.shape == [m] else { throw ONNXError("B \(b.shape) must be [\(m)]") } }
        let kernel = Array(w.shape[2...])
        if let k = try c.attributes.ints("kernel_shape"), k != kernel { throw ONNXError("kernel_shape \(describeShape(k)) disagrees with W \(w.shape)") }
        let g = try WindowGeometry(c, input: Array(x.shape[2...]), kernel: kernel)
        guard g.output.allSatisfy({ $0 > 0 }) else { throw ONNXError("the output would be empty (input \(x.shape), kernel \(kernel))") }
        try checkedShape([n, m] + g.output, elementBytes: 4)
        // Multiply-adds, and the unfolded input (im2col) of one batch chunk: C·k extents × output extents.
        let outPlane = g.output.reduce(1, *)
        let perOutput = CheckedSize.multiply(ch / group, w.shape[2...].reduce(1, *))
        try checkWork(perOutput.flatMap { CheckedSize.product([n, m, outPlane, $0]) }, "the convolution", limit: r == 3 ? Limits.maxLoopSteps : Limits.maxMultiplyAdds)
        let chunkImages = (n + 7) / 8  // conv2d unfolds its batch in eight chunks
        try checkedShape([chunkImages, ch, w.shape[2...].reduce(1, *), outPlane], "the unfolded input", elementBytes: 4)
        // The residual is added here only when it has the output's shape; otherwise the caller
        // adds it (broadcasting) and applies the activation after.
        let added = requested?.shape == [n, m] + g.output
        let residual = added ? requested : nil
        let activation = requested == nil || added ? activation : nil
        if n == 0 { return (Tensor(uninitializedShape: [0, m] + g.output), added) }
        let pointwise = group == 1 && r == 2 && kernel == [1, 1] && g.strides == [1, 1] && g.padsBegin == [0, 0] && g.padsEnd == [0, 0]
        if let gate, !pointwise { x = try FloatArithmetic.mul.fast(x, gate) ?? floatBinary(x, gate, *) }
        if pointwise { return (pointwiseConv2d(x, w, b, gate: gate, residual: residual, activation: activation), added) }
        let y: Tensor
        var activated = false
        if r == 3 {
            y = directConv3d(x, w, b, g, group: group)
        } else if group == ch, group == m, r == 2, let window = windowShape(x, g, kernel) {
            y = depthwiseConv2d(x, w, b, window, activation: residual == nil ? activation : nil)
            activated = residual == nil
        } else {
            // As 2-D: prepend a height of 1 for 1-D convolutions.
            func as2d(_ v: [Int], _ fill: Int) -> [Int] { r == 1 ? [fill] + v : v }
            var input = r == 1 ? Tensor(shape: [n, ch, 1, x.shape[2]], storage: x.storage) : x
            let weight = r == 1 ? Tensor(shape: [m, w.shape[1], 1, w.shape[2]], storage: w.storage) : w
            var begin = as2d(g.padsBegin, 0), end = as2d(g.padsEnd, 0)
            if begin != end {
                try checkedShape((0..<4).map { i in input.shape[i] + (i < 2 ? 0 : begin[i - 2] + end[i - 2]) }, "the padded input", elementBytes: 4)
                input = padFloat(input, begin: [0, 0] + begin, end: [0, 0] + end, mode: .constant(0))
                begin = [0, 0]; end = [0, 0]
            }
            let s = as2d(g.strides, 1), d = as2d(g.dilations, 1)
            let config = Conv2dConfig(stride: (s[0], s[1]), padding: (begin[0], begin[1]), dilation: (d[0], d[1]), groups: group)
            let out = conv2d(input, weight: weight, bias: b, config: config)
            y = Tensor(shape: [n, m] + g.output, storage: out.storage)
        }
        if !activated { addAndActivate(y, residual, activation) }
        return (y, added)
    }

    /// y ← activation(y + residual) in place (either part optional), split across the workers.
    static func addAndActivate(_ y: Tensor, _ residual: Tensor?, _ activation: FusedActivation?) {
        guard residual != nil || activation != nil else { return }
        let ys = SharedPointer(y.data), rs = residual.map { SharedPointer($0.data) }
        let kind = activation?.kind ?? 0, lo = activation?.lo ?? 0, hi = activation?.hi ?? 0
        Parallel.forChunks(y.count, costPerItem: 4) { range in
            let out = ys.p + range.lowerBound
            if let rs { let src = rs.p + range.lowerBound; for i in 0..<range.count { out[i] += src[i] } }
            if kind != 0 { dk_activation_inplace(out, range.count, kind, lo, hi) }
        }
    }

    /// A 1×1 convolution with stride 1 and no padding, W [M, C] · X [C, H·W] per image, images
    /// split across the workers. On CPUs with AVX-512 or AVX2 + FMA (unless `ONNXModel.pointwiseKernel`
    /// is 0), each image runs on `dk_pointwise_conv_level` (Sources/CKernels/conv_pointwise.c): tiles of
    /// output channels × pixels in registers, bias, residual and Relu/Clip applied before the
    /// one store. Otherwise GEMMs straight into the output (no unfolding, no reordering) over
    /// blocks of columns, each block's bias preloaded and its activation applied while it is in
    /// cache.
    /// With `gate` [N, C, 1, 1], image n's weight columns are scaled by gate[n]: W·(x ⊙ g) = (W ⊙ g)·x.
    /// With `residual` (the output's shape), each image's output starts as residual + bias and the
    /// GEMM accumulates onto it: a residual Add with no pass of its own.
    static func pointwiseConv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, gate: Tensor? = nil, residual: Tensor? = nil,
                                activation: FusedActivation?) -> Tensor {
        let (n, ch, m) = (x.shape[0], x.shape[1], w.shape[0])
        let area = x.shape[2] * x.shape[3]
        let out = Tensor(uninitializedShape: [n, m, x.shape[2], x.shape[3]])
        let xs = SharedPointer(x.data), ws = SharedPointer(w.data), ys = SharedPointer(out.data)
        let bs = b.map { SharedPointer($0.data) }, gs = gate.map { SharedPointer($0.data) }
        let rs = residual.map { SharedPointer($0.data) }
        let level = ONNXModel.pointwiseKernel
        let kind = activation?.kind ?? 0, lo = activation?.lo ?? 0, hi = activation?.hi ?? 0
        // An image a chunk, taken by the threads as they come free (see `invertedResidual`).
        Parallel.forEachChunk(n, chunks: Swift.min(n, 1024)) { _, images in
            let scaled = gs == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: m * ch)
            defer { scaled?.deallocate() }
            for image in images {
                let y = ys.p + image * m * area
                var weight = UnsafePointer(ws.p)
                if let gs, let scaled {
                    let g = gs.p + image * ch
                    for o in 0..<m { for k in 0..<ch { scaled[o * ch + k] = ws.p[o * ch + k] * g[k] } }
                    weight = UnsafePointer(scaled)
                }
                // -1: the CPU lacks the level, or the packing buffer could not be allocated: BLAS then.
                if level != 0, dk_pointwise_conv_level(level, m, ch, area, weight, xs.p + image * ch * area, bs?.p, rs.map { $0.p + image * m * area },
                                                   y, kind, lo, hi) == 0 {
                    continue
                }
                // Column blocks of about 256 KiB of output: each block's bias or residual is
                // loaded, multiplied onto and activated while it is still in this core's cache.
                let block = Swift.min(area, Swift.max(64, (1 << 16) / Swift.max(m, 1) / 16 * 16))
                for start in stride(from: 0, to: area, by: block) {
                    let width = Swift.min(block, area - start)
                    let yb = y + start
                    if let rs {
                        let r = rs.p + image * m * area + start
                        for o in 0..<m {
                            let bias = bs?.p[o] ?? 0, dst = yb + o * area, src = r + o * area
                            for i in 0..<width { dst[i] = src[i] + bias }
                        }
                    } else if let bs { for o in 0..<m { (yb + o * area).update(repeating: bs.p[o], count: width) } }
                    BLAS.sgemm(m: m, n: width, k: ch, a: weight, lda: ch, b: xs.p + image * ch * area + start, ldb: area,
                               beta: bs == nil && rs == nil ? 0 : 1, c: yb, ldc: area, split: .none)
                    if let activation {
                        for o in 0..<m { dk_activation_inplace(yb + o * area, width, activation.kind, activation.lo, activation.hi) }
                    }
                }
            }
        }
        return out
    }

    /// Depthwise 2-D convolution (each channel its own filter) on the C kernel, the planes split
    /// across the worker threads, the activation applied to each output plane while in cache.
    static func depthwiseConv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ window: (shape: dk_window_shape, scratch: Int),
                                activation: FusedActivation?) -> Tensor {
        let s = window.shape
        let out = Tensor(uninitializedShape: [x.shape[0], x.shape[1], s.out_h, s.out_w])
        let xs = SharedPointer(x.data), ws = SharedPointer(w.data), ys = SharedPointer(out.data)
        let bs = b.map { SharedPointer($0.data) }
        let kind = activation?.kind ?? 0, lo = activation?.lo ?? 0, hi = activation?.hi ?? 0
        Parallel.forChunks(x.shape[0] * x.shape[1], costPerItem: s.out_h * s.out_w * s.kernel_h * s.kernel_w) { range in
            var shape = s
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: window.scratch)
            defer { buffer.deallocate() }
            dk_depthwise_conv2d(&shape, xs.p, ws.p, bs?.p, ys.p, range.lowerBound, range.upperBound, kind, lo, hi, buffer)
        }
        return out
    }

    /// Most scratch floats (one padded input plane per thread) the windowed C kernels may use:
    /// a hostile stride or dilation can make the padded span far larger than the input.
    static let maxWindowScratch = 1 << 24

    /// The C kernels' description of a 2-D window over x [N, C, H, W] (`kernel` its extents) and
    /// the scratch floats it needs; nil when the window has more taps than the kernels take or
    /// the padded plane would be too large (the general paths then run).
    static func windowShape(_ x: Tensor, _ g: WindowGeometry, _ kernel: [Int]) -> (shape: dk_window_shape, scratch: Int)? {
        guard x.rank == 4, kernel.count == 2, g.output.count == 2, kernel[0] * kernel[1] <= Int(DK_WINDOW_MAX_TAPS) else { return nil }
        func span(_ axis: Int) -> Int? {
            guard let steps = CheckedSize.multiply(g.output[axis] - 1, g.strides[axis]),
                  let reach = CheckedSize.multiply(kernel[axis] - 1, g.dilations[axis]) else { return nil }
            return CheckedSize.add(steps, reach).flatMap { CheckedSize.add($0, 1) }
        }
        guard let rows = span(0), let columns = span(1),
              let rowStride = CheckedSize.multiply((columns + g.strides[1] - 1) / g.strides[1], g.strides[1]),
              let scratch = CheckedSize.multiply(rows, rowStride), scratch <= maxWindowScratch else { return nil }
        let shape = dk_window_shape(channels: x.shape[1], height: x.shape[2], width: x.shape[3], kernel_h: kernel[0], kernel_w: kernel[1],
                                    stride_h: g.strides[0], stride_w: g.strides[1], pad_top: g.padsBegin[0], pad_left: g.padsBegin[1],
                                    dilation_h: g.dilations[0], dilation_w: g.dilations[1], out_h: g.output[0], out_w: g.output[1])
        return (shape, scratch)
    }

    /// Direct convolution over three spatial axes (no BLAS path; 3-D models are rare).
    static func directConv3d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ g: WindowGeometry, group: Int) -> Tensor {
        let (n, ch, m) = (x.shape[0], x.shape[1], w.shape[0])
        let ins = Array(x.shape[2...]), k = Array(w.shape[2...]), outs = g.output
        let cg = ch / group, mg = m / group
        let out = Tensor(uninitializedShape: [n, m] + outs)
        let inPlane = ins.reduce(1, *), outPlane = outs.reduce(1, *), kVolume = k.reduce(1, *)
        for i in 0..<n { for oc in 0..<m {
            let grp = oc / mg
            let dst = out.data + (i * m + oc) * outPlane
            var at = 0
            for od in 0..<outs[0] { for oh in 0..<outs[1] { for ow in 0..<outs[2] {
                var total: Float = b?.data[oc] ?? 0
                for cc in 0..<cg {
                    let src = x.data + (i * ch + grp * cg + cc) * inPlane
                    let ker = w.data + (oc * cg + cc) * kVolume
                    for a in 0..<k[0] {
                        let dd = od * g.strides[0] - g.padsBegin[0] + a * g.dilations[0]
                        if dd < 0 || dd >= ins[0] { continue }
                        for bb in 0..<k[1] {
                            let hh = oh * g.strides[1] - g.padsBegin[1] + bb * g.dilations[1]
                            if hh < 0 || hh >= ins[1] { continue }
                            for cw in 0..<k[2] {
                                let ww = ow * g.strides[2] - g.padsBegin[2] + cw * g.dilations[2]
                                if ww < 0 || ww >= ins[2] { continue }
                                total += src[(dd * ins[1] + hh) * ins[2] + ww] * ker[(a * k[1] + bb) * k[2] + cw]
                            }
                        }
                    }
                }
                dst[at] = total
                at += 1
            } } }
        } }
        return out
    }

    /// ConvTranspose (the adjoint of Conv): X [N, C, spatial…], W [C, M/group, k…], B [M]. Output
    /// extents from `output_shape` or stride·(in−1) + output_padding + (k−1)·dilation + 1 − pads.
    static func ConvTranspose(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0), w = try c.float(1), b = try c.optionalFloat(2)
        guard x.rank >= 3, x.rank <= 5, x.rank == w.rank else { throw ONNXError("X \(x.shape) and W \(w.shape) must both be [N, C, spatial...] with 1 to 3 spatial axes") }
        let r = x.rank - 2
        let a = c.attributes
        let group = try a.int("group", 1, in: 1...Int.max)!
        let (n, ch) = (x.shape[0], x.shape[1])
        guard w.shape[0] == ch, ch % group == 0 else { throw ONNXError("W \(w.shape) must be [C=\(ch), M/group, ...] with group \(group) dividing C") }
        let mg = w.shape[1], m = try checkedProduct(mg, group, what: "output channels (M/group × group)"), cg = ch / group
        if let b { guard b.shape == [m] else { throw ONNXError("B \(b.shape) must be [\(m)]") } }
        let ins = Array(x.shape[2...]), kernel = try checkedSizes(Array(w.shape[2...]), "W's kernel extents")
        let sizeRange = 1...(1 << 31 - 1)
        let strides = try a.ints("strides", in: sizeRange) ?? [Int](repeating: 1, count: r)
        let dilations = try a.ints("dilations", in: sizeRange) ?? [Int](repeating: 1, count: r)
        let outputPadding = try a.ints("output_padding", in: 0...(1 << 31 - 1)) ?? [Int](repeating: 0, count: r)
        guard strides.count == r, dilations.count == r, outputPadding.count == r else { throw ONNXError("strides, dilations and output_padding need \(r) values") }
        // Extents beyond 2^31 are refused so that stride·(in − 1) + span stays far from overflow.
        guard ins.allSatisfy({ $0 < 1 << 31 }) else { throw ONNXError("X \(x.shape) has a spatial extent beyond 2^31") }
        let span = (0..<r).map { (kernel[$0] - 1) * dilations[$0] + 1 }
        let autoPad = try a.string("auto_pad", "NOTSET")
        var begin = [Int](repeating: 0, count: r), end = begin
        var outs: [Int]
        if let shape = try a.ints("output_shape") {
            outs = try checkedSizes(Array(shape.suffix(r)), "output_shape")
            guard outs.count == r else { throw ONNXError("output_shape needs \(r) extents") }
            if autoPad != "SAME_UPPER" && autoPad != "SAME_LOWER" {  // explicit (or no) pads; the output is cut or zero-filled to the shape
                if let pads = try a.ints("pads").map({ try checkedSizes($0, "pads") }), pads.count == 2 * r { begin = Array(pads[..<r]); end = Array(pads[r...]) }
            } else { for i in 0..<r {
                let total = strides[i] * (ins[i] - 1) + outputPadding[i] + span[i] - outs[i]
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                end[i] = total - begin[i]
            } }
        } else if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            outs = (0..<r).map { ins[$0] * strides[$0] }
            for i in 0..<r {
                let total = Swift.max(0, strides[i] * (ins[i] - 1) + outputPadding[i] + span[i] - outs[i])
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                end[i] = total - begin[i]
            }
        } else {
            if autoPad == "NOTSET", let pads = try a.ints("pads").map({ try checkedSizes($0, "pads") }) {
                guard pads.count == 2 * r else { throw ONNXError("pads \(pads) must hold \(2 * r) values") }
                begin = Array(pads[..<r]); end = Array(pads[r...])
            }
            outs = (0..<r).map { strides[$0] * (ins[$0] - 1) + outputPadding[$0] + span[$0] - begin[$0] - end[$0] }
        }
        guard outs.allSatisfy({ $0 > 0 }) else { throw ONNXError("the output would be empty (output extents \(outs))") }
        try checkedShape([n, m] + outs, elementBytes: 4)
        try checkWork(CheckedSize.product([n, ch, mg] + ins + kernel), "the transposed convolution")
        // As 3-D.
        let lead = 3 - r
        func as3(_ v: [Int], _ fill: Int) -> [Int] { [Int](repeating: fill, count: lead) + v }
        let i3 = as3(ins, 1), o3 = as3(outs, 1), k3 = as3(kernel, 1), s3 = as3(strides, 1), d3 = as3(dilations, 1), p3 = as3(begin, 0)
        let inPlane = i3.reduce(1, *), outPlane = o3.reduce(1, *), kVolume = k3.reduce(1, *)
        let out = Tensor.zeros([n, m] + outs)
        for i in 0..<n { for ic in 0..<ch {
            let grp = ic / cg
            let src = x.data + (i * ch + ic) * inPlane
            for om in 0..<mg {
                let oc = grp * mg + om
                let dst = out.data + (i * m + oc) * outPlane
                let ker = w.data + (ic * mg + om) * kVolume
                for id in 0..<i3[0] { for ih in 0..<i3[1] { for iw in 0..<i3[2] {
                    let v = src[(id * i3[1] + ih) * i3[2] + iw]
                    for kd in 0..<k3[0] {
                        let od = id * s3[0] - p3[0] + kd * d3[0]
                        if od < 0 || od >= o3[0] { continue }
                        for kh in 0..<k3[1] {
                            let oh = ih * s3[1] - p3[1] + kh * d3[1]
                            if oh < 0 || oh >= o3[1] { continue }
                            for kw in 0..<k3[2] {
                                let ow = iw * s3[2] - p3[2] + kw * d3[2]
                                if ow < 0 || ow >= o3[2] { continue }
                                dst[(od * o3[1] + oh) * o3[2] + ow] += v * ker[(kd * k3[1] + kh) * k3[2] + kw]
                            }
                        }
                    }
                } } }
            }
        } }
        if let b { for i in 0..<n { for oc in 0..<m { let d = out.data + (i * m + oc) * outPlane; for j in 0..<outPlane { d[j] += b.data[oc] } } } }
        return [.float(out)]
    }

    // MARK: Pooling

    enum PoolKind { case max, average(includePad: Bool) }

    /// Max or average pooling over 1 to 3 spatial axes, as the ONNX reference computes it
    /// (padding never wins a max; `count_include_pad` decides an average's divisor).
    static func pool(_ c: OpContext, _ kind: PoolKind) throws -> [ONNXValue] {
        let x = try c.float(0)
        guard x.rank >= 3, x.rank <= 5 else { throw ONNXError("X \(x.shape) must be [N, C, spatial...] with 1 to 3 spatial axes") }
        guard let kernel = try c.attributes.ints("kernel_shape") else { throw ONNXError("attribute 'kernel_shape' is required") }
        let isMax: Bool
        if case .max = kind { isMax = true } else { isMax = false }
        let ceil = try c.attributes.int("ceil_mode", 0) == 1
        let g = try WindowGeometry(c, input: Array(x.shape[2...]), kernel: kernel, ceilMode: ceil,
                                   dilations: isMax || c.opset >= 19)
        let outputShape = try checkedShape(Array(x.shape[..<2]) + g.output, elementBytes: 4)
        try checkWork(g.tapsPerOutput(input: Array(x.shape[2...])).flatMap { CheckedSize.product(outputShape + [$0]) }, "the pooling")
        // As 3-D: leading spatial extents of 1.
        let lead = 5 - x.rank
        func as3(_ v: [Int], _ fill: Int) -> [Int] { [Int](repeating: fill, count: lead) + v }
        let includePad: Bool
        if case .average(let p) = kind { includePad = p } else { includePad = false }
        // The engine's kernels (a branch-free 2×2 max-pool among them) cover the common case:
        // 2-D, no dilation, symmetric padding of at most half the kernel, floor-sized output.
        let wantIndices = isMax && c.outputCount > 1 && !c.node.outputs[1].isEmpty
        // 2-D max pooling without indices: the C kernel (padding reads as -infinity, so it never
        // wins; ceil_mode's extra windows start inside the input, so each has a real tap).
        if isMax, !wantIndices, x.rank == 4, outputShape.allSatisfy({ $0 > 0 }), let window = windowShape(x, g, kernel) {
            let out = Tensor(uninitializedShape: outputShape)
            let xs = SharedPointer(x.data), ys = SharedPointer(out.data)
            let s = window.shape
            Parallel.forChunks(outputShape[0] * outputShape[1], costPerItem: s.out_h * s.out_w * s.kernel_h * s.kernel_w) { range in
                var shape = s
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: window.scratch)
                defer { buffer.deallocate() }
                dk_max_pool2d(&shape, xs.p, ys.p, range.lowerBound, range.upperBound, buffer)
            }
            return [.float(out)]
        }
        if x.rank == 4, !wantIndices, g.dilations == [1, 1], g.padsBegin == g.padsEnd,
           g.padsBegin[0] * 2 <= kernel[0], g.padsBegin[1] * 2 <= kernel[1], isMax || includePad || g.padsBegin == [0, 0] {
            let config = Pool2dConfig(kernel: (kernel[0], kernel[1]), stride: (g.strides[0], g.strides[1]), padding: (g.padsBegin[0], g.padsBegin[1]))
            let room = (0..<2).map { i -> Int in x.shape[2 + i] + 2 * g.padsBegin[i] - kernel[i] }
            let fits = (0..<2).allSatisfy { i -> Bool in room[i] >= 0 && room[i] / g.strides[i] + 1 == g.output[i] }
            if fits {
                return [.float(isMax ? x.maxPool2d(config) : x.avgPool2d(config))]
            }
        }
        let ins = as3(Array(x.shape[2...]), 1), outs = as3(g.output, 1), k = as3(kernel, 1)
        let st = as3(g.strides, 1), dl = as3(g.dilations, 1), pb = as3(g.padsBegin, 0), pe = as3(g.padsEnd, 0)
        let planes = x.shape[0] * x.shape[1]
        let inPlane = ins.reduce(1, *), outPlane = outs.reduce(1, *)
        let windowTaps = g.tapsPerOutput(input: Array(x.shape[2...])) ?? 1  // bounded by checkWork above
        let out = Tensor(uninitializedShape: outputShape)
        let storageOrder = try c.attributes.int("storage_order", 0)
        var indices = [Int64](repeating: 0, count: wantIndices ? out.count : 0)
        let src = SharedPointer(x.data), dst = SharedPointer(out.data)
        indices.withUnsafeMutableBufferPointer { idxBuffer in
            let idx = wantIndices ? idxBuffer.baseAddress.map { SharedPointer($0) } : nil
            Parallel.forChunks(planes, costPerItem: outPlane * windowTaps) { range in
                for plane in range {
                    let s = src.p + plane * inPlane, o = dst.p + plane * outPlane
                    var outIndex = 0
                    for od in 0..<outs[0] { for oh in 0..<outs[1] { for ow in 0..<outs[2] {
                        // Taps inside the input (lo..<hi) and inside the padded input (0..<padHi), per axis.
                        let d0 = od * st[0] - pb[0], h0 = oh * st[1] - pb[1], w0 = ow * st[2] - pb[2]
                        let (dLo, dHi, dPad) = taps(d0, k[0], dl[0], ins[0], pe[0])
                        let (hLo, hHi, hPad) = taps(h0, k[1], dl[1], ins[1], pe[1])
                        let (wLo, wHi, wPad) = taps(w0, k[2], dl[2], ins[2], pe[2])
                        var best = -Float.infinity, bestAt = -1, total: Float = 0
                        for i in dLo..<dHi {
                            let rowD = (d0 + i * dl[0]) * ins[1]
                            for j in hLo..<hHi {
                                let row = (rowD + h0 + j * dl[1]) * ins[2] + w0
                                if isMax {
                                    for l in wLo..<wHi {
                                        let at = row + l * dl[2], v = s[at]
                                        if v > best || bestAt < 0 || v.isNaN { best = v; bestAt = at }
                                    }
                                } else {
                                    for l in wLo..<wHi { total += s[row + l * dl[2]] }
                                }
                            }
                        }
                        let counted = (dHi - dLo) * (hHi - hLo) * (wHi - wLo), padded = dPad * hPad * wPad
                        if isMax {
                            o[outIndex] = best
                            if let idx {
                                var flat = bestAt
                                if storageOrder == 1 && bestAt >= 0 {  // column-major within the plane
                                    let hh = (bestAt / ins[2]) % ins[1], ww = bestAt % ins[2]
                                    flat = ww * ins[1] + hh
                                }
                                idx.p[plane * outPlane + outIndex] = Int64(plane * inPlane + flat)
                            }
                        } else {
                            o[outIndex] = total / Float(Swift.max(includePad ? padded : counted, 1))
                        }
                        outIndex += 1
                    } } }
                }
            }
        }
        var results: [ONNXValue] = [.float(out)]
        if wantIndices { results.append(.int(IntTensor(shape: out.shape, values: indices, type: .int64))) }
        return results
    }

    /// For a window starting at `start` with `k` taps `dilation` apart over an axis of extent
    /// `n` padded by `padEnd` at the end: the taps inside the input (lo..<hi) and the number
    /// inside the padded input (windows never start before the leading padding).
    @inline(__always)
    static func taps(_ start: Int, _ k: Int, _ dilation: Int, _ n: Int, _ padEnd: Int) -> (Int, Int, Int) {
        let lo = start < 0 ? Swift.min(k, (-start + dilation - 1) / dilation) : 0
        let hi = Swift.max(lo, Swift.min(k, n - start <= 0 ? 0 : (n - start + dilation - 1) / dilation))
        let padHi = Swift.min(k, n + padEnd - start <= 0 ? 0 : (n + padEnd - start + dilation - 1) / dilation)
        return (lo, hi, padHi)
    }

    static func MaxPool(_ c: OpContext) throws -> [ONNXValue] { try pool(c, .max) }
    static func AveragePool(_ c: OpContext) throws -> [ONNXValue] {
        try pool(c, .average(includePad: try c.attributes.int("count_include_pad", 0) == 1))
    }

    /// Mean (or max) over every spatial axis: [N, C, ...] → [N, C, 1, ...].
    static func globalPool(_ c: OpContext, max: Bool) throws -> [ONNXValue] {
        let x = try c.float(0)
        guard x.rank >= 2 else { throw ONNXError("X \(x.shape) must be [N, C, spatial...]") }
        let planes = x.shape[0] * x.shape[1], area = x.shape[2...].reduce(1, *)
        let out = Tensor(uninitializedShape: Array(x.shape[..<2]) + [Int](repeating: 1, count: x.rank - 2))
        let src = SharedPointer(x.data), dst = SharedPointer(out.data)
        Parallel.forChunks(planes, costPerItem: area) { range in
            for p in range {
                let s = src.p + p * area
                if max {
                    var m = -Float.infinity
                    for i in 0..<area { m = Swift.max(m, s[i]) }
                    dst.p[p] = m
                } else {
                    dst.p[p] = Float(Double(planeSum(s, area)) / Double(Swift.max(area, 1)))
                }
            }
        }
        return [.float(out)]
    }
    /// The sum of `count` floats, in sixteen interleaved partial sums (a loop that vectorises;
    /// one running sum cannot, float addition being ordered).
    static func planeSum(_ s: UnsafePointer<Float>, _ count: Int) -> Float {
        var partial = SIMD16<Float>(repeating: 0)
        var i = 0
        while i + 16 <= count {
            partial += UnsafeRawPointer(s + i).loadUnaligned(as: SIMD16<Float>.self)
            i += 16
        }
        var total = partial.sum()
        while i < count { total += s[i]; i += 1 }
        return total
    }
    static func GlobalAveragePool(_ c: OpContext) throws -> [ONNXValue] { try globalPool(c, max: false) }
    static func GlobalMaxPool(_ c: OpContext) throws -> [ONNXValue] { try globalPool(c, max: true) }

    // MARK: Products

    /// Gemm: Y = alpha · A' · B' + beta · C, A' = transA ? Aᵀ : A (2-D), C broadcast to [M, N].
    static func Gemm(_ c: OpContext) throws -> [ONNXValue] {
        let a = try c.float(0), b = try c.float(1), cc = try c.optionalFloat(2)
        guard a.rank == 2, b.rank == 2 else { throw ONNXError("A \(a.shape) and B \(b.shape) must be matrices") }
        let ta = try c.attributes.int("transA", 0) != 0, tb = try c.attributes.int("transB", 0) != 0
        let alpha = try c.attributes.float("alpha", 1), beta = try c.attributes.float("beta", 1)
        let (m, k) = ta ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (kb, n) = tb ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == kb else { throw ONNXError("inner dimensions differ: A\(ta ? "ᵀ" : "") \(a.shape) · B\(tb ? "ᵀ" : "") \(b.shape)") }
        try checkedShape([m, n], elementBytes: 4)
        try checkWork(CheckedSize.product([m, n, k]), "the product", limit: Limits.maxMultiplyAdds)
        let out: Tensor
        if let cc, beta != 0 {
            guard (try? broadcastShapes([cc.shape, [m, n]])) == [m, n] else { throw ONNXError("C \(cc.shape) does not broadcast to [\(m), \(n)]") }
            guard case .float(let t) = ONNXValue.float(cc).broadcast(to: [m, n]) else { return [] }
            out = t === cc ? cc.copy() : t
        } else {
            out = Tensor.zeros([m, n])
        }
        BLAS.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: alpha, a: a.data, lda: a.shape[1],
                   b: b.data, ldb: b.shape[1], beta: cc != nil && beta != 0 ? beta : 0, c: out.data, ldc: n)
        return [.float(out)]
    }

    /// MatMul with NumPy semantics: 1-D operands are promoted, batch axes broadcast.
    static func MatMul(_ c: OpContext) throws -> [ONNXValue] {
        let a0 = try c.float(0), b0 = try c.float(1)
        guard a0.rank >= 1, b0.rank >= 1 else { throw ONNXError("MatMul needs operands of rank ≥ 1, got \(a0.shape) and \(b0.shape)") }
        let a = a0.rank == 1 ? Tensor(shape: [1, a0.count], storage: a0.storage) : a0
        let b = b0.rank == 1 ? Tensor(shape: [b0.count, 1], storage: b0.storage) : b0
        let (m, k) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (kb, n) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        guard k == kb else { throw ONNXError("inner dimensions differ: \(a0.shape) · \(b0.shape)") }
        let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        let batch = try broadcastShapes([batchA, batchB])
        try checkedShape(batch + [m, n], elementBytes: 4)
        try checkWork(CheckedSize.product(batch + [m, n, k]), "the product", limit: Limits.maxMultiplyAdds)
        let out = Tensor(uninitializedShape: batch + [m, n])
        if batchB.allSatisfy({ $0 == 1 }) && batchA == batch {
            // One GEMM: every batch of A against the one matrix B.
            BLAS.sgemm(m: batchA.reduce(1, *) * m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: n, c: out.data, ldc: n)
        } else {
            let sa = broadcastStridesOf(batchA, to: batch).map { $0 * m * k }
            let sb = broadcastStridesOf(batchB, to: batch).map { $0 * k * n }
            forEachStrided(batch, [sa, sb]) { i, offs in
                BLAS.sgemm(m: m, n: n, k: k, a: a.data + offs[0], lda: k, b: b.data + offs[1], ldb: n, c: out.data + i * m * n, ldc: n)
            }
        }
        var shape = batch
        if a0.rank > 1 { shape.append(m) }
        if b0.rank > 1 { shape.append(n) }
        return [.float(Tensor(shape: shape, storage: out.storage))]
    }

    // MARK: Normalisation

    /// BatchNormalization in inference mode: Y = (X − mean) / √(var + ε) · scale + B per channel.
    static func BatchNormalization(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0), scale = try c.float(1), bias = try c.float(2), mean = try c.float(3), variance = try c.float(4)
        if c.opset >= 14, try c.attributes.int("training_mode", 0) == 1 {
            throw ONNXError("training_mode=1 is not supported (DistillKit runs ONNX models for inference)")
        }
        let eps = try c.attributes.float("epsilon", 1e-5)
        guard x.rank >= 2 else { throw ONNXError("X \(x.shape) must be [N, C, ...]") }
        let n = x.shape[0], ch = x.shape[1], area = x.shape[2...].reduce(1, *)
        // Before opset 9, spatial=0 gave each (channel, position) its own statistics.
        let spatial = try c.attributes.int("spatial", 1)
        let perPosition = c.opset < 9 && spatial == 0
        let groups = perPosition ? ch * area : ch
        for (name, t) in [("scale", scale), ("B", bias), ("mean", mean), ("var", variance)] where t.count != groups {
            throw ONNXError("\(name) \(t.shape) must hold \(groups) values for X \(x.shape)")
        }
        var mul = [Float](repeating: 0, count: groups), add = [Float](repeating: 0, count: groups)
        for i in 0..<groups {
            mul[i] = scale.data[i] / (variance.data[i] + eps).squareRoot()
            add[i] = bias.data[i] - mean.data[i] * mul[i]
        }
        let out = Tensor(uninitializedShape: x.shape)
        let s = x.data, d = out.data
        for i in 0..<n { for k in 0..<ch {
            let off = (i * ch + k) * area
            if perPosition {
                for j in 0..<area { let g = k * area + j; d[off + j] = s[off + j] * mul[g] + add[g] }
            } else {
                let a = mul[k], b = add[k]
                for j in 0..<area { d[off + j] = s[off + j] * a + b }
            }
        } }
        return [.float(out)]
    }

    /// Mean and 1/√(variance + ε) of the `count` values at `s`, in Double (the population variance,
    /// two passes); shared by InstanceNormalization and LayerNormalization.
    static func normalizationStatistics(_ s: UnsafePointer<Float>, count: Int, epsilon: Double) -> (mean: Double, inverseStd: Double) {
        var total = 0.0, squares = 0.0
        for j in 0..<count { total += Double(s[j]) }
        let mu = total / Double(Swift.max(count, 1))
        for j in 0..<count { let v = Double(s[j]) - mu; squares += v * v }
        return (mu, 1 / (squares / Double(Swift.max(count, 1)) + epsilon).squareRoot())
    }

    /// InstanceNormalization: each (sample, channel) plane normalised by its own mean and variance.
    static func InstanceNormalization(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0), scale = try c.float(1), bias = try c.float(2)
        let eps = try c.attributes.float("epsilon", 1e-5)
        guard x.rank >= 3, scale.count == x.shape[1], bias.count == x.shape[1] else {
            throw ONNXError("X \(x.shape) must be [N, C, spatial...] with scale and B of \(x.rank > 1 ? x.shape[1] : 0) values")
        }
        let ch = x.shape[1], area = x.shape[2...].reduce(1, *)
        let out = Tensor(uninitializedShape: x.shape)
        for p in 0..<(x.shape[0] * ch) {
            let s = x.data + p * area, d = out.data + p * area
            let (mu, inv) = normalizationStatistics(s, count: area, epsilon: Double(eps))
            let g = Double(scale.data[p % ch]), b = Double(bias.data[p % ch])
            for j in 0..<area { d[j] = Float((Double(s[j]) - mu) * inv * g + b) }
        }
        return [.float(out)]
    }

    /// LayerNormalization (opset 17): normalises over the axes from `axis` on; outputs Y and
    /// optionally Mean and InvStdDev.
    static func LayerNormalization(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0), scale = try c.float(1), bias = try c.optionalFloat(2)
        let axis = try normalizedAxis(try c.attributes.int("axis", -1), rank: x.rank)
        let eps = try c.attributes.float("epsilon", 1e-5)
        for (name, t) in [("Scale", Optional(scale)), ("B", bias)] {
            if let t, !(t.rank <= x.rank && zip(t.shape.reversed(), x.shape.reversed()).allSatisfy({ $0 == 1 || $0 == $1 })) {
                throw ONNXError("\(name) \(t.shape) does not broadcast to X \(x.shape)")
            }
        }
        let trailing = Array(x.shape[axis...])
        let rows = x.shape[..<axis].reduce(1, *), width = trailing.reduce(1, *)
        let normalized = Tensor(uninitializedShape: x.shape)
        let statsShape = Array(x.shape[..<axis]) + [Int](repeating: 1, count: x.rank - axis)
        let means = Tensor(uninitializedShape: statsShape), invs = Tensor(uninitializedShape: statsShape)
        for r in 0..<rows {
            let s = x.data + r * width, d = normalized.data + r * width
            let (mu, inv) = normalizationStatistics(s, count: width, epsilon: Double(eps))
            for j in 0..<width { d[j] = Float((Double(s[j]) - mu) * inv) }
            means.data[r] = Float(mu); invs.data[r] = Float(inv)
        }
        var y = try floatBinary(normalized, scale, *)
        if let bias { y = try floatBinary(y, bias, +) }
        guard y.shape == x.shape else { throw ONNXError("Scale \(scale.shape) does not broadcast to X \(x.shape)") }
        return [.float(y), .float(means), .float(invs)]
    }

    /// LRN across channels: y = x / (bias + α/size · Σ x²)^β over a window of `size` channels.
    static func LRN(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.float(0)
        guard x.rank >= 3 else { throw ONNXError("X \(x.shape) must be [N, C, spatial...]") }
        guard let size = try c.attributes.int("size", in: 1...Int.max) else { throw ONNXError("attribute 'size' is required") }
        try checkWork(CheckedSize.multiply(x.count, Swift.min(size, x.shape[1])), "the normalisation window")
        let alpha = try c.attributes.float("alpha", 1e-4), beta = try c.attributes.float("beta", 0.75), bias = try c.attributes.float("bias", 1)
        let ch = x.shape[1], area = x.shape[2...].reduce(1, *)
        let lo = (size - 1) / 2, hi = size - 1 - lo
        let out = Tensor(uninitializedShape: x.shape)
        for n in 0..<x.shape[0] { for k in 0..<ch { for j in 0..<area {
            var sq: Float = 0
            for kk in Swift.max(0, k - lo)...Swift.min(ch - 1, k + hi) { let v = x.data[(n * ch + kk) * area + j]; sq += v * v }
            let i = (n * ch + k) * area + j
            out.data[i] = x.data[i] / Foundation.pow(bias + alpha / Float(size) * sq, beta)
        } } }
        return [.float(out)]
    }

    // MARK: Softmax family

    /// Softmax-like operators: before opset 13 the input is seen as 2-D, [∏ dims < axis, ∏ dims ≥ axis]
    /// (default axis 1); from 13 on they work along one axis (default −1).
    static func softmaxLike(_ c: OpContext, _ f: (Tensor, Int) -> Tensor) throws -> [ONNXValue] {
        let x = try c.float(0)
        if x.rank == 0 { return [.float(f(Tensor(shape: [1], storage: x.storage), 0).reshaped([]))] }
        if c.opset < 13 {
            let axis = try normalizedAxis(try c.attributes.int("axis", 1), rank: x.rank)
            let rows = x.shape[..<axis].reduce(1, *), width = x.shape[axis...].reduce(1, *)
            let y = f(Tensor(shape: [rows, width], storage: x.storage), 1)
            return [.float(Tensor(shape: x.shape, storage: y.storage))]
        }
        let axis = try normalizedAxis(try c.attributes.int("axis", -1), rank: x.rank)
        return [.float(f(x, axis))]
    }
    static func Softmax(_ c: OpContext) throws -> [ONNXValue] { try softmaxLike(c) { $0.softmax(axis: $1) } }
    static func LogSoftmax(_ c: OpContext) throws -> [ONNXValue] { try softmaxLike(c) { $0.logSoftmax(axis: $1) } }
    static func Hardmax(_ c: OpContext) throws -> [ONNXValue] {
        try softmaxLike(c) { x, axis in
            let outer = x.shape[..<axis].reduce(1, *), n = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
            let out = Tensor.zeros(x.shape)
            for a in 0..<outer { for i in 0..<inner {
                var best = 0
                for k in 1..<Swift.max(n, 1) where x.data[(a * n + k) * inner + i] > x.data[(a * n + best) * inner + i] { best = k }
                if n > 0 { out.data[(a * n + best) * inner + i] = 1 }
            } }
            return out
        }
    }

    /// Dropout at inference: the identity (and an all-true mask when asked for one).
    static func Dropout(_ c: OpContext) throws -> [ONNXValue] {
        let x = try c.input(0)
        if c.opset >= 12, let training = c.optional(2), (try training.doubles().first ?? 0) != 0 {
            let ratio = try c.optionalScalar(1) ?? 0.5
            if ratio > 0 { throw ONNXError("training_mode=true is not supported (DistillKit runs ONNX models for inference)") }
        }
        guard c.outputCount > 1 else { return [x] }
        let mask: ONNXValue = c.opset >= 10 ? boolValue(x.shape, [Bool](repeating: true, count: x.count))
                                            : .float(Tensor.ones(x.shape))
        return [x, mask]
    }
}
