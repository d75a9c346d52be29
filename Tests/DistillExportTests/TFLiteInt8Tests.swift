import DistillNN
import DistillTestSupport
import DistillTensor
import DistillTraining
import Foundation
import Testing
@testable import DistillExport

/// int8 students as fully integer TFLite files: what the file declares (LiteRT itself runs them in
/// tests/interop/test_student_shipping.py).
@Suite struct TFLiteInt8Tests {
    /// A CNN with every int8 layer kind: a convolution whose padding is TFLite's SAME, one that
    /// needs an explicit PAD, a padded max pooling (SAME), a padded average pooling (PAD), dense layers.
    static func cnnStudent() throws -> QuantizedStudent {
        var g = SeededGenerator(seed: 12)
        let cnn = Students.everyInt8Layer(&g)
        let samples = Tensor.testNormal([64, 2, 7, 7], seed: 21, requiresGrad: false)
        let info = SavedModelDescription(spec: "cnn", inputShape: [2, 7, 7], numClasses: 5, extra: [:])
        return try Quantizer.quantize(cnn, info: info, samples: samples, labels: (0..<64).map { $0 % 5 }).student
    }

    static let logitsQuantization = ActivationQuantization(low: -6, high: 9)
    static let logits = TFLiteExport.Logits.int8(logitsQuantization)

    /// The raw bytes of the constant tensor named `name` in a .tflite file.
    static func constantBytes(_ data: Data, _ name: String) throws -> [UInt8] {
        let model = try FlatBufferReader(data, source: "test").root()
        let buffers = try model.tables(4)
        let tensors = try #require(try model.tables(2).first).tables(0)
        let tensor = try #require(try tensors.first { try $0.string(3) == name })
        return Array(try buffers[Int(try tensor.scalar(2, UInt32.self))].bytes(0))
    }

    /// Little-endian 32-bit words.
    static func words(_ bytes: [UInt8]) -> [UInt32] {
        stride(from: 0, to: bytes.count - 3, by: 4).map { i in
            UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
        }
    }

    @Test func theFileIsFullyInt8WithTFLitesQuantizationParameters() throws {
        let student = try Self.cnnStudent()
        let data = try TFLiteExport.serialize(student, logits: Self.logits, classNames: ["a", "b", "c", "d", "e"])
        let summary = try TFLiteSummary(data, source: "cnn.tflite")
        #expect(summary.operators.map(\.name) == ["QUANTIZE", "CONV_2D", "MAX_POOL_2D", "PAD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "DEQUANTIZE"])
        #expect(summary.operators.map(\.count) == [1, 2, 1, 2, 1, 1, 2, 1])
        #expect(summary.inputs.map(\.type) == ["float32"] && summary.inputs[0].shape == [1, 7, 7, 2])
        #expect(summary.outputs.map(\.type) == ["float32"] && summary.outputs[0].shape == [1, 5])
        #expect(summary.parameters == student.parameterCount)
        #expect(summary.metadata["distillkit"]?.contains(#""quantization":"int8""#) == true)

        let byName = Dictionary(uniqueKeysWithValues: summary.quantized.map { ($0.name, $0) })
        let input = try #require(byName["input.quantized"])
        #expect(input.type == "int8" && input.scales == [student.input.scale] && input.zeroPoints == [Int(student.input.zeroPoint) - 128] && !input.isConstant)
        let logits = try #require(byName["logits.quantized"])
        #expect(logits.scales == [Self.logitsQuantization.scale] && logits.zeroPoints == [Int(Self.logitsQuantization.zeroPoint) - 128])
        // Every layer: per-channel symmetric int8 weights on axis 0, int32 biases at input scale · weight scale.
        var inputScale = student.input.scale
        for (k, layer) in student.layers.enumerated() {
            let weight: QuantizedWeight, output: ActivationQuantization?
            switch layer {
            case let .convolution(w, _, _, _, _, out): (weight, output) = (w, out)
            case let .linear(w, _, _, out): (weight, output) = (w, out)
            default: continue
            }
            let w = try #require(byName["l\(k).weight"]), b = try #require(byName["l\(k).bias"])
            #expect(w.type == "int8" && w.dimension == 0 && w.scales == weight.scales && Set(w.zeroPoints) == [0] && w.isConstant)
            #expect(w.shape.first == weight.shape[0] && w.shape.reduce(1, *) == weight.values.count)
            #expect(b.type == "int32" && b.scales == weight.scales.map { inputScale * $0 } && Set(b.zeroPoints) == [0])
            if let output {
                let y = try #require(byName["l\(k)"])
                #expect(y.scales == [output.scale] && y.zeroPoints == [Int(output.zeroPoint) - 128])
                inputScale = output.scale
            }
        }
        // Padding tensors share their input's quantization (TFLite requires it for PAD).
        #expect(byName["l2.padded"]?.scales == byName["l1"]?.scales && byName["l2.padded"]?.zeroPoints == byName["l1"]?.zeroPoints)
    }

    @Test func biasesAreRoundedInt32sAndTheFirstDenseLayerReadsNHWC() throws {
        let student = try Self.cnnStudent()
        let data = try TFLiteExport.serialize(student, logits: Self.logits)
        guard case let .linear(w, bias?, _, _) = student.layers[5], case .avgPool = student.layers[3],
              case let .convolution(_, _, _, _, _, convOutput) = student.layers[2] else {
            Issue.record("unexpected layers \(student.layers.map { "\($0)".prefix(20) })"); return
        }
        let stored = try Self.constantBytes(data, "l5.weight").map { Int8(bitPattern: $0) }
        // Feature (y, x, c) of the 8 × 3 × 3 NHWC value is DistillKit's column (c, y, x).
        for o in 0..<16 { for y in 0..<3 { for x in 0..<3 { for c in 0..<8 {
            #expect(stored[o * 72 + (y * 3 + x) * 8 + c] == w.values[o * 72 + (c * 3 + y) * 3 + x])
        } } } }
        let ints = Self.words(try Self.constantBytes(data, "l5.bias")).map { Int32(bitPattern: $0) }
        #expect(ints.count == 16)
        let inputScale = convOutput.scale  // average pooling keeps its input's quantization
        for o in 0..<16 {
            let want = (Double(bias[o]) / Double(inputScale * w.scales[o])).rounded(.toNearestOrAwayFromZero)
            #expect(Double(ints[o]) == want, "bias \(o)")
        }
    }

    @Test func floatLogitsRunTheLastLayerOnDequantizedValues() throws {
        let student = try Self.cnnStudent()
        let data = try TFLiteExport.serialize(student, logits: .float)
        let summary = try TFLiteSummary(data, source: "cnn.tflite")
        #expect(summary.operators.map(\.name) == ["QUANTIZE", "CONV_2D", "MAX_POOL_2D", "PAD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "DEQUANTIZE"])
        #expect(summary.outputs.map(\.name) == ["output"] && summary.outputs[0].type == "float32")
        #expect(!summary.quantized.contains { $0.name == "logits.quantized" || $0.name == "l6.weight" })
        #expect(summary.parameters == student.parameterCount)
        guard case let .linear(w, bias?, _, nil) = student.layers[6] else { Issue.record("layer 6 is not the last linear layer"); return }
        let weights = Self.words(try Self.constantBytes(data, "l6.weight")).map { Float(bitPattern: $0) }
        let dequantized: [Float] = w.values.enumerated().map { Float($0.element) * w.scales[$0.offset / 16] }
        #expect(weights == dequantized)
        #expect(try Self.constantBytes(data, "l6.bias").count == 4 * bias.count)
    }

    /// Little-endian 64-bit integers.
    static func int64s(_ bytes: [UInt8]) -> [Int64] {
        stride(from: 0, to: bytes.count - 7, by: 8).map { i in (0..<8).reduce(Int64(0)) { $0 | Int64(bytes[i + $1]) << (8 * $1) } }
    }

    @Test func int16LogitsRunTheLastLayerAs16x8WithTheZeroPointInTheBias() throws {
        let student = try Self.cnnStudent()
        let data = try TFLiteExport.serialize(student, logits: .int16)
        let summary = try TFLiteSummary(data, source: "cnn.tflite")
        #expect(summary.operators.map(\.name) == ["QUANTIZE", "CONV_2D", "MAX_POOL_2D", "PAD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "CAST", "DEQUANTIZE"])
        #expect(summary.operators.map(\.count) == [1, 2, 1, 2, 1, 1, 2, 1, 1])
        #expect(summary.outputs.map(\.type) == ["float32"] && summary.parameters == student.parameterCount)
        #expect(summary.metadata["distillkit"]?.contains(#""logits":"int16""#) == true)
        guard case let .linear(w, bias?, _, nil) = student.layers[6], case let .linear(_, _, _, hidden?) = student.layers[5] else {
            Issue.record("layers 5 and 6 are not the hidden and last linear layers"); return
        }
        let byName = Dictionary(uniqueKeysWithValues: summary.quantized.map { ($0.name, $0) })
        // The CAST output holds the int8 values as they are: the hidden layer's scale, zero point 0.
        let wide = try #require(byName["l6.int16"]), logits = try #require(byName["logits.quantized"])
        #expect(wide.type == "int16" && wide.scales == [hidden.scale] && wide.zeroPoints == [0] && !wide.isConstant)
        let scale = TFLiteExport.int16LogitsScale(w, bias: bias, input: hidden)
        #expect(logits.type == "int16" && logits.scales == [scale] && logits.zeroPoints == [0])
        let b = try #require(byName["l6.bias"])
        #expect(b.type == "int64" && b.scales == w.scales.map { hidden.scale * $0 })
        // round(b / (s_in · s_w)) − z · Σ w, z the int8 zero point: Σ q · w + bias = Σ (q − z) · w + round(b / unit).
        let stored = Self.int64s(try Self.constantBytes(data, "l6.bias"))
        let zero = Int64(hidden.zeroPoint) - 128, inputs = w.shape[1]
        for o in 0..<w.shape[0] {
            let sum = w.values[o * inputs..<(o + 1) * inputs].reduce(Int64(0)) { $0 + Int64($1) }
            let rounded = Int64((Double(bias[o]) / Double(hidden.scale * w.scales[o])).rounded(.toNearestOrAwayFromZero))
            #expect(stored[o] == rounded - zero * sum, "bias \(o)")
        }
        // The step: the largest logit the layer can reach (each input at the end of the int8 range
        // its weight's sign favours) is just under 32,767 steps, for the largest output exactly 32,766.
        var reach: [Double] = []
        for o in 0..<w.shape[0] {
            let sums = w.values[o * inputs..<(o + 1) * inputs].map { v in [Int64(v) * (-128 - zero), Int64(v) * (127 - zero)] }
            let (low, high) = (sums.reduce(0) { $0 + $1.min()! }, sums.reduce(0) { $0 + $1.max()! })
            let unit = Double(hidden.scale) * Double(w.scales[o])
            reach.append(max(abs(Double(bias[o]) + unit * Double(low)), abs(Double(bias[o]) + unit * Double(high))) / Double(scale))
        }
        #expect(reach.max()! <= 32766 && reach.max()! > 32765.99, "\(reach)")
    }

    /// TFLite's integer arithmetic on a one-layer student, from the file's own numbers (QUANTIZE,
    /// CAST, Σ q · w + int64 bias, requantised to the int16 step): within a step and the bias's
    /// rounding of DistillKit's int8 path, every logit far from saturating.
    @Test func int16LogitsComputedAsTFLiteDoesMatchDistillKit() throws {
        let model = try ModelZoo.build("mlp:6-4", seed: 8)
        let samples = Tensor.testNormal([256, 6], seed: 9, requiresGrad: false)
        let info = SavedModelDescription(spec: "mlp:6-4", inputShape: [6], numClasses: 4, extra: [:])
        let student = try Quantizer.quantize(model, info: info, samples: samples, labels: (0..<256).map { $0 % 4 }).student
        let data = try TFLiteExport.serialize(student, logits: .int16)
        #expect(try TFLiteSummary(data, source: "one.tflite").operators.map(\.name) == ["QUANTIZE", "CAST", "FULLY_CONNECTED", "DEQUANTIZE"])
        let byName = Dictionary(uniqueKeysWithValues: try TFLiteSummary(data, source: "one.tflite").quantized.map { ($0.name, $0) })
        let input = try #require(byName["input.quantized"]), weight = try #require(byName["l1.weight"])
        let step = try #require(byName["logits.quantized"]).scales[0]
        let w = try Self.constantBytes(data, "l1.weight").map { Int64(Int8(bitPattern: $0)) }
        let bias = Self.int64s(try Self.constantBytes(data, "l1.bias"))
        let reference = try QuantizedPlan(student)(samples).scalars
        var largest: Int64 = 0
        for r in 0..<256 {
            let q = (0..<6).map { j in Int64(max(-128, min(127, (Double(samples.scalars[r * 6 + j]) / Double(input.scales[0])).rounded() + Double(input.zeroPoints[0])))) }
            for o in 0..<4 {
                let acc = (0..<6).reduce(bias[o]) { $0 + q[$1] * w[o * 6 + $1] }
                let y = Int64((Double(acc) * Double(input.scales[0]) * Double(weight.scales[o]) / Double(step)).rounded(.toNearestOrAwayFromZero))
                largest = max(largest, abs(y))
                let tolerance = Double(step) + 0.5 * Double(input.scales[0]) * Double(weight.scales[o]) + 1e-6
                #expect(abs(Double(y) * Double(step) - Double(reference[r * 4 + o])) <= tolerance, "row \(r), output \(o)")
            }
        }
        #expect(largest > 100 && largest < 32767)
    }

    @Test func tabularStandardisationRunsInFloatBeforeQuantize() throws {
        let model = try ModelZoo.build("mlp:3-8-2", seed: 5)
        let samples = Tensor.testNormal([32, 3], seed: 2, requiresGrad: false)
        let info = SavedModelDescription(spec: "mlp:3-8-2", inputShape: [3], numClasses: 2, extra: [:])
        let student = try Quantizer.quantize(model, info: info, samples: samples, labels: (0..<32).map { $0 % 2 }).student
        let data = try TFLiteExport.serialize(student, logits: Self.logits, preprocessing: .init(inputMean: [100, -3, 0], inputStd: [20, 0.5, 1e-9]))
        let summary = try TFLiteSummary(data, source: "tabular.tflite")
        #expect(summary.operators.map(\.name) == ["SUB", "MUL", "QUANTIZE", "FULLY_CONNECTED", "DEQUANTIZE"])
        #expect(summary.inputs[0].shape == [1, 3] && summary.inputs[0].type == "float32")
        let factors = Self.words(try Self.constantBytes(data, "preprocessing.scale")).map { Float(bitPattern: $0) }
        let want: [Float] = [1 / 20, 1 / 0.5, 1]  // a tiny std only centres, as FeatureStatistics.apply does
        #expect(factors == want)
    }

    @Test func refusalsComeBeforeAnyWrite() throws {
        let student = try Self.cnnStudent()
        let folder = try Students.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("student.tflite")
        try Data("previous export".utf8).write(to: file)
        let badLogits = try #require(throws: ExportError.self) {
            try TFLiteExport.write(student, logits: .int8(ActivationQuantization(scale: 0, zeroPoint: 3)), to: file)
        }
        #expect(badLogits.message.contains("logits' quantization"))
        #expect(throws: ExportError.self) { try TFLiteExport.write(student, logits: Self.logits, to: file, classNames: ["a"]) }
        var broken = student
        broken.layers.swapAt(0, 5)  // a dense layer where a convolution should be
        let chain = try #require(throws: ExportError.self) { try TFLiteExport.write(broken, logits: Self.logits, to: file) }
        #expect(chain.message.hasPrefix("int8 layer 0"))
        #expect(try Data(contentsOf: file) == Data("previous export".utf8))
        try TFLiteExport.write(student, logits: Self.logits, to: file)
        #expect(try Data(contentsOf: file) == TFLiteExport.serialize(student, logits: Self.logits))
    }

    /// A one-layer file whose weight carries `quantization`.
    static func fileWithWeight(_ quantization: TFLiteExport.Builder.Quantization) -> Data {
        var b = TFLiteExport.Builder()
        let x = b.activation([4], name: "input")
        let w = b.constant(int8: [Int8](repeating: 1, count: 8), shape: [2, 4], name: "dense.weight", quantization: quantization)
        let y = b.value([2], "output")
        b.op(.fullyConnected, [x, w], [y], (.fullyConnected, [.int8(0)]))
        return FlatBufferWriter.serialize(root: b.model(input: x, output: y, metadata: [:], description: "bad"), identifier: "TFL3")
    }

    @Test func malformedQuantizationIsAnErrorNamingFileAndTensor() throws {
        let cases: [(TFLiteExport.Builder.Quantization, String)] = [
            (.init(scales: [0.1, 0.2, 0.3], zeroPoints: [0, 0, 0]), "3 per-channel scales on axis 0 of a tensor of shape [2, 4]"),
            (.init(scales: [0.1, 0.2], zeroPoints: [0, 0], dimension: 5), "2 per-channel scales on axis 5"),
            (.init(scales: [0.1, -0.2], zeroPoints: [0, 0]), "a quantization scale is not positive and finite"),
            (.init(scales: [.nan], zeroPoints: [0]), "a quantization scale is not positive and finite"),
            (.init(scales: [0.1, 0.2], zeroPoints: [0]), "2 quantization scales but 1 zero points"),
            (.init(scales: [0.1], zeroPoints: [200]), "zero point 200 is outside the int8 range -128...127"),
        ]
        for (quantization, message) in cases {
            let error = try #require(throws: ExportError.self) { try TFLiteSummary(Self.fileWithWeight(quantization), source: "bad.tflite") }
            #expect(error.message.contains("bad.tflite: not a valid TFLite file (tensor 'dense.weight': "), "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
        // Well-formed, the same file reads back with its parameters.
        let good = try TFLiteSummary(Self.fileWithWeight(.init(scales: [0.5, 0.25], zeroPoints: [0, 0])), source: "good.tflite")
        #expect(good.quantized.map(\.scales) == [[0.5, 0.25]] && good.parameters == 8)
        #expect(good.quantized[0].description == "dense.weight int8 [2, 4] per-channel (axis 0): 2 scales 0.25 to 0.5, zero point 0")
    }

    @Test func aCutOrCorruptInt8FileIsAnErrorNotACrash() throws {
        let data = try TFLiteExport.serialize(try Self.cnnStudent(), logits: Self.logits)
        for length in [9, 64, data.count / 4, data.count / 2, data.count - 300] {
            let error = try #require(throws: ExportError.self) { try TFLiteSummary(data.prefix(length), source: "cut.tflite") }
            #expect(error.message.contains("cut.tflite"))
        }
        var g = SeededGenerator(seed: 31)
        for _ in 0..<300 {
            var corrupt = [UInt8](data)
            for _ in 0..<6 { corrupt[Int.random(in: 0..<corrupt.count, using: &g)] = UInt8.random(in: 0...255, using: &g) }
            _ = try? TFLiteSummary(Data(corrupt), source: "corrupt.tflite")  // must return or throw, never trap
        }
    }

    /// The library path `distill export --tflite` takes: int16 logits by default, int8 logits whose
    /// range comes from the calibration data when it is given.
    @Test func studentExportCalibratesTheLogitsRangeOnData() throws {
        let folder = try Students.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var g = SeededGenerator(seed: 40)
        var csv = "x0,x1,x2,label\n", rows: [Float] = []
        for i in 0..<240 {
            let label = i % 2
            let row = (0..<3).map { j in Float.random(in: -1...1, using: &g) + (j == label ? 1.5 : 0) }
            rows += row
            csv += row.map { "\($0)" }.joined(separator: ",") + ",\(label)\n"
        }
        let table = folder.appendingPathComponent("rows.csv")
        try Data(csv.utf8).write(to: table)
        let model = try ModelZoo.build("mlp:3-8-2", seed: 6)
        let info = SavedModelDescription(spec: "mlp:3-8-2", inputShape: [3], numClasses: 2, extra: [:])
        let all = Tensor(shape: [240, 3], scalars: rows)
        let student = try Quantizer.quantize(model, info: info, samples: all, labels: (0..<240).map { $0 % 2 }).student
        let int8File = folder.appendingPathComponent("student.int8.safetensors")
        try student.save(to: int8File)
        let out = folder.appendingPathComponent("student.tflite")

        let byDefault = try StudentExport.tflite(modelAt: int8File, to: out)
        #expect(byDefault.int8 && byDefault.parameters == student.parameterCount && byDefault.notes.first?.hasPrefix("logits stored as int16") == true)
        #expect(try StudentExport.quantization(ofTFLite: out).first { $0.name == "logits.quantized" }?.type == "int16")
        #expect(byDefault.summary?.operators.map(\.name) == ["QUANTIZE", "FULLY_CONNECTED", "CAST", "DEQUANTIZE"])

        let report = try StudentExport.tflite(modelAt: int8File, to: out, calibration: .init(data: table.path, labelColumn: "label", samples: 500))
        #expect(report.int8 && report.parameters == student.parameterCount && report.notes.first?.hasPrefix("logits stored as int8") == true)
        let logits = try #require(try StudentExport.quantization(ofTFLite: out).first { $0.name == "logits.quantized" })
        // The range covers the calibration rows' logits (a subset of all rows) and no more than all rows' range.
        let all8 = try QuantizedPlan(student)(all).scalars
        let (low, high) = (min(0, all8.min()!), max(0, all8.max()!))
        let scale = logits.scales[0], zero = Float(logits.zeroPoints[0])
        let (fileLow, fileHigh) = (scale * (-128 - zero), scale * (127 - zero))
        #expect(fileLow >= low - scale && fileHigh <= high + scale && fileHigh - fileLow > 0.5 * (high - low), "\(fileLow)...\(fileHigh) vs \(low)...\(high)")
    }
}
