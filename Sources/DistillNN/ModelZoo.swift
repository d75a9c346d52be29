import DistillTensor
import Foundation

/// Builds models from short specs: `mlp:784-64-10` or a preset name. Presets are written for
/// images of `inputShape` ([C, H, W], 28×28 by default) and `numClasses` outputs.
///
/// | spec | what |
/// | --- | --- |
/// | `mlp:A-B-...-Z` | Flatten, then Linear layers A→B→…→Z with ReLU between |
/// | `cnn-small` | the bench teacher: conv3×3 32, pool, conv3×3 64, pool, FC 128, FC (421,642 params) |
/// | `cnn-tiny` | conv3×3 8, pool, conv3×3 16, pool, FC (9,098 params) |
/// | `lenet5` | LeCun et al. 1998: conv5×5 6, pool, conv5×5 16, pool, FC 120, 84 |
/// | `resnet8` | conv 16, three residual blocks (16, 32/2, 64/2), global pool, FC |
/// | `mobilenet-tiny` | conv 16, three depthwise-separable blocks (32/2, 64, 128/2), global pool, FC |
/// | `layers:[...]` | a JSON list of layers (see `LayerList`); YAML model files become this form |
public enum ModelZoo {
    public static let presets = ["cnn-small", "cnn-tiny", "lenet5", "resnet8", "mobilenet-tiny"]

    /// Most parameters a spec may ask for (2²⁸, 1 GiB of Float32). Specs come from files (a saved
    /// model's metadata, a YAML experiment), so a corrupt one must fail here rather than allocate
    /// terabytes; pass `maxParameters:` to `build` for a legitimately larger model.
    public static let maxParameters = 1 << 28
    /// Most classes (outputs) a model may have.
    public static let maxClasses = 1 << 24

    /// Throws unless `counts` (parameters per layer) sum to at most `limit`.
    static func checkBudget(_ counts: [Int], limit: Int, spec: String) throws {
        var total = 0
        for c in counts {
            let (t, overflow) = total.addingReportingOverflow(c)
            guard !overflow, c >= 0, t <= limit else {
                throw TensorError("model spec '\(spec.prefix(80))' needs more than \(limit) parameters (the maxParameters limit of ModelZoo.build; raise it if the model is real)")
            }
            total = t
        }
    }

    /// `cnn:A-B[-fcH]` as a layer list: two 3×3 convolutions (A, then B channels, padding 1), each
    /// followed by ReLU and 2×2 max-pooling, then a linear layer to the classes (through H hidden
    /// units and a ReLU with `hidden` > 0). The CNNs `distill fit` searches.
    public static func smallCNN(_ a: Int, _ b: Int, hidden: Int, inputShape: [Int], classes: Int) -> [Any] {
        let (c, h, w) = (inputShape[0], inputShape[1], inputShape[2])
        var layers: [Any] = [["conv2d": ["in": c, "out": a, "kernel": 3, "padding": 1]], "relu", ["maxpool2d": ["kernel": 2]],
                             ["conv2d": ["in": a, "out": b, "kernel": 3, "padding": 1]], "relu", ["maxpool2d": ["kernel": 2]], "flatten"]
        let flat = b * (h / 2 / 2) * (w / 2 / 2)
        if hidden > 0 { layers += [["linear": ["in": flat, "out": hidden]], "relu", ["linear": ["in": hidden, "out": classes]]] }
        else { layers.append(["linear": ["in": flat, "out": classes]]) }
        return layers
    }

    /// A new model with PyTorch-default initialisation drawn from `seed`.
    public static func build(_ spec: String, inputShape: [Int] = [1, 28, 28], numClasses: Int = 10, seed: UInt64 = 0,
                             maxParameters: Int = maxParameters) throws -> Sequential {
        var g = SeededGenerator(seed: seed)
        let spec = spec.trimmingCharacters(in: .whitespaces)
        guard numClasses >= 1 && numClasses <= maxClasses else { throw TensorError("model '\(spec.prefix(80))': \(numClasses) classes, expected 1...\(maxClasses)") }
        if spec.hasPrefix("mlp:") {
            let widths = spec.dropFirst(4).split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard widths.count >= 2, widths.allSatisfy({ ($0 ?? 0) > 0 }) else {
                throw TensorError("model spec '\(spec)': an MLP is written mlp:IN-HIDDEN-...-OUT with positive integers, e.g. mlp:784-64-10")
            }
            let w = widths.map { $0! }
            try checkBudget(try (0..<(w.count - 1)).map { i in
                guard let p = CheckedSize.add(w[i], 1).flatMap({ CheckedSize.multiply($0, w[i + 1]) }) else { throw TensorError("model spec '\(spec.prefix(80))': layer widths too large") }
                return p
            }, limit: maxParameters, spec: spec)
            var layers: [Module] = [Flatten()]
            for i in 0..<(w.count - 1) {
                layers.append(Linear(w[i], w[i + 1], generator: &g))
                if i < w.count - 2 { layers.append(ReLU()) }
            }
            return Sequential(layers)
        }
        if spec.hasPrefix("bag:") {
            // bag:VOCABULARY-BIGRAM_BUCKETS-DIMENSION-OUTPUTS, e.g. bag:30522-32768-64-384 (TokenBag).
            let sizes = spec.dropFirst(4).split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard sizes.count == 4, let v = sizes[0], let b = sizes[1], let d = sizes[2], let o = sizes[3],
                  v >= 2, b >= 0, d >= 1, o >= 1, v <= 1 << 24, b <= 1 << 24, d <= 1 << 16, o <= 1 << 16 else {
                throw TensorError("model spec '\(spec.prefix(80))': a token bag is written bag:VOCABULARY-BIGRAM_BUCKETS-DIMENSION-OUTPUTS, e.g. bag:30522-32768-64-384 (vocabulary and buckets up to 2^24, the others up to 65536)")
            }
            try checkBudget([(v + b) * d, (d + 1) * o], limit: maxParameters, spec: spec)
            return Sequential([TokenBag(vocabulary: v, bigramBuckets: b, dimension: d, outputs: o, generator: &g)])
        }
        if spec.hasPrefix("layers:") {
            guard let list = try? JSONSerialization.jsonObject(with: Data(spec.dropFirst(7).utf8)) as? [Any] else {
                throw TensorError("model spec 'layers:…' must be followed by a JSON list of layers")
            }
            return try LayerList.build(list, generator: &g, maxParameters: maxParameters)
        }
        guard inputShape.count == 3 else {
            throw TensorError("model '\(spec)' takes images [C, H, W]; the data has features of shape \(inputShape) (use an mlp: spec)")
        }
        if spec.hasPrefix("cnn:") {
            let parts = spec.dropFirst(4).split(separator: "-", omittingEmptySubsequences: false)
            let channels = parts.prefix(2).map { Int($0) }
            let hidden = parts.count == 3 && parts[2].hasPrefix("fc") ? Int(parts[2].dropFirst(2)) : parts.count == 2 ? 0 : nil
            guard channels.count == 2, let a = channels[0], let b = channels[1], let hidden, (1...4096).contains(a), (1...4096).contains(b),
                  (0...65536).contains(hidden) else {
                throw TensorError("model spec '\(spec.prefix(80))': a small CNN is written cnn:A-B or cnn:A-B-fcH (channels of its two convolutions, 1...4096, and an optional hidden layer), e.g. cnn:8-16")
            }
            guard inputShape[1] >= 4 && inputShape[2] >= 4 else {
                throw TensorError("model '\(spec)' pools twice by 2: it needs images of at least 4×4, the data has \(inputShape)")
            }
            return try LayerList.build(smallCNN(a, b, hidden: hidden, inputShape: inputShape, classes: numClasses), generator: &g, maxParameters: maxParameters)
        }
        let (c, h, w) = (inputShape[0], inputShape[1], inputShape[2])
        if presets.contains(spec) {
            let minimumSide = spec == "lenet5" ? 12 : 4
            guard c >= 1 && c <= 4096, h >= minimumSide && h <= 1 << 14, w >= minimumSide && w <= 1 << 14 else {
                throw TensorError("model '\(spec)' cannot take images of shape \(inputShape) (channels 1...4096, sides \(minimumSide)...\(1 << 14))")
            }
            // The layers whose size grows with the image or the classes: the fully connected ones.
            let widest = spec == "cnn-small" ? 64 * (h / 4) * (w / 4) * 128 : spec == "cnn-tiny" ? 16 * (h / 4) * (w / 4) * numClasses
                : spec == "lenet5" ? 16 * ((h / 2 - 4) / 2) * ((w / 2 - 4) / 2) * 120 : 0
            try checkBudget([widest, 129 * numClasses, 9 * c * 32], limit: maxParameters, spec: spec)
        }
        switch spec {
        case "cnn-small", "cnn-tiny":
            let (a, b, hidden) = spec == "cnn-small" ? (32, 64, 128) : (8, 16, 0)
            var layers: [Module] = [
                Conv2d(c, a, kernel: 3, padding: 1, generator: &g), ReLU(), MaxPool2d(2),
                Conv2d(a, b, kernel: 3, padding: 1, generator: &g), ReLU(), MaxPool2d(2), Flatten(),
            ]
            let flat = b * (h / 4) * (w / 4)
            if hidden > 0 { layers += [Linear(flat, hidden, generator: &g), ReLU(), Linear(hidden, numClasses, generator: &g)] }
            else { layers.append(Linear(flat, numClasses, generator: &g)) }
            return Sequential(layers)
        case "lenet5":
            let h2 = (h / 2 - 4) / 2, w2 = (w / 2 - 4) / 2
            return Sequential([
                Conv2d(c, 6, kernel: 5, padding: 2, generator: &g), ReLU(), MaxPool2d(2),
                Conv2d(6, 16, kernel: 5, generator: &g), ReLU(), MaxPool2d(2), Flatten(),
                Linear(16 * h2 * w2, 120, generator: &g), ReLU(), Linear(120, 84, generator: &g), ReLU(),
                Linear(84, numClasses, generator: &g),
            ])
        case "resnet8":
            return Sequential([
                Conv2d(c, 16, kernel: 3, padding: 1, bias: false, generator: &g), BatchNorm2d(16), ReLU(),
                ResidualBlock(16, 16, generator: &g), ResidualBlock(16, 32, stride: 2, generator: &g),
                ResidualBlock(32, 64, stride: 2, generator: &g), GlobalAvgPool2d(), Linear(64, numClasses, generator: &g),
            ])
        case "mobilenet-tiny":
            var layers: [Module] = [Conv2d(c, 16, kernel: 3, padding: 1, bias: false, generator: &g), BatchNorm2d(16), ReLU()]
            for (cin, cout, stride) in [(16, 32, 2), (32, 64, 1), (64, 128, 2)] {
                layers += [
                    Conv2d(cin, cin, kernel: 3, stride: stride, padding: 1, groups: cin, bias: false, generator: &g), BatchNorm2d(cin), ReLU(),
                    Conv2d(cin, cout, kernel: 1, bias: false, generator: &g), BatchNorm2d(cout), ReLU(),
                ]
            }
            layers += [GlobalAvgPool2d(), Linear(128, numClasses, generator: &g)]
            return Sequential(layers)
        default:
            throw TensorError("unknown model '\(spec)'; valid: mlp:IN-HIDDEN-...-OUT (e.g. mlp:784-64-10), cnn:A-B[-fcH] (e.g. cnn:8-16), \(presets.joined(separator: ", "))")
        }
    }
}

/// `a * b`, or nil on overflow or a negative factor.
func checkedMul(_ a: Int, _ b: Int) -> Int? {
    guard a >= 0, b >= 0 else { return nil }
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? nil : r
}

/// A model on disk: one safetensors file holding the weights and, in its metadata, the spec that
/// rebuilds the architecture (`distillkit.spec`, `distillkit.input_shape`, `distillkit.num_classes`).
public struct SavedModel {
    public var spec: String
    public var inputShape: [Int]
    public var numClasses: Int
    public var extra: [String: String]

    public init(spec: String, inputShape: [Int], numClasses: Int, extra: [String: String] = [:]) {
        self.spec = spec; self.inputShape = inputShape; self.numClasses = numClasses; self.extra = extra
    }

    /// The metadata key a run's `checkpoint.safetensors` (weights and optimizer state, for
    /// `--resume`) always has, and a model file never has.
    public static let checkpointKey = "distillkit.epochs_done"

    /// What to say of a safetensors file that is a run's checkpoint rather than a model.
    public static func checkpointAdvice(_ name: String) -> String {
        let folder = URL(fileURLWithPath: name).deletingLastPathComponent().path
        return "\(name): a training checkpoint (the weights with the optimizer's state, kept for --resume), not a model file; use the run's model: \(folder) or \(folder)/best.safetensors"
    }

    var metadata: [String: String] {
        var m = extra
        m["distillkit.spec"] = spec
        m["distillkit.input_shape"] = inputShape.map(String.init).joined(separator: ",")
        m["distillkit.num_classes"] = String(numClasses)
        m["format"] = "pt"
        return m
    }

    /// Writes `model`'s state dictionary with this description, atomically.
    public func save(_ model: Module, to url: URL) throws {
        try Safetensors.save(model.stateDict(), to: url, metadata: metadata)
    }

    /// Rebuilds the model a file (or a run folder's best.safetensors) describes and loads its weights.
    public static func load(_ url: URL) throws -> (model: Sequential, info: SavedModel) {
        try decode(try readFile(url), name: url.path)
    }

    /// The bytes of a model file, or of a run folder's `best.safetensors`; a FIFO, a device or a
    /// folder without that file is an error saying which.
    static func readFile(_ url: URL) throws -> Data {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue {
            let best = url.appendingPathComponent("best.safetensors")
            guard FileManager.default.fileExists(atPath: best.path) else {
                throw TensorError("\(url.path): is a folder without best.safetensors (a run folder's model); name a model file, or a run folder that finished an epoch")
            }
            return try InputFile.read(best, what: "model")
        }
        let formats = ["onnx": "an ONNX graph", "tflite": "a LiteRT (TFLite) model", "mlmodel": "a Core ML model"]
        if let kind = formats[url.pathExtension.lowercased()] {
            throw TensorError("\(url.path): is \(kind); this takes DistillKit model files (.safetensors from distill train, kd or quantize, or their run folder)")
        }
        return try InputFile.read(url, what: "model")
    }

    /// Rebuilds the model that the bytes of a saved-model file describe; `name` appears in errors.
    /// The spec in the metadata may not ask for more parameters than the file holds, so a
    /// hostile description cannot make the loader allocate more than the file's own size.
    public static func decode(_ data: Data, name: String) throws -> (model: Sequential, info: SavedModel) {
        // An int8 student (`distill quantize`) runs as a module over its integer plan.
        if let student = try QuantizedStudent.decodeIfQuantized(data, name: name) {
            return (Sequential([try QuantizedModel(student)]), student.info.savedModel)
        }
        let (tensors, meta) = try Safetensors.decode(data, name: name)
        guard let spec = meta["distillkit.spec"] else {
            if meta[SavedModel.checkpointKey] != nil { throw TensorError(SavedModel.checkpointAdvice(name)) }
            throw TensorError("\(name): a safetensors file without DistillKit's model description (distillkit.spec); save models with `distill train` or `distill kd`")
        }
        // The description is untrusted: every value is parsed strictly and checked against the
        // model it describes (ModelShapes) before the model is used.
        var shape = [1, 28, 28]
        if let text = meta["distillkit.input_shape"] {
            let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
                throw TensorError("\(name): distillkit.input_shape '\(text.prefix(80))' is not a comma-separated list of integers")
            }
            shape = parts.map { $0! }
        }
        try ModelShapes.checkExampleShape(shape, what: name)
        var classes = 10
        if let text = meta["distillkit.num_classes"] {
            guard let n = Int(text), (1...ModelZoo.maxClasses).contains(n) else {
                throw TensorError("\(name): distillkit.num_classes '\(text.prefix(80))' is not a class count (1...\(ModelZoo.maxClasses))")
            }
            classes = n
        }
        let info = SavedModel(spec: spec, inputShape: shape, numClasses: classes,
                              extra: meta.filter { !$0.key.hasPrefix("distillkit.") && $0.key != "format" })
        // The weights are all in the file: a spec may not ask for much more than it holds (the
        // 2^20 floor keeps small mismatches reportable by loadStateDict, naming the entries).
        let stored = tensors.values.reduce(0) { $0 + $1.count }
        let model: Sequential
        do {
            model = try ModelZoo.build(spec, inputShape: info.inputShape, numClasses: classes,
                                       maxParameters: min(ModelZoo.maxParameters, max(1 << 20, 16 * stored)))
            try ModelShapes.check(model, inputShape: shape, numClasses: classes, what: "model '\(spec.prefix(80))'")
        } catch let error as TensorError { throw TensorError("\(name): \(error.message)") }
        try model.loadStateDict(tensors, source: name)
        try ModelShapes.checkFinite(model, what: name)
        return (model, info)
    }
}
