import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// The safetensors reader and writer: round trips, the byte layout, every malformed-input error,
// half/bfloat/double decoding, and (when tests/interop/ drives it) interchange with Python.

/// A fresh folder under the system temporary directory, removed by `cleanUp()`.
struct TemporaryFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func cleanUp() { try? FileManager.default.removeItem(at: url) }
}

/// A safetensors file from a literal header and data section (the header is used verbatim).
func safetensorsBytes(header: String, body: [UInt8] = [], declaredLength: UInt64? = nil) -> Data {
    let json = Data(header.utf8)
    var out = Data()
    withUnsafeBytes(of: (declaredLength ?? UInt64(json.count)).littleEndian) { out.append(contentsOf: $0) }
    out.append(json)
    out.append(contentsOf: body)
    return out
}

func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

@Suite struct SafetensorsTests {
    @Test func roundTripThroughAFile() throws {
        let folder = try TemporaryFolder()
        defer { folder.cleanUp() }
        let tensors: [String: Tensor] = [
            "conv.weight": Tensor(shape: [2, 1, 2, 2], scalars: [1, -2, 3.5, 0, .pi, -.infinity, 1e-30, 7]),
            "scalar": Tensor(scalar: -0.125),
            "empty": Tensor.zeros([0, 4]),
            "vector": Tensor.arange(0, 5, step: 0.5),
        ]
        let url = folder.url.appendingPathComponent("nested/model.safetensors")
        let metadata = ["format": "pt", "note": "DistillKit \"test\" ✓"]
        try Safetensors.save(tensors, to: url, metadata: metadata)
        let loaded = try Safetensors.load(url)
        #expect(Set(loaded.keys) == Set(tensors.keys))
        for (name, t) in tensors {
            #expect(loaded[name]?.shape == t.shape, "\(name)")
            #expect(loaded[name]?.scalars == t.scalars, "\(name)")
        }
        let decoded = try Safetensors.decode(try Data(contentsOf: url), name: "model")
        #expect(decoded.metadata == metadata)
        // No temporary file is left beside the target.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
        #expect(siblings == ["model.safetensors"])
    }

    @Test func saveReplacesAnExistingFile() throws {
        let folder = try TemporaryFolder()
        defer { folder.cleanUp() }
        let url = folder.url.appendingPathComponent("w.safetensors")
        try Safetensors.save(["a": Tensor([1, 2])], to: url)
        try Safetensors.save(["b": Tensor([3])], to: url)
        #expect(try Safetensors.load(url).keys.sorted() == ["b"])
    }

    @Test func byteLayout() throws {
        let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4]), b = Tensor([-1.5])
        let data = Safetensors.encode(["b": b, "a": a], metadata: ["k": "v"])
        let bytes = [UInt8](data)
        // 8-byte little-endian header length.
        let length = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[$1]) << (8 * UInt64($1)) }
        #expect(length == UInt64(littleEndian: data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        let dataStart = 8 + Int(length)
        #expect(dataStart % 8 == 0, "data section starts 8-byte aligned")
        #expect(bytes.count == dataStart + 5 * 4)
        // The header is JSON with names in sorted order and contiguous offsets; padding is spaces.
        let headerText = String(decoding: bytes[8..<dataStart], as: UTF8.self)
        #expect(headerText.hasPrefix("{") && headerText.trimmingCharacters(in: .whitespaces).hasSuffix("}"))
        let header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])) as? [String: Any])
        let entryA = try #require(header["a"] as? [String: Any]), entryB = try #require(header["b"] as? [String: Any])
        #expect(entryA["dtype"] as? String == "F32")
        #expect(entryA["shape"] as? [Int] == [2, 2])
        #expect(entryA["data_offsets"] as? [Int] == [0, 16])
        #expect(entryB["data_offsets"] as? [Int] == [16, 20])
        #expect(header["__metadata__"] as? [String: String] == ["k": "v"])
        // Raw little-endian float32 data, a then b.
        let floats = (0..<5).map { i in
            Float(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[dataStart + 4 * i + $1]) << (8 * UInt32($1)) })
        }
        #expect(floats == [1, 2, 3, 4, -1.5])
    }

    @Test func decodesHalfBFloatAndDouble() throws {
        let f16: [UInt16] = [0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001]  // 1, -2, 0.5, 65504, smallest subnormal
        let bf16: [UInt16] = [0x3F80, 0xC020, 0x4049, 0xFF80]  // 1, -2.5, 3.140625, -inf
        let f64: [UInt64] = [0.1, -1e10, 3.5].map { (d: Double) in d.bitPattern }
        let body = littleEndianBytes(f16) + littleEndianBytes(bf16) + littleEndianBytes(f64)
        let header = """
        {"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},\
        "bf":{"dtype":"BF16","shape":[2,2],"data_offsets":[10,18]},\
        "d":{"dtype":"F64","shape":[3],"data_offsets":[18,42]}}
        """
        let tensors = try Safetensors.decode(safetensorsBytes(header: header, body: body), name: "mixed").tensors
        #expect(tensors["h"]?.scalars == [1, -2, 0.5, 65504, Float(Float16(bitPattern: 1))])
        #expect(tensors["h"]?.scalars.last == 5.9604645e-08)
        #expect(tensors["bf"]?.shape == [2, 2])
        #expect(tensors["bf"]?.scalars == [1, -2.5, 3.140625, -.infinity])
        #expect(tensors["d"]?.scalars == [Float(0.1), -1e10, 3.5])
    }

    @Test func unalignedHeaderFromOtherWritersIsAccepted() throws {
        // Other writers need not pad the header; data may start at any byte.
        let body = littleEndianBytes([Float(2.5).bitPattern, Float(-1).bitPattern])
        let data = safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, body: body)
        #expect(try Safetensors.decode(data, name: "u").tensors["x"]?.scalars == [2.5, -1])
    }

    /// Each malformed file and a phrase its error must contain.
    static let malformed: [(String, Data, String)] = [
        ("shorter than 8 bytes", Data([1, 2, 3, 4, 5]), "shorter than the 8-byte header length"),
        ("header length past the end", safetensorsBytes(header: "{}", declaredLength: 1000), "runs past the end of the file"),
        ("header length over the limit", safetensorsBytes(header: "{}", declaredLength: 200_000_000), "exceeds"),
        ("header not JSON", safetensorsBytes(header: "not json at all"), "not a JSON object"),
        ("header a JSON array", safetensorsBytes(header: "[1, 2]"), "not a JSON object"),
        ("unsupported dtype I64", safetensorsBytes(header: #"{"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
                                                   body: [UInt8](repeating: 0, count: 8)), "dtype I64"),
        ("negative extent", safetensorsBytes(header: #"{"t":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}}"#,
                                             body: [UInt8](repeating: 0, count: 8)), "negative extent"),
        ("shape larger than the file", safetensorsBytes(header: #"{"t":{"dtype":"F32","shape":[1000000,1000000,1000000],"data_offsets":[0,8]}}"#,
                                                        body: [UInt8](repeating: 0, count: 8)), "larger than the file"),
        ("offsets mismatching shape", safetensorsBytes(header: #"{"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#,
                                                       body: [UInt8](repeating: 0, count: 24)), "needs 24 bytes, data_offsets give 20"),
        ("offsets past the data", safetensorsBytes(header: #"{"t":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
                                                   body: [UInt8](repeating: 0, count: 16)), "outside the 16-byte data section"),
        ("offsets reversed", safetensorsBytes(header: #"{"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
                                              body: [UInt8](repeating: 0, count: 16)), "outside"),
        ("overlapping ranges", safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                                                body: [UInt8](repeating: 0, count: 12)), "overlap"),
        ("entry without offsets", safetensorsBytes(header: #"{"t":{"dtype":"F32","shape":[1]}}"#, body: [0, 0, 0, 0]), "lacks"),
        ("non-string metadata", safetensorsBytes(header: #"{"__metadata__":{"epoch":3}}"#), "__metadata__"),
    ]

    @Test(arguments: malformed.indices)
    func malformedInputGivesANamedError(_ i: Int) {
        let (label, data, phrase) = Self.malformed[i]
        do {
            _ = try Safetensors.decode(data, name: "bad.safetensors")
            Issue.record("\(label): decoded without error")
        } catch let error as TensorError {
            #expect(error.message.contains(phrase), "\(label): \(error.message)")
            #expect(error.message.hasPrefix("bad.safetensors: "), "\(label): \(error.message)")
        } catch {
            Issue.record("\(label): expected TensorError, got \(error)")
        }
    }

    @Test func missingFileGivesANamedError() {
        let url = URL(fileURLWithPath: "/nonexistent-\(UUID().uuidString)/w.safetensors")
        #expect { try Safetensors.load(url) } throws: { error in
            (error as? TensorError)?.message.contains(url.path) == true
        }
    }
}

// MARK: - Interchange with Python (driven by tests/interop/test_safetensors_interop.py)

/// Tensors the Python side checks exactly (keep in sync with tests/interop/test_safetensors_interop.py).
let interopTensorsForPython: [String: Tensor] = [
    "a": Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6]),
    "b": Tensor.arange(0, 10) * 0.5,
]

@Suite struct SafetensorsInteropTests {
    /// With DISTILL_INTEROP_DIR set, writes `weights.safetensors` there for Python to read.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["DISTILL_INTEROP_DIR"] != nil))
    func writeForPython() throws {
        let folder = URL(fileURLWithPath: ProcessInfo.processInfo.environment["DISTILL_INTEROP_DIR"]!)
        try Safetensors.save(interopTensorsForPython, to: folder.appendingPathComponent("weights.safetensors"),
                             metadata: ["written_by": "DistillKit"])
    }

    /// With DISTILL_INTEROP_READ naming a file Python's `safetensors.numpy.save_file` wrote, checks
    /// its values (stopping at the first mismatch), then (when DISTILL_INTEROP_DIR is set) leaves `read-ok`
    /// there as proof the check ran and passed.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["DISTILL_INTEROP_READ"] != nil))
    func readFromPython() throws {
        let env = ProcessInfo.processInfo.environment
        let tensors = try Safetensors.load(URL(fileURLWithPath: env["DISTILL_INTEROP_READ"]!))
        try #require(tensors.keys.sorted() == ["empty", "f16", "f32", "f64", "scalar"])
        try #require(tensors["f32"]?.shape == [2, 2])
        try #require(tensors["f32"]?.scalars == [1.5, -2, 0.25, 8])
        try #require(tensors["f64"]?.shape == [5])
        try #require(tensors["f64"]?.scalars == [0, 0.1, 0.2, 0.3, 0.4].map { Float($0 as Double) })
        try #require(tensors["f16"]?.scalars == [1, 0.5, -3, 65504])
        try #require(tensors["scalar"]?.shape == [])
        try #require(tensors["scalar"]?.scalars == [42])
        try #require(tensors["empty"]?.shape == [0, 3])
        if let dir = env["DISTILL_INTEROP_DIR"] {
            try Data("ok\n".utf8).write(to: URL(fileURLWithPath: dir).appendingPathComponent("read-ok"))
        }
    }
}
