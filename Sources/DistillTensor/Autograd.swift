/// Reverse-mode automatic differentiation.
///
/// Every op that has an input with `requiresGrad` (while gradient recording is on) gives its
/// result a `GradNode`: the inputs and a `BackwardRule` naming what the backward pass needs.
/// All rules live together in `Gradients.swift`, so they can be audited side by side.
/// `backward()` walks the graph in reverse topological order and *adds* each contribution, so a
/// tensor used twice receives both.

/// Whether ops record the graph. Off inside `withNoGrad` (teachers, evaluation, backward passes).
public enum GradMode {
    @TaskLocal public static var isEnabled = true
}

/// Runs `body` without recording gradients: for a teacher's forward pass and for evaluation.
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$isEnabled.withValue(false) { try body() }
}

final class GradNode {
    let inputs: [Tensor]
    let rule: BackwardRule
    init(inputs: [Tensor], rule: BackwardRule) { self.inputs = inputs; self.rule = rule }
}

extension Tensor {
    /// Wraps a freshly computed `storage` as the result of an op, recording the graph when any
    /// input needs a gradient. `rule` is evaluated only then.
    static func result(_ shape: [Int], _ storage: TensorStorage, inputs: [Tensor],
                       _ rule: @autoclosure () -> BackwardRule) -> Tensor {
        let out = Tensor(shape: shape, storage: storage)
        if GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad }) {
            out.requiresGrad = true
            out.node = GradNode(inputs: inputs, rule: rule())
        }
        return out
    }

    static func result(_ t: Tensor, inputs: [Tensor], _ rule: @autoclosure () -> BackwardRule) -> Tensor {
        result(t.shape, t.storage, inputs: inputs, rule())
    }

    /// Back-propagates from this tensor. Without `gradient` the tensor must hold one element
    /// (a scalar loss) and its gradient is 1. Leaf tensors with `requiresGrad` get their
    /// gradient added to `grad`; intermediate gradients are freed as soon as they are used.
    public func backward(_ gradient: Tensor? = nil) {
        precondition(requiresGrad, "backward(): this tensor does not require a gradient (was it computed under withNoGrad, or from frozen parameters only?)")
        let seed = gradient ?? {
            precondition(count == 1, "backward(): needs a scalar loss, got shape \(shape); pass a gradient")
            return Tensor.ones(shape)
        }()
        precondition(seed.shape == shape, "backward(): gradient shape \(seed.shape) does not match \(shape)")

        // Reverse topological order by iterative depth-first search.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if !visited.insert(ObjectIdentifier(t)).inserted { continue }
            stack.append((t, true))
            if let node = t.node { for input in node.inputs where input.requiresGrad { stack.append((input, false)) } }
        }

        var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        withNoGrad {
            for t in order.reversed() {
                guard let g = pending.removeValue(forKey: ObjectIdentifier(t)) else { continue }
                guard let node = t.node else {
                    if let existing = t.grad { existing.addScaled(g) } else { t.grad = g.copy() }
                    continue
                }
                let grads = node.rule.gradients(inputs: node.inputs, output: t, outputGrad: g)
                for (input, grad) in zip(node.inputs, grads) where input.requiresGrad {
                    guard let grad else { continue }
                    precondition(grad.shape == input.shape,
                                 "backward of \(node.rule.name): gradient shape \(grad.shape) for input \(input.shape)")
                    let key = ObjectIdentifier(input)
                    if let existing = pending[key] {
                        // Never add into a gradient tensor a rule may have returned by reference.
                        pending[key] = existing + grad
                    } else {
                        pending[key] = grad
                    }
                }
            }
        }
    }
}
