import DistillNN
import DistillTensor
import Foundation
import Testing

/// Model descriptions checked as a whole against the data they will see (ModelShapes), and the
/// checked size arithmetic every size from a file goes through.
@Suite("Model shapes and checked sizes")
struct ModelShapesTests {
    static func layers(_ json: String) throws -> Sequential {
        var g = SeededGenerator(seed: 0)
        let list = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [Any]
        return try LayerList.build(list, generator: &g)
    }

    @Test("every preset gives one output per class for the images it is built for")
    func presetsFitTheirImages() throws {
        for spec in ModelZoo.presets {
            for shape in [[1, 28, 28], [3, 32, 32]] {
                let model = try ModelZoo.build(spec, inputShape: shape, numClasses: 7)
                #expect(try ModelShapes.check(model, inputShape: shape, numClasses: 7) == [7], "\(spec) on \(shape)")
                // The computed shape is what the model really gives.
                #expect(withNoGrad { model(Tensor.zeros([2] + shape)) }.shape == [2, 7])
            }
        }
    }

    static let misfits: [(layers: String, input: [Int], fragments: [String])] = [
        (#"["flatten", {"linear": {"in": 5, "out": 3}}]"#, [1, 28, 28], ["layer 1 (linear 5→3)", "takes 5 features, gets 784"]),
        (#"[{"linear": {"in": 784, "out": 3}}]"#, [1, 28, 28], ["add a flatten layer"]),
        (#"[{"maxpool2d": {"kernel": 9}}]"#, [1, 8, 8], ["kernel 9", "larger than the input extent 8"]),
        (#"[{"avgpool2d": {"kernel": 2, "padding": 2}}]"#, [1, 8, 8], ["more than half the kernel"]),
        (#"[{"conv2d": {"in": 3, "out": 2, "kernel": 3}}]"#, [1, 8, 8], ["takes 3 channels, gets 1"]),
        (#"[{"conv2d": {"in": 1, "out": 2, "kernel": 3}}]"#, [64], ["takes images [C, H, W], gets shape [64]"]),
        (#"[{"conv2d": {"in": 1, "out": 2, "kernel": 3, "dilation": 16777216}}]"#, [1, 8, 8], ["larger than the input"]),
        (#"[{"batchnorm2d": {"features": 7}}]"#, [1, 8, 8], ["normalises 7 channels"]),
        (#"[{"residual": {"in": 4, "out": 4}}]"#, [1, 8, 8], ["takes 4 channels, gets 1"]),
        (#"["global_avgpool2d"]"#, [64], ["takes images"]),
        (#"["flatten", {"linear": {"in": 64, "out": 5}}]"#, [1, 8, 8], ["outputs of shape [5]", "3 classes"]),
    ]

    @Test("a layer list that does not fit its input is an error naming the layer", arguments: misfits)
    func misfitsAreNamed(_ c: (layers: String, input: [Int], fragments: [String])) throws {
        let model = try Self.layers(c.layers)
        expectTensorError(c.fragments) { try ModelShapes.check(model, inputShape: c.input, numClasses: 3, what: "m") }
    }

    @Test("pooling strides come from the list checked: zero or negative is an error, not a division by zero")
    func poolStrides() {
        for stride in [0, -1] {
            expectTensorError(["option 'stride' must be"]) { _ = try Self.layers(#"[{"maxpool2d": {"kernel": 2, "stride": \#(stride)}}]"#) }
        }
        var g = SeededGenerator(seed: 0)
        expectTensorError(["slope must be a finite number"]) { _ = try LayerList.build([["leaky_relu": ["slope": Double.infinity]]], generator: &g) }
    }

    @Test("example shapes: rank 1...4, extents 1...2^24, within the memory budget")
    func exampleShapes() {
        for shape in [[], [0], [-4], [4294967296, 4294967296, 4294967296], [1, 1, 1, 1, 4], [1 << 25]] {
            expectTensorError(["input shape"]) { try ModelShapes.checkExampleShape(shape, what: "m") }
        }
    }

    @Test("an MLP spec whose width is Int.max is an error, not an overflow trap")
    func hugeWidths() {
        for spec in ["mlp:9223372036854775807-10", "mlp:4-9223372036854775807", "mlp:4-4294967296-4294967296-3"] {
            expectTensorError(["'\(spec)'"]) { _ = try ModelZoo.build(spec) }
        }
    }

    @Test("NaN or infinite weights are named")
    func finiteWeights() throws {
        let model = try ModelZoo.build("mlp:4-3-2")
        try ModelShapes.checkFinite(model, what: "m")
        model.stateDict()["3.bias"]!.data[1] = .nan
        expectTensorError(["m: tensor '3.bias' holds nan at index 1"]) { try ModelShapes.checkFinite(model, what: "m") }
    }

    @Test("CheckedSize: negative or overflowing sizes are nil, a zero extent does not hide an overflow")
    func checkedSizes() {
        #expect(CheckedSize.product([2, 3, 4]) == 24)
        #expect(CheckedSize.product([Int]()) == 1)
        #expect(CheckedSize.product([0, 5]) == 0)
        #expect(CheckedSize.product([0, 1 << 62, 4]) == nil)
        #expect(CheckedSize.product([-1, 4]) == nil)
        #expect(CheckedSize.multiply(Int.max, 2) == nil)
        #expect(CheckedSize.add(Int.max, 1) == nil)
        #expect(CheckedSize.add(-1, 1) == nil)
    }

    @Test("MemoryBudget: byte counts with suffixes; overflow and over-budget sizes are refused naming the thing")
    func memoryBudget() throws {
        #expect(MemoryBudget.parseByteCount("512") == 512)
        #expect(MemoryBudget.parseByteCount("64k") == 64 << 10)
        #expect(MemoryBudget.parseByteCount("8G") == 8 << 30)
        #expect(MemoryBudget.parseByteCount("x") == nil)
        #expect(MemoryBudget.parseByteCount("99999999999999999999t") == nil)
        try MemoryBudget.check(bytes: 1024, for: "small")
        expectTensorError(["node 'c' output", "overflows"]) { try MemoryBudget.check(bytes: nil, for: "node 'c' output") }
        expectTensorError(["huge", "memory budget", "DISTILL_MAX_MEMORY"]) { try MemoryBudget.check(bytes: Int.max, for: "huge") }
        expectTensorError(["t: needs 1024.0 TiB"]) { try MemoryBudget.check(shape: [65536, 65536, 65536], for: "t") }
    }

    @Test("InputFile reads regular files only and says what the path is in words")
    func regularFilesOnly() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-inputfile-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let fifo = folder.appendingPathComponent("pipe")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        expectTensorError(["pipe", "FIFO"]) { _ = try InputFile.read(fifo, what: "model") }
        expectTensorError(["is a folder"]) { _ = try InputFile.read(folder, what: "model") }
        expectTensorError(["/dev/zero", "device"]) { _ = try InputFile.read(URL(fileURLWithPath: "/dev/zero"), what: "model") }
        expectTensorError(["no such file"]) { _ = try InputFile.read(folder.appendingPathComponent("absent"), what: "model") }
        let file = folder.appendingPathComponent("f")
        try Data([1, 2, 3]).write(to: file)
        #expect(try InputFile.read(file, what: "model") == Data([1, 2, 3]))
        expectTensorError(["more than the"]) { _ = try InputFile.read(file, what: "model", limit: 2) }
    }
}
