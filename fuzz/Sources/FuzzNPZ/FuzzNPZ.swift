import DistillData
import Foundation

/// `.npz` archives: DistillKit's ZIP reader, entry size checks, then every entry as `.npy`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPZ(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: bytes, count: count)
    guard let entries = try? NPZ.decodeEntries(data, name: "fuzz.npz") else { return 0 }
    for (key, entry) in entries {
        _ = try? NPY.decode(entry, name: key)
        _ = try? NPY.decodeInts(entry, name: key)
    }
    return 0
}
