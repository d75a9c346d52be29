import DistillData
import DistillTestSupport
import Foundation
import Testing

@Suite struct IDXTests {
    let values: [UInt8] = (0..<60).map { UInt8(($0 * 37 + 11) % 256) }

    @Test func rawRoundTrip() throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("a-idx3-ubyte")
        try IDX.write(shape: [3, 4, 5], values: values, to: url)
        let bytes = try [UInt8](Data(contentsOf: url))
        #expect(Array(bytes[0..<4]) == [0, 0, 0x08, 3])
        #expect(Array(bytes[4..<8]) == [0, 0, 0, 3])
        let (shape, read) = try IDX.read(url)
        #expect(shape == [3, 4, 5])
        #expect(read == values)
        let floats = try IDX.readFloats(url)
        #expect(floats.values == values.map(Float.init))
    }

    @Test func gzipRoundTrip() throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("a-idx1-ubyte.gz")
        try IDX.write(shape: [60], values: values, to: url, gzip: true)
        let bytes = try [UInt8](Data(contentsOf: url))
        #expect(Array(bytes[0..<2]) == [0x1F, 0x8B])
        let (shape, read) = try IDX.read(url)
        #expect(shape == [60])
        #expect(read == values)
    }

    /// A file compressed by the real `gzip` tool (not our own writer) must load too.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/bin/gzip")))
    func readsFilesFromGzipTool() throws {
        let dir = try TemporaryDirectory()
        let raw = try IDX.encode(shape: [6, 10], values: values)
        let url = try dir.write("b-idx2-ubyte", [UInt8](raw))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/gzip")
        process.arguments = ["-9", url.path]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let (shape, read) = try IDX.read(dir.file("b-idx2-ubyte.gz"))
        #expect(shape == [6, 10])
        #expect(read == values)
    }

    @Test func otherElementTypesAsFloats() throws {
        let dir = try TemporaryDirectory()
        // int16 [2, 2], big-endian
        let i16 = try dir.write("s.idx", [0, 0, 0x0B, 2] + be(UInt32(2)) + be(UInt32(2))
                                + [Int16(-3), 1000, 0, 7].flatMap { be($0) })
        #expect(try IDX.readFloats(i16).values == [-3, 1000, 0, 7])
        #expect(try IDX.readFloats(i16).shape == [2, 2])
        // float32 [3]
        let f32 = try dir.write("f.idx", [0, 0, 0x0D, 1] + be(UInt32(3)) + [Float(1.5), -2, 0.25].flatMap { be($0.bitPattern) })
        #expect(try IDX.readFloats(f32).values == [1.5, -2, 0.25])
        // float64, int32, int8
        let f64 = try dir.write("d.idx", [0, 0, 0x0E, 1] + be(UInt32(2)) + [Double(3.5), -1].flatMap { be($0.bitPattern) })
        #expect(try IDX.readFloats(f64).values == [3.5, -1])
        let i32 = try dir.write("i.idx", [0, 0, 0x0C, 1] + be(UInt32(2)) + [Int32(-70000), 5].flatMap { be($0) })
        #expect(try IDX.readFloats(i32).values == [-70000, 5])
        let i8 = try dir.write("b.idx", [0, 0, 0x09, 1] + be(UInt32(2)) + [0xFF, 0x05])
        #expect(try IDX.readFloats(i8).values == [-1, 5])
        // read() is for unsigned bytes only and says what to use instead.
        expectDataError("f.idx", "float32 (0x0D)", "IDX.readFloats") { _ = try IDX.read(f32) }
    }

    @Test func malformedRawFiles() throws {
        let dir = try TemporaryDirectory()
        let good = try [UInt8](IDX.encode(shape: [3, 4, 5], values: values))

        let truncated = try dir.write("truncated", good.dropLast(7))
        expectDataError("truncated", "offset 16", "truncated", "[3, 4, 5]", "60 bytes", "has 53") { _ = try IDX.read(truncated) }

        let trailing = try dir.write("trailing", good + [1, 2])
        expectDataError("trailing", "2 unexpected bytes") { _ = try IDX.read(trailing) }

        let magic = try dir.write("magic", [0x12, 0x34] + good.dropFirst(2))
        expectDataError("magic", "offset 0", "not an IDX file", "12 34 08 03") { _ = try IDX.read(magic) }

        let type = try dir.write("type", [0, 0, 0x07, 3] + good.dropFirst(4))
        expectDataError("type", "unknown IDX element type 0x07") { _ = try IDX.read(type) }

        let rank = try dir.write("rank", [0, 0, 0x08, 0])
        expectDataError("rank", "rank 0") { _ = try IDX.read(rank) }

        let shortHeader = try dir.write("short", [0, 0, 0x08, 3, 0, 0, 0, 1])
        expectDataError("short", "truncated header") { _ = try IDX.read(shortHeader) }

        let tiny = try dir.write("tiny", [0, 0])
        expectDataError("tiny", "too short") { _ = try IDX.read(tiny) }

        // Huge extents: refused from the header alone, before any allocation.
        let huge = try dir.write("huge", [0, 0, 0x08, 3] + be(UInt32.max) + be(UInt32.max) + be(UInt32.max) + [1, 2, 3])
        expectDataError("huge", "limit") { _ = try IDX.read(huge) }
        let big = try dir.write("big", [0, 0, 0x08, 3] + be(UInt32(60000)) + be(UInt32(28)) + be(UInt32(28)) + [1, 2, 3])
        expectDataError("big", "truncated", "47040000 bytes", "has 3") { _ = try IDX.read(big) }

        expectDataError("missing-file", "no such file") { _ = try IDX.read(dir.file("missing-file")) }
    }

    @Test func malformedGzipFiles() throws {
        let dir = try TemporaryDirectory()
        let raw = try IDX.encode(shape: [3, 4, 5], values: values)
        let gz = try [UInt8](Gzip.compress(raw))

        let cut = try dir.write("cut.gz", gz.prefix(gz.count / 2))
        expectDataError("cut.gz", "truncated gzip stream") { _ = try IDX.read(cut) }

        var badCRC = gz
        badCRC[gz.count - 8] ^= 0xFF  // the CRC-32 of the trailer
        let crc = try dir.write("crc.gz", badCRC)
        expectDataError("crc.gz", "corrupt gzip stream", "incorrect data check") { _ = try IDX.read(crc) }

        let garbage = try dir.write("garbage.gz", [0x1F, 0x8B] + (0..<40).map { UInt8($0 * 7 % 256) })
        expectDataError("garbage.gz", "corrupt gzip stream") { _ = try IDX.read(garbage) }

        // Decompresses fine but holds less than the header declares.
        let short = try dir.write("short.gz", [UInt8](Gzip.compress(raw.prefix(raw.count - 10))))
        expectDataError("short.gz", "10 bytes short") { _ = try IDX.read(short) }

        // Declares far more data than any gzip file of this size can hold.
        let liar = try dir.write("liar.gz", [UInt8](Gzip.compress(Data([0, 0, 0x08, 2] + be(UInt32(50000)) + be(UInt32(50000))))))
        expectDataError("liar.gz", "impossible for a") { _ = try IDX.read(liar) }

        let extra = try dir.write("extra.gz", [UInt8](Gzip.compress(raw + Data([9, 9, 9]))))
        expectDataError("extra.gz", "unexpected data after the end") { _ = try IDX.read(extra) }
    }

    @Test func gzipDecompressIsBounded() throws {
        let payload = Data(repeating: 7, count: 100_000)
        let gz = try Gzip.compress(payload)
        #expect(try Gzip.decompress(gz, limit: 100_000, name: "x") == payload)
        expectDataError("x", "limit") { _ = try Gzip.decompress(gz, limit: 99_999, name: "x") }
    }
}
