import DistillData
import Foundation
import Testing
@testable import DistillText

@Suite struct DebianPackagesTests {
    /// Five stanzas as apt-cache dumpavail prints them: a long description inline (with a ` .`
    /// paragraph break and a contrib/ section), one only in the translations, a duplicate, one
    /// without a section and one without any long description.
    let packages = """
        Package: foo
        Version: 1.0
        Section: contrib/games
        Description: Foo, a game of blocks
         foo is a game. Stack the blocks
         before they fall; "quotes", commas.
         .
          * Run FOO, or libfoo with foo-data.
        Tag: game::puzzle,
         role::program

        Package: bar
        Section: utils
        Description: Bar utility
        Description-md5: 0123456789abcdef0123456789abcdef

        Package: foo
        Section: games
        Description: Foo again
         Another version.

        Package: nosection
        Description: No section
         Has a long text.

        Package: short
        Section: utils
        Description: Only a summary
        Description-md5: ffffffffffffffffffffffffffffffff

        """

    let translation = """
        Package: bar
        Description-md5: 0123456789abcdef0123456789abcdef
        Description-en: Bar utility
         Bar counts lines
         in files.

        """

    @Test func parsesStanzasTranslationsAndDropsWhatItCannotUse() throws {
        let (entries, stats) = try DebianPackages.parse(packages: packages, translations: [translation], source: "test")
        #expect(entries.map(\.package) == ["bar", "foo"])
        #expect(stats.stanzas == 5 && stats.duplicates == 1 && stats.withoutSection == 1 && stats.withoutLongDescription == 1)
        #expect(stats.translations == 1 && stats.entries == 2)
        let foo = entries[1]
        #expect(foo.section == "games")
        #expect(foo.summary == ", a game of blocks")  // the name goes from the summary too
        #expect(foo.description == "is a game. Stack the blocks\nbefore they fall; \"quotes\", commas.\n\n * Run , or libfoo with foo-data.")
        #expect(entries[0].description == "counts lines\nin files." && entries[0].summary == "utility")
        #expect(foo.split == DebianPackages.split(forPackage: "foo"))
    }

    @Test func removesThePackageNameAsAWordOnly() {
        #expect(DebianPackages.removingName("foo", from: "foo is a tool. Use foo-utils, libfoo or foo.conf; FOO.") == "is a tool. Use foo-utils, libfoo or foo.conf; .")
        #expect(DebianPackages.removingName("g++", from: "The G++ compiler (g++).") == "The compiler ().")
        #expect(DebianPackages.removingName("bar", from: "nothing here") == "nothing here")
    }

    @Test func theSplitIsAFixedHashOfTheName() {
        // FNV-1a 64 of the name, mod 100, below 20: computed independently in Python.
        let expected: [String: DebianPackages.Split] = ["0ad": .train, "bash": .train, "python3": .train, "vim": .test, "zsh": .train,
                                                        "coreutils": .test, "emacs": .test, "gcc": .train, "curl": .train, "git": .test]
        for (name, split) in expected { #expect(DebianPackages.split(forPackage: name) == split, "\(name)") }
        let names = (0..<20_000).map { "package-\($0)" }
        let test = names.filter { DebianPackages.split(forPackage: $0) == .test }.count
        #expect(abs(Double(test) / Double(names.count) - 0.2) < 0.015)
    }

    @Test func csvRoundTripsThroughTheProjectsReader() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distill-debian-\(UUID().uuidString)")
        let url = folder.appendingPathComponent("debian.csv")
        let record = try DebianPackages.write(dumpavail: packages, translations: [translation], to: url, source: "test",
                                              minimumTrainRowsPerSection: 1, now: Date(timeIntervalSince1970: 0))
        let (entries, _) = try DebianPackages.parse(packages: packages, translations: [translation], source: "test")
        #expect(try DebianPackages.read(url) == entries)
        #expect(record.snapshotDate == "1970-01-01T00:00:00Z")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: url.path + ".json"))) as? [String: Any]
        #expect(json?["snapshot_date"] as? String == "1970-01-01T00:00:00Z")
        #expect((json?["statistics"] as? [String: Any])?["duplicates"] as? Int == 1)
        // Hard cases for a CSV writer: leading spaces, quotes, commas, line breaks, empty fields.
        let hard = [DebianPackages.Entry(package: "x", section: "a b", split: .test, summary: " lead, \"q\" ", description: "l1\n\nl3,\r\"\""),
                    DebianPackages.Entry(package: "y", section: "s", split: .train, summary: "", description: "d")]
        let file = folder.appendingPathComponent("hard.csv")
        try Data(DebianPackages.csv(hard).utf8).write(to: file)
        #expect(try DebianPackages.read(file) == hard)
        // The generic CSV reader sees the same columns.
        let table = try CSVTable.load(file)
        #expect(table.header == DebianPackages.csvColumns && table.rowCount == 2)
        // Told apart from a table by its header alone.
        #expect(DebianPackages.looksLikeCorpus(file.path))
        let tabular = folder.appendingPathComponent("table.csv")
        try Data("a,b,label\n1,2,0\n".utf8).write(to: tabular)
        #expect(!DebianPackages.looksLikeCorpus(tabular.path))
        #expect(!DebianPackages.looksLikeCorpus(folder.appendingPathComponent("missing.csv").path))
    }

    @Test func anEmptyOrSummaryOnlyListIsAClearError() {
        let none = #expect(throws: TextError.self) { try DebianPackages.parse(packages: "\n\n", source: "list.txt") }
        #expect(none?.description.contains("run `apt-get update`") == true, "\(String(describing: none))")
        let summaries = #expect(throws: TextError.self) {
            try DebianPackages.parse(packages: "Package: a\nSection: x\nDescription: only\n", source: "apt-cache dumpavail")
        }
        #expect(summaries?.description.contains("Acquire::Languages=en") == true, "\(String(describing: summaries))")
    }

    @Test func badCSVFilesNameTheFileAndLine() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distill-debian-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let missing = folder.appendingPathComponent("missing-column.csv")
        try "package,section,split,summary\na,b,train,c\n".write(to: missing, atomically: true, encoding: .utf8)
        let e1 = #expect(throws: TextError.self) { try DebianPackages.read(missing) }
        #expect(e1?.description.contains("no column 'description'") == true)
        let badSplit = folder.appendingPathComponent("bad-split.csv")
        try "package,section,split,summary,description\na,b,train,c,d\na,b,valid,c,d\n".write(to: badSplit, atomically: true, encoding: .utf8)
        let e2 = #expect(throws: TextError.self) { try DebianPackages.read(badSplit) }
        #expect(e2?.description == "\(badSplit.path): line 3: split 'valid' is neither train nor test")
    }

    @Test func sectionLabelsComeFromTheTrainSplitOnly() {
        func entries(_ section: String, _ split: DebianPackages.Split, _ count: Int) -> [DebianPackages.Entry] {
            (0..<count).map { DebianPackages.Entry(package: "\(section)\($0)", section: section, split: split, summary: "", description: "d") }
        }
        let all = entries("libs", .train, 5) + entries("games", .train, 3) + entries("games", .test, 9) + entries("tex", .train, 2)
            + entries("zope", .test, 50)
        let labels = SectionLabels(entries: all, minimumTrainRows: 3)
        #expect(labels.classes == ["games", "libs", "other"])
        #expect(labels.label(for: "tex") == "other" && labels.label(for: "zope") == "other" && labels.label(for: "libs") == "libs")
        #expect(labels.index(for: "games") == 0 && labels.index(for: "unheard-of") == 2)
        #expect(SectionLabels(entries: all.reversed(), minimumTrainRows: 3) == labels)
    }
}
