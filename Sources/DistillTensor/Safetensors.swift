import Foundation

/// Reads and writes the safetensors format (Hugging Face): an 8-byte little-endian header
/// length, a JSON header mapping each name to `{dtype, shape, data_offsets}` (plus an optional
/// `__metadata__` string map), then the raw little-endian data. Loading a safetensors file never
/// executes code, and every size in the header is checked against the file before use.
public enum Safetensors {
    /// The largest header accepted (the format's own reference limit is 100 MB).
    public static let maxHeaderBytes = 100_000_000

    /// Writes `tensors` (Float32) atomically: to a temporary file, flushed, then renamed.
    public static func save(_ tensors: [String: Tensor], to url: URL, metadata: [String: String] = [:]) throws {
        try AtomicFile.write(encode(tensors, metadata: metadata), to: url)
    }

    /// The file's bytes for `tensors`, names sorted, data in that order.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:]) -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + t.count * 4]] as [String: Any]
            offset += t.count * 4
        }
        var json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces so the data is 8-byte aligned
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names {
            let t = tensors[name]!
            out.append(UnsafeBufferPointer(t.buffer))  // x86_64 and arm64 are little-endian
        }
        return out
    }

    /// Loads every tensor of a safetensors file as Float32 (F32, F16, BF16 and F64 are accepted).
    /// With `including`, only the tensors it accepts are read and checked; the others are skipped
    /// (a Hugging Face checkpoint also holds integer buffers such as `position_ids`).
    public static func load(_ url: URL, including: ((String) -> Bool)? = nil) throws -> [String: Tensor] {
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw TensorError("\(url.path): cannot read (\(error.localizedDescription))")
        }
        return try decode(data, name: url.path, including: including).tensors
    }

    /// Parses the bytes of a safetensors file; `name` appears in error messages. `including`
    /// selects the tensors to read (all when nil).
    public static func decode(_ data: Data, name: String, including: ((String) -> Bool)? = nil) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        func fail(_ why: String) -> TensorError { TensorError("\(name): not a valid safetensors file: \(why)") }
        guard data.count >= 8 else { throw fail("\(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(maxHeaderBytes) else { throw fail("header length \(headerLength) exceeds the \(maxHeaderBytes)-byte limit") }
        guard headerLength <= UInt64(data.count - 8) else { throw fail("header length \(headerLength) runs past the end of the file (\(data.count) bytes)") }
        let headerEnd = 8 + Int(headerLength)
        let json = data.subdata(in: data.startIndex + 8 ..< data.startIndex + headerEnd)
        guard let header = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] else {
            throw fail("the header is not a JSON object")
        }
        let body = data.count - headerEnd
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        var ranges: [(Int, Int)] = []
        for (key, value) in header {
            if key == "__metadata__" {
                guard let m = value as? [String: String] else { throw fail("__metadata__ must map strings to strings") }
                metadata = m
                continue
            }
            if let including, !including(key) { continue }
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail("entry '\(key)' lacks dtype, shape or data_offsets")
            }
            let width: Int
            switch dtype {
            case "F32": width = 4
            case "F16", "BF16": width = 2
            case "F64": width = 8
            default: throw fail("tensor '\(key)' has dtype \(dtype); DistillKit reads F32, F16, BF16 and F64")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor '\(key)' has a negative extent in shape \(shape)") }
            var count = 1
            for d in shape {
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow, p <= body else { throw fail("tensor '\(key)' declares shape \(shape), larger than the file") }
                count = p
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= body else {
                throw fail("tensor '\(key)' has data_offsets \(offsets) outside the \(body)-byte data section")
            }
            guard offsets[1] - offsets[0] == count * width else {
                throw fail("tensor '\(key)' of shape \(shape) and dtype \(dtype) needs \(count * width) bytes, data_offsets give \(offsets[1] - offsets[0])")
            }
            ranges.append((offsets[0], offsets[1]))
            let t = Tensor(uninitializedShape: shape)
            data.withUnsafeBytes { raw in
                let base = raw.baseAddress! + headerEnd + offsets[0]
                if dtype == "F32" {  // little-endian on every platform DistillKit runs on: one copy
                    UnsafeMutableRawPointer(t.data).copyMemory(from: base, byteCount: count * 4)
                    return
                }
                for i in 0..<count {
                    switch width {
                    case 4: t.data[i] = Float(bitPattern: base.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                    case 8: t.data[i] = Float(Double(bitPattern: base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))
                    default:
                        let bits = base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
                        t.data[i] = dtype == "BF16" ? Float(bitPattern: UInt32(bits) << 16) : Float(Float16(bitPattern: bits))
                    }
                }
            }
            tensors[key] = t
        }
        ranges.sort { $0 < $1 }
        var end = 0
        for r in ranges {
            guard r.0 >= end else { throw fail("two tensors' data ranges overlap at byte \(r.0)") }
            end = r.1
        }
        return (tensors, metadata)
    }
}

/// Writes files so that a crash or kill never leaves a torn file behind: the bytes go to a
/// temporary file in the same folder, are flushed to disk, and the file is renamed over the target.
public enum AtomicFile {
    /// Temporary files are `.NAME.tmp-PID` beside their target; `removeLeftovers` deletes the
    /// ones a killed process left behind.
    public static let temporarySuffix = ".tmp-"

    /// Removes the temporary files of earlier, killed writers in `folder` (call it only while
    /// holding the folder's lock, so that no live writer's file is removed); returns their names.
    @discardableResult
    public static func removeLeftovers(in folder: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        let leftovers = names.filter { name in
            // `.NAME.tmp-PID`, a regular file, written by another process than this one.
            guard name.hasPrefix("."), name.range(of: temporarySuffix) != nil,
                  let pid = name.split(separator: "-").last.flatMap({ Int32($0) }), pid != getpid() else { return false }
            var info = stat()
            return lstat(folder.appendingPathComponent(name).path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
        }
        for name in leftovers { try? FileManager.default.removeItem(at: folder.appendingPathComponent(name)) }
        return leftovers
    }

    /// Writes `data` to `url` through a temporary file renamed over it, so that a reader never
    /// sees half a file and a failed write keeps the previous one. A symbolic link is written
    /// through (its target replaced); a folder, FIFO, device or socket at `url` is an error, not
    /// replaced by a regular file.
    public static func write(_ data: Data, to given: URL) throws {
        var url = given
        for _ in 0..<16 {  // a link to a file not yet written is followed too
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path) else { break }
            url = target.hasPrefix("/") ? URL(fileURLWithPath: target) : url.deletingLastPathComponent().appendingPathComponent(target)
        }
        if let problem = InputFile.problem(at: url.path), problem != "no such file", problem != "permission denied" {
            throw TensorError("\(given.path): \(problem == "is a folder, not a file" ? "is a folder" : problem); name a file to write")
        }
        let folder = url.deletingLastPathComponent()
        try OutputFolder.create(folder, what: "folder of \(url.lastPathComponent)")
        let temp = folder.appendingPathComponent(".\(url.lastPathComponent)\(temporarySuffix)\(getpid())")
        guard FileManager.default.createFile(atPath: temp.path, contents: nil) else {
            throw TensorError("\(temp.path): cannot create file (is the folder writable?)")
        }
        do {
            let handle = try FileHandle(forWritingTo: temp)
            defer { try? handle.close() }
            try handle.write(contentsOf: data)
            try handle.synchronize()
        } catch {
            try? FileManager.default.removeItem(at: temp)
            throw TensorError("\(url.path): write failed, previous file kept (\(error.localizedDescription))")
        }
        guard rename(temp.path, url.path) == 0 else {
            let why = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temp)
            throw TensorError("\(url.path): cannot replace file (\(why))")
        }
    }
}
