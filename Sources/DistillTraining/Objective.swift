import DistillNN
import DistillTensor
import Foundation

/// One weighted term of a training objective, as written in a config file:
/// `losses: [{kd: {temperature: 4, weight: 0.9}}, {ce: {weight: 0.1}}]`.
public struct LossTerm: Sendable, Equatable {
    /// The distillation methods DistillKit implements (formulas: DistillationLosses.swift).
    public enum Method: String, CaseIterable, Sendable {
        case ce, kd, dkd, dist, fitnets, at, sp, rkd, pkt
        /// Whether the method compares intermediate features (and so names layers).
        public var usesFeatures: Bool { [.fitnets, .at, .sp, .rkd, .pkt].contains(self) }
    }

    public var method: Method
    public var weight: Float = 1
    /// Softmax temperature (kd, dkd, dist).
    public var temperature: Float = 4
    /// Logit standardisation before kd/dkd (Sun et al. CVPR 2024).
    public var standardize = false
    /// DKD's target-class (alpha) and non-target-class (beta) weights; DIST's inter (beta) and intra (gamma).
    public var alpha: Float = 1, beta: Float = 8, gamma: Float = 1
    /// Epochs over which the term's weight ramps up linearly from 0 (DKD uses 20 on CIFAR).
    public var warmupEpochs = 0
    /// Layer names (dotted paths) for feature methods; empty means the logits.
    public var studentLayers: [String] = [], teacherLayers: [String] = []

    /// DistillKit's default distillation recipe, the one measured best on this project's data
    /// (README, "Choosing T and α"): KD at T = 2 with weight α = 0.5, cross-entropy at 1 − α.
    /// Hinton's textbook T = 4, α = 0.9 lost to training from scratch on Fashion-MNIST.
    public static let defaultKDTemperature: Float = 2, defaultAlpha: Float = 0.5

    /// `method` weighted α plus cross-entropy weighted 1 − α (Hinton et al. 2015); kd at
    /// `defaultKDTemperature` unless `temperature` is given (other methods keep their own).
    /// Without labels (`labelled` false) the method alone, at weight 1.
    public static func recipe(_ method: Method = .kd, alpha: Float = defaultAlpha, temperature: Float? = nil, labelled: Bool = true) -> [LossTerm] {
        let alpha = labelled ? alpha : 1
        var term = LossTerm(method, weight: alpha)
        if let temperature { term.temperature = temperature } else if method == .kd { term.temperature = defaultKDTemperature }
        return alpha < 1 ? [term, LossTerm(.ce, weight: 1 - alpha)] : [term]
    }

    /// Why dkd is refused with rows that have no label.
    static let dkdNeedsEveryLabel = "dkd splits each row's target class from the others, so it needs every row's label; label_limit and mixup (--label-limit, --mixup) add rows without one: use kd or dist with them"

    /// A term with the method's usual settings: DIST (Huang et al. 2022) uses T = 1 and β = 1.
    public init(_ method: Method, weight: Float = 1) {
        self.method = method; self.weight = weight
        if method == .dist { temperature = 1; beta = 1 }
    }

    /// Parses `{kd: {temperature: 4, weight: 0.9}}` (a one-key map) or `"kd"`.
    public static func parse(_ value: Any) throws -> LossTerm {
        let name: String, options: [String: Any]
        if let s = value as? String { name = s; options = [:] }
        else if let map = value as? [String: Any], map.count == 1, let (k, v) = map.first {
            name = k
            if v is NSNull { options = [:] }
            else if let o = v as? [String: Any] { options = o }
            else { throw TensorError("loss '\(k)': options must be a map, e.g. {\(k): {weight: 1}}") }
        } else {
            throw TensorError("each loss is written {name: {options}}, e.g. {kd: {temperature: 4, weight: 0.9}}")
        }
        guard let method = Method(rawValue: name) else {
            throw TensorError("unknown loss '\(name)'; valid: \(Method.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var term = LossTerm(method)
        let known: Set<String> = ["weight", "temperature", "standardize", "alpha", "beta", "gamma", "warmup_epochs", "student", "teacher"]
        for (key, v) in options {
            guard known.contains(key) else {
                throw TensorError("loss '\(name)': unknown option '\(key)'; valid: \(known.sorted().joined(separator: ", "))")
            }
            func number() throws -> Float {
                if let d = v as? Double { return Float(d) }
                if let f = v as? Float { return f }
                if let i = v as? Int { return Float(i) }
                throw TensorError("loss '\(name)': option '\(key)' must be a number, got \(v)")
            }
            func layers() throws -> [String] {
                if let s = v as? String { return [s] }
                if let a = v as? [Any] { return a.map { "\($0)" } }
                if let i = v as? Int { return [String(i)] }
                throw TensorError("loss '\(name)': option '\(key)' must be a layer name or a list of names")
            }
            switch key {
            case "weight": term.weight = try number()
            case "temperature": term.temperature = try number()
            case "standardize": term.standardize = (v as? Bool) ?? false
            case "alpha": term.alpha = try number()
            case "beta": term.beta = try number()
            case "gamma": term.gamma = try number()
            case "warmup_epochs":
                let epochs = try number()
                guard epochs >= 0 && epochs <= Float(Experiment.maxEpochs), epochs == epochs.rounded() else {
                    throw TensorError("loss '\(name)': warmup_epochs must be an integer in 0...\(Experiment.maxEpochs), got \(epochs)")
                }
                term.warmupEpochs = Int(epochs)
            case "student": term.studentLayers = try layers()
            case "teacher": term.teacherLayers = try layers()
            default: break
            }
        }
        try term.validate()
        return term
    }

    /// Largest temperature accepted: beyond it every softmax is uniform to float precision.
    public static let maxTemperature: Float = 1000

    /// Throws unless every number is in its range (weight ≥ 0, 0 < T ≤ 1000, α, β, γ ≥ 0, all
    /// finite) and feature methods name their layers in pairs.
    public func validate() throws {
        let name = method.rawValue
        guard weight >= 0 && weight.isFinite else { throw TensorError("loss '\(name)': weight must be a non-negative finite number, got \(weight)") }
        guard temperature > 0 && temperature <= Self.maxTemperature else {
            throw TensorError("loss '\(name)': temperature (--temperature) must be in (0, \(Int(Self.maxTemperature))], got \(temperature)")
        }
        for (key, v) in [("alpha", alpha), ("beta", beta), ("gamma", gamma)] where !(v >= 0 && v.isFinite) {
            throw TensorError("loss '\(name)': \(key) must be a non-negative finite number, got \(v)")
        }
        guard (0...Experiment.maxEpochs).contains(warmupEpochs) else { throw TensorError("loss '\(name)': warmup_epochs must be 0...\(Experiment.maxEpochs)") }
        guard studentLayers.count == teacherLayers.count else {
            throw TensorError("loss '\(name)': \(studentLayers.count) student layers but \(teacherLayers.count) teacher layers; they pair up one to one")
        }
        if method == .fitnets && studentLayers.isEmpty {
            throw TensorError("loss 'fitnets' needs the layers to match, e.g. {fitnets: {student: \"2\", teacher: \"5\"}} (--student-layer, --teacher-layer)")
        }
        if method == .at && studentLayers.isEmpty {
            throw TensorError("loss 'at' needs convolutional layers with equal spatial size, e.g. {at: {student: [\"1\"], teacher: [\"1\"]}} (--student-layer, --teacher-layer)")
        }
    }

    /// The options, as a config file would write them (for the resolved config of a run).
    public var json: [String: Any] {
        var o: [String: Any] = ["weight": decimal(weight)]
        switch method {
        case .kd: o["temperature"] = decimal(temperature); o["standardize"] = standardize
        case .dkd: o["temperature"] = decimal(temperature); o["standardize"] = standardize; o["alpha"] = decimal(alpha); o["beta"] = decimal(beta)
        case .dist: o["temperature"] = decimal(temperature); o["beta"] = decimal(beta); o["gamma"] = decimal(gamma)
        default: break
        }
        if warmupEpochs > 0 { o["warmup_epochs"] = warmupEpochs }
        if !studentLayers.isEmpty { o["student"] = studentLayers; o["teacher"] = teacherLayers }
        return [method.rawValue: o]
    }
}

/// The sum of weighted loss terms for one batch, with the adapters feature methods need.
///
/// FitNets regressors (a 1×1 convolution for feature maps, a linear map for vectors) are sized
/// from the first batch and trained with the student; they belong to the objective, never to the
/// student, so they are not exported.
public final class DistillationObjective {
    public let terms: [LossTerm]
    private var adapters: [String: Module] = [:]
    /// The (single) teacher's outputs are class probabilities at temperature 1 (cached outputs
    /// from `--teacher-outputs-kind probs`): `kd` uses `softTargetLoss` on `p^(1/T)` renormalised.
    public var teacherGivesProbabilities = false

    public init(terms: [LossTerm]) throws {
        guard !terms.isEmpty else { throw TensorError("no losses given") }
        for term in terms { try term.validate() }
        self.terms = terms
    }

    public var needsTeacher: Bool { terms.contains { $0.method != .ce } }
    public var needsLabels: Bool { terms.contains { $0.method == .ce || $0.method == .dkd } }
    public var studentFeatureNames: [String] { Array(Set(terms.flatMap(\.studentLayers))).sorted() }
    public var teacherFeatureNames: [String] { Array(Set(terms.flatMap(\.teacherLayers))).sorted() }

    /// Parameters of the adapters (trained alongside the student).
    public var adapterParameters: [Tensor] { adapters.keys.sorted().flatMap { adapters[$0]!.trainableParameters() } }

    /// Checks every feature layer pair on one batch's features (before the first step, so a pair
    /// that cannot be compared is a clear error, not a failure inside a loss) and creates the
    /// adapters FitNets needs from their shapes.
    public func prepareAdapters(studentFeatures: [String: Tensor], teacherFeatures: [String: Tensor], seed: UInt64) throws {
        var g = SeededGenerator(seed: seed ^ 0xADA9)
        for term in terms where term.method.usesFeatures {
            let name = term.method.rawValue
            for (s, t) in zip(term.studentLayers, term.teacherLayers) {
                guard let fs = studentFeatures[s] else { throw TensorError("\(name): student layer '\(s)' produced no output") }
                guard let ft = teacherFeatures[t] else { throw TensorError("\(name): teacher layer '\(t)' produced no output (feature losses read the first teacher's layers)") }
                let pair = "student layer '\(s)' gives \(fs.shape), teacher layer '\(t)' gives \(ft.shape)"
                switch term.method {
                case .at:
                    guard fs.rank >= 3 && ft.rank >= 3 else {
                        throw TensorError("at: \(pair); attention transfer compares feature maps [N, C, H, W], so pick convolutional layers of both")
                    }
                    guard fs.shape[2...] == ft.shape[2...] else { throw TensorError("at: \(pair); their spatial sizes must match") }
                case .fitnets:
                    let key = "\(s)->\(t)"
                    guard adapters[key] == nil else { continue }
                    if fs.rank == 4 && ft.rank == 4 {
                        guard fs.shape[2...] == ft.shape[2...] else { throw TensorError("fitnets: \(pair); their spatial sizes must match") }
                        adapters[key] = Conv2d(fs.shape[1], ft.shape[1], kernel: 1, generator: &g)
                    } else {  // vectors, or a feature map against a vector: a linear map of the flattened features
                        adapters[key] = Linear(fs.count / fs.shape[0], ft.count / ft.shape[0], generator: &g)
                    }
                default: break  // sp, rkd and pkt compare any features with the same batch size
                }
            }
        }
    }

    /// The weighted total and each term's (unweighted) value.
    public func loss(studentLogits: Tensor, studentFeatures: [String: Tensor], teacherLogits: [Tensor],
                     teacherFeatures: [String: Tensor], labels: [Int], epoch: Int) throws -> (total: Tensor, parts: [String: Float]) {
        var total: Tensor? = nil
        var parts: [String: Float] = [:]
        func feature(_ dict: [String: Tensor], _ name: String, _ who: String) throws -> Tensor {
            guard let f = dict[name] else { throw TensorError("\(who) layer '\(name)' produced no output") }
            return f
        }
        let teacherMean: Tensor? = teacherLogits.isEmpty ? nil
            : teacherLogits.count == 1 ? teacherLogits[0] : Tensor.concat(teacherLogits.map { $0.reshaped([1] + $0.shape) }, axis: 0).mean(axis: 0)
        for term in terms {
            let value: Tensor
            switch term.method {
            case .ce:
                guard labels.count == studentLogits.shape[0] else { throw TensorError("loss 'ce' needs labels; this data has none (drop ce for label-free distillation)") }
                // A negative label marks a row without one (transfer data, mixed inputs): no CE there.
                let labeled = labels.indices.filter { labels[$0] >= 0 }
                if labeled.count == labels.count {
                    value = crossEntropy(logits: studentLogits, labels: labels)
                } else if labeled.isEmpty {
                    value = studentLogits.scaled(0).sum()
                } else {
                    value = crossEntropy(logits: studentLogits.indexSelect(axis: 0, indices: labeled), labels: labeled.map { labels[$0] })
                }
            case .kd:
                guard let teacher = teacherMean else { throw TensorError("loss 'kd' needs a teacher") }
                let s = term.standardize ? standardizedLogits(studentLogits) : studentLogits
                if teacherGivesProbabilities {
                    guard !term.standardize else { throw TensorError("logit standardisation needs teacher logits, the teacher outputs are probabilities") }
                    value = softTargetLoss(student: studentLogits, targetProbabilities: TeacherOutputs.temperedProbabilities(teacher, temperature: term.temperature), temperature: term.temperature)
                } else if teacherLogits.count > 1 {
                    let ts = teacherLogits.map { term.standardize ? standardizedLogits($0) : $0 }
                    value = softTargetLoss(student: s, targetProbabilities: averagedTeacherProbabilities(ts, weights: nil, temperature: term.temperature), temperature: term.temperature)
                } else {
                    value = kdLoss(student: s, teacher: term.standardize ? standardizedLogits(teacher) : teacher, temperature: term.temperature)
                }
            case .dkd:
                guard let teacher = teacherMean else { throw TensorError("loss 'dkd' needs a teacher") }
                guard labels.count == studentLogits.shape[0] else { throw TensorError("loss 'dkd' needs labels (it splits target and non-target classes)") }
                let s = term.standardize ? standardizedLogits(studentLogits) : studentLogits
                let t = term.standardize ? standardizedLogits(teacher) : teacher
                value = dkdLoss(student: s, teacher: t, labels: labels, alpha: term.alpha, beta: term.beta, temperature: term.temperature)
            case .dist:
                guard let teacher = teacherMean else { throw TensorError("loss 'dist' needs a teacher") }
                value = distLoss(student: studentLogits, teacher: teacher, beta: term.beta, gamma: term.gamma, temperature: term.temperature)
            case .fitnets, .at, .sp, .rkd, .pkt:
                let pairs: [(Tensor, Tensor, String)] = try term.studentLayers.isEmpty
                    ? [(studentLogits, teacherMean ?? studentLogits.detached(), "logits")]
                    : zip(term.studentLayers, term.teacherLayers).map {
                        (try feature(studentFeatures, $0.0, "student"), try feature(teacherFeatures, $0.1, "teacher"), "\($0.0)->\($0.1)")
                    }
                guard teacherMean != nil else { throw TensorError("loss '\(term.method.rawValue)' needs a teacher") }
                var sum: Tensor? = nil
                for (fs, ft, key) in pairs {
                    let v: Tensor
                    switch term.method {
                    case .fitnets:
                        guard let adapter = adapters[key] else { throw TensorError("fitnets: no adapter for \(key)") }
                        let maps = fs.rank == 4 && ft.rank == 4
                        v = fitnetsLoss(student: adapter(maps ? fs : fs.flattened()), teacher: maps ? ft : ft.flattened())
                    case .at: v = attentionTransferLoss(student: fs, teacher: ft)
                    case .sp: v = similarityPreservingLoss(student: fs, teacher: ft)
                    case .rkd:  // relations need two rows; an epoch's last batch may hold one
                        v = fs.shape[0] < 2 ? fs.sum().scaled(0) : rkdLoss(student: fs, teacher: ft)
                    default: v = pktLoss(student: fs, teacher: ft)
                    }
                    sum = sum.map { $0 + v } ?? v
                }
                value = sum!
            }
            let ramp = term.warmupEpochs > 0 ? min(1, Float(epoch + 1) / Float(term.warmupEpochs)) : 1
            parts[term.method.rawValue] = value.item()
            let weighted = value * (term.weight * ramp)
            total = total.map { $0 + weighted } ?? weighted
        }
        return (total!, parts)
    }
}
