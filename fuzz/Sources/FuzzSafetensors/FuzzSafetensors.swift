import DistillTensor
import Foundation

/// safetensors files: the JSON header, offsets, dtypes and overlap checks.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    _ = try? Safetensors.decode(Data(bytes: bytes, count: count), name: "fuzz.safetensors")
    return 0
}
