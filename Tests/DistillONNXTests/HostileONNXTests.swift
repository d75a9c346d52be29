@testable import DistillONNX
import DistillTensor
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Hostile ONNX files: every size, index and file reference in a model is untrusted. Each test
// here is a crafted value that once crashed, hung or allocated gigabytes, and must now be an
// ONNXError naming the node (or tensor, or file) and the problem. The same attacks run through
// the real binary in tests/hostile/cases_onnx.py.

/// The message of running `node` (named "hostile") on x [2, 4] with `initializers`, or "" when it runs.
func hostileRun(_ node: Onnx_NodeProto, initializers: [Onnx_TensorProto] = [], input: Tensor = Tensor.zeros([2, 4]),
                opset: Int = 17, mlOpset: Int? = nil) -> String {
    errorMessage {
        let m = makeModel(nodes: [node], inputs: [tensorInfo("x", input.shape.map { Optional($0) })],
                          outputs: node.output.prefix(1).map { tensorInfo($0, []) }, initializers: initializers, opset: opset, mlOpset: mlOpset)
        _ = try load(m).run(["x": .float(input)])
    }
}

func hostile(_ op: String, _ inputs: [String], outputs: [String] = ["y"], domain: String = "", _ attributes: [Onnx_AttributeProto] = []) -> Onnx_NodeProto {
    makeNode(op, inputs, outputs, name: "hostile", domain: domain, attributes)
}

func rawTensor(_ name: String, _ type: ONNXDataType, _ dims: [Int64]) -> Onnx_TensorProto {
    var t = Onnx_TensorProto()
    t.name = name; t.dataType = type.rawValue; t.dims = dims
    return t
}

/// Expects `message` to name the hostile node and contain each of `parts`.
func expectRefused(_ message: String, _ parts: String..., sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(message.contains("node 'hostile'"), "\(message)", sourceLocation: sourceLocation)
    for p in parts { #expect(message.contains(p), "\(message)", sourceLocation: sourceLocation) }
}

@Suite("Hostile ONNX files")
struct HostileONNXTests {
    // MARK: Shapes and sizes

    @Test("a shape is checked before allocation: negative, overflowing, hidden behind a zero, too many axes, over budget")
    func checkedShapes() {
        #expect(errorMessage { try checkedElementCount([2, -1], "t") }.contains("negative extent -1"))
        #expect(errorMessage { try checkedElementCount([1 << 62, 4], "t") }.contains("too large"))
        #expect(errorMessage { try checkedElementCount([0, 1 << 62, 4], "t") }.contains("too large"))
        #expect(errorMessage { try checkedElementCount([Int](repeating: 1, count: 65), "t") }.contains("65 axes"))
        #expect(errorMessage { try checkedElementCount([1 << 10, 1 << 10], "t", elementBytes: 1 << 30) }.contains("memory budget"))
        #expect((try? checkedElementCount([0, 3], "t")) == 0)
        #expect((try? checkedElementCount([2, 3, 4], "t")) == 24)
        // A long shape is shown by its first extents and its rank.
        #expect(describeShape([Int](repeating: 1, count: 1000)) == "[1, 1, 1, 1, 1, 1, 1, 1, ... (1000 axes)]")
    }

    @Test("declared shapes, initializers and attribute tensors are checked at load")
    func declaredValues() {
        var m = tinyMLP()
        m.graph.input[0] = tensorInfo("x", [nil, -1])
        #expect(errorMessage { _ = try load(m) }.contains("input 'x' declares extent -1 for axis 1"))

        m = tinyMLP()
        m.graph.initializer.append(rawTensor("Z", .float, [0, 1 << 62, 4]))
        #expect(errorMessage { _ = try load(m) }.contains("tensor 'Z': shape [0, 4611686018427387904, 4] is too large"))

        // An ONNX-ML attribute declaring [2^32, 2^32] values: refused before anything counts them.
        var huge = Onnx_AttributeProto()
        huge.name = "nodes_values_as_tensor"; huge.type = .tensor; huge.t = rawTensor("v", .float, [1 << 32, 1 << 32])
        let tree = makeNode("TreeEnsembleRegressor", ["x"], ["y"], name: "forest", domain: "ai.onnx.ml", [huge])
        let ml = makeModel(nodes: [tree], inputs: [tensorInfo("x", [nil, 4])], outputs: [tensorInfo("y", [nil, 1])], mlOpset: 3)
        let message = errorMessage { _ = try load(ml) }
        #expect(message.contains("node 'forest'") && message.contains("attribute 'nodes_values_as_tensor'"), "\(message)")
    }

    @Test("inspection skips the FLOP count for a huge declared input instead of allocating it")
    func inspectHugeInput() throws {
        var m = tinyMLP()
        m.graph.input[0] = tensorInfo("x", [nil, 1 << 31])
        let summary = ModelInspector.summary(try load(m))
        #expect(summary.flops == nil)
        #expect(summary.flopsNote?.contains("input 'x'") == true, "\(summary.flopsNote ?? "")")
    }

    // MARK: Graphs

    @Test("200,000 nodes fed by one value, listed in reverse, sort in linear-logarithmic time")
    func reverseFanOut() throws {
        let n = 200_000
        var nodes = (0..<n).map { makeNode("Identity", ["a"], ["b\($0)"], name: "n\($0)") }
        nodes.append(makeNode("Identity", ["x"], ["a"], name: "first"))
        let m = makeModel(nodes: nodes, inputs: [tensorInfo("x", [2])], outputs: [tensorInfo("b0", [2])])
        let start = Date()
        let model = try load(m)
        // About 5 s in a debug build on a quiet machine (the sort that re-sorted its ready list per
        // insertion took 106 s in release); generous, so that a loaded CI machine does not fail it.
        #expect(Date().timeIntervalSince(start) < 90)
        #expect(model.nodes.first?.name == "first" && model.nodes[1].name == "n0" && model.nodes.last?.name == "n\(n - 1)")
    }

    @Test("the ready list is a min-heap: nodes come out in file order")
    func minHeap() {
        var heap = MinHeap([5, 1, 3])
        heap.push(0); heap.push(4); heap.push(2)
        var out: [Int] = []
        while let v = heap.pop() { out.append(v) }
        #expect(out == [0, 1, 2, 3, 4, 5])
    }

    @Test("a hundred thousand unsupported nodes give a short error: the first ten and a count")
    func cappedErrors() {
        let nodes = (0..<100_000).map { makeNode("NoSuchOp", ["x"], ["u\($0)"], name: "u\($0)") }
        let m = makeModel(nodes: nodes, inputs: [tensorInfo("x", [2])], outputs: [tensorInfo("u0", [2])])
        let message = errorMessage { _ = try load(m) }
        #expect(message.contains("100000 nodes cannot run") && message.contains("... and 99990 more"), "\(message.prefix(300))")
        #expect(message.count < ONNXError.maxMessageLength + 200)
        // A name of 200,000 characters is shortened in the message.
        let long = String(repeating: "v", count: 200_000)
        let missing = makeModel(nodes: [makeNode("Add", ["x", long], ["y"], name: "add")], inputs: [tensorInfo("x", [2])], outputs: [tensorInfo("y", [2])])
        let text = errorMessage { _ = try load(missing) }
        #expect(text.contains("(200000 characters)") && text.count < 1000, "\(text.prefix(300))")
        // Any message is capped.
        #expect(ONNXError(String(repeating: "e", count: 1_000_000)).message.count < ONNXError.maxMessageLength + 100)
    }

    @Test("an output's kind through 200,000 Identity nodes is described in one short line")
    func outputKindChain() {
        #expect(chainDescription(["MatMul"] + [String](repeating: "Identity", count: 200_000) + ["Softmax"]) == "MatMul → Identity ×200000 → Softmax")
        let alternating = (0..<1000).map { $0 % 2 == 0 ? "Identity" : "Cast" }
        #expect(chainDescription(alternating).contains("... (988 more)"))
    }

    @Test("a long cycle is reported with its ends")
    func longCycle() {
        let n = 1000
        let nodes = (0..<n).map { makeNode("Relu", ["c\(($0 + 1) % n)"], ["c\($0)"], name: "r\($0)") } + [makeNode("Add", ["x", "c0"], ["y"], name: "add")]
        let m = makeModel(nodes: nodes, inputs: [tensorInfo("x", [2])], outputs: [tensorInfo("y", [2])])
        let message = errorMessage { _ = try load(m) }
        #expect(message.contains("the graph has a cycle") && message.contains("more)") && message.count < 1500, "\(message)")
    }

    // MARK: Files

    @Test("a FIFO, a folder or a device as the model or its external data is refused without blocking")
    func specialFiles() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let fifo = folder.appendingPathComponent("pipe.onnx")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        #expect(errorMessage { _ = try ONNXModel(contentsOf: fifo) }.contains("FIFO"))
        #expect(errorMessage { _ = try ONNXModel(contentsOf: folder) }.contains("folder"))
        #expect(errorMessage { _ = try ONNXModel(contentsOf: URL(fileURLWithPath: "/dev/zero")) }.contains("device"))

        var m = tinyMLP()
        var w = m.graph.initializer[0]
        w.floatData = []
        w.dataLocation = .external
        var location = Onnx_StringStringEntryProto()
        location.key = "location"; location.value = "w.bin"
        w.externalData = [location]
        m.graph.initializer[0] = w
        let model = folder.appendingPathComponent("model.onnx")
        try serialized(m).write(to: model)
        #expect(mkfifo(folder.appendingPathComponent("w.bin").path, 0o600) == 0)
        let message = errorMessage { _ = try ONNXModel(contentsOf: model) }
        #expect(message.contains("'w.bin'") && message.contains("FIFO"), "\(message)")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("w.bin"))
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("w.bin"), withIntermediateDirectories: false)
        #expect(errorMessage { _ = try ONNXModel(contentsOf: model) }.contains("folder"))
    }

    // MARK: Operators whose output size comes from values

    @Test("ConstantOfShape, Expand, Tile, Range, Pad and OneHot check the size they are asked for")
    func valueSizedOutputs() {
        Limits.$maxElements.withValue(1 << 20) {
            expectRefused(hostileRun(hostile("ConstantOfShape", ["s"]), initializers: [int64Tensor("s", [2], [65536, 65536])]), "too large")
            expectRefused(hostileRun(hostile("ConstantOfShape", ["s"]), initializers: [int64Tensor("s", [3], [0, 1 << 62, 4])]), "too large")
            expectRefused(hostileRun(hostile("ConstantOfShape", ["s"]), initializers: [int64Tensor("s", [2], [-1, 4])]), "negative extent")
            expectRefused(hostileRun(hostile("Expand", ["x", "s"]), initializers: [int64Tensor("s", [4], [1 << 20, 1 << 20, 1, 4])]), "too large")
            expectRefused(hostileRun(hostile("Tile", ["x", "r"]), initializers: [int64Tensor("r", [2], [(1 << 31) - 1, (1 << 31) - 1])]), "too large")
            expectRefused(hostileRun(hostile("Tile", ["x", "r"]), initializers: [int64Tensor("r", [2], [1 << 62, 1 << 62])]), "overflows")
            expectRefused(hostileRun(hostile("Range", ["a", "b", "d"]), initializers: [floatTensor("a", [], [0]), floatTensor("b", [], [1e15]), floatTensor("d", [], [1])]),
                          "too many elements")
            expectRefused(hostileRun(hostile("Range", ["a", "b", "d"]), initializers: [floatTensor("a", [0], []), floatTensor("b", [], [5]), floatTensor("d", [], [1])]),
                          "input 0 must hold one value")
            expectRefused(hostileRun(hostile("Pad", ["x", "p"]), initializers: [int64Tensor("p", [4], [0, Int64.min, 0, 0])]), "out of range")
            expectRefused(hostileRun(hostile("Pad", ["x", "p"]), initializers: [int64Tensor("p", [4], [0, (1 << 31) - 1, 0, 0])]), "too large")
            expectRefused(hostileRun(hostile("OneHot", ["x", "d", "v"]), initializers: [floatTensor("d", [], [Float(1 << 30)]), floatTensor("v", [2], [0, 1])]), "too large")
            expectRefused(hostileRun(hostile("OneHot", ["x", "d", "v"]), initializers: [floatTensor("d", [], [.nan]), floatTensor("v", [2], [0, 1])]), "depth")
        }
        // A range running backwards by 1e30 steps is empty.
        #expect(hostileRun(hostile("Range", ["a", "b", "d"]), initializers: [floatTensor("a", [], [1e30]), floatTensor("b", [], [1e15]), floatTensor("d", [], [1])]) == "")
        // An empty input padded wide is empty: no index map of 2^31 entries is built.
        let x = Tensor.zeros([0, 4])
        #expect(hostileRun(hostile("Pad", ["x", "p"]), initializers: [int64Tensor("p", [4], [0, 0, 0, 1 << 20])], input: x) == "")
    }

    @Test("Resize and Upsample refuse huge or non-finite scales, sizes and regions")
    func resize() {
        expectRefused(hostileRun(hostile("Resize", ["x", "", "sc"]), initializers: [floatTensor("sc", [2], [1e5, 1e5])]), "too large")
        expectRefused(hostileRun(hostile("Resize", ["x", "", "", "sz"]), initializers: [int64Tensor("sz", [2], [(1 << 31) - 1, (1 << 31) - 1])]), "too large")
        expectRefused(hostileRun(hostile("Resize", ["x", "roi", "", "sz"], [stringAttribute("coordinate_transformation_mode", "tf_crop_and_resize")]),
                                 initializers: [floatTensor("roi", [4], [0, .nan, 1, 1]), int64Tensor("sz", [2], [2, 8])]), "finite")
        expectRefused(hostileRun(hostile("Upsample", ["x", "sc"]), initializers: [floatTensor("sc", [2], [1e5, 1e5])], opset: 9), "too large")
    }

    @Test("indices and axes from values: Slice, Gather, GatherND, ScatterElements, Split, Unsqueeze, Transpose")
    func indicesAndAxes() throws {
        // A legal slice with extreme starts, ends and steps: one column, no overflow.
        let slice = hostile("Slice", ["x", "s", "e", "a", "st"])
        let sliced = try load(makeModel(nodes: [slice], inputs: [tensorInfo("x", [2, 4])], outputs: [tensorInfo("y", [])],
                                        initializers: [int64Tensor("s", [1], [Int64.min]), int64Tensor("e", [1], [Int64.max]), int64Tensor("a", [1], [1]),
                                                       int64Tensor("st", [1], [1 << 62])])).run(["x": .float(Tensor.zeros([2, 4]))])["y"]!
        #expect(sliced.shape == [2, 1])
        expectRefused(hostileRun(hostile("Gather", ["x", "i"], [intAttribute("axis", 1)]), initializers: [int64Tensor("i", [1], [1 << 62])]), "out of range")
        expectRefused(hostileRun(hostile("GatherND", ["x", "i"], [intAttribute("batch_dims", -1)]), initializers: [int64Tensor("i", [1, 1], [0])]), "batch_dims -1")
        expectRefused(hostileRun(hostile("GatherND", ["x", "i"], [intAttribute("batch_dims", 1)]), initializers: [int64Tensor("i", [50, 1], [Int64](repeating: 0, count: 50))]),
                      "batch_dims extents must match")
        expectRefused(hostileRun(hostile("ScatterElements", ["x", "i", "u"], [intAttribute("axis", 1)]),
                                 initializers: [int64Tensor("i", [50, 1], [Int64](repeating: 0, count: 50)), floatTensor("u", [50, 1], [Float](repeating: 0, count: 50))]),
                      "exceed data")
        expectRefused(hostileRun(hostile("GatherElements", ["x", "i"], [intAttribute("axis", 1)]),
                                 initializers: [int64Tensor("i", [50, 2], [Int64](repeating: 0, count: 100))]), "exceed data")
        expectRefused(hostileRun(hostile("Split", ["x"], outputs: ["y"], [intAttribute("axis", 1), intAttribute("num_outputs", 1 << 40)]), opset: 18), "1 output")
        expectRefused(hostileRun(hostile("Split", ["x", "s"], outputs: ["y", "z"], [intAttribute("axis", 1)]), initializers: [int64Tensor("s", [2], [1 << 62, 1 << 62])]),
                      "adding up to 4")
        expectRefused(hostileRun(hostile("Unsqueeze", ["x", "a"]), initializers: [int64Tensor("a", [100], (2..<102).map(Int64.init))]), "more than 64")
        expectRefused(hostileRun(hostile("Transpose", ["x"], [intsAttribute("perm", Array(0..<100_000))])), "is not a permutation", "(100000 axes)")
        expectRefused(hostileRun(hostile("ReduceSum", ["x", "a"]), initializers: [int64Tensor("a", [1], [7])]), "out of range for rank 2")
        expectRefused(hostileRun(hostile("Gather", ["s", "i"]), initializers: [floatTensor("s", [], [1]), int64Tensor("i", [1], [0])]), "out of range for rank 0")
    }

    @Test("integer Div and Mod of Int64.min by −1 wrap instead of trapping")
    func integerOverflow() throws {
        for (op, expected) in [("Div", Int64.min), ("Mod", 0)] {
            let m = makeModel(nodes: [makeNode(op, ["a", "b"], ["y"], name: "n")], inputs: [], outputs: [tensorInfo("y", [1], type: .int64)],
                              initializers: [int64Tensor("a", [1], [Int64.min]), int64Tensor("b", [1], [-1])])
            #expect(try load(m).run([:])["y"]?.intTensor?.values == [expected])
        }
    }

    @Test("attribute values that size things: EyeLike, DepthToSpace, Cast, LRN")
    func attributeSizes() {
        expectRefused(hostileRun(hostile("EyeLike", ["x"], [intAttribute("dtype", 1 << 40)])), "attribute 'dtype'")
        let x4 = Tensor.zeros([2, 4, 1, 1])
        expectRefused(hostileRun(hostile("DepthToSpace", ["x"], [intAttribute("blocksize", 1 << 62)]), input: x4), "blocksize")
        expectRefused(hostileRun(hostile("SpaceToDepth", ["x"], [intAttribute("blocksize", 1 << 62)]), input: x4), "blocksize")
        expectRefused(hostileRun(hostile("Cast", ["x"], [intAttribute("to", 999)])), "unknown element type 999")
        // A window wider than every channel is legal: it covers them all.
        #expect(hostileRun(hostile("LRN", ["x"], [intAttribute("size", 1 << 62)]), input: Tensor.ones([2, 4, 1])) == "")
    }

    @Test("convolution and pooling geometry: zero strides, huge pads, groups, and work")
    func windows() {
        let x = Tensor.zeros([2, 4, 1, 1]), w = floatTensor("W", [2, 4, 1, 1], [Float](repeating: 1, count: 8))
        expectRefused(hostileRun(hostile("Conv", ["x", "W"], [intsAttribute("strides", [0, 0])]), initializers: [w], input: x), "strides")
        expectRefused(hostileRun(hostile("Conv", ["x", "W"], [intsAttribute("pads", [1 << 30, 1 << 30, 1 << 30, 1 << 30])]), initializers: [w], input: x), "too large")
        expectRefused(hostileRun(hostile("Conv", ["x", "W"], [intAttribute("group", 0)]), initializers: [w], input: x), "attribute 'group'")
        expectRefused(hostileRun(hostile("Conv", ["x", "W"], [intAttribute("group", 1 << 62)]), initializers: [w], input: x), "do not fit")
        expectRefused(hostileRun(hostile("MaxPool", ["x"], [intsAttribute("kernel_shape", [1, 1]), intsAttribute("pads", [1 << 30, 1 << 30, 1 << 30, 1 << 30])]), input: x),
                      "too large")
        expectRefused(hostileRun(hostile("AveragePool", ["x"], [intsAttribute("kernel_shape", [-1, 1])]), input: x), "kernel_shape")
        expectRefused(hostileRun(hostile("ConvTranspose", ["x", "WT"], [intsAttribute("output_shape", [1 << 30, 1 << 30])]),
                                 initializers: [floatTensor("WT", [4, 2, 1, 1], [Float](repeating: 1, count: 8))], input: x), "too large")
        // A pooling window as wide as a padded input: bounded work.
        Limits.$maxLoopSteps.withValue(1 << 16) {
            let wide = Tensor.zeros([1, 1, 1, 1 << 10])
            expectRefused(hostileRun(hostile("AveragePool", ["x"], [intsAttribute("kernel_shape", [1, 1 << 10]), intsAttribute("pads", [0, 1 << 10 - 1, 0, 1 << 10 - 1])]),
                                     input: wide), "the pooling needs more than 2^16 steps")
        }
        expectRefused(hostileRun(hostile("MatMul", ["x", "M"]), initializers: [floatTensor("M", [5, 3], [Float](repeating: 0, count: 15))]), "inner dimensions differ")
    }

    @Test("Einsum refuses malformed equations and loops beyond the work limit")
    func einsum() {
        expectRefused(hostileRun(hostile("Einsum", ["x"], [stringAttribute("equation", "...a...->a")])), "at most one '...'")
        expectRefused(hostileRun(hostile("Einsum", ["x"], [stringAttribute("equation", "ab->a->b")])), "does not fit")
        expectRefused(hostileRun(hostile("Einsum", ["x"], [stringAttribute("equation", "ab->aa")])), "repeats an output letter")
        let v = floatTensor("v", [1000], [Float](repeating: 1, count: 1000))
        expectRefused(hostileRun(hostile("Einsum", ["v", "v", "v", "v"], [stringAttribute("equation", "a,b,c,d->")]), initializers: [v]), "needs more than 2^36 steps")
    }

    @Test("recurrent layers check hidden_size, sequence lengths, initial states and peepholes")
    func recurrent() {
        let x = Tensor.zeros([1, 2, 4])
        let weights = [floatTensor("W", [1, 8, 4], [Float](repeating: 0.1, count: 32)), floatTensor("R", [1, 8, 2], [Float](repeating: 0.1, count: 16))]
        expectRefused(hostileRun(hostile("LSTM", ["x", "W", "R"], [intAttribute("hidden_size", 1 << 62)]), initializers: weights, input: x), "overflows")
        expectRefused(hostileRun(hostile("LSTM", ["x", "W", "R"], [intAttribute("hidden_size", 3)]), initializers: weights, input: x), "must be [1, 12, 4]")
        var lens = Onnx_TensorProto()
        lens.name = "lens"; lens.dims = [1]; lens.dataType = ONNXDataType.int32.rawValue; lens.int32Data = [1]
        expectRefused(hostileRun(hostile("LSTM", ["x", "W", "R", "", "lens"], [intAttribute("hidden_size", 2)]), initializers: weights + [lens], input: x),
                      "sequence_lens must hold 2 lengths")
        expectRefused(hostileRun(hostile("LSTM", ["x", "W", "R", "", "", "h0"], [intAttribute("hidden_size", 2)]), initializers: weights + [floatTensor("h0", [1], [1])], input: x),
                      "initial_h [1] must be [1, 2, 2]")
        expectRefused(hostileRun(hostile("LSTM", ["x", "W", "R", "", "", "", "", "P"], [intAttribute("hidden_size", 2)]), initializers: weights + [floatTensor("P", [1], [1])], input: x),
                      "P [1] must be [1, 6]")
        expectRefused(hostileRun(hostile("LSTM", ["x", "W", "R"], [intAttribute("hidden_size", 2), intAttribute("layout", 2)]), initializers: weights, input: x), "attribute 'layout'")
        expectRefused(hostileRun(hostile("LSTM", ["x", "W", "R"], [intAttribute("hidden_size", 2), stringAttribute("direction", "sideways")]), initializers: weights, input: x),
                      "direction 'sideways'")
    }

    @Test("ONNX-ML operators check ids, counts and label kinds against each other")
    func machineLearning() {
        func tree(_ op: String, _ extra: [Onnx_AttributeProto]) -> Onnx_NodeProto {
            var attributes = [intsAttribute("nodes_treeids", [0, 0, 0]), intsAttribute("nodes_nodeids", [0, 1, 2]), intsAttribute("nodes_featureids", [0, 0, 0]),
                              stringsAttribute("nodes_modes", ["BRANCH_LEQ", "LEAF", "LEAF"]), floatsAttribute("nodes_values", [0.5, 0, 0]),
                              intsAttribute("nodes_truenodeids", [1, 0, 0]), intsAttribute("nodes_falsenodeids", [2, 0, 0])]
            let prefix = op == "TreeEnsembleClassifier" ? "class" : "target"
            let names = Set(extra.map(\.name))
            for a in [intsAttribute("\(prefix)_treeids", [0, 0]), intsAttribute("\(prefix)_nodeids", [1, 2]), intsAttribute("\(prefix)_ids", [0, 2]),
                      floatsAttribute("\(prefix)_weights", [1, 1])] + (op == "TreeEnsembleClassifier" ? [intsAttribute("classlabels_int64s", [0, 1, 2])] : [intAttribute("n_targets", 3)])
                where !names.contains(a.name) { attributes.append(a) }
            return hostile(op, ["x"], outputs: op == "TreeEnsembleClassifier" ? ["label", "y"] : ["y"], domain: "ai.onnx.ml", attributes + extra)
        }
        expectRefused(hostileRun(tree("TreeEnsembleClassifier", [intsAttribute("class_ids", [0, 1 << 40])]), mlOpset: 3), "class_ids holds 1099511627776")
        expectRefused(hostileRun(tree("TreeEnsembleClassifier", [intsAttribute("class_ids", [-5, -5])]), mlOpset: 3), "class_ids holds -5")
        expectRefused(hostileRun(tree("TreeEnsembleClassifier", [stringsAttribute("classlabels_strings", ["a"])]), mlOpset: 3), "both given")
        expectRefused(hostileRun(tree("TreeEnsembleRegressor", [intAttribute("n_targets", 1 << 40)]), mlOpset: 3), "too large")
        expectRefused(hostileRun(tree("TreeEnsembleRegressor", [intsAttribute("target_ids", [-1, 0])]), mlOpset: 3), "target_ids holds -1")
        expectRefused(hostileRun(tree("TreeEnsembleClassifier", [intsAttribute("nodes_falsenodeids", [1, 0, 0]), stringsAttribute("nodes_modes", ["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"])]), mlOpset: 3),
                      "cycle")
        let coefficients = floatsAttribute("coefficients", [Float](repeating: 1, count: 12))
        expectRefused(hostileRun(hostile("LinearRegressor", ["x"], domain: "ai.onnx.ml", [coefficients, intAttribute("targets", 1 << 62)]), mlOpset: 3), "do not fit 4 features")
        expectRefused(hostileRun(hostile("ArrayFeatureExtractor", ["x", "i"], domain: "ai.onnx.ml"), initializers: [int64Tensor("i", [1], [1 << 40])], mlOpset: 3),
                      "outside 0..<4")
    }

    @Test("every operator output keeps the shape invariant: no value downstream has an unchecked shape")
    func outputInvariant() throws {
        // Reshape of an empty tensor to [0, 2^62, 4] (allowzero) would make Flatten overflow.
        let nodes = [makeNode("Slice", ["x", "z", "z", "z"], ["e"], name: "empty"), hostile("Reshape", ["e", "s"], outputs: ["r"], [intAttribute("allowzero", 1)]),
                     makeNode("Flatten", ["r"], ["y"], name: "flat")]
        let m = makeModel(nodes: nodes, inputs: [tensorInfo("x", [2, 4])], outputs: [tensorInfo("y", [])],
                          initializers: [int64Tensor("z", [1], [0]), int64Tensor("s", [3], [0, 1 << 62, 4])])
        expectRefused(errorMessage { _ = try load(m).run(["x": .float(Tensor.zeros([2, 4]))]) }, "too large")
    }
}
