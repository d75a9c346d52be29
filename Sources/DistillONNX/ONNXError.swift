import Foundation

/// Everything that can go wrong reading, checking, running or writing an ONNX model: one message
/// that names the file, node or tensor at fault and, where there is one, what to do about it.
public struct ONNXError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    public let message: String
    /// Longest message kept: a hostile file can make a message list a million names, so the
    /// middle of a longer one is left out (its start names the file and node, its end the problem).
    static let maxMessageLength = 4000

    public init(_ message: String) { self.message = Self.capped(message) }
    public var description: String { message }
    public var errorDescription: String? { message }

    /// The same error with `context` in front ("node 'conv1' (Conv): ...").
    func prefixed(_ context: String) -> ONNXError { ONNXError("\(context): \(message)") }

    static func capped(_ message: String) -> String {
        guard message.utf8.count > maxMessageLength else { return message }
        let keep = maxMessageLength / 2
        return "\(message.prefix(keep)) … (\(message.count - 2 * keep) characters left out) … \(message.suffix(keep))"
    }
}
