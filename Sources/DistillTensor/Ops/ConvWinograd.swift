// 3×3 convolutions at stride 1 with padding 1, trained by Winograd's F(2×2, 3×3) (on AVX2 CPUs:
// `WinogradConvolution.enabled` says where): the forward
// pass and both gradients are 16 matrix products each (one per position of the 4×4 transformed
// tile) between transforms of the input, the output and the weight
// (`Sources/CKernels/include/dk_conv_winograd_train.h` has the formulas). The products need 16
// multiply-adds per tile where the direct convolution needs 36; they run in a kernel of ours
// (`dk_winograd_train_products`, AVX2 or AVX-512, no packing: these products are short) or, for channel counts
// it does not take, OpenBLAS's GEMM.
//
// Chunks as on the other paths (`ConvGeometry.batchChunks`, weight gradients summed in chunk
// order: the same bits for any number of threads). Within a chunk, images go through in
// blocks of about `tilesPerBlock` tiles, so that a block's transformed input and products stay
// in the core's cache between the transforms and the products.

import CKernels
import Foundation

enum WinogradConvolution {
    /// Fewest input and output channels taken: with fewer, the products are too short for the
    /// transforms to pay for themselves.
    static let minimumChannels = 8

    /// Tiles per block (images of 14×14: 4 images, 196 tiles; 32 → 64 channels, 1.2 MB of
    /// transformed input and products: in L2).
    static let tilesPerBlock = 256

    /// Whether `geo` is a convolution this path runs: 3×3, stride 1, padding 1, no dilation, one
    /// group, at least `minimumChannels` input and output channels.
    static func accepts(_ geo: ConvGeometry) -> Bool {
        geo.r == 3 && geo.s == 3 && geo.groups == 1 && geo.config.stride == (1, 1) && geo.config.padding == (1, 1)
            && geo.config.dilation == (1, 1) && geo.c >= minimumChannels && geo.o >= minimumChannels
    }

    /// Floats of the transformed input the forward pass keeps for the weight gradient.
    static func keptCount(_ geo: ConvGeometry) -> Int { geo.n * blocking(geo).tilesPerImage * 16 * geo.c }

    /// The forward pass from x [N, C, H, W]: into `y` [N, O, H, W], or with `winners`, ReLU and
    /// 2×2 max-pooling too, into y [N, O, H/2, W/2] (`dk_winograd_train_output_pool`). `kept`
    /// (`keptCount` floats), when given, receives the transformed input for the backward pass.
    static func forward(_ geo: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        into y: UnsafeMutablePointer<Float>, winners: UnsafeMutablePointer<UInt8>? = nil,
                        kept: UnsafeMutablePointer<Float>? = nil) {
        let u = transformedWeight(weight, geo, rotated: false)
        defer { u.deallocate() }
        let xs = SharedPointer(UnsafeMutablePointer(mutating: x)), ys = SharedPointer(y), us = SharedPointer(u)
        let bs = bias.map { SharedPointer(UnsafeMutablePointer(mutating: $0)) }, ws = winners.map { SharedPointer($0) }
        let ks = kept.map { SharedPointer($0) }
        let (perBlock, tilesPerImage) = blocking(geo)
        let plane = geo.h * geo.w, pooledPlane = (geo.h / 2) * (geo.w / 2)
        Parallel.forEachChunk(geo.n, chunks: ConvGeometry.batchChunks) { _, range in
            let buffers = Buffers(geo, images: range.count, transformed: ks == nil ? geo.c : 0, products: geo.o)
            defer { buffers.deallocate() }
            for first in stride(from: range.lowerBound, to: range.upperBound, by: perBlock) {
                let count = Swift.min(perBlock, range.upperBound - first), tiles = count * tilesPerImage
                let v = ks.map { $0.p + first * tilesPerImage * 16 * geo.c } ?? buffers.transformed
                dk_winograd_train_input(xs.p + first * geo.c * plane, count, geo.c, geo.h, geo.w, v, buffers.scratch)
                products(tiles: tiles, v, inputChannels: geo.c, us.p, outputChannels: geo.o, into: buffers.products)
                if let ws {
                    dk_winograd_train_output_pool(buffers.products, bs?.p, count, geo.o, geo.h, geo.w, ys.p + first * geo.o * pooledPlane,
                                                  ws.p + first * geo.o * pooledPlane, buffers.scratch)
                } else {
                    dk_winograd_train_output(buffers.products, bs?.p, count, geo.o, geo.h, geo.w, ys.p + first * geo.o * plane,
                                             buffers.scratch)
                }
            }
        }
    }

    /// The gradient of the forward pass's output: dY [N, O, H, W], or the pooled gradient
    /// [N, O, H/2, W/2] with the forward pass's winners.
    enum OutputGradient {
        case full(UnsafePointer<Float>)
        case pooled(UnsafePointer<Float>, winners: UnsafePointer<UInt8>)
    }

    /// The gradients (dx, dweight, dbias), those asked for, for a batch of at least one image.
    /// `kept`: the forward pass's transformed input, or nil to transform x again.
    static func backward(_ geo: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, grad: OutputGradient,
                         kept: UnsafePointer<Float>?, hasBias: Bool, needInput: Bool, needWeight: Bool) -> (Tensor?, Tensor?, Tensor?) {
        precondition(geo.n > 0, "WinogradConvolution.backward: an empty batch")
        let dx = needInput ? Tensor(uninitializedShape: [geo.n, geo.c, geo.h, geo.w]) : nil
        let chunks = Swift.min(ConvGeometry.batchChunks, geo.n)
        let weightCount = geo.o * geo.c * 9
        let partialW = UnsafeMutablePointer<Float>.allocate(capacity: chunks * weightCount)
        let partialB = UnsafeMutablePointer<Float>.allocate(capacity: chunks * geo.o)
        let rotated = needInput ? transformedWeight(weight, geo, rotated: true) : nil
        defer { partialW.deallocate(); partialB.deallocate(); rotated?.deallocate() }
        let xs = SharedPointer(UnsafeMutablePointer(mutating: x)), ks = kept.map { SharedPointer(UnsafeMutablePointer(mutating: $0)) }
        let dxs = dx.map { SharedPointer($0.data) }, us = rotated.map { SharedPointer($0) }
        let pws = SharedPointer(partialW), pbs = SharedPointer(partialB)
        let (gradient, winners): (SharedPointer<Float>, SharedPointer<UInt8>?)
        switch grad {
        case .full(let dy): (gradient, winners) = (SharedPointer(UnsafeMutablePointer(mutating: dy)), nil)
        case .pooled(let dy, let w): (gradient, winners) = (SharedPointer(UnsafeMutablePointer(mutating: dy)), SharedPointer(UnsafeMutablePointer(mutating: w)))
        }
        let (perBlock, tilesPerImage) = blocking(geo)
        let plane = geo.h * geo.w, gradPlane = winners == nil ? plane : (geo.h / 2) * (geo.w / 2)
        Parallel.forEachChunk(geo.n, chunks: chunks) { chunk, range in
            // transformed: the gradient's Bᵀ dY B (input gradient), then x's Bᵀ x B when not kept;
            // products: the input gradient's products; gradient: A dY Aᵀ; weight: dU.
            let buffers = Buffers(geo, images: range.count, transformed: Swift.max(needInput ? geo.o : 0, ks == nil ? geo.c : 0),
                                  products: needInput ? geo.c : 0, weightProducts: needWeight)
            defer { buffers.deallocate() }
            let dw = pws.p + chunk * weightCount
            for first in stride(from: range.lowerBound, to: range.upperBound, by: perBlock) {
                let count = Swift.min(perBlock, range.upperBound - first), tiles = count * tilesPerImage
                let dy = gradient.p + first * geo.o * gradPlane
                let g = needWeight ? buffers.gradient : nil, v = needInput ? buffers.transformed : nil
                if let winners {
                    dk_winograd_train_pool_grad(dy, winners.p + first * geo.o * gradPlane, count, geo.o, geo.h, geo.w, g, v, buffers.scratch)
                } else {
                    dk_winograd_train_output_grad(dy, count, geo.o, geo.h, geo.w, g, v, buffers.scratch)
                }
                if let dxs, let us {
                    products(tiles: tiles, buffers.transformed, inputChannels: geo.o, us.p, outputChannels: geo.c, into: buffers.products)
                    dk_winograd_train_output(buffers.products, nil, count, geo.c, geo.h, geo.w, dxs.p + first * geo.c * plane, buffers.scratch)
                }
                if needWeight {
                    let vx: UnsafeMutablePointer<Float>
                    if let ks { vx = ks.p + first * tilesPerImage * 16 * geo.c } else {
                        vx = buffers.transformed
                        dk_winograd_train_input(xs.p + first * geo.c * plane, count, geo.c, geo.h, geo.w, vx, buffers.scratch)
                    }
                    weightProducts(tiles: tiles, buffers.gradient, vx, accumulate: first != range.lowerBound, geo, into: buffers.weight)
                }
            }
            if needWeight { dk_winograd_train_weight_grad(buffers.weight, geo.o, geo.c, dw) }
            if hasBias {
                let db = pbs.p + chunk * geo.o
                for oc in 0..<geo.o {
                    var total: Float = 0
                    for img in range {
                        let at = (img * geo.o + oc) * gradPlane
                        if let winners {  // pooled: only the windows with a winner pass a gradient back
                            for i in at..<(at + gradPlane) where winners.p[i] != DK_WINOGRAD_NO_WINNER { total += gradient.p[i] }
                        } else {
                            total += vectorSum(gradient.p + at, count: gradPlane)
                        }
                    }
                    db[oc] = total
                }
            }
        }
        let dweight = needWeight ? sumOfChunks(partialW, chunks: chunks, shape: [geo.o, geo.c, 3, 3]) : nil
        let dbias = hasBias ? sumOfChunks(partialB, chunks: chunks, shape: [geo.o]) : nil
        return (dx, dweight, dbias)
    }

    /// One chunk's working memory: transformed arrays for a block of tiles and the scratch the
    /// transforms share.
    private struct Buffers {
        let transformed, products, gradient, weight, scratch: UnsafeMutablePointer<Float>
        init(_ geo: ConvGeometry, images: Int, transformed transformedChannels: Int, products productChannels: Int,
             weightProducts: Bool = false) {
            let (perBlock, tilesPerImage) = WinogradConvolution.blocking(geo)
            let tiles = Swift.min(perBlock, images) * tilesPerImage
            transformed = .allocate(capacity: Swift.max(1, 16 * tiles * transformedChannels))
            products = .allocate(capacity: Swift.max(1, 16 * tiles * productChannels))
            gradient = .allocate(capacity: weightProducts ? 16 * tiles * geo.o : 1)
            weight = .allocate(capacity: weightProducts ? 16 * geo.o * geo.c : 1)
            scratch = .allocate(capacity: dk_winograd_train_scratch(geo.h, geo.w, Swift.max(geo.c, geo.o)))
        }
        func deallocate() { for p in [transformed, products, gradient, weight, scratch] { p.deallocate() } }
    }

    /// U [16][in][out] for the forward pass (rotated: false) or the input gradient's (true).
    private static func transformedWeight(_ weight: UnsafePointer<Float>, _ geo: ConvGeometry, rotated: Bool) -> UnsafeMutablePointer<Float> {
        let u = UnsafeMutablePointer<Float>.allocate(capacity: 16 * geo.c * geo.o)
        dk_winograd_train_weights(weight, geo.o, geo.c, rotated ? 1 : 0, u)
        return u
    }

    /// Images per block and tiles per image.
    static func blocking(_ geo: ConvGeometry) -> (images: Int, tilesPerImage: Int) {
        let tilesPerImage = ((geo.h + 1) / 2) * ((geo.w + 1) / 2)
        return (Swift.max(1, tilesPerBlock / tilesPerImage), tilesPerImage)
    }

    /// M_k [tiles, co] = V_k [tiles, ci] · U_k [ci, co] for the 16 positions k.
    private static func products(tiles: Int, _ v: UnsafePointer<Float>, inputChannels ci: Int, _ u: UnsafePointer<Float>,
                                 outputChannels co: Int, into m: UnsafeMutablePointer<Float>) {
        if dk_winograd_train_products(-1, 16, tiles, co, ci, v, ci, 1, tiles * ci, u, ci * co, m, tiles * co, 0) == 0 { return }
        for k in 0..<16 {
            BLAS.sgemm(m: tiles, n: co, k: ci, a: v + k * tiles * ci, lda: ci, b: u + k * ci * co, ldb: co,
                       c: m + k * tiles * co, ldc: co, split: .none)
        }
    }

    /// dU_k [O, C] (+)= Ĝ_kᵀ [O, tiles] · V_k [tiles, C] for the 16 positions k.
    private static func weightProducts(tiles: Int, _ g: UnsafePointer<Float>, _ v: UnsafePointer<Float>, accumulate: Bool,
                                       _ geo: ConvGeometry, into du: UnsafeMutablePointer<Float>) {
        if dk_winograd_train_products(-1, 16, geo.o, geo.c, tiles, g, 1, geo.o, tiles * geo.o, v, tiles * geo.c,
                                      du, geo.o * geo.c, accumulate ? 1 : 0) == 0 { return }
        for k in 0..<16 {
            BLAS.sgemm(transposeA: true, m: geo.o, n: geo.c, k: tiles, a: g + k * tiles * geo.o, lda: geo.o,
                       b: v + k * tiles * geo.c, ldb: geo.c, beta: accumulate ? 1 : 0,
                       c: du + k * geo.o * geo.c, ldc: geo.c, split: .none)
        }
    }
}

extension WinogradConvolution {
    /// Whether `ConvolutionPath.preferred(input:weight:config:)` picks this path for the layers it
    /// takes: where AVX2 is the widest instruction set the kernels may use (cnn-small's training
    /// step measured 1.21× faster than with oneDNN's AVX2 convolutions), on CPUs that run AVX-512
    /// as two 256-bit halves (AMD Zen 4: 1.30× faster than with oneDNN's AVX-512 convolutions), and
    /// elsewhere only when oneDNN is missing (on Intel's AVX-512 cores oneDNN measured faster; all
    /// in BENCHMARKS.md). `DISTILL_WINOGRAD=0` or `1` in the environment turns it off or on (on:
    /// wherever AVX2 runs); `DISTILL_CONV=im2col` or `onednn`, which name one path for every layer,
    /// turn it off.
    static let enabled: Bool = {
        let environment = ProcessInfo.processInfo.environment
        guard dk_winograd_train_products_apply(8) == 1, !["im2col", "onednn"].contains(environment["DISTILL_CONV"]?.lowercased()) else {
            return false
        }
        if let forced = environment["DISTILL_WINOGRAD"] { return forced != "0" }
        return dk_cpu_kernel_level() == 1 || dk_cpu_splits_avx512() == 1 || ConvolutionPath.preferred == .im2col
    }()
}

/// The Winograd route of `conv2dReLUMaxPool2d`: the pooled output straight from the output
/// transform (`dk_winograd_train_output_pool`), so the convolution's full-size output and its
/// gradient are never stored, and the forward pass's transformed input is kept for the weight
/// gradient. The same values and gradients as `conv2d` on the Winograd path then
/// `maxPool2dReLU`, bit for bit. nil when it does not apply: not a 2×2 pool at stride 2, or a
/// convolution the path does not take.
func conv2dWinogradReLUMaxPool2d(_ x: Tensor, weight: Tensor, bias: Tensor?, config: Conv2dConfig, pool: Pool2dConfig) -> Tensor? {
    guard pool == Pool2dConfig(kernel: (2, 2)), x.rank == 4, weight.rank == 4 else { return nil }
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    guard WinogradConvolution.accepts(geo), geo.n > 0, geo.h >= 2, geo.w >= 2 else { return nil }
    if let bias { precondition(bias.shape == [geo.o], "conv2dReLUMaxPool2d: bias \(bias.shape) for \(geo.o) output channels") }
    let out = Tensor(uninitializedShape: [geo.n, geo.o, geo.h / 2, geo.w / 2])
    var winners = [UInt8](repeating: 0, count: out.count)
    let kept = GradMode.isEnabled && weight.requiresGrad ? TensorStorage(count: WinogradConvolution.keptCount(geo)) : nil
    winners.withUnsafeMutableBufferPointer {
        WinogradConvolution.forward(geo, x: x.data, weight: weight.data, bias: bias?.data, into: out.data, winners: $0.baseAddress!,
                                    kept: kept?.pointer)
    }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.result(out, inputs: inputs, .conv2dWinogradReLUMaxPool(config, winners: winners, kept: kept))
}

/// Gradients of `conv2dWinogradReLUMaxPool2d` from the pooled gradient.
func conv2dWinogradReLUMaxPoolBackward(x: Tensor, weight: Tensor, hasBias: Bool, config: Conv2dConfig, winners: [UInt8],
                                       kept: TensorStorage?, grad: Tensor, needInput: Bool, needWeight: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, config: config)
    return winners.withUnsafeBufferPointer {
        WinogradConvolution.backward(geo, x: x.data, weight: weight.data, grad: .pooled(grad.data, winners: $0.baseAddress!),
                                     kept: kept?.pointer, hasBias: hasBias, needInput: needInput, needWeight: needWeight)
    }
}
