import Testing

/// Expects `body` to throw an error (of any DistillKit type) whose description contains every
/// fragment; `context`, when given, starts each recorded issue (which case of a table failed).
public func expectMessage(_ fragments: [String], _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation,
                          _ body: () throws -> Void) {
    let prefix = context.isEmpty ? "" : "\(context): "
    do {
        try body()
        Issue.record("\(prefix)expected an error containing \(fragments), nothing was thrown", sourceLocation: sourceLocation)
    } catch {
        let message = "\(error)"
        for fragment in fragments where !message.contains(fragment) {
            Issue.record("\(prefix)error message \"\(message)\" lacks \"\(fragment)\"", sourceLocation: sourceLocation)
        }
    }
}
