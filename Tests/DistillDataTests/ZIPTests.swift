@testable import DistillData
import Foundation
import Testing

/// DistillKit's own ZIP reader and writer (under `.npz`): round trips, the ZIP64 records NumPy
/// writes, and one specific error for each kind of damage.
@Suite struct ZIPTests {
    let files: [(name: String, data: Data)] = [("a.npy", Data("hello, zip".utf8)), ("b.npy", Data(repeating: 7, count: 5000))]

    @Test(arguments: [false, true])
    func roundTrip(compressed: Bool) throws {
        let archive = try ZIP.archive(files, compressed: compressed)
        let entries = try ZIP.entries(of: archive, name: "t.zip", maxEntries: 10)
        #expect(entries.map(\.name) == ["a.npy", "b.npy"])
        #expect(entries.map(\.method) == Array(repeating: compressed ? ZIP.deflateMethod : ZIP.storedMethod, count: 2))
        for (entry, file) in zip(entries, files) {
            #expect(try ZIP.extract(entry, from: archive, name: "t.zip") == file.data)
        }
        if compressed { #expect(archive.count < 1000, "5000 equal bytes must deflate") }
        // The same inputs give the same bytes (fixed timestamps).
        #expect(try ZIP.archive(files, compressed: compressed) == archive)
    }

    @Test func anArchiveCommentAndASliceOfALargerBufferAreRead() throws {
        var archive = try ZIP.archive(files, compressed: true)
        let comment = Data("written by a test".utf8)
        archive[archive.count - 2] = UInt8(comment.count)
        archive.append(comment)
        let sliced = (Data([1, 2, 3]) + archive)[3...]
        let entries = try ZIP.entries(of: sliced, name: "t.zip", maxEntries: 10)
        #expect(try ZIP.extract(entries[1], from: sliced, name: "t.zip") == files[1].data)
    }

    /// One stored entry with every size and offset in ZIP64 fields, as `np.savez` writes them
    /// (Python's zipfile with `force_zip64`), behind a ZIP64 end record and locator.
    @Test func zip64RecordsAreFollowed() throws {
        let name = Data("x.npy".utf8), body = Data("zip64 body".utf8)
        let crc = ZIP.crc32(of: body)
        var out = Data()
        out.appendLE(UInt32(0x0403_4B50)); out.appendLE(UInt16(45)); out.appendLE(UInt16(0)); out.appendLE(UInt16(0))
        out.appendLE(UInt32(0x0021_0000)); out.appendLE(crc); out.appendLE(UInt32.max); out.appendLE(UInt32.max)
        out.appendLE(UInt16(name.count)); out.appendLE(UInt16(20)); out.append(name)
        out.appendLE(UInt16(1)); out.appendLE(UInt16(16)); out.appendLE(UInt64(body.count)); out.appendLE(UInt64(body.count))
        out.append(body)
        let directoryOffset = out.count
        out.appendLE(UInt32(0x0201_4B50)); out.appendLE(UInt16(45)); out.appendLE(UInt16(45)); out.appendLE(UInt16(0))
        out.appendLE(UInt16(0)); out.appendLE(UInt32(0x0021_0000)); out.appendLE(crc); out.appendLE(UInt32.max); out.appendLE(UInt32.max)
        out.appendLE(UInt16(name.count)); out.appendLE(UInt16(28)); out.appendLE(UInt16(0)); out.appendLE(UInt16(0))
        out.appendLE(UInt16(0)); out.appendLE(UInt32(0)); out.appendLE(UInt32.max); out.append(name)
        out.appendLE(UInt16(1)); out.appendLE(UInt16(24))
        out.appendLE(UInt64(body.count)); out.appendLE(UInt64(body.count)); out.appendLE(UInt64(0))
        let directorySize = out.count - directoryOffset
        let record = out.count
        out.appendLE(UInt32(0x0606_4B50)); out.appendLE(UInt64(44)); out.appendLE(UInt16(45)); out.appendLE(UInt16(45))
        out.appendLE(UInt32(0)); out.appendLE(UInt32(0)); out.appendLE(UInt64(1)); out.appendLE(UInt64(1))
        out.appendLE(UInt64(directorySize)); out.appendLE(UInt64(directoryOffset))
        out.appendLE(UInt32(0x0706_4B50)); out.appendLE(UInt32(0)); out.appendLE(UInt64(record)); out.appendLE(UInt32(1))
        out.appendLE(UInt32(0x0605_4B50)); out.appendLE(UInt16(0)); out.appendLE(UInt16(0)); out.appendLE(UInt16.max); out.appendLE(UInt16.max)
        out.appendLE(UInt32.max); out.appendLE(UInt32.max); out.appendLE(UInt16(0))

        let entries = try ZIP.entries(of: out, name: "z64.zip", maxEntries: 10)
        #expect(entries.count == 1 && entries[0].compressedSize == UInt64(body.count))
        #expect(try ZIP.extract(entries[0], from: out, name: "z64.zip") == body)

        // The same archive without its locator is refused, not misread.
        var noLocator = out
        noLocator[record + 56] ^= 0xFF
        expectDataError("asks for ZIP64 but there is no ZIP64 locator") { _ = try ZIP.entries(of: noLocator, name: "z", maxEntries: 10) }
    }

    /// Offsets into the archive `ZIP.archive(files, compressed: false)`: the central directory
    /// starts after both local headers and bodies.
    func centralHeader(_ archive: Data) -> Int { archive.count - 22 - (46 + 5) * 2 }

    @Test func damageGetsItsOwnMessage() throws {
        let good = try ZIP.archive(files, compressed: false)
        let central = centralHeader(good)
        #expect(good[central ..< central + 4] == Data([0x50, 0x4B, 0x01, 0x02]))
        func damaged(_ change: (inout Data) -> Void) -> Data { var d = good; change(&d); return d }
        func extractAll(_ d: Data) throws { for e in try ZIP.entries(of: d, name: "t.zip", maxEntries: 10_000) { _ = try ZIP.extract(e, from: d, name: "t.zip") } }

        expectDataError("no end-of-central-directory record") { try extractAll(Data(repeating: 0, count: 100)) }
        expectDataError("too short for the end-of-directory record") { try extractAll(Data([0x50, 0x4B])) }
        expectDataError("fails its CRC-32 check") { try extractAll(damaged { $0[central + 16] ^= 1 }) }
        expectDataError("fails its CRC-32 check") { try extractAll(damaged { $0[40] ^= 1 }) }  // a byte of a.npy's body
        expectDataError("compression method 12") { try extractAll(damaged { $0[central + 10] = 12 }) }
        expectDataError("is encrypted") { try extractAll(damaged { $0[central + 8] |= 1 }) }
        expectDataError("no local file header") { try extractAll(damaged { $0[0] = 0 }) }
        // An entry whose directory offset or size makes it run into the next one is refused before extraction.
        expectDataError("entry 'a.npy' (at offset 3, 10 compressed bytes) overlaps entry 'b.npy' at offset 45") {
            try extractAll(damaged { $0[central + 42] = 3 })
        }
        expectDataError("stored uncompressed but declares") { try extractAll(damaged { $0[central + 20] = 4 }) }
        expectDataError("overlaps entry 'b.npy'") { try extractAll(damaged { $0[central + 22] = 0x10 }) }
        expectDataError("overlaps the central directory") { try extractAll(damaged { $0[central + 51 + 22] = 0x10 }) }
        expectDataError("the data of entry 'a.npy'", "runs past the end") { try extractAll(damaged { $0[26] = 0xFF; $0[27] = 0xFF }) }
        expectDataError("lists 1000 entries in 102 bytes") {
            try extractAll(damaged { $0[$0.count - 12] = 0xE8; $0[$0.count - 11] = 0x03 })
        }
        expectDataError("lists 2 entries, more than 1") { _ = try ZIP.entries(of: good, name: "t.zip", maxEntries: 1) }
        expectDataError("the central directory", "runs past the end") { try extractAll(damaged { $0[$0.count - 4] = 0x7F }) }
        expectDataError("no central-header signature") { try extractAll(damaged { $0[central] = 0 }) }
        expectDataError("runs past the end of the central directory") { try extractAll(damaged { $0[central + 28] = 200 }) }
        expectDataError("split (multi-disk)") { try extractAll(damaged { $0[$0.count - 18] = 1 }) }
    }

    @Test func aDeflatedEntryMustProduceExactlyItsDeclaredSize() throws {
        let good = try ZIP.archive([files[1]], compressed: true)
        let central = good.count - 22 - 46 - 5
        func withSize(_ size: UInt32) -> Data {
            var d = good
            d.replaceSubrange(central + 24 ..< central + 28, with: withUnsafeBytes(of: size.littleEndian) { Data($0) })
            return d
        }
        for size: UInt32 in [4999, 5001] {
            let d = withSize(size)
            let entry = try ZIP.entries(of: d, name: "t.zip", maxEntries: 10)[0]
            expectDataError() { _ = try ZIP.extract(entry, from: d, name: "t.zip") }
        }
    }
}
