import DistillTensor
import Foundation

/// A CSV file with a header row (RFC 4180), and its conversion to a dataset.
///
/// Parsing: fields are separated by commas and records by `\n` or `\r\n`; a field in double
/// quotes may hold commas, newlines and doubled quotes (`""` for `"`); spaces and tabs around
/// unquoted fields are trimmed; blank lines and a UTF-8 byte-order mark are skipped. Text must be
/// UTF-8 without control characters other than tab (a NUL would end a number early: `5\0abc`).
/// Reading is linear in the file size, whatever the number of columns, and the cells are checked
/// against `MemoryBudget` as they are read.
///
/// Conversion (`dataset`, `regression`): a column is numeric when most of its cells are finite
/// numbers, and then every cell must be one; other columns (and those named in
/// `categoricalColumns`) are one-hot encoded, one feature per category in sorted order, named
/// `column=value`. Every error names the file, the line and the column.
///
/// Train and test files: infer a `CSVSchema` from the training table and encode the others with
/// it, so both get the same features and class indices even when a category is missing from one:
///
/// ```swift
/// let table = try CSVTable.load(trainURL)
/// let schema = try table.inferSchema(labelColumn: "species")
/// let train = try table.dataset(schema: schema)
/// let test = try CSVTable.read(testURL, schema: schema)
/// ```
public struct CSVTable: Sendable {
    /// The file the table came from (used in error messages).
    public let name: String
    /// Column names from the header row.
    public let header: [String]
    /// The data cells, row after row, `header.count` per row: one array rather than one per row,
    /// which for a file of many short rows took several times the memory of the cells themselves.
    private let cells: [String]
    /// Number of data rows.
    public let rowCount: Int
    /// The line (1-based) on which each row starts.
    public let lineNumbers: [Int]
    /// Each column's position by name, so that finding a column costs O(1), not O(columns).
    private let columnPositions: [String: Int]

    /// A table whose header names are unique and whose rows each have `header.count` fields.
    private init(name: String, header: [String], cells: [String], lineNumbers: [Int], columnPositions: [String: Int]) {
        self.name = name
        self.header = header
        self.cells = cells
        self.rowCount = lineNumbers.count
        self.lineNumbers = lineNumbers
        self.columnPositions = columnPositions
    }

    /// Default size guard for `load` and `read`: 512 MiB.
    public static let defaultMaxBytes = 512 << 20
    /// Most categories a one-hot column may have (an ID column would otherwise explode).
    public static let defaultMaxCategories = 1000
    /// Most classes a label column may have or imply (`LabeledDataset.maxClasses`).
    public static let maxClasses = LabeledDataset.maxClasses

    // MARK: Reading

    /// Parses a CSV file (after checking its size against `maxBytes`).
    public static func load(_ url: URL, maxBytes: Int = defaultMaxBytes) throws -> CSVTable {
        try parse(readFile(url, limit: maxBytes), name: url.path)
    }

    /// A labelled dataset from a CSV file: `labelColumn` holds the classes (nil: unlabelled),
    /// every other column becomes features. String labels become classes sorted by name;
    /// integer labels are used as class indices (`numClasses` = largest + 1).
    public static func read(_ url: URL, labelColumn: String?, categoricalColumns: Set<String> = [],
                            maxBytes: Int = defaultMaxBytes) throws -> LabeledDataset {
        try load(url, maxBytes: maxBytes).dataset(labelColumn: labelColumn, categoricalColumns: categoricalColumns)
    }

    /// A regression dataset from a CSV file: `targetColumn` must be numeric; every other column
    /// becomes features.
    public static func readRegression(_ url: URL, targetColumn: String, categoricalColumns: Set<String> = [],
                                      maxBytes: Int = defaultMaxBytes) throws -> RegressionDataset {
        try load(url, maxBytes: maxBytes).regression(targetColumn: targetColumn, categoricalColumns: categoricalColumns)
    }

    /// A labelled dataset from a CSV file encoded with `schema` (e.g. inferred from the training
    /// file), so that its features and classes line up with the training set's.
    public static func read(_ url: URL, schema: CSVSchema, ignoreUnknownCategories: Bool = false,
                            maxBytes: Int = defaultMaxBytes) throws -> LabeledDataset {
        try load(url, maxBytes: maxBytes).dataset(schema: schema, ignoreUnknownCategories: ignoreUnknownCategories)
    }

    /// Parses CSV text; `name` appears in error messages.
    public static func parse(_ data: Data, name: String) throws -> CSVTable {
        var cells: [String] = []
        var lines: [Int] = []
        var header: [String]?
        var columnPositions: [String: Int] = [:]
        // Each cell costs at least a String (16 bytes): a file of millions of tiny cells must fit the budget.
        let maxCells = MemoryBudget.limitBytes / MemoryLayout<String>.stride
        try data.withUnsafeBytes { raw in
            try Parser(bytes: raw.bindMemory(to: UInt8.self), name: name).parse(field: { cells.append($0) }) { line, fieldCount in
                guard let header else {
                    let names = cells.map { cell in cell.utf8.withContiguousStorageIfAvailable { String(decoding: Parser.trimmed($0), as: UTF8.self) } ?? cell }
                    columnPositions = try checkedHeader(names, line: line, name: name)
                    header = names
                    cells = []
                    return
                }
                guard fieldCount == header.count else {
                    throw DataError(file: name, at: "line \(line)", "\(fieldCount) fields, the header has \(header.count)")
                }
                guard cells.count <= maxCells else {
                    throw DataError(file: name, at: "line \(line)", "more than \(maxCells) cells, beyond the memory budget of \(MemoryBudget.describe(MemoryBudget.limitBytes)) (set DISTILL_MAX_MEMORY to raise it)")
                }
                lines.append(line)
            }
        }
        guard let header else { throw DataError(file: name, "empty file: no header row") }
        return CSVTable(name: name, header: header, cells: cells, lineNumbers: lines, columnPositions: columnPositions)
    }

    /// Each column's position, after checking that every name is non-empty and unique.
    private static func checkedHeader(_ header: [String], line: Int, name: String) throws -> [String: Int] {
        var seen: [String: Int] = [:]
        seen.reserveCapacity(header.count)
        for (i, column) in header.enumerated() {
            guard !column.isEmpty else { throw DataError(file: name, at: "line \(line)", "column \(i + 1) of the header has no name") }
            if let first = seen[column] {
                throw DataError(file: name, at: "line \(line)", "columns \(first + 1) and \(i + 1) are both named '\(abbreviated(column))'")
            }
            seen[column] = i
        }
        return seen
    }

    /// The data rows, each with `header.count` fields (built on each call: prefer `cell(row:column:)`).
    public var rows: [[String]] {
        (0..<rowCount).map { r in Array(cells[r * header.count ..< (r + 1) * header.count]) }
    }

    /// The field in data row `row` (from 0) and column `column`.
    public func cell(row: Int, column: Int) -> String { cells[row * header.count + column] }

    // MARK: Conversion

    /// Converts the table to a labelled dataset with an encoding inferred from this table;
    /// see `read`. To encode a test file the same way, use `inferSchema` and `dataset(schema:)`.
    public func dataset(labelColumn: String?, categoricalColumns: Set<String> = [],
                        maxCategories: Int = defaultMaxCategories) throws -> LabeledDataset {
        try dataset(schema: inferSchema(labelColumn: labelColumn, categoricalColumns: categoricalColumns, maxCategories: maxCategories))
    }

    /// Converts the table to a regression dataset with an encoding inferred from this table;
    /// see `readRegression`.
    public func regression(targetColumn: String, categoricalColumns: Set<String> = [],
                           maxCategories: Int = defaultMaxCategories) throws -> RegressionDataset {
        try regression(schema: inferSchema(targetColumn: targetColumn, categoricalColumns: categoricalColumns, maxCategories: maxCategories))
    }

    /// The encoding this table implies for a classification dataset: which columns are numeric,
    /// the sorted categories of the others, and the classes of `labelColumn` (nil: unlabelled).
    public func inferSchema(labelColumn: String?, categoricalColumns: Set<String> = [],
                            maxCategories: Int = defaultMaxCategories) throws -> CSVSchema {
        let labelIndex = try labelColumn.map { try columnIndex($0) }
        let features = try inferFeatures(excluding: labelIndex, categoricalColumns: categoricalColumns, maxCategories: maxCategories)
        guard let labelIndex else { return CSVSchema(features: features, label: .none) }
        for r in 0..<rowCount where cell(row: r, column: labelIndex).isEmpty {
            throw DataError(file: name, at: location(row: r, column: labelIndex), "missing label")
        }
        let column = header[labelIndex]
        if (0..<rowCount).allSatisfy({ Double(cell(row: $0, column: labelIndex)) != nil }) {
            let labels = try (0..<rowCount).map { try integerLabel(row: $0, column: labelIndex, numClasses: Self.maxClasses) }
            return CSVSchema(features: features, label: .integerClasses(column: column, numClasses: (labels.max() ?? -1) + 1))
        }
        let classNames = Set((0..<rowCount).map { cell(row: $0, column: labelIndex) }).sorted()
        guard classNames.count <= Self.maxClasses else {
            throw DataError(file: name, "label column '\(abbreviated(column))' has more than \(Self.maxClasses) distinct values")
        }
        return CSVSchema(features: features, label: .namedClasses(column: column, classNames: classNames))
    }

    /// The encoding this table implies for a regression dataset with `targetColumn` as target.
    public func inferSchema(targetColumn: String, categoricalColumns: Set<String> = [],
                            maxCategories: Int = defaultMaxCategories) throws -> CSVSchema {
        let target = try columnIndex(targetColumn)
        return CSVSchema(features: try inferFeatures(excluding: target, categoricalColumns: categoricalColumns, maxCategories: maxCategories),
                         label: .target(column: targetColumn))
    }

    /// Encodes the table with `schema` (typically inferred from the training file), so that a
    /// test file gets the same features in the same order and the same class indices. Columns
    /// are matched by name; a category or class the schema does not know is an error unless
    /// `ignoreUnknownCategories` (then its one-hot features are all zero; unknown classes still fail).
    public func dataset(schema: CSVSchema, ignoreUnknownCategories: Bool = false) throws -> LabeledDataset {
        try check(schema)
        let features = try encode(schema.features, ignoreUnknownCategories: ignoreUnknownCategories)
        switch schema.label {
        case .none:
            return try LabeledDataset(features: features, labels: [], numClasses: 0, featureNames: schema.featureNames, source: name)
        case .integerClasses(let column, let numClasses):
            let c = try columnIndex(column)
            let labels = try (0..<rowCount).map { try integerLabel(row: $0, column: c, numClasses: numClasses) }
            return try LabeledDataset(features: features, labels: labels, numClasses: numClasses,
                                      classNames: (0..<numClasses).map(String.init), featureNames: schema.featureNames, source: name)
        case .namedClasses(let column, let classNames):
            let c = try columnIndex(column)
            let index = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, $0) })
            let labels = try (0..<rowCount).map { r in
                let cell = self.cell(row: r, column: c)
                guard !cell.isEmpty else { throw DataError(file: name, at: location(row: r, column: c), "missing label") }
                guard let k = index[cell] else {
                    throw DataError(file: name, at: location(row: r, column: c), "unknown class '\(abbreviated(cell))' (known: \(abbreviatedList(classNames)))")
                }
                return k
            }
            return try LabeledDataset(features: features, labels: labels, numClasses: classNames.count,
                                      classNames: classNames, featureNames: schema.featureNames, source: name)
        case .target(let column):
            throw DataError(file: name, "the schema is for regression on '\(abbreviated(column))'; use regression(schema:)")
        }
    }

    /// Encodes the table as a regression dataset with `schema` (see `dataset(schema:)`).
    public func regression(schema: CSVSchema, ignoreUnknownCategories: Bool = false) throws -> RegressionDataset {
        guard case .target(let column) = schema.label else {
            throw DataError(file: name, "the schema has no regression target; use dataset(schema:)")
        }
        try check(schema)
        let features = try encode(schema.features, ignoreUnknownCategories: ignoreUnknownCategories)
        let c = try columnIndex(column)
        var values = [Float](repeating: 0, count: rowCount)
        for r in 0..<rowCount { values[r] = try number(row: r, column: c) }
        return try RegressionDataset(features: features, targets: Tensor(shape: [rowCount], scalars: values),
                                     featureNames: schema.featureNames, targetName: column)
    }

    /// Checks a schema before it sizes anything: it may come from a model file. Categories and
    /// class names must be unique (they become dictionary keys), and a label has 1...`maxClasses`
    /// classes.
    private func check(_ schema: CSVSchema) throws {
        func unique(_ names: [String], among what: String) throws {
            var seen = Set<String>()
            for n in names where !seen.insert(n).inserted {
                throw DataError(file: name, "the schema lists '\(abbreviated(n))' twice among \(what)")
            }
        }
        for column in schema.features {
            if let categories = column.categories { try unique(categories, among: "the categories of column '\(abbreviated(column.name))'") }
        }
        let classCount: Int
        switch schema.label {
        case .none, .target: return
        case .integerClasses(_, let numClasses): classCount = numClasses
        case .namedClasses(_, let classNames):
            try unique(classNames, among: "the class names")
            classCount = classNames.count
        }
        guard (1...Self.maxClasses).contains(classCount) else {
            throw DataError(file: name, "the schema gives the label \(classCount) classes, outside 1...\(Self.maxClasses)")
        }
    }

    private func columnIndex(_ column: String) throws -> Int {
        guard let i = columnPositions[column] else {
            throw DataError(file: name, "no column named '\(abbreviated(column))'; the columns are: \(abbreviatedList(header))")
        }
        return i
    }

    private func location(row: Int, column: Int) -> String { "line \(lineNumbers[row]), column \(column + 1) ('\(abbreviated(header[column]))')" }

    private static func parseNumber(_ s: String) -> Float? {
        guard let v = Float(s), v.isFinite else { return nil }
        return v
    }

    /// The cell as a finite number, or an error naming the line and column.
    private func number(row: Int, column: Int) throws -> Float {
        let cell = self.cell(row: row, column: column)
        guard !cell.isEmpty else { throw DataError(file: name, at: location(row: row, column: column), "missing value in a numeric column") }
        guard let v = Self.parseNumber(cell) else {
            throw DataError(file: name, at: location(row: row, column: column), "'\(abbreviated(cell))' is not a finite number (the column is numeric)")
        }
        return v
    }

    /// The cell as a class index in `0..<numClasses`.
    private func integerLabel(row r: Int, column c: Int, numClasses: Int) throws -> Int {
        let cell = self.cell(row: r, column: c)
        guard !cell.isEmpty else { throw DataError(file: name, at: location(row: r, column: c), "missing label") }
        guard let v = Double(cell), v.isFinite, v == v.rounded(), v >= 0, v < Double(numClasses) else {
            throw DataError(file: name, at: location(row: r, column: c),
                            "label '\(abbreviated(cell))' is not a class index (an integer in 0..<\(numClasses)); for a real-valued target, train a regression model with --target COLUMN (CSVTable.readRegression in the library)")
        }
        return Int(v)
    }

    private func inferFeatures(excluding skipped: Int?, categoricalColumns: Set<String>,
                               maxCategories: Int) throws -> [CSVSchema.Column] {
        guard rowCount > 0 else { throw DataError(file: name, "has a header but no data rows") }
        if let skipped, header.count == 1 {
            throw DataError(file: name, "no feature columns: '\(abbreviated(header[skipped]))' is the only column")
        }
        for c in categoricalColumns where columnPositions[c] == nil {
            throw DataError(file: name, "categoricalColumns names '\(abbreviated(c))', which is not a column; the columns are: \(abbreviatedList(header))")
        }
        var columns: [CSVSchema.Column] = []
        for c in header.indices where c != skipped {
            if !categoricalColumns.contains(header[c]) {
                var filled = 0, numbers = 0
                for r in 0..<rowCount where !cell(row: r, column: c).isEmpty {
                    filled += 1
                    if Self.parseNumber(cell(row: r, column: c)) != nil { numbers += 1 }
                }
                if numbers * 2 > filled {
                    columns.append(CSVSchema.Column(name: header[c], categories: nil))
                    continue
                }
            }
            var categories = Set<String>()
            for r in 0..<rowCount {
                let cell = self.cell(row: r, column: c)
                guard !cell.isEmpty else { throw DataError(file: name, at: location(row: r, column: c), "missing value in a categorical column") }
                categories.insert(cell)
                guard categories.count <= maxCategories else {
                    throw DataError(file: name, "column '\(abbreviated(header[c]))' has more than \(maxCategories) distinct values; drop it or raise maxCategories")
                }
            }
            columns.append(CSVSchema.Column(name: header[c], categories: categories.sorted()))
        }
        return columns
    }

    private func encode(_ columns: [CSVSchema.Column], ignoreUnknownCategories: Bool) throws -> Tensor {
        let width = columns.reduce(0) { $0 + ($1.categories?.count ?? 1) }
        let bytes = CheckedSize.multiply(rowCount, width).flatMap { CheckedSize.multiply($0, MemoryLayout<Float>.size) }
        guard let bytes, bytes <= ReadLimits.default.maxPayloadBytes else {
            throw DataError(file: name, "\(rowCount) rows × \(width) features is too large")
        }
        try checkBudget(bytes: bytes, file: name, for: "\(rowCount) rows × \(width) features")
        let plan: [(index: Int, categories: [String: Int]?, width: Int)] = try columns.map { column in
            (try columnIndex(column.name),
             column.categories.map { Dictionary(uniqueKeysWithValues: $0.enumerated().map { ($1, $0) }) },
             column.categories?.count ?? 1)
        }
        let out = Tensor.zeros([rowCount, width])
        let p = out.data
        for r in 0..<rowCount {
            var j = 0
            for (k, (c, categories, w)) in plan.enumerated() {
                if let categories {
                    let cell = self.cell(row: r, column: c)
                    guard !cell.isEmpty else { throw DataError(file: name, at: location(row: r, column: c), "missing value in a categorical column") }
                    if let index = categories[cell] {
                        p[r * width + j + index] = 1
                    } else if !ignoreUnknownCategories {
                        throw DataError(file: name, at: location(row: r, column: c),
                                        "unknown category '\(abbreviated(cell))' (known: \(abbreviatedList(columns[k].categories!)))")
                    }
                } else {
                    p[r * width + j] = try number(row: r, column: c)
                }
                j += w
            }
        }
        return out
    }
}

/// How a CSV table becomes tensors: the feature columns in order (numeric, or one-hot with a
/// fixed category list) and the label. Infer it from the training file, then encode validation
/// and test files with the same schema so their features and class indices line up. `Codable`,
/// so a trained model can keep it beside its weights.
public struct CSVSchema: Sendable, Codable, Equatable {
    /// One input column.
    public struct Column: Sendable, Codable, Equatable {
        /// The header name the column is matched by.
        public let name: String
        /// The sorted categories of a one-hot column; nil for a numeric column.
        public let categories: [String]?
        public init(name: String, categories: [String]?) { self.name = name; self.categories = categories }
    }

    /// What the label column holds.
    public enum Label: Sendable, Codable, Equatable {
        /// Unlabelled.
        case none
        /// Integer class indices used as they are.
        case integerClasses(column: String, numClasses: Int)
        /// String classes, index = position in the sorted `classNames`.
        case namedClasses(column: String, classNames: [String])
        /// A real-valued regression target.
        case target(column: String)
    }

    /// Input columns, in feature order.
    public let features: [Column]
    /// What the label column holds, if any.
    public let label: Label

    public init(features: [Column], label: Label) { self.features = features; self.label = label }

    /// Feature names in tensor order: the column name, or `column=category` per one-hot feature.
    public var featureNames: [String] {
        features.flatMap { c in c.categories.map { $0.map { "\(c.name)=\($0)" } } ?? [c.name] }
    }
}

/// RFC 4180 record splitter over raw bytes, tracking line numbers for error messages.
private struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    let name: String

    static let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")

    /// `field` without the spaces and tabs around it (byte by byte: the Foundation call it
    /// replaces took a third of the parse).
    static func trimmed(_ field: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        var start = 0, end = field.count
        while start < end && (field[start] == 0x20 || field[start] == 0x09) { start += 1 }
        while end > start && (field[end - 1] == 0x20 || field[end - 1] == 0x09) { end -= 1 }
        return UnsafeBufferPointer(rebasing: field[start..<end])
    }

    private func string(_ field: UnsafeBufferPointer<UInt8>, line: Int) throws -> String {
        guard let s = String(validating: field, as: UTF8.self) else {
            throw DataError(file: name, at: "line \(line)", "invalid UTF-8 text")
        }
        return s
    }

    /// Refuses a control character other than tab in a field: `5\0abc` must not read as 5 (number
    /// parsing stops at a NUL), and binary data given as a CSV fails on its first line.
    @inline(__always) private func checkText(_ byte: UInt8, line: Int, field: Int) throws {
        guard byte < 0x20 && byte != 0x09 else { return }
        throw DataError(file: name, at: "line \(line), column \(field)",
                        String(format: "control character 0x%02X in the field (a binary file, or not CSV text)", byte))
    }

    /// Calls `field` with each field in order and `endRecord(line, fieldCount)` after the last
    /// field of each record (`line`: where the record starts). Records are never held as arrays:
    /// the caller stores the fields where it wants them.
    func parse(field: (String) -> Void, endRecord: (_ line: Int, _ fieldCount: Int) throws -> Void) throws {
        let n = bytes.count
        var i = 0, line = 1
        if n >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { i = 3 }
        while i < n {
            // Blank lines between records are skipped.
            if bytes[i] == Self.lf { i += 1; line += 1; continue }
            if bytes[i] == Self.cr { i += (i + 1 < n && bytes[i + 1] == Self.lf) ? 2 : 1; line += 1; continue }
            let recordLine = line
            var fieldCount = 0
            record: while true {
                if i < n && bytes[i] == Self.quote {
                    let openLine = line
                    i += 1
                    var buffer: [UInt8] = []
                    while true {
                        guard i < n else { throw DataError(file: name, at: "line \(openLine)", "quoted field \(fieldCount + 1) is never closed") }
                        let b = bytes[i]
                        if b == Self.quote {
                            if i + 1 < n && bytes[i + 1] == Self.quote { buffer.append(b); i += 2; continue }
                            i += 1
                            break
                        }
                        if b == Self.lf { line += 1 } else if b < 0x20 && b != Self.cr { try checkText(b, line: line, field: fieldCount + 1) }
                        buffer.append(b)
                        i += 1
                    }
                    field(try buffer.withUnsafeBufferPointer { try string($0, line: openLine) })
                    fieldCount += 1
                    // Only spaces may stand between the closing quote and the delimiter.
                    while i < n && (bytes[i] == UInt8(ascii: " ") || bytes[i] == UInt8(ascii: "\t")) { i += 1 }
                    if i < n && bytes[i] != Self.comma && bytes[i] != Self.lf && bytes[i] != Self.cr {
                        throw DataError(file: name, at: "line \(line)", "unexpected character after the closing quote of field \(fieldCount)")
                    }
                } else {
                    let start = i
                    while i < n {
                        let b = bytes[i]
                        if b == Self.comma || b == Self.lf || b == Self.cr { break }
                        if b == Self.quote {
                            throw DataError(file: name, at: "line \(line)", "a quote inside unquoted field \(fieldCount + 1) (quote the whole field and double inner quotes)")
                        }
                        if b < 0x20 { try checkText(b, line: line, field: fieldCount + 1) }
                        i += 1
                    }
                    field(try string(Self.trimmed(UnsafeBufferPointer(rebasing: bytes[start..<i])), line: line))
                    fieldCount += 1
                }
                if i >= n { break record }
                switch bytes[i] {
                case Self.comma:
                    i += 1
                case Self.cr:
                    i += (i + 1 < n && bytes[i + 1] == Self.lf) ? 2 : 1
                    line += 1
                    break record
                default:  // lf
                    i += 1
                    line += 1
                    break record
                }
            }
            try endRecord(recordLine, fieldCount)
        }
    }
}
