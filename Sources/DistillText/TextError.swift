import Foundation

/// An error in a text resource (a tokenizer file, a vocabulary, a corpus) or in how text was
/// asked for: thrown, never a crash. Each message names the file and what is wrong with it, e.g.
/// `model/tokenizer.json: "model.vocab" maps "hello" to -3, not an id ≥ 0`.
public enum TextError: Error, LocalizedError, CustomStringConvertible, Equatable, Sendable {
    /// A file or folder that should exist does not; `what` says what it was expected to hold.
    case missingFile(path: String, what: String)
    /// A file exists but cannot be read or parsed as what it should be.
    case malformed(path: String, problem: String)
    /// A well-formed file asks for something this implementation does not do (another tokenizer
    /// model, an added token that strips spaces): refused rather than approximated.
    case unsupported(path: String, feature: String)
    /// Two files that must agree do not (a tokenizer and a vocabulary, a tokenizer and a model).
    case mismatch(path: String, otherPath: String, problem: String)
    /// A corpus with nothing usable in it (no packages, no long descriptions).
    case emptyCorpus(source: String, advice: String)
    /// An external program the command needs could not be run or failed.
    case toolFailed(tool: String, problem: String)
    /// Arguments that do not fit together (shapes, indices): the message says how.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .missingFile(let path, let what): return "\(path): not found (expected \(what))"
        case .malformed(let path, let problem): return "\(path): \(problem)"
        case .unsupported(let path, let feature): return "\(path): not supported: \(feature)"
        case .mismatch(let path, let otherPath, let problem): return "\(path) and \(otherPath) do not match: \(problem)"
        case .emptyCorpus(let source, let advice): return "\(source): no usable entries; \(advice)"
        case .toolFailed(let tool, let problem): return "\(tool): \(problem)"
        case .invalidArgument(let message): return message
        }
    }

    public var errorDescription: String? { description }
}
