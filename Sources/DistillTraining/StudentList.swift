import DistillTensor
import Foundation

/// One student of a sweep: its model spec, the name it goes by in tables and folders, and the
/// training settings it overrides (a YAML student list may give a student its own epochs or
/// learning rate, e.g. a CNN that needs fewer epochs than an MLP).
public struct SweepStudent: Sendable, Equatable {
    /// A model spec `ModelZoo.build` takes (`mlp:784-64-10`, `lenet5`, `layers:[...]`).
    public var spec: String
    /// What tables, plots and folder names call it: the spec, or a `name` from the list file.
    public var name: String
    /// Settings from `StudentList.overrideKeys` with their values, as the list file wrote them
    /// (already checked by `Experiment`'s parser); applied by `apply(to:)`.
    public var overrides: [String: String]

    public init(spec: String, name: String? = nil, overrides: [String: String] = [:]) {
        self.spec = spec
        self.name = name ?? spec
        self.overrides = overrides
    }

    /// `experiment` with this student and its overrides. Values are parsed by `Experiment` itself,
    /// so a student's `epochs: 0` fails with the same message as `--epochs 0`.
    public func apply(to experiment: Experiment) throws -> Experiment {
        var e = experiment
        e.student = spec
        guard !overrides.isEmpty else { return e }
        let parsed: Experiment
        do { parsed = try Experiment(overrides.mapValues { StudentList.yamlScalar($0) }) } catch let error as TensorError {
            throw TensorError("student '\(name.prefix(80))': \(error.message)")
        }
        for key in overrides.keys {
            switch key {
            case "epochs": e.options.epochs = parsed.options.epochs
            case "batch_size": e.options.batchSize = parsed.options.batchSize
            case "optimizer": e.options.optimizer = parsed.options.optimizer
            case "learning_rate": e.options.learningRate = parsed.options.learningRate
            case "weight_decay": e.options.weightDecay = parsed.options.weightDecay
            case "momentum": e.options.momentum = parsed.options.momentum
            case "schedule": e.options.schedule = parsed.options.schedule
            case "warmup_epochs": e.options.warmupEpochs = parsed.options.warmupEpochs
            case "gradient_clip": e.options.gradientClip = parsed.options.gradientClip
            case "shift": e.options.shift = parsed.options.shift
            case "flip": e.options.flip = parsed.options.flip
            default: break
            }
        }
        return e
    }
}

/// The students of `distill sweep --students`: a comma-separated list whose items may hold brace
/// lists (`mlp:784-{32,64,128}-10` is three students), YAML model files (`my-cnn.yaml`, a
/// `layers:` list), and YAML student lists (a file with a `students:` list, where each entry is a
/// spec, or a map with `student` (or `layers`), an optional `name`, and per-student settings).
///
/// ```yaml
/// students:
///   - mlp:784-{32,64,128}-10
///   - student: lenet5
///     epochs: 20
///   - name: cnn-8-16
///     layers: [{conv2d: {in: 1, out: 8, kernel: 3, padding: 1}}, relu, {maxpool2d: {kernel: 2}}, flatten, {linear: {in: 1568, out: 10}}]
///     learning_rate: 0.002
/// ```
public enum StudentList {
    /// Settings a student in a list file may override.
    public static let overrideKeys: Set<String> = ["epochs", "batch_size", "optimizer", "learning_rate", "weight_decay", "momentum",
                                                   "schedule", "warmup_epochs", "gradient_clip", "shift", "flip"]
    /// Most students one list may expand to (brace lists multiply: `{a,b}-{c,d}` is four).
    public static let maxStudents = 256

    /// Parses a `--students` value; `option` names it in errors.
    public static func parse(_ text: String, option: String = "--students") throws -> [SweepStudent] {
        var students: [SweepStudent] = []
        for item in try splitTopLevel(text, option: option) {
            let lower = item.lowercased()
            if lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") {
                students += try load(item)
            } else {
                students += try expandBraces(item, option: option).map { SweepStudent(spec: $0) }
            }
            guard students.count <= maxStudents else {
                throw TensorError("\(option): more than \(maxStudents) students (StudentList.maxStudents); brace lists multiply")
            }
        }
        guard !students.isEmpty else { throw TensorError("\(option): no students given, e.g. \"mlp:784-{32,64}-10,lenet5\"") }
        var seen: Set<String> = []
        for s in students {
            guard seen.insert(s.name).inserted else { throw TensorError("\(option): student '\(s.name.prefix(80))' is listed twice") }
        }
        return students
    }

    /// A YAML file: a student list (`students:`) or a model file (`layers:`, one student).
    public static func load(_ path: String) throws -> [SweepStudent] {
        let bytes = try InputFile.read(URL(fileURLWithPath: path), what: "the student list", limit: 1 << 20)
        guard let text = String(data: bytes, encoding: .utf8) else { throw TensorError("\(path): cannot read the student list: not UTF-8 text") }
        guard let map = try Experiment.loadYAML(text, name: path) as? [String: Any] else {
            throw TensorError("\(path): a student list is a YAML map with a 'students' list (or a model file with 'layers')")
        }
        if map["layers"] != nil {
            return [SweepStudent(spec: try Experiment.resolveModelSpec(path), name: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)]
        }
        guard let list = map["students"] as? [Any] else {
            throw TensorError("\(path): a student list is a YAML map with a 'students' list, e.g. students: [mlp:784-64-10, lenet5]")
        }
        var students: [SweepStudent] = []
        for (index, entry) in list.enumerated() {
            let place = "\(path): student \(index + 1)"
            if let spec = entry as? String {
                students += try expandBraces(spec, option: place).map { SweepStudent(spec: $0) }
                continue
            }
            guard let fields = entry as? [String: Any] else { throw TensorError("\(place): write a student as a spec or a map {student: SPEC, epochs: ...}") }
            let unknown = Set(fields.keys).subtracting(overrideKeys.union(["student", "layers", "name"]))
            guard unknown.isEmpty else {
                throw TensorError("\(place): unknown setting\(unknown.count > 1 ? "s" : "") \(unknown.sorted().joined(separator: ", ")); valid: name, student, layers, \(overrideKeys.sorted().joined(separator: ", "))")
            }
            var specs: [String]
            if let layers = fields["layers"] {
                guard fields["student"] == nil else { throw TensorError("\(place): give 'student' or 'layers', not both") }
                specs = [try Experiment.layerSpec(layers)]
            } else if let spec = fields["student"] as? String {
                specs = try expandBraces(spec, option: place)
                if specs.count == 1 { specs = [try Experiment.resolveModelSpec(specs[0])] }
            } else {
                throw TensorError("\(place): no 'student' (a spec) or 'layers' (a layer list)")
            }
            var overrides: [String: String] = [:]
            for (key, value) in fields where overrideKeys.contains(key) { overrides[key] = "\(value)" }
            let name = fields["name"].map { "\($0)" }
            if name != nil && specs.count > 1 { throw TensorError("\(place): a 'name' names one student; this entry expands to \(specs.count)") }
            for spec in specs {
                let student = SweepStudent(spec: spec, name: name ?? (spec.hasPrefix("layers:") ? "layers-\(shortHash(spec))" : spec), overrides: overrides)
                do { _ = try student.apply(to: Experiment()) } catch let error as TensorError {  // the overrides' values, checked now
                    throw TensorError("\(place): \(error.message)")
                }
                students.append(student)
            }
        }
        return students
    }

    /// Expands brace lists: `mlp:784-{32,64}-10` is `mlp:784-32-10` and `mlp:784-64-10`; several
    /// lists multiply, left to right. Braces do not nest, and a layer list (`layers:[...]`, JSON)
    /// is taken as it is.
    public static func expandBraces(_ pattern: String, option: String = "--students") throws -> [String] {
        let pattern = pattern.trimmingCharacters(in: .whitespaces)
        guard !pattern.hasPrefix("layers:") else { return [pattern] }
        var results = [""]
        var rest = Substring(pattern)
        while let open = rest.firstIndex(of: "{") {
            let prefix = rest[..<open]
            guard !prefix.contains("}") else { throw TensorError("\(option): '}' without '{' in '\(pattern.prefix(80))'") }
            guard let close = rest[open...].firstIndex(of: "}") else { throw TensorError("\(option): '{' without '}' in '\(pattern.prefix(80))'") }
            let inside = rest[rest.index(after: open)..<close]
            guard !inside.contains("{") else { throw TensorError("\(option): brace lists do not nest, in '\(pattern.prefix(80))'") }
            let choices = inside.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard !choices.contains(where: \.isEmpty) else { throw TensorError("\(option): an empty choice in '{\(inside)}' of '\(pattern.prefix(80))'") }
            guard results.count * choices.count <= maxStudents else {
                throw TensorError("\(option): '\(pattern.prefix(80))' expands to more than \(maxStudents) students (StudentList.maxStudents)")
            }
            results = results.flatMap { head in choices.map { head + prefix + $0 } }
            rest = rest[rest.index(after: close)...]
        }
        guard !rest.contains("}") else { throw TensorError("\(option): '}' without '{' in '\(pattern.prefix(80))'") }
        return results.map { $0 + rest }
    }

    /// Splits at commas outside braces and brackets, so `mlp:784-{32,64}-10,layers:[...]` is two items.
    static func splitTopLevel(_ text: String, option: String) throws -> [String] {
        var items: [String] = [], current = "", depth = 0
        for ch in text {
            switch ch {
            case "{", "[": depth += 1
            case "}", "]": depth -= 1
            default: break
            }
            guard depth >= 0 else { throw TensorError("\(option): unbalanced '\(ch)' in '\(text.prefix(80))'") }
            if ch == "," && depth == 0 { items.append(current); current = "" } else { current.append(ch) }
        }
        guard depth == 0 else { throw TensorError("\(option): unbalanced braces or brackets in '\(text.prefix(80))'") }
        items.append(current)
        return items.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// A list file's value as the YAML parser would give it back (for `Experiment`'s checks).
    static func yamlScalar(_ text: String) -> Any {
        if let i = Int(text) { return i }
        if let d = Double(text) { return d }
        switch text.lowercased() {
        case "true", "1": return true
        case "false", "0": return false
        default: return text
        }
    }

    /// Eight hex digits of FNV-1a: a stable short name for a long spec.
    static func shortHash(_ text: String) -> String {
        var h: UInt32 = 0x811C_9DC5
        for b in text.utf8 { h = (h ^ UInt32(b)) &* 0x0100_0193 }
        return String(format: "%08x", h)
    }

    /// A folder name for a student: letters, digits, `.`, `-` and `_` kept, the rest `_`.
    static func folderName(_ name: String) -> String {
        let kept = String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "_" }.prefix(80))
        return kept == name ? kept : "\(kept)-\(shortHash(name))"
    }
}
