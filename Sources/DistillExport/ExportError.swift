import Foundation

/// Why a student cannot be written in a target format: names the layer (or setting) and the format,
/// and is thrown before any file is written.
public struct ExportError: Error, CustomStringConvertible, Equatable {
    public var format: String
    public var message: String

    public init(format: String, _ message: String) {
        self.format = format
        self.message = message
    }

    public var description: String { "\(format) export: \(message)" }
}
