import Dispatch
import Foundation

/// Ctrl-C for a training run: while installed, SIGINT and SIGTERM no longer kill the process but
/// set a flag that the trainer checks after each optimizer step; it then writes a checkpoint
/// (with the batch position inside the epoch) and stops with `TrainingInterrupted`.
/// A second signal while the first is being handled kills the process as usual.
final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var signalNumber: Int32? = nil
    private var sources: [DispatchSourceSignal] = []
    private static let signals: [Int32] = [SIGINT, SIGTERM]

    /// The signal received, if any.
    var received: Int32? { lock.lock(); defer { lock.unlock() }; return signalNumber }

    /// Installs the handlers (until `uninstall`).
    static func install() -> StopRequest {
        let request = StopRequest()
        for s in signals {
            signal(s, SIG_IGN)  // dispatch sources only see signals the default action would not handle
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler { [weak request] in
                guard let request else { return }
                request.lock.lock()
                let first = request.signalNumber == nil
                request.signalNumber = request.signalNumber ?? s
                request.lock.unlock()
                if !first { signal(s, SIG_DFL); raise(s) }  // impatient: the second Ctrl-C kills
            }
            source.resume()
            request.sources.append(source)
        }
        return request
    }

    /// Restores the default actions.
    func uninstall() {
        for source in sources { source.cancel() }
        sources = []
        for s in Self.signals { signal(s, SIG_DFL) }
    }
}

/// A run stopped by SIGINT or SIGTERM after saving a checkpoint; `--resume` continues it at the
/// next batch. The CLI exits with `exitStatus`, 128 + the signal (130 for Ctrl-C), as shells expect.
/// A run stopped at `TrainingOptions.deadline`, after `epochsDone` epochs (checkpoint written).
public struct TrainingDeadlinePassed: Error, CustomStringConvertible {
    public let epochsDone: Int
    public var description: String { "the time budget ran out after epoch \(epochsDone)" }
}

public struct TrainingInterrupted: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public let signal: Int32
    /// The run folder whose checkpoint was saved, for advice on resuming it (nil when the message
    /// already says how).
    public var runFolder: String? = nil
    public var description: String { message }
    public var errorDescription: String? { message }
    public var exitStatus: Int32 { 128 + signal }
}
