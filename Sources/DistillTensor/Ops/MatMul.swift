// Matrix products through BLAS: matmul (batched) and the fused linear layer y = x·Wᵀ + b.

/// Raw batched product without autodiff: `op(a) · op(b)` where op transposes the last two axes
/// when asked. `a` is [..., m, k] (or [..., k, m] transposed); `b` is [k, n] (shared by every
/// batch) or has `a`'s batch axes. `split`: how a large product is shared across threads.
func matmulKernel(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                  split: BLAS.Split = .automatic) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "matmul: needs rank ≥ 2 operands, got \(a.shape) and \(b.shape)")
    let ar = a.shape.suffix(2), br = b.shape.suffix(2)
    let (m, ka) = transposeA ? (ar.last!, ar.first!) : (ar.first!, ar.last!)
    let (kb, n) = transposeB ? (br.last!, br.first!) : (br.first!, br.last!)
    precondition(ka == kb, "matmul: inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
    let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
    precondition(batchB.isEmpty || batchA == batchB, "matmul: batch axes differ: \(a.shape) · \(b.shape)")
    let batches = batchA.reduce(1, *)
    let out = Tensor(uninitializedShape: batchA + [m, n])
    if batchB.isEmpty && !transposeA {  // fold the batch into the rows: one large GEMM
        BLAS.sgemm(transposeB: transposeB, m: batches * m, n: n, k: ka, a: a.data, lda: ar.last!,
                   b: b.data, ldb: br.last!, c: out.data, ldc: n, split: split)
        return out
    }
    for i in 0..<batches {
        BLAS.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: ka,
                   a: a.data + i * ar.first! * ar.last!, lda: ar.last!,
                   b: b.data + (batchB.isEmpty ? 0 : i * br.first! * br.last!), ldb: br.last!,
                   c: out.data + i * m * n, ldc: n, split: split)
    }
    return out
}

extension Tensor {
    /// Matrix product `a · b`. `a`: [..., m, k]; `b`: [k, n] or [..., k, n] with `a`'s batch axes.
    public func matmul(_ b: Tensor) -> Tensor {
        Tensor.result(matmulKernel(self, b), inputs: [self, b], .matmul)
    }
}

/// The affine map of a fully connected layer, `y = x · Wᵀ + b` (PyTorch's `F.linear`).
/// x: [..., in], weight: [out, in], bias: [out] or nil → [..., out].
/// A large product is split across threads along the output features, as are the weight's
/// gradient and Adam's update, so in those three steps each row of the weight stays with one core
/// (the input's gradient, `g·W`, is split by batch rows and reads all of it).
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    precondition(weight.rank == 2 && x.rank >= 1 && x.shape.last == weight.shape[1],
                 "linear: input \(x.shape) does not fit weight \(weight.shape) (expects last axis \(weight.shape.count == 2 ? weight.shape[1] : -1))")
    let inF = weight.shape[1], outF = weight.shape[0]
    let rows = x.count / Swift.max(inF, 1)
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outF])
    if let bias {
        precondition(bias.shape == [outF], "linear: bias \(bias.shape) for \(outF) outputs")
        for r in 0..<rows { (out.data + r * outF).update(from: bias.data, count: outF) }
    }
    BLAS.sgemm(transposeB: true, m: rows, n: outF, k: inF, a: x.data, lda: inF, b: weight.data, ldb: inF,
               beta: bias == nil ? 0 : 1, c: out.data, ldc: outF, split: .columns)
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.result(out, inputs: inputs, .linear)
}
