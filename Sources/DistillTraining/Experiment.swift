import DistillData
import DistillNN
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
    /// Use only the first N training rows (quick experiments and tests).
    public var trainLimit: Int? = nil
    public var teachers: [String] = []
    public var student = "mlp:784-64-10"
    public var losses: [LossTerm] = [LossTerm(.ce)]
    public var options = TrainingOptions()
    public var output: String? = nil

    public init() {}

    public static let knownKeys: Set<String> = [
        "data", "test_data", "label", "train_limit", "teacher", "teachers", "student", "losses",
        "epochs", "batch_size", "optimizer", "learning_rate", "weight_decay", "momentum", "schedule", "warmup_epochs",
        "gradient_clip", "seed", "shift", "flip", "output", "name",
    ]

    /// Reads an experiment file (YAML or JSON).
    public static func load(_ url: URL) throws -> Experiment {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw TensorError("\(url.path): cannot read experiment file (\(error.localizedDescription))")
        }
        guard text.utf8.count < 1 << 20 else { throw TensorError("\(url.path): experiment file larger than 1 MiB") }
        let object: Any?
        do { object = try Yams.load(yaml: text) } catch {
            throw TensorError("\(url.path): not valid YAML: \(error)")
        }
        guard let map = object as? [String: Any] else { throw TensorError("\(url.path): the experiment must be a YAML map of settings") }
        do { return try Experiment(map) } catch let e as TensorError { throw TensorError("\(url.path): \(e.message)") }
    }

    /// Builds an experiment from a parsed map; unknown keys are an error listing the valid ones.
    public init(_ map: [String: Any]) throws {
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
        func int(_ k: String) throws -> Int? {
            guard let v = map[k] else { return nil }
            if let i = v as? Int { return i }
            if let d = v as? Double, d == d.rounded() { return Int(d) }
            throw TensorError("'\(k)' must be an integer, got \(v)")
        }
        func float(_ k: String) throws -> Float? {
            guard let v = map[k] else { return nil }
            if let d = v as? Double { return Float(d) }
            if let f = v as? Float { return f }
            if let i = v as? Int { return Float(i) }
            if let s = v as? String, let d = Double(s) { return Float(d) }
            throw TensorError("'\(k)' must be a number, got \(v)")
        }
        if let v = try string("data") { data = v }
        testData = try string("test_data")
        labelColumn = try string("label")
        trainLimit = try int("train_limit")
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
        if let v = try string("optimizer") { options.optimizer = v }
        if let v = try float("learning_rate") { options.learningRate = v }
        if let v = try float("weight_decay") { options.weightDecay = v }
        if let v = try float("momentum") { options.momentum = v }
        if let v = try string("schedule") { options.schedule = v }
        if let v = try int("warmup_epochs") { options.warmupEpochs = v }
        options.gradientClip = try float("gradient_clip")
        if let v = try int("seed") { options.seed = UInt64(v) }
        if let v = try int("shift") { options.shift = v }
        if let v = map["flip"] as? Bool { options.flip = v }
        output = try string("output")
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
        guard spec.hasSuffix(".yaml") || spec.hasSuffix(".yml") else { return spec }
        let text: String
        do { text = try String(contentsOfFile: spec, encoding: .utf8) } catch { throw TensorError("\(spec): cannot read model file") }
        guard let map = (try? Yams.load(yaml: text)) as? [String: Any], let layers = map["layers"] else {
            throw TensorError("\(spec): a model file is a YAML map with a 'layers' list")
        }
        return try layerSpec(layers)
    }

    /// Checks values that would otherwise fail later, after data loading.
    public func validate() throws {
        guard options.epochs >= 1 else { throw TensorError("epochs must be at least 1") }
        guard options.batchSize >= 1 else { throw TensorError("batch_size must be at least 1") }
        guard options.learningRate > 0 && options.learningRate.isFinite else { throw TensorError("learning_rate must be positive") }
        guard ["adam", "adamw", "sgd"].contains(options.optimizer) else { throw TensorError("unknown optimizer '\(options.optimizer)'; valid: adam, adamw, sgd") }
        guard ["constant", "cosine", "step"].contains(options.schedule) else { throw TensorError("unknown schedule '\(options.schedule)'; valid: constant, cosine, step") }
        if losses.contains(where: { $0.method != .ce }) && teachers.isEmpty {
            throw TensorError("the losses \(losses.map(\.method.rawValue).joined(separator: ", ")) need a teacher")
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
        if let trainLimit { j["train_limit"] = trainLimit }
        if let output { j["output"] = output }
        return j
    }
}
