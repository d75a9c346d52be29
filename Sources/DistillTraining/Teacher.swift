import DistillNN
import DistillTensor

/// Anything that can label a batch for distillation: a DistillKit model, an imported ONNX graph,
/// or outputs cached in a file. Teachers never receive gradients.
public protocol Teacher: AnyObject {
    /// A short description for reports ("cnn-small (teacher.safetensors)").
    var name: String { get }
    var parameterCount: Int { get }
    var bytes: Int { get }
    /// Logits [N, C] and the intermediate outputs named in `features` (by dotted layer name),
    /// for the batch `inputs` (or the dataset rows `indices`, for cached teachers).
    func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor])
}

extension Teacher {
    public func logits(_ inputs: Tensor, indices: [Int] = []) throws -> Tensor {
        try forward(inputs, indices: indices, features: []).logits
    }
}

/// A DistillKit model used as a teacher: frozen, in evaluation mode, run without recording gradients.
public final class ModuleTeacher: Teacher {
    public let model: Module
    public let name: String
    public init(_ model: Module, name: String) {
        model.freeze()
        self.model = model
        self.name = name
    }
    public var parameterCount: Int { model.parameterCount }
    public var bytes: Int { model.stateBytes }

    public func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        let taps = features.isEmpty ? nil : try model.tapOutputs(features)
        defer { if taps != nil { model.removeTaps() } }
        let logits = withNoGrad { model(inputs) }
        return (logits, taps?.outputs ?? [:])
    }
}
