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

        /// How the views of a `[K, N, C]` file were made (`cache-teacher --views K`), from its
        /// record; throws when the record is missing, since the views could not be regenerated.
        public func viewAugmentation() throws -> (shift: Int, flip: Bool, seed: UInt64) {
            guard let seed = record["seed"].flatMap(UInt64.init) else {
                throw TensorError("\(path): \(views) views but no augmentation record (\(path).json or safetensors metadata with seed, shift, flip); write it with distill cache-teacher --views")
            }
            return (Int(record["shift"] ?? "0") ?? 0, record["flip"] == "true" || record["flip"] == "1", seed)
        }

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
        switch FileKind(path) {
        case .npy:
            file = File(values: try NPY.read(url), path: path, record: [:])
        case .npz:
            let entries = try NPZ.readEntries(url)
            let key = try pick(array, from: Array(entries.keys), path: path)
            file = File(values: try NPY.decode(entries[key]!, name: "\(path)[\(key).npy]"), path: path, record: [:])
        case .safetensors:
            let decoded = try Safetensors.decode(try InputFile.read(url, what: "teacher outputs"), name: path)
            let key = try pick(array, from: Array(decoded.tensors.keys), path: path)
            for (k, v) in decoded.metadata where k.hasPrefix("distillkit.") { record[String(k.dropFirst("distillkit.".count))] = v }
            file = File(values: decoded.tensors[key]!, path: path, record: [:])
        case .csv:
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
    /// The file formats `write` and `read` know.
    public static let formats: [FileKind] = [.npy, .npz, .safetensors, .csv]
    /// Most augmented views `cache-teacher` writes per sample.
    public static let maxViews = 1000

    public static func write(_ values: Tensor, to path: String, record: [String: String], classNames: [String] = []) throws {
        let url = URL(fileURLWithPath: path)
        switch FileKind(path) {
        case .npy: try NPY.write(values, to: url)
        case .npz: try NPZ.write(["logits": values], to: url)
        case .safetensors:
            try Safetensors.save(["logits": values], to: url,
                                 metadata: Dictionary(uniqueKeysWithValues: record.map { ("distillkit.\($0.key)", $0.value) }))
        case .csv:
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
}
