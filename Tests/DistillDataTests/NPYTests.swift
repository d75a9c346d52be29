import DistillData
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// Builds a `.npy` file by hand (no NumPy): magic, version, header length, dict, payload.
func npyBytes(descr: String, shape: String, fortran: Bool = false, version: UInt8 = 1, payload: [UInt8]) -> [UInt8] {
    var dict = Array("{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }".utf8)
    let prefix = version == 1 ? 10 : 12
    while (prefix + dict.count + 1) % 64 != 0 { dict.append(0x20) }
    dict.append(0x0A)
    let length: [UInt8] = version == 1 ? le(UInt16(dict.count)) : le(UInt32(dict.count))
    return [0x93] + Array("NUMPY".utf8) + [version, 0] + length + dict + payload
}

@Suite struct NPYTests {
    @Test func readsEveryDtype() throws {
        let cases: [(String, [UInt8], [Float])] = [
            ("<f4", [Float(1.5), -2].flatMap { le($0.bitPattern) }, [1.5, -2]),
            (">f4", [Float(1.5), -2].flatMap { be($0.bitPattern) }, [1.5, -2]),
            ("<f8", [Double(0.25), 1e10].flatMap { le($0.bitPattern) }, [0.25, 1e10]),
            // float16: 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF, smallest subnormal 0x0001 = 2^-24
            ("<f2", [UInt16(0x3C00), 0xC000, 0x7BFF, 0x0001].flatMap { le($0) }, [1, -2, 65504, 0x1p-24]),
            ("<i8", [Int64(-5), 1 << 40].flatMap { le($0) }, [-5, Float(1 << 40)]),
            ("<i4", [Int32(-7), 123456].flatMap { le($0) }, [-7, 123456]),
            ("<i2", [Int16(-300), 300].flatMap { le($0) }, [-300, 300]),
            (">i2", [Int16(-300), 300].flatMap { be($0) }, [-300, 300]),
            ("|i1", [0xFF, 0x7F], [-1, 127]),
            ("|u1", [0xFF, 0x00], [255, 0]),
            ("<u2", [UInt16(65535), 2].flatMap { le($0) }, [65535, 2]),
            ("<u4", [UInt32(4_000_000_000), 9].flatMap { le($0) }, [4e9, 9]),
            ("<u8", [UInt64(12), 1 << 33].flatMap { le($0) }, [12, Float(1 << 33)]),
            ("|b1", [0, 1], [0, 1]),
        ]
        for (descr, payload, expected) in cases {
            let t = try NPY.decode(Data(npyBytes(descr: descr, shape: "(\(expected.count),)", payload: payload)), name: descr)
            #expect(t.shape == [expected.count], "\(descr)")
            #expect(t.scalars == expected, "\(descr)")
        }
    }

    @Test func shapesAndVersions() throws {
        let payload = (0..<6).flatMap { le(Float($0).bitPattern) }
        for version: UInt8 in [1, 2, 3] {
            let t = try NPY.decode(Data(npyBytes(descr: "<f4", shape: "(2, 3)", version: version, payload: payload)), name: "v")
            #expect(t.shape == [2, 3])
            #expect(t.scalars == [0, 1, 2, 3, 4, 5])
        }
        let scalar = try NPY.decode(Data(npyBytes(descr: "<f4", shape: "()", payload: le(Float(7).bitPattern))), name: "s")
        #expect(scalar.shape == [] && scalar.scalars == [7])
        let empty = try NPY.decode(Data(npyBytes(descr: "<f4", shape: "(0, 4)", payload: [])), name: "e")
        #expect(empty.shape == [0, 4])
        // Key order and quoting are free in the dict.
        var dict = Array("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"|u1\"}".utf8)
        while (10 + dict.count + 1) % 16 != 0 { dict.append(0x20) }
        dict.append(0x0A)
        let swapped = [0x93] + Array("NUMPY".utf8) + [1, 0] + le(UInt16(dict.count)) + dict + [3, 4]
        #expect(try NPY.decode(Data(swapped), name: "k").scalars == [3, 4])
    }

    @Test func integersExactly() throws {
        let dir = try TemporaryDirectory()
        let big = Int64(1) << 53 + 1  // not representable as Float
        let url = try dir.write("labels.npy", npyBytes(descr: "<i8", shape: "(3,)", payload: [Int64(2), -1, big].flatMap { le($0) }))
        let (shape, values) = try NPY.readInts(url)
        #expect(shape == [3])
        #expect(values == [2, -1, Int(big)])
        let u1 = try NPY.decodeInts(Data(npyBytes(descr: "|u1", shape: "(2,)", payload: [9, 250])), name: "u")
        #expect(u1.values == [9, 250])
        let whole = try NPY.decodeInts(Data(npyBytes(descr: "<f4", shape: "(2,)", payload: [Float(3), 4].flatMap { le($0.bitPattern) })), name: "w")
        #expect(whole.values == [3, 4])
        expectDataError("frac", "element 1", "not a whole number") {
            _ = try NPY.decodeInts(Data(npyBytes(descr: "<f4", shape: "(2,)", payload: [Float(3), 4.5].flatMap { le($0.bitPattern) })), name: "frac")
        }
        let encoded = try NPY.encode(ints: [1, 2, 3, 4], shape: [2, 2])
        #expect(try NPY.decodeInts(encoded, name: "enc") == ([2, 2], [1, 2, 3, 4]))
    }

    @Test func writeRoundTrip() throws {
        let dir = try TemporaryDirectory()
        let url = dir.file("t.npy")
        let t = Tensor(shape: [2, 3, 4], scalars: (0..<24).map { Float($0) * 0.5 - 3 })
        try NPY.write(t, to: url)
        let bytes = try [UInt8](Data(contentsOf: url))
        #expect(Array(bytes[0..<8]) == [0x93] + Array("NUMPY".utf8) + [1, 0])
        let header = try NPY.parseHeader(Data(bytes), name: "t")
        #expect(header.dataOffset % 64 == 0)
        #expect(header.dtype.description == "<f4")
        let back = try NPY.read(url)
        #expect(back.shape == [2, 3, 4])
        #expect(back.scalars == t.scalars)
        try NPY.write(Tensor([5]), to: url)
        #expect(try NPY.read(url).shape == [1])
    }

    @Test func malformed() throws {
        let good = npyBytes(descr: "<f4", shape: "(2, 2)", payload: [UInt8](repeating: 0, count: 16))
        let headerEnd = good.count - 16

        expectDataError("m", "offset 0", "not a .npy file") { _ = try NPY.decode(Data([0x93] + Array("NUMPX".utf8) + good.dropFirst(6)), name: "m") }
        expectDataError("m", "too short") { _ = try NPY.decode(Data(good.prefix(5)), name: "m") }
        expectDataError("m", "version 4.0") { _ = try NPY.decode(Data(good.prefix(6) + [4, 0] + good.dropFirst(8)), name: "m") }
        expectDataError("m", "offset \(headerEnd)", "needs 16 bytes", "has 12", "truncated") {
            _ = try NPY.decode(Data(good.dropLast(4)), name: "m")
        }
        expectDataError("m", "needs 16 bytes", "has 20") { _ = try NPY.decode(Data(good + [0, 0, 0, 0]), name: "m") }
        expectDataError("m", "fortran_order is True") {
            _ = try NPY.decode(Data(npyBytes(descr: "<f4", shape: "(2, 2)", fortran: true, payload: [UInt8](repeating: 0, count: 16))), name: "m")
        }
        expectDataError("m", "limit") {
            _ = try NPY.decode(Data(npyBytes(descr: "<f8", shape: "(1000000, 1000000, 1000000)", payload: [1, 2])), name: "m")
        }
        expectDataError("m", "limit") {
            _ = try NPY.decode(Data(npyBytes(descr: "<f8", shape: "(4294967296, 4294967296, 4294967296)", payload: [])), name: "m")
        }
        expectDataError("m", "negative extent") { _ = try NPY.decode(Data(npyBytes(descr: "<f4", shape: "(-1, 2)", payload: [])), name: "m") }
        expectDataError("m", "unsupported dtype '<c8'") { _ = try NPY.decode(Data(npyBytes(descr: "<c8", shape: "(1,)", payload: [UInt8](repeating: 0, count: 8))), name: "m") }
        expectDataError("m", "unsupported dtype '|O'") { _ = try NPY.decode(Data(npyBytes(descr: "|O", shape: "(1,)", payload: [UInt8](repeating: 0, count: 8))), name: "m") }
        // The header length points past the end of the file.
        expectDataError("m", "runs past the end") { _ = try NPY.decode(Data(good.prefix(8) + le(UInt16(5000)) + good.dropFirst(10)), name: "m") }
        // A broken dict.
        var broken = good
        broken[10] = UInt8(ascii: "[")
        expectDataError("m", "malformed header dict") { _ = try NPY.decode(Data(broken), name: "m") }
        let noShape = Array("{'descr': '<f4', 'fortran_order': False, }".utf8) + [0x0A]
        expectDataError("m", "no tuple 'shape'") {
            _ = try NPY.decode(Data([0x93] + Array("NUMPY".utf8) + [1, 0] + le(UInt16(noShape.count)) + noShape), name: "m")
        }
        let listDict = Array("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }".utf8) + [0x0A]
        expectDataError("m", "structured") {
            _ = try NPY.decode(Data([0x93] + Array("NUMPY".utf8) + [1, 0] + le(UInt16(listDict.count)) + listDict + [0, 0, 0, 0]), name: "m")
        }
        let dir = try TemporaryDirectory()
        let file = try dir.write("bad.npy", good.dropLast(1))
        expectDataError("bad.npy", "truncated") { _ = try NPY.read(file) }
    }
}
