// 2-D convolution (cross-correlation, as in PyTorch) through im2col + GEMM.
//
// Chosen by measurement against the alternative named in ../shared/docs/PLATFORM.md (oneDNN):
// im2col keeps the data in plain NCHW, needs no layout reorders at flatten, and every FLOP goes
// through one BLAS GEMM per sample and group; the batch is split across the worker threads.
//
// Letters: N batch, C input channels, O output channels, G groups, H×W input, P×Q output,
// R×S kernel; K = (C/G)·R·S is the GEMM's inner dimension.

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
        (input + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1
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

    /// Unfolds the channels of group `g` of one image [C, H, W] into col [K, P·Q].
    func im2col(_ x: UnsafePointer<Float>, group g: Int, into col: UnsafeMutablePointer<Float>) {
        let (sh, sw) = config.stride, (ph, pw) = config.padding, (dh, dw) = config.dilation
        for cc in 0..<cg {
            let plane = x + (g * cg + cc) * h * w
            for i in 0..<r { for j in 0..<s {
                let row = col + ((cc * r + i) * s + j) * pq
                for oy in 0..<p {
                    let iy = oy * sh - ph + i * dh
                    let dst = row + oy * q
                    if iy < 0 || iy >= h { dst.update(repeating: 0, count: q); continue }
                    let src = plane + iy * w
                    for ox in 0..<q {
                        let ix = ox * sw - pw + j * dw
                        dst[ox] = (ix >= 0 && ix < w) ? src[ix] : 0
                    }
                }
            } }
        }
    }

    /// Adjoint of `im2col`: adds col [K, P·Q] back into the image gradient [C, H, W] of group `g`.
    func col2im(_ col: UnsafePointer<Float>, group g: Int, into x: UnsafeMutablePointer<Float>) {
        let (sh, sw) = config.stride, (ph, pw) = config.padding, (dh, dw) = config.dilation
        for cc in 0..<cg {
            let plane = x + (g * cg + cc) * h * w
            for i in 0..<r { for j in 0..<s {
                let row = col + ((cc * r + i) * s + j) * pq
                for oy in 0..<p {
                    let iy = oy * sh - ph + i * dh
                    if iy < 0 || iy >= h { continue }
                    let src = row + oy * q, dst = plane + iy * w
                    for ox in 0..<q {
                        let ix = ox * sw - pw + j * dw
                        if ix >= 0 && ix < w { dst[ix] += src[ox] }
                    }
                }
            } }
        }
    }

    /// True when the 1x1, stride-1, unpadded case lets the image itself serve as col.
    var isPointwise: Bool {
        r == 1 && s == 1 && config.stride == (1, 1) && config.padding == (0, 0)
    }
}

/// 2-D convolution. x: [N, C, H, W]; weight: [O, C/groups, R, S]; bias: [O] → [N, O, P, Q].
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, config: Conv2dConfig = .init()) -> Tensor {
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    if let bias { precondition(bias.shape == [geo.o], "conv2d: bias \(bias.shape) for \(geo.o) output channels") }
    let out = Tensor(uninitializedShape: [geo.n, geo.o, geo.p, geo.q])
    let xs = SharedPointer(x.data), ws = SharedPointer(weight.data), os = SharedPointer(out.data)
    let bs = bias.map { SharedPointer($0.data) }
    Parallel.forChunks(geo.n, costPerItem: geo.o * geo.pq * geo.k) { range in
        let col = UnsafeMutablePointer<Float>.allocate(capacity: geo.isPointwise ? 1 : geo.k * geo.pq)
        defer { col.deallocate() }
        for img in range {
            let xi = xs.p + img * geo.c * geo.h * geo.w
            let oi = os.p + img * geo.o * geo.pq
            if let bs { for oc in 0..<geo.o { (oi + oc * geo.pq).update(repeating: bs.p[oc], count: geo.pq) } }
            for g in 0..<geo.groups {
                let src: UnsafePointer<Float>
                if geo.isPointwise { src = UnsafePointer(xi + g * geo.cg * geo.pq) } else { geo.im2col(xi, group: g, into: col); src = UnsafePointer(col) }
                // out_g [Og, PQ] = W_g [Og, K] · col [K, PQ]
                BLAS.sgemm(m: geo.og, n: geo.pq, k: geo.k, a: ws.p + g * geo.og * geo.k, lda: geo.k,
                           b: src, ldb: geo.pq, beta: bs == nil ? 0 : 1, c: oi + g * geo.og * geo.pq, ldc: geo.pq,
                           split: false)
            }
        }
    }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.result(out, inputs: inputs, .conv2d(config))
}

/// Gradients of conv2d for the inputs that need them: (dx, dweight, dbias).
func conv2dBackward(x: Tensor, weight: Tensor, hasBias: Bool, config: Conv2dConfig, grad: Tensor,
                    needInput: Bool, needWeight: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    let dx = needInput ? Tensor.zeros(x.shape) : nil
    let workers = Swift.min(Parallel.workers, Swift.max(geo.n, 1))
    // Each worker accumulates its own weight gradient; they are summed at the end.
    let partialW = needWeight ? UnsafeMutablePointer<Float>.allocate(capacity: workers * weight.count) : nil
    partialW?.initialize(repeating: 0, count: workers * weight.count)
    defer { partialW?.deallocate() }
    let xs = SharedPointer(x.data), ws = SharedPointer(weight.data), gs = SharedPointer(grad.data)
    let dxs = dx.map { SharedPointer($0.data) }, pws = partialW.map { SharedPointer($0) }
    let chunkCount = workers
    Parallel.forEachChunk(geo.n, chunks: chunkCount) { chunk, range in
        let col = UnsafeMutablePointer<Float>.allocate(capacity: geo.k * geo.pq)
        defer { col.deallocate() }
        let dw = pws.map { $0.p + chunk * weight.count }
        for img in range {
            let xi = xs.p + img * geo.c * geo.h * geo.w
            let gi = gs.p + img * geo.o * geo.pq
            for g in 0..<geo.groups {
                let gy = gi + g * geo.og * geo.pq
                if let dw {
                    let src: UnsafePointer<Float>
                    if geo.isPointwise { src = UnsafePointer(xi + g * geo.cg * geo.pq) } else { geo.im2col(xi, group: g, into: col); src = UnsafePointer(col) }
                    // dW_g [Og, K] += dY_g [Og, PQ] · colᵀ [PQ, K]
                    BLAS.sgemm(transposeB: true, m: geo.og, n: geo.k, k: geo.pq, a: gy, lda: geo.pq, b: src, ldb: geo.pq,
                               beta: 1, c: dw + g * geo.og * geo.k, ldc: geo.k, split: false)
                }
                if let dxs {
                    let dxi = dxs.p + img * geo.c * geo.h * geo.w
                    if geo.isPointwise {
                        BLAS.sgemm(transposeA: true, m: geo.k, n: geo.pq, k: geo.og, a: ws.p + g * geo.og * geo.k, lda: geo.k,
                                   b: gy, ldb: geo.pq, beta: 1, c: dxi + g * geo.cg * geo.pq, ldc: geo.pq, split: false)
                    } else {
                        // dcol [K, PQ] = W_gᵀ [K, Og] · dY_g [Og, PQ], folded back into the image
                        BLAS.sgemm(transposeA: true, m: geo.k, n: geo.pq, k: geo.og, a: ws.p + g * geo.og * geo.k, lda: geo.k,
                                   b: gy, ldb: geo.pq, c: col, ldc: geo.pq, split: false)
                        geo.col2im(col, group: g, into: dxi)
                    }
                }
            }
        }
    }
    var dweight: Tensor? = nil
    if let partialW {
        let t = Tensor.zeros(weight.shape)
        for c in 0..<chunkCount { for i in 0..<weight.count { t.data[i] += partialW[c * weight.count + i] } }
        dweight = t
    }
    let dbias = hasBias ? grad.sum(axes: [0, 2, 3]) : nil
    return (dx, dweight, dbias)
}
