import Foundation

/// Everything that can go wrong reading, checking, running or writing an ONNX model: one message
/// that names the file, node or tensor at fault and, where there is one, what to do about it.
public struct ONNXError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }

    /// The same error with `context` in front ("node 'conv1' (Conv): ...").
    func prefixed(_ context: String) -> ONNXError { ONNXError("\(context): \(message)") }
}
