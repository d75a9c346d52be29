import DistillNN
import DistillTestSupport
import DistillTensor
import Foundation
import Testing
@testable import DistillExport

/// A layer no format knows.
final class Doubler: Module { override func forward(_ x: Tensor) -> Tensor { x * 2 } }

/// Students with every lowered step in them, random batch-norm statistics so folding matters.
enum Students {
    /// A CNN [2, 7, 7] → 5 with every int8 layer kind: a convolution whose padding is TFLite's
    /// SAME, one that needs an explicit PAD, a padded max pooling, a padded average pooling, batch
    /// norm (with random statistics) and dense layers.
    static func everyInt8Layer(_ g: inout SeededGenerator) -> Sequential {
        let cnn = Sequential([
            Conv2d(2, 6, kernel: 3, padding: 1, generator: &g), BatchNorm2d(6), ReLU(), MaxPool2d(3, stride: 2, padding: 1),
            Conv2d(6, 8, kernel: 3, stride: 2, padding: 1, generator: &g), ReLU(), AvgPool2d(2, stride: 1, padding: 1),
            Flatten(), Linear(8 * 3 * 3, 16, generator: &g), ReLU(), Linear(16, 5, generator: &g),
        ])
        randomizeStatistics(cnn, seed: 13)
        return cnn
    }

    static func mixed() -> Sequential {
        var g = SeededGenerator(seed: 7)
        let model = Sequential([
            Conv2d(2, 6, kernel: 3, padding: 1, generator: &g), BatchNorm2d(6), ReLU(), MaxPool2d(2),
            Conv2d(6, 6, kernel: 3, stride: 2, padding: 1, groups: 6, generator: &g), GELU(),
            Conv2d(6, 8, kernel: 3, padding: 2, dilation: 2, generator: &g), Tanh(),
            AvgPool2d(3, stride: 1, padding: 1), MaxPool2d(3, stride: 2, padding: 1), Flatten(),
            Linear(8, 12, generator: &g), BatchNorm1d(12), LeakyReLU(slope: 0.2), Dropout(0.3),
            Linear(12, 5, generator: &g), Sigmoid(),
        ])
        randomizeStatistics(model, seed: 8)
        return model
    }

    static func zoo(_ spec: String, inputShape: [Int] = [1, 12, 12]) throws -> Sequential {
        let model = try ModelZoo.build(spec, inputShape: inputShape, numClasses: 4, seed: 3)
        randomizeStatistics(model, seed: 4)
        return model
    }

    static func randomizeStatistics(_ model: Module, seed: UInt64) {
        var g = SeededGenerator(seed: seed)
        for (_, module) in model.namedModules() {
            guard let bn = module as? BatchNorm else { continue }
            for i in 0..<bn.weight.count {
                bn.runningMean.data[i] = Float.random(in: -0.5...0.5, using: &g)
                bn.runningVar.data[i] = Float.random(in: 0.5...2, using: &g)
                bn.weight.data[i] = Float.random(in: 0.5...1.5, using: &g)
                bn.bias.data[i] = Float.random(in: -0.3...0.3, using: &g)
            }
        }
        model.eval()
    }

    static func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

@Suite struct LoweringTests {
    @Test func foldedStepsGiveTheModelsOutputs() throws {
        for (model, shape) in [(Students.mixed(), [2, 9, 9]), (try Students.zoo("resnet8"), [1, 12, 12]), (try Students.zoo("mobilenet-tiny"), [1, 12, 12])] {
            let graph = try ExportGraph.lower(model, inputShape: shape, format: "test")
            let x = Tensor.testNormal([3] + shape, seed: 11, requiresGrad: false)
            let want = withNoGrad { model(x) }, got = graph.run(x)
            #expect(got.shape == want.shape)
            let difference = zip(want.scalars, got.scalars).map { abs($0 - $1) }.max() ?? .infinity
            #expect(difference < 1e-5)
            // Every batch norm here follows a convolution or linear layer: none is left as its own step.
            #expect(!graph.nodes.contains { if case .affine = $0.operation { return true } else { return false } })
        }
    }

    @Test func standardisationAndTargetScalingAreSteps() throws {
        var g = SeededGenerator(seed: 1)
        let model = Sequential([Linear(3, 1, generator: &g)])
        let p = ExportPreprocessing(inputMean: [10, -2, 0.5], inputStd: [4, 1e-9, 0.25], outputScale: 3, outputShift: -7)
        let graph = try ExportGraph.lower(model, inputShape: [3], preprocessing: p, format: "test")
        #expect(graph.nodes.map(\.layerType) == ["Standardize", "Linear", "TargetScaling"])
        let x = Tensor(shape: [1, 3], scalars: [14, 5, 1])
        // A feature whose std is below 1e-6 is only centred, as FeatureStatistics.apply does.
        let standardized = Tensor(shape: [1, 3], scalars: [(14 - 10) / 4, 5 + 2, (1 - 0.5) / 0.25])
        let want = withNoGrad { model(standardized) }.scalars[0] * 3 - 7
        #expect(abs(graph.run(x).scalars[0] - want) < 1e-5)
    }

    @Test func aLayerNoFormatKnowsIsRefusedNamingLayerAndFormat() throws {
        var g = SeededGenerator(seed: 2)
        let model = Sequential([Flatten(), Doubler(), Linear(4, 2, generator: &g)])
        for format in [CSourceExport.format, TFLiteExport.format, CoreMLExport.format] {
            let error = try #require(throws: ExportError.self) { try ExportGraph.lower(model, inputShape: [4], format: format) }
            #expect(error.format == format)
            #expect(error.message.hasPrefix("layer '1' (Doubler) has no \(format) equivalent"))
        }
        let unflattened = Sequential([Linear(4, 2, generator: &g)])
        let error = try #require(throws: ExportError.self) { try ExportGraph.lower(unflattened, inputShape: [1, 2, 2], format: "C") }
        #expect(error.description.contains("layer '0' (Linear) takes a [1, 2, 2] value"))
    }
}

@Suite struct FileWritingTests {
    @Test func tfliteRefusesAGroupedConvolutionBeforeWritingAnything() throws {
        var g = SeededGenerator(seed: 3)
        let model = Sequential([Conv2d(4, 8, kernel: 3, groups: 2, generator: &g), Flatten(), Linear(8 * 4 * 4, 3, generator: &g)])
        let graph = try ExportGraph.lower(model, inputShape: [4, 6, 6], format: TFLiteExport.format)
        let folder = try Students.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("student.tflite")
        try Data("previous export".utf8).write(to: file)
        let error = try #require(throws: ExportError.self) { try TFLiteExport.write(graph, to: file) }
        #expect(error.description == "TFLite export: layer '0' (Conv2d) is a grouped convolution (2 groups of 2 channels); TFLite has builtins for plain and depthwise convolutions only")
        #expect(try Data(contentsOf: file) == Data("previous export".utf8))
        // The same layer is fine for C and Core ML, which have grouped convolutions.
        _ = try CSourceExport.generate(graph)
        _ = try CoreMLExport.serialize(graph)
    }

    @Test func anExistingFileIsReplacedWholeWithNoTemporaryLeft() throws {
        let graph = try ExportGraph.lower(try Students.zoo("cnn-tiny"), inputShape: [1, 12, 12], format: TFLiteExport.format)
        let folder = try Students.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let files = ["student.tflite", "student.mlmodel", "student.c"].map { folder.appendingPathComponent($0) }
        for file in files + [folder.appendingPathComponent("student.h")] { try Data(repeating: 0xAB, count: 1 << 20).write(to: file) }
        try TFLiteExport.write(graph, to: files[0])
        try CoreMLExport.write(graph, to: files[1])
        _ = try CSourceExport.write(graph, to: files[2])
        #expect(try Data(contentsOf: files[0]) == TFLiteExport.serialize(graph))
        #expect(try Data(contentsOf: files[1]) == CoreMLExport.serialize(graph))
        let (source, header) = try CSourceExport.generate(graph, options: .init(headerName: "student.h"))
        #expect(try String(contentsOf: files[2], encoding: .utf8) == source)
        #expect(try String(contentsOf: folder.appendingPathComponent("student.h"), encoding: .utf8) == header)
        let left = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(left == ["student.c", "student.h", "student.mlmodel", "student.tflite"])
    }

    @Test func optionsAreValidated() throws {
        let graph = try ExportGraph.lower(try Students.zoo("cnn-tiny"), inputShape: [1, 12, 12], format: "C")
        for bad in ["", "9lives", "my-model", "naïve"] {
            #expect(throws: ExportError.self) { try CSourceExport.generate(graph, options: .init(prefix: bad)) }
        }
        #expect(throws: ExportError.self) { try CSourceExport.generate(graph, options: .init(classNames: ["a"])) }
        #expect(throws: ExportError.self) { try TFLiteExport.serialize(graph, classNames: ["a", "b"]) }
        #expect(throws: ExportError.self) { try CoreMLExport.serialize(graph, options: .init(classNames: ["a", "b", "c"])) }
    }
}

/// Compiles the C export with the system compiler and runs it: skipped when there is no `cc`.
@Suite struct CSourceTests {
    static let compiler: String? = ["/usr/bin/cc", "/usr/local/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static func run(_ arguments: [String], in folder: URL) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.currentDirectoryURL = folder
        // Output to a file, not a pipe: reading a pipe through FileHandle traps on EINTR on a busy machine.
        let log = folder.appendingPathComponent("process-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        defer { try? FileManager.default.removeItem(at: log) }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        process.waitUntilExit()
        try handle.close()
        return (process.terminationStatus, String(decoding: try Data(contentsOf: log), as: UTF8.self))
    }

    /// A driver that reads `count` inputs (hexadecimal floats, one per line) from stdin and prints the outputs the same way.
    static let driver = """
        #include <stdio.h>
        #include "student.h"
        int main(void) {
            static float x[STUDENT_INPUT_SIZE], y[STUDENT_OUTPUT_SIZE];
            int count, n, i;
            if (scanf("%d", &count) != 1) return 2;
            for (n = 0; n < count; ++n) {
                for (i = 0; i < STUDENT_INPUT_SIZE; ++i) if (scanf("%a", &x[i]) != 1) return 3;
                printf("%d", student_predict(x, y));
                for (i = 0; i < STUDENT_OUTPUT_SIZE; ++i) printf(" %a", y[i]);
                printf("\\n");
            }
            return student_predict(0, y) == -1 ? 0 : 4;
        }
        """

    @Test(.enabled(if: compiler != nil, "no C compiler (cc) on this machine"))
    func compilesWithWarningsAsErrorsAndMatchesTheModel() throws {
        let cases: [(String, Sequential, [Int], ExportPreprocessing)] = [
            ("mixed", Students.mixed(), [2, 9, 9], .init()),
            ("resnet8", try Students.zoo("resnet8"), [1, 12, 12], .init()),
            ("mobilenet", try Students.zoo("mobilenet-tiny"), [1, 12, 12], .init()),
            ("tabular", try ModelZoo.build("mlp:3-8-2"), [3], .init(inputMean: [100, -3, 0], inputStd: [20, 0.5, 1])),
        ]
        for (name, model, shape, preprocessing) in cases {
            let folder = try Students.temporaryFolder()
            defer { try? FileManager.default.removeItem(at: folder) }
            let graph = try ExportGraph.lower(model, inputShape: shape, preprocessing: preprocessing, format: CSourceExport.format)
            _ = try CSourceExport.write(graph, to: folder.appendingPathComponent("student.c"), options: .init(classNames: nil))
            try Data(Self.driver.utf8).write(to: folder.appendingPathComponent("driver.c"))
            let build = try Self.run([Self.compiler!, "-O2", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "student.c", "driver.c", "-o", "driver", "-lm"], in: folder)
            #expect(build.status == 0, "\(name): \(build.output)")
            guard build.status == 0 else { continue }

            let x = Tensor.testNormal([3] + shape, seed: 5, scale: preprocessing.inputMean == nil ? 1 : 30, shift: 0, requiresGrad: false)
            // The model itself, or (with preprocessing, which lives outside a DistillKit model) the lowered steps.
            let want = preprocessing.inputMean == nil ? withNoGrad { model(x) } : graph.run(x)
            var input = "3\n"
            for v in x.scalars { input += String(format: "%a\n", Double(v)) }
            try Data(input.utf8).write(to: folder.appendingPathComponent("input.txt"))
            let result = try Self.run(["/bin/sh", "-c", "./driver < input.txt"], in: folder)
            #expect(result.status == 0, "\(name): \(result.output)")
            let rows = result.output.split(separator: "\n")
            #expect(rows.count == 3)
            let outputs = want.shape[1]
            for (r, row) in rows.enumerated() {
                let fields = row.split(separator: " ")
                let values = fields.dropFirst().compactMap { Double(String($0)).map(Float.init) }
                #expect(values.count == outputs)
                let expected = Array(want.scalars[(r * outputs)..<((r + 1) * outputs)])
                let difference = zip(values, expected).map { abs($0 - $1) }.max() ?? .infinity
                #expect(difference <= 1e-5, "\(name) row \(r): max difference \(difference)")
                let best = expected.indices.max { expected[$0] < expected[$1] }!
                #expect(Int(fields.first ?? "") == best)
            }
        }
    }

    /// An int8 student in C gives the very floats DistillKit's int8 path gives (integer sums, the same requantisation).
    @Test(.enabled(if: compiler != nil, "no C compiler (cc) on this machine"))
    func int8CompilesAndMatchesDistillKitsIntegerPathBitForBit() throws {
        var g = SeededGenerator(seed: 12)
        let cnn = Students.everyInt8Layer(&g)
        let pooled = Sequential([Conv2d(1, 4, kernel: 3, generator: &g), ReLU(), GlobalAvgPool2d(), Linear(4, 3, generator: &g)])
        let cases: [(String, Module, [Int], Int, ExportPreprocessing)] = [
            ("cnn", cnn, [2, 7, 7], 5, .init()),
            ("pooled", pooled, [1, 6, 6], 3, .init()),
            ("tabular", try ModelZoo.build("mlp:3-8-2", seed: 5), [3], 2, .init(inputMean: [100, -3, 0], inputStd: [20, 0.5, 1e-9])),
            ("one-layer", try ModelZoo.build("mlp:3-2", seed: 6), [3], 2, .init()),  // no byte outputs: its helpers still build
        ]
        for (name, model, shape, classes, preprocessing) in cases {
            let samples = Tensor.testNormal([64] + shape, seed: 21, requiresGrad: false)
            let info = SavedModelDescription(spec: name, inputShape: shape, numClasses: classes, extra: [:])
            let (student, _) = try Quantizer.quantize(model, info: info, samples: samples, labels: (0..<64).map { $0 % classes })
            let folder = try Students.temporaryFolder()
            defer { try? FileManager.default.removeItem(at: folder) }
            _ = try CSourceExport.write(student, preprocessing: preprocessing, to: folder.appendingPathComponent("student.c"))
            try Data(Self.driver.utf8).write(to: folder.appendingPathComponent("driver.c"))
            let build = try Self.run([Self.compiler!, "-O2", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "student.c", "driver.c", "-o", "driver", "-lm"], in: folder)
            #expect(build.status == 0, "\(name): \(build.output)")
            guard build.status == 0 else { continue }

            // Raw inputs for the C file; DistillKit's int8 path takes them standardised, as `distill eval` gives them.
            let raw = Tensor.testNormal([4] + shape, seed: 22, scale: preprocessing.inputMean == nil ? 1 : 30, requiresGrad: false)
            var standardized = raw
            if let mean = preprocessing.inputMean, let std = preprocessing.inputStd {
                let scale = std.map { $0 < 1e-6 ? 1 : 1 / $0 }
                standardized = Tensor(shape: raw.shape, scalars: raw.scalars.enumerated().map { i, v in (v - mean[i % mean.count]) * scale[i % mean.count] })
            }
            let want = try QuantizedModel(student)(standardized)
            var input = "4\n"
            for v in raw.scalars { input += String(format: "%a\n", Double(v)) }
            try Data(input.utf8).write(to: folder.appendingPathComponent("input.txt"))
            let result = try Self.run(["/bin/sh", "-c", "./driver < input.txt"], in: folder)
            #expect(result.status == 0, "\(name): \(result.output)")
            let got = result.output.split(separator: "\n").flatMap { $0.split(separator: " ").dropFirst().compactMap { Double(String($0)).map(Float.init) } }
            #expect(got.map(\.bitPattern) == want.scalars.map(\.bitPattern), "\(name): C \(got.prefix(6)) vs DistillKit \(want.scalars.prefix(6))")
        }
    }

    @Test func classNamesAreEscapedAndWeightsExact() throws {
        let graph = try ExportGraph.lower(try Students.zoo("cnn-tiny"), inputShape: [1, 12, 12], format: "C")
        let names = ["a \"quoted\" name", "back\\slash", "what??/", "naïve"]
        let (source, header) = try CSourceExport.generate(graph, options: .init(prefix: "digits", classNames: names))
        #expect(source.contains(#""a \"quoted\" name""#) && source.contains(#""back\\slash""#))
        #expect(source.contains(#""what\077\077/""#) && source.contains(#""na\303\257ve""#))
        #expect(header.contains("int digits_predict(const float *input, float *output);") && header.contains("#define DIGITS_OUTPUT_SIZE 4"))
        #expect(!source.contains("malloc"))
        #expect(CSourceExport.floatLiteral(0.1) == "0x1.99999ap-4f" && CSourceExport.floatLiteral(-0.0) == "-0.0f")
    }

    @Test func workspaceReusesDeadBuffers() throws {
        let graph = try ExportGraph.lower(try Students.zoo("resnet8"), inputShape: [1, 12, 12], format: "C")
        let plan = WorkspacePlan(graph)
        let largest = graph.shapes.map { $0.reduce(1, *) }.max()!
        let everything = graph.shapes.dropFirst().map { $0.reduce(1, *) }.reduce(0, +)
        // Residual blocks keep at most a few values alive at once: far less than one buffer per value.
        #expect(plan.size >= 2 * largest && plan.size < everything / 3)
    }
}

@Suite struct FlatBufferTests {
    @Test func tablesVectorsAndStringsRoundTripAligned() throws {
        let weights = Data((0..<37).map { UInt8($0) })
        let root = FlatObject.table([
            .uint32(3), nil, .object(.string("héllo")), .int8(-5), .float32(2.5), .int64(-1 << 40), .bool(true),
            .object(.tables([.table([.int32(7)]), .table([]), .table([nil, .object(.int32s([1, -2, 3]))])])),
            .object(.scalars(weights, elementSize: 1, alignment: 16)),
        ])
        let data = FlatBufferWriter.serialize(root: root, identifier: "TEST")
        #expect(String(decoding: data[4..<8], as: UTF8.self) == "TEST")
        let reader = FlatBufferReader(data, source: "test")
        let table = try reader.root()
        #expect(table.position % 8 == 0)  // holds an int64
        #expect(try table.scalar(0, UInt32.self) == 3)
        #expect(try table.scalar(1, UInt32.self, default: 42) == 42)
        #expect(try table.string(2) == "héllo")
        #expect(try table.scalar(3, Int8.self) == -5)
        #expect(Float(bitPattern: try table.scalar(4, UInt32.self)) == 2.5)
        #expect(try table.scalar(5, Int64.self) == -1 << 40)
        #expect(try table.scalar(6, UInt8.self) == 1)
        let children = try table.tables(7)
        #expect(children.count == 3)
        #expect(try children[0].scalar(0, Int32.self) == 7)
        #expect(children[1].fieldCount == 0)
        #expect(try children[2].int32s(1) == [1, -2, 3])
        let (start, count) = try #require(try table.vector(8, elementSize: 1))
        #expect(count == 37 && start % 16 == 0)
        #expect(Array(try table.bytes(8)) == [UInt8](weights))
        #expect(try table.scalar(20, UInt32.self, default: 9) == 9)  // past the vtable: the default
    }

    @Test func tfliteFileDescribesTheModel() throws {
        let model = try Students.zoo("lenet5", inputShape: [1, 16, 16])
        let graph = try ExportGraph.lower(model, inputShape: [1, 16, 16], format: TFLiteExport.format)
        let data = try TFLiteExport.serialize(graph, classNames: ["w", "x", "y", "z"], description: "lenet")
        let summary = try TFLiteSummary(data, source: "lenet.tflite")
        #expect(summary.version == 3 && summary.description == "lenet")
        #expect(summary.inputs.map(\.shape) == [[1, 16, 16, 1]] && summary.outputs.map(\.shape) == [[1, 4]])
        #expect(summary.operators.map(\.name) == ["CONV_2D", "RELU", "MAX_POOL_2D", "TRANSPOSE", "RESHAPE", "FULLY_CONNECTED"])
        #expect(summary.operators.first { $0.name == "FULLY_CONNECTED" }?.count == 3)
        #expect(summary.parameters == model.parameterCount)
        let metadata = try #require(summary.metadata["distillkit"])
        #expect(metadata.contains(#""class_names":["w","x","y","z"]"#) && metadata.contains(#""input_layout":"NHWC""#))
    }

    @Test func aCorruptTFLiteFileIsAnErrorNotACrash() throws {
        let graph = try ExportGraph.lower(try Students.zoo("cnn-tiny"), inputShape: [1, 12, 12], format: TFLiteExport.format)
        let data = try TFLiteExport.serialize(graph)
        var g = SeededGenerator(seed: 9)
        var failures = 0
        for length in [0, 7, 8, 40, data.count / 3, data.count / 2, data.count - 200] {
            do { _ = try TFLiteSummary(data.prefix(length), source: "cut.tflite") } catch let error as ExportError {
                failures += 1
                #expect(error.message.contains("cut.tflite"))
            }
        }
        #expect(failures == 7)
        for _ in 0..<200 {
            var corrupt = [UInt8](data)
            for _ in 0..<4 { corrupt[Int.random(in: 0..<min(corrupt.count, 2048), using: &g)] = UInt8.random(in: 0...255, using: &g) }
            _ = try? TFLiteSummary(Data(corrupt), source: "corrupt.tflite")  // must return or throw, never trap
        }
    }
}

@Suite struct CoreMLTests {
    @Test func classifierDescribesItself() throws {
        let model = try Students.zoo("resnet8")
        let graph = try ExportGraph.lower(model, inputShape: [1, 12, 12], format: CoreMLExport.format)
        let data = try CoreMLExport.serialize(graph, options: .init(classNames: ["a", "b", "c", "d"], metadata: ["k": "v"]))
        let summary = try CoreMLSummary(data, source: "resnet8.mlmodel")
        #expect(summary.specificationVersion == 4 && summary.kind == "neuralNetworkClassifier")
        #expect(summary.classLabels == ["a", "b", "c", "d"])
        #expect(summary.inputs.map(\.name) == ["input"] && summary.inputs[0].shape == [1, 12, 12])
        #expect(summary.outputs.map(\.name) == ["classLabel", "classProbability", "logits"])
        #expect(summary.outputs.map(\.type) == ["string", "dictionary", "float32"])
        let layers = Dictionary(uniqueKeysWithValues: summary.layers.map { ($0.name, $0.count) })
        #expect(layers["convolution"] == 9 && layers["add"] == 3 && layers["softmax"] == 1 && layers["scale"] == nil)
        #expect(summary.parameters == graph.parameterCount)
        #expect(summary.metadata["k"] == "v" && summary.metadata["author"] == "DistillKit")
        #expect((summary.flops ?? 0) > 0)
    }

    @Test func regressorHasOnePrediction() throws {
        var g = SeededGenerator(seed: 4)
        let graph = try ExportGraph.lower(Sequential([Linear(3, 1, generator: &g)]), inputShape: [3],
                                          preprocessing: .init(inputMean: [1, 2, 3], inputStd: [1, 1, 1], outputScale: 2, outputShift: 5), format: CoreMLExport.format)
        let summary = try CoreMLSummary(try CoreMLExport.serialize(graph, options: .init(isRegressor: true)), source: "r.mlmodel")
        #expect(summary.kind == "neuralNetworkRegressor" && summary.outputs.map(\.name) == ["prediction"])
        // Standardisation (bias, scale), the linear layer, the target scaling (scale): counts by kind in first-use order.
        #expect(summary.layers.map { "\($0.name) \($0.count)" } == ["bias 1", "scale 2", "innerProduct 1"])
    }

    @Test func aCorruptCoreMLFileIsAnError() throws {
        let graph = try ExportGraph.lower(try Students.zoo("cnn-tiny"), inputShape: [1, 12, 12], format: CoreMLExport.format)
        let data = try CoreMLExport.serialize(graph)
        for length in [1, 3, 10, data.count / 2] {
            #expect(throws: ExportError.self) { try CoreMLSummary(data.prefix(length), source: "cut.mlmodel") }
        }
    }
}
