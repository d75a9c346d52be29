import DistillNN
import DistillTensor
import Testing

/// Optimizer state in checkpoints is keyed by parameter name; files keyed by position (written
/// before names were kept) still load.
@Suite("Optimizer state by name")
struct OptimizerStateTests {
    /// Two parameters with gradients, one Adam and one SGD step taken.
    static func stepped() -> (a: Tensor, b: Tensor, adam: Adam, sgd: SGD) {
        let a = Tensor(shape: [3], scalars: [1, 2, 3]), b = Tensor(shape: [2], scalars: [4, 5])
        a.grad = Tensor(shape: [3], scalars: [0.1, -0.2, 0.3]); b.grad = Tensor(shape: [2], scalars: [0.5, -0.5])
        let adam = Adam(parameters: [a, b]), sgd = SGD(parameters: [a, b], learningRate: 0.1, momentum: 0.9)
        adam.parameterNames = ["layer.weight", "layer.bias"]; sgd.parameterNames = adam.parameterNames
        adam.step(); sgd.step()
        return (a, b, adam, sgd)
    }

    @Test("state keys carry the parameters' names")
    func keysAreNames() {
        let s = Self.stepped()
        #expect(Set(s.adam.stateDict().keys) == ["step", "exp_avg.layer.weight", "exp_avg_sq.layer.weight", "exp_avg.layer.bias", "exp_avg_sq.layer.bias"])
        #expect(Set(s.sgd.stateDict().keys) == ["momentum_buffer.layer.weight", "momentum_buffer.layer.bias"])
    }

    @Test("parameters given in another order get their own moments back")
    func orderDoesNotMatter() throws {
        let s = Self.stepped()
        let a = Tensor.zeros([3]), b = Tensor.zeros([2])
        let adam = Adam(parameters: [b, a]), sgd = SGD(parameters: [b, a], learningRate: 0.1, momentum: 0.9)
        adam.parameterNames = ["layer.bias", "layer.weight"]; sgd.parameterNames = adam.parameterNames
        try adam.loadStateDict(s.adam.stateDict()); try sgd.loadStateDict(s.sgd.stateDict())
        #expect(adam.stateDict()["exp_avg.layer.weight"]!.scalars == s.adam.stateDict()["exp_avg.layer.weight"]!.scalars)
        #expect(sgd.stateDict()["momentum_buffer.layer.bias"]!.scalars == s.sgd.stateDict()["momentum_buffer.layer.bias"]!.scalars)
    }

    @Test("a state keyed by position (older checkpoints) still loads")
    func positionalStateLoads() throws {
        let s = Self.stepped()
        let named = s.adam.stateDict()
        let positional: [String: Tensor] = [
            "step": named["step"]!,
            "exp_avg.0": named["exp_avg.layer.weight"]!, "exp_avg_sq.0": named["exp_avg_sq.layer.weight"]!,
            "exp_avg.1": named["exp_avg.layer.bias"]!, "exp_avg_sq.1": named["exp_avg_sq.layer.bias"]!,
        ]
        let adam = Adam(parameters: [Tensor.zeros([3]), Tensor.zeros([2])])
        adam.parameterNames = ["layer.weight", "layer.bias"]
        try adam.loadStateDict(positional)
        #expect(adam.stateDict()["exp_avg_sq.layer.bias"]!.scalars == named["exp_avg_sq.layer.bias"]!.scalars)
        let sgd = SGD(parameters: [Tensor.zeros([3]), Tensor.zeros([2])], learningRate: 0.1, momentum: 0.9)
        sgd.parameterNames = ["layer.weight", "layer.bias"]
        try sgd.loadStateDict(["momentum_buffer.1": s.sgd.stateDict()["momentum_buffer.layer.bias"]!])
        #expect(sgd.stateDict()["momentum_buffer.layer.bias"]!.scalars == s.sgd.stateDict()["momentum_buffer.layer.bias"]!.scalars)
    }

    @Test("a moment missing for a named parameter is an error naming it")
    func missingMomentIsNamed() {
        let s = Self.stepped()
        var state = s.adam.stateDict()
        state["exp_avg.layer.bias"] = nil
        let adam = Adam(parameters: [Tensor.zeros([3]), Tensor.zeros([2])])
        adam.parameterNames = ["layer.weight", "layer.bias"]
        #expect(throws: TensorError.self) { try adam.loadStateDict(state) }
    }
}
