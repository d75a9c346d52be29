import DistillData
import DistillNN
import DistillONNX
import DistillTensor
import Foundation

/// Loads a teacher from a file, ready for the rows it will be given: a DistillKit model
/// (.safetensors) or an ONNX model (.onnx), or a run folder (its best model).
///
/// - `options` say how to read an ONNX teacher (input normalisation, output kind); DistillKit
///   models carry their own preprocessing and give logits.
/// - A tabular DistillKit teacher standardises raw rows with the statistics stored in its file.
/// - `standardizedWith`: the rows will come standardised with these statistics (the student's,
///   on tabular data); the teacher gets them back as raw rows, taken from `rawRows` (the user's
///   rows, indexed like the batches) where it can, so that no rounding moves a tree's split.
public func loadTeacher(_ path: String, options: ONNXTeacherOptions = .init(), standardizedWith input: FeatureStatistics? = nil,
                        rawRows: LabeledDataset? = nil) throws -> Teacher {
    let path = RunFolder.modelFile(path)
    let url = URL(fileURLWithPath: path)
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw TensorError("teacher file \(path) does not exist") }
    guard !isFolder.boolValue else { throw TensorError("\(path): is a folder without best.safetensors (a run folder's model); name the teacher's model file") }
    try InputFile.checkRegular(path, what: "teacher")
    try options.validate()
    let base: Teacher
    var own: FeatureStatistics? = nil
    switch FileKind(path) {
    case .safetensors:
        guard !options.isSet else {
            throw TensorError("\(path): --teacher-input-mean/--teacher-input-std/--teacher-output/--teacher-output-name are for ONNX teachers; a DistillKit model carries its own preprocessing and gives logits")
        }
        let (model, info) = try SavedModel.load(url)
        own = try Tabular.statistics(of: info, source: path)
        base = ModuleTeacher(model, name: "\(info.spec) (\(url.lastPathComponent))")
    case .onnx:
        base = try ONNXTeacher(url: url, inputMean: options.mean, inputStd: options.std, outputKind: options.output, outputName: options.outputName)
    default:
        throw TensorError("\(path): unsupported teacher format '.\(url.pathExtension)'; DistillKit reads .safetensors and .onnx models")
    }
    guard own != nil || input != nil else { return base }
    return StandardizingTeacher(base, own: own, input: input, rawRows: input == nil ? nil : rawRows)
}

/// Throws unless a teacher model takes examples of `exampleShape` and gives `numClasses` outputs
/// (any number when nil), so that a teacher that does not fit the data is an error naming its file
/// before anything runs. An ONNX classifier with fewer classes than the data, whose class labels
/// all name classes of the data (`classNames`: scikit-learn trained on labels 1, 2, 3 against the
/// data's classes 0...3), has its classes placed at those (`ONNXTeacher.placeClasses`), and it is
/// logged.
public func checkTeacher(_ teacher: Teacher, path: String, exampleShape: [Int], numClasses: Int?, classNames: [String] = []) throws {
    let base = (teacher as? StandardizingTeacher)?.base ?? teacher
    if let table = (base as? CachedTeacher)?.logitTable ?? (base as? CachedProbabilityTeacher)?.table.logitTable {
        if let numClasses, table.shape[1] != numClasses {
            throw TensorError("\(path): the cached teacher outputs hold \(table.shape[1]) values per row; the data has \(numClasses) classes")
        }
    } else if let module = (base as? ModuleTeacher)?.model, ModelShapes.understands(module) {
        let output = try ModelShapes.outputShape(of: module, path: "", input: exampleShape, orThrowFor: path)
        guard output.count == 1, numClasses.map({ output == [$0] }) ?? true else {
            throw TensorError("\(path): the teacher gives outputs of shape \(output) per example; the data has \(numClasses.map(String.init) ?? "?") classes")
        }
    } else if let onnx = base as? ONNXTeacher {
        try onnx.checkExampleShape(exampleShape)
        if let numClasses {  // the graph's output width, on one example of zeros, before anything trains
            let (out, _) = try withNoGrad { try onnx.run(onnx.normalized(Tensor.zeros([1] + exampleShape)), features: []) }
            if onnx.classPlacement == nil, onnx.classes(forWidth: out.shape[1]) != numClasses, classNames.count == numClasses,
               out.shape[1] == onnx.model.classifierLabels?.count, let placed = onnx.placeClasses(among: classNames) {
                let names = placed.prefix(12).joined(separator: ", ") + (placed.count > 12 ? ", ..." : "")
                log("teacher \(path): its classes \(names) (its classifier's class labels) are read as the data's classes of those names, of \(numClasses); the data's other classes get no probability from it")
                return
            }
            guard onnx.classPlacement?.classes == numClasses || onnx.classes(forWidth: out.shape[1]) == numClasses else {
                let reading = out.shape[1] == 1 ? " (a binary classifier's, read as 2 classes)"
                    : onnx.graphOutput.kind == .svmDecisions ? " (SVM decisions, one per pair of classes: \(onnx.classes(forWidth: out.shape[1]).map { "\($0) classes" } ?? "no class count"))" : ""
                // scikit-learn trained on labels 1, 2, 3 gives 3 columns; DistillKit numbers classes by label value (0...3: 4 classes).
                let labels = onnx.model.classifierLabels.flatMap { $0 != (0..<$0.count).map(String.init) ? $0 : nil }
                let relabel = labels.map { "; the model's classes are \($0.prefix(12).joined(separator: ", "))\($0.count > 12 ? ", ..." : "") (its classifier's class labels), while DistillKit numbers the data's classes by label: whole numbers by value from 0, strings in sorted order over the rows given. Give data whose labels are exactly these classes (whole numbers relabelled 0...\($0.count - 1) in this order)" } ?? ""
                throw TensorError("\(path): output '\(onnx.outputName.prefix(200))' gives \(out.shape[1]) value\(out.shape[1] == 1 ? "" : "s")\(reading) per example; the data has \(numClasses) classes\(relabel)")
            }
        }
    }
}

/// Prints a loud warning when `teacher` scores near chance on the first labelled rows of `data`:
/// a teacher fed other inputs than it was trained on (no normalisation, BGR instead of RGB, 0-1
/// instead of 0-255) still runs, and would silently teach noise. Returns the accuracy measured.
@discardableResult
public func warnIfNearChance(_ teacher: Teacher, path: String, on data: LabeledDataset, rows: Int = 512) throws -> Double? {
    guard !data.labels.isEmpty else { return nil }
    let labelled = (0..<data.count).lazy.filter { data.labels[$0] >= 0 }.prefix(rows)
    guard labelled.count >= 20, data.numClasses >= 2 else { return nil }
    let indices = Array(labelled)
    // In training-batch-sized chunks: one call on all 512 rows took a CNN teacher's activations
    // to 38 MB, which stayed in the heap for the whole run (`distill kd`'s peak memory).
    var predictions: [Int] = []
    for start in stride(from: 0, to: indices.count, by: 128) {
        let chunk = Array(indices[start..<min(start + 128, indices.count)])
        predictions += try teacher.logits(data.rows(chunk), indices: chunk).argmaxLastAxis()
    }
    let labels = indices.map { data.labels[$0] }
    let accuracy = Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(indices.count)
    var counts = [Int](repeating: 0, count: data.numClasses)
    for l in labels where l < counts.count { counts[l] += 1 }
    let chance = Double(counts.max() ?? 0) / Double(indices.count)  // always guessing the commonest class
    if accuracy < chance + 0.3 * (1 - chance) {
        // Far below chance, the teacher is reading the inputs well but naming the classes differently.
        let below = accuracy < 0.5 * min(chance, 1 / Double(data.numClasses) + 0.5 * chance)
        let advice = below
            ? "Far below chance, its classes are likely in another order than the data's labels (string labels are numbered in sorted order; a binary model may call the positive class 0): check the teacher's class order."
            : data.exampleShape.count == 1
            ? "Is it fed what it was trained on? Check the column order and scaling it expects (DistillKit feeds a table's columns in file order, as written, without the label column)."
            : "Is it fed what it was trained on? Check its input normalisation (--teacher-input-mean/--teacher-input-std, e.g. ImageNet's 0.485,0.456,0.406 and 0.229,0.224,0.225), the channel order (RGB or BGR) and the scale (DistillKit feeds images in [0, 1]; a teacher trained on 0-255 needs --teacher-input-std 0.00392157)."
        log(String(format: "WARNING: the teacher %@ scores %.1f%% on the first %d labelled training rows, %@ chance (%.1f%%). %@",
                   path, accuracy * 100, indices.count, below ? "far below" : "near", chance * 100, advice))
    }
    return accuracy
}
