import DistillData
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

@Suite struct NPZTests {
    let tensors: [String: Tensor] = [
        "weights": Tensor(shape: [3, 4], scalars: (0..<12).map { Float($0) / 3 }),
        "bias": Tensor([1, -1, 0.5]),
        "nested/name": Tensor(shape: [2, 1, 2], scalars: [9, 8, 7, 6]),
    ]

    @Test(arguments: [false, true])
    func roundTrip(compressed: Bool) throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("arrays.npz")
        try NPZ.write(tensors, to: url, compressed: compressed)
        let bytes = try [UInt8](Data(contentsOf: url))
        #expect(Array(bytes[0..<4]) == [0x50, 0x4B, 0x03, 0x04])  // "PK\3\4"
        let back = try NPZ.read(url)
        #expect(Set(back.keys) == Set(tensors.keys))
        for (key, t) in tensors {
            #expect(back[key]?.shape == t.shape)
            #expect(back[key]?.scalars == t.scalars)
        }
    }

    @Test func integerEntries() throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("labels.npz")
        let data = try NPZ.encode(entries: ["y": NPY.encode(ints: [3, 1, 4], shape: [3]), "x": NPY.encode(Tensor([2, 7]))],
                                  compressed: true)
        try data.write(to: url)
        let entries = try NPZ.readEntries(url)
        #expect(try NPY.decodeInts(entries["y"]!, name: "y").values == [3, 1, 4])
        #expect(try NPZ.read(url)["x"]?.scalars == [2, 7])
    }

    @Test func malformed() throws {
        let dir = try TemporaryDirectory()
        let notZip = try dir.write("not.npz", Array("just some text, no zip here".utf8))
        expectDataError("not.npz", "not a valid .npz file") { _ = try NPZ.read(notZip) }
        let empty = try dir.write("empty.npz", [])
        expectDataError("empty.npz", "not a valid .npz file") { _ = try NPZ.read(empty) }

        // An entry named .npy whose contents are not NPY.
        let junk = try dir.write("junk.npz", [UInt8](NPZ.encode(entries: ["x": Data("hello".utf8)])))
        expectDataError("junk.npz[x.npy]", "not a .npy file") { _ = try NPZ.read(junk) }

        // An entry that is not .npy at all: rename "abcd.npy" to "abcd.txt" in both ZIP headers.
        var bytes = try [UInt8](NPZ.encode(entries: ["abcd": NPY.encode(Tensor([1]))]))
        let from = Array("abcd.npy".utf8), to = Array("abcd.txt".utf8)
        var i = 0, replaced = 0
        while i + from.count <= bytes.count {
            if Array(bytes[i ..< i + from.count]) == from { bytes.replaceSubrange(i ..< i + from.count, with: to); replaced += 1 }
            i += 1
        }
        #expect(replaced == 2)
        let txt = try dir.write("txt.npz", bytes)
        expectDataError("txt.npz", "entry 'abcd.txt' is not a .npy array") { _ = try NPZ.read(txt) }

        // Declared sizes are checked before extraction.
        let url = dir.file("big.npz")
        try NPZ.write(["w": Tensor.zeros([100])], to: url, compressed: true)
        expectDataError("big.npz", "entry 'w.npy' declares", "over the 200-byte limit") {
            _ = try NPZ.read(url, limits: ReadLimits(maxPayloadBytes: 200))
        }
        // A corrupted deflate stream or checksum is reported, not crashed on.
        var corrupt = try [UInt8](Data(contentsOf: url))
        for k in 60..<80 { corrupt[k] ^= 0x5A }
        let bad = try dir.write("corrupt.npz", corrupt)
        expectDataError("corrupt.npz") { _ = try NPZ.read(bad) }
    }
}
