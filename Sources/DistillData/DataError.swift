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

/// Reads a whole file after checking its size against `limit`; errors name the file.
func readFile(_ url: URL, limit: Int) throws -> Data {
    _ = try checkedFileSize(url, limit: limit)
    let data: Data
    do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
        throw DataError(file: url.path, "cannot read (\(error.localizedDescription))")
    }
    guard data.count <= limit else {
        throw DataError(file: url.path, "\(data.count) bytes, more than the \(limit)-byte limit for this reader")
    }
    return data
}

/// The size of a regular file, checked against `limit`.
func checkedFileSize(_ url: URL, limit: Int) throws -> Int {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
        throw DataError(file: url.path, "no such file")
    }
    guard !isDirectory.boolValue else { throw DataError(file: url.path, "is a folder, not a file") }
    let size = ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.intValue ?? 0
    guard size <= limit else { throw DataError(file: url.path, "\(size) bytes, more than the \(limit)-byte limit for this reader") }
    return size
}

/// `a * b`, or nil on overflow.
@inline(__always) func checkedMultiply(_ a: Int, _ b: Int) -> Int? {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? nil : r
}

/// The product of `shape`, or nil when it overflows `Int`.
func checkedProduct(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard let m = checkedMultiply(n, d) else { return nil }
        n = m
    }
    return n
}
