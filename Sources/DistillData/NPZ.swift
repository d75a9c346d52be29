import DistillTensor
import Foundation
import ZIPFoundation

/// NumPy's `.npz` archives (`np.savez`, `np.savez_compressed`): a ZIP file of `.npy` entries.
///
/// Entries may be stored or deflated. Before an entry is extracted its declared uncompressed size
/// is checked against `ReadLimits.maxPayloadBytes` (per entry and for the whole archive), and the
/// extraction stops if the entry produces more bytes than it declared, so a ZIP bomb fails with
/// a message instead of filling memory.
public enum NPZ {
    /// Most entries an archive may have.
    public static let maxEntries = 100_000

    /// Every array in the archive as Float32, keyed by entry name without `.npy`
    /// (`np.savez(f, x=a)` gives `"x"`).
    public static func read(_ url: URL, limits: ReadLimits = .default) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (key, data) in try readEntries(url, limits: limits) {
            tensors[key] = try NPY.decode(data, name: "\(url.path)[\(key).npy]", limits: limits)
        }
        return tensors
    }

    /// The raw `.npy` bytes of every entry, keyed by name without `.npy`; decode one with
    /// `NPY.decode` or, for integer labels, `NPY.decodeInts`.
    public static func readEntries(_ url: URL, limits: ReadLimits = .default) throws -> [String: Data] {
        let path = url.path
        _ = try checkedFileSize(url, limit: limits.maxFileBytes)
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw DataError(file: path, "not a valid .npz file: cannot open it as a ZIP archive (\(error))")
        }
        return try entries(of: archive, path: path, limits: limits)
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
        // Through a temporary file, not ZIPFoundation's in-memory archive: the latter traps on a
        // central directory that points past the end of the data (found by fuzz/FuzzNPZ).
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-npz-\(UUID().uuidString).npz")
        do { try data.write(to: temp) } catch { throw DataError(file: name, "cannot stage the archive in \(temp.path) (\(error.localizedDescription))") }
        defer { try? FileManager.default.removeItem(at: temp) }
        let archive: Archive
        do { archive = try Archive(url: temp, accessMode: .read) } catch {
            throw DataError(file: name, "not a valid .npz file: cannot open it as a ZIP archive (\(error))")
        }
        return try entries(of: archive, path: name, limits: limits)
    }

    private static func entries(of archive: Archive, path: String, limits: ReadLimits) throws -> [String: Data] {
        var entries: [String: Data] = [:]
        var total: UInt64 = 0, seen = 0
        for entry in archive {
            seen += 1
            guard seen <= maxEntries else { throw DataError(file: path, "more than \(maxEntries) entries") }
            if entry.type == .directory { continue }
            let entryPath = entry.path
            guard entry.type == .file, entryPath.hasSuffix(".npy") else {
                throw DataError(file: path, "entry '\(entryPath)' is not a .npy array")
            }
            let key = String(entryPath.dropLast(4))
            let declared = entry.uncompressedSize
            total += declared
            guard declared <= UInt64(limits.maxPayloadBytes), total <= UInt64(limits.maxPayloadBytes) else {
                throw DataError(file: path, "entry '\(entryPath)' declares \(declared) uncompressed bytes, over the \(limits.maxPayloadBytes)-byte limit")
            }
            // Deflate expands at most ~1032:1: a larger claim is corrupt (and must not size an allocation).
            guard declared <= (entry.compressedSize + 1024) * 1100 else {
                throw DataError(file: path, "entry '\(entryPath)' declares \(declared) uncompressed bytes from \(entry.compressedSize) compressed bytes, impossible for deflate")
            }
            var data = Data(capacity: Int(min(declared, 1 << 24)))
            do {
                _ = try archive.extract(entry, skipCRC32: false) { chunk in
                    guard data.count + chunk.count <= Int(declared) else { throw SizeOverrun() }
                    data.append(chunk)
                }
            } catch is SizeOverrun {
                throw DataError(file: path, "entry '\(entryPath)' decompresses to more than the \(declared) bytes it declares")
            } catch {
                throw DataError(file: path, "entry '\(entryPath)' cannot be extracted (\(error))")
            }
            guard data.count == Int(declared) else {
                throw DataError(file: path, "entry '\(entryPath)' holds \(data.count) bytes, it declares \(declared)")
            }
            entries[key] = data
        }
        return entries
    }

    private struct SizeOverrun: Error {}

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
        do {
            let archive = try Archive(data: Data(), accessMode: .create)
            for key in entries.keys.sorted() {
                let bytes = entries[key]!
                try archive.addEntry(with: key + ".npy", type: .file, uncompressedSize: Int64(bytes.count),
                                     compressionMethod: compressed ? .deflate : .none) { position, size in
                    bytes.subdata(in: Int(position) ..< Int(position) + size)
                }
            }
            guard let data = archive.data else { throw DataError("NPZ.encode: the in-memory archive has no data") }
            return data
        } catch let error as DataError {
            throw error
        } catch {
            throw DataError("NPZ.encode: cannot build the archive (\(error))")
        }
    }
}
