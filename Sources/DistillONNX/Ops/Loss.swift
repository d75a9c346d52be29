import DistillTensor
import Foundation

// The loss operators (opset 12+), as exporters write a training graph's loss.

extension ONNXOps {
    /// loss[n, d…] = −weight[t] · input[n, t, d…] with t = target[n, d…], 0 where t = ignore_index;
    /// reduced by `reduction` (none, sum, or mean: the sum over the sum of the weights used).
    static func nllLoss(_ input: Tensor, _ target: IntTensor, weight: Tensor?, reduction: String, ignoreIndex: Int64?) throws -> Tensor {
        guard input.rank >= 2 else { throw ONNXError("input \(input.shape) must be [N, C, ...]") }
        let n = input.shape[0], c = input.shape[1], inner = input.shape[2...].reduce(1, *)
        guard target.shape == [n] + Array(input.shape[2...]) else { throw ONNXError("target \(target.shape) does not fit input \(input.shape)") }
        if let weight { guard weight.shape == [c] else { throw ONNXError("weight \(weight.shape) must be [\(c)]") } }
        var losses = [Float](repeating: 0, count: n * inner)
        var weightSum: Double = 0
        for i in 0..<n { for d in 0..<inner {
            let t = target.values[i * inner + d]
            if let ignoreIndex, t == ignoreIndex { continue }
            guard t >= 0 && t < c else { throw ONNXError("target \(t) is outside 0..<\(c)") }
            let w = weight?.data[Int(t)] ?? 1
            losses[i * inner + d] = -input.data[(i * c + Int(t)) * inner + d] * w
            weightSum += Double(w)
        } }
        switch reduction {
        case "none": return Tensor(shape: target.shape, scalars: losses)
        case "sum": return Tensor(scalar: Float(losses.reduce(0.0) { $0 + Double($1) }))
        case "mean":
            let total = losses.reduce(0.0) { $0 + Double($1) }
            return Tensor(scalar: Float(total / weightSum))
        default: throw ONNXError("reduction '\(reduction)' must be none, sum or mean")
        }
    }

    static func NegativeLogLikelihoodLoss(_ c: OpContext) throws -> [ONNXValue] {
        guard case .int(let target) = try c.input(1) else { throw ONNXError("target must be an integer tensor") }
        let ignore = try c.attributes.int("ignore_index").map(Int64.init)
        return [.float(try nllLoss(try c.float(0), target, weight: try c.optionalFloat(2),
                                   reduction: try c.attributes.string("reduction", "mean"), ignoreIndex: ignore))]
    }

    /// SoftmaxCrossEntropyLoss: NLL of log-softmax over axis 1; the second output is that log-softmax.
    static func SoftmaxCrossEntropyLoss(_ c: OpContext) throws -> [ONNXValue] {
        let scores = try c.float(0)
        guard scores.rank >= 2 else { throw ONNXError("scores \(scores.shape) must be [N, C, ...]") }
        guard case .int(let labels) = try c.input(1) else { throw ONNXError("labels must be an integer tensor") }
        let logProb = scores.logSoftmax(axis: 1)
        let ignore = try c.attributes.int("ignore_index").map(Int64.init)
        let loss = try nllLoss(logProb, labels, weight: try c.optionalFloat(2), reduction: try c.attributes.string("reduction", "mean"), ignoreIndex: ignore)
        return [.float(loss), .float(logProb)]
    }
}
