import DistillONNX
import Foundation

/// ONNX models: protobuf decoding, graph checks (topological order, initializers, opsets).
/// No directory is given, so a model naming external data cannot make the fuzzer read files.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    _ = try? ONNXModel(data: Data(bytes: bytes, count: count), directory: nil, source: "fuzz.onnx")
    return 0
}
