// 2-D convolution (cross-correlation, as in PyTorch): oneDNN's primitives when the library is
// installed, else im2col + GEMM; on AVX2 CPUs, 3×3 layers at stride 1 with padding 1 go through
// Winograd's F(2×2, 3×3) instead (ConvWinograd.swift).
//
// Measured on this kind of machine (one thread, the cnn-small teacher's second layer, 32→64
// channels on 14×14, per 128 images, thread CPU time): oneDNN 6.7 ms forward, 7.2 ms weight
// gradient, 6.6 ms input gradient, reorders to and from its blocked layouts included; OpenBLAS's
// GEMMs alone (im2col and col2im not counted) 11.3, 12.2 and 11.0 ms. oneDNN is therefore the
// path for every convolution with one group; grouped ones (and any shape oneDNN refuses) use
// im2col. `DISTILL_CONV=im2col` in the environment selects im2col everywhere.
//
// Either way the batch is split into `ConvGeometry.batchChunks` chunks, run on the worker
// threads, each chunk one oneDNN call (on that thread alone) or one GEMM per group; weight
// gradients are summed chunk by chunk in a fixed order, so results never depend on the number
// of threads.
//
// Letters: N batch, C input channels, O output channels, G groups, H×W input, P×Q output,
// R×S kernel; K = (C/G)·R·S is the GEMM's inner dimension.

import CDNNLLoader
import CKernels
import Foundation

/// Which kernels run a convolution.
public enum ConvolutionPath: String, Sendable, CaseIterable {
    /// oneDNN's primitives (plain NCHW arrays reordered into its blocked layouts and back).
    case oneDNN = "onednn"
    /// Unfolding into columns, then one BLAS GEMM per chunk and group.
    case im2col
    /// Winograd's F(2×2, 3×3) (`WinogradConvolution`), for the 3×3 convolutions it takes; any
    /// other runs on `preferred`.
    case winograd

    /// The path for convolutions with one group: oneDNN when it loads, unless the environment
    /// says `DISTILL_CONV=im2col`.
    public static let preferred: ConvolutionPath = {
        if let choice = ProcessInfo.processInfo.environment["DISTILL_CONV"]?.lowercased(), choice == "im2col" { return .im2col }
        return dk_dnnl_load(nil, 0) == 0 ? .oneDNN : .im2col
    }()

    /// The path for a convolution of these operands: `winograd` where it applies and the
    /// environment allows it, else `preferred`.
    static func preferred(input: [Int], weight: [Int], config: Conv2dConfig) -> ConvolutionPath {
        guard WinogradConvolution.enabled, input.count == 4, weight.count == 4 else { return preferred }
        return WinogradConvolution.accepts(ConvGeometry(input: input, weight: weight, config: config)) ? .winograd : preferred
    }

    /// Whether oneDNN loaded (whatever `preferred` says).
    public static var oneDNNAvailable: Bool { dk_dnnl_load(nil, 0) == 0 }

    /// What runs convolutions and why, for reports: "oneDNN 2.6.3 (jit:avx512_core)" or
    /// "im2col + BLAS (oneDNN could not be loaded ...)".
    public static var description: String {
        let library = String(cString: dk_dnnl_description())
        let winograd = WinogradConvolution.enabled ? "; 3×3 at stride 1, 8+ channels: Winograd F(2×2, 3×3)" : ""
        switch preferred {
        case .oneDNN:
            // The implementation oneDNN picks for a typical layer (cnn-small's second).
            var shape = dk_dnnl_shape(n: 16, c: 32, h: 14, w: 14, o: 64, r: 3, s: 3, p: 14, q: 14,
                                      stride_h: 1, stride_w: 1, pad_h: 1, pad_w: 1, dilation_h: 1, dilation_w: 1)
            let implementation = dk_dnnl_forward_implementation(&shape).map { String(cString: $0) } ?? "no implementation for 3x3"
            return "\(library) (\(implementation))\(winograd); grouped convolutions: im2col + BLAS"
        case .im2col, .winograd:
            return oneDNNAvailable ? "im2col + BLAS (DISTILL_CONV=im2col; \(library) is installed)" : "im2col + BLAS (\(library))\(winograd)"
        }
    }
}

/// Stride, padding, dilation and groups of a convolution.
public struct Conv2dConfig: Sendable, Equatable {
    public var stride: (Int, Int)
    public var padding: (Int, Int)
    public var dilation: (Int, Int)
    public var groups: Int
    public init(stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) {
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
    }
    public static func == (a: Self, b: Self) -> Bool {
        a.stride == b.stride && a.padding == b.padding && a.dilation == b.dilation && a.groups == b.groups
    }
    /// Output extent along one axis.
    static func outExtent(_ input: Int, kernel: Int, stride: Int, padding: Int, dilation: Int) -> Int {
        let span = input + 2 * padding - dilation * (kernel - 1) - 1  // floor division: no output when negative
        return span < 0 ? 0 : span / stride + 1
    }
}

/// The sizes of one convolution, derived once from the operand shapes.
struct ConvGeometry {
    let n, c, h, w, o, r, s, p, q, groups: Int
    let config: Conv2dConfig
    var cg: Int { c / groups }
    var og: Int { o / groups }
    var k: Int { cg * r * s }
    var pq: Int { p * q }

    init(input: [Int], weight: [Int], config: Conv2dConfig) {
        precondition(input.count == 4, "conv2d: input must be [N, C, H, W], got \(input)")
        precondition(weight.count == 4, "conv2d: weight must be [O, C/groups, R, S], got \(weight)")
        n = input[0]; c = input[1]; h = input[2]; w = input[3]
        o = weight[0]; r = weight[2]; s = weight[3]
        groups = config.groups
        precondition(groups >= 1 && c % groups == 0 && o % groups == 0,
                     "conv2d: groups \(groups) must divide input channels \(c) and output channels \(o)")
        precondition(weight[1] == c / groups,
                     "conv2d: weight \(weight) expects \(weight[1] * groups) input channels, input \(input) has \(c)")
        self.config = config
        p = Conv2dConfig.outExtent(h, kernel: r, stride: config.stride.0, padding: config.padding.0, dilation: config.dilation.0)
        q = Conv2dConfig.outExtent(w, kernel: s, stride: config.stride.1, padding: config.padding.1, dilation: config.dilation.1)
        precondition(p > 0 && q > 0, "conv2d: kernel \(r)x\(s) (dilation \(config.dilation)) does not fit input \(h)x\(w) with padding \(config.padding)")
    }

    /// Visits the rows of the unfolded columns of group `g` and the image rows they come from: for
    /// each channel, kernel tap (i, j) and output row oy, `body(column, image, lo, hi)` gets the offset
    /// of the Q columns of that output row in col (whose K rows are `rowStride` apart) and the offset in
    /// the image [C, H, W] of the input read by output column 0, or nil when the whole row falls in
    /// the vertical padding. Output columns `lo..<hi` read the input at `image + ox·stride`; the
    /// others read padding. `im2col` and its adjoint `col2im` are this one traversal.
    @inline(__always)
    private func forEachColumnRow(group g: Int, rowStride: Int, _ body: (_ column: Int, _ image: Int?, _ lo: Int, _ hi: Int) -> Void) {
        let (sh, sw) = config.stride, (ph, pw) = config.padding, (dh, dw) = config.dilation
        for cc in 0..<cg {
            let plane = (g * cg + cc) * h * w
            for i in 0..<r { for j in 0..<s {
                let row = ((cc * r + i) * s + j) * rowStride
                let offset = j * dw - pw
                let (lo, hi) = validRange(offset: offset, stride: sw)
                for oy in 0..<p {
                    let iy = oy * sh - ph + i * dh
                    body(row + oy * q, iy < 0 || iy >= h ? nil : plane + iy * w + offset, lo, hi)
                }
            } }
        }
    }

    /// Unfolds the channels of group `g` of one image [C, H, W] into the P·Q columns of col
    /// starting at `col`, whose K rows are `rowStride` apart.
    func im2col(_ x: UnsafePointer<Float>, group g: Int, into col: UnsafeMutablePointer<Float>, rowStride: Int) {
        let sw = config.stride.1
        forEachColumnRow(group: g, rowStride: rowStride) { column, image, lo, hi in
            let dst = col + column
            guard let image else { for ox in 0..<q { dst[ox] = 0 }; return }
            let src = x + image
            for ox in 0..<lo { dst[ox] = 0 }
            if sw == 1 { for ox in lo..<hi { dst[ox] = src[ox] } }
            else { for ox in lo..<hi { dst[ox] = src[ox * sw] } }
            for ox in hi..<q { dst[ox] = 0 }
        }
    }

    /// Adjoint of `im2col`: adds the P·Q columns at `col` (rows `rowStride` apart) back into the
    /// image gradient [C, H, W] of group `g`.
    func col2im(_ col: UnsafePointer<Float>, group g: Int, into x: UnsafeMutablePointer<Float>, rowStride: Int) {
        let sw = config.stride.1
        forEachColumnRow(group: g, rowStride: rowStride) { column, image, lo, hi in
            guard let image else { return }
            let src = col + column, dst = x + image
            if sw == 1 { for ox in lo..<hi { dst[ox] += src[ox] } }
            else { for ox in lo..<hi { dst[ox * sw] += src[ox] } }
        }
    }

    /// These sizes for oneDNN, for a chunk of `images` images.
    func dnnlShape(images: Int) -> dk_dnnl_shape {
        func i32(_ v: Int) -> Int32 { Int32(clamping: v) }
        return dk_dnnl_shape(n: i32(images), c: i32(c), h: i32(h), w: i32(w), o: i32(o), r: i32(r), s: i32(s), p: i32(p), q: i32(q),
                             stride_h: i32(config.stride.0), stride_w: i32(config.stride.1), pad_h: i32(config.padding.0),
                             pad_w: i32(config.padding.1), dilation_h: i32(config.dilation.0), dilation_w: i32(config.dilation.1))
    }

    /// Chunks the batch is split into, whatever the number of worker threads: the weight gradient
    /// is summed chunk by chunk, so a fixed count keeps results bit-identical across thread counts.
    static let batchChunks = 8

    /// The output columns `lo..<hi` whose input column `ox·stride + offset` lies inside the image.
    @inline(__always)
    func validRange(offset: Int, stride: Int) -> (Int, Int) {
        // ox·stride + offset ≥ 0  ⇔ ox ≥ ⌈−offset/stride⌉;  ox·stride + offset < w ⇔ ox < ⌈(w − offset)/stride⌉
        let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let hi = w - offset <= 0 ? 0 : (w - offset + stride - 1) / stride
        let l = Swift.min(lo, q), h = Swift.min(Swift.max(hi, l), q)
        return (l, h)
    }
}

/// 2-D convolution. x: [N, C, H, W]; weight: [O, C/groups, R, S]; bias: [O] → [N, O, P, Q].
///
/// Runs on `ConvolutionPath.preferred` (oneDNN where installed) when groups = 1, else im2col.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, config: Conv2dConfig = .init()) -> Tensor {
    conv2d(x, weight: weight, bias: bias, config: config, path: .preferred(input: x.shape, weight: weight.shape, config: config))
}

/// `conv2d` on a chosen path (tests compare the two). oneDNN takes convolutions with one group;
/// any other, or a shape oneDNN refuses, runs through im2col, chunk by chunk.
///
/// im2col: a chunk of n images is unfolded side by side into col [G][K, n·P·Q], so each group is
/// one GEMM `W_g [Og, K] · col_g [K, n·PQ]` whose weight is packed once per chunk rather than
/// once per image.
func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, config: Conv2dConfig, path: ConvolutionPath) -> Tensor {
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    if let bias { precondition(bias.shape == [geo.o], "conv2d: bias \(bias.shape) for \(geo.o) output channels") }
    let out = Tensor(uninitializedShape: [geo.n, geo.o, geo.p, geo.q])
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    if path == .winograd && WinogradConvolution.accepts(geo) {  // the transformed input is kept for the weight gradient
        let kept = GradMode.isEnabled && weight.requiresGrad ? TensorStorage(count: WinogradConvolution.keptCount(geo)) : nil
        WinogradConvolution.forward(geo, x: x.data, weight: weight.data, bias: bias?.data, into: out.data, kept: kept?.pointer)
        return Tensor.result(out, inputs: inputs, .conv2d(config, path: .winograd, cols: kept))
    }
    let path = path == .winograd ? ConvolutionPath.preferred : path
    let xs = SharedPointer(x.data), ws = SharedPointer(weight.data), os = SharedPointer(out.data)
    let bs = bias.map { SharedPointer($0.data) }
    let dnnl = path == .oneDNN && geo.groups == 1
    // On the im2col path, when the weight will need its gradient, the unfolded images are kept
    // for the backward pass (which would otherwise unfold them again); otherwise each chunk uses
    // a scratch buffer.
    let colsPerImage = geo.groups * geo.k * geo.pq
    let keptCols = !dnnl && GradMode.isEnabled && weight.requiresGrad ? TensorStorage(count: geo.n * colsPerImage) : nil
    let kept = keptCols.map { SharedPointer($0.pointer) }
    Parallel.forEachChunk(geo.n, chunks: ConvGeometry.batchChunks) { _, range in
        if dnnl {
            var shape = geo.dnnlShape(images: range.count)
            if dk_dnnl_conv_forward(&shape, xs.p + range.lowerBound * geo.c * geo.h * geo.w, ws.p, bs?.p,
                                    os.p + range.lowerBound * geo.o * geo.pq) == 0 { return }
        }
        let ld = range.count * geo.pq
        let col = kept.map { $0.p + range.lowerBound * colsPerImage } ?? .allocate(capacity: range.count * colsPerImage)
        let product = UnsafeMutablePointer<Float>.allocate(capacity: geo.o * ld)
        defer { if kept == nil { col.deallocate() }; product.deallocate() }
        for g in 0..<geo.groups {
            let colG = col + g * geo.k * ld
            for img in range {
                geo.im2col(xs.p + img * geo.c * geo.h * geo.w, group: g, into: colG + (img - range.lowerBound) * geo.pq, rowStride: ld)
            }
            // product_g [Og, n·PQ] = W_g [Og, K] · col_g [K, n·PQ]
            BLAS.sgemm(m: geo.og, n: ld, k: geo.k, a: ws.p + g * geo.og * geo.k, lda: geo.k,
                       b: colG, ldb: ld, c: product + g * geo.og * ld, ldc: ld, split: .none)
        }
        for img in range {  // [O, n·PQ] → [n, O, PQ], adding the bias
            let src = product + (img - range.lowerBound) * geo.pq, dst = os.p + img * geo.o * geo.pq
            for oc in 0..<geo.o {
                let b = bs?.p[oc] ?? 0, s = src + oc * ld, d = dst + oc * geo.pq
                for t in 0..<geo.pq { d[t] = s[t] + b }
            }
        }
    }
    return Tensor.result(out, inputs: inputs, .conv2d(config, path: path, cols: keptCols))
}

/// Gradients of conv2d for the inputs that need them: (dx, dweight, dbias), on the forward
/// pass's path. `cols`, when given, holds the forward pass's unfolded images (same chunking,
/// since the batch matches). The first layer's input gradient (an image's) is never asked for.
func conv2dBackward(x: Tensor, weight: Tensor, hasBias: Bool, config: Conv2dConfig, path: ConvolutionPath, cols: TensorStorage?,
                    grad: Tensor, needInput: Bool, needWeight: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    if geo.n == 0 {  // an empty batch: no chunk runs, so none would write its partial sums
        return (needInput ? Tensor.zeros(x.shape) : nil, needWeight ? Tensor.zeros(weight.shape) : nil, hasBias ? Tensor.zeros([geo.o]) : nil)
    }
    if path == .winograd {
        return WinogradConvolution.backward(geo, x: x.data, weight: weight.data, grad: .full(grad.data), kept: cols?.pointer,
                                            hasBias: hasBias, needInput: needInput, needWeight: needWeight)
    }
    let dx = needInput ? Tensor.zeros(x.shape) : nil
    let chunks = Swift.max(1, Swift.min(ConvGeometry.batchChunks, geo.n))
    // Each chunk computes its own weight and bias gradients; they are summed at the end.
    let partialW = UnsafeMutablePointer<Float>.allocate(capacity: chunks * weight.count)
    let partialB = UnsafeMutablePointer<Float>.allocate(capacity: chunks * geo.o)
    defer { partialW.deallocate(); partialB.deallocate() }
    let colsPerImage = geo.groups * geo.k * geo.pq
    let xs = SharedPointer(x.data), ws = SharedPointer(weight.data), gs = SharedPointer(grad.data)
    let dxs = dx.map { SharedPointer($0.data) }, pws = SharedPointer(partialW), pbs = SharedPointer(partialB)
    let kept = cols.map { SharedPointer($0.pointer) }
    let dnnl = path == .oneDNN && geo.groups == 1
    Parallel.forEachChunk(geo.n, chunks: chunks) { chunk, range in
        let imageSize = geo.c * geo.h * geo.w
        if dnnl {
            var shape = geo.dnnlShape(images: range.count)
            if dk_dnnl_conv_backward(&shape, xs.p + range.lowerBound * imageSize, ws.p, gs.p + range.lowerBound * geo.o * geo.pq,
                                     dxs.map { $0.p + range.lowerBound * imageSize }, needWeight ? pws.p + chunk * weight.count : nil,
                                     hasBias ? pbs.p + chunk * geo.o : nil) == 0 { return }
            dxs.map { ($0.p + range.lowerBound * imageSize).update(repeating: 0, count: range.count * imageSize) }
        }
        let ld = range.count * geo.pq
        // dY of the chunk as [O, n·PQ], and the bias gradient on the way
        let dy = UnsafeMutablePointer<Float>.allocate(capacity: geo.o * ld)
        defer { dy.deallocate() }
        let db = pbs.p + chunk * geo.o
        for oc in 0..<geo.o {
            for img in range {
                (dy + oc * ld + (img - range.lowerBound) * geo.pq).update(from: gs.p + (img * geo.o + oc) * geo.pq, count: geo.pq)
            }
            if hasBias { db[oc] = vectorSum(dy + oc * ld, count: ld) }
        }
        var col: UnsafeMutablePointer<Float>? = kept.map { $0.p + range.lowerBound * colsPerImage }
        if needWeight && col == nil {  // unfold again when the forward pass kept nothing
            let fresh = UnsafeMutablePointer<Float>.allocate(capacity: range.count * colsPerImage)
            for g in 0..<geo.groups { for img in range {
                geo.im2col(xs.p + img * imageSize, group: g, into: fresh + g * geo.k * ld + (img - range.lowerBound) * geo.pq, rowStride: ld)
            } }
            col = fresh
        }
        defer { if kept == nil { col?.deallocate() } }
        let dcol = needInput ? UnsafeMutablePointer<Float>.allocate(capacity: geo.k * ld) : nil
        defer { dcol?.deallocate() }
        for g in 0..<geo.groups {
            let dyG = dy + g * geo.og * ld
            if needWeight, let col {
                // dW_g [Og, K] = dY_g [Og, n·PQ] · col_gᵀ [n·PQ, K]
                BLAS.sgemm(transposeB: true, m: geo.og, n: geo.k, k: ld, a: dyG, lda: ld, b: col + g * geo.k * ld, ldb: ld,
                           c: pws.p + chunk * weight.count + g * geo.og * geo.k, ldc: geo.k, split: .none)
            }
            if let dcol, let dxs {
                // dcol [K, n·PQ] = W_gᵀ [K, Og] · dY_g [Og, n·PQ], folded back into each image
                BLAS.sgemm(transposeA: true, m: geo.k, n: ld, k: geo.og, a: ws.p + g * geo.og * geo.k, lda: geo.k,
                           b: dyG, ldb: ld, c: dcol, ldc: ld, split: .none)
                for img in range {
                    geo.col2im(dcol + (img - range.lowerBound) * geo.pq, group: g, into: dxs.p + img * imageSize, rowStride: ld)
                }
            }
        }
    }
    let used = Swift.min(chunks, Swift.max(geo.n, 1))
    let dweight = needWeight ? sumOfChunks(partialW, chunks: used, shape: weight.shape) : nil
    let dbias = hasBias ? sumOfChunks(partialB, chunks: used, shape: [geo.o]) : nil
    return (dx, dweight, dbias)
}

/// Σ over `chunks` consecutive arrays of shape `shape` at `partial`, added in chunk order (so the
/// result does not depend on which thread computed which chunk).
func sumOfChunks(_ partial: UnsafePointer<Float>, chunks: Int, shape: [Int]) -> Tensor {
    let t = Tensor.zeros(shape), n = t.count
    for c in 0..<chunks { for i in 0..<n { t.data[i] += partial[c * n + i] } }
    return t
}

/// Σ p[0..<count], with eight accumulators so the loop vectorises.
@inline(__always)
func vectorSum(_ p: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var k = 0
    while k + 8 <= count { acc += SIMD8<Float>(UnsafeBufferPointer(start: p + k, count: 8)); k += 8 }
    var total = acc.sum()
    while k < count { total += p[k]; k += 1 }
    return total
}

// MARK: - conv → ReLU → max-pool in one pass (first layers)

/// When `conv2dReLUMaxPool2d` runs its fused kernel (`Sources/CKernels/conv_pool.c`) rather than
/// `conv2d` then `maxPool2dReLU`.
///
/// The fused kernel never stores the convolution's output (nor, going back, its gradient): each
/// image's is computed into a cache-sized scratch buffer, pooled there, and only the pooled
/// values and each window's winner are kept. Its backward pass gives the weight and bias
/// gradients only, so it runs where the input needs no gradient (a first layer: the input is the
/// data), the convolution has one group and at most `maxInputChannels` input channels (its
/// inner loop is one multiply-add per input value and kernel tap, over 16 output channels per
/// vector: made for the short dot products of a first layer; wider inputs go to oneDNN).
/// `DISTILL_CONV=im2col` or `DISTILL_CONV=onednn` in the environment turns it off (the first
/// runs every convolution through im2col, the second through oneDNN, unfused).
public enum FusedConvolutionPool {
    /// Most input channels the fused kernel takes.
    public static let maxInputChannels = 4

    /// False when `DISTILL_CONV` names an unfused path (im2col or onednn).
    public static let enabled: Bool = {
        let choice = ProcessInfo.processInfo.environment["DISTILL_CONV"]?.lowercased()
        return choice != "im2col" && choice != "onednn"
    }()

    /// Whether a layer with this input, weight and configuration runs fused (given `enabled`).
    static func accepts(_ x: Tensor, weight: Tensor, config: Conv2dConfig) -> Bool {
        x.rank == 4 && weight.rank == 4 && config.groups == 1 && x.shape[1] <= maxInputChannels
            && !(GradMode.isEnabled && x.requiresGrad)
    }
}

/// `maxPool2dReLU(conv2d(x, weight, bias), pool)`, the usual conv → ReLU → max-pool of a CNN, in
/// one pass where `FusedConvolutionPool` says it applies (and as those two ops otherwise).
/// x: [N, C, H, W]; weight: [O, C, R, S]; bias: [O] → [N, O, U, V], U×V the pooled extent of the
/// convolution's P×Q output. Max-pooling's ties and NaNs resolve as in `maxPool2d`'s 2×2 path
/// (the first of equal values in row-major order wins; a NaN never beats a number), and a window
/// whose maximum is not positive gives 0 and passes no gradient back.
public func conv2dReLUMaxPool2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, config: Conv2dConfig = .init(),
                                pool: Pool2dConfig) -> Tensor {
    let fused = FusedConvolutionPool.enabled && FusedConvolutionPool.accepts(x, weight: weight, config: config)
    return conv2dReLUMaxPool2d(x, weight: weight, bias: bias, config: config, pool: pool, fused: fused,
                               path: .preferred(input: x.shape, weight: weight.shape, config: config))
}

/// `conv2dReLUMaxPool2d` with the choice made by the caller (tests compare the two): `fused`
/// runs the fused kernel at `level` (-1: the best this CPU runs, 0: portable loops, 1: AVX2, 2: AVX-512),
/// otherwise (or when the fused kernel cannot run) `conv2d` on `path`, then `maxPool2dReLU`.
func conv2dReLUMaxPool2d(_ x: Tensor, weight: Tensor, bias: Tensor?, config: Conv2dConfig, pool: Pool2dConfig,
                         fused: Bool, path: ConvolutionPath, level: Int32 = -1) -> Tensor {
    let unfused = { conv2d(x, weight: weight, bias: bias, config: config, path: path).maxPool2dReLU(pool) }
    guard fused, !(GradMode.isEnabled && x.requiresGrad), config.groups == 1 else {
        switch path {
        case .oneDNN: return conv2dBlockedReLUMaxPool2d(x, weight: weight, bias: bias, config: config, pool: pool) ?? unfused()
        case .winograd: return conv2dWinogradReLUMaxPool2d(x, weight: weight, bias: bias, config: config, pool: pool) ?? unfused()
        case .im2col: return unfused()
        }
    }
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    if let bias { precondition(bias.shape == [geo.o], "conv2dReLUMaxPool2d: bias \(bias.shape) for \(geo.o) output channels") }
    let outShape = pool.outputShape([geo.n, geo.o, geo.p, geo.q], op: "conv2dReLUMaxPool2d")
    guard geo.n > 0, geo.pq < Int(Int32.max), geo.c * geo.h * geo.w < Int(Int32.max) else { return unfused() }
    let shape = convPoolShape(geo, pool: pool, pooled: (outShape[2], outShape[3]))
    let planeOut = geo.o * outShape[2] * outShape[3]
    let out = Tensor(uninitializedShape: outShape)
    // The winners are kept only when a gradient will be asked for.
    let keep = GradMode.isEnabled && (weight.requiresGrad || bias?.requiresGrad == true)
    var argmax = keep ? [Int32](repeating: 0, count: out.count) : []
    let failed = argmax.withUnsafeMutableBufferPointer { winners -> Bool in
        let xs = SharedPointer(x.data), ws = SharedPointer(weight.data), os = SharedPointer(out.data)
        let bs = bias.map { SharedPointer($0.data) }, am = keep ? winners.baseAddress.map { SharedPointer($0) } : nil
        let imageSize = geo.c * geo.h * geo.w
        return anyChunkFails(geo.n, chunks: ConvGeometry.batchChunks) { _, range in
            var shape = shape
            return dk_conv_relu_maxpool_forward(level, &shape, Int32(range.count), xs.p + range.lowerBound * imageSize, ws.p, bs?.p,
                                                os.p + range.lowerBound * planeOut, am.map { $0.p + range.lowerBound * planeOut })
        }
    }
    if failed { return unfused() }  // the requested level is missing here, or scratch memory ran out
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.result(out, inputs: inputs, .conv2dReLUMaxPool(config, pool: pool, level: level, argmax: argmax))
}

/// The sizes of a fused layer for the C kernel.
private func convPoolShape(_ geo: ConvGeometry, pool: Pool2dConfig, pooled: (Int, Int)) -> dk_conv_pool_shape {
    func i32(_ v: Int) -> Int32 { Int32(clamping: v) }
    let c = geo.config
    return dk_conv_pool_shape(channels: i32(geo.c), in_h: i32(geo.h), in_w: i32(geo.w), out_channels: i32(geo.o),
                              kernel_h: i32(geo.r), kernel_w: i32(geo.s), stride_h: i32(c.stride.0), stride_w: i32(c.stride.1),
                              pad_h: i32(c.padding.0), pad_w: i32(c.padding.1), dilation_h: i32(c.dilation.0), dilation_w: i32(c.dilation.1),
                              conv_h: i32(geo.p), conv_w: i32(geo.q), pool_h: i32(pool.kernel.0), pool_w: i32(pool.kernel.1),
                              pool_stride_h: i32(pool.stride.0), pool_stride_w: i32(pool.stride.1),
                              pool_pad_h: i32(pool.padding.0), pool_pad_w: i32(pool.padding.1), out_h: i32(pooled.0), out_w: i32(pooled.1))
}

/// Runs `body(chunk, range)` on `chunks` chunks of `0..<count` (`Parallel.forEachChunk`) and
/// tells whether any returned a non-zero status.
private func anyChunkFails(_ count: Int, chunks: Int, _ body: @Sendable (Int, Range<Int>) -> Int32) -> Bool {
    var status = [Int32](repeating: 0, count: Swift.max(1, chunks))
    status.withUnsafeMutableBufferPointer { buffer in
        let statuses = SharedPointer(buffer.baseAddress!)
        Parallel.forEachChunk(count, chunks: chunks) { chunk, range in statuses.p[chunk] = body(chunk, range) }
    }
    return status.contains { $0 != 0 }
}

/// The weight and bias gradients of `conv2dReLUMaxPool2d` from the pooled gradient and the
/// forward pass's winners, chunk by chunk as the forward pass ran, the chunks' sums added in
/// order. When the fused kernel cannot run (no scratch memory), the pooled gradient is routed to
/// the winners of the full convolution output and `conv2dBackward` takes it from there.
func conv2dReLUMaxPoolBackward(x: Tensor, weight: Tensor, hasBias: Bool, config: Conv2dConfig, pool: Pool2dConfig, level: Int32,
                               argmax: [Int32], grad: Tensor) -> (Tensor, Tensor?) {
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    let shape = convPoolShape(geo, pool: pool, pooled: (grad.shape[2], grad.shape[3]))
    let chunks = Swift.max(1, Swift.min(ConvGeometry.batchChunks, geo.n))
    let partialW = UnsafeMutablePointer<Float>.allocate(capacity: chunks * weight.count)
    let partialB = UnsafeMutablePointer<Float>.allocate(capacity: chunks * geo.o)
    defer { partialW.deallocate(); partialB.deallocate() }
    let planeOut = grad.count / Swift.max(geo.n, 1), imageSize = geo.c * geo.h * geo.w
    let failed = argmax.withUnsafeBufferPointer { winners -> Bool in
        let xs = SharedPointer(x.data), gs = SharedPointer(grad.data), pws = SharedPointer(partialW), pbs = SharedPointer(partialB)
        let am = SharedPointer(UnsafeMutablePointer(mutating: winners.baseAddress!))
        return anyChunkFails(geo.n, chunks: chunks) { chunk, range in
            var shape = shape
            return dk_conv_relu_maxpool_backward(level, &shape, Int32(range.count), xs.p + range.lowerBound * imageSize,
                                                 am.p + range.lowerBound * planeOut, gs.p + range.lowerBound * planeOut,
                                                 pws.p + chunk * weight.count, pbs.p + chunk * geo.o)
        }
    }
    if failed {
        let convGrad = maxPool2dBackward(grad, inputShape: [geo.n, geo.o, geo.p, geo.q], argmax: argmax, tiled: false)
        let (_, dw, db) = conv2dBackward(x: x, weight: weight, hasBias: hasBias, config: config, path: .im2col, cols: nil,
                                          grad: convGrad, needInput: false, needWeight: true)
        return (dw!, db)
    }
    return (sumOfChunks(partialW, chunks: chunks, shape: weight.shape), hasBias ? sumOfChunks(partialB, chunks: chunks, shape: [geo.o]) : nil)
}

/// The blocked route of `conv2dReLUMaxPool2d` for a layer oneDNN runs
/// (`dk_dnnl_conv_relu_maxpool_forward`): the convolution's output stays in oneDNN's blocked
/// layout, where the pooling reads it, and the pooled gradient goes straight back into that
/// layout, so the two reorders around the output and the full-size plain output are gone. nil
/// when it does not apply: the pool is not 2×2/2, or the primitives do not share one
/// channel-blocked layout for the output (`dk_dnnl_channel_block`). The same primitives and
/// pooling rule as `conv2d` then `maxPool2dReLU`, chunk for chunk, so the same bits.
func conv2dBlockedReLUMaxPool2d(_ x: Tensor, weight: Tensor, bias: Tensor?, config: Conv2dConfig, pool: Pool2dConfig) -> Tensor? {
    guard config.groups == 1, pool == Pool2dConfig(kernel: (2, 2)), x.rank == 4, weight.rank == 4 else { return nil }
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    guard geo.n > 0, geo.p >= 2, geo.q >= 2 else { return nil }
    if let bias { precondition(bias.shape == [geo.o], "conv2dReLUMaxPool2d: bias \(bias.shape) for \(geo.o) output channels") }
    var probe = geo.dnnlShape(images: (geo.n + ConvGeometry.batchChunks - 1) / ConvGeometry.batchChunks)
    guard dk_dnnl_channel_block(&probe, bias == nil ? 0 : 1) > 0 else { return nil }  // before allocating anything
    let out = Tensor(uninitializedShape: [geo.n, geo.o, geo.p / 2, geo.q / 2])
    var argmax = [Int32](repeating: 0, count: out.count)
    let failed = argmax.withUnsafeMutableBufferPointer { winners -> Bool in
        let xs = SharedPointer(x.data), ws = SharedPointer(weight.data), os = SharedPointer(out.data)
        let bs = bias.map { SharedPointer($0.data) }, am = SharedPointer(winners.baseAddress!)
        let imageSize = geo.c * geo.h * geo.w, pooledSize = out.count / geo.n
        return anyChunkFails(geo.n, chunks: ConvGeometry.batchChunks) { _, range in
            var shape = geo.dnnlShape(images: range.count)
            let first = range.lowerBound
            return dk_dnnl_conv_relu_maxpool_forward(&shape, xs.p + first * imageSize, ws.p, bs?.p, os.p + first * pooledSize,
                                                     am.p + first * pooledSize)
        }
    }
    if failed { return nil }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.result(out, inputs: inputs, .conv2dBlockedReLUMaxPool(config, argmax: argmax))
}

/// The gradients of `conv2dBlockedReLUMaxPool2d`, chunk by chunk as the forward pass ran; the
/// chunks' weight and bias gradients are summed in order.
func conv2dBlockedReLUMaxPoolBackward(x: Tensor, weight: Tensor, hasBias: Bool, config: Conv2dConfig, argmax: [Int32], grad: Tensor,
                                      needInput: Bool) -> (Tensor?, Tensor, Tensor?) {
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    let dx = needInput ? Tensor(uninitializedShape: x.shape) : nil
    let chunks = Swift.max(1, Swift.min(ConvGeometry.batchChunks, geo.n))
    let partialW = UnsafeMutablePointer<Float>.allocate(capacity: chunks * weight.count)
    let partialB = UnsafeMutablePointer<Float>.allocate(capacity: chunks * geo.o)
    defer { partialW.deallocate(); partialB.deallocate() }
    let failed = argmax.withUnsafeBufferPointer { winners -> Bool in
        let xs = SharedPointer(x.data), ws = SharedPointer(weight.data), gs = SharedPointer(grad.data)
        let dxs = dx.map { SharedPointer($0.data) }, pws = SharedPointer(partialW), pbs = SharedPointer(partialB)
        let am = SharedPointer(UnsafeMutablePointer(mutating: winners.baseAddress!))
        let imageSize = geo.c * geo.h * geo.w, pooledSize = grad.count / geo.n
        return anyChunkFails(geo.n, chunks: chunks) { chunk, range in
            var shape = geo.dnnlShape(images: range.count)
            let first = range.lowerBound
            return dk_dnnl_conv_relu_maxpool_backward(&shape, xs.p + first * imageSize, ws.p, gs.p + first * pooledSize,
                                                      am.p + first * pooledSize, dxs.map { $0.p + first * imageSize },
                                                      pws.p + chunk * weight.count, hasBias ? pbs.p + chunk * geo.o : nil)
        }
    }
    if failed {  // no scratch memory: the plain route, from the full-size gradient
        let convGrad = maxPool2dBackward(grad, inputShape: [geo.n, geo.o, geo.p, geo.q], argmax: argmax,
                                         tiled: geo.p == 2 * grad.shape[2] && geo.q == 2 * grad.shape[3])
        let (dx, dw, db) = conv2dBackward(x: x, weight: weight, hasBias: hasBias, config: config, path: .im2col, cols: nil,
                                          grad: convGrad, needInput: needInput, needWeight: true)
        return (dx, dw!, db)
    }
    return (dx, sumOfChunks(partialW, chunks: chunks, shape: weight.shape), hasBias ? sumOfChunks(partialB, chunks: chunks, shape: [geo.o]) : nil)
}
