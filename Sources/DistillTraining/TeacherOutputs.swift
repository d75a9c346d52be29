import DistillData
import DistillTensor
import Foundation

/// Teacher outputs kept in a file: what `distill cache-teacher` writes and `distill kd
/// --teacher-outputs` reads, so a teacher DistillKit cannot run (a model behind an API, an ensemble
/// in another language) can still be distilled from.
///
/// Layout: one row per training sample, in the order of the training file, one column per class:
/// `[N, C]`; or `[K, N, C]` for K augmented views per sample (view k of sample i is regenerated
/// from the augmentation record, see `augmentedViews`). Formats, chosen by extension:
/// - `.npy`: one array (any float or integer dtype);
/// - `.npz`: one array, or the one named by `array`;
/// - `.safetensors`: one tensor, or the one named by `array` (the augmentation record may sit in
///   its `__metadata__`);
/// - `.csv`: a header row, then one row per sample with C numeric cells (`[N, C]` only).
///
/// Every format may have a sidecar `FILE.json` (written by `cache-teacher`) recording the teacher,
/// the data and, for views, the augmentation (`views`, `shift`, `flip`, `seed`).
///
/// Before any training, `check` verifies the row count, that every value is finite and, for
/// probabilities, that each row is non-negative and sums to 1 within `probabilityTolerance`.
/// Errors name the file, the row (view and row for `[K, N, C]`; line and column for CSV) and the
/// problem. Memory: `.npy`, `.safetensors` and `.csv` are mapped and decoded straight into the one
/// tensor; an `.npz` entry is decompressed once and then decoded (two copies of that entry while
/// reading).
public enum TeacherOutputs {
    /// What the values are.
    public enum Kind: String, CaseIterable, Sendable {
        /// Unnormalised scores (distilled with `kdLoss`).
        case logits
        /// Class probabilities at temperature 1, e.g. scikit-learn's `predict_proba` (distilled
        /// with `softTargetLoss` on `p^(1/T)` renormalised).
        case probs
    }

    /// How far a probability row's sum may stray from 1.
    public static let probabilityTolerance: Float = 1e-3

    /// Values read from a file, with where they came from.
    public struct File {
        /// `[N, C]` or `[K, N, C]`.
        public var values: Tensor
        /// The file, as given (for messages).
        public var path: String
        /// The augmentation record and other notes (`views`, `shift`, `flip`, `seed`, `teacher`).
        public var record: [String: String]
        /// For CSV files: the line on which each row stands (for messages).
        public var lineNumbers: [Int]?
        /// For CSV files: the column names.
        public var columnNames: [String]?

        public init(values: Tensor, path: String, record: [String: String] = [:], lineNumbers: [Int]? = nil, columnNames: [String]? = nil) {
            self.values = values; self.path = path; self.record = record; self.lineNumbers = lineNumbers; self.columnNames = columnNames
        }

        /// Number of augmented views (1 for `[N, C]`).
        public var views: Int { values.rank == 3 ? values.shape[0] : 1 }
        /// Samples per view.
        public var rows: Int { values.shape[values.rank - 2] }
        /// Columns (classes, or outputs for regression).
        public var classes: Int { values.shape[values.rank - 1] }

        /// Where row `row` of view `view` is, in words.
        func location(view: Int, row: Int, column: Int? = nil) -> String {
            var s = values.rank == 3 ? "view \(view), row \(row)" : "row \(row)"
            if let lineNumbers { s += " (line \(lineNumbers[row]))" }
            if let column {
                if let columnNames { s += ", column '\(columnNames[column])'" } else { s += ", column \(column)" }
            }
            return s
        }
    }

    // MARK: Reading

    /// Reads teacher outputs from `path`; `array` names the array of a multi-array `.npz` or
    /// `.safetensors` file.
    public static func read(_ path: String, array: String? = nil) throws -> File {
        let url = URL(fileURLWithPath: path)
        try InputFile.checkRegular(path, what: "teacher outputs")
        var record = readSidecar(path)
        var file: File
        switch url.pathExtension.lowercased() {
        case "npy":
            file = File(values: try NPY.read(url), path: path, record: [:])
        case "npz":
            let entries = try NPZ.readEntries(url)
            let key = try pick(array, from: Array(entries.keys), path: path)
            file = File(values: try NPY.decode(entries[key]!, name: "\(path)[\(key).npy]"), path: path, record: [:])
        case "safetensors":
            let decoded = try Safetensors.decode(try InputFile.read(url, what: "teacher outputs"), name: path)
            let key = try pick(array, from: Array(decoded.tensors.keys), path: path)
            for (k, v) in decoded.metadata where k.hasPrefix("distillkit.") { record[String(k.dropFirst("distillkit.".count))] = v }
            file = File(values: decoded.tensors[key]!, path: path, record: [:])
        case "csv":
            file = try readCSV(url)
        default:
            throw DataError(file: path, "unsupported teacher-outputs format '.\(url.pathExtension)'; DistillKit reads .npy, .npz, .safetensors and .csv")
        }
        file.record = record
        if file.values.rank == 1 { file.values = file.values.reshaped([file.values.shape[0], 1]) }  // one output per sample (regression)
        guard file.values.rank == 2 || file.values.rank == 3, file.values.shape.last! >= 1 else {
            throw DataError(file: path, "teacher outputs must be [N, C] (one row per training sample) or [K, N, C] (K augmented views), got shape \(file.values.shape)")
        }
        return file
    }

    private static func pick(_ name: String?, from keys: [String], path: String) throws -> String {
        if let name {
            guard keys.contains(name) else { throw DataError(file: path, "no array '\(name)' (found: \(keys.sorted().joined(separator: ", ")))") }
            return name
        }
        guard keys.count == 1 else {
            throw DataError(file: path, keys.isEmpty ? "holds no arrays"
                            : "holds \(keys.count) arrays (\(keys.sorted().joined(separator: ", "))); name one with --teacher-outputs-array")
        }
        return keys[0]
    }

    /// The sidecar `FILE.json` as strings, or empty.
    static func readSidecar(_ path: String) -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path + ".json"),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        return object.mapValues { "\($0)" }
    }

    /// A CSV of numbers: a header row naming the C columns, then one row per sample. Parsed in
    /// two passes over the mapped file (count the rows, then decode straight into the tensor).
    /// Missing and non-numeric cells are errors naming the line and the column.
    public static func readCSV(_ url: URL) throws -> File {
        let path = url.path
        let data = try InputFile.read(url, what: "teacher outputs")
        return try data.withUnsafeBytes { raw -> File in
            let bytes = raw.bindMemory(to: UInt8.self)
            // Lines as (start, end, number), blank lines skipped, BOM and \r removed.
            var lines: [(Int, Int, Int)] = []
            var start = bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0
            var lineNumber = 1
            var i = start
            while i <= bytes.count {
                if i == bytes.count || bytes[i] == UInt8(ascii: "\n") {
                    var end = i
                    if end > start && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                    var blank = true
                    for j in start..<end where bytes[j] != 0x20 && bytes[j] != 0x09 { blank = false; break }
                    if !blank { lines.append((start, end, lineNumber)) }
                    lineNumber += 1
                    start = i + 1
                }
                i += 1
            }
            guard let headerLine = lines.first else { throw DataError(file: path, "empty file: no header row") }
            func fields(_ line: (Int, Int, Int)) -> [Substring] {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[line.0..<line.1]), as: UTF8.self)
                return text.split(separator: ",", omittingEmptySubsequences: false).map { cell in
                    var c = cell.trimmingCharacters(in: .whitespaces)[...]
                    if c.count >= 2 && c.first == "\"" && c.last == "\"" { c = c.dropFirst().dropLast() }
                    return c
                }
            }
            let header = fields(headerLine).map(String.init)
            let c = header.count
            if let empty = header.firstIndex(where: \.isEmpty) {
                throw DataError(file: path, at: "line \(headerLine.2)", "column \(empty + 1) of the header has no name")
            }
            let n = lines.count - 1
            // Every cell takes at least one byte: a header that claims more cells than the file
            // has bytes is refused (naming the first short row) before the table is allocated.
            guard let cells = CheckedSize.multiply(n, c), cells <= bytes.count else {
                for line in lines.dropFirst() {
                    var commas = 0
                    for j in line.0..<line.1 where bytes[j] == UInt8(ascii: ",") { commas += 1 }
                    if commas + 1 != c { throw DataError(file: path, at: "line \(line.2)", "\(commas + 1) fields, the header has \(c)") }
                }
                throw DataError(file: path, "\(n) rows of \(c) columns do not fit in \(bytes.count) bytes")
            }
            try MemoryBudget.check(bytes: CheckedSize.multiply(cells, 4), for: "\(path): \(n) rows × \(c) columns of teacher outputs")
            let out = Tensor(uninitializedShape: [n, c])
            let dst = out.data
            var numbers = [Int](repeating: 0, count: n)
            for r in 0..<n {
                let line = lines[r + 1]
                numbers[r] = line.2
                let cells = fields(line)
                guard cells.count == c else {
                    throw DataError(file: path, at: "line \(line.2)", "\(cells.count) fields, the header has \(c)")
                }
                for (j, cell) in cells.enumerated() {
                    guard !cell.isEmpty else {
                        throw DataError(file: path, at: "line \(line.2), column '\(header[j])'", "missing value (row \(r))")
                    }
                    // Float("5\0abc") stops at the NUL and reads 5: a cell with a control character is not a number.
                    guard !cell.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }), let v = Float(cell) else {
                        throw DataError(file: path, at: "line \(line.2), column '\(header[j])'", "'\(cell)' is not a number (row \(r))")
                    }
                    dst[r * c + j] = v
                }
            }
            return File(values: out, path: path, record: [:], lineNumbers: numbers, columnNames: header)
        }
    }

    // MARK: Checking

    /// Checks `file` against the training set before anything is trained: `expectedRows` rows
    /// per view, `expectedClasses` columns (when given), every value finite, and for
    /// probabilities every value ≥ 0 and every row summing to 1 within `probabilityTolerance`.
    public static func check(_ file: File, kind: Kind, expectedRows: Int, expectedClasses: Int?) throws {
        let path = file.path
        guard file.rows == expectedRows else {
            throw DataError(file: path, "\(file.rows) rows of teacher outputs\(file.views > 1 ? " per view" : ""), the training data has \(expectedRows) rows (one row per training sample, in file order)")
        }
        if let expectedClasses, file.classes != expectedClasses {
            throw DataError(file: path, "\(file.classes) columns of teacher outputs, the training data has \(expectedClasses) classes")
        }
        let c = file.classes, n = file.rows, p = file.values.data
        for k in 0..<file.views {
            for r in 0..<n {
                let row = p + (k * n + r) * c
                var sum = 0.0
                for j in 0..<c {
                    let v = row[j]
                    guard v.isFinite else {
                        throw DataError(file: path, at: file.location(view: k, row: r, column: j), "the value is \(v); teacher outputs must be finite")
                    }
                    if kind == .probs && v < 0 {
                        throw DataError(file: path, at: file.location(view: k, row: r, column: j), "negative probability \(v)")
                    }
                    sum += Double(v)
                }
                if kind == .probs && abs(sum - 1) > Double(probabilityTolerance) {
                    throw DataError(file: path, at: file.location(view: k, row: r),
                                    "probabilities sum to \(Float(sum)), not 1 (tolerance \(probabilityTolerance)); are these logits? use --teacher-outputs-kind logits")
                }
            }
        }
    }

    // MARK: Writing

    /// Writes `values` to `path` (format by extension: .npy, .npz with the array `logits`,
    /// .safetensors with the tensor `logits` and `record` as `distillkit.*` metadata, or .csv with
    /// columns `class_0 ...`), plus the sidecar `path.json` holding `record`. Atomic.
    /// The file formats `write` and `read` know, by extension.
    public static let formats = ["npy", "npz", "safetensors", "csv"]
    /// Most augmented views `cache-teacher` writes per sample.
    public static let maxViews = 1000

    public static func write(_ values: Tensor, to path: String, record: [String: String], classNames: [String] = []) throws {
        let url = URL(fileURLWithPath: path)
        switch url.pathExtension.lowercased() {
        case "npy": try NPY.write(values, to: url)
        case "npz": try NPZ.write(["logits": values], to: url)
        case "safetensors":
            try Safetensors.save(["logits": values], to: url,
                                 metadata: Dictionary(uniqueKeysWithValues: record.map { ("distillkit.\($0.key)", $0.value) }))
        case "csv":
            guard values.rank == 2 else { throw DataError(file: path, "a CSV holds [N, C] outputs; write \(values.shape) as .npy, .npz or .safetensors") }
            let c = values.shape[1]
            let names = classNames.count == c ? classNames.map { "\"\($0.replacingOccurrences(of: "\"", with: "\"\""))\"" } : (0..<c).map { "class_\($0)" }
            var text = names.joined(separator: ",") + "\n"
            let p = values.data
            for r in 0..<values.shape[0] {
                text += (0..<c).map { "\(p[r * c + $0])" }.joined(separator: ",") + "\n"
            }
            try AtomicFile.write(Data(text.utf8), to: url)
        default:
            throw DataError(file: path, "unsupported output format '.\(url.pathExtension)'; write .npy, .npz, .safetensors or .csv")
        }
        let json = try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(json, to: URL(fileURLWithPath: path + ".json"))
    }

    // MARK: Views

    /// The training set seen through `views` augmented views (shift up to `shift` pixels, random
    /// horizontal flips): `[K·N, ...]`, view k of sample i at row `k·N + i`, labels repeated.
    /// Deterministic in `seed`: `cache-teacher` and `kd --teacher-outputs` regenerate the same views.
    public static func augmentedViews(_ dataset: LabeledDataset, views: Int, shift: Int, flip: Bool, seed: UInt64) throws -> LabeledDataset {
        guard views >= 1 else { throw DataError("augmented views: --views must be at least 1, got \(views)") }
        var ops: [Augmentation.Operation] = []
        if shift > 0 { ops.append(.shift(maxPixels: shift)) }
        if flip { ops.append(.horizontalFlip(probability: 0.5)) }
        let augmentation = try Augmentation(ops)
        if !ops.isEmpty && dataset.featureShape.count != 4 { throw DataError("augmented views: shift and flip need images [N, C, H, W], got \(dataset.featureShape)") }
        let n = dataset.count, rowSize = dataset.exampleSize, chunk = 1024
        let out = Tensor(uninitializedShape: [views * n] + dataset.exampleShape)
        for k in 0..<views {
            var start = 0
            while start < n {
                let count = min(chunk, n - start)
                let part = dataset.rows(start..<(start + count))
                var generator = SeededGenerator(seed: mixSeed(seed, UInt64(k), UInt64(start)))
                let augmented = ops.isEmpty ? part : try augmentation.apply(to: part, using: &generator)
                (out.data + (k * n + start) * rowSize).update(from: augmented.data, count: count * rowSize)
                start += count
            }
        }
        let labels = dataset.labels.isEmpty ? [] : Array((0..<views).map { _ in dataset.labels }.joined())
        return try LabeledDataset(features: out, labels: labels, numClasses: dataset.numClasses,
                                  classNames: dataset.classNames, featureNames: dataset.featureNames)
    }

    /// The teacher's outputs for every row of `inputs` (`[N, ...]`), computed in batches: `[N, C]`.
    public static func compute(_ teacher: Teacher, inputs: LabeledDataset, batchSize: Int = 256) throws -> Tensor {
        try CachedTeacher.precomputed(from: teacher, inputs: inputs, batchSize: batchSize).logitTable
    }

    /// A seed for cached views and mixup partners: `SeededGenerator.mix` on this file's own stream
    /// (fixed: files written with a recorded seed replay the same views).
    static func mixSeed(_ values: UInt64...) -> UInt64 { SeededGenerator.mix(start: 0x243F_6A88_85A3_08D3, values) }

    /// `p^(1/T)` renormalised per row: probabilities at temperature T from probabilities at
    /// temperature 1 (equal to `softmax(log p / T)`; zeros stay zero).
    public static func temperedProbabilities(_ p: Tensor, temperature: Float) -> Tensor {
        precondition(p.rank == 2, "temperedProbabilities: expected [N, C], got \(p.shape)")
        if temperature == 1 { return p }
        let n = p.shape[0], c = p.shape[1]
        let out = Tensor(uninitializedShape: p.shape)
        let src = p.data, dst = out.data
        for r in 0..<n {
            var sum: Float = 0
            for j in 0..<c {
                let v = src[r * c + j] > 0 ? Foundation.pow(src[r * c + j], 1 / temperature) : 0
                dst[r * c + j] = v; sum += v
            }
            let scale = sum > 0 ? 1 / sum : 0
            for j in 0..<c { dst[r * c + j] *= scale }
        }
        return out
    }
}

/// A cached teacher whose file holds class probabilities rather than logits: the objective's
/// `kd` term then uses `softTargetLoss` on `p^(1/T)` renormalised instead of `kdLoss`.
public final class CachedProbabilityTeacher: Teacher {
    public let table: CachedTeacher
    public var name: String { table.name }
    public var parameterCount: Int { 0 }
    public var bytes: Int { 0 }
    public init(probabilities: Tensor, name: String) { table = CachedTeacher(logits: probabilities, name: name) }
    /// Returns the probabilities (argmax is the teacher's prediction, as with logits).
    public func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        try table.forward(inputs, indices: indices, features: features)
    }
}

/// More transfer data than labels: what a training batch becomes when only some rows keep their
/// labels (`--label-limit`) and when mixed inputs are added (`--mixup`).
public enum TransferSet {
    /// The inputs, labels and dataset row indices the trainer uses for a batch:
    /// - rows with index ≥ `labelLimit` get the label -1 (no cross-entropy; the teacher still labels them);
    /// - with `mixup` α, `batch.count` mixed inputs `λ·x_i + (1−λ)·x_π(i)` (λ ~ Beta(α, α) per pair,
    ///   π a seeded permutation of the batch) are appended, with label -1 and index -1 (only a
    ///   teacher in the loop can label them). Deterministic in (`seed`, `step`).
    public static func prepare(inputs: Tensor, labels batchLabels: [Int], indices batchIndices: [Int], labelLimit: Int?, mixup: Float?,
                               seed: UInt64, step: Int) -> (Tensor, [Int], [Int]) {
        var labels = batchLabels
        var indices = batchIndices
        let count = batchIndices.count
        if let labelLimit, !labels.isEmpty {
            labels = zip(indices, labels).map { $0 < labelLimit ? $1 : -1 }
        }
        guard let alpha = mixup, count > 0 else { return (inputs, labels, indices) }
        var g = SeededGenerator(seed: TeacherOutputs.mixSeed(seed, 0x4D49_5855, UInt64(step)))
        let n = count, rowSize = inputs.count / n
        let partner = g.permutation(n)
        let out = Tensor(uninitializedShape: [2 * n] + Array(inputs.shape.dropFirst()))
        let src = inputs.data, dst = out.data
        dst.update(from: src, count: n * rowSize)
        for i in 0..<n {
            let lambda = Float(beta(alpha: Double(alpha), using: &g))
            let a = src + i * rowSize, b = src + partner[i] * rowSize, o = dst + (n + i) * rowSize
            for j in 0..<rowSize { o[j] = lambda * a[j] + (1 - lambda) * b[j] }
        }
        if !labels.isEmpty { labels += [Int](repeating: -1, count: n) }
        indices += [Int](repeating: -1, count: n)
        return (out, labels, indices)
    }

    /// A Beta(α, α) sample: X/(X+Y) with X, Y ~ Gamma(α).
    static func beta(alpha: Double, using g: inout SeededGenerator) -> Double {
        let x = gamma(alpha, using: &g), y = gamma(alpha, using: &g)
        return x + y > 0 ? x / (x + y) : 0.5
    }

    /// Gamma(shape k, scale 1) by Marsaglia and Tsang (2000); for k < 1, Gamma(k+1)·U^(1/k).
    static func gamma(_ k: Double, using g: inout SeededGenerator) -> Double {
        if k < 1 { return gamma(k + 1, using: &g) * Foundation.pow(max(g.nextUnitDouble(), 1e-300), 1 / k) }
        let d = k - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat { x = g.nextGaussian(); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = g.nextUnitDouble()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if Foundation.log(max(u, 1e-300)) < 0.5 * x * x + d * (1 - v + Foundation.log(v)) { return d * v }
        }
    }
}

extension TeacherOutputs {
    /// Which rows of the training file the loaded training set holds, in order, and how many rows
    /// the file has: all of them, or the 80% `DataSource` keeps when it splits a `.csv` itself.
    /// (`--train-limit` is applied afterwards by `teacher(for:)`.)
    public static func trainingFileRows(_ experiment: Experiment, loadedTrain: Int, loadedTest: Int, preloaded: Bool) -> (rows: [Int], total: Int) {
        if !preloaded && experiment.testData == nil && experiment.data.lowercased().hasSuffix(".csv") {
            let total = loadedTrain + loadedTest
            return (DataSource.csvTrainingRows(total: total, seed: experiment.options.seed), total)
        }
        return (Array(0..<loadedTrain), loadedTrain)
    }

    /// Reads `experiment.teacherOutputs`, checks it against the training file (rows, classes,
    /// finiteness, probabilities), and returns the cached teacher for the training rows and the
    /// training set it labels (`K·N` rows for `[K, N, C]` outputs: the regenerated views).
    public static func teacher(for experiment: Experiment, train: LabeledDataset, fileRows: (rows: [Int], total: Int),
                               objective: DistillationObjective) throws -> (teacher: Teacher, train: LabeledDataset) {
        guard let path = experiment.teacherOutputs else { throw TensorError("no teacher outputs given") }
        let kind = experiment.teacherOutputsKind
        if kind == .probs, let bad = objective.terms.first(where: { ![.kd, .ce].contains($0.method) }) {
            throw TensorError("\(path): probabilities distill with kd (softTargetLoss); '\(bad.method.rawValue)' needs teacher logits (--teacher-outputs-kind logits)")
        }
        if !objective.teacherFeatureNames.isEmpty {
            throw TensorError("\(path): cached teacher outputs hold logits only; feature methods need the teacher model")
        }
        let file = try read(path, array: experiment.teacherOutputsArray)
        // Every row of the file is checked, those of held-out rows too: a bad file is refused whole.
        let total = file.rows == train.count ? train.count : fileRows.total
        try check(file, kind: kind, expectedRows: total, expectedClasses: train.isLabeled || train.numClasses > 0 ? train.numClasses : nil)
        var rows = file.rows == train.count ? Array(0..<train.count) : fileRows.rows
        if rows.count > train.count { rows = Array(rows.prefix(train.count)) }  // --train-limit
        var values = file.values
        var transfer = train
        if file.views > 1 {
            guard file.rows == train.count else {
                throw TensorError("\(path): augmented views are replayed for the whole training file; drop --train-limit and give --test-data")
            }
            guard experiment.options.shift == 0 && !experiment.options.flip else {
                throw TensorError("\(path): the outputs hold \(file.views) augmented views; the views are replayed, so drop --shift/--flip")
            }
            guard let seed = file.record["seed"].flatMap(UInt64.init) else {
                throw TensorError("\(path): \(file.views) views but no augmentation record (\(path).json or safetensors metadata with seed, shift, flip); write it with distill cache-teacher --views")
            }
            let shift = Int(file.record["shift"] ?? "0") ?? 0, flip = file.record["flip"] == "true" || file.record["flip"] == "1"
            transfer = try augmentedViews(train, views: file.views, shift: shift, flip: flip, seed: seed)
            rows = (0..<file.views).flatMap { k in rows.map { k * file.rows + $0 } }
            values = values.reshaped([file.views * file.rows, file.classes])
        }
        if rows != Array(0..<values.shape[0]) { values = withNoGrad { values.indexSelect(axis: 0, indices: rows) } }
        let name = "cached \(kind.rawValue) (\(URL(fileURLWithPath: path).lastPathComponent))"
        if kind == .probs {
            objective.teacherGivesProbabilities = true
            return (CachedProbabilityTeacher(probabilities: values, name: name), transfer)
        }
        return (CachedTeacher(logits: values, name: name), transfer)
    }
}
