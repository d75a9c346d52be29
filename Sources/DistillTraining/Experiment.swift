import DistillData
import DistillNN
import DistillONNX
import DistillTensor
import Foundation
import Yams

/// A whole run described in one place (a YAML file for `distill run`, or the options of
/// `distill train` / `distill kd`): data, teacher, student, losses, optimisation, output.
/// Its resolved form is written to the run folder's `config.json`, from which `--resume` restarts.
public struct Experiment {
    public var data = "fashion-mnist"
    public var testData: String? = nil
    public var labelColumn: String? = nil
    /// A numeric column of a `.csv` file: the run trains a regression model (one output, MSE; with
    /// a teacher, `w · MSE(s, t) + (1 − w) · MSE(s, y)`, w the weight of the `kd` term) instead of a
    /// classifier (`RegressionRunner`).
    public var target: String? = nil
    /// Use only the first N training rows (quick experiments and tests).
    public var trainLimit: Int? = nil
    /// Hold out this share of the training rows (a seeded split): the run scores each epoch on
    /// them and keeps the best as `best.safetensors`, and scores the test set once, at the end.
    /// nil: each epoch is scored on the test set, which then also picks `best.safetensors`.
    public var validation: Double? = nil
    public var teachers: [String] = []
    /// Cached teacher outputs (`.npy`, `.npz`, `.safetensors`, `.csv`) instead of a teacher model.
    public var teacherOutputs: String? = nil
    public var teacherOutputsKind = TeacherOutputs.Kind.logits
    /// The array of a multi-array teacher-outputs file.
    public var teacherOutputsArray: String? = nil
    /// How to read an ONNX teacher: its input normalisation and, to override what the graph
    /// says, its output kind.
    public var onnxTeacher = ONNXTeacherOptions()
    /// Keep labels for the first N training rows only; the rest is transfer data the teacher labels.
    public var labelLimit: Int? = nil
    /// Mixup α: each batch is enlarged by as many mixed inputs, labelled by the teacher only.
    public var mixup: Float? = nil
    public var student = "mlp:784-64-10"
    public var losses: [LossTerm] = [LossTerm(.ce)]
    public var options = TrainingOptions()
    public var output: String? = nil

    /// Epochs and batch size start unset: chosen from the training set's size unless given.
    public init() {
        options.epochsFromData = true
        options.batchSizeFromData = true
    }

    public static let knownKeys: Set<String> = [
        "data", "test_data", "label", "target", "train_limit", "validation", "teacher", "teachers", "student", "losses",
        "epochs", "batch_size", "optimizer", "learning_rate", "weight_decay", "momentum", "schedule", "warmup_epochs",
        "gradient_clip", "seed", "shift", "flip", "output", "name",
        "teacher_outputs", "teacher_outputs_kind", "teacher_outputs_array", "label_limit", "mixup",
        "teacher_input_mean", "teacher_input_std", "teacher_output", "teacher_output_name",
    ]

    /// Reads an experiment file (YAML or JSON).
    public static func load(_ url: URL) throws -> Experiment {
        // A regular file of at most 1 MiB (a folder, device or FIFO is named as such), in UTF-8.
        let bytes = try InputFile.read(url, what: "experiment file", limit: 1 << 20)
        guard let text = String(data: bytes, encoding: .utf8) else {
            throw TensorError("\(url.path): cannot read experiment file: not UTF-8 text")
        }
        return try parse(yaml: text, name: url.path)
    }

    /// Deepest nesting an experiment or model file may have (indentation columns plus open
    /// brackets), checked before YAML parsing: a deeply nested file would otherwise exhaust the
    /// parser's stack. Real files stay below 20.
    public static let maxYAMLDepth = 64
    /// Most YAML nodes a file may expand to, aliases counted at every use (a "billion laughs"
    /// file is a few lines that expand to billions).
    public static let maxYAMLNodes = 100_000

    /// Parses the text of an experiment file (YAML or JSON); `name` appears in errors.
    public static func parse(yaml text: String, name: String) throws -> Experiment {
        guard let map = try loadYAML(text, name: name) as? [String: Any] else { throw TensorError("\(name): the experiment must be a YAML map of settings") }
        do { return try Experiment(map) } catch let e as TensorError { throw TensorError("\(name): \(e.message)") }
    }

    /// YAML text as Foundation objects, after the size, depth and expansion limits.
    static func loadYAML(_ text: String, name: String) throws -> Any? {
        guard text.utf8.count < 1 << 20 else { throw TensorError("\(name): YAML file larger than 1 MiB") }
        let depth = yamlDepthBound(text)
        guard depth <= maxYAMLDepth else {
            throw TensorError("\(name): nesting \(depth) levels deep (indentation plus brackets), more than the \(maxYAMLDepth) an experiment file may have (Experiment.maxYAMLDepth)")
        }
        do {
            guard let node = try Yams.compose(yaml: text) else { return nil }
            var budget = maxYAMLNodes
            var complexKey: Node.Mapping? = nil
            guard countNodes(node, budget: &budget, complexKey: &complexKey) else {
                throw TensorError("\(name): expands to more than \(maxYAMLNodes) YAML values (aliases counted at each use; Experiment.maxYAMLNodes)")
            }
            // Yams traps on a mapping whose key is a list or a map (found by fuzz/FuzzExperiment).
            if let complexKey {
                throw TensorError("\(name): line \((complexKey.mark?.line).map(String.init) ?? "?"): a key is itself a list or a map; settings are written `name: value`")
            }
            // A key given twice would silently keep the last value.
            if let (key, line) = firstDuplicateKey(node) {
                throw TensorError("\(name): line \(line.map(String.init) ?? "?"): '\(key.prefix(80))' is set twice; keep one")
            }
            return try Yams.load(yaml: text)
        } catch let error as TensorError { throw error } catch {
            throw TensorError("\(name): not valid YAML: \(error)")
        }
    }

    /// An upper bound on the nesting of a YAML text: per line, the indentation (block indicators
    /// `- `, `? `, `: ` count as indentation) plus the open flow brackets outside quotes.
    public static func yamlDepthBound(_ text: String) -> Int {
        var worst = 0, flow = 0
        var quote: UInt8? = nil
        for line in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            var indent = 0
            var rest = line[...]
            if quote == nil {
                while let c = rest.first {
                    if c == 0x20 || c == 0x09 { indent += 1; rest = rest.dropFirst(); continue }
                    let next = rest.dropFirst().first
                    if (c == UInt8(ascii: "-") || c == UInt8(ascii: "?") || c == UInt8(ascii: ":")) && (next == nil || next == 0x20 || next == 0x09) {
                        indent += 2; rest = rest.dropFirst(); continue
                    }
                    break
                }
            }
            var previous: UInt8 = 0x20
            for c in rest {
                defer { previous = c }
                if let q = quote { if c == q { quote = nil }; continue }
                switch c {
                case UInt8(ascii: "'"), UInt8(ascii: "\""): quote = c
                case UInt8(ascii: "["), UInt8(ascii: "{"): flow += 1
                case UInt8(ascii: "]"), UInt8(ascii: "}"): flow = max(0, flow - 1)
                case UInt8(ascii: ":"): indent += 1  // `a: b: c` style keys, counted generously
                default: break
                }
                if c == UInt8(ascii: "#") && (previous == 0x20 || previous == 0x09) { break }
                worst = max(worst, indent + flow)
            }
            worst = max(worst, indent + flow)
        }
        return worst
    }

    /// Counts `node` and its descendants against `budget` (false when it runs out), and notes the
    /// first mapping with a key that is not a scalar.
    /// The first key that a mapping in `node` holds twice, with its line (the node count is
    /// bounded before this walk).
    private static func firstDuplicateKey(_ node: Node) -> (String, Int?)? {
        switch node {
        case .scalar: return nil
        case .sequence(let s): return s.lazy.compactMap(firstDuplicateKey).first
        case .mapping(let m):
            var seen = Set<String>()
            for (k, v) in m {
                if let key = k.scalar?.string, !seen.insert(key).inserted { return (key, k.mark?.line) }
                if let inner = firstDuplicateKey(v) { return inner }
            }
            return nil
        }
    }

    private static func countNodes(_ node: Node, budget: inout Int, complexKey: inout Node.Mapping?) -> Bool {
        budget -= 1
        guard budget >= 0 else { return false }
        switch node {
        case .scalar: return true
        case .sequence(let s): return s.allSatisfy { countNodes($0, budget: &budget, complexKey: &complexKey) }
        case .mapping(let m):
            for (k, v) in m {
                if k.scalar == nil && complexKey == nil { complexKey = m }
                guard countNodes(k, budget: &budget, complexKey: &complexKey), countNodes(v, budget: &budget, complexKey: &complexKey) else { return false }
            }
            return true
        }
    }

    /// Builds an experiment from a parsed map; unknown keys are an error listing the valid ones.
    public init(_ map: [String: Any]) throws {
        self.init()
        let unknown = Set(map.keys).subtracting(Self.knownKeys)
        guard unknown.isEmpty else {
            throw TensorError("unknown setting\(unknown.count > 1 ? "s" : "") \(unknown.sorted().joined(separator: ", ")); valid: \(Self.knownKeys.sorted().joined(separator: ", "))")
        }
        func string(_ k: String) throws -> String? {
            guard let v = map[k] else { return nil }
            if let s = v as? String { return s }
            if v is Int || v is Double { return "\(v)" }
            throw TensorError("'\(k)' must be a string")
        }
        /// One of an enumeration's values, by name; the error lists the valid ones.
        func choice<Choice: RawRepresentable & CaseIterable>(_ k: String, _: Choice.Type) throws -> Choice? where Choice.RawValue == String {
            guard let name = try string(k) else { return nil }
            guard let value = Choice(rawValue: name) else {
                let option = Experiment.setting(k).split(separator: " ").last ?? ""
                throw TensorError("unknown \(k.replacingOccurrences(of: "_", with: " ")) '\(name.prefix(40))' ('\(k)', \(option.dropFirst().dropLast())); valid: \(Choice.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return value
        }
        func int(_ k: String) throws -> Int? {
            guard let v = map[k] else { return nil }
            if let i = v as? Int { return i }
            // 1e3 is an integer too; .inf, .nan and 1e300 are not (Int(_:) would trap on them).
            if let d = v as? Double, d.isFinite, d == d.rounded(), Swift.abs(d) <= 0x1p53 { return Int(d) }
            throw TensorError("\(Experiment.setting(k)) must be an integer, got \("\(v)".prefix(40))")
        }
        func double(_ k: String) throws -> Double? {
            guard let v = map[k] else { return nil }
            if let d = v as? Double { return d }
            if let f = v as? Float { return Double(f) }
            if let i = v as? Int { return Double(i) }
            if let s = v as? String, let d = Double(s) { return d }
            throw TensorError("\(Experiment.setting(k)) must be a number, got \("\(v)".prefix(40))")
        }
        func float(_ k: String) throws -> Float? { try double(k).map(Float.init) }
        func bool(_ k: String) throws -> Bool? {
            guard let v = map[k] else { return nil }
            if let b = v as? Bool { return b }
            throw TensorError("\(Experiment.setting(k)) must be true or false, got \("\(v)".prefix(40))")
        }
        if let v = try string("data") { data = v }
        testData = try string("test_data")
        labelColumn = try string("label")
        target = try string("target")
        trainLimit = try int("train_limit")
        validation = try double("validation")  // a Double, as the runner keeps it: config.json reads back equal
        if map["teacher"] != nil && map["teachers"] != nil {
            throw TensorError("both 'teacher' and 'teachers' are set; give one (a list of teachers goes in either)")
        }
        _ = try string("name")  // a label for the reader, not used; a string all the same
        if let t = map["teacher"] ?? map["teachers"] {
            if let s = t as? String { teachers = [s] } else if let a = t as? [Any] { teachers = a.map { "\($0)" } }
            else { throw TensorError("'teacher' must be a model file or a list of them") }
        }
        if let v = map["student"] as? [String: Any], let layers = v["layers"] {
            student = try Experiment.layerSpec(layers)
        } else if let v = try string("student") { student = v }
        if let l = map["losses"] {
            guard let list = l as? [Any] else { throw TensorError("'losses' must be a list, e.g. [{kd: {temperature: 4, weight: 0.9}}, {ce: {weight: 0.1}}]") }
            losses = try list.map(LossTerm.parse)
        }
        if let v = try int("epochs") { options.epochs = v }
        if let v = try int("batch_size") { options.batchSize = v }
        if let v = try choice("optimizer", OptimizerKind.self) { options.optimizer = v }
        if let v = try float("learning_rate") { options.learningRate = v }
        if let v = try float("weight_decay") { options.weightDecay = v }
        if let v = try float("momentum") { options.momentum = v }
        if let v = try choice("schedule", ScheduleKind.self) { options.schedule = v }
        if let v = try int("warmup_epochs") { options.warmupEpochs = v }
        options.gradientClip = try float("gradient_clip")
        if let v = try int("seed") {
            guard v >= 0 else { throw TensorError("\(Experiment.setting("seed")) must be a non-negative integer, got \(v)") }
            options.seed = UInt64(v)
        }
        if let v = try int("shift") { options.shift = v }
        if let v = try bool("flip") { options.flip = v }
        output = try string("output")
        teacherOutputs = try string("teacher_outputs")
        if let v = try choice("teacher_outputs_kind", TeacherOutputs.Kind.self) { teacherOutputsKind = v }
        teacherOutputsArray = try string("teacher_outputs_array")
        func numbers(_ k: String) throws -> [Float]? {
            guard let v = map[k] else { return nil }
            let list = (v as? [Any]) ?? [v]
            let values = list.map { item -> Float? in
                if let d = item as? Double { return Float(d) }
                if let i = item as? Int { return Float(i) }
                return (item as? String).flatMap { Float($0) }
            }
            guard values.allSatisfy({ $0 != nil }) else { throw TensorError("\(Experiment.setting(k)) must be a number or a list of numbers (one per channel)") }
            return values.map { $0! }
        }
        onnxTeacher = ONNXTeacherOptions(mean: try numbers("teacher_input_mean"), std: try numbers("teacher_input_std"),
                                         output: try string("teacher_output").map(ONNXTeacherOptions.outputKind),
                                         outputName: try string("teacher_output_name"))
        labelLimit = try int("label_limit")
        mixup = try float("mixup")
        try validate()
    }

    /// The model spec for a layer list (from a YAML map `{layers: [...]}` or a YAML model file).
    public static func layerSpec(_ layers: Any) throws -> String {
        guard let list = layers as? [Any], JSONSerialization.isValidJSONObject(list) else {
            throw TensorError("'layers' must be a list of layers, e.g. [flatten, {linear: {in: 784, out: 10}}]")
        }
        return "layers:" + String(decoding: try JSONSerialization.data(withJSONObject: list, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Resolves a student spec: a `.yaml` model file becomes its layer list.
    public static func resolveModelSpec(_ spec: String) throws -> String {
        guard FileKind(spec) == .yaml else { return spec }
        let text: String
        do { text = try String(contentsOfFile: spec, encoding: .utf8) } catch { throw TensorError("\(spec): cannot read model file") }
        guard let map = try loadYAML(text, name: spec) as? [String: Any], let layers = map["layers"] else {
            throw TensorError("\(spec): a model file is a YAML map with a 'layers' list")
        }
        return try layerSpec(layers)
    }

    /// A setting's name as a config file and as the command line spell it: `'batch_size' (--batch-size)`.
    public static func setting(_ key: String) -> String {
        let option = key == "learning_rate" ? "lr" : key.replacingOccurrences(of: "_", with: "-")
        return "'\(key)' (--\(option))"
    }

    /// The ranges every numeric setting must lie in. Values come from YAML files, `config.json`
    /// and the command line; out-of-range ones (0 epochs, NaN rates, Int64.max batches) are refused
    /// here, naming the setting, rather than trapping, hanging or training to nonsense later.
    public static let maxEpochs = 100_000, maxBatchSize = 1 << 20, maxShift = 4096

    /// Checks every setting against its range, and the combinations that cannot work.
    public func validate() throws {
        func require(_ ok: Bool, _ key: String, _ rule: String, _ value: Any) throws {
            guard ok else { throw TensorError("\(Experiment.setting(key)) must be \(rule), got \("\(value)".prefix(40))") }
        }
        var resolved = options  // as the run gets them (ExperimentRunner)
        resolved.labelLimit = labelLimit
        resolved.mixup = mixup
        try resolved.validate()
        guard losses.isEmpty || losses.contains(where: { $0.weight > 0 }) else {
            throw TensorError("'losses': every weight is 0 (\(losses.map { "\($0.method.rawValue) \($0.weight)" }.joined(separator: ", "))), so nothing would be learned; give at least one a positive weight")
        }
        if let trainLimit { try require(trainLimit >= 1, "train_limit", "at least 1 (a run needs training rows)", trainLimit) }
        if let output { try require(!output.isEmpty, "output", "a folder name", "an empty name") }
        if let validation { try require(validation > 0 && validation < 1, "validation", "a share of the training rows in (0, 1), e.g. 0.1", validation) }
        try require(!data.isEmpty, "data", "a dataset name or file", data)
        try require(!student.isEmpty, "student", "a model spec", student)
        try onnxTeacher.validate()
        if onnxTeacher.isSet && teachers.isEmpty { throw TensorError("teacher_input_mean/std, teacher_output and teacher_output_name (--teacher-input-mean/--teacher-input-std/--teacher-output/--teacher-output-name) apply to a teacher model (--teacher)") }
        guard !losses.isEmpty else { throw TensorError("'losses' is empty: give at least one, e.g. [{ce: {weight: 1}}]") }
        for term in losses { try term.validate() }
        if losses.contains(where: { $0.method == .dkd }) && (labelLimit != nil || mixup != nil) { throw TensorError(LossTerm.dkdNeedsEveryLabel) }
        if mixup != nil && teachers.isEmpty { throw TensorError("mixup needs the teacher in the loop to label mixed inputs (--teacher, not --teacher-outputs)") }
        if let output {
            // The run writes best.safetensors and student.safetensors there: a teacher read from
            // that folder would be overwritten by its student.
            let folder = URL(fileURLWithPath: output).standardizedFileURL.path
            for path in teachers + [teacherOutputs].compactMap({ $0 }) {
                let url = URL(fileURLWithPath: path).standardizedFileURL
                guard url.path == folder || url.deletingLastPathComponent().path == folder else { continue }
                throw TensorError("\(Experiment.setting("output")) \(output) holds the teacher \(path), which this run's files would overwrite; write the student to another folder")
            }
        }
        if teacherOutputs != nil && !teachers.isEmpty { throw TensorError("give either a teacher model or cached teacher outputs, not both") }
        if target != nil { try validateRegression() }
        if losses.contains(where: { $0.method != .ce }) && teachers.isEmpty && teacherOutputs == nil {
            throw TensorError("the losses \(losses.map(\.method.rawValue).joined(separator: ", ")) need a teacher")
        }
    }

    /// A regression run (`target`) learns from the target and, with a teacher, from one `kd` term
    /// whose weight is the teacher's share; what only classification has is refused here.
    func validateRegression() throws {
        guard FileKind(data) == .csv else { throw TensorError("\(Experiment.setting("target")) needs a .csv file for 'data' (--data), got \(data.prefix(80))") }
        guard labelColumn == nil else { throw TensorError("'label' (--label, classes) and 'target' (--target, a regression target) exclude each other") }
        guard teachers.count <= 1 else { throw TensorError("a regression run takes one teacher, got \(teachers.count)") }
        if let other = losses.first(where: { $0.method != .ce && $0.method != .kd }) {
            throw TensorError("a regression run learns from the target and the teacher's predictions (ce and kd); '\(other.method.rawValue)' is for classifiers")
        }
        guard labelLimit == nil, mixup == nil, validation == nil, options.shift == 0, !options.flip else {
            throw TensorError("label_limit, mixup, validation, shift and flip (--label-limit, --mixup, --validation, --shift, --flip) are for classifiers, not regression runs")
        }
    }

    /// A regression run's teacher weight `w`: the `kd` term's weight (nil without a teacher).
    public var regressionTeacherWeight: Float? {
        guard !teachers.isEmpty || teacherOutputs != nil else { return nil }
        return losses.first { $0.method == .kd }?.weight ?? 0
    }

    /// The settings (as `json` names them) in which this experiment differs from `recorded`, the
    /// one a run folder's `config.json` holds: what `--resume` with a changed file would silently
    /// ignore. The output folder is not a setting; epochs and batch size still to be chosen from
    /// the data count only once chosen.
    public func settingsDiffering(from recorded: Experiment) -> [String] {
        var mine = json, theirs = recorded.json
        var skipped = ["output"]
        if options.epochsFromData { skipped.append("epochs") }
        if options.batchSizeFromData { skipped.append("batch_size") }
        for key in skipped { mine[key] = nil; theirs[key] = nil }
        func text(_ value: Any?) -> String {
            guard let value else { return "(not set)" }
            let data = try? JSONSerialization.data(withJSONObject: [value], options: [.sortedKeys, .fragmentsAllowed])
            return data.map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
        }
        return Set(mine.keys).union(theirs.keys).sorted().filter { text(mine[$0]) != text(theirs[$0]) }.map {
            "\($0): \(text(theirs[$0]).dropFirst().dropLast().prefix(80)) recorded, \(text(mine[$0]).dropFirst().dropLast().prefix(80)) now"
        }
    }

    /// The resolved configuration, as written to config.json.
    public var json: [String: Any] {
        var j = options.json
        j["data"] = data
        j["student"] = student
        j["teachers"] = teachers
        j["losses"] = losses.map(\.json)
        if let testData { j["test_data"] = testData }
        if let labelColumn { j["label"] = labelColumn }
        if let target { j["target"] = target }
        if let trainLimit { j["train_limit"] = trainLimit }
        if let validation { j["validation"] = validation }
        if let output { j["output"] = output }
        if let teacherOutputs { j["teacher_outputs"] = teacherOutputs; j["teacher_outputs_kind"] = teacherOutputsKind.rawValue }
        if let teacherOutputsArray { j["teacher_outputs_array"] = teacherOutputsArray }
        if let mean = onnxTeacher.mean { j["teacher_input_mean"] = mean.map(decimal) }
        if let std = onnxTeacher.std { j["teacher_input_std"] = std.map(decimal) }
        if let output = onnxTeacher.output { j["teacher_output"] = output.rawValue }
        if let name = onnxTeacher.outputName { j["teacher_output_name"] = name }
        if let labelLimit { j["label_limit"] = labelLimit }
        if let mixup { j["mixup"] = decimal(mixup) }
        return j
    }
}

/// How to read an ONNX teacher: `(x − mean) / std` for its inputs (one value, or one per
/// channel, axis 1 of the batch; by default the model's `distillkit.input_mean`/`input_std`
/// metadata), what its output holds when the graph should be overruled (by default the
/// graph's semantics decide, confirmed on the first batch), and which output to read when the
/// graph has several.
public struct ONNXTeacherOptions: Sendable, Equatable {
    public var mean: [Float]?
    public var std: [Float]?
    public var output: ONNXOutputKind?
    public var outputName: String?
    public init(mean: [Float]? = nil, std: [Float]? = nil, output: ONNXOutputKind? = nil, outputName: String? = nil) {
        self.mean = mean; self.std = std; self.output = output; self.outputName = outputName
    }

    public var isSet: Bool { mean != nil || std != nil || output != nil || outputName != nil }

    /// `logits`, `probs` or `logprobs`.
    public static func outputKind(_ text: String) throws -> ONNXOutputKind {
        guard let kind = ONNXOutputKind(rawValue: text) else {
            throw TensorError("unknown teacher output '\(text.prefix(40))' ('teacher_output', --teacher-output); valid: \(ONNXOutputKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return kind
    }

    /// Finite means, positive finite deviations, at most 4,096 values each.
    public func validate() throws {
        for (key, values) in [("teacher_input_mean", mean), ("teacher_input_std", std)] {
            guard let values else { continue }
            guard (1...4096).contains(values.count), values.allSatisfy(\.isFinite) else {
                throw TensorError("\(Experiment.setting(key)) must be 1 to 4096 finite numbers, one per channel")
            }
        }
        if let std, std.contains(where: { $0 <= 0 }) { throw TensorError("\(Experiment.setting("teacher_input_std")) must be positive") }
    }
}
