import DistillTensor
import Foundation

/// NumPy's `.npy` format (versions 1.0, 2.0 and 3.0), read without NumPy.
///
/// A file is the magic `\x93NUMPY`, a major and minor version byte, the header length
/// (UInt16 little-endian in 1.0, UInt32 in 2.0/3.0), a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`, then the raw elements.
///
/// Readable dtypes: `f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`, either byte order (big-endian is
/// converted). Only C order: a `fortran_order: True` array is refused. The data must be exactly
/// `shape × itemsize` bytes; both are checked against the file size before anything is allocated.
/// `read` converts to Float32 (integers above 2²⁴ lose precision); `readInts` keeps integers exact.
public enum NPY {
    /// Most bytes a header may take (NumPy's own writer stays far below this).
    public static let maxHeaderBytes = 1 << 20
    /// Most axes an array may have (NumPy's limit).
    public static let maxRank = 64
    /// `decodeInts` refuses values of this magnitude or more (2⁶²).
    public static let maxIntegerMagnitude = 1 << 62

    /// An element type from the `descr` field.
    public struct DType: Sendable, Equatable, CustomStringConvertible {
        /// `f` float, `i` signed, `u` unsigned, `b` bool.
        public let kind: Character
        /// Bytes per element.
        public let size: Int
        /// Whether elements are stored big-endian ('>'); they are converted when read.
        public let bigEndian: Bool
        public var description: String { "\(size == 1 ? "|" : bigEndian ? ">" : "<")\(kind)\(size)" }
        var isInteger: Bool { kind != "f" }
    }

    /// A parsed header: element type, shape, and where the data starts.
    public struct Header: Sendable, Equatable {
        public let dtype: DType
        public let shape: [Int]
        public let fortranOrder: Bool
        /// Byte offset of the first element.
        public let dataOffset: Int
        /// Number of elements (the shape was checked when the header was parsed).
        public var count: Int { CheckedSize.product(shape) ?? 0 }
    }

    // MARK: Reading

    /// Reads an array as Float32 (any readable dtype).
    public static func read(_ url: URL, limits: ReadLimits = .default) throws -> Tensor {
        try decode(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// Reads an integer or bool array exactly, e.g. class labels. Float arrays are accepted when
    /// every element is a whole number.
    public static func readInts(_ url: URL, limits: ReadLimits = .default) throws -> (shape: [Int], values: [Int]) {
        try decodeInts(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// Decodes the bytes of a `.npy` file as Float32; `name` appears in errors.
    public static func decode(_ data: Data, name: String, limits: ReadLimits = .default) throws -> Tensor {
        let header = try parseHeader(data, name: name, limits: limits)
        try checkBudget(bytes: CheckedSize.multiply(header.count, MemoryLayout<Float>.size), file: name, for: "shape \(header.shape) as Float32")
        let t = Tensor(uninitializedShape: header.shape)
        let dst = t.data
        try forEachElement(data, header: header, name: name) { i, value in
            switch value {
            case .float(let v): dst[i] = Float(v)
            case .int(let v): dst[i] = Float(v)
            case .uint(let v): dst[i] = Float(v)
            }
            return nil
        }
        return t
    }

    /// Decodes the bytes of a `.npy` file as integers; `name` appears in errors. Values must lie
    /// within ±2⁶² (whole-number floats too), so that arithmetic on them, such as a class count of
    /// largest label + 1, cannot overflow.
    public static func decodeInts(_ data: Data, name: String, limits: ReadLimits = .default) throws -> (shape: [Int], values: [Int]) {
        let header = try parseHeader(data, name: name, limits: limits)
        try checkBudget(bytes: CheckedSize.multiply(header.count, MemoryLayout<Int>.size), file: name, for: "shape \(header.shape) as integers")
        var values = [Int](repeating: 0, count: header.count)
        try values.withUnsafeMutableBufferPointer { dst in
            try forEachElement(data, header: header, name: name) { i, value in
                switch value {
                case .int(let v):
                    guard v.magnitude < UInt64(maxIntegerMagnitude) else { return "element \(i) (\(v)) is beyond ±2^62" }
                    dst[i] = Int(v)
                case .uint(let v):
                    guard v < UInt64(maxIntegerMagnitude) else { return "element \(i) (\(v)) is beyond ±2^62" }
                    dst[i] = Int(v)
                case .float(let v):
                    guard v.isFinite, v == v.rounded(), abs(v) < Double(maxIntegerMagnitude) else {
                        return "element \(i) (\(v)) of a \(header.dtype) array is not a whole number"
                    }
                    dst[i] = Int(v)
                }
                return nil
            }
        }
        return (header.shape, values)
    }

    /// Parses and checks the header of a `.npy` file: magic, version, dict, and that the data is
    /// exactly `shape × itemsize` bytes.
    public static func parseHeader(_ data: Data, name: String, limits: ReadLimits = .default) throws -> Header {
        let bytes = data.withUnsafeBytes { Array($0.prefix(12)) }
        let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
        guard bytes.count >= 8 else { throw DataError(file: name, offset: 0, "not a .npy file: \(data.count) bytes, too short for the header") }
        guard Array(bytes[0..<6]) == magic else {
            throw DataError(file: name, offset: 0, "not a .npy file: the magic is \(bytes[0..<6].map { String(format: "%02x", $0) }.joined(separator: " ")), expected 93 4e 55 4d 50 59 (\\x93NUMPY)")
        }
        let major = bytes[6], minor = bytes[7]
        let lengthBytes: Int
        switch major {
        case 1: lengthBytes = 2
        case 2, 3: lengthBytes = 4
        default: throw DataError(file: name, offset: 6, "unsupported .npy version \(major).\(minor) (known: 1.0, 2.0, 3.0)")
        }
        guard bytes.count >= 8 + lengthBytes else { throw DataError(file: name, offset: 8, "truncated: the header length is missing") }
        let headerLength = bytes[8 ..< 8 + lengthBytes].reversed().reduce(0) { $0 << 8 | Int($1) }
        let start = 8 + lengthBytes
        guard headerLength <= maxHeaderBytes else {
            throw DataError(file: name, offset: 8, "header length \(headerLength) exceeds the \(maxHeaderBytes)-byte limit")
        }
        guard start + headerLength <= data.count else {
            throw DataError(file: name, offset: 8, "truncated: header length \(headerLength) runs past the end of the file (\(data.count) bytes)")
        }
        let headerBytes = data.withUnsafeBytes { Array($0[start ..< start + headerLength]) }
        guard let text = String(validating: headerBytes, as: UTF8.self),
              major == 3 || headerBytes.allSatisfy({ $0 < 0x80 }) else {
            throw DataError(file: name, offset: start, "the header is not \(major == 3 ? "UTF-8" : "ASCII") text")
        }
        let dict: [String: PyValue]
        var parser = PyLiteralParser(text)
        do { dict = try parser.parseDict() } catch let error as PyLiteralParser.Failure {
            throw DataError(file: name, offset: start + error.offset, "malformed header dict: \(error.message) in \(abbreviated(text.trimmingCharacters(in: .whitespacesAndNewlines)))")
        }
        guard case .string(let descr)? = dict["descr"] else {
            if dict["descr"] != nil {
                throw DataError(file: name, offset: start, "structured or non-string dtype in 'descr' is not supported")
            }
            throw DataError(file: name, offset: start, "the header has no 'descr' key")
        }
        guard case .bool(let fortran)? = dict["fortran_order"] else {
            throw DataError(file: name, offset: start, "the header has no boolean 'fortran_order' key")
        }
        guard case .tuple(let shape)? = dict["shape"] else {
            throw DataError(file: name, offset: start, "the header has no tuple 'shape' key")
        }
        let dtype = try parseDescr(descr, name: name, offset: start)
        if fortran {
            throw DataError(file: name, offset: start, "fortran_order is True: only C-order arrays are supported (save with np.ascontiguousarray)")
        }
        guard shape.count <= maxRank else { throw DataError(file: name, offset: start, "rank \(shape.count) exceeds \(maxRank)") }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw DataError(file: name, offset: start, "negative extent in shape \(shape)") }
        let dataOffset = start + headerLength
        let available = data.count - dataOffset
        guard let count = CheckedSize.product(shape), let needed = CheckedSize.multiply(count, dtype.size), needed <= limits.maxPayloadBytes else {
            throw DataError(file: name, offset: start, "shape \(shape) of \(dtype) exceeds the \(limits.maxPayloadBytes)-byte limit")
        }
        guard needed == available else {
            throw DataError(file: name, offset: dataOffset,
                            "shape \(shape) of \(dtype) needs \(needed) bytes of data, the file has \(available)\(available < needed ? " (truncated)" : "")")
        }
        return Header(dtype: dtype, shape: shape, fortranOrder: fortran, dataOffset: dataOffset)
    }

    private static func parseDescr(_ descr: String, name: String, offset: Int) throws -> DType {
        let chars = Array(descr)
        guard chars.count >= 3, "<>|=".contains(chars[0]), let size = Int(String(chars[2...])) else {
            throw DataError(file: name, offset: offset, "unsupported dtype '\(abbreviated(descr))' (readable: f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)")
        }
        let kind = chars[1]
        let valid: Bool
        switch kind {
        case "f": valid = [2, 4, 8].contains(size)
        case "i", "u": valid = [1, 2, 4, 8].contains(size)
        case "b": valid = size == 1
        default: valid = false
        }
        guard valid else {
            throw DataError(file: name, offset: offset, "unsupported dtype '\(abbreviated(descr))' (readable: f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)")
        }
        // '=' is native order, little-endian on every platform DistillKit runs on.
        return DType(kind: kind, size: size, bigEndian: chars[0] == ">" && size > 1)
    }

    private enum Element { case float(Double), int(Int64), uint(UInt64) }

    /// Calls `body(i, element)` for each element; a non-nil return is an error message.
    private static func forEachElement(_ data: Data, header: Header, name: String, _ body: (Int, Element) -> String?) throws {
        let dtype = header.dtype, n = header.count, size = dtype.size
        var failure: String?
        data.withUnsafeBytes { raw in
            let base = header.dataOffset
            func bits(_ o: Int) -> UInt64 {
                var v: UInt64 = 0
                switch size {
                case 1: v = UInt64(raw[o])
                case 2: let x = raw.loadUnaligned(fromByteOffset: o, as: UInt16.self); v = UInt64(dtype.bigEndian ? x.byteSwapped : x)
                case 4: let x = raw.loadUnaligned(fromByteOffset: o, as: UInt32.self); v = UInt64(dtype.bigEndian ? x.byteSwapped : x)
                default: let x = raw.loadUnaligned(fromByteOffset: o, as: UInt64.self); v = dtype.bigEndian ? x.byteSwapped : x
                }
                return v
            }
            for i in 0..<n {
                let b = bits(base + i * size)
                let element: Element
                switch (dtype.kind, size) {
                case ("f", 2): element = .float(Double(halfToFloat(UInt16(b))))
                case ("f", 4): element = .float(Double(Float(bitPattern: UInt32(b))))
                case ("f", _): element = .float(Double(bitPattern: b))
                case ("i", 1): element = .int(Int64(Int8(truncatingIfNeeded: b)))
                case ("i", 2): element = .int(Int64(Int16(truncatingIfNeeded: b)))
                case ("i", 4): element = .int(Int64(Int32(truncatingIfNeeded: b)))
                case ("i", _): element = .int(Int64(bitPattern: b))
                case ("b", _): element = .uint(b != 0 ? 1 : 0)
                default: element = .uint(b)
                }
                if let message = body(i, element) { failure = message; return }
            }
        }
        if let failure { throw DataError(file: name, offset: header.dataOffset, failure) }
    }

    /// IEEE 754 binary16 to binary32, exactly (subnormals, infinities and NaN included).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h >> 15) << 31
        let exponent = Int(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0 {  // zero or subnormal: mantissa · 2⁻²⁴
            let v = Float(mantissa) * 0x1p-24
            return sign != 0 ? -v : v
        }
        if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13) }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | mantissa << 13)
    }

    // MARK: Writing

    /// Writes `tensor` as a little-endian float32 (`<f4`) C-order `.npy` file, atomically.
    public static func write(_ tensor: Tensor, to url: URL) throws {
        try writeAtomically(encode(tensor), to: url)
    }

    /// The bytes of a `<f4` `.npy` file holding `tensor`.
    public static func encode(_ tensor: Tensor) -> Data {
        var out = header(descr: "<f4", shape: tensor.shape)
        out.append(UnsafeBufferPointer(tensor.buffer))  // x86_64 and arm64 are little-endian
        return out
    }

    /// The bytes of a `<i8` `.npy` file holding `values` (e.g. labels) with `shape`.
    public static func encode(ints values: [Int], shape: [Int]) throws -> Data {
        guard CheckedSize.product(shape) == values.count else {
            throw DataError("NPY.encode: shape \(shape) does not hold \(values.count) values")
        }
        var out = header(descr: "<i8", shape: shape)
        for v in values { out.appendLE(Int64(v)) }
        return out
    }

    /// Magic, version and a header dict padded with spaces so the data starts on a 64-byte
    /// boundary, as NumPy writes it (version 2.0 only when the header outgrows 65535 bytes).
    static func header(descr: String, shape: [Int]) -> Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(\(shape.map(String.init).joined(separator: ", ")))"
        var dict = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }".utf8)
        let version: UInt8 = dict.count + 11 > 65535 ? 2 : 1
        let prefix = version == 1 ? 10 : 12
        let total = (prefix + dict.count + 1 + 63) / 64 * 64
        dict += [UInt8](repeating: UInt8(ascii: " "), count: total - prefix - dict.count - 1) + [UInt8(ascii: "\n")]
        var out = Data([0x93] + Array("NUMPY".utf8) + [version, 0])
        if version == 1 {
            out.appendLE(UInt16(dict.count))
        } else {
            out.appendLE(UInt32(dict.count))
        }
        out.append(contentsOf: dict)
        return out
    }
}

/// A value of the Python literal subset used in `.npy` headers.
enum PyValue: Equatable {
    case string(String), bool(Bool), int(Int), tuple([Int]), none, other
}

/// Parses `{'key': value, ...}` where values are strings, True/False/None, integers, tuples of
/// integers, or (skipped) lists — enough for every header NumPy writes.
struct PyLiteralParser {
    struct Failure: Error { let offset: Int; let message: String }
    private let s: [UInt8]
    private var i = 0

    init(_ text: String) { s = Array(text.utf8) }

    private func fail(_ message: String) -> Failure { Failure(offset: i, message: message) }

    private mutating func skipSpace() { while i < s.count, [0x20, 0x09, 0x0A, 0x0D].contains(s[i]) { i += 1 } }

    private mutating func expect(_ c: Character) throws {
        skipSpace()
        guard i < s.count, s[i] == c.asciiValue! else { throw fail("expected '\(c)'") }
        i += 1
    }

    private mutating func peek() -> UInt8? { skipSpace(); return i < s.count ? s[i] : nil }

    mutating func parseDict() throws -> [String: PyValue] {
        try expect("{")
        var dict: [String: PyValue] = [:]
        while true {
            if peek() == UInt8(ascii: "}") { i += 1; break }
            guard case .string(let key) = try parseValue() else { throw fail("dict keys must be strings") }
            try expect(":")
            dict[key] = try parseValue()
            if peek() == UInt8(ascii: ",") { i += 1; continue }
            try expect("}")
            break
        }
        skipSpace()
        guard i == s.count else { throw fail("unexpected text after the dict") }
        return dict
    }

    private mutating func parseValue(depth: Int = 0) throws -> PyValue {
        guard depth < 32 else { throw fail("nesting too deep") }
        guard let c = peek() else { throw fail("unexpected end of header") }
        switch c {
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            i += 1
            let start = i
            while i < s.count && s[i] != c {
                if s[i] == UInt8(ascii: "\\") { throw fail("escape sequences in strings are not supported") }
                i += 1
            }
            guard i < s.count else { throw fail("unterminated string") }
            defer { i += 1 }
            return .string(String(decoding: s[start..<i], as: UTF8.self))
        case UInt8(ascii: "("), UInt8(ascii: "["):
            let close = c == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "]")
            i += 1
            var items: [PyValue] = []
            while true {
                if peek() == close { i += 1; break }
                items.append(try parseValue(depth: depth + 1))
                if peek() == UInt8(ascii: ",") { i += 1; continue }
                guard peek() == close else { throw fail("expected ',' or '\(Character(UnicodeScalar(close)))'") }
                i += 1
                break
            }
            var ints: [Int] = []
            for item in items {
                guard case .int(let v) = item else { return .other }
                ints.append(v)
            }
            return c == UInt8(ascii: "(") ? .tuple(ints) : .other
        default:
            let start = i
            func isWordByte(_ ch: UInt8) -> Bool {
                (ch >= 0x30 && ch <= 0x39) || (ch >= 0x41 && ch <= 0x5A) || (ch >= 0x61 && ch <= 0x7A) || ch == UInt8(ascii: "-") || ch == UInt8(ascii: "_")
            }
            while i < s.count && isWordByte(s[i]) { i += 1 }
            let word = String(decoding: s[start..<i], as: UTF8.self)
            switch word {
            case "True": return .bool(true)
            case "False": return .bool(false)
            case "None": return .none
            case "": throw fail("unexpected character '\(Character(UnicodeScalar(c)))'")
            default:
                // Python 2 wrote longs as "3L".
                let digits = word.hasSuffix("L") ? String(word.dropLast()) : word
                guard let v = Int(digits) else { throw fail("cannot read '\(word)'") }
                return .int(v)
            }
        }
    }
}
