import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Limits on what untrusted input (a model file, an ONNX graph, a dataset, a configuration) may
/// make DistillKit allocate or read. Every size that comes from a file is computed with checked
/// arithmetic and checked against `MemoryBudget` before the allocation is made, so a file of a
/// few hundred bytes cannot ask for gigabytes.
public enum MemoryBudget {
    /// The most bytes one allocation whose size comes from input may take: `DISTILL_MAX_MEMORY`
    /// (bytes, or with a suffix k, m, g: `512m`, `8g`) when set, otherwise half of physical memory.
    public static let limitBytes: Int = {
        if let text = ProcessInfo.processInfo.environment["DISTILL_MAX_MEMORY"], let bytes = parseByteCount(text), bytes > 0 {
            return bytes
        }
        return Int(clamping: ProcessInfo.processInfo.physicalMemory / 2)
    }()

    /// What is wrong with `DISTILL_MAX_MEMORY` when it is set to something that is no size (`512mb`,
    /// `banana`, `0`): nil when it is unset or valid. Every budget check throws it, so a bound the
    /// user meant to set is never silently dropped.
    static let environmentProblem: String? = {
        guard let text = ProcessInfo.processInfo.environment["DISTILL_MAX_MEMORY"] else { return nil }
        if let bytes = parseByteCount(text), bytes > 0 { return nil }
        return "DISTILL_MAX_MEMORY=\(text.prefix(40)): expected a positive size in bytes, optionally with k, m, g or t (powers of 1024): 512m, 8g"
    }()

    /// Throws when `DISTILL_MAX_MEMORY` is set to something that is no size.
    public static func checkEnvironment() throws {
        if let environmentProblem { throw TensorError(environmentProblem) }
    }

    /// `512`, `64k`, `512m`, `8g` (powers of 1024), or nil.
    public static func parseByteCount(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let shifts: [Character: Int] = ["k": 10, "m": 20, "g": 30, "t": 40]
        var digits = Substring(t)
        var shift = 0
        if let last = t.last, let s = shifts[last] { shift = s; digits = t.dropLast() }
        if digits.hasSuffix("i") || digits.hasSuffix("b") { return nil }
        guard let n = Int(digits), n >= 0, n <= Int.max >> shift else { return nil }
        return n << shift
    }

    /// Throws unless `bytes` (nil: the arithmetic that produced it overflowed) fits the budget.
    /// `what` names the file and the thing being allocated, e.g. "model.onnx: node 'c' (ConstantOfShape) output".
    /// `what` is only built when the check fails (it runs for every value of an imported graph).
    public static func check(bytes: Int?, for what: @autoclosure () -> String) throws {
        try checkEnvironment()
        guard let bytes, bytes >= 0 else {
            throw TensorError("\(what()): the declared size overflows (a corrupt or hostile size)")
        }
        guard bytes <= limitBytes else {
            throw TensorError("\(what()): needs \(describe(bytes)), more than the memory budget of \(describe(limitBytes)) (set DISTILL_MAX_MEMORY to raise it)")
        }
    }

    /// Throws unless a tensor of `shape` with `elementBytes` per element fits the budget; returns its element count.
    @discardableResult
    public static func check(shape: [Int], elementBytes: Int = 4, for what: String) throws -> Int {
        guard let count = CheckedSize.product(shape) else {
            throw TensorError("\(what): shape \(shape) is negative or overflows")
        }
        try check(bytes: CheckedSize.multiply(count, elementBytes), for: what)
        return count
    }

    /// `1.5 GiB`, `12.0 MiB`, `300 bytes`.
    public static func describe(_ bytes: Int) -> String {
        let units: [(Int, String)] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")]
        for (shift, name) in units where bytes >= 1 << shift {
            return String(format: "%.1f %@", Double(bytes) / Double(1 << shift), name)
        }
        return "\(bytes) bytes"
    }
}

/// Size arithmetic for values that come from files: nil instead of a trap on overflow.
public enum CheckedSize {
    /// `a * b`, or nil on overflow or when either is negative.
    public static func multiply(_ a: Int, _ b: Int) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (r, o) = a.multipliedReportingOverflow(by: b)
        return o ? nil : r
    }

    /// `a + b`, or nil on overflow or when either is negative.
    public static func add(_ a: Int, _ b: Int) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (r, o) = a.addingReportingOverflow(b)
        return o ? nil : r
    }

    /// The product of `dims` (1 for none), or nil when one is negative or the product overflows.
    /// A zero dimension does not hide an overflow among the others: `[0, 2^62, 4]` is nil,
    /// because shape arithmetic on it (strides, a flattened width) would overflow later.
    public static func product<C: Collection>(_ dims: C) -> Int? where C.Element == Int {
        var nonZero = 1, hasZero = false
        for d in dims {
            guard d >= 0 else { return nil }
            if d == 0 { hasZero = true; continue }
            guard let m = multiply(nonZero, d) else { return nil }
            nonZero = m
        }
        return hasZero ? 0 : nonZero
    }
}

/// Opening input files: only regular files are read, so a FIFO (which would block forever), a
/// device (`/dev/zero`, endless) or a folder gets an error naming it instead of a hang.
public enum InputFile {
    /// What `path` is when it is not a readable regular file, in words, or nil when it is one.
    public static func problem(at path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            switch errno {
            case ENOENT: return "no such file"
            case EACCES: return "permission denied"
            case ENOTDIR: return "a part of the path is not a folder"
            case ELOOP: return "too many symbolic links"
            case ENAMETOOLONG: return "the path is too long"
            default: return String(cString: strerror(errno))
            }
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: return "is a folder, not a file"
        case S_IFIFO: return "is a FIFO (named pipe), not a regular file"
        case S_IFCHR, S_IFBLK: return "is a device, not a regular file"
        case S_IFSOCK: return "is a socket, not a regular file"
        default: return "is not a regular file"
        }
        guard access(path, R_OK) == 0 else { return "permission denied" }
        return nil
    }

    /// Throws `"<path>: <problem>"` unless `path` is a readable regular file; returns its size.
    @discardableResult
    public static func checkRegular(_ path: String, what: String = "") throws -> Int {
        if let problem = problem(at: path) {
            throw TensorError("\(path): \(what.isEmpty ? "" : "cannot read \(what): ")\(problem)")
        }
        var info = stat()
        stat(path, &info)
        return Int(info.st_size)
    }

    /// The bytes of the regular file at `url` (memory-mapped where safe), at most `limit` bytes.
    /// `what` ("model", "experiment file") appears in errors, which always name the path.
    public static func read(_ url: URL, what: String, limit: Int = 4 << 30) throws -> Data {
        let size = try checkRegular(url.path, what: what)
        guard size <= limit else {
            throw TensorError("\(url.path): cannot read \(what): \(MemoryBudget.describe(size)), more than the \(MemoryBudget.describe(limit)) limit")
        }
        do { return try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw TensorError("\(url.path): cannot read \(what) (\(error.localizedDescription))")
        }
    }
}

/// Creating output folders with errors in words: a path that exists as a file, a folder that
/// cannot be written, a full or read-only file system each get their own message naming the path.
public enum OutputFolder {
    /// Creates `url` (and its parents) as a folder unless it already is one, then checks that it is writable.
    public static func create(_ url: URL, what: String = "output folder") throws {
        let path = url.path
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw TensorError("\(path): the \(what) exists and is not a folder (a file of that name is in the way)")
            }
        } else {
            // Walk up to the first existing ancestor, so the error names the real obstacle.
            var ancestor = url.deletingLastPathComponent()
            while stat(ancestor.path, &info) != 0 && ancestor.path != "/" { ancestor = ancestor.deletingLastPathComponent() }
            if info.st_mode & S_IFMT != S_IFDIR {
                throw TensorError("\(path): cannot create the \(what): \(ancestor.path) is a file, not a folder")
            }
            guard mkdirAll(path) else {
                throw TensorError("\(path): cannot create the \(what) (\(String(cString: strerror(errno))))")
            }
        }
        guard access(path, W_OK | X_OK) == 0 else {
            throw TensorError("\(path): the \(what) is not writable (\(String(cString: strerror(errno))))")
        }
    }

    /// `mkdir -p`: true when `path` is a folder afterwards.
    private static func mkdirAll(_ path: String) -> Bool {
        var info = stat()
        if stat(path, &info) == 0 { return info.st_mode & S_IFMT == S_IFDIR }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path && !mkdirAll(parent) { return false }
        return mkdir(path, 0o755) == 0 || errno == EEXIST
    }
}
