@testable import DistillONNX
import DistillTensor
import Foundation

// Small ONNX models built in Swift with the generated protobuf types, the way onnx.helper builds
// them in Python: make_node, make_tensor, make_graph, make_model.

func makeNode(_ op: String, _ inputs: [String], _ outputs: [String], name: String = "", domain: String = "",
              _ attributes: [Onnx_AttributeProto] = []) -> Onnx_NodeProto {
    var n = Onnx_NodeProto()
    n.opType = op; n.input = inputs; n.output = outputs; n.name = name; n.attribute = attributes
    if !domain.isEmpty { n.domain = domain }
    return n
}

func intsAttribute(_ name: String, _ values: [Int]) -> Onnx_AttributeProto { ONNXExport.attribute(name, ints: values) }
func intAttribute(_ name: String, _ value: Int) -> Onnx_AttributeProto { ONNXExport.attribute(name, int: value) }
func floatAttribute(_ name: String, _ value: Float) -> Onnx_AttributeProto { ONNXExport.attribute(name, float: value) }
func stringAttribute(_ name: String, _ value: String) -> Onnx_AttributeProto { ONNXExport.attribute(name, string: value) }
func floatsAttribute(_ name: String, _ values: [Float]) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name; a.type = .floats; a.floats = values
    return a
}
func stringsAttribute(_ name: String, _ values: [String]) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name; a.type = .strings; a.strings = values.map { Data($0.utf8) }
    return a
}

func floatTensor(_ name: String, _ shape: [Int], _ values: [Float]) -> Onnx_TensorProto {
    var t = Onnx_TensorProto()
    t.name = name; t.dims = shape.map(Int64.init); t.dataType = ONNXDataType.float.rawValue; t.floatData = values
    return t
}
func int64Tensor(_ name: String, _ shape: [Int], _ values: [Int64]) -> Onnx_TensorProto {
    var t = Onnx_TensorProto()
    t.name = name; t.dims = shape.map(Int64.init); t.dataType = ONNXDataType.int64.rawValue; t.int64Data = values
    return t
}

/// A tensor value-info: nil extents become the symbolic batch axis `N`.
func tensorInfo(_ name: String, _ shape: [Int?], type: ONNXDataType = .float) -> Onnx_ValueInfoProto {
    var info = ONNXExport.valueInfo(name, shape: shape)
    info.type.tensorType.elemType = type.rawValue
    return info
}

func makeModel(nodes: [Onnx_NodeProto], inputs: [Onnx_ValueInfoProto], outputs: [Onnx_ValueInfoProto],
               initializers: [Onnx_TensorProto] = [], opset: Int = 17, mlOpset: Int? = nil, irVersion: Int64 = 8) -> Onnx_ModelProto {
    var g = Onnx_GraphProto()
    g.name = "test"; g.node = nodes; g.input = inputs; g.output = outputs; g.initializer = initializers
    var m = Onnx_ModelProto()
    m.irVersion = irVersion
    var set = Onnx_OperatorSetIdProto()
    set.domain = ""; set.version = Int64(opset)
    m.opsetImport = [set]
    if let mlOpset {
        var ml = Onnx_OperatorSetIdProto()
        ml.domain = "ai.onnx.ml"; ml.version = Int64(mlOpset)
        m.opsetImport.append(ml)
    }
    m.graph = g
    return m
}

func serialized(_ m: Onnx_ModelProto) -> Data { try! m.serializedBytes() }

/// Loads a model built in memory.
func load(_ m: Onnx_ModelProto, directory: URL? = nil) throws -> ONNXModel {
    try ONNXModel(data: serialized(m), directory: directory, source: "test.onnx")
}

/// A one-node model with FLOAT inputs x0, x1, ... of the given shapes and one output y.
func singleNode(_ op: String, inputShapes: [[Int]], attributes: [Onnx_AttributeProto] = [], initializers: [Onnx_TensorProto] = [],
                extraInputs: [String] = [], opset: Int = 17) throws -> ONNXModel {
    let names = inputShapes.indices.map { "x\($0)" }
    let node = makeNode(op, names + extraInputs, ["y"], name: "n", attributes)
    return try load(makeModel(nodes: [node], inputs: zip(names, inputShapes).map { tensorInfo($0, $1.map { Optional($0) }) },
                              outputs: [tensorInfo("y", [])], initializers: initializers, opset: opset))
}

/// Runs a one-node model on FLOAT inputs and returns y.
func runSingle(_ op: String, _ inputs: [Tensor], attributes: [Onnx_AttributeProto] = [], initializers: [Onnx_TensorProto] = [],
               extraInputs: [String] = [], opset: Int = 17) throws -> ONNXValue {
    let model = try singleNode(op, inputShapes: inputs.map(\.shape), attributes: attributes, initializers: initializers,
                               extraInputs: extraInputs, opset: opset)
    var feeds: [String: ONNXValue] = [:]
    for (i, t) in inputs.enumerated() { feeds["x\(i)"] = .float(t) }
    return try model.run(feeds)["y"]!
}

/// A temporary folder, removed by the caller.
func temporaryFolder() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-onnx-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The message of the error `body` throws ("" when it does not throw).
func errorMessage(_ body: () throws -> Void) -> String {
    do { try body(); return "" } catch { return "\(error)" }
}
