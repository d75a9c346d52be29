import DistillTensor

/// The forward and backward passes of an MLP student (a `LinearChain`: `Linear` layers, each
/// optionally followed by `ReLU`) for training, with the first layer split across the cores.
///
/// Use it in place of the module when the loss depends on the logits only:
///
///     let logits = plan.forward(x)        // a leaf [N, C] that requires a gradient
///     let loss = kdLoss(student: logits, ...) + ...
///     loss.backward()                      // fills logits.grad
///     plan.backward(logits.grad!)          // adds ∂loss/∂W, ∂loss/∂b to the parameters' `grad`
///     optimizer.step()
///
/// Why: on the 2-core VM DistillKit is measured on (BENCHMARKS.md), a write to a cache line that the other core has read waits for
/// that core's copy to be invalidated: updating 100 KB the other core had read took 11 µs
/// against 1 µs otherwise, and at times (depending on where the host runs the two cores) 10×
/// more. The graph path splits each product on its own, so every step hands batches, weights and
/// gradients between the cores, and the second core gained nothing. Here the cores share almost
/// nothing that is written:
/// - The first layer's outputs are cut into a fixed number of blocks (eight), and each core takes a run of them:
///   those rows of its weight (the same rows `Adam` updates on that core), their activations,
///   errors and gradient. The runs follow the cores' measured speed (`BlockBalance`), so a core
///   the host slows down gets fewer blocks. Each core reads its own copy of the batch.
/// - The second layer is split along its inputs to match: each block adds its share of
///   the second layer's pre-activation (a partial sum) and, going back, computes that block of
///   the second layer's weight gradient and of the first layer's error.
/// - The calling thread sums the shares in block order (so the assignment never changes a bit
///   of the result) and runs the rest of the network (small, for a
///   student: 64 → 10 in the 784-64-10 MLP) and the loss.
/// Per step only the second layer's pre-activation shares and their gradient ([N, outputs of
/// layer 2]) and that layer's weight cross between cores.
///
/// Gradients equal the graph's up to float rounding. The gradient tensors are the plan's own,
/// reused at every step: after `zeroGrad` (which sets `grad` to nil) `backward` writes them
/// afresh; otherwise it adds to the existing `grad`. Models with dropout, a frozen parameter or
/// anything but `Linear`/`ReLU`/`Flatten` are not planned (`init` returns nil). One plan must not
/// run on two threads at once.
public final class TrainingPlan: @unchecked Sendable {
    let layers: [LinearChain.Layer]
    /// Values per example going in and coming out.
    public let inputSize: Int, outputSize: Int
    private var cores: [Core] = []
    /// Outputs of the layers between the first and the last, `rows × outputs` (nil for those two:
    /// the first's live in the cores' blocks, the last's in each call's logits tensor).
    private var hiddenActivations: [UnsafeMutablePointer<Float>?] = []
    private var errors: [UnsafeMutablePointer<Float>] = []
    private var rowCapacity = 0
    /// Each thread's copy of the batch (`threadInputRows × inputSize`; thread 0 may read the
    /// caller's instead).
    private var threadInputs: [UnsafeMutablePointer<Float>] = []
    private var threadInputRows = 0
    /// What the last `forward` saw: the caller's batch (kept alive: the caller's thread reads it
    /// again going back), its logits and how the first layer was split.
    private var parts = 1
    private var batch: Tensor?, logits: Tensor?
    /// Gradients handed to the parameters when they had none (see the type's note).
    private let weightGrads: [Tensor], biasGrads: [Tensor?]

    /// How the first layer's blocks are shared among the threads. The number of blocks is fixed
    /// (never the number of threads), so results are the same on any machine; which thread runs
    /// a block follows the threads' measured speed, so that a slow core does not hold the other
    /// back. `Adam` updates the weight's rows by `BlockBalance.firstLayer`, the default.
    public let balance: BlockBalance

    /// Plans `model` for examples of `exampleShape`, or returns nil when it is not a trainable
    /// `LinearChain` of that input size.
    public init?(_ model: Module, exampleShape: [Int], balance: BlockBalance = .firstLayer) {
        guard let chain = LinearChain(model), !chain.hasDropout,
              chain.layers.allSatisfy({ $0.weight.requiresGrad && ($0.bias?.requiresGrad ?? true) }),
              chain.layers[0].inputs == exampleShape.reduce(1, *) else { return nil }
        layers = chain.layers
        self.balance = balance
        inputSize = layers[0].inputs
        outputSize = layers[layers.count - 1].outputs
        weightGrads = layers.map { Tensor(uninitializedShape: $0.weight.shape) }
        biasGrads = layers.map { l in l.bias.map { Tensor(uninitializedShape: $0.shape) } }
    }

    deinit { (hiddenActivations.compactMap { $0 } + errors + threadInputs).forEach { $0.deallocate() } }

    /// Output of layer `k` (> 0) in the last forward pass.
    private func activation(_ k: Int) -> UnsafeMutablePointer<Float> { k == layers.count - 1 ? logits!.data : hiddenActivations[k]! }

    /// The logits for the `[N, ...]` batch `x`, as a leaf `[N, outputSize]` tensor that requires
    /// a gradient. Each worker core copies `x` for itself; `forward(rows:fill:)` lets each core
    /// build its copy from the source instead (the calling thread then never shares the batch).
    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank >= 1 && x.count == x.shape[0] * inputSize,
                     "TrainingPlan: input \(x.shape) does not hold examples of \(inputSize) values")
        let X = SharedPointer(x.data), count = x.count
        return forward(rows: x.shape[0], calling: x) { $0.update(from: X.p, count: count) }
    }

    /// The logits for a batch of `rows` examples that `fill(buffer)` writes (`rows × inputSize`
    /// values), called once on each core that takes part, concurrently.
    public func forward(rows n: Int, fill: @Sendable (UnsafeMutablePointer<Float>) -> Void) -> Tensor {
        forward(rows: n, calling: nil, fill: fill)
    }

    private func forward(rows n: Int, calling input: Tensor?, fill: @Sendable (UnsafeMutablePointer<Float>) -> Void) -> Tensor {
        let first = layers[0]
        batch = input
        let callerBatch = input.map { SharedPointer($0.data) }
        // The split depends on the problem's size only, never on the number of threads, so the
        // arithmetic (and every bit of the result) is the same on any machine.
        parts = n * first.inputs * first.outputs >= Self.minimumSplitWork && first.outputs >= 2 * balance.blocks ? balance.blocks : 1
        reserve(rows: n)
        let out = Tensor(uninitializedShape: [n, outputSize])
        logits = out
        let single = layers.count == 1
        eachThread { thread, blocks in
            // The caller's thread reads the caller's batch; any other fills its own copy once.
            let batch: UnsafeMutablePointer<Float>
            if let callerBatch, thread == 0 { batch = callerBatch.p } else { batch = self.threadInputs[thread]; fill(batch) }
            for b in blocks {
                self.cores[b].input = batch
                self.cores[b].forwardFirst(first, block: self.block(b), rows: n, second: single ? nil : self.layers[1], logits: single ? out.data : nil)
            }
        }
        if !single {  // the second layer's pre-activation: bias plus the cores' shares
            let second = layers[1], z = activation(1), width = second.outputs
            for r in 0..<n {
                let row = z + r * width
                if let b = second.bias { row.update(from: b.data, count: width) } else { row.update(repeating: 0, count: width) }
                for part in 0..<parts { let share = cores[part].secondShare + r * width; for o in 0..<width { row[o] += share[o] } }
            }
            if second.relu { clampNegatives(z, n * width) }
            for k in 2..<layers.count { Self.dense(layers[k], activation(k - 1), rows: n, into: activation(k)) }
        }
        out.requiresGrad = true
        return out
    }

    /// Back-propagates `gradient` (∂loss/∂logits, `[N, outputSize]`) from the last `forward` and
    /// adds the parameters' gradients to their `grad`.
    public func backward(_ gradient: Tensor) {
        guard let logits else { preconditionFailure("TrainingPlan.backward: no forward pass to go back through") }
        precondition(gradient.shape == logits.shape, "TrainingPlan.backward: gradient \(gradient.shape) for logits \(logits.shape)")
        let n = logits.shape[0], last = layers.count - 1
        let targets = layers.indices.map { k in
            Target(weight: target(layers[k].weight, fresh: weightGrads[k]), bias: layers[k].bias.map { target($0, fresh: biasGrads[k]!) })
        }
        // Layers after the first, on the calling thread, down to the second layer's error.
        var error = errors[0], spare = errors[1]
        error.update(from: gradient.data, count: n * outputSize)
        for k in stride(from: last, through: 1, by: -1) {
            let layer = layers[k]
            if layer.relu { maskInactive(error, activation(k), n * layer.outputs) }
            if let b = targets[k].bias { Self.sumRows(error, rows: n, width: layer.outputs, into: b) }
            if k == 1 { break }  // its weight gradient and the first layer's error: per core, below
            BLAS.sgemm(transposeA: true, m: layer.outputs, n: layer.inputs, k: n, a: error, lda: layer.outputs,
                       b: activation(k - 1), ldb: layer.inputs, beta: targets[k].weight.add ? 1 : 0,
                       c: targets[k].weight.pointer, ldc: layer.inputs, split: .none)
            BLAS.sgemm(m: n, n: layer.inputs, k: layer.outputs, a: error, lda: layer.outputs, b: layer.weight.data,
                       ldb: layer.inputs, c: spare, ldc: layer.inputs, split: .none)
            swap(&error, &spare)
        }
        let secondError = SharedPointer(error), G = SharedPointer(gradient.data)
        let first = layers[0], second = layers.count > 1 ? layers[1] : nil
        eachThread { _, blocks in
            for b in blocks {
                self.cores[b].backwardFirst(first, block: self.block(b), rows: n, second: second, secondError: secondError.p,
                                            logitsGradient: G.p, targets: targets)
            }
        }
    }

    /// Runs `body(thread, blocks)` with the first layer's blocks shared among the threads by
    /// their measured speed (`BlockBalance.firstLayer`, which `Adam` follows for the weight's
    /// rows), or on the calling thread when the layer is not split.
    private func eachThread(_ body: @Sendable (Int, Range<Int>) -> Void) {
        if parts == 1 { body(0, 0..<1) } else { Parallel.forEachBalancedRun(balance, body) }
    }

    /// Block `b` of the first layer's outputs: the rows of its weight that `Adam` updates as part
    /// `b` of that weight, on the same thread.
    private func block(_ b: Int) -> Range<Int> {
        let outputs = layers[0].outputs
        return (outputs * b / parts)..<(outputs * (b + 1) / parts)
    }

    /// Where one parameter's gradient goes: its `grad` (added to) or, when it has none, the
    /// plan's fresh tensor (overwritten).
    struct GradientTarget: @unchecked Sendable { let pointer: UnsafeMutablePointer<Float>; let add: Bool }
    struct Target: Sendable { let weight: GradientTarget; let bias: GradientTarget? }

    private func target(_ parameter: Tensor, fresh: Tensor) -> GradientTarget {
        if let grad = parameter.grad { return GradientTarget(pointer: grad.data, add: true) }
        parameter.grad = fresh
        return GradientTarget(pointer: fresh.data, add: false)
    }

    private func reserve(rows n: Int) {
        while cores.count < parts { cores.append(Core()) }
        let threads = parts == 1 ? 1 : min(Parallel.workers, parts)
        if n > threadInputRows || threadInputs.count < threads {
            threadInputs.forEach { $0.deallocate() }
            threadInputRows = max(n, threadInputRows)
            threadInputs = (0..<threads).map { _ in .allocate(capacity: threadInputRows * inputSize) }
        }
        for b in 0..<parts {
            cores[b].reserve(rows: n, block: block(b).count, secondWidth: layers.count > 1 ? layers[1].outputs : 0)
        }
        guard n > rowCapacity else { return }
        (hiddenActivations.compactMap { $0 } + errors).forEach { $0.deallocate() }
        hiddenActivations = layers.indices.map { k in k == 0 || k == layers.count - 1 ? nil : .allocate(capacity: n * layers[k].outputs) }
        let widest = layers.map { max($0.inputs, $0.outputs) }.max()!
        errors = (0..<2).map { _ in .allocate(capacity: n * widest) }
        rowCapacity = n
    }

    /// `y = x · Wᵀ + b` (then ReLU) for `rows` rows on this thread.
    static func dense(_ layer: LinearChain.Layer, _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let n = layer.outputs
        if let bias = layer.bias { for r in 0..<rows { (y + r * n).update(from: bias.data, count: n) } }
        BLAS.sgemm(transposeB: true, m: rows, n: n, k: layer.inputs, a: x, lda: layer.inputs, b: layer.weight.data,
                   ldb: layer.inputs, beta: layer.bias == nil ? 0 : 1, c: y, ldc: n, split: .none)
        if layer.relu { clampNegatives(y, rows * n) }
    }

    /// `target (+)= Σ_rows x` for an `rows × width` matrix x.
    static func sumRows(_ x: UnsafePointer<Float>, rows: Int, width: Int, into target: GradientTarget) {
        let out = target.pointer
        if !target.add { out.update(repeating: 0, count: width) }
        for r in 0..<rows { let row = x + r * width; for o in 0..<width { out[o] += row[o] } }
    }

    /// Batch size times the first layer's multiply-adds from which that layer is split across
    /// the cores (`distill bench kd --cached-teacher`: 128 × 784 × 64 gained 1.4× from two).
    static let minimumSplitWork = 1 << 21

    /// One block of the first layer's outputs, in buffers that only its thread writes.
    final class Core {
        private var rowCapacity = 0, blockCapacity = 0
        /// The batch this block read going forward (its thread's copy, or the caller's).
        var input: UnsafeMutablePointer<Float>!
        /// The block's activations after ReLU, and its error going back (`rows × block`).
        var hidden: UnsafeMutablePointer<Float> = .allocate(capacity: 0), hiddenError: UnsafeMutablePointer<Float> = .allocate(capacity: 0)
        /// The block's share of the second layer's pre-activation (`rows × outputs of layer 2`).
        var secondShare: UnsafeMutablePointer<Float> = .allocate(capacity: 0)

        func reserve(rows: Int, block: Int, secondWidth: Int) {
            guard rows > rowCapacity || block > blockCapacity else { return }
            [hidden, hiddenError, secondShare].forEach { $0.deallocate() }
            rowCapacity = max(rows, rowCapacity); blockCapacity = max(block, blockCapacity)
            hidden = .allocate(capacity: rowCapacity * blockCapacity)
            hiddenError = .allocate(capacity: rowCapacity * blockCapacity)
            secondShare = .allocate(capacity: rowCapacity * max(secondWidth, 1))
        }

        deinit { [hidden, hiddenError, secondShare].forEach { $0.deallocate() } }

        /// This block of the first layer, then its share of the second layer's pre-activation
        /// (or, for a one-layer model, its columns of the logits).
        func forwardFirst(_ first: LinearChain.Layer, block: Range<Int>, rows: Int, second: LinearChain.Layer?, logits: UnsafeMutablePointer<Float>?) {
            let width = block.count, inputs = first.inputs
            if let bias = first.bias { for r in 0..<rows { (hidden + r * width).update(from: bias.data + block.lowerBound, count: width) } }
            BLAS.sgemm(transposeB: true, m: rows, n: width, k: inputs, a: input, lda: inputs, b: first.weight.data + block.lowerBound * inputs,
                       ldb: inputs, beta: first.bias == nil ? 0 : 1, c: hidden, ldc: width, split: .none)
            if first.relu { clampNegatives(hidden, rows * width) }
            if let second {  // share = hidden_block · W2[:, block]ᵀ
                BLAS.sgemm(transposeB: true, m: rows, n: second.outputs, k: width, a: hidden, lda: width,
                           b: second.weight.data + block.lowerBound, ldb: second.inputs, c: secondShare, ldc: second.outputs, split: .none)
            } else if let logits {
                for r in 0..<rows { (logits + r * first.outputs + block.lowerBound).update(from: hidden + r * width, count: width) }
            }
        }

        /// The gradients of this block: of the second layer's weight columns (from its error),
        /// and of the first layer's weight rows and bias.
        func backwardFirst(_ first: LinearChain.Layer, block: Range<Int>, rows: Int, second: LinearChain.Layer?,
                           secondError: UnsafeMutablePointer<Float>, logitsGradient: UnsafeMutablePointer<Float>, targets: [Target]) {
            let width = block.count, inputs = first.inputs
            if let second {
                let out = second.outputs, w2 = targets[1].weight
                // ∂W2[:, block] = errorᵀ · hidden_block;  hiddenError = error · W2[:, block]
                BLAS.sgemm(transposeA: true, m: out, n: width, k: rows, a: secondError, lda: out, b: hidden, ldb: width,
                           beta: w2.add ? 1 : 0, c: w2.pointer + block.lowerBound, ldc: second.inputs, split: .none)
                BLAS.sgemm(m: rows, n: width, k: out, a: secondError, lda: out, b: second.weight.data + block.lowerBound,
                           ldb: second.inputs, c: hiddenError, ldc: width, split: .none)
            } else {
                for r in 0..<rows { (hiddenError + r * width).update(from: logitsGradient + r * first.outputs + block.lowerBound, count: width) }
            }
            if first.relu { maskInactive(hiddenError, hidden, rows * width) }
            let w1 = targets[0].weight
            BLAS.sgemm(transposeA: true, m: width, n: inputs, k: rows, a: hiddenError, lda: width, b: input, ldb: inputs,
                       beta: w1.add ? 1 : 0, c: w1.pointer + block.lowerBound * inputs, ldc: inputs, split: .none)
            if let b1 = targets[0].bias {
                TrainingPlan.sumRows(hiddenError, rows: rows, width: width, into: GradientTarget(pointer: b1.pointer + block.lowerBound, add: b1.add))
            }
        }
    }
}

/// ReLU in place: every value that is not positive (NaN included) becomes 0.
private func clampNegatives(_ y: UnsafeMutablePointer<Float>, _ count: Int) {
    for j in 0..<count where !(y[j] > 0) { y[j] = 0 }
}

/// ReLU's backward pass in place: the error is 0 where the layer's output was 0.
private func maskInactive(_ error: UnsafeMutablePointer<Float>, _ output: UnsafePointer<Float>, _ count: Int) {
    for j in 0..<count where !(output[j] > 0) { error[j] = 0 }
}
