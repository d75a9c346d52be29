import CKernels
import DistillNN
import DistillTensor
import DistillTestSupport
import Testing

// Optimizers, schedules and gradient clipping against PyTorch (NNGoldenValues.swift, written by
// scripts/golden/make_nn_golden.py; each case holds the snippet that produced it). The gradients
// are set by hand each step, so only the update rules are compared.

/// Fresh parameters at the golden starting point.
private func goldenParameters() -> [Tensor] {
    zip(NNGolden.optimizerInitial, NNGolden.optimizerShapes).map { Tensor(shape: $1, scalars: $0, requiresGrad: true) }
}

private func makeOptimizer(_ c: NNGolden.OptimizerCase, _ parameters: [Tensor]) -> any Optimizer {
    switch c.kind {
    case "sgd":
        return SGD(parameters: parameters, learningRate: c.learningRate, momentum: c.momentum,
                   weightDecay: c.weightDecay, nesterov: c.nesterov)
    case "adam":
        return Adam(parameters: parameters, learningRate: c.learningRate, weightDecay: c.weightDecay)
    case "adamw":
        return Adam.adamW(parameters: parameters, learningRate: c.learningRate, weightDecay: c.weightDecay)
    default:
        preconditionFailure("unknown optimizer kind \(c.kind)")
    }
}

private func setGradients(_ parameters: [Tensor], step: Int) {
    for (p, g) in zip(parameters, NNGolden.optimizerGradients[step]) { p.grad = Tensor(shape: p.shape, scalars: g) }
}

@Suite("Optimizers and schedules")
struct OptimizerTests {
    @Test("trajectory matches torch.optim", arguments: NNGolden.optimizerCases)
    func trajectory(_ c: NNGolden.OptimizerCase) {
        let parameters = goldenParameters()
        let optimizer = makeOptimizer(c, parameters)
        for (step, expected) in c.trajectory.enumerated() {
            setGradients(parameters, step: step)
            optimizer.step()
            for (i, p) in parameters.enumerated() {
                assertClose(p.scalars, expected[i], atol: 1e-7, rtol: 1e-6, "\(c.name) step \(step + 1) parameter \(i)")
            }
        }
    }

    @Test("a run resumed from the optimizer's state dict continues the same trajectory", arguments: NNGolden.optimizerCases)
    func resume(_ c: NNGolden.OptimizerCase) throws {
        let first = goldenParameters()
        let original = makeOptimizer(c, first)
        for step in 0..<2 { setGradients(first, step: step); original.step() }
        // A new optimizer over copies of the parameters, restored from the first one's state.
        let second = first.map { Tensor(shape: $0.shape, scalars: $0.scalars, requiresGrad: true) }
        let resumed = makeOptimizer(c, second)
        try resumed.loadStateDict(original.stateDict())
        for step in 2..<c.trajectory.count { setGradients(second, step: step); resumed.step() }
        for (i, p) in second.enumerated() {
            assertClose(p.scalars, c.trajectory.last![i], atol: 1e-7, rtol: 1e-6, "\(c.name) resumed, parameter \(i)")
        }
    }

    @Test("parameters without a gradient are left alone; zeroGrad clears gradients")
    func skipsParametersWithoutGradient() {
        let a = Tensor([1, 2], requiresGrad: true), b = Tensor([3, 4], requiresGrad: true)
        let optimizers: [any Optimizer] = [
            SGD(parameters: [a, b], learningRate: 0.1, momentum: 0.9),
            Adam(parameters: [a, b], learningRate: 0.1),
        ]
        for optimizer in optimizers {
            a.grad = Tensor([1, 1])
            b.grad = nil
            optimizer.step()
            #expect(b.scalars == [3, 4])
            #expect(a.scalars != [1, 2])
            optimizer.zeroGrad()
            #expect(a.grad == nil)
            a.assign(Tensor([1, 2]))
        }
    }

    @Test("loadStateDict rejects state of the wrong shape or missing entries")
    func optimizerStateErrors() {
        let p = Tensor([1, 2, 3], requiresGrad: true)
        let sgd = SGD(parameters: [p], learningRate: 0.1, momentum: 0.9)
        expectTensorError(["momentum_buffer.0"]) { try sgd.loadStateDict(["momentum_buffer.0": Tensor([1, 2])]) }
        let adam = Adam(parameters: [p])
        expectTensorError(["step"]) { try adam.loadStateDict([:]) }
        expectTensorError(["parameter 0"]) {
            try adam.loadStateDict(["step": Tensor(scalar: 1), "exp_avg.0": Tensor([0, 0, 0]), "exp_avg_sq.0": Tensor([0, 0])])
        }
    }

    // MARK: Schedules

    private func makeSchedule(_ c: NNGolden.ScheduleCase) -> any LearningRateSchedule {
        switch c.kind {
        case "step": return StepSchedule(base: c.base, stepSize: c.stepSize, gamma: c.gamma)
        case "cosine": return CosineSchedule(base: c.base, totalSteps: c.totalSteps, minimum: c.minimum)
        case "warmup-constant": return WarmupSchedule(warmupSteps: c.warmupSteps, then: ConstantSchedule(c.base))
        case "warmup-step":
            return WarmupSchedule(warmupSteps: c.warmupSteps, then: StepSchedule(base: c.base, stepSize: c.stepSize, gamma: c.gamma))
        default: preconditionFailure("unknown schedule kind \(c.kind)")
        }
    }

    /// DistillKit's warm-up is `rate·(t+1)/W` for t < W, which is torch's
    /// `LinearLR(start_factor=1/W, total_iters=W−1)` (not `total_iters=W`): see the snippets.
    @Test("learning rates match torch.optim.lr_scheduler", arguments: NNGolden.scheduleCases)
    func schedule(_ c: NNGolden.ScheduleCase) {
        let schedule = makeSchedule(c)
        let rates = c.rates.indices.map { schedule.learningRate(atStep: $0) }
        assertClose(rates, c.rates.map(Float.init), atol: 0, rtol: 1e-6, "\(c.kind): \(c.snippet)")
    }

    @Test("cosine holds its minimum after totalSteps; the constant schedule is constant")
    func scheduleEdges() {
        let cosine = CosineSchedule(base: 0.1, totalSteps: 10, minimum: 0.001)
        #expect(cosine.learningRate(atStep: 10) == cosine.learningRate(atStep: 25))
        #expect(abs(cosine.learningRate(atStep: 10) - 0.001) < 1e-9)
        #expect((0..<5).allSatisfy { ConstantSchedule(0.3).learningRate(atStep: $0 * 100) == 0.3 })
        let warm = WarmupSchedule(warmupSteps: 4, then: ConstantSchedule(0.2))
        #expect(warm.learningRate(atStep: 0) == 0.05)
        #expect(warm.learningRate(atStep: 3) == 0.2)
    }

    // MARK: Gradient clipping

    @Test("clipGradientNorm matches torch.nn.utils.clip_grad_norm_", arguments: NNGolden.clipCases)
    func clip(_ c: NNGolden.ClipCase) {
        let parameters = c.shapes.map { Tensor.zeros($0, requiresGrad: true) }
        for (p, g) in zip(parameters, c.gradients) { p.grad = Tensor(shape: p.shape, scalars: g) }
        let norm = clipGradientNorm(parameters, maxNorm: c.maxNorm)
        assertClose([norm], [c.totalNorm], atol: 0, rtol: 1e-6, "returned norm")
        for (i, p) in parameters.enumerated() {
            assertClose(p.grad!.scalars, c.clipped[i], atol: 1e-7, rtol: 1e-6, "clipped gradient \(i)")
        }
    }

    @Test("clipGradientNorm skips parameters without a gradient")
    func clipWithoutGradient() {
        let a = Tensor.zeros([2], requiresGrad: true), b = Tensor.zeros([2], requiresGrad: true)
        a.grad = Tensor([3, 4])
        #expect(clipGradientNorm([a, b], maxNorm: 1) == 5)
        #expect(b.grad == nil)
        assertClose(a.grad!.scalars, [0.6, 0.8], atol: 1e-6, rtol: 1e-6)
    }
}

/// The vectorised Adam kernel (C, AVX-512/AVX2/SSE2 chosen at run time) against the scalar
/// formula in Swift: bit for bit, for each instruction set this CPU has, at lengths that leave
/// every possible vector tail. (The optimizer golden tests cover the dispatching entry point.)
/// The kernel flushes subnormal inputs and results to zero; the reference does so after every
/// operation, and every fourth parameter has a zero weight and gradient and moments at the edge of the
/// subnormal range, as a ReLU unit that never fires has after a few hundred steps.
@Suite struct AdamKernelTests {
    @Test(arguments: [0, 1, 2], [1, 15, 16, 17, 33, 1000, 50_816])
    func vectorisedUpdateMatchesTheScalarFormula(level: Int32, count: Int) throws {
        var generator = SeededGenerator(seed: UInt64(count))
        func values(_ scale: Float) -> [Float] { (0..<count).map { _ in Float.random(in: -scale...scale, using: &generator) } }
        var w = values(1), m = values(0.1), v = values(0.01).map { abs($0) }
        var g = values(2)
        for j in stride(from: 0, to: count, by: 4) {
            g[j] = 0; w[j] = 0
            m[j] = Float.random(in: 0.5...2, using: &generator) * Float.leastNormalMagnitude * (j % 8 == 0 ? 1 : -1)
            v[j] = Float.random(in: 0.5...2, using: &generator) * Float.leastNormalMagnitude
        }
        let (b1, b2, l2, stepSize, invSqrtC2, eps): (Float, Float, Float, Float, Float, Float) = (0.9, 0.999, 0.01, 3e-3, 1.7, 1e-8)
        /// x86's flush to zero: a subnormal becomes a zero of the same sign.
        func flush(_ x: Float) -> Float { x.isSubnormal ? (x.sign == .minus ? -0.0 : 0.0) : x }
        var expectedW = w, expectedM = m, expectedV = v
        for j in 0..<count {
            let wj = flush(expectedW[j]), mj = flush(expectedM[j]), vj = flush(expectedV[j]), gIn = flush(g[j])
            let gj = flush(gIn + flush(l2 * wj))
            let newM = flush(flush(b1 * mj) + flush(flush(1 - b1) * gj))
            let newV = flush(flush(b2 * vj) + flush(flush(flush(1 - b2) * gj) * gj))
            let denominator = flush(flush(flush(newV.squareRoot()) * invSqrtC2) + eps)
            expectedM[j] = newM
            expectedV[j] = newV
            expectedW[j] = flush(wj - flush(flush(stepSize * newM) / denominator))
        }
        // Level 0 (SSE2) exists on every x86-64 CPU; AVX2 and AVX-512 where this CPU has them.
        guard dk_adam_update_level(level, &w, g, &m, &v, count, b1, b2, l2, stepSize, invSqrtC2, eps) == 0 else {
            try #require(level > 0, "SSE2 is always available")
            return
        }
        #expect(w.map(\.bitPattern) == expectedW.map(\.bitPattern))
        #expect(m.map(\.bitPattern) == expectedM.map(\.bitPattern))
        #expect(v.map(\.bitPattern) == expectedV.map(\.bitPattern))
    }
}
