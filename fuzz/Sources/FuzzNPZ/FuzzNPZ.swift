import DistillData
import Foundation

/// `.npz` archives: DistillKit's ZIP reader, entry size checks, every entry as `.npy`, then the
/// archive as a classification dataset (x_train, y_train, x_test, y_test).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPZ(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: bytes, count: count)
    _ = try? NPZ.decodeClassification(data, name: "fuzz.npz")
    guard let entries = try? NPZ.decodeEntries(data, name: "fuzz.npz") else { return 0 }
    for (key, entry) in entries {
        _ = try? NPY.decode(entry, name: key)
        _ = try? NPY.decodeInts(entry, name: key)
    }
    return 0
}
