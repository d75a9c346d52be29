import Foundation

// The few protobuf wire-format pieces the Core ML writer and reader need, written by hand rather
// than generated: Core ML's NeuralNetwork.proto alone generates over a megabyte of Swift, of which
// the exporter uses about twenty messages. Field numbers are those of coremltools' Model.proto,
// FeatureTypes.proto, DataStructures.proto and NeuralNetwork.proto (BSD-3-Clause), listed where
// each message is written (CoreML.swift).
//
// Wire format: each field is a key `(number << 3) | wireType` as a varint, then its value: a varint
// (type 0), 8 bytes (1), a length-prefixed run of bytes (2: strings, messages, packed repeated
// scalars) or 4 bytes (5: float).

/// Appends protobuf fields to a byte buffer.
struct ProtobufWriter {
    private(set) var data = Data()

    private mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { data.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        data.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wireType: Int) { varint(UInt64(field) << 3 | UInt64(wireType)) }

    /// int32/int64/uint64/bool/enum field (negative values as 10-byte two's complement, as protobuf does).
    mutating func int(_ field: Int, _ value: Int) {
        key(field, 0)
        varint(UInt64(bitPattern: Int64(value)))
    }

    mutating func bool(_ field: Int, _ value: Bool) { int(field, value ? 1 : 0) }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
    }

    mutating func bytes(_ field: Int, _ value: Data) {
        key(field, 2)
        varint(UInt64(value.count))
        data.append(value)
    }

    mutating func string(_ field: Int, _ value: String) { bytes(field, Data(value.utf8)) }

    /// An embedded message (possibly empty: an empty message still marks a oneof as set).
    mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        build(&inner)
        bytes(field, inner.data)
    }

    /// `repeated float`, packed.
    mutating func floats(_ field: Int, _ values: [Float]) {
        var packed = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { packed.append(contentsOf: $0) } }
        bytes(field, packed)
    }

    /// `repeated int64`/`uint64`, packed.
    mutating func ints(_ field: Int, _ values: [Int]) {
        var inner = ProtobufWriter()
        for v in values { inner.varint(UInt64(bitPattern: Int64(v))) }
        bytes(field, inner.data)
    }
}

/// One decoded message: its fields in order, values left undecoded until asked for. Every length
/// is checked against the buffer, so a corrupt file is an error, not a crash.
struct ProtobufMessage {
    enum Value { case varint(UInt64), fixed64(UInt64), bytes(Data), fixed32(UInt32) }
    var fields: [(number: Int, value: Value)] = []

    init(_ data: Data, source: String, depth: Int = 0) throws {
        let bytes = [UInt8](data)
        var i = 0
        func fail(_ why: String) -> ExportError { ExportError(format: "Core ML", "\(source): not a valid Core ML model (\(why))") }
        func varint() throws -> UInt64 {
            var result: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < bytes.count, shift < 64 else { throw fail("a number runs past the end") }
                let b = bytes[i]; i += 1
                result |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return result }
                shift += 7
            }
        }
        while i < bytes.count {
            let key = try varint()
            let number = Int(key >> 3)
            guard number > 0 else { throw fail("field number 0") }
            switch key & 7 {
            case 0: fields.append((number, .varint(try varint())))
            case 1:
                guard i + 8 <= bytes.count else { throw fail("a 64-bit field runs past the end") }
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(bytes[i + k]) << (8 * k) }
                i += 8
                fields.append((number, .fixed64(v)))
            case 2:
                let length = try varint()
                guard length <= UInt64(bytes.count - i) else { throw fail("a field of \(length) bytes runs past the end") }
                fields.append((number, .bytes(Data(bytes[i..<(i + Int(length))]))))
                i += Int(length)
            case 5:
                guard i + 4 <= bytes.count else { throw fail("a 32-bit field runs past the end") }
                var v: UInt32 = 0
                for k in 0..<4 { v |= UInt32(bytes[i + k]) << (8 * k) }
                i += 4
                fields.append((number, .fixed32(v)))
            default: throw fail("wire type \(key & 7)")
            }
        }
        self.source = source
        self.depth = depth
    }

    let source: String
    let depth: Int

    func has(_ number: Int) -> Bool { fields.contains { $0.number == number } }

    func int(_ number: Int) -> Int {
        for f in fields.reversed() where f.number == number { if case let .varint(v) = f.value { return Int(truncatingIfNeeded: v) } }
        return 0
    }

    func string(_ number: Int) -> String? {
        for f in fields.reversed() where f.number == number { if case let .bytes(d) = f.value { return String(decoding: d, as: UTF8.self) } }
        return nil
    }

    func strings(_ number: Int) -> [String] {
        fields.compactMap { f in
            guard f.number == number, case let .bytes(d) = f.value else { return nil }
            return String(decoding: d, as: UTF8.self)
        }
    }

    func messages(_ number: Int) throws -> [ProtobufMessage] {
        guard depth < 64 else { throw ExportError(format: "Core ML", "\(source): messages nested more than 64 deep") }
        return try fields.compactMap { f in
            guard f.number == number, case let .bytes(d) = f.value else { return nil }
            return try ProtobufMessage(d, source: source, depth: depth + 1)
        }
    }

    func message(_ number: Int) throws -> ProtobufMessage? { try messages(number).last }

    /// Packed (or unpacked) repeated varints.
    func ints(_ number: Int) throws -> [Int] {
        var out: [Int] = []
        for f in fields where f.number == number {
            switch f.value {
            case let .varint(v): out.append(Int(truncatingIfNeeded: v))
            case let .bytes(d):
                out += try Self.packedVarints(d, source: source)
            default: break
            }
        }
        return out
    }

    /// Count of packed floats (4 bytes each) in field `number`.
    func floatCount(_ number: Int) -> Int {
        fields.reduce(0) { total, f in
            guard f.number == number else { return total }
            switch f.value {
            case let .bytes(d): return total + d.count / 4
            case .fixed32: return total + 1
            default: return total
            }
        }
    }

    /// The packed floats of field `number`.
    func floats(_ number: Int) -> [Float] {
        var out: [Float] = []
        for f in fields where f.number == number {
            switch f.value {
            case let .bytes(d):
                let b = [UInt8](d)
                for k in stride(from: 0, to: b.count - 3, by: 4) {
                    out.append(Float(bitPattern: UInt32(b[k]) | UInt32(b[k + 1]) << 8 | UInt32(b[k + 2]) << 16 | UInt32(b[k + 3]) << 24))
                }
            case let .fixed32(v): out.append(Float(bitPattern: v))
            default: break
            }
        }
        return out
    }

    /// The varints packed in `d`.
    static func packedVarints(_ d: Data, source: String) throws -> [Int] {
        var out: [Int] = []
        var result: UInt64 = 0, shift: UInt64 = 0
        for b in d {
            guard shift < 64 else { throw ExportError(format: "Core ML", "\(source): not a valid Core ML model (a packed number is too long)") }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { out.append(Int(truncatingIfNeeded: result)); result = 0; shift = 0 } else { shift += 7 }
        }
        guard shift == 0 else { throw ExportError(format: "Core ML", "\(source): not a valid Core ML model (a packed number runs past its field)") }
        return out
    }
}
