import Foundation

/// The `distill` executable for tests that run the command line: `$DISTILL_BINARY`, or the one
/// beside the test bundle (swift test runs <scratch>/debug/DistillKitPackageTests.xctest, and
/// `swift build --build-tests` puts distill in the same folder). nil when neither exists.
public let distillBinary: URL? = {
    if let path = ProcessInfo.processInfo.environment["DISTILL_BINARY"] { return URL(fileURLWithPath: path) }
    let candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(), Bundle.main.bundleURL,
                      Bundle.main.bundleURL.deletingLastPathComponent()]
    return candidates.map { $0.appendingPathComponent("distill") }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
}()

/// What one run of the binary did.
public struct CommandResult: Sendable {
    public var status: Int32
    public var output: String
    public var error: String
}

/// Runs `distill` with `arguments` in `directory` (default: a fresh temporary folder), help text
/// laid out for `COLUMNS` = 100 so it is the same in every terminal, and waits for it.
public func runDistill(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) throws -> CommandResult {
    guard let binary = distillBinary else { throw CocoaError(.fileNoSuchFile) }
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    process.currentDirectoryURL = directory ?? FileManager.default.temporaryDirectory
    process.environment = ProcessInfo.processInfo.environment.merging(["COLUMNS": "100"].merging(environment) { $1 }) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes to the end (stderr on another thread) before waiting, so that neither can fill and block the child.
    final class Collected: @unchecked Sendable { var data = Data() }
    let errors = Collected(), group = DispatchGroup()
    DispatchQueue.global().async(group: group) { errors.data = err.fileHandleForReading.readDataToEndOfFile() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errData = errors.data
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, output: String(decoding: outData, as: UTF8.self),
                         error: String(decoding: errData, as: UTF8.self))
}
