import DistillTensor
import Foundation

/// ONNX element types (`TensorProto.DataType`), by their numbers in onnx.proto.
public enum ONNXDataType: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case undefined = 0, float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7, string = 8, bool = 9
    case float16 = 10, double = 11, uint32 = 12, uint64 = 13, complex64 = 14, complex128 = 15, bfloat16 = 16
    case float8e4m3fn = 17, float8e4m3fnuz = 18, float8e5m2 = 19, float8e5m2fnuz = 20

    /// The name onnx.proto gives it: FLOAT, INT64, ...
    public var description: String {
        switch self {
        case .undefined: return "UNDEFINED"
        case .float: return "FLOAT"
        case .uint8: return "UINT8"
        case .int8: return "INT8"
        case .uint16: return "UINT16"
        case .int16: return "INT16"
        case .int32: return "INT32"
        case .int64: return "INT64"
        case .string: return "STRING"
        case .bool: return "BOOL"
        case .float16: return "FLOAT16"
        case .double: return "DOUBLE"
        case .uint32: return "UINT32"
        case .uint64: return "UINT64"
        case .complex64: return "COMPLEX64"
        case .complex128: return "COMPLEX128"
        case .bfloat16: return "BFLOAT16"
        case .float8e4m3fn: return "FLOAT8E4M3FN"
        case .float8e4m3fnuz: return "FLOAT8E4M3FNUZ"
        case .float8e5m2: return "FLOAT8E5M2"
        case .float8e5m2fnuz: return "FLOAT8E5M2FNUZ"
        }
    }

    /// Integer and boolean types, held as Int64 by the executor.
    public var isInteger: Bool {
        switch self {
        case .uint8, .int8, .uint16, .int16, .int32, .int64, .bool, .uint32, .uint64: return true
        default: return false
        }
    }

    /// Whether the executor can hold values of this type (FLOAT, the integer types, BOOL, STRING).
    public var isSupported: Bool { self == .float || self == .string || isInteger }

    /// The type for a raw `elem_type` number, or an error naming it.
    static func from(_ raw: Int32, what: String) throws -> ONNXDataType {
        guard let t = ONNXDataType(rawValue: raw) else { throw ONNXError("\(what): unknown element type \(raw)") }
        return t
    }

    /// Bytes per element in `raw_data`.
    var byteWidth: Int? {
        switch self {
        case .uint8, .int8, .bool, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz: return 1
        case .uint16, .int16, .float16, .bfloat16: return 2
        case .float, .int32, .uint32: return 4
        case .int64, .uint64, .double, .complex64: return 8
        case .complex128: return 16
        case .string, .undefined: return nil
        }
    }

    /// Wraps an Int64 into this integer type's range (two's complement), as a C cast would.
    func wrap(_ v: Int64) -> Int64 {
        switch self {
        case .bool: return v != 0 ? 1 : 0
        case .int8: return Int64(Int8(truncatingIfNeeded: v))
        case .uint8: return Int64(UInt8(truncatingIfNeeded: v))
        case .int16: return Int64(Int16(truncatingIfNeeded: v))
        case .uint16: return Int64(UInt16(truncatingIfNeeded: v))
        case .int32: return Int64(Int32(truncatingIfNeeded: v))
        case .uint32: return Int64(UInt32(truncatingIfNeeded: v))
        default: return v
        }
    }
}

/// An integer or boolean tensor (shapes, indices, masks, class labels): values held as Int64
/// whatever the ONNX type, which `type` remembers (INT64, INT32, BOOL, ...).
public struct IntTensor: Sendable, Equatable {
    public var shape: [Int]
    public var values: [Int64]
    public var type: ONNXDataType
    public init(shape: [Int], values: [Int64], type: ONNXDataType = .int64) {
        precondition(shape.reduce(1, *) == values.count, "IntTensor: shape \(shape) for \(values.count) values")
        self.shape = shape; self.values = values; self.type = type
    }
    /// A rank-1 INT64 tensor.
    public init(_ values: [Int64]) { self.init(shape: [values.count], values: values) }
    public var count: Int { values.count }
}

/// A tensor of strings (class labels of scikit-learn classifiers).
public struct StringTensor: Sendable, Equatable {
    public var shape: [Int]
    public var values: [String]
    public init(shape: [Int], values: [String]) {
        precondition(shape.reduce(1, *) == values.count, "StringTensor: shape \(shape) for \(values.count) values")
        self.shape = shape; self.values = values
    }
}

/// A value flowing along a graph edge: a Float32 `Tensor` (the engine's type), an integer or
/// boolean tensor, or strings. Models compute in FLOAT; shapes and indices travel as integers.
public enum ONNXValue: @unchecked Sendable, CustomStringConvertible {
    case float(Tensor)
    case int(IntTensor)
    case string(StringTensor)

    public var shape: [Int] {
        switch self {
        case .float(let t): return t.shape
        case .int(let t): return t.shape
        case .string(let t): return t.shape
        }
    }
    public var count: Int { shape.reduce(1, *) }
    public var dataType: ONNXDataType {
        switch self {
        case .float: return .float
        case .int(let t): return t.type
        case .string: return .string
        }
    }
    /// "FLOAT[2,3]".
    public var typeDescription: String { "\(dataType)\(shape)".replacingOccurrences(of: " ", with: "") }
    public var description: String { typeDescription }

    /// The Float32 tensor, or nil for other types.
    public var floatTensor: Tensor? { if case .float(let t) = self { return t }; return nil }
    /// The integer tensor, or nil for other types.
    public var intTensor: IntTensor? { if case .int(let t) = self { return t }; return nil }

    /// Every element converted to Double (strings are not numbers).
    func doubles() throws -> [Double] {
        switch self {
        case .float(let t): return t.scalars.map(Double.init)
        case .int(let t): return t.values.map(Double.init)
        case .string: throw ONNXError("expected a number tensor, got STRING")
        }
    }
}

// MARK: TensorProto ↔ values

/// Limits a model file cannot exceed, so that a corrupt or hostile value is an error rather than
/// an allocation, a trap or a hang. Memory is bounded by `MemoryBudget` (DISTILL_MAX_MEMORY); these
/// bound what the budget does not see.
enum Limits {
    /// Most elements in one tensor (2^32: 16 GiB of Float32), whatever the budget. Tests lower it for fuzzing.
    @TaskLocal static var maxElements = 1 << 32
    /// Most axes of one tensor. ONNX sets none; NumPy stops at 64, and a million axes made
    /// Unsqueeze quadratic.
    static let maxRank = 64
    /// Most nodes in one graph. The largest exported models have tens of thousands.
    static let maxNodes = 500_000
    /// Most steps of one node's direct loops (Einsum, pooling windows, LRN, transposed and 3-D
    /// convolutions): minutes of work, beyond any real layer, where sizes taken from attribute
    /// values (an Einsum over many letters, a window as wide as a padded input) could ask for years.
    @TaskLocal static var maxLoopSteps = 1 << 36
    /// Most multiply-adds of one node that runs on BLAS (MatMul, Gemm, 2-D Conv) or a recurrence.
    @TaskLocal static var maxMultiplyAdds = 1 << 44
    /// Characters of a name quoted in an error message.
    static let maxQuotedName = 120
}

/// Bytes per element the executor holds for `type`: Float32 tensors take 4, integer tensors are
/// held as Int64 (8), strings as Swift `String`s (16 plus their text).
func storageBytes(_ type: ONNXDataType) -> Int {
    switch type {
    case .float: return 4
    case .string: return 16
    default: return 8
    }
}

/// `[2, 3, 4]`, or its first extents and the rank when the shape is long (error messages).
func describeShape<C: Collection>(_ shape: C) -> String where C.Element: BinaryInteger {
    guard shape.count > 12 else { return "[" + shape.map { String($0) }.joined(separator: ", ") + "]" }
    return "[" + shape.prefix(8).map { String($0) }.joined(separator: ", ") + ", ... (\(shape.count) axes)]"
}

/// `text`, shortened in the middle when the file gave a very long name (error messages).
func shortened(_ text: String) -> String {
    guard text.utf8.count > Limits.maxQuotedName else { return text }
    let half = Limits.maxQuotedName / 2
    return "\(text.prefix(half))…\(text.suffix(half)) (\(text.count) characters)"
}

/// `'name'`, shortened in the middle when very long.
func quoted(_ name: String) -> String { "'\(shortened(name))'" }

/// Checks a shape that comes from the file, or from values computed from it, before anything of
/// that shape is allocated: at most `Limits.maxRank` axes, no negative extent, and the product of
/// its extents within `Limits.maxElements` and the memory budget at `elementBytes` per element.
/// A zero extent does not hide the others: `[0, 2^62, 4]` is refused, because index arithmetic
/// on it (strides, a flattened width, one index map per axis) would overflow or allocate.
/// Returns the element count. Errors read "<what>: ...".
@discardableResult
func checkedElementCount(_ shape: [Int], _ what: String, elementBytes: Int = 8) throws -> Int {
    guard shape.count <= Limits.maxRank else {
        throw ONNXError("\(what): \(shape.count) axes, more than the \(Limits.maxRank) DistillKit allows")
    }
    var footprint = 1, hasZero = false
    for d in shape {
        guard d >= 0 else { throw ONNXError("\(what): negative extent \(d) in shape \(describeShape(shape))") }
        if d == 0 { hasZero = true; continue }
        guard let product = CheckedSize.multiply(footprint, d), product <= Limits.maxElements else {
            throw ONNXError("\(what): shape \(describeShape(shape)) is too large (more than \(Limits.maxElements) elements)")
        }
        footprint = product
    }
    let bytes = CheckedSize.multiply(footprint, elementBytes)
    if hasZero, (bytes ?? Int.max) > MemoryBudget.limitBytes {
        throw ONNXError("\(what): shape \(describeShape(shape)) is empty, but its other extents multiply to \(footprint) elements, beyond the memory budget of \(MemoryBudget.describe(MemoryBudget.limitBytes))")
    }
    do {
        try MemoryBudget.check(bytes: bytes, for: "\(what) \(describeShape(shape))")
    } catch let e as TensorError {
        throw ONNXError(e.message)
    }
    return hasZero ? 0 : footprint
}

/// Element count of `dims` read from a `TensorProto`, checked as `checkedElementCount`.
func checkedCount(_ dims: [Int64], what: String, elementBytes: Int = 8) throws -> Int {
    try checkedElementCount(dims.map { Int($0) }, what, elementBytes: elementBytes)
}

extension Onnx_TensorProto {
    /// "initializer 'fc.weight'" or "a tensor without a name".
    var label: String { name.isEmpty ? "an unnamed tensor" : "tensor \(quoted(name))" }
}

/// Reads the `byteCount` bytes of a tensor stored outside the model file (`data_location: EXTERNAL`).
/// The location must be a relative path inside the model's folder (no absolute paths, no `..`, no
/// symbolic link that leads out) naming a regular file: a FIFO would block forever and a device
/// never ends. A `length` entry must agree with `byteCount`, and only those bytes are read.
func externalBytes(_ t: Onnx_TensorProto, directory: URL?, byteCount: Int) throws -> Data {
    let what = t.label
    var entries: [String: String] = [:]
    for e in t.externalData { entries[e.key] = e.value }
    guard let location = entries["location"], !location.isEmpty else {
        throw ONNXError("\(what): external data without a 'location'")
    }
    let shown = quoted(location.replacingOccurrences(of: "\0", with: "\\0"))
    guard let directory else {
        throw ONNXError("\(what): stored in external file \(shown), but the model was not read from a file; load it with ONNXModel(contentsOf:)")
    }
    let parts = location.split(separator: "/", omittingEmptySubsequences: false)
    guard !location.hasPrefix("/"), !location.contains("\\"), !parts.contains(".."), !location.contains("\0") else {
        throw ONNXError("\(what): external data location \(shown) must be a relative path inside the model's folder (no absolute paths, no '..')")
    }
    let url = directory.appendingPathComponent(location)
    let base = directory.resolvingSymlinksInPath().standardizedFileURL.path
    let resolved = url.resolvingSymlinksInPath().standardizedFileURL.path
    guard resolved.hasPrefix(base.hasSuffix("/") ? base : base + "/") else {
        throw ONNXError("\(what): external data location \(shown) leads outside the model's folder")
    }
    if let problem = InputFile.problem(at: url.path) {
        throw ONNXError("\(what): external data file \(shown) \(problem == "no such file" ? "is missing (looked in \(directory.path))" : problem)")
    }
    guard let offset = Int(entries["offset"] ?? "0"), offset >= 0 else {
        throw ONNXError("\(what): external data file \(shown): offset \(quoted(entries["offset"] ?? "")) is not a non-negative integer")
    }
    if let text = entries["length"] {
        guard let length = Int(text), length >= 0 else {
            throw ONNXError("\(what): external data file \(shown): length \(quoted(text)) is not a non-negative integer")
        }
        guard length == byteCount else {
            throw ONNXError("\(what): external data file \(shown): length \(length) disagrees with the tensor's shape and type (\(byteCount) bytes)")
        }
    }
    let handle: FileHandle
    do { handle = try FileHandle(forReadingFrom: url) } catch {
        throw ONNXError("\(what): cannot open external data file \(shown) (\((error as NSError).localizedFailureReason ?? error.localizedDescription))")
    }
    defer { try? handle.close() }
    let size = Int((try? handle.seekToEnd()) ?? 0)
    guard offset <= size, byteCount <= size - offset else {
        throw ONNXError("\(what): external data file \(shown) has \(size) bytes; offset \(offset) and length \(byteCount) reach past its end")
    }
    let data: Data
    do {
        try handle.seek(toOffset: UInt64(offset))
        data = try handle.read(upToCount: byteCount) ?? Data()
    } catch {
        throw ONNXError("\(what): cannot read external data file \(shown) (\(error.localizedDescription))")
    }
    guard data.count == byteCount else { throw ONNXError("\(what): read \(data.count) of \(byteCount) bytes from \(shown)") }
    return data
}

/// Copies `count` little-endian values of type `T` out of `data`.
func littleEndianArray<T>(_ data: Data, count: Int, as: T.Type) -> [T] {
    [T](unsafeUninitializedCapacity: count) { buffer, initialized in
        data.withUnsafeBytes { raw in
            let dst = UnsafeMutableRawBufferPointer(buffer)
            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(count * MemoryLayout<T>.stride)))
        }
        initialized = count
    }
}

extension ONNXValue {
    /// Decodes a `TensorProto` (an initializer, a Constant, a test's input_N.pb), checking that its
    /// stated shape and its data agree. `directory` is where external data files live.
    static func decode(_ t: Onnx_TensorProto, directory: URL?) throws -> ONNXValue {
        let what = t.label
        let type = try ONNXDataType.from(t.dataType, what: what)
        guard type.isSupported else {
            throw ONNXError("\(what): element type \(type) is not supported (DistillKit computes in FLOAT, with integer and boolean tensors for shapes and indices)")
        }
        let count = try checkedCount(t.dims, what: what, elementBytes: storageBytes(type))
        let shape = t.dims.map { Int($0) }
        guard !t.hasSegment else { throw ONNXError("\(what): segmented tensors are not supported") }

        var raw: Data? = nil
        if t.dataLocation == .external {
            guard let width = type.byteWidth else { throw ONNXError("\(what): \(type) tensors cannot be stored as external data") }
            raw = try externalBytes(t, directory: directory, byteCount: count * width)
        } else if t.hasRawData { raw = t.rawData }

        func mismatch(_ found: Int, _ unit: String) -> ONNXError {
            ONNXError("\(what): shape \(describeShape(shape)) needs \(count) values, but its data holds \(found) \(unit)")
        }
        if type == .string {
            guard t.stringData.count == count else { throw mismatch(t.stringData.count, "strings") }
            return .string(StringTensor(shape: shape, values: t.stringData.map { String(decoding: $0, as: UTF8.self) }))
        }
        if let raw {
            let width = type.byteWidth!
            guard raw.count == count * width else { throw mismatch(raw.count, "bytes (\(width) per \(type) value)") }
            switch type {
            case .float:
                let tensor = Tensor(uninitializedShape: shape)
                raw.withUnsafeBytes { src in
                    UnsafeMutableRawBufferPointer(start: tensor.data, count: count * 4).copyMemory(from: src)
                }
                return .float(tensor)
            case .int64: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: Int64.self), type: type))
            case .uint64: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: UInt64.self).map { Int64(bitPattern: $0) }, type: type))
            case .int32: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: Int32.self).map(Int64.init), type: type))
            case .uint32: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: UInt32.self).map(Int64.init), type: type))
            case .int16: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: Int16.self).map(Int64.init), type: type))
            case .uint16: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: UInt16.self).map(Int64.init), type: type))
            case .int8: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: Int8.self).map(Int64.init), type: type))
            case .uint8: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: UInt8.self).map(Int64.init), type: type))
            case .bool: return .int(IntTensor(shape: shape, values: littleEndianArray(raw, count: count, as: UInt8.self).map { $0 != 0 ? 1 : 0 }, type: type))
            default: break
            }
            // float64 weights come from models exported for float64 inputs (skl2onnx's DoubleTensorType).
            let advice = type == .double ? " (DistillKit runs float32; re-export with float inputs, e.g. skl2onnx's FloatTensorType)" : ""
            throw ONNXError("\(what): element type \(type) is not supported\(advice)")
        }
        switch type {
        case .float:
            guard t.floatData.count == count else { throw mismatch(t.floatData.count, "float_data values") }
            return .float(Tensor(shape: shape, scalars: t.floatData))
        case .int64:
            guard t.int64Data.count == count else { throw mismatch(t.int64Data.count, "int64_data values") }
            return .int(IntTensor(shape: shape, values: t.int64Data, type: type))
        case .uint32, .uint64:
            guard t.uint64Data.count == count else { throw mismatch(t.uint64Data.count, "uint64_data values") }
            return .int(IntTensor(shape: shape, values: t.uint64Data.map { Int64(bitPattern: $0) }, type: type))
        default:  // int32, int16, int8, uint16, uint8, bool: int32_data
            guard t.int32Data.count == count else { throw mismatch(t.int32Data.count, "int32_data values") }
            return .int(IntTensor(shape: shape, values: t.int32Data.map { type.wrap(Int64($0)) }, type: type))
        }
    }

    /// Numbers of any stored type (DOUBLE and FLOAT16 included) as Double, for attributes such as
    /// the `*_as_tensor` ones of the tree ensembles.
    static func decodeNumbers(_ t: Onnx_TensorProto, directory: URL?) throws -> [Double] {
        let type = try ONNXDataType.from(t.dataType, what: t.label)
        let count = try checkedCount(t.dims, what: t.label)
        if type == .double {
            guard t.dataLocation != .external else { throw ONNXError("\(t.label): DOUBLE attribute tensors cannot be stored as external data") }
            if t.hasRawData {
                guard t.rawData.count == count * 8 else { throw ONNXError("\(t.label): shape \(describeShape(t.dims)) needs \(count) values, data holds \(t.rawData.count) bytes") }
                return littleEndianArray(t.rawData, count: count, as: Double.self)
            }
            guard t.doubleData.count == count else { throw ONNXError("\(t.label): shape \(describeShape(t.dims)) needs \(count) values, double_data holds \(t.doubleData.count)") }
            return t.doubleData
        }
        return try decode(t, directory: directory).doubles()
    }

    /// Encodes as a `TensorProto` with `raw_data` (little-endian), as exporters write initializers.
    func encoded(name: String) throws -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = shape.map(Int64.init)
        t.dataType = dataType.rawValue
        switch self {
        case .float(let x):
            t.rawData = Data(bytes: x.data, count: x.count * 4)
        case .int(let x):
            switch x.type {
            case .int64: t.rawData = x.values.withUnsafeBytes { Data($0) }
            case .int32: t.rawData = x.values.map { Int32(truncatingIfNeeded: $0) }.withUnsafeBytes { Data($0) }
            case .bool, .uint8: t.rawData = Data(x.values.map { UInt8(truncatingIfNeeded: $0) })
            case .int8: t.rawData = x.values.map { Int8(truncatingIfNeeded: $0) }.withUnsafeBytes { Data($0) }
            default: t.int64Data = x.values; t.dataType = ONNXDataType.int64.rawValue
            }
        case .string(let x):
            t.stringData = x.values.map { Data($0.utf8) }
        }
        return t
    }
}
