import Foundation

/// `sweep.html`: one self-contained page (inline SVG, no scripts, no network) with the sweep's
/// table, the two Pareto plots (distilled accuracy against batch-1 latency and against bytes;
/// each student's scratch accuracy as a hollow mark below or above it) and each student's
/// training curves (test accuracy per epoch, scratch and distilled, first seed).
public struct SweepReport {
    /// One student's test-accuracy curves, (epoch, accuracy in %) per run.
    public struct Curves {
        public var name: String
        public var scratch: [(Double, Double)]
        public var distilled: [(Double, Double)]
        public init(name: String, scratch: [(Double, Double)], distilled: [(Double, Double)]) {
            self.name = name; self.scratch = scratch; self.distilled = distilled
        }
    }

    public var title: String
    public var rows: [SweepRow]
    public var curves: [Curves]
    /// (setting, value) pairs shown above the table.
    public var settings: [(String, String)]
    /// Whether the `*_int8` columns are measured (otherwise the table says they are not yet).
    public var int8Measured: Bool

    public init(title: String, rows: [SweepRow], curves: [Curves], settings: [(String, String)], int8Measured: Bool) {
        self.title = title; self.rows = rows; self.curves = curves; self.settings = settings; self.int8Measured = int8Measured
    }

    /// (epoch, test accuracy %) from a run's `metrics.jsonl` lines.
    public static func accuracySeries(_ metrics: [[String: Any]]) -> [(Double, Double)] {
        metrics.compactMap { line in
            guard let epoch = (line["epoch"] as? NSNumber)?.doubleValue, let value = (line["test_accuracy"] as? NSNumber)?.doubleValue,
                  value.isFinite else { return nil }
            return (epoch, value * 100)
        }
    }

    public var html: String {
        var body = "<h1>\(SVGChart.escape(title))</h1>\n<table>"
        for (k, v) in settings { body += "<tr><td class=l>\(SVGChart.escape(k))</td><td class=l>\(SVGChart.escape(v))</td></tr>" }
        body += "</table>\n" + tableSection + plotsSection + curvesSection
        return SVGChart.page(title: title, body: body)
    }

    private var tableSection: String {
        var s = "<h2>Students</h2>\n<p>Test accuracy is the mean ± standard deviation over seeds (the accuracy alone for one seed); latency (batch 1, median) and throughput (batch 256) are medians over seeds, through the inference plan a deployed student runs. ★ marks the Pareto frontier: no other student is both at least as accurate (distilled) and at least as fast (latency) or as small (bytes).</p>\n"
        s += "<table><tr><th class=l>student</th><th>parameters</th><th>bytes</th><th>FLOPs</th><th>scratch</th><th>distilled</th><th>gain</th><th>batch-1 latency</th><th>batch-256 throughput</th><th>int8 bytes</th><th>int8 accuracy</th><th>int8 latency</th><th>int8 throughput</th><th>frontier: latency</th><th>frontier: bytes</th></tr>\n"
        for r in rows {
            let int8 = r.int8.map {
                ["\($0.bytes)", String(format: "%.2f%%", $0.accuracy * 100), String(format: "%.1f µs", $0.latencyMicrosecondsP50), String(format: "%.0f/s", $0.samplesPerSecond)]
            } ?? Array(repeating: "—", count: 4)
            s += "<tr><td class=l title=\"\(SVGChart.escape(r.spec))\">\(SVGChart.escape(r.name))</td><td>\(r.size.parameters)</td><td>\(r.size.bytes)</td><td>\(r.size.flops.map(String.init) ?? "?")</td>"
            s += "<td>\(r.percent(r.accuracyScratch, std: r.accuracyScratchStd))</td><td>\(r.percent(r.accuracy, std: r.accuracyStd))</td>"
            s += String(format: "<td>%+.2f</td><td>%.1f µs</td><td>%.0f/s</td>", (r.accuracy - r.accuracyScratch) * 100, r.latencyMicrosecondsP50, r.samplesPerSecond)
            s += int8.map { "<td>\($0)</td>" }.joined() + "<td>\(r.paretoLatency ? "★" : "")</td><td>\(r.paretoBytes ? "★" : "")</td></tr>\n"
        }
        s += "</table>\n"
        if !int8Measured { s += "<p class=note>int8 columns: not measured; run the sweep with --int8 to quantize each distilled student and measure it.</p>\n" }
        return s
    }

    private var plotsSection: String {
        func plot(_ x: (SweepRow) -> Double, frontier: (SweepRow) -> Bool, title: String, xTitle: String) -> String {
            var points: [SVGChart.Point] = []
            for r in rows {
                points.append(SVGChart.Point(x: x(r), y: r.accuracy * 100, label: r.name, style: frontier(r) ? .frontier : .regular))
            }
            for (i, r) in rows.enumerated() {
                points.append(SVGChart.Point(x: x(r), y: r.accuracyScratch * 100, label: "", style: .hollow, linkedTo: i))
            }
            return SVGChart.scatter(points, title: title, xTitle: xTitle, yTitle: "test accuracy (%)", logX: true)
        }
        return "<h2>Pareto frontiers</h2>\n<p>Filled: distilled (orange on the frontier); hollow: the same student trained from scratch.</p>\n"
            + plot({ $0.latencyMicrosecondsP50 }, frontier: \.paretoLatency, title: "accuracy against batch-1 latency", xTitle: "batch-1 latency (µs, log scale)")
            + plot({ Double($0.size.bytes) }, frontier: \.paretoBytes, title: "accuracy against size", xTitle: "bytes (float32, log scale)") + "\n"
    }

    private var curvesSection: String {
        guard curves.contains(where: { !$0.scratch.isEmpty || !$0.distilled.isEmpty }) else { return "" }
        var s = "<h2>Training curves (first seed)</h2>\n<p>Test accuracy per epoch: grey from scratch, blue distilled.</p>\n"
        for c in curves {
            s += "<figure style=\"display:inline-block;margin:0 1em 1em 0\">" + SVGChart.lines([(c.scratch, "#999"), (c.distilled, "#4a7ab5")], title: c.name)
                + "</figure>\n"
        }
        return s
    }
}

/// Inline SVG charts and the page around them, shared by `sweep.html` and `fit.html`.
enum SVGChart {
    enum Style { case regular, frontier, hollow, winner, muted }

    struct Point {
        var x: Double, y: Double
        var label: String
        var style: Style
        /// Index of a point to join with a thin line (a scratch mark to its distilled one).
        var linkedTo: Int? = nil
    }

    /// A whole HTML page around `body`: one style for every report (run, sweep, fit), with no
    /// network needed to view it. `extraStyle` adds rules (the run report's bars and code blocks).
    static func page(title: String, body: String, maxWidth: String = "72em", extraStyle: String = "") -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
        <style>
        body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: \(maxWidth); color: #222; }
        table { border-collapse: collapse; margin: .5em 0 1.5em; } th, td { padding: .25em .6em; text-align: right; }
        th { border-bottom: 1px solid #999; } td.l, th.l { text-align: left; } tr:nth-child(even) td { background: #f6f6f6; }
        .note { color: #666; } svg text { font: 11px sans-serif; fill: #444; }\(extraStyle.isEmpty ? "" : "\n" + extraStyle)
        </style></head><body>
        \(body)</body></html>

        """
    }

    /// A scatter plot 640×360: x on a log scale when `logX`, frontier points joined by a line
    /// (in x order), labels beside filled points; `guides` draw dashed constraint lines.
    static func scatter(_ points: [Point], title: String, xTitle: String, yTitle: String, logX: Bool,
                        guides: (x: Double?, y: Double?) = (nil, nil)) -> String {
        let finite = points.filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) }
        guard !finite.isEmpty else { return "" }
        let width = 640.0, height = 360.0, left = 56.0, right = 16.0, top = 24.0, bottom = 40.0
        func tx(_ x: Double) -> Double { logX ? log10(max(x, 1e-12)) : x }
        var xs = finite.map { tx($0.x) }, ys = finite.map(\.y)
        if let gx = guides.x, gx.isFinite, !logX || gx > 0 { xs.append(tx(gx)) }
        if let gy = guides.y, gy.isFinite { ys.append(gy) }
        var x0 = xs.min()!, x1 = xs.max()!, y0 = ys.min()!, y1 = ys.max()!
        if x1 - x0 < 1e-9 { x0 -= 0.5; x1 += 0.5 }
        if y1 - y0 < 1e-9 { y0 -= 0.5; y1 += 0.5 }
        let xPad = (x1 - x0) * 0.06, yPad = (y1 - y0) * 0.08
        x0 -= xPad; x1 += xPad; y0 -= yPad; y1 += yPad
        func px(_ x: Double) -> Double { left + (tx(x) - x0) / (x1 - x0) * (width - left - right) }
        func py(_ y: Double) -> Double { top + (y1 - y) / (y1 - y0) * (height - top - bottom) }
        var s = "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">\n"
        s += "<text x=\"\(Int(left))\" y=\"14\" style=\"font-weight:bold\">\(escape(title))</text>\n"
        s += "<line x1=\"\(Int(left))\" y1=\"\(Int(height - bottom))\" x2=\"\(Int(width - right))\" y2=\"\(Int(height - bottom))\" stroke=\"#999\"/>\n"
        s += "<line x1=\"\(Int(left))\" y1=\"\(Int(top))\" x2=\"\(Int(left))\" y2=\"\(Int(height - bottom))\" stroke=\"#999\"/>\n"
        // Ticks: powers of 10 (and 2, 5 between) on a log axis; five even steps otherwise.
        var xTicks: [Double] = []
        if logX {
            for e in Int(floor(x0))...Int(ceil(x1)) {
                for m in [1.0, 2.0, 5.0] where (x0...x1).contains(log10(m) + Double(e)) { xTicks.append(m * pow(10, Double(e))) }
            }
        } else {
            xTicks = (0...4).map { x0 + (x1 - x0) * Double($0) / 4 }
        }
        for t in xTicks {
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", px(t), top, px(t), height - bottom)
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n", px(t), height - bottom + 14, short(t))
        }
        for k in 0...4 {
            let v = y0 + (y1 - y0) * Double(k) / 4
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", left, py(v), width - right, py(v))
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", left - 4, py(v) + 4, v)
        }
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n", (left + width - right) / 2, height - 6, escape(xTitle))
        s += String(format: "<text x=\"12\" y=\"%.1f\" transform=\"rotate(-90 12 %.1f)\" text-anchor=\"middle\">%@</text>\n", (top + height - bottom) / 2, (top + height - bottom) / 2, escape(yTitle))
        if let gx = guides.x, gx.isFinite, !logX || gx > 0 {
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n", px(gx), top, px(gx), height - bottom)
        }
        if let gy = guides.y, gy.isFinite {
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n", left, py(gy), width - right, py(gy))
        }
        func usable(_ p: Point) -> Bool { p.x.isFinite && p.y.isFinite && (!logX || p.x > 0) }
        for p in points where usable(p) {
            if let j = p.linkedTo, j < points.count, usable(points[j]) {
                s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\"/>\n", px(p.x), py(p.y), px(points[j].x), py(points[j].y))
            }
        }
        let frontier = points.filter { usable($0) && $0.style == .frontier }.sorted { $0.x < $1.x }
        if frontier.count > 1 {
            s += "<polyline fill=\"none\" stroke=\"#e07b39\" stroke-width=\"1.5\" points=\"" + frontier.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ") + "\"/>\n"
        }
        for p in points where usable(p) {
            let (fill, stroke, r): (String, String, Double)
            switch p.style {
            case .regular: (fill, stroke, r) = ("#4a7ab5", "#4a7ab5", 4)
            case .frontier: (fill, stroke, r) = ("#e07b39", "#e07b39", 5)
            case .hollow: (fill, stroke, r) = ("none", "#888", 3.5)
            case .winner: (fill, stroke, r) = ("#2a9d3a", "#145a1e", 6.5)
            case .muted: (fill, stroke, r) = ("#ccc", "#aaa", 3.5)
            }
            s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%@\" stroke=\"%@\"><title>%@</title></circle>\n", px(p.x), py(p.y), r, fill, stroke,
                        escape(p.label.isEmpty ? String(format: "%.2f", p.y) : "\(p.label): \(String(format: "%.2f", p.y))"))
            if !p.label.isEmpty && p.style != .muted {
                // Labels of points in the right third end at the point, so they stay inside the plot.
                let leftward = px(p.x) > left + (width - left - right) * 2 / 3
                s += String(format: "<text x=\"%.1f\" y=\"%.1f\"%@>%@</text>\n", px(p.x) + (leftward ? -7 : 7), py(p.y) - 5,
                            leftward ? " text-anchor=\"end\"" : "", escape(String(p.label.prefix(28))))
            }
        }
        return s + "</svg>\n"
    }

    /// Small line chart (320×160) of several series (x ascending), each in its colour.
    static func lines(_ series: [([(Double, Double)], String)], title: String) -> String {
        let all = series.flatMap(\.0).filter { $0.0.isFinite && $0.1.isFinite }
        guard !all.isEmpty else { return "" }
        let width = 320.0, height = 160.0, left = 40.0, bottom = 20.0, top = 18.0
        var x0 = all.map(\.0).min()!, x1 = all.map(\.0).max()!, y0 = all.map(\.1).min()!, y1 = all.map(\.1).max()!
        if x1 - x0 < 1e-9 { x1 = x0 + 1 }
        if y1 - y0 < 1e-9 { y0 -= 0.5; y1 += 0.5 }
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (width - left - 8) }
        func py(_ y: Double) -> Double { top + (y1 - y) / (y1 - y0) * (height - top - bottom) }
        var s = "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">\n"
        s += "<text x=\"\(Int(left))\" y=\"12\">\(escape(String(title.prefix(48))))</text>\n"
        s += "<line x1=\"\(Int(left))\" y1=\"\(Int(height - bottom))\" x2=\"\(Int(width - 8))\" y2=\"\(Int(height - bottom))\" stroke=\"#999\"/>\n"
        s += "<line x1=\"\(Int(left))\" y1=\"\(Int(top))\" x2=\"\(Int(left))\" y2=\"\(Int(height - bottom))\" stroke=\"#999\"/>\n"
        s += String(format: "<text x=\"2\" y=\"%.1f\">%.1f</text><text x=\"2\" y=\"%.1f\">%.1f</text>\n", py(y1) + 4, y1, py(y0) + 4, y0)
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\">epoch %.0f</text><text x=\"%.1f\" y=\"%.1f\">epoch %.0f</text>\n", left, height - 4, x0, width - 60, height - 4, x1)
        for (points, colour) in series where !points.isEmpty {
            s += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"" + points.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ") + "\"/>\n"
        }
        return s + "</svg>"
    }

    /// 1.5k, 20, 3M: short tick labels.
    static func short(_ v: Double) -> String {
        for (limit, unit) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] where abs(v) >= limit {
            let x = v / limit
            return (x == x.rounded() ? String(format: "%.0f", x) : String(format: "%.1f", x)) + unit
        }
        return v == v.rounded() ? String(format: "%.0f", v) : String(format: "%.2g", v)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
