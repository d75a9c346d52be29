import DistillData
import Foundation

/// IDX files, raw and gzipped (a `1f 8b` prefix routes the input through zlib), in both decoders.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: bytes, count: count)
    _ = try? IDX.decode(data, name: "fuzz.idx")
    _ = try? IDX.decodeFloats(data, name: "fuzz.idx")
    _ = try? Gzip.decompress(data, limit: 1 << 24, name: "fuzz.gz")
    return 0
}
