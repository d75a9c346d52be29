import DistillNN
import DistillONNX
import DistillTensor
import Foundation

/// An ONNX model (exported from PyTorch, TensorFlow or scikit-learn) used as a teacher.
///
/// The model must take one FLOAT input; its logits are the first FLOAT output of rank 2
/// ([N, C]). What that output holds is read from the graph (`ONNXModel.outputKind`: Softmax, an
/// L1 Normalizer, a classifier's post_transform, ...), checked against the first batch, or given
/// by the user (`--teacher-output`). Probabilities are returned as their logarithms, which are
/// logits of the same distribution (softmax(log p) = p), so temperature scaling works as with a
/// native teacher. A graph exported with a fixed batch size runs in chunks of that size.
///
/// Inputs are checked against the declared shape before anything runs: DistillKit feeds images as
/// Float32 in [0, 1], [N, C, H, W], and tabular rows as written. A teacher trained on normalised
/// images gets `(x − mean) / std` from `inputMean`/`inputStd`, given here or stored in the file's
/// metadata as `distillkit.input_mean` / `distillkit.input_std` (numbers, or comma-separated per channel).
///
/// Feature methods name intermediate values by their ONNX names (`/layer3/Relu_output_0`, ...);
/// `valueNames` lists them.
public final class ONNXTeacher: Teacher {
    public let model: ONNXModel
    public let name: String
    public let inputName: String
    public let outputName: String
    /// What the graph says the chosen output holds (Softmax, a classifier's post_transform, ...).
    public let graphOutput: ONNXOutputKindEvidence
    /// What the user says it holds (`--teacher-output`), overruling the graph.
    public let declaredOutput: ONNXOutputKind?
    /// What the output holds, settled on the first batch: the graph's (or the user's) word,
    /// checked against the numbers. Probabilities become log-probabilities, which are logits of
    /// the same distribution (softmax(log p) = p), so temperature scaling works as with logits.
    public private(set) var outputKind: ONNXOutputKind?
    private let settle = NSLock()
    public let inputMean: [Float]?
    public let inputStd: [Float]?

    /// Whether the chosen output holds class probabilities (turned into log-probabilities); a
    /// sigmoid is not counted: a regressor may bound its one value with one.
    public var outputIsProbability: Bool { (outputKind ?? declaredOutput ?? graphOutput.kind) == .probabilities }

    /// How many classes an output `width` values wide stands for (`ONNXOutputKind.classes(forWidth:)`:
    /// one column is a binary classifier's positive class, SVM decisions a value per pair of classes).
    public func classes(forWidth width: Int) -> Int? { (outputKind ?? declaredOutput ?? graphOutput.kind ?? .logits).classes(forWidth: width) }

    /// Output names that say "class scores", in order of preference, for a graph with several
    /// FLOAT [N, C] outputs (PyTorch's `output_names`, skl2onnx's `probabilities`).
    public static let scoreOutputNames = ["logits", "probabilities", "probs", "output_probability", "log_probs"]

    public init(url: URL, inputMean: [Float]? = nil, inputStd: [Float]? = nil, outputKind declared: ONNXOutputKind? = nil,
                outputName chosen: String? = nil) throws {
        let model = try ONNXModel(contentsOf: url)
        self.model = model
        name = "onnx (\(url.lastPathComponent))"
        guard model.inputs.count == 1, let input = model.inputs.first else {
            throw TensorError("\(url.path): a teacher takes one input; this model takes \(model.inputs.count) (\(listed(model.inputs)))")
        }
        guard input.type == .float || input.type == nil else {
            throw TensorError("\(url.path): the input '\(input.name.prefix(200))' is \(input.type.map(String.init(describing:)) ?? "?"); DistillKit feeds FLOAT (skl2onnx: initial_types=[('X', FloatTensorType([None, n_features]))])")
        }
        inputName = input.name
        let candidates = model.outputs.filter { $0.type == .float && ($0.shape?.count ?? 2) == 2 }
        let output: ONNXValueInfo
        if let chosen {
            guard let named = model.outputs.first(where: { $0.name == chosen }) else {
                throw TensorError("\(url.path): --teacher-output-name '\(chosen.prefix(200))': no such output; outputs are \(listed(model.outputs))")
            }
            guard candidates.contains(where: { $0.name == chosen }) else {
                throw TensorError("\(url.path): output '\(chosen.prefix(200))' is not FLOAT [N, C]; outputs are \(listed(model.outputs))")
            }
            output = named
        } else if candidates.count == 1 {
            output = candidates[0]
        } else if let named = Self.scoreOutputNames.lazy.compactMap({ name in candidates.first { $0.name.lowercased() == name } }).first {
            output = named
        } else if candidates.isEmpty {
            throw TensorError("\(url.path): no FLOAT [N, C] output to use as logits; outputs are \(listed(model.outputs)) (a head giving [N, C, 1, 1] or [N, 1, C] needs a Flatten before the output: torch.flatten(x, 1) in PyTorch)")
        } else {
            // (embedding, logits) of one width would look alike: a guess could teach the embedding.
            throw TensorError("\(url.path): \(candidates.count) FLOAT [N, C] outputs (\(listed(candidates))), none named \(Self.scoreOutputNames.joined(separator: ", ")); say which holds the class scores with --teacher-output-name (teacher_output_name in a config file; distill eval's model: --model-output-name)")
        }
        outputName = output.name
        graphOutput = model.outputKind(of: output.name)
        declaredOutput = declared
        func numbers(_ key: String) throws -> [Float]? {
            guard let text = model.metadata[key] else { return nil }
            let values = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard !values.isEmpty, values.allSatisfy({ $0?.isFinite == true }) else {
                throw TensorError("\(url.path): metadata \(key) = '\(text.prefix(200))' is not a list of finite numbers")
            }
            return values.map { $0! }
        }
        self.inputMean = try inputMean ?? numbers("distillkit.input_mean")
        self.inputStd = try inputStd ?? numbers("distillkit.input_std")
        // A subnormal std would turn [0, 1] inputs into infinities.
        if let s = self.inputStd, s.contains(where: { !($0.isNormal && $0 > 0) }) {
            throw TensorError("\(url.path): input standard deviations (distillkit.input_std or --teacher-input-std) must be positive normal numbers, got \(s.prefix(16))")
        }
    }

    public var parameterCount: Int { model.parameterCount }
    public var bytes: Int { model.parameterBytes }
    /// Intermediate values a feature method can name.
    public var valueNames: [String] { model.valueNames }
    /// The declared input shape, e.g. "[N,1,28,28]".
    public var expectedInput: String { model.inputs[0].shapeDescription }

    /// Checks one example's shape (`[1, 28, 28]`) against the declared input, with advice when
    /// the data does not fit.
    public func checkExampleShape(_ example: [Int]) throws {
        guard let declared = model.inputs[0].shape else { return }
        let given = [-1] + example
        let fits = declared.count == given.count && zip(declared.dropFirst(), example).allSatisfy { d, n in d.value.map { $0 == n } ?? true }
        guard !fits else { return }
        let givenText = "[N," + example.map(String.init).joined(separator: ",") + "]"
        var advice = "the data does not fit the teacher"
        // A declared product that overflows fits no data (-1: never equal to a real count).
        let declaredCount = CheckedSize.product(declared.dropFirst().compactMap(\.value)) ?? -1
        let declaredExample = declared.dropFirst().compactMap(\.value)
        if declaredExample.count == example.count && example.count >= 2 && declaredExample.sorted() == example.sorted() {
            // [H, W, C] against [C, H, W]: a reshape would scramble the channels; the axes need moving.
            let dataIsChannelsLast = example.count == 3 && example[2] <= 4 && example[0] > 4
            advice = dataIsChannelsLast
                ? "the axes are in another order: the data's images are channels-last [H, W, C] and the teacher takes [C, H, W]; store them channels-first (NumPy: x.transpose(0, 3, 1, 2)); a reshape would scramble the channels"
                : "the axes are in another order (DistillKit feeds images channels-first, [N, C, H, W]; a Keras/TensorFlow export takes [N, H, W, C]): re-export the teacher for channels-first input (tf2onnx --inputs-as-nchw INPUT, or a Transpose in front of the graph); a reshape would scramble the channels"
        } else if declared.dropFirst().allSatisfy({ $0.value != nil }) && declaredCount == example.reduce(1, *) {
            advice = "only the layout differs: re-export the teacher to take \(givenText) (e.g. in PyTorch, export nn.Sequential(nn.Unflatten(1, ...), model) or nn.Sequential(nn.Flatten(), model) with a dummy input of that shape)"
        } else if example.reduce(1, *) != declaredCount {
            advice = "the teacher was trained on other data (\(declaredCount < 0 ? "an overflowing number of" : String(declaredCount)) values per example, the data has \(example.reduce(1, *)))"
        }
        throw TensorError("\(model.source): input '\(inputName.prefix(200))': \(givenText) given, \(model.inputs[0].shapeDescription) expected; \(advice)")
    }

    /// `(x − mean) / std`, per channel (axis 1) or for all values.
    func normalized(_ x: Tensor) throws -> Tensor {
        guard inputMean != nil || inputStd != nil else { return x }
        let mean = inputMean ?? [0], std = inputStd ?? [1]
        let channels = x.rank >= 2 ? x.shape[1] : 1
        for (name, v) in [("mean", mean), ("std", std)] where v.count != 1 && v.count != channels {
            throw TensorError("input \(name) has \(v.count) values; the input \(x.shape) has \(channels) channels")
        }
        let out = Tensor(uninitializedShape: x.shape)
        let inner = x.rank >= 2 ? x.shape[2...].reduce(1, *) : 1
        for i in 0..<x.count {
            let ch = (i / Swift.max(inner, 1)) % Swift.max(channels, 1)
            out.data[i] = (x.data[i] - mean[mean.count == 1 ? 0 : ch]) / std[std.count == 1 ? 0 : ch]
        }
        return out
    }

    /// The batch size the graph was exported with, when it is fixed (`[1, 3, H, W]`, `[64, ...]`).
    public var fixedBatch: Int? { model.inputs[0].shape?.first?.value }

    public func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        try checkExampleShape(Array(inputs.shape.dropFirst()))
        let (out, taps) = try run(normalized(inputs), features: features)
        let logits = try settleOutputKind(out).logits(from: out)
        return (classPlacement.map { Self.place(logits, at: $0.columns, among: $0.classes) } ?? logits, taps)
    }

    /// Where the model's classes stand among the data's (`placeClasses`); nil: in order, one for one.
    public private(set) var classPlacement: (columns: [Int], classes: Int)?

    /// For a classifier whose class labels are not the data's classes 0...K−1 (scikit-learn
    /// trained on labels 1, 2, 3 has 3 columns; DistillKit numbers those labels' classes 0...3):
    /// places each of the model's classes at the data's class of the same name, so that its
    /// scores teach the right classes. A data class the model does not know gets a score 30 below
    /// the row's lowest (a probability of about e^−30 of the least likely class's). Returns the
    /// labels placed, or nil (nothing changed) when the model has no class labels or one of them
    /// names none of `dataClasses`.
    public func placeClasses(among dataClasses: [String]) -> [String]? {
        guard let labels = model.classifierLabels, !labels.isEmpty, labels.count < dataClasses.count,
              Set(labels).count == labels.count else { return nil }
        let index = Dictionary(dataClasses.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        let columns = labels.compactMap { index[$0] }
        guard columns.count == labels.count else { return nil }
        classPlacement = (columns, dataClasses.count)
        return labels
    }

    /// `scores` [N, K] spread over `classes` columns: column k goes to `columns[k]`, the others
    /// are 30 below each row's lowest score.
    static func place(_ scores: Tensor, at columns: [Int], among classes: Int) -> Tensor {
        let n = scores.shape[0], k = scores.shape[1]
        precondition(k == columns.count, "the model gives \(k) scores for \(columns.count) placed classes")
        let values = scores.scalars
        var out = [Float](repeating: 0, count: n * classes)
        for row in 0..<n {
            let source = values[(row * k)..<((row + 1) * k)]
            let floor = (source.min() ?? 0) - 30
            for c in 0..<classes { out[row * classes + c] = floor }
            for (j, column) in columns.enumerated() { out[row * classes + column] = source[source.startIndex + j] }
        }
        return Tensor(shape: [n, classes], scalars: out)
    }

    /// The chosen output as the graph computes it, for `inputs` normalised like a teacher's: a
    /// regressor's values, which are not logits of anything.
    public func outputs(_ inputs: Tensor) throws -> Tensor {
        try checkExampleShape(Array(inputs.shape.dropFirst()))
        return try run(normalized(inputs), features: []).0
    }

    /// Runs the graph on `x`; a graph exported with a fixed batch size B runs on chunks of B rows,
    /// the last one padded with copies of its last row and trimmed after.
    func run(_ x: Tensor, features: [String]) throws -> (Tensor, [String: Tensor]) {
        let n = x.shape[0]
        guard let batch = fixedBatch, batch > 0, batch != n else { return try runOnce(x, features: features) }
        var outputs: [Tensor] = [], tapParts: [String: [Tensor]] = [:]
        for start in stride(from: 0, to: n, by: batch) {
            let rows = Array(start..<min(start + batch, n))
            let padded = rows + [Int](repeating: rows.last!, count: batch - rows.count)
            let (out, taps) = try runOnce(withNoGrad { x.indexSelect(axis: 0, indices: padded) }, features: features)
            guard out.shape[0] == batch else { throw TensorError("\(model.source): output '\(outputName)' has \(out.shape[0]) rows for a batch of \(batch)") }
            let keep = Array(0..<rows.count)
            outputs.append(withNoGrad { out.indexSelect(axis: 0, indices: keep) })
            for (k, t) in taps { tapParts[k, default: []].append(withNoGrad { t.indexSelect(axis: 0, indices: keep) }) }
        }
        return (withNoGrad { Tensor.concat(outputs, axis: 0) }, tapParts.mapValues { parts in withNoGrad { Tensor.concat(parts, axis: 0) } })
    }

    func runOnce(_ x: Tensor, features: [String]) throws -> (Tensor, [String: Tensor]) {
        let results: [String: ONNXValue]
        do {
            results = try model.run([inputName: .float(x)], extra: features)
        } catch let e as ONNXError { throw TensorError(e.message) }
        guard let out = results[outputName]?.floatTensor, out.rank == 2 else {
            throw TensorError("\(model.source): output '\(outputName)' is \(results[outputName]?.typeDescription ?? "missing"), not FLOAT [N, C]")
        }
        guard out.shape[0] == x.shape[0] else {
            throw TensorError("\(model.source): output '\(outputName.prefix(200))' has \(out.shape[0]) rows for \(x.shape[0]) input rows; a teacher gives one row of outputs per example")
        }
        var taps: [String: Tensor] = [:]
        for f in features {
            guard let t = results[f]?.floatTensor else {
                throw TensorError("\(model.source): value '\(f)' is \(results[f]?.typeDescription ?? "missing"), not a FLOAT tensor")
            }
            taps[f] = t
        }
        return (out, taps)
    }

    /// The output kind, settled on the first batch `out`: the user's word (`--teacher-output`) or
    /// the graph's, each checked against the numbers; the numbers alone where the graph does not
    /// say. A contradiction is an error naming both, never a guess.
    func settleOutputKind(_ out: Tensor) throws -> ONNXOutputKind {
        settle.lock()
        defer { settle.unlock() }
        if let outputKind { return outputKind }
        let observed = ONNXOutputKind.observed(in: out)
        let source = "\(model.source): output '\(outputName.prefix(200))'"
        /// What the first batch holds, said against what `expected` needs.
        func found(against expected: ONNXOutputKind) -> String {
            switch (expected, observed) {
            case (.sigmoid, _): return "values outside [0, 1]"
            case (.svmDecisions, _): return "\(out.shape[1]) values per row, not one per pair of classes"
            case (_, .probabilities?): return "rows of probabilities (in [0, 1], summing to 1)"
            case (_, .logProbabilities?): return "rows of log-probabilities (exponentials summing to 1)"
            default: return "rows that are neither probabilities nor log-probabilities"
            }
        }
        func fits(_ kind: ONNXOutputKind) -> Bool {
            switch kind {
            case .sigmoid: return ONNXOutputKind.allInUnitInterval(out)
            // Logits may happen to lie in [0, 1] with one column; with two or more, rows that sum to 1 are not logits.
            case .logits: return observed == nil || out.shape[1] < 2
            // One column holds one probability per row, which need not sum to anything.
            case .probabilities: return observed == .probabilities || (out.shape[1] == 1 && ONNXOutputKind.allInUnitInterval(out))
            case .logProbabilities: return observed == .logProbabilities || (out.shape[1] == 1 && out.scalars.allSatisfy { $0 <= 1e-3 })
            case .svmDecisions: return ONNXOutputKind.svmDecisions.classes(forWidth: out.shape[1]) != nil
            }
        }
        let kind: ONNXOutputKind
        if let declared = declaredOutput {
            guard declared == .logits || fits(declared) else {
                throw TensorError("\(source): --teacher-output \(declared.rawValue) was given, but the first batch has \(found(against: declared))")
            }
            kind = declared
        } else if let said = graphOutput.kind {
            guard fits(said) else {
                throw TensorError("\(source): the graph ends in \(graphOutput.reason), which gives \(said.phrase), but the first batch has \(found(against: said)); say which with --teacher-output \(ONNXOutputKind.allCases.map(\.rawValue).joined(separator: "|")) (distill eval's model: --model-output)")
            }
            kind = said
        } else {
            kind = observed ?? .logits
        }
        outputKind = kind
        return kind
    }

    /// What the teacher's output holds and why, for the run's log and summary.
    public var outputDescription: String {
        let kind = outputKind ?? declaredOutput ?? graphOutput.kind
        let what: String
        switch kind {
        case .probabilities?: what = "probabilities (DistillKit uses their logarithms as logits)"
        case .logProbabilities?: what = "log-probabilities (used as logits)"
        case .sigmoid?: what = "per-class sigmoid probabilities (DistillKit uses their logarithms as logits: softmax gives them normalised; one column is the positive class of two)"
        case .svmDecisions?: what = "SVM decision values without probabilities (turned into per-class scores whose argmax is the SVM's label: a ranking, not calibrated; an SVC exported with probability=True teaches better)"
        case .logits?: what = "logits"
        case nil: what = "not yet known"
        }
        let why = declaredOutput != nil ? "--teacher-output" : graphOutput.kind == nil ? "\(graphOutput.reason), decided by the numbers" : graphOutput.reason
        return "output '\(outputName.prefix(200))' holds \(what): \(why)\(outputKind != nil && declaredOutput == nil ? ", confirmed on the first batch" : "")"
    }

    /// This teacher as a `Module` (for `evaluate` and latency measurements). A failure inside
    /// `forward` (which cannot throw) is kept in `failure` and the batch's logits are zeros.
    public func asModule(classes: Int) -> ONNXTeacherModule { ONNXTeacherModule(self, classes: classes) }
}

/// An `ONNXTeacher` seen as a `Module`; check `failure` after using it.
public final class ONNXTeacherModule: Module {
    let _teacher: ONNXTeacher
    let _classes: Int
    public private(set) var failure: Error?
    init(_ teacher: ONNXTeacher, classes: Int) { _teacher = teacher; _classes = classes }
    public override func forward(_ x: Tensor) -> Tensor {
        do { return try _teacher.logits(x) } catch {
            if failure == nil { failure = error }
            return Tensor.zeros([x.shape.first ?? 0, _classes])
        }
    }
}

/// The first few of a model's declared inputs or outputs, and how many more (a hostile model
/// may declare a million).
func listed(_ infos: [ONNXValueInfo]) -> String {
    let shown = infos.prefix(5).map { String($0.description.prefix(200)) }.joined(separator: "; ")
    return infos.count > 5 ? "\(shown); and \(infos.count - 5) more" : shown
}
