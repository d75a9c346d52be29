import DistillNN
import DistillTensor
import Foundation
import Testing

// Helpers shared by the DistillNN tests. `pattern` and `imageInput` reproduce, bit for bit, the
// deterministic values scripts/golden/make_nn_golden.py gives PyTorch, so a model's weights can be
// set identically on both sides without shipping them.

/// n values in [-1, 1]: `((i·7919 + j·104729 + 17) mod 1009) / 1008 · 2 − 1`, in Double.
func pattern(_ n: Int, _ j: Int) -> [Double] {
    (0..<n).map { (i: Int) -> Double in
        let k: Int = (i * 7919 + j * 104_729 + 17) % 1009
        return Double(k) / 1008.0 * 2.0 - 1.0
    }
}

/// Image-like inputs in [0, 1]: `((i·31 + 7) mod 101) / 100`.
func imageInput(_ shape: [Int]) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, scalars: (0..<n).map { Float(Double(($0 * 31 + 7) % 101) / 100.0) })
}

/// Sets every tensor of `model` as make_nn_golden.py's `pattern_value` does: the j-th state-dict
/// name in sorted order gets `pattern(n, j)`, scaled by 1/√fan-in for weights of rank ≥ 2, 0.1 for
/// biases, 1 + 0.2·v for batch-norm weights, 0.1·v / 0.75 + 0.25·v for running mean / variance.
func setPatternWeights(_ model: Module) {
    let batchNormPaths = Set(model.namedModules().filter { $0.module is BatchNorm }.map(\.name))
    let tensors = model.namedTensors().sorted { $0.name < $1.name }
    for (j, entry) in tensors.enumerated() {
        let name = entry.name, t = entry.tensor
        let dot = name.lastIndex(of: ".")
        let leaf = dot.map { String(name[name.index(after: $0)...]) } ?? name
        let owner = dot.map { String(name[..<$0]) } ?? ""
        if leaf == "num_batches_tracked" { continue }
        let v = pattern(t.count, j)
        let values: [Double]
        switch leaf {
        case "running_mean": values = v.map { 0.1 * $0 }
        case "running_var": values = v.map { 0.75 + 0.25 * $0 }
        case "weight" where batchNormPaths.contains(owner): values = v.map { 1.0 + 0.2 * $0 }
        default:
            if t.rank >= 2 {
                let scale = 1.0 / Double(t.shape.dropFirst().reduce(1, *)).squareRoot()
                values = v.map { $0 * scale }
            } else {
                values = v.map { 0.1 * $0 }
            }
        }
        for k in 0..<t.count { t.data[k] = Float(values[k]) }
    }
}

/// Mean cross-entropy of [N, C] logits against class indices.
func crossEntropy(_ logits: Tensor, _ labels: [Int]) -> Tensor {
    -(logits.logSoftmax().gather(classes: labels).mean())
}

/// Fraction of rows whose largest logit is the label.
func accuracy(_ logits: Tensor, _ labels: [Int]) -> Double {
    let predicted = logits.argmaxLastAxis()
    return Double(zip(predicted, labels).filter { $0 == $1 }.count) / Double(labels.count)
}

/// Expects `body` to throw a `TensorError` whose message contains every fragment; returns the message.
@discardableResult
func expectTensorError(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () throws -> Void) -> String? {
    do {
        try body()
        Issue.record("expected an error containing \(fragments), nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as TensorError {
        for fragment in fragments where !error.message.contains(fragment) {
            Issue.record("error message \"\(error.message)\" lacks \"\(fragment)\"", sourceLocation: sourceLocation)
        }
        return error.message
    } catch {
        Issue.record("expected a TensorError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

