import DistillTensor
import Foundation

/// A node's attributes by name, read with the types the ONNX spec gives them. Reading an
/// attribute with the wrong type is an error that names the node and the attribute.
struct Attributes {
    let byName: [String: Onnx_AttributeProto]
    let directory: URL?

    init(_ list: [Onnx_AttributeProto], directory: URL?) {
        var map: [String: Onnx_AttributeProto] = [:]
        for a in list { map[a.name] = a }
        byName = map; self.directory = directory
    }

    var names: [String] { byName.keys.sorted() }
    func has(_ name: String) -> Bool { byName[name] != nil }

    /// The attribute's type; old models (IR < 3) may leave it unset, so it is inferred from the field.
    private func kind(_ a: Onnx_AttributeProto) -> Onnx_AttributeProto.AttributeType {
        if a.type != .undefined { return a.type }
        if !a.floats.isEmpty { return .floats }
        if !a.ints.isEmpty { return .ints }
        if !a.strings.isEmpty { return .strings }
        if a.hasT { return .tensor }
        if a.hasG { return .graph }
        if a.hasS { return .string }
        if a.hasF { return .float }
        return .int
    }

    private func wrongType(_ name: String, _ wanted: String, _ a: Onnx_AttributeProto) -> ONNXError {
        ONNXError("attribute '\(name)' must be \(wanted), found \(kind(a))")
    }

    func int(_ name: String) throws -> Int? {
        guard let a = byName[name] else { return nil }
        guard kind(a) == .int else { throw wrongType(name, "an integer", a) }
        guard let v = Int(exactly: a.i) else { throw ONNXError("attribute '\(name)' is out of range") }
        return v
    }
    func int(_ name: String, _ fallback: Int) throws -> Int { try int(name) ?? fallback }

    /// An integer attribute that must lie in `range` (a size, a count, a flag): the one place
    /// that refuses a blocksize of 2^62 or a negative count before any arithmetic sees it.
    func int(_ name: String, _ fallback: Int? = nil, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = try int(name) ?? fallback else { return nil }
        guard range.contains(v) else { throw ONNXError("attribute '\(name)' is \(v); it must be \(describe(range))") }
        return v
    }

    /// An integer list attribute whose every value lies in `range` (strides, kernel extents, pads).
    func ints(_ name: String, in range: ClosedRange<Int>) throws -> [Int]? {
        guard let values = try ints(name) else { return nil }
        if let bad = values.first(where: { !range.contains($0) }) {
            throw ONNXError("attribute '\(name)' holds \(bad) (\(describeShape(values))); each must be \(describe(range))")
        }
        return values
    }

    /// Checks every tensor attribute's shape (and type) before anything counts or decodes it:
    /// an ONNX-ML attribute declaring [2^32, 2^32] values made the parameter count trap.
    func checkTensors() throws {
        for (name, a) in byName.sorted(by: { $0.key < $1.key }) {
            for t in (a.hasT ? [a.t] : []) + a.tensors {
                let type = try ONNXDataType.from(t.dataType, what: "attribute \(quoted(name))")
                _ = try checkedCount(t.dims, what: "attribute \(quoted(name))", elementBytes: type.byteWidth ?? 16)
            }
        }
    }

    func ints(_ name: String) throws -> [Int]? {
        guard let a = byName[name] else { return nil }
        let k = kind(a)
        if k == .int { return [Int(a.i)] }  // a few exporters write a single value
        guard k == .ints else { throw wrongType(name, "a list of integers", a) }
        return a.ints.map { Int($0) }
    }

    func float(_ name: String) throws -> Float? {
        guard let a = byName[name] else { return nil }
        switch kind(a) {
        case .float: return a.f
        case .int: return Float(a.i)
        default: throw wrongType(name, "a float", a)
        }
    }
    func float(_ name: String, _ fallback: Float) throws -> Float { try float(name) ?? fallback }

    func floats(_ name: String) throws -> [Float]? {
        guard let a = byName[name] else { return nil }
        let k = kind(a)
        if k == .float { return [a.f] }
        guard k == .floats else { throw wrongType(name, "a list of floats", a) }
        return a.floats
    }

    func string(_ name: String) throws -> String? {
        guard let a = byName[name] else { return nil }
        guard kind(a) == .string else { throw wrongType(name, "a string", a) }
        return String(decoding: a.s, as: UTF8.self)
    }
    func string(_ name: String, _ fallback: String) throws -> String { try string(name) ?? fallback }

    func strings(_ name: String) throws -> [String]? {
        guard let a = byName[name] else { return nil }
        guard kind(a) == .strings else { throw wrongType(name, "a list of strings", a) }
        return a.strings.map { String(decoding: $0, as: UTF8.self) }
    }

    func tensor(_ name: String) throws -> ONNXValue? {
        guard let a = byName[name] else { return nil }
        guard kind(a) == .tensor else { throw wrongType(name, "a tensor", a) }
        do { return try ONNXValue.decode(a.t, directory: directory) } catch let e as ONNXError {
            throw e.prefixed("attribute '\(name)'")
        }
    }

    /// Numbers from a tensor attribute of any numeric type (the ML operators' `*_as_tensor`).
    func numbers(_ name: String) throws -> [Double]? {
        guard let a = byName[name] else { return nil }
        guard kind(a) == .tensor else { throw wrongType(name, "a tensor", a) }
        return try ONNXValue.decodeNumbers(a.t, directory: directory)
    }

    /// Whether any attribute holds a sub-graph (If, Loop, Scan bodies).
    var hasSubgraph: Bool { byName.values.contains { kind($0) == .graph || kind($0) == .graphs } }
}

/// One node of the graph, resolved: its operator's opset and its attributes.
struct Node {
    let index: Int
    let name: String
    let opType: String
    /// "" for the default domain (ai.onnx).
    let domain: String
    let inputs: [String]
    let outputs: [String]
    let attributes: Attributes
    /// The version of the node's domain that the model imports.
    let opset: Int
    /// What an operator derives once from the attributes (e.g. a compiled tree ensemble).
    let prepared = NodeCache()

    /// "node 'conv1' (Conv)", or "node #3 (Conv)" when the node has no name.
    var label: String { "node \(name.isEmpty ? "#\(index)" : quoted(name)) (\(opType.isEmpty ? "no operator" : shortened(opType)))" }
    /// The registry key: the op type, prefixed by its domain outside ai.onnx.
    var key: String { domain.isEmpty ? opType : "\(domain):\(opType)" }
}

/// Values an operator computes from a node's attributes on the first run and reuses after: a
/// tree ensemble's 36,000 nodes took 2 ms to compile, per call, before this cache.
final class NodeCache: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String: Any] = [:]

    /// The value stored under `key`, made by `make` the first time.
    func value<T>(_ key: String, _ make: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        if let stored = values[key] as? T { return stored }
        let made = try make()
        values[key] = made
        return made
    }
}

/// What an operator function sees: the node, its input values (nil where an optional input is
/// left out) and the number of outputs the graph uses.
struct OpContext {
    let node: Node
    let inputs: [ONNXValue?]
    var opset: Int { node.opset }
    var attributes: Attributes { node.attributes }
    var outputCount: Int { node.outputs.count }

    /// Input `i`, which must be present.
    func input(_ i: Int) throws -> ONNXValue {
        guard i < inputs.count, let v = inputs[i] else { throw ONNXError("input \(i) is required") }
        return v
    }
    /// Input `i`, or nil when it is left out.
    func optional(_ i: Int) -> ONNXValue? { i < inputs.count ? inputs[i] : nil }

    /// Input `i` as a FLOAT tensor.
    func float(_ i: Int) throws -> Tensor {
        let v = try input(i)
        guard case .float(let t) = v else { throw ONNXError("input \(i) must be FLOAT, got \(v.typeDescription)") }
        return t
    }
    func optionalFloat(_ i: Int) throws -> Tensor? {
        guard let v = optional(i) else { return nil }
        guard case .float(let t) = v else { throw ONNXError("input \(i) must be FLOAT, got \(v.typeDescription)") }
        return t
    }
    /// Input `i` as integers (shapes, axes, indices): an integer tensor, flattened.
    func ints(_ i: Int) throws -> [Int] {
        let v = try input(i)
        guard case .int(let t) = v else { throw ONNXError("input \(i) must be an integer tensor, got \(v.typeDescription)") }
        return t.values.map { Int(clamping: $0) }
    }
    func optionalInts(_ i: Int) throws -> [Int]? { optional(i) == nil ? nil : try ints(i) }
    /// A scalar (or one-element) input as a Float, whatever its numeric type.
    func optionalScalar(_ i: Int) throws -> Float? {
        guard optional(i) != nil else { return nil }
        return Float(try scalar(i))
    }
    /// Input `i`, which must hold exactly one number, as a Double.
    func scalar(_ i: Int) throws -> Double {
        let v = try input(i)
        guard v.count == 1 else { throw ONNXError("input \(i) must hold one value, got \(v.typeDescription)") }
        return try v.doubles()[0]
    }
}

/// "in 1...4", or "at least 1" for an open-ended range (error messages).
func describe(_ range: ClosedRange<Int>) -> String {
    if range.upperBound == Int.max { return "at least \(range.lowerBound)" }
    return "in \(range.lowerBound)...\(range.upperBound)"
}

/// An operator implementation: the node's outputs, in order, from its inputs.
typealias ONNXKernel = @Sendable (OpContext) throws -> [ONNXValue]
