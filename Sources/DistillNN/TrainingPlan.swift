import CKernels
import DistillTensor
import Foundation

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
///   the host slows down gets fewer blocks. Each core reads its own copy of the batch. Where
///   `denseKernel` is set, each core multiplies the batch by its whole run at once, going forward
///   and back, on kernels whose every result is one fixed chain of multiply-adds whatever the
///   run (`dk_dense_forward`, `dk_dense_weight_gradient`); otherwise by one BLAS product per
///   block, since a BLAS product's bits depend on its shape. BLAS packs the batch again for each
///   product: eight times each way, which on an AVX2 host took as long as the multiply-adds
///   (`perf`; BENCHMARKS.md, "kd-offline").
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
    /// Each thread's buffers: its copy of the batch, its run's activations and errors.
    private var workers: [Worker] = []
    /// The runs of blocks each thread took going forward; going back uses the same ones (the
    /// run's activations are in that thread's buffers).
    private var runs: [Range<Int>] = [0..<1]
    /// Outputs of the layers between the first and the last, `rows × outputs` (nil for those two:
    /// the first's live in the cores' blocks, the last's in each call's logits tensor).
    private var hiddenActivations: [UnsafeMutablePointer<Float>?] = []
    private var errors: [UnsafeMutablePointer<Float>] = []
    private var rowCapacity = 0
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

    /// Whether the first layer runs on the fixed-order kernels (one product per core's run), or
    /// on a BLAS product per block. The two round differently; each gives the same bits for any
    /// assignment of blocks to cores.
    public let denseKernel: Bool

    /// The default for `denseKernel`: on where AVX2 + FMA is the CPU's best level (measured
    /// faster there: BENCHMARKS.md), off on AVX-512 CPUs (OpenBLAS's AVX-512 products measured
    /// faster there: 286K-323K against 242K-298K samples/s, BENCHMARKS.md, "AVX-512 again") and
    /// where the kernels do not run. `DISTILL_TRAIN_KERNEL=1` or `0` chooses.
    public static let denseKernelByDefault: Bool = {
        guard dk_linear_packed_level() >= 1 else { return false }
        if let forced = ProcessInfo.processInfo.environment["DISTILL_TRAIN_KERNEL"] { return forced != "0" }
        return dk_linear_packed_level() == 1
    }()

    /// Plans `model` for examples of `exampleShape`, or returns nil when it is not a trainable
    /// `LinearChain` of that input size.
    public init?(_ model: Module, exampleShape: [Int], balance: BlockBalance = .firstLayer, denseKernel: Bool = TrainingPlan.denseKernelByDefault) {
        guard let chain = LinearChain(model), !chain.hasDropout,
              chain.layers.allSatisfy({ $0.weight.requiresGrad && ($0.bias?.requiresGrad ?? true) }),
              chain.layers[0].inputs == exampleShape.reduce(1, *) else { return nil }
        layers = chain.layers
        self.balance = balance
        self.denseKernel = denseKernel && dk_linear_packed_level() >= 1
        inputSize = layers[0].inputs
        outputSize = layers[layers.count - 1].outputs
        weightGrads = layers.map { Tensor(uninitializedShape: $0.weight.shape) }
        biasGrads = layers.map { l in l.bias.map { Tensor(uninitializedShape: $0.shape) } }
    }

    deinit { (hiddenActivations.compactMap { $0 } + errors).forEach { $0.deallocate() } }

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
        runs = parts == 1 ? [0..<1] : balance.assignment(threads: min(Parallel.workers, parts))
        forEachRun(measure: true) { thread, blocks in
            // The caller's thread reads the caller's batch; any other fills its own copy once.
            let worker = self.workers[thread]
            if let callerBatch, thread == 0 { worker.input = callerBatch.p } else { worker.input = worker.copy; fill(worker.copy) }
            worker.forwardFirst(first, columns: self.columns(blocks), blocks: blocks.map(self.block), rows: n, kernel: self.denseKernel)
            for b in blocks {
                self.cores[b].share(worker, block: self.block(b), rows: n, second: single ? nil : self.layers[1],
                                    logits: single ? out.data : nil, logitsWidth: first.outputs)
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
        forEachRun(measure: true) { thread, blocks in
            let worker = self.workers[thread]
            for b in blocks {
                worker.errorShare(block: self.block(b), rows: n, second: second, secondError: secondError.p,
                                  logitsGradient: G.p, logitsWidth: first.outputs, targets: targets)
            }
            worker.backwardFirst(first, blocks: blocks.map(self.block), rows: n, targets: targets, kernel: self.denseKernel)
        }
    }

    /// Runs `body(thread, blocks)` for each thread's run in `runs` (on the calling thread alone
    /// when the layer is not split), timing the threads for `balance` when `measure` is set.
    private func forEachRun(measure: Bool, _ body: @Sendable (Int, Range<Int>) -> Void) {
        if runs.count == 1 { body(0, runs[0]) } else { Parallel.forEachRun(runs, of: balance, measure: measure, body) }
    }

    /// The first layer's outputs that the run of `blocks` covers.
    private func columns(_ blocks: Range<Int>) -> Range<Int> { block(blocks.lowerBound).lowerBound..<block(blocks.upperBound - 1).upperBound }

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
        while workers.count < threads { workers.append(Worker()) }
        for worker in workers.prefix(threads) { worker.reserve(rows: n, inputs: inputSize, outputs: layers[0].outputs, kernel: denseKernel) }
        for b in 0..<parts { cores[b].reserve(rows: n, secondWidth: layers.count > 1 ? layers[1].outputs : 0) }
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

    /// One thread's buffers, written by that thread only: its copy of the batch, its run's
    /// activations (after ReLU) and errors going back (`rows × run width`), and the kernel's
    /// repacked weights.
    final class Worker {
        private var rowCapacity = 0, inputCapacity = 0, outputCapacity = 0, packedCapacity = 0
        /// The batch this thread read going forward: `copy`, or the caller's tensor.
        var input: UnsafeMutablePointer<Float>!
        var copy: UnsafeMutablePointer<Float> = .allocate(capacity: 0)
        var hidden: UnsafeMutablePointer<Float> = .allocate(capacity: 0), hiddenError: UnsafeMutablePointer<Float> = .allocate(capacity: 0)
        var packed: UnsafeMutablePointer<Float> = .allocate(capacity: 0)
        /// The first layer's outputs of the run this thread took in the last forward pass.
        private(set) var columns = 0..<0

        func reserve(rows: Int, inputs: Int, outputs: Int, kernel: Bool) {
            let packing = kernel ? dk_dense_forward_scratch(outputs, inputs) : 0
            if packing > packedCapacity {
                packed.deallocate()
                packedCapacity = packing
                packed = .allocate(capacity: packing)
            }
            guard rows > rowCapacity || inputs > inputCapacity || outputs > outputCapacity else { return }
            [copy, hidden, hiddenError].forEach { $0.deallocate() }
            rowCapacity = max(rows, rowCapacity); inputCapacity = max(inputs, inputCapacity); outputCapacity = max(outputs, outputCapacity)
            copy = .allocate(capacity: rowCapacity * inputCapacity)
            hidden = .allocate(capacity: rowCapacity * outputCapacity)
            hiddenError = .allocate(capacity: rowCapacity * outputCapacity)
        }

        deinit { [copy, hidden, hiddenError, packed].forEach { $0.deallocate() } }

        /// The run's outputs of the first layer: `hidden = input · W1[columns]ᵀ + b` (then ReLU),
        /// in one kernel call or one BLAS product per block (`blocks`: the run's column ranges).
        func forwardFirst(_ first: LinearChain.Layer, columns: Range<Int>, blocks: [Range<Int>], rows: Int, kernel: Bool) {
            self.columns = columns
            let width = columns.count, inputs = first.inputs, weights = first.weight.data + columns.lowerBound * inputs
            if kernel {
                let done = dk_dense_forward(input, rows, inputs, weights, width, first.bias.map { UnsafePointer($0.data + columns.lowerBound) },
                                            hidden, width, first.relu ? 1 : 0, packed)
                precondition(done == 0, "dk_dense_forward: not available on this CPU")
                return
            }
            if let bias = first.bias { for r in 0..<rows { (hidden + r * width).update(from: bias.data + columns.lowerBound, count: width) } }
            for block in blocks {
                BLAS.sgemm(transposeB: true, m: rows, n: block.count, k: inputs, a: input, lda: inputs, b: first.weight.data + block.lowerBound * inputs,
                           ldb: inputs, beta: first.bias == nil ? 0 : 1, c: hidden + (block.lowerBound - columns.lowerBound), ldc: width, split: .none)
            }
            if first.relu { clampNegatives(hidden, rows * width) }
        }

    /// Block `block`'s columns of the run's error (from the second layer's error, or the
        /// logits' gradient for a one-layer model), and of the second layer's weight gradient.
        func errorShare(block: Range<Int>, rows: Int, second: LinearChain.Layer?, secondError: UnsafeMutablePointer<Float>,
                        logitsGradient: UnsafeMutablePointer<Float>, logitsWidth: Int, targets: [Target]) {
            let width = block.count, runWidth = columns.count, offset = block.lowerBound - columns.lowerBound
            if let second {
                let out = second.outputs, w2 = targets[1].weight
                // ∂W2[:, block] = errorᵀ · hidden_block;  hiddenError_block = error · W2[:, block]
                BLAS.sgemm(transposeA: true, m: out, n: width, k: rows, a: secondError, lda: out, b: hidden + offset, ldb: runWidth,
                           beta: w2.add ? 1 : 0, c: w2.pointer + block.lowerBound, ldc: second.inputs, split: .none)
                BLAS.sgemm(m: rows, n: width, k: out, a: secondError, lda: out, b: second.weight.data + block.lowerBound,
                           ldb: second.inputs, c: hiddenError + offset, ldc: runWidth, split: .none)
            } else {
                for r in 0..<rows { (hiddenError + r * runWidth + offset).update(from: logitsGradient + r * logitsWidth + block.lowerBound, count: width) }
            }
        }

        /// The gradients of the run's rows of the first layer, from `hiddenError` (filled by
        /// `errorShare` for each of the run's blocks).
        func backwardFirst(_ first: LinearChain.Layer, blocks: [Range<Int>], rows: Int, targets: [Target], kernel: Bool) {
            let width = columns.count, inputs = first.inputs
            if first.relu { maskInactive(hiddenError, hidden, rows * width) }
            let w1 = targets[0].weight
            if kernel {
                let done = dk_dense_weight_gradient(hiddenError, width, input, rows, inputs, width, w1.pointer + columns.lowerBound * inputs, w1.add ? 1 : 0)
                precondition(done == 0, "dk_dense_weight_gradient: not available on this CPU")
            } else {
                for block in blocks {
                    BLAS.sgemm(transposeA: true, m: block.count, n: inputs, k: rows, a: hiddenError + (block.lowerBound - columns.lowerBound), lda: width,
                               b: input, ldb: inputs, beta: w1.add ? 1 : 0, c: w1.pointer + block.lowerBound * inputs, ldc: inputs, split: .none)
                }
            }
            if let b1 = targets[0].bias {
                TrainingPlan.sumRows(hiddenError, rows: rows, width: width, into: GradientTarget(pointer: b1.pointer + columns.lowerBound, add: b1.add))
            }
        }
    }

    /// One block of the first layer's outputs: its share of the second layer's pre-activation,
    /// in a buffer only the thread that runs the block writes.
    final class Core {
        private var capacity = 0
        /// The block's share of the second layer's pre-activation (`rows × outputs of layer 2`).
        var secondShare: UnsafeMutablePointer<Float> = .allocate(capacity: 0)

        func reserve(rows: Int, secondWidth: Int) {
            guard rows * max(secondWidth, 1) > capacity else { return }
            secondShare.deallocate()
            capacity = rows * max(secondWidth, 1)
            secondShare = .allocate(capacity: capacity)
        }

        deinit { secondShare.deallocate() }

        /// This block's share of the second layer's pre-activation, `hidden_block · W2[:, block]ᵀ`
        /// (or, for a one-layer model, its columns of the logits), from the block's columns of the
        /// activations of the run `worker` computed.
        func share(_ worker: Worker, block: Range<Int>, rows: Int, second: LinearChain.Layer?,
                   logits: UnsafeMutablePointer<Float>?, logitsWidth: Int) {
            let width = block.count, runWidth = worker.columns.count, hidden = worker.hidden + (block.lowerBound - worker.columns.lowerBound)
            if let second {
                BLAS.sgemm(transposeB: true, m: rows, n: second.outputs, k: width, a: hidden, lda: runWidth,
                           b: second.weight.data + block.lowerBound, ldb: second.inputs, c: secondShare, ldc: second.outputs, split: .none)
            } else if let logits {
                for r in 0..<rows { (logits + r * logitsWidth + block.lowerBound).update(from: hidden + r * runWidth, count: width) }
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
