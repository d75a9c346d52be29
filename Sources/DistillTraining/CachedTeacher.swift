import DistillData
import DistillTensor

/// A teacher whose logits for every training row are already known: computed once from a model
/// (offline distillation, when no augmentation changes the inputs) or read from a file.
public final class CachedTeacher: Teacher {
    /// [N, C] logits, row i for dataset row i.
    public let logitTable: Tensor
    public let name: String
    public let parameterCount: Int
    public let bytes: Int

    public init(logits: Tensor, name: String, parameterCount: Int = 0, bytes: Int = 0) {
        precondition(logits.rank == 2, "CachedTeacher: logits must be [N, C], got \(logits.shape)")
        logitTable = logits
        self.name = name; self.parameterCount = parameterCount; self.bytes = bytes
    }

    /// Runs `teacher` once over the examples of `inputs` in batches and keeps the logits.
    public static func precomputed(from teacher: Teacher, inputs: LabeledDataset, batchSize: Int = 256) throws -> CachedTeacher {
        var parts: [Tensor] = []
        for start in stride(from: 0, to: inputs.count, by: batchSize) {
            let rows = start..<min(start + batchSize, inputs.count)
            parts.append(try teacher.logits(inputs.rows(rows), indices: Array(rows)))
        }
        return CachedTeacher(logits: withNoGrad { Tensor.concat(parts, axis: 0) }, name: teacher.name,
                             parameterCount: teacher.parameterCount, bytes: teacher.bytes)
    }

    public func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        guard features.isEmpty else { throw TensorError("\(name): cached teacher outputs hold logits only; feature methods need the teacher model") }
        guard indices.count == inputs.shape[0], indices.allSatisfy({ $0 >= 0 && $0 < logitTable.shape[0] }) else {
            throw TensorError("\(name): cached outputs cover \(logitTable.shape[0]) rows; the batch asks for rows outside them")
        }
        return (withNoGrad { logitTable.indexSelect(axis: 0, indices: indices) }, [:])
    }
}
