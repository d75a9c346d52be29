import DistillONNX
import DistillTensor
import Foundation

/// ONNX models: protobuf decoding, graph checks (topological order, initializers, opsets), then a
/// run on zeros, so that every operator's validation of attribute and input values is fuzzed too
/// (a shape, index or size taken from the file must be an error, never a trap or a huge allocation).
/// No directory is given, so a model naming external data cannot make the fuzzer read files.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    _ = prepareOnce
    ONNXModel.withLimits(maxElements: 1 << 20, maxSteps: 1 << 22) {
        guard let model = try? ONNXModel(data: Data(bytes: bytes, count: count), directory: nil, source: "fuzz.onnx") else { return }
        _ = model.parameterCount
        var feeds: [String: ONNXValue] = [:]
        for info in model.inputs {
            // Declared extents up to 16 (unknown ones 2): small inputs, so a large value is the model's doing.
            let dims = (info.shape ?? []).map { Swift.min($0.value ?? 2, 16) }
            let n = dims.reduce(1, *)
            switch info.type {
            case .float?, nil: feeds[info.name] = .float(Tensor.zeros(dims))
            case let t? where t.isInteger: feeds[info.name] = .int(IntTensor(shape: dims, values: [Int64](repeating: 0, count: n), type: t))
            default: return
            }
        }
        _ = try? model.run(feeds)
    }
    return 0
}

/// Before the first input: a memory budget under libFuzzer's -malloc_limit_mb (MemoryBudget reads
/// DISTILL_MAX_MEMORY once), and the BLAS library that the products run on.
let prepareOnce: Void = {
    setenv("DISTILL_MAX_MEMORY", "256m", 1)
    try? BLAS.ensureLoaded()
}()
