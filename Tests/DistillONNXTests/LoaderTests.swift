@testable import DistillONNX
import DistillNN
import DistillTensor
import Foundation
import Testing

// Reading and checking models: every malformed file is a clear error naming what is wrong,
// raised before anything runs, and never a crash.

/// x [N, 4] → Gemm(W [3, 4]ᵀ, b) → Relu → y [N, 3].
func tinyMLP() -> Onnx_ModelProto {
    makeModel(nodes: [makeNode("Gemm", ["x", "W", "b"], ["h"], name: "fc", [intAttribute("transB", 1)]),
                      makeNode("Relu", ["h"], ["y"], name: "act")],
              inputs: [tensorInfo("x", [nil, 4])], outputs: [tensorInfo("y", [nil, 3])],
              initializers: [floatTensor("W", [3, 4], (0..<12).map { Float($0) / 10 - 0.5 }), floatTensor("b", [3], [0.1, -0.2, 0.3])])
}

@Suite("ONNX loading and checking")
struct LoaderTests {
    @Test("a valid model loads, describes itself and runs")
    func validModel() throws {
        let m = try load(tinyMLP())
        #expect(m.inputs.map(\.description) == ["x: FLOAT[N,4]"])
        #expect(m.outputs.map(\.description) == ["y: FLOAT[N,3]"])
        #expect(m.parameterCount == 15)
        #expect(m.operatorCounts == ["Gemm": 1, "Relu": 1])
        let y = try m(Tensor(shape: [2, 4], scalars: [1, 0, 0, 0, 0, 1, 2, 3]))
        // y = relu(x · Wᵀ + b); W rows: [-.5 -.4 -.3 -.2], [-.1 0 .1 .2], [.3 .4 .5 .6]
        #expect(y.floatTensor!.scalars.map { ($0 * 1000).rounded() / 1000 } == [0, 0, 0.6, 0, 0.6, 3.5])
    }

    @Test("empty, truncated and garbage files are clear errors")
    func corruptFiles() throws {
        let data = serialized(tinyMLP())
        #expect(errorMessage { _ = try ONNXModel(data: Data(), source: "empty.onnx") }.contains("empty.onnx: the file is empty"))
        for cut in [data.count / 3, data.count / 2, data.count - 7] {
            let message = errorMessage { _ = try ONNXModel(data: data.prefix(cut), source: "cut.onnx") }
            #expect(message.hasPrefix("cut.onnx: "), "cut at \(cut): \(message)")
            #expect(message.contains("truncated or corrupt") || message.contains("not an ONNX model") || message.contains("reads") || message.contains("no outputs") || message.contains("shape"),
                    "cut at \(cut): \(message)")
        }
        var g = SeededGenerator(seed: 3)
        let garbage = Data((0..<4096).map { _ in UInt8(truncatingIfNeeded: g.next()) })
        #expect(!errorMessage { _ = try ONNXModel(data: garbage, source: "noise.onnx") }.isEmpty)
        #expect(errorMessage { _ = try ONNXModel(data: Data("hello, world".utf8), source: "text.onnx") }.contains("text.onnx"))
        // Every prefix of a model is an error or a model, never a crash.
        for cut in stride(from: 0, to: data.count, by: 5) { _ = try? ONNXModel(data: data.prefix(cut)) }
    }

    @Test("a missing file names its path")
    func missingFile() {
        #expect(errorMessage { _ = try ONNXModel(contentsOf: URL(fileURLWithPath: "/nonexistent/model.onnx")) }
            .contains("/nonexistent/model.onnx: cannot read the model"))
    }

    @Test("a cycle is reported with the nodes on it")
    func cycle() {
        let m = makeModel(nodes: [makeNode("Add", ["x", "b"], ["a"], name: "first"), makeNode("Relu", ["a"], ["b"], name: "second"),
                                  makeNode("Identity", ["a"], ["y"], name: "out")],
                          inputs: [tensorInfo("x", [2])], outputs: [tensorInfo("y", [2])])
        let message = errorMessage { _ = try load(m) }
        #expect(message.contains("the graph has a cycle"), "\(message)")
        #expect(message.contains("node 'first' (Add)") && message.contains("node 'second' (Relu)"), "\(message)")
    }

    @Test("a missing initializer names the node and the value")
    func missingInitializer() {
        var m = tinyMLP()
        m.graph.initializer.removeAll { $0.name == "W" }
        #expect(errorMessage { _ = try load(m) } == "test.onnx: node 'fc' (Gemm) reads 'W', which no node, graph input or initializer defines (a missing initializer?)")
    }

    @Test("unsupported operators are all listed, with node names and opsets, before anything runs")
    func unsupportedOperators() {
        var m = tinyMLP()
        m.graph.node.insert(makeNode("NonMaxSuppression", ["x"], ["nms"], name: "boxes"), at: 0)
        m.graph.node.append(makeNode("StringNormalizer", ["h"], ["e"], name: "text"))
        m.graph.node.append(makeNode("StringNormalizer", ["h"], ["e2"]))
        let message = errorMessage { _ = try load(m) }
        #expect(message.hasPrefix("test.onnx: 3 nodes cannot run (nothing was run), unsupported: NonMaxSuppression, StringNormalizer"), "\(message)")
        #expect(message.contains("NonMaxSuppression (node 'boxes', ai.onnx opset 17): operator not implemented"))
        #expect(message.contains("StringNormalizer (node 'text', ai.onnx opset 17)"))
        #expect(message.contains("StringNormalizer (node #4, ai.onnx opset 17)"))
        #expect(message.contains("Supported operators: "))
    }

    @Test("ZipMap is refused with the export option that leaves it out")
    func zipMap() {
        let m = makeModel(nodes: [makeNode("ZipMap", ["x"], ["y"], name: "zip", domain: "ai.onnx.ml", [intsAttribute("classlabels_int64s", [0, 1])])],
                          inputs: [tensorInfo("x", [nil, 2])], outputs: [tensorInfo("y", [nil])], mlOpset: 1)
        let message = errorMessage { _ = try load(m) }
        #expect(message.contains("ZipMap (node 'zip', ai.onnx.ml opset 1)") && message.contains("'zipmap': False"), "\(message)")
    }

    @Test("a tensor whose stated size disagrees with its data is an error")
    func sizeMismatch() {
        var m = tinyMLP()
        m.graph.initializer[0] = floatTensor("W", [3, 4], [1, 2, 3, 4, 5])
        #expect(errorMessage { _ = try load(m) } == "test.onnx: initializer: tensor 'W': shape [3, 4] needs 12 values, but its data holds 5 float_data values")
        var raw = Onnx_TensorProto()
        raw.name = "W"; raw.dims = [3, 4]; raw.dataType = 1; raw.rawData = Data(count: 40)
        m.graph.initializer[0] = raw
        #expect(errorMessage { _ = try load(m) }.contains("needs 12 values, but its data holds 40 bytes (4 per FLOAT value)"))
        raw.dims = [3, -4]
        m.graph.initializer[0] = raw
        #expect(errorMessage { _ = try load(m) }.contains("negative extent -4"))
        raw.dims = [1 << 40, 1 << 40]
        m.graph.initializer[0] = raw
        #expect(errorMessage { _ = try load(m) }.contains("is too large"))
    }

    @Test("external data is read beside the model, and bad locations are refused")
    func externalData() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var m = tinyMLP()
        let weights: [Float] = (0..<12).map { Float($0) / 10 - 0.5 }
        var padded = Data(count: 16)  // the tensor starts at offset 16
        padded.append(weights.withUnsafeBytes { Data($0) })
        try padded.write(to: folder.appendingPathComponent("weights.bin"))
        func external(_ location: String, offset: Int = 16, length: Int = 48) -> Onnx_TensorProto {
            var t = Onnx_TensorProto()
            t.name = "W"; t.dims = [3, 4]; t.dataType = 1; t.dataLocation = .external
            t.externalData = [("location", location), ("offset", "\(offset)"), ("length", "\(length)")].map { k, v in
                var e = Onnx_StringStringEntryProto()
                e.key = k; e.value = v
                return e
            }
            return t
        }
        func loadWith(_ t: Onnx_TensorProto) throws -> ONNXModel {
            m.graph.initializer[0] = t
            let url = folder.appendingPathComponent("model.onnx")
            try serialized(m).write(to: url)
            return try ONNXModel(contentsOf: url)
        }
        let y = try loadWith(external("weights.bin"))(Tensor(shape: [1, 4], scalars: [0, 1, 2, 3]))
        #expect(y.floatTensor!.scalars.map { ($0 * 1000).rounded() / 1000 } == [0, 0.6, 3.5])
        #expect(errorMessage { _ = try loadWith(external("missing.bin")) }.contains("external data file 'missing.bin' is missing"))
        #expect(errorMessage { _ = try loadWith(external("../weights.bin")) }.contains("must be a relative path inside the model's folder"))
        #expect(errorMessage { _ = try loadWith(external("/etc/passwd")) }.contains("must be a relative path inside the model's folder"))
        #expect(errorMessage { _ = try loadWith(external("weights.bin", offset: 40)) }.contains("reach past its end"))
        #expect(errorMessage { _ = try loadWith(external("weights.bin", length: 20)) }.contains("length 20 disagrees with the tensor's shape and type (48 bytes)"))
        // A symbolic link leading out of the folder is refused too.
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("link.bin").path, withDestinationPath: "/etc/hostname")
        #expect(errorMessage { _ = try loadWith(external("link.bin")) }.contains("leads outside the model's folder"))
        // Without a folder (a model from memory) external data cannot be found.
        #expect(errorMessage { m.graph.initializer[0] = external("weights.bin"); _ = try load(m) }.contains("was not read from a file"))
    }

    @Test("nodes out of order are sorted; duplicate and dangling values are errors")
    func graphStructure() throws {
        var m = tinyMLP()
        m.graph.node.reverse()
        let y = try load(m)(Tensor(shape: [1, 4], scalars: [0, 1, 2, 3]))
        #expect(y.floatTensor!.shape == [1, 3])

        m = tinyMLP()
        m.graph.node.append(makeNode("Relu", ["x"], ["h"], name: "again"))
        #expect(errorMessage { _ = try load(m) }.contains("'h' is computed twice, by node 'fc' (Gemm) and node 'again' (Relu)"))

        m = tinyMLP()
        m.graph.output.append(tensorInfo("z", [1]))
        #expect(errorMessage { _ = try load(m) }.contains("graph output 'z' is not computed by any node"))
    }

    @Test("opset and IR versions outside the supported range are refused")
    func versions() {
        #expect(errorMessage { _ = try load(makeModel(nodes: tinyMLP().graph.node, inputs: tinyMLP().graph.input, outputs: tinyMLP().graph.output,
                                                      initializers: tinyMLP().graph.initializer, opset: 99)) }
            .contains("opset 99 of the default domain is not supported"))
        var m = tinyMLP()
        m.irVersion = 2
        #expect(errorMessage { _ = try load(m) }.contains("IR version 2 is not supported"))
        m.irVersion = 14  // newer IR versions load: they only add features
        #expect(throws: Never.self) { _ = try load(m) }
    }

    @Test("inputs are checked against the declared type and shape")
    func inputChecks() throws {
        let m = try load(makeModel(nodes: [makeNode("Relu", ["image"], ["y"])], inputs: [tensorInfo("image", [nil, 1, 28, 28])],
                                   outputs: [tensorInfo("y", [nil, 1, 28, 28])]))
        #expect(errorMessage { _ = try m(Tensor.zeros([5, 784])) } == "test.onnx: input 'image': [N,784] given, [N,1,28,28] expected")
        #expect(errorMessage { _ = try m.run(["image": .int(IntTensor([1, 2]))]) } == "test.onnx: input 'image': INT64 given, FLOAT expected")
        #expect(errorMessage { _ = try m.run([:]) }.contains("missing input 'image'"))
        #expect(errorMessage { _ = try m.run(["image": .float(Tensor.zeros([1, 1, 28, 28])), "other": .float(Tensor.zeros([1]))]) }
            .contains("unknown input 'other'"))
        #expect(errorMessage { _ = try m.run(["image": .float(Tensor.zeros([1, 1, 28, 28]))], extra: ["nope"]) }.contains("no value named 'nope'"))
    }

    @Test("a failure while running names the node, its operator and opset")
    func runtimeErrors() throws {
        let m = try load(makeModel(nodes: [makeNode("Reshape", ["x", "shape"], ["y"], name: "flatten")], inputs: [tensorInfo("x", [nil, 6])],
                                   outputs: [tensorInfo("y", [nil])], initializers: [int64Tensor("shape", [2], [4, -1])]))
        #expect(errorMessage { _ = try m(Tensor.zeros([3, 6])) } == "test.onnx: node 'flatten' (Reshape, opset 17): cannot reshape FLOAT[3,6] to [4, -1]")
        let out = try m(Tensor.zeros([2, 6])).floatTensor!
        #expect(out.shape == [4, 3])
    }

    @Test("intermediate values are returned by name")
    func intermediateValues() throws {
        let m = try load(tinyMLP())
        #expect(m.valueNames == ["h", "y"])
        let out = try m.run(["x": .float(Tensor(shape: [1, 4], scalars: [0, 1, 2, 3]))], extra: ["h"])
        #expect(out["h"]!.floatTensor!.scalars.map { ($0 * 1000).rounded() / 1000 } == [-1.5, 0.6, 3.5])
    }
}

@Suite("ONNX robustness")
struct RobustnessTests {
    /// A small model with many operator kinds: DistillKit's cnn-tiny export plus shape arithmetic.
    func fuzzSeed() throws -> Data {
        var proto = try ONNXExport.modelProto(try ModelZoo.build("cnn-tiny", inputShape: [1, 8, 8]), inputShape: [1, 8, 8], opset: 17,
                                              metadata: [:], inputName: "input", outputName: "logits")
        proto.graph.node += [
            makeNode("Shape", ["logits"], ["s"]), makeNode("ConstantOfShape", ["s"], ["z"]), makeNode("Add", ["logits", "z"], ["a"]),
            makeNode("Slice", ["a", "starts", "ends"], ["sl"]), makeNode("Pad", ["sl", "pads"], ["p"]), makeNode("Softmax", ["p"], ["out"]),
        ]
        proto.graph.initializer += [int64Tensor("starts", [1], [1]), int64Tensor("ends", [1], [9]), int64Tensor("pads", [4], [0, 1, 0, 1])]
        proto.graph.output.append(tensorInfo("out", [nil, 10]))
        return serialized(proto)
    }

    @Test("randomly corrupted models are errors or run, and never crash")
    func mutations() throws {
        try BLAS.ensureLoaded()
        let seed = try fuzzSeed()
        _ = try ONNXModel(data: seed)(Tensor.zeros([2, 1, 8, 8]))
        var g = SeededGenerator(seed: UInt64(ProcessInfo.processInfo.environment["DISTILL_FUZZ_SEED"] ?? "") ?? 99)
        var loaded = 0, ran = 0
        Limits.$maxElements.withValue(1 << 20) {
            for _ in 0..<(Int(ProcessInfo.processInfo.environment["DISTILL_FUZZ_ITERATIONS"] ?? "") ?? 300) {
                var bytes = [UInt8](seed)
                for _ in 0..<(1 + Int(g.next() % 4)) {
                    let i = Int(g.next() % UInt64(bytes.count))
                    bytes[i] = g.next() % 3 == 0 ? UInt8(truncatingIfNeeded: g.next()) : bytes[i] ^ (1 << (g.next() % 8))
                }
                guard let model = try? ONNXModel(data: Data(bytes)) else { continue }
                loaded += 1
                var feeds: [String: ONNXValue] = [:]
                for info in model.inputs {
                    let dims = (info.shape ?? []).map { Swift.min($0.value ?? 2, 16) }
                    feeds[info.name] = .float(Tensor.zeros(dims))
                }
                if (try? model.run(feeds)) != nil { ran += 1 }
            }
        }
        #expect(loaded > 50 && ran > 20, "loaded \(loaded), ran \(ran)")
    }
}
