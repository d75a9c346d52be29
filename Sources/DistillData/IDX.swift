import Foundation
import DistillTensor

/// The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzipped.
///
/// An IDX file is a 4-byte magic (`00 00 <type> <rank>`), `rank` big-endian UInt32 extents, then
/// the elements in row-major order, big-endian. Types: 0x08 UInt8, 0x09 Int8, 0x0B Int16,
/// 0x0C Int32, 0x0D Float32, 0x0E Float64. A file starting with `1f 8b` is inflated first; its
/// output size is derived from the header and bounded before anything is allocated.
public enum IDX {
    /// Element types of the IDX format (the third magic byte).
    public enum DataType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case uint8 = 0x08, int8 = 0x09, int16 = 0x0B, int32 = 0x0C, float32 = 0x0D, float64 = 0x0E

        /// Bytes per element.
        public var size: Int {
            switch self {
            case .uint8, .int8: 1
            case .int16: 2
            case .int32, .float32: 4
            case .float64: 8
            }
        }

        public var description: String {
            switch self {
            case .uint8: "unsigned byte (0x08)"
            case .int8: "signed byte (0x09)"
            case .int16: "int16 (0x0B)"
            case .int32: "int32 (0x0C)"
            case .float32: "float32 (0x0D)"
            case .float64: "float64 (0x0E)"
            }
        }
    }

    /// Most axes an IDX header may declare (MNIST uses 1 and 3).
    public static let maxRank = 16

    /// Reads an unsigned-byte IDX file (MNIST's images and labels: magic 0x00000803 / 0x00000801).
    /// Other element types are refused with a pointer to `readFloats`.
    public static func read(_ url: URL, limits: ReadLimits = .default) throws -> (shape: [Int], values: [UInt8]) {
        try decode(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// Decodes the bytes of an unsigned-byte IDX file (raw or gzipped); `name` appears in errors.
    public static func decode(_ data: Data, name: String, limits: ReadLimits = .default) throws -> (shape: [Int], values: [UInt8]) {
        let (shape, type, bytes) = try decodeRaw(data, name: name, limits: limits)
        guard type == .uint8 else {
            throw DataError(file: name, offset: 2, "element type \(type), expected unsigned byte (0x08); use IDX.readFloats for other types")
        }
        return (shape, bytes)
    }

    /// Reads an IDX file of any element type, converting the elements to Float.
    public static func readFloats(_ url: URL, limits: ReadLimits = .default) throws -> (shape: [Int], values: [Float]) {
        try decodeFloats(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// Decodes an IDX file of any element type to Float; `name` appears in errors.
    public static func decodeFloats(_ data: Data, name: String, limits: ReadLimits = .default) throws -> (shape: [Int], values: [Float]) {
        let (shape, type, bytes) = try decodeRaw(data, name: name, limits: limits)
        let n = bytes.count / type.size
        try checkBudget(bytes: CheckedSize.multiply(n, MemoryLayout<Float>.size), file: name, for: "shape \(shape) as Float32")
        var out = [Float](repeating: 0, count: n)
        bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    let o = i * type.size
                    switch type {
                    case .uint8: dst[i] = Float(src[o])
                    case .int8: dst[i] = Float(Int8(bitPattern: src[o]))
                    case .int16: dst[i] = Float(Int16(bigEndian: src.loadUnaligned(fromByteOffset: o, as: Int16.self)))
                    case .int32: dst[i] = Float(Int32(bigEndian: src.loadUnaligned(fromByteOffset: o, as: Int32.self)))
                    case .float32:
                        dst[i] = Float(bitPattern: UInt32(bigEndian: src.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
                    case .float64:
                        dst[i] = Float(Double(bitPattern: UInt64(bigEndian: src.loadUnaligned(fromByteOffset: o, as: UInt64.self))))
                    }
                }
            }
        }
        return (shape, out)
    }

    /// Writes an unsigned-byte IDX file, gzipped when `gzip` is true (atomically: a reader never
    /// sees half a file).
    public static func write(shape: [Int], values: [UInt8], to url: URL, gzip: Bool = false) throws {
        var data = try encode(shape: shape, values: values)
        if gzip { data = try Gzip.compress(data) }
        try writeAtomically(data, to: url)
    }

    /// The bytes of an unsigned-byte IDX file.
    public static func encode(shape: [Int], values: [UInt8]) throws -> Data {
        guard shape.count >= 1 && shape.count <= maxRank else {
            throw DataError("IDX.encode: rank \(shape.count) outside 1...\(maxRank)")
        }
        guard shape.allSatisfy({ $0 >= 0 && $0 <= Int(UInt32.max) }) else {
            throw DataError("IDX.encode: shape \(shape) has an extent outside 0...\(UInt32.max)")
        }
        guard CheckedSize.product(shape) == values.count else {
            throw DataError("IDX.encode: shape \(shape) does not hold \(values.count) values")
        }
        var out = Data([0, 0, DataType.uint8.rawValue, UInt8(shape.count)])
        for d in shape { withUnsafeBytes(of: UInt32(d).bigEndian) { out.append(contentsOf: $0) } }
        out.append(contentsOf: values)
        return out
    }

    // MARK: Decoding

    /// Header fields: shape, type, and the payload size they imply (already checked against limits).
    private struct Header {
        var shape: [Int]
        var type: DataType
        var payloadBytes: Int
        var headerBytes: Int { 4 + 4 * shape.count }
    }

    private static func parseMagic(_ m: [UInt8], name: String) throws -> (DataType, Int) {
        guard m[0] == 0 && m[1] == 0 else {
            let hex = m.map { String(format: "%02x", $0) }.joined(separator: " ")
            throw DataError(file: name, offset: 0, "not an IDX file: magic bytes \(hex), expected 00 00 <type> <rank> (e.g. 00 00 08 03)")
        }
        guard let type = DataType(rawValue: m[2]) else {
            throw DataError(file: name, offset: 2, String(format: "unknown IDX element type 0x%02X (known: 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)", m[2]))
        }
        let rank = Int(m[3])
        guard rank >= 1 && rank <= maxRank else {
            throw DataError(file: name, offset: 3, "rank \(rank) outside 1...\(maxRank)")
        }
        return (type, rank)
    }

    private static func parseHeader(magic: [UInt8], dims: [UInt8], name: String, limits: ReadLimits) throws -> Header {
        let (type, rank) = try parseMagic(magic, name: name)
        var shape: [Int] = []
        for i in 0..<rank {
            let d = dims[4 * i ..< 4 * i + 4].reduce(0) { $0 << 8 | Int($1) }
            shape.append(d)
        }
        guard let count = CheckedSize.product(shape), let bytes = CheckedSize.multiply(count, type.size), bytes <= limits.maxPayloadBytes else {
            throw DataError(file: name, offset: 4, "header declares shape \(shape) of \(type), more than the \(limits.maxPayloadBytes)-byte limit")
        }
        try checkBudget(bytes: bytes, file: name, for: "header shape \(shape) of \(type)")
        return Header(shape: shape, type: type, payloadBytes: bytes)
    }

    static func decodeRaw(_ data: Data, name: String, limits: ReadLimits) throws -> (shape: [Int], type: DataType, bytes: [UInt8]) {
        if Gzip.isGzip(data) { return try decodeGzip(data, name: name, limits: limits) }
        let count = data.count
        guard count >= 4 else { throw DataError(file: name, offset: 0, "\(count) bytes, too short for the 4-byte IDX magic") }
        let magic = [UInt8](data.prefix(4))
        let (_, rank) = try parseMagic(magic, name: name)
        guard count >= 4 + 4 * rank else {
            throw DataError(file: name, offset: 4, "truncated header: rank \(rank) needs \(4 * rank) bytes of extents, the file has \(count - 4)")
        }
        let dims = [UInt8](data.dropFirst(4).prefix(4 * rank))
        let header = try parseHeader(magic: magic, dims: dims, name: name, limits: limits)
        let available = count - header.headerBytes
        guard available >= header.payloadBytes else {
            throw DataError(file: name, offset: header.headerBytes,
                            "truncated: header declares shape \(header.shape) (\(header.payloadBytes) bytes of data), the file has \(available)")
        }
        guard available == header.payloadBytes else {
            throw DataError(file: name, offset: header.headerBytes + header.payloadBytes,
                            "\(available - header.payloadBytes) unexpected bytes after the data of shape \(header.shape)")
        }
        return (header.shape, header.type, [UInt8](data.dropFirst(header.headerBytes)))
    }

    /// Deflate never expands more than ~1032:1, so a header claiming more than that is corrupt.
    static let maxDeflateRatio = 1100

    private static func decodeGzip(_ data: Data, name: String, limits: ReadLimits) throws -> (shape: [Int], type: DataType, bytes: [UInt8]) {
        try data.withUnsafeBytes { raw in
            let reader = try GzipReader(raw, name: name)
            var magic = [UInt8](repeating: 0, count: 4)
            try magic.withUnsafeMutableBytes { try reader.readExactly(into: $0, what: "4-byte IDX magic") }
            let (_, rank) = try parseMagic(magic, name: name)
            var dims = [UInt8](repeating: 0, count: 4 * rank)
            try dims.withUnsafeMutableBytes { try reader.readExactly(into: $0, what: "IDX extents") }
            let header = try parseHeader(magic: magic, dims: dims, name: name, limits: limits)
            let possible = (data.count + 1024).multipliedReportingOverflow(by: maxDeflateRatio)
            guard possible.overflow || header.payloadBytes <= possible.partialValue else {
                throw DataError(file: name, offset: 4, "header declares shape \(header.shape) (\(header.payloadBytes) bytes), impossible for a \(data.count)-byte gzip file")
            }
            // Read as it arrives: a header that lies within the ratio still allocates only what the data holds.
            let payload = try reader.read(count: header.payloadBytes, what: "data of shape \(header.shape)")
            try reader.expectEnd()
            return (header.shape, header.type, payload)
        }
    }
}

/// Writes `data` to `url` through DistillTensor's `AtomicFile`, reporting failures as `DataError`.
func writeAtomically(_ data: Data, to url: URL) throws {
    do { try AtomicFile.write(data, to: url) } catch let error as TensorError {
        throw DataError(error.message)
    }
}
