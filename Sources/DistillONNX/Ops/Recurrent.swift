import DistillTensor
import Foundation

// Recurrent layers (RNN, GRU, LSTM) as PyTorch and Keras export them, and Einsum. Direct loops:
// sequence models in DistillKit's scope are small.

/// An activation function of the recurrent operators, by its ONNX name.
func recurrentActivation(_ name: String, alpha: Float?, beta: Float?) throws -> (Float) -> Float {
    switch name.lowercased() {
    case "sigmoid": return { 1 / (1 + Foundation.exp(-$0)) }
    case "tanh": return { Foundation.tanh($0) }
    case "relu": return { Swift.max($0, 0) }
    case "affine": let a = alpha ?? 1, b = beta ?? 0; return { a * $0 + b }
    case "leakyrelu": let a = alpha ?? 0.01; return { $0 >= 0 ? $0 : a * $0 }
    case "thresholdedrelu": let a = alpha ?? 1; return { $0 > a ? $0 : 0 }
    case "scaledtanh": let a = alpha ?? 1, b = beta ?? 1; return { a * Foundation.tanh(b * $0) }
    case "hardsigmoid": let a = alpha ?? 0.2, b = beta ?? 0.5; return { Swift.max(0, Swift.min(1, a * $0 + b)) }
    case "elu": let a = alpha ?? 1; return { $0 >= 0 ? $0 : a * (Foundation.exp($0) - 1) }
    case "softsign": return { $0 / (1 + Swift.abs($0)) }
    case "softplus": return { Foundation.log1p(Foundation.exp($0)) }
    default: throw ONNXError("activation '\(name)' is not supported")
    }
}

extension ONNXOps {
    enum Cell { case rnn, gru, lstm }

    /// The shared driver of RNN, GRU and LSTM: gates G per step (1, 3 or 4 blocks of `hidden`).
    static func recurrent(_ c: OpContext, _ cell: Cell) throws -> [ONNXValue] {
        let a = c.attributes
        var x = try c.float(0)
        let w = try c.float(1), r = try c.float(2), b = try c.optionalFloat(3)
        let lens = try c.optionalInts(4)
        let gates = cell == .rnn ? 1 : (cell == .gru ? 3 : 4)
        guard let hidden = try a.int("hidden_size", in: 1...Int.max) ?? (w.rank == 3 ? w.shape[1] / gates : nil) else {
            throw ONNXError("hidden_size is required")
        }
        let direction = try a.string("direction", "forward")
        guard ["forward", "reverse", "bidirectional"].contains(direction) else {
            throw ONNXError("direction \(quoted(direction)) must be forward, reverse or bidirectional")
        }
        let directions = direction == "bidirectional" ? 2 : 1
        let layout = try a.int("layout", 0, in: 0...1)!
        guard x.rank == 3 else { throw ONNXError("X \(x.shape) must be 3-D") }
        if layout == 1 { x = try transposed(.float(x), [1, 0, 2]).floatTensor! }
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
            initialH = try initialH.map { try transposed(.float($0), [1, 0, 2]).floatTensor! }
            initialC = try initialC.map { try transposed(.float($0), [1, 0, 2]).floatTensor! }
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
        let names = try a.strings("activations") ?? []
        let alphas = try a.floats("activation_alpha") ?? [], betas = try a.floats("activation_beta") ?? []
        let perDirection = cell == .rnn ? 1 : (cell == .gru ? 2 : 3)
        let defaults = cell == .rnn ? ["Tanh"] : (cell == .gru ? ["Sigmoid", "Tanh"] : ["Sigmoid", "Tanh", "Tanh"])
        let clip = try a.float("clip")
        let linearBeforeReset = try a.int("linear_before_reset", 0) == 1
        let inputForget = try a.int("input_forget", 0) == 1

        var y = [Float](repeating: 0, count: steps * directions * batch * hidden)
        var yh = [Float](repeating: 0, count: directions * batch * hidden), yc = yh
        for d in 0..<directions {
            var fs: [(Float) -> Float] = []
            for k in 0..<perDirection {
                let i = d * perDirection + k
                fs.append(try recurrentActivation(i < names.count ? names[i] : defaults[k], alpha: i < alphas.count ? alphas[i] : nil,
                                                  beta: i < betas.count ? betas[i] : nil))
            }
            let reverse = direction == "reverse" || d == 1
            var h = [Float](repeating: 0, count: batch * hidden), cState = h
            if let initialH { for i in 0..<(batch * hidden) { h[i] = initialH.data[d * batch * hidden + i] } }
            if let initialC { for i in 0..<(batch * hidden) { cState[i] = initialC.data[d * batch * hidden + i] } }
            let wd = w.data + d * gates * hidden * inputSize, rd = r.data + d * gates * hidden * hidden
            let wb = b.map { $0.data + d * 2 * gates * hidden }, rb = wb.map { $0 + gates * hidden }
            for step in 0..<steps {
                let t = reverse ? steps - 1 - step : step
                for n in 0..<batch {
                    let length = lens.map { $0[n] } ?? steps
                    if t >= length { continue }  // past this sequence's end: state frozen, output zero
                    let xt = x.data + (t * batch + n) * inputSize
                    let hPrev = Array(h[(n * hidden)..<((n + 1) * hidden)]), cPrev = Array(cState[(n * hidden)..<((n + 1) * hidden)])
                    // xw[g] = Xt·W_gᵀ + Wb_g, hr[g] = Ht−1·R_gᵀ + Rb_g
                    var xw = [Float](repeating: 0, count: gates * hidden), hr = xw
                    for g in 0..<(gates * hidden) {
                        var s: Float = wb?[g] ?? 0
                        for k in 0..<inputSize { s += xt[k] * wd[g * inputSize + k] }
                        xw[g] = s
                        var q: Float = rb?[g] ?? 0
                        for k in 0..<hidden { q += hPrev[k] * rd[g * hidden + k] }
                        hr[g] = q
                    }
                    func clipped(_ v: Float) -> Float { clip.map { Swift.max(-$0, Swift.min($0, v)) } ?? v }
                    let resetGates = cell == .gru ? (0..<hidden).map { fs[0](clipped(xw[hidden + $0] + hr[hidden + $0])) } : []
                    for j in 0..<hidden {
                        let out: Float
                        switch cell {
                        case .rnn:
                            out = fs[0](clipped(xw[j] + hr[j]))
                        case .gru:  // gates z, r, h
                            let z = fs[0](clipped(xw[j] + hr[j]))
                            var candidate: Float
                            if linearBeforeReset {
                                candidate = xw[2 * hidden + j] + resetGates[j] * hr[2 * hidden + j]
                            } else {  // (r ⊙ Ht−1)·R_hᵀ + Rb_h
                                var q: Float = rb?[2 * hidden + j] ?? 0
                                for k in 0..<hidden { q += resetGates[k] * hPrev[k] * rd[(2 * hidden + j) * hidden + k] }
                                candidate = xw[2 * hidden + j] + q
                            }
                            candidate = fs[1](clipped(candidate))
                            out = (1 - z) * candidate + z * hPrev[j]
                        case .lstm:  // gates i, o, f, c; peepholes i, o, f
                            let p = peepholes.map { $0.data + d * 3 * hidden }
                            let iGate = fs[0](clipped(xw[j] + hr[j] + (p.map { $0[j] * cPrev[j] } ?? 0)))
                            var fGate = fs[0](clipped(xw[2 * hidden + j] + hr[2 * hidden + j] + (p.map { $0[2 * hidden + j] * cPrev[j] } ?? 0)))
                            if inputForget { fGate = 1 - iGate }
                            let candidate = fs[1](clipped(xw[3 * hidden + j] + hr[3 * hidden + j]))
                            let cNew = fGate * cPrev[j] + iGate * candidate
                            let oGate = fs[0](clipped(xw[hidden + j] + hr[hidden + j] + (p.map { $0[hidden + j] * cNew } ?? 0)))
                            cState[n * hidden + j] = cNew
                            out = oGate * fs[2](cNew)
                        }
                        h[n * hidden + j] = out
                        y[((t * directions + d) * batch + n) * hidden + j] = out
                    }
                }
            }
            for i in 0..<(batch * hidden) { yh[d * batch * hidden + i] = h[i]; yc[d * batch * hidden + i] = cState[i] }
        }
        var outY = floatValue([steps, directions, batch, hidden], y)
        var outH = floatValue([directions, batch, hidden], yh), outC = floatValue([directions, batch, hidden], yc)
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
