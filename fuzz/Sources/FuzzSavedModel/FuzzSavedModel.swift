import DistillNN
import Foundation

/// DistillKit's model/checkpoint bundle: a safetensors file whose metadata names the
/// architecture; the model is rebuilt from that spec and the weights loaded into it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSavedModel(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    _ = try? SavedModel.decode(Data(bytes: bytes, count: count), name: "fuzz.safetensors")
    return 0
}
