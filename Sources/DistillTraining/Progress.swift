import Foundation

/// Progress on stderr: a redrawn bar on a terminal, plain lines (one per ~10%) otherwise.
public final class ProgressBar {
    public let title: String
    public let total: Int
    private let quiet: Bool
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private let start = DispatchTime.now().uptimeNanoseconds
    private var lastPrinted = -1

    public init(title: String, total: Int, quiet: Bool) {
        self.title = title; self.total = max(total, 1); self.quiet = quiet
    }

    /// Reports `done` of `total` units, with extra text such as "loss 0.412".
    public func update(_ done: Int, unitsPerSecond: Double? = nil, detail: String = "") {
        guard !quiet else { return }
        let fraction = Double(done) / Double(total)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0
        let rate = unitsPerSecond.map { String(format: " %.0f samples/s", $0) } ?? ""
        let text = String(format: "%@ %3.0f%% %d/%d %@%@ ETA %@", title, fraction * 100, done, total, detail, rate, Self.clock(eta))
        if isTerminal {
            let width = 24, filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            FileHandle.standardError.write("\r\u{1B}[2K\(bar) \(text)".data(using: .utf8)!)
            if done >= total { FileHandle.standardError.write("\n".data(using: .utf8)!) }
        } else {
            let decile = Int(fraction * 10)
            if decile != lastPrinted { lastPrinted = decile; log(text) }
        }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// A line on stderr (progress and notes never mix with JSON on stdout).
public func log(_ line: String) {
    FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
}
