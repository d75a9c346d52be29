import Foundation
import SystemZlib

/// The part of the ZIP format (PKWARE APPNOTE 6.3) that `.npz` files use, read from memory with
/// every offset and size checked against the bytes actually there.
///
/// Reading: the end-of-central-directory record (ZIP64 too, which NumPy writes), the central
/// directory, and each entry's data, stored or deflated, with its CRC-32 verified. Not supported,
/// each with its own error: encryption, split archives, compression methods other than deflate.
/// Writing: stored or deflated entries with known sizes, up to 4 GiB each.
///
/// DistillKit parses ZIP itself rather than through a ZIP library because the archive comes from
/// strangers: this reader is small enough to fuzz completely (fuzz/FuzzNPZ), and it never
/// allocates more than an entry's declared size, which is checked against limits first.
enum ZIP {
    /// One file in the archive, as the central directory describes it.
    struct Entry {
        var name: String
        var isDirectory: Bool { name.hasSuffix("/") }
        var method: UInt16
        var flags: UInt16
        var crc32: UInt32
        var compressedSize: UInt64
        var uncompressedSize: UInt64
        var localHeaderOffset: UInt64
    }

    static let storedMethod: UInt16 = 0
    static let deflateMethod: UInt16 = 8

    /// The entries listed in the central directory of `bytes`, at most `maxEntries`.
    static func entries(of bytes: Data, name: String, maxEntries: Int) throws -> [Entry] {
        let reader = ByteReader(bytes, name: name)
        let directory = try reader.centralDirectory()
        guard directory.count <= UInt64(maxEntries) else {
            throw DataError(file: name, "the ZIP directory lists \(directory.count) entries, more than \(maxEntries)")
        }
        // Each central header is at least 46 bytes: a count the directory cannot hold is corrupt.
        guard directory.count * 46 <= directory.size else {
            throw DataError(file: name, "the ZIP directory lists \(directory.count) entries in \(directory.size) bytes, too few bytes for that many")
        }
        var entries: [Entry] = []
        var position = directory.offset
        for index in 0 ..< Int(directory.count) {
            let (entry, next) = try reader.centralHeader(at: position, index: index, end: directory.offset + directory.size)
            entries.append(entry)
            position = next
        }
        try checkNoOverlap(entries, directoryOffset: directory.offset, name: name)
        return entries
    }

    /// Refuses entries whose bytes overlap or reach into the central directory. In an archive
    /// written by any ZIP tool each entry's local header and data follow the previous entry's;
    /// overlapping entries are a bomb (4,000 directory entries naming one deflated member inflate
    /// it 4,000 times). Each entry occupies at least its 30-byte local header, its name and its data.
    static func checkNoOverlap(_ entries: [Entry], directoryOffset: UInt64, name: String) throws {
        let ordered = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (k, entry) in ordered.enumerated() {
            let next = k + 1 < ordered.count ? ordered[k + 1] : nil
            let limit = next?.localHeaderOffset ?? directoryOffset
            let (end, overflow) = entry.localHeaderOffset.addingReportingOverflow(30 + UInt64(entry.name.utf8.count))
            let (dataEnd, dataOverflow) = end.addingReportingOverflow(entry.compressedSize)
            guard !overflow, !dataOverflow, dataEnd <= limit else {
                let other = next.map { "entry '\(abbreviated($0.name))' at offset \($0.localHeaderOffset)" } ?? "the central directory at offset \(directoryOffset)"
                throw DataError(file: name, "entry '\(abbreviated(entry.name))' (at offset \(entry.localHeaderOffset), \(entry.compressedSize) compressed bytes) overlaps \(other): a corrupt or hostile archive")
            }
        }
    }

    /// The uncompressed bytes of `entry`, checked against its declared size and CRC-32.
    static func extract(_ entry: Entry, from bytes: Data, name: String) throws -> Data {
        let reader = ByteReader(bytes, name: name)
        let what = "entry '\(abbreviated(entry.name))'"
        guard entry.flags & 1 == 0 else { throw DataError(file: name, "\(what) is encrypted, which is not supported") }
        let local = entry.localHeaderOffset
        guard try reader.u32(at: local, what: "the local header of \(what)") == 0x0403_4B50 else {
            throw DataError(file: name, offset: Int(local), "\(what): no local file header where the directory points")
        }
        let nameLength = UInt64(try reader.u16(at: local + 26, what: "the local header of \(what)"))
        let extraLength = UInt64(try reader.u16(at: local + 28, what: "the local header of \(what)"))
        let start = local + 30 + nameLength + extraLength
        let payload = try reader.slice(at: start, count: entry.compressedSize, what: "the data of \(what)")
        let data: Data
        switch entry.method {
        case storedMethod:
            guard entry.compressedSize == entry.uncompressedSize else {
                throw DataError(file: name, "\(what) is stored uncompressed but declares \(entry.compressedSize) bytes stored and \(entry.uncompressedSize) bytes of content")
            }
            data = payload
        case deflateMethod:
            guard entry.uncompressedSize <= UInt64(Int.max) else {
                throw DataError(file: name, "\(what) declares \(entry.uncompressedSize) bytes of content, an impossible size")
            }
            data = try inflate(payload, count: Int(entry.uncompressedSize), name: "\(name)[\(abbreviated(entry.name))]")
        default:
            throw DataError(file: name, "\(what) uses ZIP compression method \(entry.method); only stored (0) and deflate (8) are supported")
        }
        let actual = crc32(of: data)
        guard actual == entry.crc32 else {
            throw DataError(file: name, "\(what) fails its CRC-32 check (stored \(hex(entry.crc32)), computed \(hex(actual))): the archive is corrupt")
        }
        return data
    }

    /// A ZIP archive of `files` in the given order, each deflated when `compressed`.
    static func archive(_ files: [(name: String, data: Data)], compressed: Bool) throws -> Data {
        var out = Data(), directory = Data()
        for file in files {
            let nameBytes = Data(file.name.utf8)
            let body = compressed ? try deflateRaw(file.data) : file.data
            guard file.data.count < Int(UInt32.max), body.count < Int(UInt32.max), out.count < Int(UInt32.max),
                  nameBytes.count <= Int(UInt16.max) else {
                throw DataError("ZIP: entry '\(file.name)' or the archive passes 4 GiB, which needs ZIP64 (not written)")
            }
            // Shared fields of the local and central headers: version needed 2.0, UTF-8 names (bit
            // 11), method, a fixed 1980-01-01 timestamp (so equal inputs give equal files), sizes.
            var common = Data()
            common.appendLE(UInt16(20)); common.appendLE(UInt16(1 << 11))
            common.appendLE(compressed ? deflateMethod : storedMethod)
            common.appendLE(UInt16(0)); common.appendLE(UInt16(0x21))
            common.appendLE(crc32(of: file.data))
            common.appendLE(UInt32(body.count)); common.appendLE(UInt32(file.data.count))
            common.appendLE(UInt16(nameBytes.count)); common.appendLE(UInt16(0))

            directory.appendLE(UInt32(0x0201_4B50)); directory.appendLE(UInt16(20))
            directory.append(common)
            directory.appendLE(UInt16(0)); directory.appendLE(UInt16(0)); directory.appendLE(UInt16(0))
            directory.appendLE(UInt32(0o100644 << 16)); directory.appendLE(UInt32(out.count))
            directory.append(nameBytes)

            out.appendLE(UInt32(0x0403_4B50)); out.append(common); out.append(nameBytes); out.append(body)
        }
        guard files.count < Int(UInt16.max), out.count + directory.count < Int(UInt32.max) else {
            throw DataError("ZIP: \(files.count) entries or \(out.count) bytes need ZIP64 (not written)")
        }
        let directoryOffset = out.count
        out.append(directory)
        out.appendLE(UInt32(0x0605_4B50)); out.appendLE(UInt16(0)); out.appendLE(UInt16(0))
        out.appendLE(UInt16(files.count)); out.appendLE(UInt16(files.count))
        out.appendLE(UInt32(directory.count)); out.appendLE(UInt32(directoryOffset)); out.appendLE(UInt16(0))
        return out
    }

    static func crc32(of data: Data) -> UInt32 {
        data.withUnsafeBytes { raw in
            var crc: uLong = SystemZlib.crc32(0, nil, 0)
            var offset = 0
            while offset < raw.count {
                let piece = min(raw.count - offset, 1 << 30)
                crc = SystemZlib.crc32(crc, raw.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(piece))
                offset += piece
            }
            return UInt32(truncatingIfNeeded: crc)
        }
    }

    /// Inflates raw deflate data that must produce exactly `count` bytes. The output grows as
    /// data arrives, so a declared size the stream does not hold is never allocated.
    private static func inflate(_ payload: Data, count: Int, name: String) throws -> Data {
        try payload.withUnsafeBytes { raw in
            let reader = try GzipReader(raw, name: name, windowBits: -15)
            let out = try reader.read(count: count, what: "entry's declared \(count) bytes")
            try reader.expectEnd()
            return Data(out)
        }
    }

    private static func deflateRaw(_ data: Data) throws -> Data {
        try Gzip.compress(data, windowBits: -15)
    }

    private static func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16, uppercase: false) }
}

/// Bounds-checked little-endian reads from an archive in memory, with the ZIP record parsers.
private struct ByteReader {
    let bytes: Data
    let name: String

    init(_ bytes: Data, name: String) {
        self.bytes = bytes.startIndex == 0 ? bytes : Data(bytes)
        self.name = name
    }

    var count: UInt64 { UInt64(bytes.count) }

    func slice(at offset: UInt64, count length: UInt64, what: String) throws -> Data {
        guard offset <= count, length <= count - offset else {
            throw DataError(file: name, "\(what) (\(length) bytes at offset \(offset)) runs past the end of the \(count)-byte file: truncated or corrupt")
        }
        return bytes.subdata(in: Int(offset) ..< Int(offset + length))
    }

    func u16(at offset: UInt64, what: String) throws -> UInt16 { UInt16(try le(at: offset, size: 2, what: what)) }
    func u32(at offset: UInt64, what: String) throws -> UInt32 { UInt32(try le(at: offset, size: 4, what: what)) }
    func u64(at offset: UInt64, what: String) throws -> UInt64 { try le(at: offset, size: 8, what: what) }

    private func le(at offset: UInt64, size: UInt64, what: String) throws -> UInt64 {
        guard offset <= count, size <= count - offset else {
            throw DataError(file: name, "\(what) at offset \(offset) runs past the end of the \(count)-byte file: truncated or corrupt")
        }
        var value: UInt64 = 0
        for k in 0 ..< Int(size) { value |= UInt64(bytes[Int(offset) + k]) << (8 * UInt64(k)) }
        return value
    }

    /// Where the central directory is, its size and its entry count, from the (ZIP64) end record.
    func centralDirectory() throws -> (offset: UInt64, size: UInt64, count: UInt64) {
        // The end record is 22 bytes plus a comment of at most 65,535: search backwards for it.
        guard count >= 22 else {
            throw DataError(file: name, "not a valid .npz file: cannot open it as a ZIP archive (\(count) bytes, too short for the end-of-directory record)")
        }
        var end: UInt64? = nil
        var position = count - 22
        let lowest = count >= 22 + 65_535 ? count - 22 - 65_535 : 0
        while true {
            if try u32(at: position, what: "the end record") == 0x0605_4B50,
               position + 22 + UInt64(try u16(at: position + 20, what: "the end record")) <= count {
                end = position
                break
            }
            if position == lowest { break }
            position -= 1
        }
        guard let end else {
            throw DataError(file: name, "not a valid .npz file: cannot open it as a ZIP archive (no end-of-central-directory record)")
        }
        let disk = try u16(at: end + 4, what: "the end record"), directoryDisk = try u16(at: end + 6, what: "the end record")
        var entryCount = UInt64(try u16(at: end + 10, what: "the end record"))
        var size = UInt64(try u32(at: end + 12, what: "the end record"))
        var offset = UInt64(try u32(at: end + 16, what: "the end record"))
        var split = disk != 0 || directoryDisk != 0
        if entryCount == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            // ZIP64: a 20-byte locator sits just before the end record and points at a 56-byte record.
            guard end >= 20, try u32(at: end - 20, what: "the ZIP64 locator") == 0x0706_4B50 else {
                throw DataError(file: name, "not a valid .npz file: the end record asks for ZIP64 but there is no ZIP64 locator")
            }
            let record = try u64(at: end - 12, what: "the ZIP64 locator")
            guard try u32(at: record, what: "the ZIP64 end record") == 0x0606_4B50 else {
                throw DataError(file: name, offset: Int(min(record, UInt64(Int.max))), "not a valid .npz file: no ZIP64 end record where the locator points")
            }
            let recordDisk = try u32(at: record + 16, what: "the ZIP64 end record")
            let recordDirectoryDisk = try u32(at: record + 20, what: "the ZIP64 end record")
            split = split || recordDisk != 0 || recordDirectoryDisk != 0
            entryCount = try u64(at: record + 32, what: "the ZIP64 end record")
            size = try u64(at: record + 40, what: "the ZIP64 end record")
            offset = try u64(at: record + 48, what: "the ZIP64 end record")
        }
        guard !split else { throw DataError(file: name, "a split (multi-disk) ZIP archive, which is not supported") }
        _ = try slice(at: offset, count: size, what: "the central directory")
        return (offset, size, entryCount)
    }

    /// The central header at `position`, and where the next one starts; it must end by `end`.
    func centralHeader(at position: UInt64, index: Int, end: UInt64) throws -> (ZIP.Entry, UInt64) {
        let what = "central directory entry \(index)"
        guard try u32(at: position, what: what) == 0x0201_4B50 else {
            throw DataError(file: name, offset: Int(position), "\(what) has no central-header signature: the directory is corrupt")
        }
        let nameLength = UInt64(try u16(at: position + 28, what: what))
        let extraLength = UInt64(try u16(at: position + 30, what: what))
        let commentLength = UInt64(try u16(at: position + 32, what: what))
        let next = position + 46 + nameLength + extraLength + commentLength
        guard next <= end else {
            throw DataError(file: name, offset: Int(position), "\(what) runs past the end of the central directory")
        }
        let nameBytes = try slice(at: position + 46, count: nameLength, what: "the name of \(what)")
        guard let entryName = String(data: nameBytes, encoding: .utf8) else {
            throw DataError(file: name, offset: Int(position), "\(what) has a name that is not UTF-8")
        }
        var entry = ZIP.Entry(
            name: entryName,
            method: try u16(at: position + 10, what: what),
            flags: try u16(at: position + 8, what: what),
            crc32: try u32(at: position + 16, what: what),
            compressedSize: UInt64(try u32(at: position + 20, what: what)),
            uncompressedSize: UInt64(try u32(at: position + 24, what: what)),
            localHeaderOffset: UInt64(try u32(at: position + 42, what: what)))
        guard try u16(at: position + 34, what: what) == 0 || entry.localHeaderOffset != 0xFFFF_FFFF else {
            throw DataError(file: name, "a split (multi-disk) ZIP archive, which is not supported")
        }
        // The ZIP64 extra field (id 1) holds, in this order, the 64-bit values of whichever of
        // uncompressed size, compressed size and offset are 0xFFFFFFFF in the header.
        var extra = position + 46 + nameLength
        let extraEnd = extra + extraLength
        while extra + 4 <= extraEnd {
            let id = try u16(at: extra, what: "an extra field of \(what)")
            let length = UInt64(try u16(at: extra + 2, what: "an extra field of \(what)"))
            guard extra + 4 + length <= extraEnd else {
                throw DataError(file: name, offset: Int(extra), "an extra field of \(what) runs past the end of its header")
            }
            if id == 1 {
                var field = extra + 4
                func next64() throws -> UInt64 {
                    guard field + 8 <= extra + 4 + length else {
                        throw DataError(file: name, offset: Int(field), "the ZIP64 field of \(what) is too short for the sizes it must hold")
                    }
                    defer { field += 8 }
                    return try u64(at: field, what: "the ZIP64 field of \(what)")
                }
                if entry.uncompressedSize == 0xFFFF_FFFF { entry.uncompressedSize = try next64() }
                if entry.compressedSize == 0xFFFF_FFFF { entry.compressedSize = try next64() }
                if entry.localHeaderOffset == 0xFFFF_FFFF { entry.localHeaderOffset = try next64() }
            }
            extra += 4 + length
        }
        return (entry, next)
    }
}

extension Data {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
