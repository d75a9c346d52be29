import DistillData
import DistillTensor
import Foundation

/// Debian's package descriptions as a text corpus: every package's section, one-line summary and
/// long description, with a fixed train/test split.
///
/// Sources: `apt-cache dumpavail` gives each package's `Package`, `Section`, `Description` (the
/// summary; on Debian's own archives the long description is not there) and `Description-md5`;
/// the long descriptions are in apt's `Translation-en` index files (`Description-en`, matched by
/// `Description-md5`), which apt downloads unless `Acquire::Languages` is "none" (Debian's Docker
/// images set that: `apt-get update -o Acquire::Languages=en` fetches them). A `Description` that
/// carries its long text itself (other archives, older apt) is used as it is.
///
/// Each long description keeps its lines (`\n`; a ` .` line is an empty line, a paragraph break).
/// The package's own name is removed from summary and description (`DebianPackages.removingName`)
/// so that neither task can be solved by reading the name. Entries: one per package name (the
/// first stanza with a long description wins), sorted by name; packages without a section or a
/// long description are dropped and counted.
public enum DebianPackages {
    /// Which part of the fixed split an entry belongs to.
    public enum Split: String, Sendable, Codable, CaseIterable {
        case train, test
    }

    /// One package.
    public struct Entry: Sendable, Equatable {
        public var package: String
        /// The section without its archive area (`contrib/games` → `games`).
        public var section: String
        public var split: Split
        /// The one-line summary (the retrieval query).
        public var summary: String
        /// The long description (the retrieval corpus and the classification input).
        public var description: String

        public init(package: String, section: String, split: Split, summary: String, description: String) {
            self.package = package
            self.section = section
            self.split = split
            self.summary = summary
            self.description = description
        }
    }

    /// What parsing kept and dropped.
    public struct Statistics: Sendable, Equatable, Codable {
        /// Stanzas with a `Package` field in the package list.
        public var stanzas = 0
        /// Long descriptions found in the translation files.
        public var translations = 0
        /// Stanzas of a package already seen (another version or archive), skipped.
        public var duplicates = 0
        /// Packages dropped for want of a section or a long description.
        public var withoutSection = 0
        public var withoutLongDescription = 0
        /// Entries in each split.
        public var train = 0
        public var test = 0
        public init() {}
        public var entries: Int { train + test }

        enum CodingKeys: String, CodingKey {
            case stanzas, translations, duplicates, train, test
            case withoutSection = "without_section", withoutLongDescription = "without_long_description"
        }
    }

    /// The columns of the CSV file, in order.
    public static let csvColumns = ["package", "section", "split", "summary", "description"]
    /// The share of packages in the test split, in percent.
    public static let testPercent: UInt64 = 20

    // MARK: Parsing

    /// The corpus from a package list (`apt-cache dumpavail` output) and the `Translation-en`
    /// files' text; `source` names the list in errors. An empty result is an error that says how
    /// to get the descriptions.
    public static func parse(packages: String, translations: [String] = [], source: String) throws -> (entries: [Entry], statistics: Statistics) {
        var statistics = Statistics()
        var longByDigest: [String: (summary: String, long: String)] = [:]
        var longByPackage: [String: (summary: String, long: String)] = [:]
        for text in translations {
            for stanza in ControlStanza.parse(text) {
                guard let description = stanza.fields["Description-en"] ?? stanza.fields["Description"] else { continue }
                let (summary, long) = splitDescription(description)
                guard !long.isEmpty else { continue }
                statistics.translations += 1
                if let digest = stanza.fields["Description-md5"] { longByDigest[digest] = longByDigest[digest] ?? (summary, long) }
                if let name = stanza.fields["Package"] { longByPackage[name] = longByPackage[name] ?? (summary, long) }
            }
        }
        var seen = Set<String>()
        var entries: [Entry] = []
        var packagesSeen = 0
        for stanza in ControlStanza.parse(packages) {
            guard let name = stanza.fields["Package"], !name.isEmpty else { continue }
            packagesSeen += 1
            guard !seen.contains(name) else { statistics.duplicates += 1; continue }
            guard let rawSection = stanza.fields["Section"], let section = rawSection.split(separator: "/").last.map(String.init),
                  !section.trimmingCharacters(in: .whitespaces).isEmpty else {
                statistics.withoutSection += 1
                continue
            }
            var (summary, long) = splitDescription(stanza.fields["Description"] ?? stanza.fields["Description-en"] ?? "")
            if long.isEmpty, let found = stanza.fields["Description-md5"].flatMap({ longByDigest[$0] }) ?? longByPackage[name] {
                if summary.isEmpty { summary = found.summary }
                long = found.long
            }
            let description = removingName(name, from: long)
            guard !description.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                statistics.withoutLongDescription += 1
                continue
            }
            seen.insert(name)
            let split = self.split(forPackage: name)
            if split == .train { statistics.train += 1 } else { statistics.test += 1 }
            entries.append(Entry(package: name, section: section.trimmingCharacters(in: .whitespaces), split: split,
                                 summary: removingName(name, from: summary), description: description))
        }
        statistics.stanzas = packagesSeen
        guard packagesSeen > 0 else {
            throw TextError.emptyCorpus(source: source, advice: "the package list holds no package stanzas (run `apt-get update` first)")
        }
        guard !entries.isEmpty else {
            throw TextError.emptyCorpus(source: source, advice: """
                none of its \(packagesSeen) packages has a long description: apt keeps them in Translation-en files, \
                which Debian's Docker images do not download (Acquire::Languages "none"); \
                run `apt-get update -o Acquire::Languages=en`
                """)
        }
        entries.sort { $0.package < $1.package }
        return (entries, statistics)
    }

    /// A control-file `Description` value as (summary, long description): the first line, then
    /// the continuation lines without their leading space, ` .` lines as empty lines.
    static func splitDescription(_ value: String) -> (summary: String, long: String) {
        let lines = value.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).map { Substring($0) }
        guard let first = lines.first else { return ("", "") }
        var body: [Substring] = []
        for line in lines.dropFirst() {
            var text = line
            if text.first == " " || text.first == "\t" { text = text.dropFirst() }
            body.append(text == "." ? "" : text)
        }
        while body.last?.allSatisfy({ $0 == " " || $0 == "\t" }) == true { body.removeLast() }
        while body.first?.allSatisfy({ $0 == " " || $0 == "\t" }) == true { body.removeFirst() }
        return (cleaned(first.trimmingCharacters(in: .whitespaces)), cleaned(body.joined(separator: "\n")))
    }

    /// Text with control characters other than tab and line feed replaced by spaces (a CSV cell
    /// must not hold them; the tokenizer treats them as spaces or nothing anyway).
    static func cleaned(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 < 0x20 && $0 != 0x0A && $0 != 0x09 || $0 == 0x7F }) else { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { s in
            (s.value < 0x20 && s.value != 0x0A && s.value != 0x09) || s.value == 0x7F ? " " : s
        }))
    }

    /// `text` without the package name `name` wherever it stands as a word of its own, compared
    /// without case. A name's neighbours may not be name characters (ASCII letters and digits,
    /// `-`, `+`, `_`, or a `.` followed by a letter or digit), so `foo` goes from "foo is" and
    /// "(foo)." but stays in "libfoo", "foo-utils" and "foo.conf". A space left doubled by the
    /// removal is dropped.
    public static func removingName(_ name: String, from text: String) -> String {
        let key = Array(name.lowercased().utf8)
        guard !key.isEmpty else { return text }
        let bytes = Array(text.utf8)
        guard bytes.count >= key.count else { return text }
        func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b + 32 : b }
        func isAlnum(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
        func isNameByte(at i: Int) -> Bool {
            guard i >= 0 && i < bytes.count else { return false }
            let b = bytes[i]
            if isAlnum(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") || b == UInt8(ascii: "_") { return true }
            return b == UInt8(ascii: ".") && i + 1 < bytes.count && isAlnum(bytes[i + 1])
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        var removedAny = false
        while i < bytes.count {
            if i + key.count <= bytes.count && lower(bytes[i]) == key[0] && !isNameByte(at: i - 1) && !isNameByte(at: i + key.count)
                && (0..<key.count).allSatisfy({ lower(bytes[i + $0]) == key[$0] }) {
                removedAny = true
                i += key.count
                if out.last == UInt8(ascii: " ") && i < bytes.count && bytes[i] == UInt8(ascii: " ") { i += 1 }
                continue
            }
            out.append(bytes[i])
            i += 1
        }
        guard removedAny else { return text }
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    /// The split of a package: FNV-1a (64-bit) of its name's UTF-8 bytes; `testPercent` of the
    /// hash values go to the test split. Fixed for a name, whatever else the list holds.
    public static func split(forPackage name: String) -> Split {
        var hash: UInt64 = 0xcbf29ce4_84222325
        for b in name.utf8 {
            hash ^= UInt64(b)
            hash = hash &* 0x100_0000_01b3
        }
        return hash % 100 < testPercent ? .test : .train
    }

    // MARK: CSV

    /// The entries as CSV (`csvColumns`; text fields quoted, quotes doubled, lines kept in cells).
    public static func csv(_ entries: [Entry]) -> String {
        var out = csvColumns.joined(separator: ",") + "\n"
        for e in entries {
            out += [e.package, e.section, e.split.rawValue, e.summary, e.description].map(csvField).joined(separator: ",")
            out += "\n"
        }
        return out
    }

    /// A field quoted when it must be (a comma, quote, line break, or spaces the reader would trim).
    static func csvField(_ s: String) -> String {
        let needsQuotes = s.isEmpty || s.utf8.contains { $0 == 0x2C || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D }
            || s.first == " " || s.first == "\t" || s.last == " " || s.last == "\t"
        guard needsQuotes else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Whether the file at `path` looks like a corpus of this kind: a `.csv` whose header line has
    /// `summary` and `description` columns. Reads the first 64 KiB only (a tabular CSV can be large),
    /// so that a command given a corpus where it expects a table can say so before loading it.
    public static func looksLikeCorpus(_ path: String) -> Bool {
        guard FileKind(path) == .csv, let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = String(decoding: (try? handle.read(upToCount: 1 << 16)) ?? Data(), as: UTF8.self)
        let header = head.split(separator: "\n", maxSplits: 1).first.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\" \r")) } } ?? []
        return Set(["summary", "description"]).isSubset(of: Set(header))
    }

    /// Entries from a CSV file written by `write` (read with DistillData's CSV reader); a missing
    /// column or a bad split value is an error naming the file and line.
    public static func read(_ url: URL) throws -> [Entry] {
        let table = try CSVTable.load(url)
        var columns: [Int] = []
        for name in csvColumns {
            guard let i = table.header.firstIndex(of: name) else {
                throw TextError.malformed(path: url.path, problem: "no column '\(name)' (a Debian package CSV has \(csvColumns.joined(separator: ", ")))")
            }
            columns.append(i)
        }
        return try (0..<table.rowCount).map { r in
            let cell = { (k: Int) in table.cell(row: r, column: columns[k]) }
            guard let split = Split(rawValue: cell(2)) else {
                throw TextError.malformed(path: url.path, problem: "line \(table.lineNumbers[r]): split '\(shortened(cell(2)))' is neither train nor test")
            }
            return Entry(package: cell(0), section: cell(1), split: split, summary: cell(3), description: cell(4))
        }
    }

    /// What `write` records beside the CSV (`FILE.json`): where and when the snapshot was taken,
    /// the counts, and the section labels.
    public struct Record: Sendable, Codable, Equatable {
        public var source: String
        /// When the package lists were read (UTC, ISO 8601).
        public var snapshotDate: String
        /// The `Date` fields of the archives' Release files, when known: the archive's own age.
        public var archiveDates: [String]
        public var statistics: Statistics
        public var sectionLabels: SectionLabels

        enum CodingKeys: String, CodingKey {
            case source, statistics
            case snapshotDate = "snapshot_date", archiveDates = "archive_dates", sectionLabels = "section_labels"
        }
    }

    /// Parses `dumpavail` (with the `Translation-en` texts) and writes the CSV to `url` and the
    /// record to `url` + `.json`, each through a temporary file renamed into place.
    @discardableResult
    public static func write(dumpavail: String, translations: [String] = [], to url: URL, source: String = "apt-cache dumpavail",
                             archiveDates: [String] = [], minimumTrainRowsPerSection: Int = SectionLabels.defaultMinimumTrainRows,
                             now: Date = Date()) throws -> Record {
        let (entries, statistics) = try parse(packages: dumpavail, translations: translations, source: source)
        let labels = SectionLabels(entries: entries, minimumTrainRows: minimumTrainRowsPerSection)
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        let record = Record(source: source, snapshotDate: formatter.string(from: now), archiveDates: archiveDates,
                            statistics: statistics, sectionLabels: labels)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let recordURL = URL(fileURLWithPath: url.path + ".json")
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: recordURL.path, isDirectory: &isFolder), isFolder.boolValue {
            throw TextError.invalidArgument("\(recordURL.path): is a folder; the corpus's record is written there, beside \(url.lastPathComponent)")
        }
        try writeAtomically(Data(csv(entries).utf8), to: url)
        try writeAtomically(try encoder.encode(record), to: recordURL)
        return record
    }

    /// Writes `data` over the file `url` atomically; a folder there is an error, never replaced.
    static func writeAtomically(_ data: Data, to url: URL) throws {
        do { try AtomicFile.write(data, to: url) } catch let error as TensorError {
            throw TextError.invalidArgument(error.message)
        }
    }
}

/// Section labels for classification: the sections with at least `minimumTrainRows` rows in the
/// train split keep their name, every other section (and one never seen in training) is
/// `other`. Decided on the train split alone, so the test split cannot shape the classes;
/// the same entries always give the same labels.
public struct SectionLabels: Sendable, Codable, Equatable {
    /// The default threshold: sections with at least 200 training rows.
    public static let defaultMinimumTrainRows = 200
    /// The catch-all class, always the last.
    public static let other = "other"

    /// The class names: the kept sections sorted by name, then `other`.
    public let classes: [String]
    public let minimumTrainRows: Int

    enum CodingKeys: String, CodingKey {
        case classes, minimumTrainRows = "minimum_train_rows"
    }

    public init(entries: [DebianPackages.Entry], minimumTrainRows: Int = defaultMinimumTrainRows) {
        var counts: [String: Int] = [:]
        for e in entries where e.split == .train { counts[e.section, default: 0] += 1 }
        let kept = counts.filter { $0.value >= minimumTrainRows && $0.key != Self.other }.keys.sorted()
        classes = kept + [Self.other]
        self.minimumTrainRows = minimumTrainRows
    }

    /// The class of a section (`other` when it is not kept).
    public func label(for section: String) -> String { classes.contains(section) ? section : Self.other }

    /// The class index of a section, in `classes`.
    public func index(for section: String) -> Int { classes.firstIndex(of: section) ?? classes.count - 1 }
}

/// A Debian control-file stanza (RFC 822 style): fields by name, a continuation line (starting
/// with a space or tab) appended to its field's value after a line feed, the leading whitespace
/// kept. Stanzas are separated by empty lines; a line that is neither a field nor a continuation
/// is skipped.
struct ControlStanza {
    var fields: [String: String] = [:]

    /// The fields this corpus uses; others are skipped without building strings.
    static let wanted: Set<String> = ["Package", "Section", "Description", "Description-en", "Description-md5"]

    static func parse(_ text: String) -> [ControlStanza] {
        var text = text
        return text.withUTF8 { parse(bytes: $0) }
    }

    /// The stanzas of UTF-8 control-file text (plain loops over the bytes: this reads ~80 MB of
    /// package lists, and must not crawl in a debug build).
    static func parse(bytes: UnsafeBufferPointer<UInt8>) -> [ControlStanza] {
        var stanzas: [ControlStanza] = []
        var current = ControlStanza()
        var currentField: String? = nil
        var value: [UInt8] = []
        func finishField() {
            if let field = currentField { current.fields[field] = String(decoding: value, as: UTF8.self) }
            currentField = nil
            value.removeAll(keepingCapacity: true)
        }
        func finishStanza() {
            finishField()
            if !current.fields.isEmpty { stanzas.append(current) }
            current = ControlStanza()
        }
        let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), colon = UInt8(ascii: ":"), lf = UInt8(0x0A)
        let n = bytes.count
        guard let p = bytes.baseAddress else { return [] }
        var lineStart = 0
        while lineStart < n {
            var lineEnd = lineStart
            while lineEnd < n && p[lineEnd] != lf { lineEnd += 1 }
            let next = lineEnd + 1
            if lineEnd > lineStart && p[lineEnd - 1] == 0x0D { lineEnd -= 1 }
            var firstText = lineStart
            while firstText < lineEnd && (p[firstText] == space || p[firstText] == tab) { firstText += 1 }
            if firstText == lineEnd {  // empty or blank: the stanza ends
                finishStanza()
            } else if firstText > lineStart {  // a continuation line
                if currentField != nil {
                    value.append(lf)
                    value.append(contentsOf: UnsafeBufferPointer(start: p + lineStart, count: lineEnd - lineStart))
                }
            } else {
                finishField()
                var colonIndex = lineStart
                while colonIndex < lineEnd && p[colonIndex] != colon { colonIndex += 1 }
                if colonIndex < lineEnd {
                    let name = String(decoding: UnsafeBufferPointer(start: p + lineStart, count: colonIndex - lineStart), as: UTF8.self)
                    if wanted.contains(name) {
                        currentField = name
                        var first = colonIndex + 1, last = lineEnd
                        while first < last && (p[first] == space || p[first] == tab) { first += 1 }
                        while last > first && (p[last - 1] == space || p[last - 1] == tab) { last -= 1 }
                        value.append(contentsOf: UnsafeBufferPointer(start: p + first, count: last - first))
                    }
                }
            }
            lineStart = next
        }
        finishStanza()
        return stanzas
    }
}
