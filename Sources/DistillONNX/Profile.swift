import Foundation

/// Time spent per operator across every `ONNXModel.run` of the process, printed to standard
/// error when the process exits. Turned on by `DISTILL_PROFILE=1` in the environment: it tells
/// where an imported model's time goes (which operator to make faster first) without a profiler.
enum ONNXProfile {
    /// Whether profiling is on (read once from the environment).
    static let enabled: Bool = {
        guard let text = ProcessInfo.processInfo.environment["DISTILL_PROFILE"], !text.isEmpty, text != "0" else { return false }
        atexit { ONNXProfile.report() }
        return true
    }()

    private static let lock = NSLock()
    nonisolated(unsafe) private static var totals: [String: (seconds: Double, calls: Int)] = [:]

    /// Adds `seconds` to the total of `key` (an operator name, with its fused activation if any).
    static func record(_ key: String, seconds: Double) {
        lock.lock()
        defer { lock.unlock() }
        let old = totals[key] ?? (0, 0)
        totals[key] = (old.seconds + seconds, old.calls + 1)
    }

    /// The totals, largest first, one operator a line.
    static func report() {
        lock.lock()
        let rows = totals.sorted { $0.value.seconds > $1.value.seconds }
        lock.unlock()
        let all = rows.reduce(0) { $0 + $1.value.seconds }
        var text = "DISTILL_PROFILE: time per operator (all runs)\n"
        for (key, value) in rows {
            let share = all > 0 ? 100 * value.seconds / all : 0
            text += String(format: "  %-28@ %9.1f ms %6.1f%% %7d calls\n", key as NSString, value.seconds * 1e3, share, value.calls)
        }
        text += String(format: "  %-28@ %9.1f ms\n", "total" as NSString, all * 1e3)
        FileHandle.standardError.write(Data(text.utf8))
    }
}
