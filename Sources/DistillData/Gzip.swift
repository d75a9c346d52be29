import DistillTensor
import Foundation
import SystemZlib

/// gzip (RFC 1952) through the system zlib: streaming decompression with a bounded output, and
/// compression for writers and tests.
public enum Gzip {
    /// True when `data` starts with the gzip magic bytes `1f 8b`.
    public static func isGzip(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
    }

    /// Inflates a whole gzip (or zlib) stream, refusing to produce more than `limit` bytes.
    /// `name` appears in error messages.
    public static func decompress(_ data: Data, limit: Int, name: String) throws -> Data {
        try data.withUnsafeBytes { raw in
            let reader = try GzipReader(raw, name: name)
            var out = Data()
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = try chunk.withUnsafeMutableBytes { try reader.readSome(into: $0) }
                if n == 0 { break }
                guard out.count + n <= limit else {
                    throw DataError(file: name, "decompresses to more than the \(limit)-byte limit")
                }
                out.append(contentsOf: chunk[0..<n])
            }
            return out
        }
    }

    /// Compresses `data` into a gzip stream (windowBits 15 + 16, as `gzip` writes it), or with
    /// `windowBits: -15` into raw deflate (as ZIP entries hold it).
    public static func compress(_ data: Data, level: Int32 = 6, windowBits: Int32 = 15 + 16) throws -> Data {
        guard data.count < Int(UInt32.max) else { throw DataError("gzip: cannot compress \(data.count) bytes in one piece (4 GiB limit)") }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deinitialize(count: 1); stream.deallocate() }
        guard deflateInit2_(stream, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY,
                            zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DataError("gzip: deflateInit2 failed")
        }
        defer { deflateEnd(stream) }
        let bound = Int(deflateBound(stream, uLong(data.count))) + 64
        var out = [UInt8](repeating: 0, count: bound)
        let status: Int32 = data.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                stream.pointee.next_in = UnsafeMutablePointer(mutating: src.bindMemory(to: Bytef.self).baseAddress)
                stream.pointee.avail_in = uInt(src.count)
                stream.pointee.next_out = dst.bindMemory(to: Bytef.self).baseAddress
                stream.pointee.avail_out = uInt(dst.count)
                return deflate(stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else { throw DataError("gzip: deflate failed (status \(status))") }
        return Data(out[0..<Int(stream.pointee.total_out)])
    }
}

/// Pulls decompressed bytes out of an in-memory gzip or zlib stream (or raw deflate, with
/// `windowBits: -15`) on demand, so a reader can decode a header first and size the payload from
/// it. The input buffer must outlive the reader.
final class GzipReader {
    private let stream: UnsafeMutablePointer<z_stream>
    private let name: String
    private let inputCount: Int
    private(set) var ended = false
    /// Decompressed bytes produced so far.
    var offset: Int { Int(stream.pointee.total_out) }

    /// `windowBits`: 15 + 32 detects a gzip or zlib header; -15 reads raw deflate.
    init(_ input: UnsafeRawBufferPointer, name: String, windowBits: Int32 = 15 + 32) throws {
        // zlib counts input in 32 bits.
        guard input.count < Int(UInt32.max) else {
            throw DataError(file: name, "\(input.count) bytes of gzip data, more than the 4 GiB zlib can take in one piece")
        }
        self.name = name
        inputCount = input.count
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        guard inflateInit2_(stream, windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            stream.deinitialize(count: 1); stream.deallocate()
            throw DataError(file: name, "zlib inflateInit2 failed")
        }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.pointee.avail_in = uInt(input.count)
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Decompresses up to `buffer.count` bytes; returns how many, 0 only at the end of the stream.
    func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if ended || buffer.count == 0 { return 0 }
        var produced = 0
        while produced < buffer.count && !ended {
            // avail_out is a 32-bit count: feed large buffers in pieces.
            let piece = min(buffer.count - produced, Int(Int32.max))
            stream.pointee.next_out = buffer.baseAddress!.advanced(by: produced).assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(piece)
            let status = inflate(stream, Z_NO_FLUSH)
            produced += piece - Int(stream.pointee.avail_out)
            switch status {
            case Z_OK: continue
            case Z_STREAM_END: ended = true
            case Z_BUF_ERROR:
                // No progress possible: with output space left this means the input ran out.
                throw DataError(file: name, "truncated gzip stream: the compressed data (\(inputCount) bytes) ends after \(offset) decompressed bytes")
            case Z_DATA_ERROR, Z_NEED_DICT:
                let why = stream.pointee.msg.map { String(cString: $0) } ?? "invalid data"
                let consumed = inputCount - Int(stream.pointee.avail_in)
                throw DataError(file: name, offset: consumed, "corrupt gzip stream (\(why))")
            case Z_MEM_ERROR: throw DataError(file: name, "zlib ran out of memory")
            default: throw DataError(file: name, "zlib inflate failed (status \(status))")
            }
        }
        return produced
    }

    /// Fills `buffer` completely; `what` names the part being read for the truncation message.
    func readExactly(into buffer: UnsafeMutableRawBufferPointer, what: String) throws {
        let start = offset
        var filled = 0
        while filled < buffer.count {
            let n = try readSome(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            if n == 0 {
                throw DataError(file: name, offset: start + filled,
                                "decompressed data ends here, \(buffer.count - filled) bytes short of the \(what) (\(buffer.count) bytes from offset \(start))")
            }
            filled += n
        }
    }

    /// The next `count` decompressed bytes, in a buffer that grows as data arrives, doubling from
    /// 8 times the compressed size (at least 16 MiB; typical data compresses less than 8:1, so it
    /// usually takes one allocation): a header that claims gigabytes costs only what the stream
    /// really holds before it runs out. `what` names the part being read for the truncation message.
    func read(count: Int, what: String) throws -> [UInt8] {
        let start = offset
        let firstChunk = max(1 << 24, CheckedSize.multiply(inputCount, 8) ?? Int.max)
        var out = [UInt8](repeating: 0, count: min(count, firstChunk))
        var filled = 0
        while filled < count {
            if filled == out.count {
                var grown = [UInt8](repeating: 0, count: min(count, out.count * 2))
                grown.withUnsafeMutableBufferPointer { to in out.withUnsafeBufferPointer { to.baseAddress!.update(from: $0.baseAddress!, count: $0.count) } }
                out = grown
            }
            let n = try out.withUnsafeMutableBytes { try readSome(into: UnsafeMutableRawBufferPointer(rebasing: $0[filled...])) }
            if n == 0 {
                throw DataError(file: name, offset: start + filled,
                                "decompressed data ends here, \(count - filled) bytes short of the \(what) (\(count) bytes from offset \(start))")
            }
            filled += n
        }
        return out
    }

    /// Checks that the stream ends here, with no decompressed bytes left over.
    func expectEnd() throws {
        var scratch = [UInt8](repeating: 0, count: 64)
        let n = try scratch.withUnsafeMutableBytes { try readSome(into: $0) }
        if n > 0 { throw DataError(file: name, offset: offset - n, "unexpected data after the end of the payload") }
    }
}
