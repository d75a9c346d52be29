import DistillData
import Foundation

/// `.npy` files: header dict parsing, dtype conversion to Float and to exact integers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPY(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: bytes, count: count)
    _ = try? NPY.decode(data, name: "fuzz.npy")
    _ = try? NPY.decodeInts(data, name: "fuzz.npy")
    return 0
}
