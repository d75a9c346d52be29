import CKernels
import DistillTensor
import Foundation

// Recurrent layers (RNN, GRU, LSTM) as PyTorch and Keras export them, and Einsum.
//
// A recurrent node runs as a fused loop over buffers allocated once per call: the input
// projection X·Wᵀ + biases of a block of time steps is one GEMM, then each step is one recurrent
// product H·Rᵀ (`dk_linear_packed` over Rᵀ packed once per weight; BLAS on CPUs without AVX-512, and with AVX2 past 16 rows a step)
// and one pass over the gates with vector sigmoid and tanh (Sources/CKernels/recurrent.c). Batch
// rows never interact, so a large batch splits its rows across the cores, each core running the
// whole sequence for its rows.

/// An activation function of the recurrent operators, by its ONNX name, applied to a block of
/// pre-activations in place (sigmoid and tanh, the defaults, by vector kernels).
enum RecurrentActivation: Sendable, Equatable {
    case sigmoid, tanh, relu, softsign, softplus
    case affine(Float, Float), leakyRelu(Float), thresholdedRelu(Float), scaledTanh(Float, Float)
    case hardSigmoid(Float, Float), elu(Float)

    init(_ name: String, alpha: Float?, beta: Float?) throws {
        switch name.lowercased() {
        case "sigmoid": self = .sigmoid
        case "tanh": self = .tanh
        case "relu": self = .relu
        case "affine": self = .affine(alpha ?? 1, beta ?? 0)
        case "leakyrelu": self = .leakyRelu(alpha ?? 0.01)
        case "thresholdedrelu": self = .thresholdedRelu(alpha ?? 1)
        case "scaledtanh": self = .scaledTanh(alpha ?? 1, beta ?? 1)
        case "hardsigmoid": self = .hardSigmoid(alpha ?? 0.2, beta ?? 0.5)
        case "elu": self = .elu(alpha ?? 1)
        case "softsign": self = .softsign
        case "softplus": self = .softplus
        default: throw ONNXError("activation '\(name)' is not supported")
        }
    }

    /// Replaces each of the `count` values at `x` by the function of it.
    func apply(_ x: UnsafeMutablePointer<Float>, _ count: Int) {
        switch self {
        case .sigmoid: dk_sigmoid_inplace(x, count)
        case .tanh: dk_tanh_inplace(x, count)
        case .relu: for i in 0..<count { x[i] = Swift.max(x[i], 0) }
        case .affine(let a, let b): for i in 0..<count { x[i] = a * x[i] + b }
        case .leakyRelu(let a): for i in 0..<count where x[i] < 0 { x[i] *= a }
        case .thresholdedRelu(let a): for i in 0..<count where !(x[i] > a) { x[i] = 0 }
        case .scaledTanh(let a, let b):
            for i in 0..<count { x[i] *= b }
            dk_tanh_inplace(x, count)
            for i in 0..<count { x[i] *= a }
        case .hardSigmoid(let a, let b): for i in 0..<count { x[i] = Swift.max(0, Swift.min(1, a * x[i] + b)) }
        case .elu(let a): for i in 0..<count where x[i] < 0 { x[i] = a * (Foundation.exp(x[i]) - 1) }
        case .softsign: for i in 0..<count { x[i] = x[i] / (1 + Swift.abs(x[i])) }
        case .softplus: for i in 0..<count { x[i] = Foundation.log1p(Foundation.exp(x[i])) }
        }
    }
}

/// Rᵀ (or Wᵀ) of a recurrent node in `dk_linear_packed`'s layout, per direction and group of the
/// weight's rows, packed on the first run and kept while the weight is the same tensor (it is
/// almost always an initializer).
final class PackedRecurrentWeights: @unchecked Sendable {
    private let lock = NSLock()
    private var source: (storage: TensorStorage, shape: [Int], groups: [[Int]])?
    private var packed: [[[Float]]] = []

    /// The packing of `r` ([directions, gates·hidden, inner]): for direction d and group k, the
    /// rows `groups[k]` of R[d] transposed to [inner][padded size], zero-padded to a multiple of 16.
    func packs(for r: Tensor, groups: [[Int]]) -> [[[Float]]] {
        lock.lock()
        defer { lock.unlock() }
        if let source, source.storage === r.storage, source.shape == r.shape, source.groups == groups { return packed }
        let (directions, rows, hidden) = (r.shape[0], r.shape[1], r.shape[2])
        packed = (0..<directions).map { d in
            groups.map { group in
                let padded = (group.count + 15) / 16 * 16
                var out = [Float](repeating: 0, count: hidden * padded)
                let rd = r.data + d * rows * hidden
                for (j, row) in group.enumerated() {
                    for k in 0..<hidden { out[k * padded + j] = rd[row * hidden + k] }
                }
                return out
            }
        }
        source = (r.storage, r.shape, groups)
        return packed
    }
}

extension ONNXOps {
    enum Cell: Sendable { case rnn, gru, lstm }

    /// What a recurrent node reads from its attributes, parsed on the first run.
    struct RecurrentAttributes: Sendable {
        let hidden: Int?
        let direction: String, directions: Int, layout: Int
        /// Per direction: f, g (GRU, LSTM), h (LSTM).
        let activations: [[RecurrentActivation]]
        let clip: Float?
        let linearBeforeReset: Bool, inputForget: Bool

        init(_ a: Attributes, _ cell: Cell) throws {
            hidden = try a.int("hidden_size", in: 1...Int.max)
            direction = try a.string("direction", "forward")
            guard ["forward", "reverse", "bidirectional"].contains(direction) else {
                throw ONNXError("direction \(quoted(direction)) must be forward, reverse or bidirectional")
            }
            directions = direction == "bidirectional" ? 2 : 1
            layout = try a.int("layout", 0, in: 0...1)!
            let names = try a.strings("activations") ?? []
            let alphas = try a.floats("activation_alpha") ?? [], betas = try a.floats("activation_beta") ?? []
            let perDirection = cell == .rnn ? 1 : (cell == .gru ? 2 : 3)
            let defaults = cell == .rnn ? ["Tanh"] : (cell == .gru ? ["Sigmoid", "Tanh"] : ["Sigmoid", "Tanh", "Tanh"])
            activations = try (0..<directions).map { d in
                try (0..<perDirection).map { k in
                    let i = d * perDirection + k
                    return try RecurrentActivation(i < names.count ? names[i] : defaults[k], alpha: i < alphas.count ? alphas[i] : nil,
                                                   beta: i < betas.count ? betas[i] : nil)
                }
            }
            clip = try a.float("clip")
            linearBeforeReset = try a.int("linear_before_reset", 0) == 1
            inputForget = try a.int("input_forget", 0) == 1
        }
    }

    /// The shared driver of RNN, GRU and LSTM: gates G per step (1, 3 or 4 blocks of `hidden`).
    static func recurrent(_ c: OpContext, _ cell: Cell) throws -> [ONNXValue] {
        let attributes = try c.node.prepared.value("recurrent") { try RecurrentAttributes(c.attributes, cell) }
        let inputs = try RecurrentInputs(c, cell, attributes)
        let (x, w, r, b, lens, initialH, initialC, peepholes) = (inputs.x, inputs.w, inputs.r, inputs.b, inputs.lens, inputs.initialH, inputs.initialC, inputs.peepholes)
        let (steps, batch, inputSize, hidden, gates, rows) = (inputs.steps, inputs.batch, inputs.inputSize, inputs.hidden, inputs.gates, inputs.rows)
        let (direction, directions, layout) = (attributes.direction, attributes.directions, attributes.layout)
        let activations = attributes.activations, linearBeforeReset = attributes.linearBeforeReset

        // Biases: Wb and Rb of every gate join the input projection, except GRU's candidate
        // gate, whose Rb sits inside the reset product.
        var projectionBias = [Float](repeating: 0, count: directions * rows)
        var candidateBias: [Float]? = cell == .gru ? [Float](repeating: 0, count: directions * hidden) : nil
        if let b {
            for d in 0..<directions {
                for g in 0..<rows {
                    let wb = b.data[d * 2 * rows + g], rb = b.data[d * 2 * rows + rows + g]
                    if cell == .gru && g >= 2 * hidden {
                        projectionBias[d * rows + g] = wb
                        candidateBias![d * hidden + g - 2 * hidden] = rb
                    } else {
                        projectionBias[d * rows + g] = wb + rb
                    }
                }
            }
        }
        // Rows split across the cores when each part has real work (one row: 32 steps of a
        // 128-unit LSTM is 3.1M multiply-adds, ~0.1 ms). Otherwise, with Rᵀ packed, each step's
        // hidden units are split across the cores when R is large enough to be worth it.
        let perRow = steps * directions * rows * (inputSize + hidden)
        let chunks = batch >= 2 && batch * perRow >= 1 << 21 ? Swift.min(Parallel.workers, batch) : 1
        // Packed products with AVX-512; with AVX2 only for a few rows per step, where they beat BLAS.
        let packedLevel = dk_linear_packed_level()
        let packable = packedLevel == 2 || (packedLevel == 1 && batch <= 16)
        let unitParts = chunks == 1 && packable && rows * hidden >= 1 << 15 && (cell != .gru || linearBeforeReset)
            ? Swift.max(1, Swift.min(Parallel.workers, hidden / 32)) : 1
        let parts = (0..<unitParts).map { k in (hidden * k / unitParts)..<(hidden * (k + 1) / unitParts) }
        // The recurrent products: each part's units in every gate, except GRU with
        // linear_before_reset = 0, whose candidate gate multiplies r ⊙ H by its rows of R after the
        // update and reset gates (one part then).
        let productGates = cell == .gru && !linearBeforeReset ? 2 : gates
        var groups = parts.map { units in (0..<productGates).flatMap { k in (k * hidden + units.lowerBound)..<(k * hidden + units.upperBound) } }
        if cell == .gru && !linearBeforeReset { groups.append(Array((2 * hidden)..<rows)) }
        let packed = packable ? c.node.prepared.value("packed R") { PackedRecurrentWeights() }.packs(for: r, groups: groups) : nil
        // Wᵀ packed the same way, for the input projection: faster than BLAS, which packs W again
        // on every call (measured 1.2-2× at 1-128 rows of a 64 × 512 W).
        let packedW = packable ? c.node.prepared.value("packed W") { PackedRecurrentWeights() }.packs(for: w, groups: [Array(0..<rows)]) : nil

        let y = Tensor(uninitializedShape: [steps, directions, batch, hidden])
        let yh = Tensor(uninitializedShape: [directions, batch, hidden]), yc = Tensor(uninitializedShape: [directions, batch, hidden])
        let loop = RecurrentLoop(
            cell: cell, steps: steps, batch: batch, inputSize: inputSize, hidden: hidden, directions: directions,
            reverseOnly: direction == "reverse", x: x.data, w: w.data, r: r.data, projectionBias: projectionBias,
            candidateBias: candidateBias, lengths: lens, initialH: initialH?.data, initialC: initialC?.data,
            peepholes: peepholes?.data, activations: activations, clip: attributes.clip,
            linearBeforeReset: linearBeforeReset, inputForget: attributes.inputForget,
            parts: parts, groups: groups, packed: packed, packedInput: packedW.map { $0.map { $0[0] } }, y: y.data, yh: yh.data, yc: yc.data)
        withExtendedLifetime((x, w, r, initialH, initialC, peepholes)) {
            Parallel.forEachChunk(batch, chunks: chunks) { _, part in loop.run(rows: part, wholeBatch: chunks == 1) }
        }
        var outY = ONNXValue.float(y), outH = ONNXValue.float(yh), outC = ONNXValue.float(yc)
        if layout == 1 {
            outY = try transposed(outY, [2, 0, 1, 3])
            outH = try transposed(outH, [1, 0, 2]); outC = try transposed(outC, [1, 0, 2])
        }
        return cell == .lstm ? [outY, outH, outC] : [outY, outH]
    }

    static func RNN(_ c: OpContext) throws -> [ONNXValue] { try recurrent(c, .rnn) }
    static func GRU(_ c: OpContext) throws -> [ONNXValue] { try recurrent(c, .gru) }
    static func LSTM(_ c: OpContext) throws -> [ONNXValue] { try recurrent(c, .lstm) }

    /// Einsum: sums of products over the letters an equation names ("bij,bjk->bik"), with
    /// repeated letters (diagonals), implicit outputs and "..." for broadcast axes.
    static func Einsum(_ c: OpContext) throws -> [ONNXValue] {
        guard let equation = try c.attributes.string("equation")?.replacingOccurrences(of: " ", with: "") else {
            throw ONNXError("attribute 'equation' is required")
        }
        let operands = try c.inputs.compactMap { $0 }.map { v -> Tensor in
            guard case .float(let t) = v else { throw ONNXError("Einsum supports FLOAT operands, got \(v.typeDescription)") }
            return t
        }
        let sides = equation.components(separatedBy: "->")
        let terms = sides[0].components(separatedBy: ",")
        guard terms.count == operands.count, sides.count <= 2 else { throw ONNXError("equation \(quoted(equation)) does not fit \(operands.count) operands") }
        // Letters, and at most one "..." per term.
        for term in terms + sides.dropFirst() {
            let letters = term.replacingOccurrences(of: "...", with: "")
            guard letters.allSatisfy({ $0.isASCII && $0.isLetter }), term.components(separatedBy: "...").count <= 2 else {
                throw ONNXError("equation \(quoted(equation)): term \(quoted(term)) must be letters with at most one '...'")
            }
        }
        // Ellipsis axes become the symbols "0", "1", ... aligned from the right.
        let ellipsisRank = try zip(terms, operands).map { term, t -> Int in
            let letters = term.replacingOccurrences(of: "...", with: "").count
            guard t.rank >= letters else { throw ONNXError("term '\(term)' has more letters than operand \(t.shape) has axes") }
            return term.contains("...") ? t.rank - letters : 0
        }.max() ?? 0
        let ellipsis = (0..<ellipsisRank).map { Character(UnicodeScalar(0xE000 + $0)!) }  // private-use symbols
        func expand(_ term: String, rank: Int?) -> [Character] {
            guard term.contains("...") else { return Array(term) }
            let parts = term.components(separatedBy: "...")
            let count = rank.map { $0 - parts[0].count - parts[1].count } ?? ellipsisRank
            return Array(parts[0]) + Array(ellipsis.suffix(count)) + Array(parts[1])
        }
        let inputSymbols = zip(terms, operands).map { expand($0, rank: $1.rank) }
        var extents: [Character: Int] = [:]
        for (symbols, t) in zip(inputSymbols, operands) {
            guard symbols.count == t.rank else { throw ONNXError("term for operand \(t.shape) names \(symbols.count) axes") }
            for (s, n) in zip(symbols, t.shape) {
                if let e = extents[s], e != n {
                    guard ellipsis.contains(s), e == 1 || n == 1 else { throw ONNXError("axis '\(s)' has extents \(e) and \(n)") }
                    extents[s] = Swift.max(e, n)
                } else { extents[s] = n }
            }
        }
        let outputSymbols: [Character]
        if sides.count == 2 { outputSymbols = expand(sides[1], rank: nil) } else {
            let counts = inputSymbols.joined().reduce(into: [Character: Int]()) { $0[$1, default: 0] += 1 }
            outputSymbols = ellipsis + counts.filter { $0.value == 1 && !ellipsis.contains($0.key) }.map(\.key).sorted()
        }
        for s in outputSymbols where extents[s] == nil { throw ONNXError("output axis '\(s)' does not appear in the inputs") }
        guard Set(outputSymbols).count == outputSymbols.count else { throw ONNXError("equation \(quoted(equation)) repeats an output letter") }
        let all = outputSymbols + extents.keys.filter { !outputSymbols.contains($0) }.sorted()
        let shape = all.map { extents[$0]! }
        let outShape = outputSymbols.map { extents[$0]! }
        // Strides of each operand (and of the output) over the loop symbols; repeated letters add up (diagonals).
        func strides(_ symbols: [Character], _ dims: [Int]) -> [Int] {
            let own = stridesOf(dims)
            return all.map { s in symbols.indices.filter { symbols[$0] == s && dims[$0] != 1 }.reduce(0) { $0 + own[$1] } }
        }
        let loopStrides = zip(inputSymbols, operands).map { strides($0, $1.shape) } + [strides(outputSymbols, outShape)]
        try checkedShape(outShape, elementBytes: 4)
        try checkWork(CheckedSize.product(shape), "the equation \(quoted(equation))")
        let out = Tensor.zeros(outShape)
        forEachStrided(shape, loopStrides) { _, offs in
            var product: Float = 1
            for (k, t) in operands.enumerated() { product *= t.data[offs[k]] }
            out.data[offs[operands.count]] += product
        }
        return [.float(out)]
    }
}

/// One recurrent node's computation (inputs checked by `ONNXOps.recurrent`) over a range of
/// batch rows: every direction and step for those rows, writing their parts of Y, Y_h and Y_c.
///
/// A step's hidden units can be split into parts run on different cores (`parts`): each part
/// multiplies the previous H by its own columns of Rᵀ (packed per part, so each core keeps its half
/// of R in its own cache) and updates its own units, writing the next H into a second buffer.
/// This is how a batch of one uses both cores: its time at batch 1 is mostly reading R.
struct RecurrentLoop: @unchecked Sendable {
    let cell: ONNXOps.Cell
    let steps: Int, batch: Int, inputSize: Int, hidden: Int, directions: Int
    /// direction = "reverse" (with "bidirectional", direction 1 runs backwards).
    let reverseOnly: Bool
    /// X [steps, batch, inputSize], W [directions, gates·hidden, inputSize], R [directions, gates·hidden, hidden].
    let x: UnsafeMutablePointer<Float>, w: UnsafeMutablePointer<Float>, r: UnsafeMutablePointer<Float>
    /// [directions, gates·hidden]: added to X·Wᵀ (Wb + Rb; Wb alone for GRU's candidate gate).
    let projectionBias: [Float]
    /// GRU: [directions, hidden], Rb of the candidate gate, added to its recurrent product.
    let candidateBias: [Float]?
    /// sequence_lens: a row's steps from its length on leave its state alone and output zeros.
    let lengths: [Int]?
    /// [directions, batch, hidden] each; P [directions, 3·hidden].
    let initialH: UnsafeMutablePointer<Float>?, initialC: UnsafeMutablePointer<Float>?, peepholes: UnsafeMutablePointer<Float>?
    /// Per direction: f, g (GRU, LSTM), h (LSTM).
    let activations: [[RecurrentActivation]]
    let clip: Float?
    let linearBeforeReset: Bool, inputForget: Bool
    /// The hidden units each part of a step updates (one part, or one per core).
    let parts: [Range<Int>]
    /// Rows of R in each recurrent product: part p's gates first (every gate, or GRU's z and r
    /// when linear_before_reset = 0), then GRU's candidate gate in that case.
    let groups: [[Int]]
    /// Rᵀ per direction and group for `dk_linear_packed`; nil: BLAS products with R (then each
    /// group is a contiguous run of rows).
    let packed: [[[Float]]]?
    /// Wᵀ per direction, packed the same way (nil: BLAS products with W).
    let packedInput: [[Float]]?
    /// Y [steps, directions, batch, hidden], Y_h and Y_c [directions, batch, hidden].
    let y: UnsafeMutablePointer<Float>, yh: UnsafeMutablePointer<Float>, yc: UnsafeMutablePointer<Float>

    private var gates: Int { cell == .rnn ? 1 : (cell == .gru ? 3 : 4) }

    /// The buffers of one `run`, shared by the parts of a step.
    private struct Buffers: @unchecked Sendable {
        /// Gate pre-activations of a block of steps: X·Wᵀ + biases, [steps, rows, gates·hidden].
        let projected: UnsafeMutablePointer<Float>
        /// Each group's recurrent product, [rows, group size].
        let products: [UnsafeMutablePointer<Float>]
        /// H before and after the step, [rows, hidden] each; C, [rows, hidden], updated in place.
        var previous: UnsafeMutablePointer<Float>, next: UnsafeMutablePointer<Float>
        let cellState: UnsafeMutablePointer<Float>
        /// [rows, hidden]: h(C) for LSTM, r ⊙ H for GRU.
        let scratch: UnsafeMutablePointer<Float>
    }

    /// Runs rows `part`; `wholeBatch` when it is every row (no other core runs at the same time),
    /// so that a block's input projection is one product over all its steps.
    func run(rows part: Range<Int>, wholeBatch: Bool) {
        let n = part.count, h = hidden, g = gates * hidden
        // Gates of up to 1 MiB of steps are projected at once: all 32 steps of a batch-1 sequence.
        let blockSteps = Swift.max(1, Swift.min(steps, (1 << 18) / Swift.max(n * g, 1)))
        var buffers = Buffers(
            projected: .allocate(capacity: blockSteps * n * g), products: groups.map { .allocate(capacity: n * $0.count) },
            previous: .allocate(capacity: n * h), next: .allocate(capacity: n * h), cellState: .allocate(capacity: n * h),
            scratch: .allocate(capacity: n * h))
        defer {
            for p in [buffers.projected, buffers.previous, buffers.next, buffers.cellState, buffers.scratch] + buffers.products { p.deallocate() }
        }
        for d in 0..<directions {
            for i in 0..<n {
                let source = (d * batch + part.lowerBound + i) * h
                if let initialH { (buffers.previous + i * h).update(from: initialH + source, count: h) } else { (buffers.previous + i * h).update(repeating: 0, count: h) }
                if let initialC { (buffers.cellState + i * h).update(from: initialC + source, count: h) } else { (buffers.cellState + i * h).update(repeating: 0, count: h) }
            }
            let reverse = reverseOnly || d == 1
            var block = -1
            for step in 0..<steps {
                let t = reverse ? steps - 1 - step : step
                if t / blockSteps != block {
                    block = t / blockSteps
                    project(direction: d, firstStep: block * blockSteps, count: Swift.min(blockSteps, steps - block * blockSteps),
                            rows: part, wholeBatch: wholeBatch, into: buffers.projected)
                }
                let gatesAt = buffers.projected + (t - block * blockSteps) * n * g
                if parts.count == 1 {
                    advance(t, d, part, units: 0, gatesAt, buffers)
                } else {
                    let shared = buffers, gatesShared = SharedPointer(gatesAt)
                    Parallel.forEachChunk(parts.count, chunks: parts.count) { p, _ in self.advance(t, d, part, units: p, gatesShared.p, shared) }
                }
                swap(&buffers.previous, &buffers.next)
            }
            for i in 0..<n {
                let target = (d * batch + part.lowerBound + i) * h
                (yh + target).update(from: buffers.previous + i * h, count: h)
                (yc + target).update(from: buffers.cellState + i * h, count: h)
            }
        }
    }

    /// X·Wᵀ + biases for `count` steps from `firstStep`, rows `part`: [count, part.count, gates·hidden].
    private func project(direction d: Int, firstStep: Int, count: Int, rows part: Range<Int>, wholeBatch: Bool,
                         into out: UnsafeMutablePointer<Float>) {
        let n = part.count, g = gates * hidden
        if let packedInput {
            let padded = (g + 15) / 16 * 16
            var bias = [Float](repeating: 0, count: padded)
            for j in 0..<g { bias[j] = projectionBias[d * g + j] }
            packedInput[d].withUnsafeBufferPointer { wt in
                if wholeBatch {  // the steps' rows are contiguous in X
                    _ = dk_linear_packed(x + firstStep * batch * inputSize, wt.baseAddress!, bias, out, count * n, inputSize, g, padded, 0)
                } else {
                    for s in 0..<count {
                        _ = dk_linear_packed(x + ((firstStep + s) * batch + part.lowerBound) * inputSize, wt.baseAddress!, bias,
                                             out + s * n * g, n, inputSize, g, padded, 0)
                    }
                }
            }
            return
        }
        projectionBias.withUnsafeBufferPointer { bias in
            for row in 0..<(count * n) { (out + row * g).update(from: bias.baseAddress! + d * g, count: g) }
        }
        let wd = w + d * g * inputSize
        if wholeBatch {  // the steps' rows are contiguous in X
            BLAS.sgemm(transposeB: true, m: count * n, n: g, k: inputSize, a: x + firstStep * batch * inputSize, lda: inputSize,
                       b: wd, ldb: inputSize, beta: 1, c: out, ldc: g)
        } else {
            for s in 0..<count {
                BLAS.sgemm(transposeB: true, m: n, n: g, k: inputSize, a: x + ((firstStep + s) * batch + part.lowerBound) * inputSize,
                           lda: inputSize, b: wd, ldb: inputSize, beta: 1, c: out + s * n * g, ldc: g, split: .none)
            }
        }
    }

    /// out [rows, group size] = input [rows, hidden] · R[direction, group's rows]ᵀ.
    private func multiply(_ input: UnsafePointer<Float>, direction d: Int, group k: Int, rows n: Int, into out: UnsafeMutablePointer<Float>) {
        let size = groups[k].count
        if let packed {
            packed[d][k].withUnsafeBufferPointer { p in
                _ = dk_linear_packed(input, p.baseAddress!, nil, out, n, hidden, size, (size + 15) / 16 * 16, 0)
            }
        } else {
            BLAS.sgemm(transposeB: true, m: n, n: size, k: hidden, a: input, lda: hidden,
                       b: r + (d * gates * hidden + groups[k][0]) * hidden, ldb: hidden, c: out, ldc: size, split: .none)
        }
    }

    /// Limits `count` pre-activations at `p` to ±clip, when the node sets one.
    @inline(__always) private func clipped(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        guard let clip else { return }
        for j in 0..<count { p[j] = Swift.max(-clip, Swift.min(clip, p[j])) }
    }

    /// One step of part `units` of the hidden units, for every row: the recurrent product of the
    /// part's gates, then the cell's update of those units.
    private func advance(_ t: Int, _ d: Int, _ part: Range<Int>, units p: Int, _ gatesAt: UnsafeMutablePointer<Float>, _ buffers: Buffers) {
        let n = part.count, h = hidden, g = gates * hidden
        let units = parts[p], m = units.count, u0 = units.lowerBound
        let product = buffers.products[p], productWidth = groups[p].count
        multiply(buffers.previous, direction: d, group: p, rows: n, into: product)
        let fs = activations[d]
        // Rows whose sequence has ended keep their state and output zeros.
        func live(_ i: Int) -> Bool { t < (lengths?[part.lowerBound + i] ?? steps) }
        for i in 0..<n where !live(i) {
            (y + ((t * directions + d) * batch + part.lowerBound + i) * h + u0).update(repeating: 0, count: m)
            (buffers.next + i * h + u0).update(from: buffers.previous + i * h + u0, count: m)
        }
        // Pre-activations of this part: gate k of row i at base(i) + k·hidden (X·Wᵀ + biases),
        // its recurrent product at product + i·productWidth + k·m.
        func base(_ i: Int) -> UnsafeMutablePointer<Float> { gatesAt + i * g + u0 }
        func addProducts(_ i: Int, gates count: Int) {
            for k in 0..<count {
                let pre = base(i) + k * h, q = product + i * productWidth + k * m
                for j in 0..<m { pre[j] += q[j] }
            }
        }
        switch cell {
        case .rnn:
            for i in 0..<n where live(i) {
                addProducts(i, gates: 1)
                let pre = base(i), next = buffers.next + i * h + u0
                clipped(pre, m)
                fs[0].apply(pre, m)
                next.update(from: pre, count: m)
            }
        case .gru:  // gates z, r, h
            for i in 0..<n where live(i) {
                addProducts(i, gates: 2)
                let z = base(i), reset = z + h
                clipped(z, m); clipped(reset, m)
                fs[0].apply(z, m); fs[0].apply(reset, m)
                if !linearBeforeReset {  // r ⊙ H, for the candidate's product (one part: m = hidden)
                    let previous = buffers.previous + i * h, resetState = buffers.scratch + i * h
                    for j in 0..<h { resetState[j] = reset[j] * previous[j] }
                }
            }
            if !linearBeforeReset {
                for i in 0..<n where !live(i) { (buffers.scratch + i * h).update(repeating: 0, count: h) }
                multiply(buffers.scratch, direction: d, group: parts.count, rows: n, into: buffers.products[parts.count])
            }
            candidateBias!.withUnsafeBufferPointer { biases in
                let bias = biases.baseAddress! + d * h + u0
                for i in 0..<n where live(i) {
                    let z = base(i), reset = z + h, pre = z + 2 * h
                    let previous = buffers.previous + i * h + u0, next = buffers.next + i * h + u0
                    if linearBeforeReset {  // r ⊙ (H·R_hᵀ + Rb_h)
                        let q = product + i * productWidth + 2 * m
                        for j in 0..<m { pre[j] += reset[j] * (q[j] + bias[j]) }
                    } else {  // (r ⊙ H)·R_hᵀ + Rb_h
                        let q = buffers.products[parts.count] + i * h
                        for j in 0..<m { pre[j] += q[j] + bias[j] }
                    }
                    clipped(pre, m)
                    fs[1].apply(pre, m)
                    for j in 0..<m { next[j] = (1 - z[j]) * pre[j] + z[j] * previous[j] }
                }
            }
        case .lstm:  // gates i, o, f, c; peepholes i, o, f
            let peep = peepholes.map { $0 + d * 3 * h + u0 }
            for i in 0..<n where live(i) {
                addProducts(i, gates: 4)
                let input = base(i), outputGate = input + h, forget = input + 2 * h, candidate = input + 3 * h
                let c = buffers.cellState + i * h + u0, next = buffers.next + i * h + u0, squashed = buffers.scratch + i * h + u0
                if let peep {
                    for j in 0..<m { input[j] += peep[j] * c[j]; forget[j] += peep[2 * h + j] * c[j] }
                }
                clipped(input, m); clipped(forget, m); clipped(candidate, m)
                fs[0].apply(input, m); fs[0].apply(forget, m); fs[1].apply(candidate, m)
                if inputForget { for j in 0..<m { forget[j] = 1 - input[j] } }
                for j in 0..<m { c[j] = forget[j] * c[j] + input[j] * candidate[j] }
                if let peep { for j in 0..<m { outputGate[j] += peep[h + j] * c[j] } }
                clipped(outputGate, m)
                fs[0].apply(outputGate, m)
                squashed.update(from: c, count: m)
                fs[2].apply(squashed, m)
                for j in 0..<m { next[j] = outputGate[j] * squashed[j] }
            }
        }
        for i in 0..<n where live(i) {
            (y + ((t * directions + d) * batch + part.lowerBound + i) * h + u0).update(from: buffers.next + i * h + u0, count: m)
        }
    }
}

/// The inputs of RNN, GRU and LSTM, read and checked against each other: X, W, R, B,
/// sequence_lens, initial_h, initial_c and P (LSTM peepholes), with layout 1 turned into layout 0.
struct RecurrentInputs {
    let x: Tensor, w: Tensor, r: Tensor, b: Tensor?
    let lens: [Int]?
    let initialH: Tensor?, initialC: Tensor?, peepholes: Tensor?
    /// Gates per step: 1 (RNN), 3 (GRU) or 4 (LSTM); rows = gates · hidden.
    let steps: Int, batch: Int, inputSize: Int, hidden: Int, gates: Int, rows: Int

    init(_ c: OpContext, _ cell: ONNXOps.Cell, _ attributes: ONNXOps.RecurrentAttributes) throws {
        var x = try c.float(0)
        let w = try c.float(1), r = try c.float(2), b = try c.optionalFloat(3)
        let lens = try c.optionalInts(4)
        let gates = cell == .rnn ? 1 : (cell == .gru ? 3 : 4)
        guard let hidden = attributes.hidden ?? (w.rank == 3 ? w.shape[1] / gates : nil), hidden >= 1 else {
            throw ONNXError("hidden_size is required")
        }
        let (directions, layout) = (attributes.directions, attributes.layout)
        guard x.rank == 3 else { throw ONNXError("X \(x.shape) must be 3-D") }
        if layout == 1 { x = try ONNXOps.transposed(.float(x), [1, 0, 2]).floatTensor! }
        let (steps, batch, inputSize) = (x.shape[0], x.shape[1], x.shape[2])
        let rows = try checkedProduct(gates, hidden, what: "hidden_size × gates")
        guard w.shape == [directions, rows, inputSize], r.shape == [directions, rows, hidden] else {
            throw ONNXError("W \(w.shape) and R \(r.shape) must be [\(directions), \(rows), \(inputSize)] and [\(directions), \(rows), \(hidden)]")
        }
        // W and R exist in memory, so from here hidden, rows and 2·rows are bounded by their sizes.
        if let b { guard b.shape == [directions, 2 * rows] else { throw ONNXError("B \(b.shape) must be [\(directions), \(2 * rows)]") } }
        var initialH = try c.optionalFloat(5), initialC = cell == .lstm ? try c.optionalFloat(6) : nil
        let peepholes = cell == .lstm ? try c.optionalFloat(7) : nil
        if layout == 1 {
            initialH = try initialH.map { try ONNXOps.transposed(.float($0), [1, 0, 2]).floatTensor! }
            initialC = try initialC.map { try ONNXOps.transposed(.float($0), [1, 0, 2]).floatTensor! }
        }
        for (name, t) in [("initial_h", initialH), ("initial_c", initialC)] {
            if let t, t.shape != [directions, batch, hidden] { throw ONNXError("\(name) \(t.shape) must be [\(directions), \(batch), \(hidden)]") }
        }
        if let p = peepholes, p.shape != [directions, 3 * hidden] { throw ONNXError("P \(p.shape) must be [\(directions), \(3 * hidden)]") }
        if let lens, lens.count != batch || lens.contains(where: { $0 < 0 || $0 > steps }) {
            throw ONNXError("sequence_lens must hold \(batch) lengths in 0...\(steps)")
        }
        try checkedShape([steps, directions, batch, hidden], elementBytes: 4)
        try checkWork(CheckedSize.product([steps, directions, batch, rows, inputSize + hidden]), "the recurrence", limit: Limits.maxMultiplyAdds)
        (self.x, self.w, self.r, self.b, self.lens, self.initialH, self.initialC, self.peepholes) = (x, w, r, b, lens, initialH, initialC, peepholes)
        (self.steps, self.batch, self.inputSize, self.hidden, self.gates, self.rows) = (steps, batch, inputSize, hidden, gates, rows)
    }
}
