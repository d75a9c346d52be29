import Foundation

/// The learning rate as a function of the optimizer step (0-based).
public protocol LearningRateSchedule: Sendable {
    func learningRate(atStep step: Int) -> Float
}

/// A constant rate.
public struct ConstantSchedule: LearningRateSchedule {
    public let rate: Float
    public init(_ rate: Float) { self.rate = rate }
    public func learningRate(atStep step: Int) -> Float { rate }
}

/// Multiplies the rate by `gamma` every `stepSize` steps (PyTorch's StepLR).
public struct StepSchedule: LearningRateSchedule {
    public let base: Float, stepSize: Int, gamma: Float
    public init(base: Float, stepSize: Int, gamma: Float = 0.1) {
        precondition(stepSize > 0, "StepSchedule: stepSize must be positive")
        self.base = base; self.stepSize = stepSize; self.gamma = gamma
    }
    public func learningRate(atStep step: Int) -> Float { base * Float(pow(Double(gamma), Double(step / stepSize))) }
}

/// Cosine annealing from `base` to `minimum` over `totalSteps` (Loshchilov & Hutter 2017,
/// arXiv:1608.03983, without restarts): `η = η_min + (η₀ − η_min)(1 + cos(π·t/T))/2`.
public struct CosineSchedule: LearningRateSchedule {
    public let base: Float, totalSteps: Int, minimum: Float
    public init(base: Float, totalSteps: Int, minimum: Float = 0) {
        self.base = base; self.totalSteps = max(1, totalSteps); self.minimum = minimum
    }
    public func learningRate(atStep step: Int) -> Float {
        let t = Double(min(step, totalSteps)) / Double(totalSteps)
        return minimum + (base - minimum) * Float((1 + cos(Double.pi * t)) / 2)
    }
}

/// Linear warm-up from `base/warmupSteps` to the wrapped schedule's rate over `warmupSteps`
/// (Goyal et al. 2017, arXiv:1706.02677), then the wrapped schedule.
public struct WarmupSchedule: LearningRateSchedule {
    public let warmupSteps: Int
    public let after: any LearningRateSchedule
    public init(warmupSteps: Int, then after: any LearningRateSchedule) { self.warmupSteps = warmupSteps; self.after = after }
    public func learningRate(atStep step: Int) -> Float {
        let rate = after.learningRate(atStep: step)
        return step < warmupSteps ? rate * Float(step + 1) / Float(warmupSteps) : rate
    }
}
