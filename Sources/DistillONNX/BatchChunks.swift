import DistillTensor
import Foundation

/// Running a large batch through an image model a few images at a time.
///
/// At batch 256, MobileNet v2's widest activations hold 256 × 96 × 112 × 112 floats (1.2 GB):
/// every node's output is fresh memory, mapped and zeroed by the kernel on each call, and no
/// layer's output is still in cache when the next layer reads it. When every operator of the
/// graph treats images independently, running the whole chain on `ONNXModel.chunkImages`
/// images at a time gives the same per-image results from small buffers that the allocator
/// reuses from one chunk and one call to the next.
///
/// `BatchChunks.separable` decides at load, from the optimised plan alone, whether a graph is
/// such a chain: its float inputs have a free leading (batch) axis, and every step is one of
/// the per-image operators below, reading batch-major values and constants only. A run then
/// checks, step by step, that each output keeps the chunk's image count on its leading axis and
/// that no constant operand of an elementwise operator reaches the batch axis; anything else
/// (a failure, an unexpected shape) abandons the chunks and runs the whole batch as one, so
/// results and error messages stay those of the graph run whole.
enum BatchChunks {
    /// Operators that compute each image from that image alone, given constant weights.
    static let unary: Set<String> = ["Relu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Selu",
                                     "Exp", "Neg", "Abs", "Sqrt", "Erf", "Softplus", "Clip", "Identity", "Dropout",
                                     "GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool",
                                     "BatchNormalization", "Conv", "Gemm", "MatMul", "Flatten", "Reshape"]
    /// Elementwise operators with broadcasting: both operands may be batch-major; a constant
    /// operand is checked at run time not to reach the batch axis.
    static let binary: Set<String> = ["Add", "Sub", "Mul", "Div"]

    /// Whether `plan` can run chunk by chunk (see the type's documentation).
    static func separable(_ plan: ExecutionPlan, inputs: [ONNXValueInfo], outputs: [String], constant: (String) -> ONNXValue?) -> Bool {
        func isConstant(_ name: String) -> Bool { constant(name) != nil }
        guard !inputs.isEmpty else { return false }
        for info in inputs {
            guard info.type == .float, info.nonTensorKind == nil, let shape = info.shape, !shape.isEmpty,
                  shape[0].value == nil else { return false }
        }
        // Only graphs with depthwise convolutions (MobileNet's and EfficientNet's blocks): their
        // kernels already work image by image (1×1 Convs as one GEMM per image, depthwise ones
        // plane by plane), so chunks lose nothing; the engine's other convolutions gather the
        // batch into large GEMMs that small chunks would shrink (ResNet-18 ran slower in chunks).
        let depthwise = plan.steps.flatMap { $0.block?.layers ?? [$0] }.contains { step in
            guard step.node.opType == "Conv", step.node.inputs.count >= 2, case .float(let w)? = constant(step.node.inputs[1]),
                  w.rank == 4, w.shape[1] == 1, w.shape[0] > 1 else { return false }
            return (try? step.node.attributes.int("group", 1)) == w.shape[0]
        }
        guard depthwise else { return false }
        var batchMajor = Set(inputs.map(\.name))
        for step in plan.steps {
            let node = step.node
            guard node.domain.isEmpty, !node.attributes.hasSubgraph, node.outputs.count == 1,
                  !node.outputs[0].isEmpty, accepts(step, constant) else { return false }
            let present = node.inputs.filter { !$0.isEmpty }
            let batched = present.filter(batchMajor.contains)
            guard !batched.isEmpty, present.allSatisfy({ batchMajor.contains($0) || isConstant($0) }) else { return false }
            if binary.contains(node.opType) {
                // Both operands are either batch-major or constant; at least one is batch-major.
            } else {
                // Input 0 carries the images; weights and limits are constants; a fused gate
                // and residual are images too (`PlannedStep.readsImage`).
                guard batchMajor.contains(node.inputs[0]) else { return false }
                for (i, name) in node.inputs.enumerated().dropFirst() where !name.isEmpty {
                    guard step.readsImage(at: i) ? batchMajor.contains(name) : isConstant(name) else { return false }
                }
            }
            batchMajor.insert(node.outputs[0])
        }
        return outputs.allSatisfy(batchMajor.contains)
    }

    /// The operator-specific conditions: image-wise attributes and constant shape requests.
    private static func accepts(_ step: PlannedStep, _ constant: (String) -> ONNXValue?) -> Bool {
        let node = step.node
        if step.block != nil { return true }  // 1×1 and depthwise Convs: image by image
        guard unary.contains(node.opType) || binary.contains(node.opType) else { return false }
        let a = node.attributes
        switch node.opType {
        case "BatchNormalization": return (try? a.int("training_mode", 0)) == 0
        case "Flatten": return ((try? a.int("axis", 1)) ?? 0) >= 1
        case "Gemm": return (try? a.int("transA", 0)) == 0
        case "Reshape":
            // A constant request that copies the batch extent (0) or infers it (-1) from fixed
            // per-image extents: [0, -1], [-1, 1280]. Run time checks that the images stay apart.
            guard node.opset >= 5, node.inputs.count == 2, (try? a.int("allowzero", 0)) == 0,
                  case .int(let shape)? = constant(node.inputs[1]), let first = shape.values.first else { return false }
            return first == 0 || (first == -1 && shape.values.dropFirst().allSatisfy { $0 > 0 })
        default: return true
        }
    }

    /// Rows start..<start+count of `value` along its leading axis (a copy).
    static func rows(_ value: ONNXValue, _ start: Int, _ count: Int) -> ONNXValue? {
        guard case .float(let t) = value, let n = t.shape.first, start + count <= n else { return nil }
        let perRow = n == 0 ? 0 : t.count / n
        let out = Tensor(uninitializedShape: [count] + t.shape.dropFirst())
        out.data.update(from: t.data + start * perRow, count: count * perRow)
        return .float(out)
    }

    /// Whether a step's inputs and outputs keep images on the leading axis with `images` of them:
    /// every output leads with `images`, and a constant operand of an elementwise operator has
    /// fewer axes than the result or a leading extent of 1 (so it never pairs with the batch axis).
    static func keepsImages(_ node: Node, inputs: [ONNXValue?], outputs: [ONNXValue], images: Int,
                            isConstant: (String) -> Bool) -> Bool {
        guard outputs.allSatisfy({ $0.shape.first == images }) else { return false }
        guard binary.contains(node.opType) else { return true }
        let rank = outputs.map(\.shape.count).max() ?? 0
        for (name, value) in zip(node.inputs, inputs) where isConstant(name) {
            guard let v = value else { continue }
            if v.shape.count >= rank && v.shape.first != 1 { return false }
        }
        return true
    }
}
