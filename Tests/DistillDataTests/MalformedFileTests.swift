import DistillData
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// The files in `Malformed/` (written by fuzz/make_malformed.py): truncated, wrong magic, huge
/// declared shapes, negative sizes, wrong dtypes, lying headers. Each must fail with its own
/// message — no crash, no large allocation. Training-level cases (NaN payloads, hostile models,
/// YAML, ONNX) are in DistillTrainingTests/ReliabilityTests.swift.
@Suite struct ReliabilityMalformedFileTests {
    static func file(_ name: String) throws -> URL {
        try #require(Bundle.module.url(forResource: "Malformed/\(name)", withExtension: nil), "missing Malformed/\(name)")
    }

    /// (file, fragments the error message must contain)
    static let idxCases: [(String, [String])] = [
        ("idx-truncated.idx", ["truncated: header declares shape [10, 28, 28] (7840 bytes of data), the file has 100"]),
        ("idx-wrong-magic.idx", ["not an IDX file: magic bytes 50 4b"]),
        ("idx-huge-shape.idx", ["header declares shape [4294967295, 4294967295, 4294967295]", "byte limit"]),
        ("idx-wrong-dtype.idx", ["unknown IDX element type 0x07"]),
        ("idx-gzip-bomb-header.idx.gz", ["header declares shape [4000, 1000, 1000] (4000000000 bytes), impossible for a"]),
        ("idx-gzip-truncated.idx.gz", ["truncated gzip stream"]),
    ]

    @Test(arguments: idxCases) func idx(_ name: String, _ fragments: [String]) throws {
        let url = try Self.file(name)
        expectMessage(fragments, name) { _ = try IDX.readFloats(url) }
    }

    static let npyCases: [(String, [String])] = [
        ("npy-truncated.npy", ["shape [4, 4] of <f4 needs 64 bytes of data, the file has 20 (truncated)"]),
        ("npy-wrong-magic.npy", ["not a .npy file: the magic is 93 4e 55 4d 50 5a"]),
        ("npy-huge-shape.npy", ["shape [1000000000000, 1000000000000] of <f4 exceeds the", "byte limit"]),
        ("npy-negative-shape.npy", ["negative extent in shape [-1, 4]"]),
        ("npy-wrong-dtype.npy", ["unsupported dtype '<c16'"]),
        ("npy-fortran-order.npy", ["fortran_order is True"]),
        ("npy-header-length-lies.npy", ["header length 60000 runs past the end of the file"]),
    ]

    @Test(arguments: npyCases) func npy(_ name: String, _ fragments: [String]) throws {
        let url = try Self.file(name)
        expectMessage(fragments, name) { _ = try NPY.read(url) }
        expectMessage(fragments, name) { _ = try NPY.decode(Data(contentsOf: url), name: name) }
    }

    static let npzCases: [(String, [String])] = [
        ("npz-truncated.npz", ["not a valid .npz file: cannot open it as a ZIP archive"]),
        ("npz-not-npy-entry.npz", ["entry 'notes.txt' is not a .npy array"]),
        ("npz-bomb-declared-size.npz", ["entry 'x.npy' declares 4000000000 uncompressed bytes from", "impossible for deflate"]),
    ]

    @Test(arguments: npzCases) func npz(_ name: String, _ fragments: [String]) throws {
        let url = try Self.file(name)
        expectMessage(fragments, name) { _ = try NPZ.read(url) }
        expectMessage(fragments, name) { _ = try NPZ.decode(Data(contentsOf: url), name: name) }
    }

    static let safetensorsCases: [(String, [String])] = [
        ("st-truncated.safetensors", ["tensor 'w' has data_offsets [0, 16] outside the 8-byte data section"]),
        ("st-header-length-huge.safetensors", ["header length 4611686018427387904 exceeds the 100000000-byte limit"]),
        ("st-negative-shape.safetensors", ["tensor 'w' has a negative extent in shape [-1, 4]"]),
        ("st-huge-shape.safetensors", ["tensor 'w' declares shape [1099511627776, 1099511627776], larger than the file"]),
        ("st-wrong-dtype.safetensors", ["tensor 'w' has dtype I64; DistillKit reads F32, F16, BF16 and F64"]),
        ("st-overlap.safetensors", ["two tensors' data ranges overlap at byte 4"]),
        ("st-not-json.safetensors", ["the header is not a JSON object"]),
    ]

    @Test(arguments: safetensorsCases) func safetensors(_ name: String, _ fragments: [String]) throws {
        let url = try Self.file(name)
        expectMessage(fragments + ["not a valid safetensors file"], name) { _ = try Safetensors.load(url) }
    }

    static let csvCases: [(String, [String])] = [
        ("csv-ragged.csv", ["line 3: 2 fields, the header has 3"]),
        ("csv-unterminated-quote.csv", ["line 2", "quote"]),
        ("csv-nan.csv", ["line 3, column 1 ('a'): 'nan' is not a finite number (the column is numeric)"]),
        ("csv-duplicate-column.csv", ["columns 1 and 2 are both named 'a'"]),
    ]

    @Test(arguments: csvCases) func csv(_ name: String, _ fragments: [String]) throws {
        let url = try Self.file(name)
        expectMessage(fragments, name) { _ = try CSVTable.read(url, labelColumn: "label") }
    }

    /// Every file of the folder is exercised by one of the tables above (or by ReliabilityTests).
    @Test func everyFileHasACase() throws {
        let folder = try Self.file("idx-truncated.idx").deletingLastPathComponent()
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }
        let covered = Set((Self.idxCases + Self.npyCases + Self.npzCases + Self.safetensorsCases + Self.csvCases).map(\.0))
        let elsewhere = names.filter { $0.hasPrefix("model-") || $0.hasPrefix("yaml-") || $0.hasPrefix("onnx-") || $0.hasPrefix("crash-") || $0 == "npz-nan-features.npz" }
        #expect(Set(names).subtracting(covered).subtracting(elsewhere).isEmpty, "files without a test: \(Set(names).subtracting(covered).subtracting(elsewhere).sorted())")
    }
}

