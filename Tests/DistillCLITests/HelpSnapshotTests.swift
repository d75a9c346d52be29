import DistillTestSupport
import Foundation
import Testing

/// Every command's `--help`, compared with the text committed in `HelpSnapshots/`: a changed
/// option, default or description shows up in review as a changed file. After an intended
/// change, rerun with `RECORD_SNAPSHOTS=1` to rewrite the snapshots, and read the diff.
@Suite("Help snapshots", .enabled(if: distillBinary != nil, "needs the distill binary (swift build)"))
struct HelpSnapshotTests {
    static let commands = ["", "demo", "train", "kd", "eval", "run", "bench", "export", "inspect", "cache-teacher", "data-report",
                           "quantize", "sweep", "fit", "data", "embed", "text-kd"]
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("HelpSnapshots")

    @Test(arguments: commands)
    func helpMatchesTheSnapshot(_ command: String) throws {
        let result = try runDistill(command.isEmpty ? ["--help"] : [command, "--help"])
        #expect(result.status == 0, "\(command) --help exited with \(result.status): \(result.error)")
        let file = Self.folder.appendingPathComponent((command.isEmpty ? "distill" : command) + ".txt")
        if ProcessInfo.processInfo.environment["RECORD_SNAPSHOTS"] == "1" {
            try FileManager.default.createDirectory(at: Self.folder, withIntermediateDirectories: true)
            try Data(result.output.utf8).write(to: file)
            return
        }
        let expected = try String(contentsOf: file, encoding: .utf8)
        #expect(result.output == expected, "distill \(command) --help differs from \(file.lastPathComponent); if intended, rerun with RECORD_SNAPSHOTS=1")
    }

    /// Every subcommand the root help lists has a snapshot, so a new command cannot go unrecorded.
    @Test func everyCommandHasASnapshot() throws {
        let root = try runDistill(["--help"]).output
        // The lines under SUBCOMMANDS: up to the first blank line, each "  name   abstract".
        let section = root.components(separatedBy: "SUBCOMMANDS:").last?.components(separatedBy: "\n\n").first ?? ""
        let listed = section.split(separator: "\n").compactMap { line -> String? in
            line.hasPrefix("  ") && !line.hasPrefix("   ") ? line.split(separator: " ").first.map(String.init) : nil
        }
        #expect(!listed.isEmpty)
        for command in listed { #expect(Self.commands.contains(command), "distill \(command) has no help snapshot") }
    }
}
