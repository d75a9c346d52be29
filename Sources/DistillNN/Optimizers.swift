import CKernels
import DistillTensor

/// Updates parameters from their gradients. Each optimizer keeps per-parameter state aligned
/// with the `parameters` array it was given, and exposes it for checkpoints so a resumed run
/// continues exactly. State is keyed by each parameter's name (`exp_avg.student.0.weight`), so a
/// checkpoint survives a change in parameter order; files written before names were kept (keyed
/// by position: `exp_avg.3`) still load.
public protocol Optimizer: AnyObject {
    var parameters: [Tensor] { get }
    /// One name per parameter, for the state's keys (positions, "0", "1", ..., unless set).
    var parameterNames: [String] { get set }
    var learningRate: Float { get set }
    /// Applies one update to every parameter that has a gradient.
    func step()
    /// Optimizer state by name (moment buffers, step counters), for checkpoints.
    func stateDict() -> [String: Tensor]
    func loadStateDict(_ state: [String: Tensor]) throws
}

extension Optimizer {
    /// Clears every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.grad = nil } }

    /// The keys of `entry` ("exp_avg", ...) in `state` for each parameter: by name, or by position
    /// when the state was written by position (no entry carries one of the names).
    func stateKeys(_ entry: String, in state: [String: Tensor]) -> [String] {
        let byName = parameterNames.map { "\(entry).\($0)" }
        let byPosition = parameters.indices.map { "\(entry).\($0)" }
        return byName.contains(where: { state[$0] != nil }) || !byPosition.contains(where: { state[$0] != nil }) ? byName : byPosition
    }
}

/// Stochastic gradient descent with momentum (Polyak 1964; Sutskever et al. 2013 for Nesterov)
/// and L2 weight decay, as PyTorch's `torch.optim.SGD`:
/// `g ← ∇ + λθ;  b ← μb + g;  d = nesterov ? g + μb : b;  θ ← θ − η·d`.
public final class SGD: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let momentum: Float, weightDecay: Float, nesterov: Bool
    public var parameterNames: [String]
    var velocity: [Tensor?]

    public init(parameters: [Tensor], learningRate: Float, momentum: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        precondition(!nesterov || momentum > 0, "SGD: Nesterov momentum needs momentum > 0")
        self.parameters = parameters; self.learningRate = learningRate
        self.momentum = momentum; self.weightDecay = weightDecay; self.nesterov = nesterov
        velocity = Array(repeating: nil, count: parameters.count)
        parameterNames = parameters.indices.map(String.init)
    }

    public func step() {
        for (i, p) in parameters.enumerated() {
            guard let grad = p.grad else { continue }
            let w = p.data, g = grad.data, n = p.count
            let lr = learningRate, wd = weightDecay, mu = momentum
            if mu == 0 {
                for j in 0..<n { w[j] -= lr * (g[j] + wd * w[j]) }
                continue
            }
            let firstStep = velocity[i] == nil
            let v = velocity[i] ?? Tensor.zeros(p.shape)
            velocity[i] = v
            let b = v.data
            for j in 0..<n {
                let d = g[j] + wd * w[j]
                b[j] = firstStep ? d : mu * b[j] + d
                w[j] -= lr * (nesterov ? d + mu * b[j] : b[j])
            }
        }
    }

    public func stateDict() -> [String: Tensor] {
        var s: [String: Tensor] = [:]
        for (i, v) in velocity.enumerated() { if let v { s["momentum_buffer.\(parameterNames[i])"] = v } }
        return s
    }
    public func loadStateDict(_ state: [String: Tensor]) throws {
        let keys = stateKeys("momentum_buffer", in: state)
        for i in parameters.indices {
            guard let v = state[keys[i]] else { velocity[i] = nil; continue }
            guard v.shape == parameters[i].shape else { throw TensorError("SGD state: \(keys[i]) has shape \(v.shape), parameter has \(parameters[i].shape)") }
            velocity[i] = v.copy()
        }
    }
}

/// Adam (Kingma & Ba 2015, arXiv:1412.6980) and AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101):
/// `m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  θ ← θ − η·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`.
/// Adam adds L2 decay to the gradient (`g ← ∇ + λθ`); AdamW decays the weights directly
/// (`θ ← θ(1 − ηλ)`), decoupled from the adaptive scaling.
public final class Adam: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    /// True for AdamW's decoupled weight decay.
    public let decoupledWeightDecay: Bool
    public var parameterNames: [String]
    var firstMoment: [Tensor], secondMoment: [Tensor]
    var steps: Int = 0

    public init(parameters: [Tensor], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0, decoupledWeightDecay: Bool = false) {
        self.parameters = parameters; self.learningRate = learningRate
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        self.weightDecay = weightDecay; self.decoupledWeightDecay = decoupledWeightDecay
        firstMoment = parameters.map { Tensor.zeros($0.shape) }
        secondMoment = parameters.map { Tensor.zeros($0.shape) }
        parameterNames = parameters.indices.map(String.init)
    }

    /// AdamW with PyTorch's default decay of 0.01.
    public static func adamW(parameters: [Tensor], learningRate: Float = 1e-3, weightDecay: Float = 0.01) -> Adam {
        Adam(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay, decoupledWeightDecay: true)
    }

    public func step() {
        steps += 1
        // 1 − βᵗ in Double, then rounded: rounding βᵗ to Float first would cost 1 − β₂ᵗ (≈ 0.002 at t = 2)
        // about 1e-5 of relative precision through cancellation.
        let c1 = Float(1 - pow(Double(beta1), Double(steps))), c2 = Float(1 - pow(Double(beta2), Double(steps)))
        let stepSize = learningRate / c1, invSqrtC2 = 1 / c2.squareRoot()
        let b1 = beta1, b2 = beta2, eps = epsilon, wd = weightDecay, lr = learningRate
        let l2 = decoupledWeightDecay ? 0 : wd, decay: Float = decoupledWeightDecay ? 1 - lr * wd : 1
        for (i, p) in parameters.enumerated() {
            guard let grad = p.grad else { continue }
            let w = SharedPointer(p.data), g = SharedPointer(grad.data)
            let m = SharedPointer(firstMoment[i].data), v = SharedPointer(secondMoment[i].data)
            // Large parameters are updated in runs of rows on the thread that computed those rows
            // in the forward product and the gradient (`TrainingPlan`'s blocks, assigned by
            // `BlockBalance.firstLayer`), so the weight stays in that core's cache.
            let update: @Sendable (Range<Int>) -> Void = { r in
                let o = r.lowerBound
                if decay != 1 { for j in r { w.p[j] *= decay } }
                dk_adam_update(w.p + o, g.p + o, m.p + o, v.p + o, r.count, b1, b2, l2, stepSize, invSqrtC2, eps)
            }
            let rows = p.rank >= 2 ? p.shape[0] : p.count, balance = BlockBalance.firstLayer
            guard p.count >= Self.minimumSplitCount, Parallel.workers > 1, rows >= balance.blocks else { update(0..<p.count); continue }
            let rowSize = p.count / rows
            Parallel.forEachBalancedRun(balance, measure: false) { _, blocks in
                update((rows * blocks.lowerBound / balance.blocks * rowSize)..<(rows * blocks.upperBound / balance.blocks * rowSize))
            }
        }
    }

    /// Parameters with fewer elements are updated on one thread.
    static let minimumSplitCount = 16_384

    public func stateDict() -> [String: Tensor] {
        var s: [String: Tensor] = ["step": Tensor(scalar: Float(steps))]
        for (i, name) in parameterNames.enumerated() { s["exp_avg.\(name)"] = firstMoment[i]; s["exp_avg_sq.\(name)"] = secondMoment[i] }
        return s
    }
    public func loadStateDict(_ state: [String: Tensor]) throws {
        guard let step = state["step"] else { throw TensorError("Adam state: no 'step' entry") }
        let first = stateKeys("exp_avg", in: state), second = stateKeys("exp_avg_sq", in: state)
        for i in parameters.indices {
            guard let m = state[first[i]], let v = state[second[i]], m.shape == parameters[i].shape, v.shape == parameters[i].shape else {
                throw TensorError("Adam state: moments for parameter \(parameterNames[i]) (shape \(parameters[i].shape)) missing or of the wrong shape")
            }
            firstMoment[i].assign(m); secondMoment[i].assign(v)
        }
        steps = Int(step.item())
    }
}

/// Rescales all gradients together so their global L2 norm is at most `maxNorm`
/// (Pascanu et al. 2013). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total = 0.0
    for p in parameters { if let g = p.grad { for j in 0..<g.count { total += Double(g.data[j]) * Double(g.data[j]) } } }
    let norm = Float(total.squareRoot())
    if norm > maxNorm && norm > 0 {
        let scale = maxNorm / (norm + 1e-6)
        for p in parameters { if let g = p.grad { for j in 0..<g.count { g.data[j] *= scale } } }
    }
    return norm
}

#if canImport(Glibc)
import Glibc
#endif
