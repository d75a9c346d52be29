import CKernels
import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// The int8 kernels against an integer reference (for every instruction set this CPU has), the
/// quantization of weights and activations, the int8 plan against the float model, and the int8
/// file format (round trip and malformed files).
@Suite struct QuantizationTests {
    /// The instruction-set levels of dk_int8.h this CPU runs (always 0, the scalar loops).
    static let levels = (0...2).filter { $0 <= Int(dk_int8_level()) }

    /// Random operands of one integer product: inputs a [rows][lda], weights w [n][k], and an
    /// epilogue with a non-zero input zero point, per-output scales and biases.
    struct Product {
        let rows, k, n, lda: Int
        let a: [UInt8], w: [Int8]
        let zeroIn: Int32, scales: [Float], bias: [Float], zeroOut: Int32

        init(rows: Int, k: Int, n: Int, seed: UInt64) {
            var g = SeededGenerator(seed: seed)
            self.rows = rows; self.k = k; self.n = n
            lda = (k + 3) / 4 * 4 + g.nextInt(below: 3) * 4
            a = (0..<(rows * lda)).map { _ in UInt8(g.nextInt(below: 256)) }
            // Extremes included: 255 × ±127 products are where vpmaddubsw would saturate.
            w = (0..<(n * k)).map { i in i % 7 == 0 ? (i % 2 == 0 ? 127 : -127) : Int8(g.nextInt(below: 255) - 127) }
            zeroIn = Int32(g.nextInt(below: 256))
            scales = (0..<n).map { _ in Float(0.5 + g.nextUnitDouble()) * 0.02 / Float(k).squareRoot() }
            bias = (0..<n).map { _ in Float(g.nextGaussian() * 20) }
            zeroOut = Int32(g.nextInt(below: 256))
        }

        /// Σ_k a[r][k] · w[o][k] − zeroIn · Σ_k w[o][k], in Int32.
        func accumulator(_ r: Int, _ o: Int) -> Int32 {
            var acc: Int32 = 0
            for i in 0..<k { acc += (Int32(a[r * lda + i]) - zeroIn) * Int32(w[o * k + i]) }
            return acc
        }

        /// The epilogue of dk_int8.h, written out in Swift (Swift never fuses a multiply-add).
        func expectedFloat(_ r: Int, _ o: Int) -> Float { Float(accumulator(r, o)) * scales[o] + bias[o] }
        func expectedByte(_ r: Int, _ o: Int, relu: Bool) -> UInt8 {
            let v = Swift.min(Swift.max(expectedFloat(r, o), -32768), 32768).rounded(.toNearestOrEven)
            return UInt8(Swift.min(255, Swift.max(relu ? zeroOut : 0, Int32(v) + zeroOut)))
        }

        /// Runs `dk_int8_linear_level`; nil when the CPU lacks the level.
        func run(level: Int, relu: Bool, floatOutput: Bool) -> (bytes: [UInt8], floats: [Float])? {
            var packed = [Int8](repeating: 0, count: dk_int8_packed_size(k, n))
            let padded = (n + 15) / 16 * 16
            var sums = [Int32](repeating: 0, count: padded)
            dk_int8_pack_weights(w, n, k, &packed, &sums)
            let offset = sums.map { -zeroIn * $0 }
            let scale = (0..<padded).map { $0 < n ? scales[$0] : 0 }, b = (0..<padded).map { $0 < n ? bias[$0] : 0 }
            var bytes = [UInt8](repeating: 7, count: rows * n), floats = [Float](repeating: .nan, count: rows * n)
            let status = offset.withUnsafeBufferPointer { o in scale.withUnsafeBufferPointer { s in b.withUnsafeBufferPointer { bb in
                var e = dk_int8_epilogue(offset: o.baseAddress, scale: s.baseAddress, bias: bb.baseAddress, zero_point: zeroOut, relu: relu ? 1 : 0)
                return floatOutput
                    ? dk_int8_linear_level(Int32(level), a, lda, rows, k, packed, n, &e, nil, &floats, n)
                    : dk_int8_linear_level(Int32(level), a, lda, rows, k, packed, n, &e, &bytes, nil, n)
            } } }
            return status == 0 ? (bytes, floats) : nil
        }
    }

    /// Shapes that leave partial vectors of 4 k and 16 outputs, more than one 64-output block,
    /// row counts off the 4-row tiles, and a single row.
    static let shapes: [(rows: Int, k: Int, n: Int)] = [(1, 1, 1), (1, 784, 64), (3, 5, 17), (4, 28, 6), (7, 150, 16),
                                                         (9, 120, 84), (5, 64, 100), (13, 33, 129), (256, 84, 10)]

    @Test(arguments: levels)
    func linearKernelMatchesTheIntegerReference(level: Int) throws {
        for (j, s) in Self.shapes.enumerated() {
            let p = Product(rows: s.rows, k: s.k, n: s.n, seed: UInt64(100 + j))
            for relu in [false, true] {
                let bytes = try #require(p.run(level: level, relu: relu, floatOutput: false)).bytes
                let expected = (0..<(s.rows * s.n)).map { p.expectedByte($0 / s.n, $0 % s.n, relu: relu) }
                #expect(bytes == expected, "level \(level), \(s), relu \(relu): \(zip(bytes, expected).filter { $0 != $1 }.count) bytes differ")
            }
            let floats = try #require(p.run(level: level, relu: false, floatOutput: true)).floats
            let expected = (0..<(s.rows * s.n)).map { p.expectedFloat($0 / s.n, $0 % s.n) }
            #expect(floats == expected, "level \(level), \(s), float output")
        }
    }

    @Test func levelsTheCPULacksAreRefused() throws {
        let p = Product(rows: 2, k: 8, n: 3, seed: 1)
        #expect(p.run(level: 3, relu: false, floatOutput: false) == nil)
        #expect(p.run(level: -1, relu: false, floatOutput: false) == nil)
        for level in (Int(dk_int8_level()) + 1)..<3 { #expect(p.run(level: level, relu: false, floatOutput: false) == nil) }
    }

    /// A strided convolution over a zero-point border, every level, against the direct sum.
    @Test(arguments: levels)
    func convolutionKernelMatchesTheIntegerReference(level: Int) throws {
        var g = SeededGenerator(seed: 5)
        let (c, h, w, outs, kh, kw, stride, pad) = (3, 9, 11, 20, 3, 2, 2, 1)
        let zeroIn: Int32 = 37
        let (ph, pw) = (h + 2 * pad, w + 2 * pad), rowStride = pw * c
        var image = [UInt8](repeating: UInt8(zeroIn), count: ph * rowStride + 16)  // 16 readable bytes past the last row
        for y in 0..<h { for x in 0..<w { for ch in 0..<c { image[(y + pad) * rowStride + (x + pad) * c + ch] = UInt8(g.nextInt(below: 256)) } } }
        let weight = (0..<(outs * kh * kw * c)).map { _ in Int8(g.nextInt(below: 255) - 127) }  // [out][kh][kw][c]
        let (p, q) = ((ph - kh) / stride + 1, (pw - kw) / stride + 1)
        var packed = [Int8](repeating: 0, count: dk_int8_packed_size(kh * kw * c, outs))
        var sums = [Int32](repeating: 0, count: 32)
        dk_int8_pack_weights(weight, outs, kh * kw * c, &packed, &sums)
        let offset = sums.map { -zeroIn * $0 }, scale = [Float](repeating: 0.01, count: 32), bias = (0..<32).map { Float($0) }
        var shape = dk_int8_conv_shape(channels: c, in_row_stride: rowStride, kernel_h: kh, kernel_w: kw, stride_h: stride, stride_w: stride,
                                       out_channels: outs, out_h: p, out_w: q, out_row_stride: q * outs)
        var scratch = [UInt8](repeating: 0, count: dk_int8_conv_scratch_size(&shape))
        var y = [UInt8](repeating: 0, count: p * q * outs)
        let status = offset.withUnsafeBufferPointer { o in scale.withUnsafeBufferPointer { s in bias.withUnsafeBufferPointer { b in
            var e = dk_int8_epilogue(offset: o.baseAddress, scale: s.baseAddress, bias: b.baseAddress, zero_point: 3, relu: 1)
            return dk_int8_conv2d_level(Int32(level), &shape, image, packed, &e, &y, &scratch)
        } } }
        #expect(status == 0)
        var expected = [UInt8](repeating: 0, count: p * q * outs)
        for oy in 0..<p { for ox in 0..<q { for o in 0..<outs {
            var acc: Int32 = 0
            for ky in 0..<kh { for kx in 0..<kw { for ch in 0..<c {
                acc += (Int32(image[(oy * stride + ky) * rowStride + (ox * stride + kx) * c + ch]) - zeroIn) * Int32(weight[((o * kh + ky) * kw + kx) * c + ch])
            } } }
            let v = (Float(acc) * 0.01 + Float(o)).rounded(.toNearestOrEven)
            expected[(oy * q + ox) * outs + o] = UInt8(Swift.min(255, Swift.max(3, Int32(v) + 3)))
        } } }
        #expect(y == expected, "level \(level): \(zip(y, expected).filter { $0 != $1 }.count) of \(y.count) bytes differ")
    }

    @Test func weightsQuantizePerChannelWithinHalfAStep() {
        let w = Tensor.testNormal([5, 3, 2, 2], seed: 3, requiresGrad: false)
        w.data[0] = 0; for j in 0..<12 { w.data[12 + j] = 0 }  // an all-zero channel keeps scale 1
        let q = QuantizedWeight(quantizing: w)
        #expect(q.scales.count == 5 && q.values.count == 60 && q.scales[1] == 1)
        #expect(q.values.allSatisfy { $0 >= -127 })
        for o in [0, 2, 3, 4] { #expect(q.values[(o * 12)..<(o * 12 + 12)].map { Swift.abs(Int($0)) }.max() == 127, "channel \(o) uses the full range") }
        let back = q.dequantized
        for i in 0..<60 { #expect(Swift.abs(back.data[i] - w.data[i]) <= q.scales[i / 12] / 2 * 1.0001) }
    }

    @Test func activationRangesIncludeZero() {
        let relu = ActivationQuantization(low: 0, high: 6)
        #expect(relu.zeroPoint == 0 && relu.scale == 6 / 255)
        let positive = ActivationQuantization(low: 2, high: 4)  // widened down to 0
        #expect(positive.zeroPoint == 0 && positive.scale == 4 / 255)
        let signed = ActivationQuantization(low: -1, high: 3)
        #expect(signed.zeroPoint == 64)  // 1 / (4/255) = 63.75
        let empty = ActivationQuantization(low: 0, high: 0)
        #expect(empty.scale == 1 / 255 && empty.zeroPoint == 0)
    }

    /// A CNN with batch norm, padding, strides and pooling of every kind, and an MLP: the int8
    /// plan's logits against the float model's, on inputs like the calibration samples.
    static func models() throws -> [(String, Module, [Int])] {
        var g = SeededGenerator(seed: 21)
        let cnn = Sequential([
            Conv2d(2, 12, kernel: 3, padding: 1, generator: &g), BatchNorm2d(12), ReLU(), MaxPool2d(2),
            Conv2d(12, 20, kernel: 3, stride: 2, padding: 1, generator: &g), ReLU(), AvgPool2d(2, stride: 1, padding: 1),
            Conv2d(20, 24, kernel: 1, generator: &g), ReLU(), GlobalAvgPool2d(), Dropout(0.2),
            Linear(24, 30, generator: &g), ReLU(), Linear(30, 7, generator: &g),
        ])
        setPatternWeights(cnn)
        return [("lenet5", try ModelZoo.build("lenet5", seed: 4), [1, 28, 28]), ("cnn", cnn, [2, 14, 13]),
                ("mlp", try ModelZoo.build("mlp:50-40-33-6", inputShape: [50], seed: 5), [50])]
    }

    @Test func planFollowsTheFloatModel() throws {
        for (name, model, shape) in try Self.models() {
            model.eval()
            let samples = Tensor.testUniform([300] + shape, seed: 9, low: -1, high: 1, requiresGrad: false)
            let floatLogits = withNoGrad { model(samples) }
            let labels = floatLogits.argmaxLastAxis()
            let info = SavedModelDescription(spec: name, inputShape: shape, numClasses: floatLogits.shape[1], extra: [:])
            let (student, calibrations) = try Quantizer.quantize(model, info: info, samples: samples, labels: labels)
            #expect(calibrations.map(\.method) == CalibrationMethod.allCases)
            #expect(student.calibration == calibrations.max { $0.accuracy < $1.accuracy || ($0.accuracy == $1.accuracy && $1.method == .minMax) }!.method)
            let x = Tensor.testUniform([37] + shape, seed: 10, low: -1, high: 1, requiresGrad: false)
            let expected = withNoGrad { model(x) }, got = try QuantizedPlan(student)(x)
            let range = expected.scalars.map(Swift.abs).max()!
            let worst = zip(got.scalars, expected.scalars).map { Swift.abs($0 - $1) }.max()!
            #expect(worst < 0.08 * range, "\(name): int8 logits differ by \(worst), logits span ±\(range)")
            let agree = zip(got.argmaxLastAxis(), expected.argmaxLastAxis()).filter { $0 == $1 }.count
            #expect(agree >= 33, "\(name): int8 agrees with float on \(agree) of 37 predictions")
            // Batch 1 and split batches give the same rows.
            let one = try QuantizedPlan(student)(x.slice(axis: 0, start: 5, length: 1))
            #expect(one.scalars == Array(got.scalars[(5 * got.shape[1])..<(6 * got.shape[1])]), "\(name): batch 1 differs from row 5 of batch 37")
            // The shape check knows an int8 student (teachers and cache-teacher rely on it).
            let wrapped = Sequential([try QuantizedModel(student)])
            #expect(try ModelShapes.check(wrapped, inputShape: shape, numClasses: floatLogits.shape[1]) == [floatLogits.shape[1]])
            #expect(throws: TensorError.self) { try ModelShapes.check(wrapped, inputShape: [shape.reduce(1, *) + 1]) }
        }
    }

    @Test func unsupportedLayersAreNamed() throws {
        var g = SeededGenerator(seed: 1)
        let model = Sequential([Flatten(), Linear(4, 3, generator: &g), Sigmoid(), Linear(3, 2, generator: &g)])
        let info = SavedModelDescription(spec: "x", inputShape: [4], numClasses: 2, extra: [:])
        #expect { try Quantizer.quantize(model, info: info, samples: Tensor.zeros([2, 4]), labels: [0, 1]) } throws: { error in
            (error as? TensorError)?.message.contains("layer 2 (Sigmoid)") == true
        }
        let mlp = Sequential([Flatten(), Linear(4, 2, generator: &g)])
        #expect { try Quantizer.quantize(mlp, info: info, samples: Tensor.zeros([2, 5]), labels: [0, 1]) } throws: { error in
            (error as? TensorError)?.message.contains("do not fit") == true
        }
    }

    /// Save, load through `SavedModel` (as every command does), same outputs; then broken files.
    @Test func fileRoundTripsAndMalformedFilesAreRefused() throws {
        let (_, model, shape) = try Self.models()[1]
        model.eval()
        let samples = Tensor.testUniform([50] + shape, seed: 2, low: -1, high: 1, requiresGrad: false)
        let labels = withNoGrad { model(samples) }.argmaxLastAxis()
        let info = SavedModelDescription(spec: "layers:[]", inputShape: shape, numClasses: 7, extra: ["task": "classification"])
        let student = try Quantizer.quantize(model, info: info, samples: samples, labels: labels).student
        let data = student.encoded()
        let back = try #require(try QuantizedStudent.decodeIfQuantized(data, name: "q.safetensors"))
        #expect(back == student)
        let (loaded, loadedInfo) = try SavedModel.decode(data, name: "q.safetensors")
        #expect(loadedInfo.spec == "layers:[]" && loadedInfo.inputShape == shape && loadedInfo.extra["task"] == "classification")
        #expect(loaded(samples).scalars == (try QuantizedPlan(student))(samples).scalars)
        // A float model's file is not an int8 one.
        #expect(try QuantizedStudent.decodeIfQuantized(Safetensors.encode(["w": Tensor.zeros([2])], metadata: ["distillkit.spec": "mlp:2-2"]), name: "f") == nil)
        // A run folder stands for its best.safetensors; one without it is named as such.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-run-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        expectTensorError(["is a folder without best.safetensors"]) { _ = try SavedModel.load(folder) }
        let mlp = try ModelZoo.build("mlp:3-2", inputShape: [3], numClasses: 2)
        try SavedModel(spec: "mlp:3-2", inputShape: [3], numClasses: 2).save(mlp, to: folder.appendingPathComponent("best.safetensors"))
        #expect(try SavedModel.load(folder).info.spec == "mlp:3-2")
        // A layer whose int32 sums could wrap (more than 66,311 products of 255 · 127) is refused.
        var g = SeededGenerator(seed: 4)
        let wide = QuantizedPlan.maxProductsPerSum + 1
        let wideModel = Sequential([Linear(wide, 2, generator: &g)])
        let wideInfo = SavedModelDescription(spec: "mlp:\(wide)-2", inputShape: [wide], numClasses: 2, extra: [:])
        expectTensorError(["linear layer [2, \(wide)]", "more than the 66311", "keep this model in float32"]) {
            _ = try Quantizer.quantize(wideModel, info: wideInfo, samples: Tensor.zeros([2, wide]), labels: [0, 1])
        }
        // A run's checkpoint is named as such, with the run's model files to use instead.
        let checkpoint = Safetensors.encode(["student.0.weight": Tensor.zeros([2])], metadata: [SavedModel.checkpointKey: "3"])
        expectTensorError(["runs/a/checkpoint.safetensors", "training checkpoint", "runs/a/best.safetensors"]) {
            _ = try SavedModel.decode(checkpoint, name: "runs/a/checkpoint.safetensors")
        }

        func refused(_ bytes: Data, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(sourceLocation: sourceLocation) { try SavedModel.decode(bytes, name: "bad.safetensors") } throws: { error in
                let message = (error as? TensorError)?.message ?? ""
                return message.contains("bad.safetensors") && message.contains(fragment)
            }
        }
        func edited(_ transform: (inout QuantizedStudent) -> Void) -> Data { var s = student; transform(&s); return s.encoded() }
        refused(data.prefix(data.count - 3), "data_offsets")
        refused(edited { $0.input.zeroPoint = 300 }, "zero point")
        refused(edited { $0.input.scale = -1 }, "input.scale")
        refused(edited { s in
            if case .linear(var w, let b, let r, let o) = s.layers[6] { w.scales[0] = .infinity; s.layers[6] = .linear(weight: w, bias: b, relu: r, output: o) }
        }, "weight_scale")
        refused(edited { s in s.layers.remove(at: 6) }, "does not take")  // 24 features into a 30-input layer
        refused(edited { s in s.info.inputShape = [2, 1, 1] }, "larger than")
        refused(edited { s in s.info.numClasses += 1 }, "num_classes says")
        #expect(String(decoding: data, as: UTF8.self).contains("\"dtype\":\"I8\""), "weights are stored as I8")
        var wrongMarker = data
        if let range = wrongMarker.range(of: Data("\"int8\"".utf8)) { wrongMarker.replaceSubrange(range, with: Data("\"int4\"".utf8)) }
        refused(wrongMarker, "int4")
    }
}
