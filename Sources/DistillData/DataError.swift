import DistillTensor
import Foundation

/// An error in a data file or in how a dataset was asked for: thrown, never a crash.
///
/// Every reader in DistillData treats its input as untrusted. When a file is malformed the message
/// names the file, where the problem is (a byte offset, or a line and column) and what is wrong,
/// e.g. `train.csv: line 7: 4 fields, the header has 5`.
public struct DataError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    /// The whole human-readable message, file name and location included.
    public let message: String

    /// An error with a complete message (name the file and location in it).
    public init(_ message: String) { self.message = message }

    /// `"<file>: <location>: <problem>"`, or `"<file>: <problem>"` when there is no location.
    public init(file: String, at location: String? = nil, _ problem: String) {
        if let location { message = "\(file): \(location): \(problem)" } else { message = "\(file): \(problem)" }
    }

    /// An error at byte `offset` of `file`.
    public init(file: String, offset: Int, _ problem: String) {
        self.init(file: file, at: "offset \(offset)", problem)
    }

    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Bounds every reader checks a file's header against before it allocates anything, so that a
/// corrupt or hostile header (a shape of 10¹² elements, a 4 GB string) fails with a message
/// instead of exhausting memory.
public struct ReadLimits: Sendable, Equatable {
    /// The largest file read whole into memory, in bytes.
    public var maxFileBytes: Int
    /// The largest decoded payload (decompressed bytes, or elements × element size), in bytes.
    public var maxPayloadBytes: Int

    /// Limits in bytes; the defaults are 4 GiB each.
    public init(maxFileBytes: Int = 4 << 30, maxPayloadBytes: Int = 4 << 30) {
        self.maxFileBytes = maxFileBytes
        self.maxPayloadBytes = maxPayloadBytes
    }

    /// 4 GiB files and 4 GiB payloads: room for every common dataset, far below what a corrupt
    /// header can claim.
    public static let `default` = ReadLimits()
}

/// Reads a whole regular file after checking its size against `limit`; errors name the file.
/// A FIFO, a device or a folder is refused before it is opened (`InputFile`), so `--data /dev/zero`
/// fails at once instead of hanging or reading forever.
func readFile(_ url: URL, limit: Int) throws -> Data {
    _ = try checkedFileSize(url, limit: limit)
    let data: Data
    do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
        throw DataError(file: url.path, "cannot read (\(error.localizedDescription))")
    }
    guard data.count <= limit else {
        throw DataError(file: url.path, "\(MemoryBudget.describe(data.count)), more than the \(MemoryBudget.describe(limit)) limit for this reader")
    }
    return data
}

/// The size of the readable regular file at `url`, checked against `limit`.
func checkedFileSize(_ url: URL, limit: Int) throws -> Int {
    let size: Int
    do { size = try InputFile.checkRegular(url.path) } catch let error as TensorError {
        throw DataError(error.message)
    }
    guard size <= limit else {
        throw DataError(file: url.path, "\(MemoryBudget.describe(size)), more than the \(MemoryBudget.describe(limit)) limit for this reader")
    }
    return size
}

/// Throws unless `bytes` (nil: the size arithmetic overflowed) fits `MemoryBudget`; the error names `file`.
func checkBudget(bytes: Int?, file: String, for what: String) throws {
    do { try MemoryBudget.check(bytes: bytes, for: "\(file): \(what)") } catch let error as TensorError {
        throw DataError(error.message)
    }
}

/// Text from a file (a cell, a column or entry name, a header) as quoted in an error message: at
/// most 60 characters, so that a hostile 100 MB field or 64 KB entry name does not become the message.
func abbreviated(_ text: String) -> String {
    text.utf8.count <= 60 ? text : "\(text.prefix(60))… (\(text.utf8.count) bytes)"
}

/// Up to 20 names, each `abbreviated`, then how many more: messages stay short for a file of a
/// million columns or entries.
func abbreviatedList(_ names: [String]) -> String {
    let shown = names.prefix(20).map(abbreviated).joined(separator: ", ")
    return names.count <= 20 ? shown : shown + " and \(names.count - 20) more"
}
