import Foundation

// A small FlatBuffers writer and reader, enough for TFLite files.
//
// The format in brief: the file starts with a 32-bit offset to the root table (and, for TFLite, the
// identifier "TFL3"). A table starts with a signed 32-bit distance back to its vtable; the vtable
// is a list of 16-bit numbers: its own size, the table's size, then each field's position inside
// the table (0: absent, the schema's default applies). References to tables, vectors and strings
// are unsigned 32-bit offsets counted from where the reference itself is stored, always forward.
// Vectors and strings are a 32-bit count followed by the elements (strings end with a zero byte).
// Every scalar sits at a multiple of its own size.
//
// This writer lays objects out front to back: a parent first, its children after it, so every
// reference points forward as the format requires.

/// A value in a table field.
indirect enum FlatField {
    case uint8(UInt8), int8(Int8), bool(Bool), int32(Int32), uint32(UInt32), float32(Float), int64(Int64)
    /// A table, vector or string stored elsewhere and referenced by offset.
    case object(FlatObject)

    var size: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .int32, .uint32, .float32, .object: return 4
        case .int64: return 8
        }
    }
}

/// Something referenced by offset.
indirect enum FlatObject {
    /// Fields by their index in the schema; nil for an absent field.
    case table([FlatField?])
    case tables([FlatObject])
    case string(String)
    /// A vector of little-endian scalars: its raw bytes, the size of one element, and the
    /// alignment its first element needs (16 for TFLite weight buffers).
    case scalars(Data, elementSize: Int, alignment: Int)

    static func int32s(_ values: [Int32]) -> FlatObject {
        var data = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        return .scalars(data, elementSize: 4, alignment: 4)
    }
    static func int32s(_ values: [Int]) -> FlatObject { int32s(values.map { Int32($0) }) }
    static func floats(_ values: [Float]) -> FlatObject {
        var data = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        return .scalars(data, elementSize: 4, alignment: 4)
    }
    static func int64s(_ values: [Int64]) -> FlatObject {
        var data = Data(capacity: values.count * 8)
        for v in values { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        return .scalars(data, elementSize: 8, alignment: 8)
    }
}

/// Serialises a tree of `FlatObject`s.
struct FlatBufferWriter {
    private var bytes: [UInt8] = []
    private var pending: [(at: Int, object: FlatObject)] = []

    /// The whole buffer: root offset, optional 4-byte identifier, then the objects.
    static func serialize(root: FlatObject, identifier: String?) -> Data {
        var writer = FlatBufferWriter()
        writer.bytes = [UInt8](repeating: 0, count: 8)
        if let identifier { for (i, b) in identifier.utf8.prefix(4).enumerated() { writer.bytes[4 + i] = b } }
        writer.pending = [(0, root)]
        var next = 0
        while next < writer.pending.count {
            let (at, object) = writer.pending[next]
            next += 1
            let position = writer.emit(object)
            writer.put(UInt32(position - at), at: at)
        }
        writer.pad(to: 16)
        return Data(writer.bytes)
    }

    private mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    private mutating func put<T: FixedWidthInteger>(_ value: T, at position: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in for (i, b) in raw.enumerated() { bytes[position + i] = b } }
    }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Writes `object` at the end; returns where a reference to it must point.
    private mutating func emit(_ object: FlatObject) -> Int {
        switch object {
        case let .string(s):
            pad(to: 4)
            let start = bytes.count
            append(UInt32(s.utf8.count))
            bytes.append(contentsOf: s.utf8)
            bytes.append(0)
            return start
        case let .scalars(data, elementSize, alignment):
            let align = max(alignment, 4)
            pad(to: 4)
            while (bytes.count + 4) % align != 0 { bytes.append(0) }
            let start = bytes.count
            append(UInt32(data.count / max(elementSize, 1)))
            bytes.append(contentsOf: data)
            return start
        case let .tables(items):
            pad(to: 4)
            let start = bytes.count
            append(UInt32(items.count))
            for item in items {
                pending.append((bytes.count, item))
                append(UInt32(0))
            }
            return start
        case let .table(fields):
            let count = (fields.lastIndex { $0 != nil } ?? -1) + 1
            // Inline layout: the vtable distance at 0, then the fields, largest first so each is aligned.
            let order = (0..<count).filter { fields[$0] != nil }.sorted { fields[$0]!.size > fields[$1]!.size }
            var position = [Int](repeating: 0, count: count)
            var size = 4
            for i in order {
                let s = fields[i]!.size
                size = (size + s - 1) / s * s
                position[i] = size
                size += s
            }
            let alignment = max(4, order.first.map { fields[$0]!.size } ?? 4)
            size = (size + alignment - 1) / alignment * alignment
            // The vtable, just before the table.
            pad(to: 2)
            let vtable = bytes.count
            append(UInt16(4 + 2 * count))
            append(UInt16(size))
            for i in 0..<count { append(UInt16(position[i])) }
            pad(to: alignment)
            let table = bytes.count
            bytes.append(contentsOf: [UInt8](repeating: 0, count: size))
            put(Int32(table - vtable), at: table)
            for i in order {
                let at = table + position[i]
                switch fields[i]! {
                case let .uint8(v): bytes[at] = v
                case let .int8(v): bytes[at] = UInt8(bitPattern: v)
                case let .bool(v): bytes[at] = v ? 1 : 0
                case let .int32(v): put(v, at: at)
                case let .uint32(v): put(v, at: at)
                case let .float32(v): put(v.bitPattern, at: at)
                case let .int64(v): put(v, at: at)
                case let .object(child): pending.append((at, child))
                }
            }
            return table
        }
    }
}

/// Reads tables out of a FlatBuffer, checking every offset against the buffer: a corrupt or
/// hostile file gives an error naming the file, never a crash.
struct FlatBufferReader {
    let bytes: [UInt8]
    let source: String

    init(_ data: Data, source: String) { bytes = [UInt8](data); self.source = source }

    func fail(_ what: String) -> ExportError { ExportError(format: "TFLite", "\(source): not a valid TFLite file (\(what))") }

    func read<T: FixedWidthInteger>(_: T.Type, at position: Int) throws -> T {
        let size = MemoryLayout<T>.size
        guard position >= 0, position <= bytes.count - size else { throw fail("offset \(position) is outside the \(bytes.count)-byte file") }
        var value: T = 0
        for i in 0..<size { value |= T(truncatingIfNeeded: bytes[position + i]) << (8 * i) }
        return value
    }

    /// The table referenced by the offset stored at `position`.
    func table(referencedAt position: Int) throws -> FlatTable {
        let target = position + Int(try read(UInt32.self, at: position))
        let vtable = target - Int(try read(Int32.self, at: target))
        let vtableSize = Int(try read(UInt16.self, at: vtable))
        guard vtableSize >= 4, vtableSize % 2 == 0, vtable + vtableSize <= bytes.count else { throw fail("a table's vtable is malformed") }
        return FlatTable(reader: self, position: target, vtable: vtable, fieldCount: (vtableSize - 4) / 2)
    }

    func root() throws -> FlatTable { try table(referencedAt: 0) }
}

/// One table: its fields read on demand, with the schema's defaults for absent ones.
struct FlatTable {
    let reader: FlatBufferReader
    let position: Int, vtable: Int, fieldCount: Int

    /// Where field `index` is stored, or nil when absent.
    func fieldPosition(_ index: Int) throws -> Int? {
        guard index < fieldCount else { return nil }
        let offset = Int(try reader.read(UInt16.self, at: vtable + 4 + 2 * index))
        return offset == 0 ? nil : position + offset
    }

    func scalar<T: FixedWidthInteger>(_ index: Int, _: T.Type, default value: T = 0) throws -> T {
        guard let at = try fieldPosition(index) else { return value }
        return try reader.read(T.self, at: at)
    }

    func table(_ index: Int) throws -> FlatTable? {
        guard let at = try fieldPosition(index) else { return nil }
        return try reader.table(referencedAt: at)
    }

    /// (position of the first element, count) of the vector in field `index`.
    func vector(_ index: Int, elementSize: Int) throws -> (start: Int, count: Int)? {
        guard let at = try fieldPosition(index) else { return nil }
        let start = at + Int(try reader.read(UInt32.self, at: at))
        let count = Int(try reader.read(UInt32.self, at: start))
        guard count <= (reader.bytes.count - start - 4) / max(elementSize, 1) else { throw reader.fail("a vector runs past the end of the file") }
        return (start + 4, count)
    }

    func tables(_ index: Int) throws -> [FlatTable] {
        guard let (start, count) = try vector(index, elementSize: 4) else { return [] }
        return try (0..<count).map { try reader.table(referencedAt: start + 4 * $0) }
    }

    func int32s(_ index: Int) throws -> [Int] {
        guard let (start, count) = try vector(index, elementSize: 4) else { return [] }
        return try (0..<count).map { Int(try reader.read(Int32.self, at: start + 4 * $0)) }
    }

    func floats(_ index: Int) throws -> [Float] {
        guard let (start, count) = try vector(index, elementSize: 4) else { return [] }
        return try (0..<count).map { Float(bitPattern: try reader.read(UInt32.self, at: start + 4 * $0)) }
    }

    func int64s(_ index: Int) throws -> [Int64] {
        guard let (start, count) = try vector(index, elementSize: 8) else { return [] }
        return try (0..<count).map { try reader.read(Int64.self, at: start + 8 * $0) }
    }

    func string(_ index: Int) throws -> String? {
        guard let (start, count) = try vector(index, elementSize: 1) else { return nil }
        return String(decoding: reader.bytes[start..<(start + count)], as: UTF8.self)
    }

    func bytes(_ index: Int) throws -> ArraySlice<UInt8> {
        guard let (start, count) = try vector(index, elementSize: 1) else { return [] }
        return reader.bytes[start..<(start + count)]
    }
}
