import DistillTensor
import Foundation

/// NumPy's `.npz` archives (`np.savez`, `np.savez_compressed`): a ZIP file of `.npy` entries.
///
/// Entries may be stored or deflated; the ZIP container is parsed by `ZIP`. Before an entry is
/// extracted its declared uncompressed size is checked against `ReadLimits.maxPayloadBytes` (per
/// entry and for the whole archive), and extraction produces exactly that many bytes or fails,
/// so a ZIP bomb fails with a message instead of filling memory.
public enum NPZ {
    /// Most entries an archive may have.
    public static let maxEntries = 100_000

    /// Every array in the archive as Float32, keyed by entry name without `.npy`
    /// (`np.savez(f, x=a)` gives `"x"`).
    public static func read(_ url: URL, limits: ReadLimits = .default) throws -> [String: Tensor] {
        try decode(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// The raw `.npy` bytes of every entry, keyed by name without `.npy`; decode one with
    /// `NPY.decode` or, for integer labels, `NPY.decodeInts`.
    public static func readEntries(_ url: URL, limits: ReadLimits = .default) throws -> [String: Data] {
        try decodeEntries(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// Every array in the in-memory archive `data` as Float32; `name` appears in errors.
    public static func decode(_ data: Data, name: String, limits: ReadLimits = .default) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (key, entry) in try decodeEntries(data, name: name, limits: limits) {
            tensors[key] = try NPY.decode(entry, name: "\(name)[\(key).npy]", limits: limits)
        }
        return tensors
    }

    /// The raw `.npy` bytes of every entry of the in-memory archive `data`.
    public static func decodeEntries(_ data: Data, name: String, limits: ReadLimits = .default) throws -> [String: Data] {
        guard data.count <= limits.maxFileBytes else {
            throw DataError(file: name, "\(data.count) bytes, more than the \(limits.maxFileBytes)-byte limit (ReadLimits.maxFileBytes)")
        }
        var entries: [String: Data] = [:]
        var total: UInt64 = 0
        for entry in try ZIP.entries(of: data, name: name, maxEntries: maxEntries) where !entry.isDirectory {
            guard entry.name.hasSuffix(".npy") else {
                throw DataError(file: name, "entry '\(entry.name)' is not a .npy array")
            }
            let key = String(entry.name.dropLast(4))
            guard entries[key] == nil else { throw DataError(file: name, "entry '\(entry.name)' appears twice") }
            let declared = entry.uncompressedSize
            total += min(declared, UInt64(Int.max))
            guard declared <= UInt64(limits.maxPayloadBytes), total <= UInt64(limits.maxPayloadBytes) else {
                throw DataError(file: name, "entry '\(entry.name)' declares \(declared) uncompressed bytes, over the \(limits.maxPayloadBytes)-byte limit (ReadLimits.maxPayloadBytes)")
            }
            // Deflate expands at most ~1032:1: a larger claim is corrupt (and must not size an allocation).
            guard declared <= (entry.compressedSize + 1024) * 1100 else {
                throw DataError(file: name, "entry '\(entry.name)' declares \(declared) uncompressed bytes from \(entry.compressedSize) compressed bytes, impossible for deflate")
            }
            entries[key] = try ZIP.extract(entry, from: data, name: name)
        }
        return entries
    }

    /// Writes `tensors` as `<f4` `.npy` entries named `<key>.npy`, deflated when `compressed`
    /// (like `np.savez_compressed`), atomically.
    public static func write(_ tensors: [String: Tensor], to url: URL, compressed: Bool = false) throws {
        try writeAtomically(encode(tensors, compressed: compressed), to: url)
    }

    /// The bytes of an `.npz` archive holding `tensors` (entries in sorted order).
    public static func encode(_ tensors: [String: Tensor], compressed: Bool = false) throws -> Data {
        try encode(entries: tensors.mapValues { NPY.encode($0) }, compressed: compressed)
    }

    /// The bytes of an `.npz` archive from raw `.npy` entries (e.g. from `NPY.encode(ints:shape:)`).
    public static func encode(entries: [String: Data], compressed: Bool = false) throws -> Data {
        try ZIP.archive(entries.keys.sorted().map { (name: $0 + ".npy", data: entries[$0]!) }, compressed: compressed)
    }
}
