import DistillNN
import DistillTestSupport
import DistillTensor
import DistillTraining
import Foundation
import Testing
@testable import DistillExport

/// int8 students as Core ML neural networks with 8-bit weights: what the file holds, read back
/// (coremltools loads the files and a NumPy interpreter runs them in tests/interop/test_coreml_int8.py).
@Suite struct CoreMLInt8Tests {
    typealias F = CoreMLExport.Field

    /// The network's layers (classifier or regressor) of a .mlmodel, decoded.
    static func layers(_ data: Data) throws -> [ProtobufMessage] {
        let model = try ProtobufMessage(data, source: "test")
        let network = try #require(try model.message(F.classifier) ?? model.message(F.regressor))
        return try network.messages(F.layers)
    }

    /// The weight blob (field `field` of the layer's parameters in field `kind`) of the layer named `name`.
    static func blob(_ data: Data, layer name: String, kind: Int, field: Int) throws -> ProtobufMessage {
        let layer = try #require(try layers(data).first { $0.string(F.layerName) == name })
        return try #require(try layer.message(kind)?.message(field))
    }

    @Test func theFileHoldsDistillKitsInt8WeightsAndScalesUnchanged() throws {
        let student = try TFLiteInt8Tests.cnnStudent()
        let data = try CoreMLExport.serialize(student, options: .init(classNames: ["a", "b", "c", "d", "e"]))
        let summary = try CoreMLSummary(data, source: "cnn.mlmodel")
        #expect(summary.specificationVersion == 4 && summary.kind == "neuralNetworkClassifier" && summary.classLabels == ["a", "b", "c", "d", "e"])
        #expect(summary.inputs.map(\.name) == ["input"] && summary.inputs[0].shape == [2, 7, 7] && summary.inputs[0].type == "float32")
        #expect(summary.outputs.map(\.name) == ["classLabel", "classProbability", "logits"] && summary.outputs[2].shape == [5])
        // conv, max pool, conv, average pool, flatten, dense, dense; ReLUs after the first three computing layers.
        #expect(summary.layers.map { "\($0.name) \($0.count)" } == ["convolution 2", "ReLU 3", "pooling 2", "flatten 1", "innerProduct 2", "softmax 1"])
        #expect(summary.parameters == student.parameterCount)
        #expect(summary.quantized.map(\.layer) == ["layers.0", "layers.2", "layers.5", "layers.6"])
        #expect(summary.quantizationSummary == "8-bit linear weights in 4 layers, \(summary.quantized.reduce(0) { $0 + $1.scales.count }) per-channel scales")

        var storedBytes = 0
        for (k, layer) in student.layers.enumerated() {
            let weight: QuantizedWeight, bias: [Float]?, kind: Int, fields: (Int, Int)
            switch layer {
            case let .convolution(w, b, _, _, _, _): (weight, bias, kind, fields) = (w, b, F.convolution, (90, 91))
            case let .linear(w, b, _, _): (weight, bias, kind, fields) = (w, b, F.innerProduct, (20, 21))
            default: continue
            }
            let info = try #require(summary.quantized.first { $0.layer == "layers.\(k)" })
            #expect(info.bits == 8 && info.shape == weight.shape && info.scales == weight.scales && info.isSymmetric && !info.signed && info.blob == "weights")
            #expect(info.biases == weight.scales.map { -128 * $0 })
            let w = try Self.blob(data, layer: "layers.\(k)", kind: kind, field: fields.0)
            let raw = try #require(w.data(F.rawValue))
            #expect(raw.map { Int($0) - 128 } == weight.values.map(Int.init), "layer \(k): the bytes are DistillKit's int8 values + 128")
            #expect(w.floatCount(F.floatValue) == 0 && w.data(F.int8RawValue) == nil)
            let q = try #require(try w.message(F.quantization))
            #expect(q.int(F.numberOfBits) == 8 && q.has(F.linearQuantization))
            // What Core ML computes at load, scale · u + bias, is the weight DistillKit's int8 path stands for.
            let per = weight.values.count / weight.shape[0]
            let loaded = raw.enumerated().map { i, u in info.scales[i / per] * Float(u) + info.biases[i / per] }
            let dequantized = weight.dequantized.scalars
            #expect(zip(loaded, dequantized).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) })
            let b = try Self.blob(data, layer: "layers.\(k)", kind: kind, field: fields.1)
            #expect(b.floats(F.floatValue) == (bias ?? [Float](repeating: 0, count: weight.shape[0])))
            storedBytes += weight.values.count + 4 * (2 * weight.scales.count + weight.shape[0])
        }
        #expect(summary.parameterBytes == storedBytes)
        // The layers chain by blob name from the input to the logits.
        var available: Set<String> = ["input"]
        for layer in try Self.layers(data) {
            #expect(layer.strings(F.layerInput).allSatisfy(available.contains), "\(layer.string(F.layerName) ?? "?")")
            available.formUnion(layer.strings(F.layerOutput))
        }
        #expect(available.isSuperset(of: ["logits", "classProbability"]))
    }

    @Test func aTabularStudentStandardisesItsInputFirst() throws {
        let model = try ModelZoo.build("mlp:3-8-2", seed: 5)
        let samples = Tensor.testNormal([32, 3], seed: 2, requiresGrad: false)
        let info = SavedModelDescription(spec: "mlp:3-8-2", inputShape: [3], numClasses: 2, extra: [:])
        let student = try Quantizer.quantize(model, info: info, samples: samples, labels: (0..<32).map { $0 % 2 }).student
        let data = try CoreMLExport.serialize(student, preprocessing: .init(inputMean: [100, -3, 0], inputStd: [20, 0.5, 1e-9]))
        let summary = try CoreMLSummary(data, source: "tabular.mlmodel")
        #expect(summary.layers.map { "\($0.name) \($0.count)" } == ["bias 1", "scale 1", "innerProduct 2", "ReLU 1", "softmax 1"])
        #expect(summary.inputs[0].shape == [3] && summary.quantized.count == 2)
        let scale = try Self.blob(data, layer: "preprocessing", kind: F.scale, field: 2).floats(F.floatValue)
        let want: [Float] = [1 / 20, 1 / 0.5, 1]  // a tiny std only centres, as FeatureStatistics.apply does
        #expect(scale == want)
        let regression = try #require(throws: ExportError.self) {
            try CoreMLExport.serialize(student, preprocessing: .init(outputScale: 2, outputShift: 1))
        }
        #expect(regression.message.contains("int8 students are classifiers"))
    }

    @Test func refusalsComeBeforeAnyWrite() throws {
        let student = try TFLiteInt8Tests.cnnStudent()
        let folder = try Students.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("student.mlmodel")
        try Data("previous export".utf8).write(to: file)
        let names = try #require(throws: ExportError.self) { try CoreMLExport.write(student, to: file, options: .init(classNames: ["a"])) }
        #expect(names.message == "1 class names for 5 outputs")
        var broken = student
        broken.layers.swapAt(0, 5)  // a dense layer where a convolution should be
        let chain = try #require(throws: ExportError.self) { try CoreMLExport.write(broken, to: file) }
        #expect(chain.message.hasPrefix("int8 layer 0: a linear layer"))
        var headless = student
        headless.layers.removeLast()  // no layer writes the logits
        let end = try #require(throws: ExportError.self) { try CoreMLExport.write(headless, to: file) }
        #expect(end.message.contains("does not end with a linear layer writing the logits"))
        var extra = student
        extra.layers.append(.flatten)
        let after = try #require(throws: ExportError.self) { try CoreMLExport.write(extra, to: file) }
        #expect(after.message.hasPrefix("int8 layer 7: follows the layer that writes the logits"))
        #expect(try Data(contentsOf: file) == Data("previous export".utf8))
        try CoreMLExport.write(student, to: file)
        #expect(try Data(contentsOf: file) == CoreMLExport.serialize(student))
    }

    /// A one-layer network (4 → 2 inner product) whose weights are written by `weights`.
    static func fileWithWeights(_ weights: (inout ProtobufWriter) -> Void) throws -> Data {
        let dense = CoreMLExport.layer("dense", ["input"], "logits", F.innerProduct) { p in
            p.int(1, 4); p.int(2, 2); p.bool(10, false); p.message(20, weights)
        }
        return try CoreMLExport.model([dense], inputShape: [4], outputShape: [2], options: .init())
    }

    static func linear(bits: Int = 8, raw: Int? = 8, signed: Int? = nil, scales: [Float] = [0.5, 0.25], biases: [Float] = [-64, -32]) -> (inout ProtobufWriter) -> Void {
        { w in
            if let raw { w.bytes(F.rawValue, Data(repeating: 130, count: raw)) }
            if let signed { w.bytes(F.int8RawValue, Data(repeating: 2, count: signed)) }
            w.message(F.quantization) { q in
                q.int(F.numberOfBits, bits)
                q.message(F.linearQuantization) { l in l.floats(F.linearScale, scales); l.floats(F.linearBias, biases) }
            }
        }
    }

    @Test func malformedQuantizedWeightsAreAnErrorNamingFileAndLayer() throws {
        let cases: [((inout ProtobufWriter) -> Void, String)] = [
            (Self.linear(bits: 9), "9-bit quantization; Core ML quantizes weights to 1 to 8 bits"),
            (Self.linear(bits: 0), "0-bit quantization"),
            (Self.linear(raw: 7), "7 bytes of 8-bit integers; its shape [2, 4] needs 8"),
            (Self.linear(bits: 4, raw: 8), "8 bytes of 4-bit integers; its shape [2, 4] needs 4"),
            (Self.linear(raw: nil), "need the integers in rawValue or int8RawValue, exactly one of them"),
            (Self.linear(signed: 8), "exactly one of them"),
            (Self.linear(scales: [0.5, 0.25, 1], biases: [0, 0, 0]), "3 scales; give one, or one per output channel (2)"),
            (Self.linear(biases: [-64]), "2 scales and 1 biases"),
            (Self.linear(scales: [], biases: []), "0 scales and 0 biases"),
            (Self.linear(scales: [.nan, 1]), "a quantization scale or bias is not finite"),
            ({ w in w.bytes(F.rawValue, Data(count: 8)); w.message(F.quantization) { q in q.int(F.numberOfBits, 8) } }, "without linear or lookup-table quantization"),
            ({ w in
                w.bytes(F.rawValue, Data(count: 2))
                w.message(F.quantization) { q in q.int(F.numberOfBits, 2); q.message(F.lookupTableQuantization) { t in t.floats(1, [0, 1, 2]) } }
            }, "a lookup table of 3 values for 2-bit integers (needs 4)"),
        ]
        for (weights, message) in cases {
            let error = try #require(throws: ExportError.self) { try CoreMLSummary(try Self.fileWithWeights(weights), source: "bad.mlmodel") }
            #expect(error.message.contains("bad.mlmodel: not a valid Core ML model (layer 'dense' weights: "), "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
        // Well-formed, the same files read back with their parameters.
        let good = try CoreMLSummary(try Self.fileWithWeights(Self.linear()), source: "good.mlmodel")
        #expect(good.parameters == 8 && good.parameterBytes == 8 + 4 * 4)
        #expect(good.quantized.map(\.description) == ["dense innerProduct weights [2, 4]: 8-bit linear per channel (axis 0), 2 scales 0.25 to 0.5, symmetric (bias −128 · scale)"])
        let table = try CoreMLSummary(try Self.fileWithWeights { w in
            w.bytes(F.rawValue, Data(count: 2))
            w.message(F.quantization) { q in q.int(F.numberOfBits, 2); q.message(F.lookupTableQuantization) { t in t.floats(1, [0, 1, 2, 3]) } }
        }, source: "table.mlmodel")
        #expect(table.parameters == 8 && table.quantized.first?.lookupTableEntries == 4 && table.quantizationSummary == "2-bit quantized weights in 1 layer")
        let asymmetric = try CoreMLSummary(try Self.fileWithWeights(Self.linear(scales: [0.5], biases: [-1])), source: "one.mlmodel")
        #expect(asymmetric.quantized.first?.description.hasSuffix("linear one scale 0.5, biases -1 to -1") == true)
    }

    @Test func aCutOrCorruptInt8FileIsAnErrorNotACrash() throws {
        let data = try CoreMLExport.serialize(try TFLiteInt8Tests.cnnStudent())
        for length in [1, 10, data.count / 4, data.count / 2, data.count - 40] {
            let error = try #require(throws: ExportError.self) { try CoreMLSummary(data.prefix(length), source: "cut.mlmodel") }
            #expect(error.message.contains("cut.mlmodel"))
        }
        var g = SeededGenerator(seed: 32)
        for _ in 0..<300 {
            var corrupt = [UInt8](data)
            for _ in 0..<6 { corrupt[Int.random(in: 0..<corrupt.count, using: &g)] = UInt8.random(in: 0...255, using: &g) }
            _ = try? CoreMLSummary(Data(corrupt), source: "corrupt.mlmodel")  // must return or throw, never trap
        }
    }

    /// The library path `distill export INT8 --coreml` takes, and what `distill inspect` reports.
    @Test func studentExportWritesAnInt8FileAndInspectShowsItsQuantization() throws {
        let folder = try Students.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let student = try TFLiteInt8Tests.cnnStudent()
        let int8File = folder.appendingPathComponent("student.int8.safetensors")
        try student.save(to: int8File)
        let out = folder.appendingPathComponent("student.mlmodel")
        let wrong = try #require(throws: ExportError.self) { try StudentExport.coreML(modelAt: int8File, to: out, classNames: ["a", "b"]) }
        #expect(wrong.message == "2 class names given; the model has 5 outputs" && !FileManager.default.fileExists(atPath: out.path))

        let report = try StudentExport.coreML(modelAt: int8File, to: out)
        #expect(report.int8 && report.target == .coreML && report.parameters == student.parameterCount)
        #expect(report.text.contains("(8-bit weights, float arithmetic)") && report.notes.count == 2 && report.notes[1].contains("not quantized"))
        let inspected = try StudentExport.summary(ofCoreML: out)
        #expect(inspected.format.hasPrefix("Core ML (specification 4, neuralNetworkClassifier, 5 class labels, 8-bit linear weights in 4 layers, "))
        #expect(inspected.parameters == student.parameterCount && inspected.bytes < 2 * student.parameterCount)
        let quantized = try StudentExport.quantization(ofCoreML: out)
        #expect(quantized.count == 4 && quantized.allSatisfy { $0.bits == 8 && $0.isSymmetric && $0.scales.count == $0.shape[0] })
        let metadata = try CoreMLSummary(try Data(contentsOf: out), source: "student.mlmodel").metadata
        #expect(metadata["distillkit.quantization"]?.hasPrefix("int8 weights") == true && metadata["distillkit.source"] == "student.int8.safetensors")
    }
}
