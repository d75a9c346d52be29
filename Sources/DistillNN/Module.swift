import DistillTensor

/// A layer or model: the base class of everything trainable.
///
/// A module's parameters are its stored `Tensor` properties, and its sub-modules are its stored
/// `Module` properties (found by reflection, as in PyTorch and mlx-swift). Their dotted names
/// form the state dictionary (`features.0.weight`); Swift's camelCase names are written in
/// PyTorch's snake_case (`runningMean` → `running_mean`) so checkpoints line up with the field's.
/// Buffers (state that is saved but not trained, like batch-norm's running statistics) are the
/// tensor properties named in `bufferNames`.
open class Module {
    /// Training mode (dropout active, batch-norm uses batch statistics) or evaluation mode.
    public private(set) var isTraining = true
    /// Where `callAsFunction` reports this module's output when a feature tap is installed.
    var tap: (taps: FeatureTaps, name: String)?

    public init() {}

    /// Computes the module's output. Subclasses override this; callers use `module(x)`.
    open func forward(_ x: Tensor) -> Tensor {
        preconditionFailure("\(type(of: self)) must override forward(_:)")
    }

    /// Runs `forward`, recording the output when a feature tap asked for it.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = forward(x)
        if let tap { tap.taps.outputs[tap.name] = y }
        return y
    }

    /// Names of tensor properties that are buffers rather than parameters.
    open var bufferNames: Set<String> { [] }

    /// Direct sub-modules with their names. The default reflects stored properties.
    open var children: [(name: String, module: Module)] {
        reflectedProperties().compactMap { label, value in (value as? Module).map { (snakeCase(label), $0) } }
    }

    /// This module's own tensors (not its children's): (state-dict name, tensor, is a buffer).
    public var ownTensors: [(name: String, tensor: Tensor, isBuffer: Bool)] {
        let buffers = bufferNames
        return reflectedProperties().compactMap { label, value in
            (value as? Tensor).map { (snakeCase(label), $0, buffers.contains(label)) }
        }
    }

    private func reflectedProperties() -> [(String, Any)] {
        var result: [(String, Any)] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        while let m = mirror {
            for child in m.children {
                guard let label = child.label, !label.hasPrefix("_") else { continue }
                if let optional = child.value as? OptionalTensor { if let t = optional.wrapped { result.append((label, t)) } }
                else { result.append((label, child.value)) }
            }
            mirror = m.superclassMirror
        }
        return result
    }

    // MARK: Traversal

    /// Every module in the tree with its dotted path ("" for this one), parents first.
    public func namedModules(prefix: String = "") -> [(name: String, module: Module)] {
        var result: [(String, Module)] = [(prefix, self)]
        for (name, child) in children {
            result += child.namedModules(prefix: prefix.isEmpty ? name : "\(prefix).\(name)")
        }
        return result
    }

    /// Every tensor in the tree: (dotted name, tensor, is a buffer).
    public func namedTensors() -> [(name: String, tensor: Tensor, isBuffer: Bool)] {
        namedModules().flatMap { path, module in
            module.ownTensors.map { (path.isEmpty ? $0.name : "\(path).\($0.name)", $0.tensor, $0.isBuffer) }
        }
    }

    /// Trainable-or-frozen parameters with their dotted names (buffers excluded).
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        namedTensors().filter { !$0.isBuffer }.map { ($0.name, $0.tensor) }
    }

    /// The parameters that currently receive gradients.
    public func trainableParameters() -> [Tensor] { namedParameters().map(\.tensor).filter(\.requiresGrad) }

    /// Number of parameter elements (buffers excluded).
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

    /// Bytes of the state dictionary as Float32 (parameters and buffers).
    public var stateBytes: Int { namedTensors().reduce(0) { $0 + $1.tensor.count * 4 } }

    /// The sub-module at a dotted path (`features.3`), or nil.
    public func module(at path: String) -> Module? { namedModules().first { $0.name == path }?.module }

    // MARK: Modes

    /// Switches this module and its children to training mode.
    public func train() { for (_, m) in namedModules() { m.isTraining = true } }
    /// Switches this module and its children to evaluation mode.
    public func eval() { for (_, m) in namedModules() { m.isTraining = false } }

    /// Stops gradients for every parameter and switches to evaluation: a teacher.
    public func freeze() {
        for (_, p) in namedParameters() { p.requiresGrad = false; p.grad = nil }
        eval()
    }
    /// Lets every parameter receive gradients again.
    public func unfreeze() { for (_, p) in namedParameters() { p.requiresGrad = true } }

    /// Clears every parameter's gradient.
    public func zeroGrad() { for (_, p) in namedParameters() { p.grad = nil } }

    // MARK: State dictionary

    /// Parameters and buffers by dotted name (tensors are shared, not copied).
    public func stateDict() -> [String: Tensor] {
        Dictionary(namedTensors().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
    }

    /// Copies values from `state` into this module's tensors. Every name must be present with the
    /// same shape; unexpected names are an error too, so a wrong checkpoint never loads silently.
    public func loadStateDict(_ state: [String: Tensor], source: String = "state dict") throws {
        let mine = namedTensors()
        var missing: [String] = [], wrong: [String] = []
        for (name, tensor, _) in mine {
            guard let value = state[name] else { missing.append(name); continue }
            guard value.shape == tensor.shape else { wrong.append("\(name): expected \(tensor.shape), found \(value.shape)"); continue }
        }
        let unexpected = Set(state.keys).subtracting(mine.map(\.name)).sorted()
        guard missing.isEmpty, wrong.isEmpty, unexpected.isEmpty else {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing \(missing.joined(separator: ", "))") }
            if !wrong.isEmpty { parts.append("shape mismatch \(wrong.joined(separator: "; "))") }
            if !unexpected.isEmpty { parts.append("unexpected \(unexpected.joined(separator: ", "))") }
            throw TensorError("\(source) does not fit this model: \(parts.joined(separator: "; "))")
        }
        // Only once everything fits, so a rejected state dict leaves the model as it was.
        for (name, tensor, _) in mine { tensor.assign(state[name]!) }
    }

    // MARK: Feature taps

    /// Records the outputs of the sub-modules at `paths` during the next forward passes (for
    /// feature-based distillation). Throws, listing the valid paths, when a path does not exist.
    public func tapOutputs(_ paths: [String]) throws -> FeatureTaps {
        let taps = FeatureTaps()
        let modules = Dictionary(namedModules().map { ($0.name, $0.module) }, uniquingKeysWith: { a, _ in a })
        for path in paths {
            guard let m = modules[path] else {
                throw TensorError("no layer named '\(path)'; layers are: \(modules.keys.filter { !$0.isEmpty }.sorted().joined(separator: ", "))")
            }
            m.tap = (taps, path)
        }
        return taps
    }
}

extension Module {
    /// Removes every feature tap in the tree.
    public func removeTaps() { for (_, m) in namedModules() { m.tap = nil } }
}

/// Outputs of tapped layers from the latest forward pass, by dotted path.
public final class FeatureTaps {
    public var outputs: [String: Tensor] = [:]
}

/// Lets reflection see through `Tensor?` properties (an optional bias).
protocol OptionalTensor { var wrapped: Tensor? { get } }
extension Optional: OptionalTensor where Wrapped == Tensor { var wrapped: Tensor? { self } }

/// `runningMean` → `running_mean`.
func snakeCase(_ name: String) -> String {
    var out = ""
    for ch in name {
        if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
    }
    return out
}
