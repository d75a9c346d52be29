import ArgumentParser
import DistillData
import DistillTensor
import DistillText
import Foundation

/// `distill data …`: making and inspecting text corpora.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Text corpora: write Debian's package descriptions as a CSV, tokenize a CSV column.",
        subcommands: [DebianPackagesCommand.self, TokenizeCommand.self])
}

struct DebianPackagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debian-packages",
        abstract: "Write Debian's package descriptions as a CSV (package, section, split, summary, description).",
        discussion: """
        Reads `apt-cache dumpavail` (or --from FILE) for each package's section and summary, and apt's
        Translation-en index files (or --translations FILE) for the long descriptions; Debian's Docker
        images skip those files: `apt-get update -o Acquire::Languages=en` fetches them. One row per
        package (names removed from the text, packages without a long description dropped), a fixed
        20% test split by a hash of the package name, and FILE.json beside the CSV with the snapshot
        date, the counts and the section labels (sections with at least --min-section-rows training
        rows; the rest are `other`).
        """)
    @Option(help: "The CSV file to write.") var out: String
    @Option(help: "A package list in apt-cache dumpavail's format (default: run apt-cache dumpavail).") var from: String?
    @Option(help: "A Translation-en file (uncompressed; repeat for several). Default without --from: apt's own.") var translations: [String] = []
    @Option(help: "Sections with fewer training rows than this become `other` in the labels.") var minSectionRows = SectionLabels.defaultMinimumTrainRows

    func validate() throws {
        guard minSectionRows >= 1 else { throw ValidationError("--min-section-rows \(minSectionRows): must be at least 1") }
    }

    func run() throws {
        let t0 = Date()
        let packages: String, source: String
        var translationTexts = try translations.map { try readText($0, what: "a Translation-en file") }
        var archiveDates: [String] = []
        if let from {
            packages = try readText(from, what: "a package list (apt-cache dumpavail output)")
            source = from
        } else {
            packages = try AptTools.dumpavail()
            source = "apt-cache dumpavail"
            if translations.isEmpty { translationTexts = try AptTools.englishTranslations() }
            archiveDates = AptTools.archiveDates()
        }
        let url = URL(fileURLWithPath: out)
        let record = try DebianPackages.write(dumpavail: packages, translations: translationTexts, to: url, source: source,
                                              archiveDates: archiveDates, minimumTrainRowsPerSection: minSectionRows)
        let s = record.statistics
        print("\(out): \(s.entries) packages (\(s.train) train, \(s.test) test), \(record.sectionLabels.classes.count - 1) sections with ≥ \(minSectionRows) training rows + other")
        print("  read \(s.stanzas) package stanzas and \(s.translations) long descriptions; dropped \(s.duplicates) duplicates, \(s.withoutLongDescription) without a long description, \(s.withoutSection) without a section")
        print(String(format: "  snapshot %@; record in %@.json (%.1f s)", record.snapshotDate, out, Date().timeIntervalSince(t0)))
    }

    private func readText(_ path: String, what: String) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else { throw TextError.missingFile(path: path, what: what) }
        guard let data = FileManager.default.contents(atPath: path) else { throw TextError.malformed(path: path, problem: "cannot read") }
        guard let text = String(data: data, encoding: .utf8) else { throw TextError.malformed(path: path, problem: "not UTF-8 text") }
        return text
    }
}

/// Running apt's tools for the package lists; each failure says what to install or run.
enum AptTools {
    static func dumpavail() throws -> String {
        let text = try run("apt-cache", ["dumpavail"], purpose: "the package list")
        guard text.contains("Package:") else {
            throw TextError.emptyCorpus(source: "apt-cache dumpavail", advice: "apt has no package lists yet: run `apt-get update -o Acquire::Languages=en`")
        }
        return text
    }

    /// The text of every English translation index apt has downloaded (decompressed by apt-helper).
    static func englishTranslations() throws -> [String] {
        let listing = try run("apt-get", ["-o", "Acquire::Languages=en", "indextargets", "--format", "$(FILENAME)", "Identifier: Translations", "Language: en"],
                              purpose: "the list of translation files")
        let files = listing.split(separator: "\n").map(String.init).filter { FileManager.default.fileExists(atPath: $0) }
        let helper = "/usr/lib/apt/apt-helper"
        return try files.map { file in
            if FileManager.default.isExecutableFile(atPath: helper) { return try run(helper, ["cat-file", file], purpose: "reading \(file)") }
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw TextError.malformed(path: file, problem: "cannot read it as text (compressed, and \(helper) is missing)")
            }
            return text
        }
    }

    /// The `Date:` lines of the Release files apt holds (when each archive snapshot was made).
    static func archiveDates() -> [String] {
        let folder = "/var/lib/apt/lists"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix("InRelease") || $0.hasSuffix("_Release") }.sorted().compactMap { name in
            guard let data = FileManager.default.contents(atPath: folder + "/" + name), let text = String(data: data.prefix(4096), encoding: .utf8) else { return nil }
            return text.split(separator: "\n").first { $0.hasPrefix("Date:") }.map { "\(name): \($0.dropFirst(5).trimmingCharacters(in: .whitespaces))" }
        }
    }

    /// Runs `tool` (a path, or a name looked up in PATH) and returns its standard output; the
    /// output goes through a temporary file (pipes of tens of MB stall a waiting process).
    static func run(_ tool: String, _ arguments: [String], purpose: String) throws -> String {
        let executable: String
        if tool.contains("/") {
            executable = tool
        } else {
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
            guard let found = path.split(separator: ":").map({ "\($0)/\(tool)" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw TextError.toolFailed(tool: tool, problem: "not found in PATH; \(purpose) needs apt (a Debian or Ubuntu system), or give the files with --from and --translations")
            }
            executable = found
        }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("distill-\(tool.split(separator: "/").last!)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString).out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch {
            throw TextError.toolFailed(tool: executable, problem: "cannot start (\(error.localizedDescription))")
        }
        process.waitUntilExit()
        try? handle.close()
        guard process.terminationStatus == 0 else {
            throw TextError.toolFailed(tool: "\(tool) \(arguments.joined(separator: " "))", problem: "exited with status \(process.terminationStatus) while reading \(purpose)")
        }
        guard let data = FileManager.default.contents(atPath: output.path) else { throw TextError.toolFailed(tool: tool, problem: "its output could not be read") }
        return String(decoding: data, as: UTF8.self)
    }
}

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Token ids of one CSV column with a WordPiece tokenizer (tokenizer.json or vocab.txt).",
        discussion: """
        Writes one JSON array of ids per row ([CLS] … [SEP], cut to --max-length) to a .jsonl file,
        or an int32 [rows, longest] .npy padded with the tokenizer's pad id. Prints how many rows were
        truncated: never silently.
        """)
    @Option(help: "The tokenizer: tokenizer.json, vocab.txt, or a folder holding one.") var tokenizer: String
    @Option(help: "A CSV file with a header row.") var data: String
    @Option(help: "The column of text to tokenize.") var column: String
    @Option(help: "Most tokens per row, [CLS] and [SEP] included; longer rows are truncated and counted.") var maxLength = 256
    @Option(help: "Output: .jsonl (one array of ids per row) or .npy (int32, padded).") var out: String
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        guard (2...1_000_000).contains(maxLength) else { throw ValidationError("--max-length \(maxLength): must be 2...1000000") }
        guard out.hasSuffix(".jsonl") || out.hasSuffix(".npy") else { throw ValidationError("--out \(out): must end in .jsonl or .npy") }
    }

    func run() throws {
        let tokenizer = try WordPieceTokenizer(contentsOf: URL(fileURLWithPath: self.tokenizer))
        let table = try CSVTable.load(URL(fileURLWithPath: data))
        guard let c = table.header.firstIndex(of: column) else {
            throw TextError.malformed(path: data, problem: "no column '\(column)'; the columns are: \(table.header.joined(separator: ", "))")
        }
        let texts = (0..<table.rowCount).map { table.cell(row: $0, column: c) }
        let t0 = Date()
        let rows = tokenizer.encode(texts, maxLength: maxLength)
        let seconds = Date().timeIntervalSince(t0)
        let truncated = rows.reduce(0) { $0 + ($1.wasTruncated ? 1 : 0) }
        let tokens = rows.reduce(0) { $0 + $1.ids.count }
        let bytes = out.hasSuffix(".npy") ? try npy(rows, pad: tokenizer.padID) : jsonl(rows)
        try AtomicFile.write(bytes, to: URL(fileURLWithPath: out))
        if json {
            print("{\"rows\": \(rows.count), \"tokens\": \(tokens), \"truncated\": \(truncated), \"max_length\": \(maxLength), \"seconds\": \(String(format: "%.3f", seconds))}")
        } else {
            print(String(format: "%@: %d rows, %d tokens, %d truncated to %d tokens (%.1f%%); %.2f s, %.0f rows/s",
                         out, rows.count, tokens, truncated, maxLength, rows.isEmpty ? 0 : 100 * Double(truncated) / Double(rows.count),
                         seconds, seconds > 0 ? Double(rows.count) / seconds : 0))
        }
    }

    private func jsonl(_ rows: [TokenizedText]) -> Data {
        var out: [UInt8] = []
        out.reserveCapacity(rows.reduce(0) { $0 + $1.ids.count * 6 + 3 })
        for row in rows {
            out.append(UInt8(ascii: "["))
            for (j, id) in row.ids.enumerated() {
                if j > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: String(id).utf8)
            }
            out.append(contentsOf: "]\n".utf8)
        }
        return Data(out)
    }

    private func npy(_ rows: [TokenizedText], pad: Int) throws -> Data {
        let length = rows.map(\.ids.count).max() ?? 0
        // Every row is padded to the longest: one long row can make the array huge.
        let size = CheckedSize.product([rows.count, length, MemoryLayout<Int32>.size])
        guard let size, size <= MemoryBudget.limitBytes else {
            throw ValidationError("--out \(out): \(rows.count) rows padded to the longest, \(length) tokens, take \(size.map { MemoryBudget.describe($0) } ?? "more than any memory"), beyond the memory budget of \(MemoryBudget.describe(MemoryBudget.limitBytes)); cut rows with a smaller --max-length, write .jsonl (no padding), or raise DISTILL_MAX_MEMORY")
        }
        var header = "{'descr': '<i4', 'fortran_order': False, 'shape': (\(rows.count), \(length)), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var out = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
        out.append(contentsOf: header.utf8)
        var values = [Int32](repeating: Int32(pad), count: rows.count * length)
        for (r, row) in rows.enumerated() { for (j, id) in row.ids.enumerated() { values[r * length + j] = Int32(id) } }
        values.withUnsafeBytes { out.append(contentsOf: $0) }
        return out
    }
}
