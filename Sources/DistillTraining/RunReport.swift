import Foundation

/// `report.html` of a run folder: one self-contained page (no scripts, no network) with what a
/// user looks at after a distillation: size against accuracy and latency for the teacher and the
/// student, the training curves, the student's per-class accuracy and confusion matrix, the
/// transfer-set report (`DataReport`), and the configuration. A regression run's page has the
/// curves, the test errors (with the teacher's) and the configuration.
public struct RunReport {
    public var title: String
    public var models: [ModelSummary]
    /// One dictionary per epoch, as in `metrics.jsonl`.
    public var metrics: [[String: Any]]
    /// A classifier's test report (nil for a regression run).
    public var test: EvaluationReport?
    /// A regression run's test errors, and its teacher's.
    public var regression: RegressionReport?, teacherRegression: RegressionReport?
    public var classNames: [String]
    public var transfer: DataReport?
    /// Why the transfer-set report lacks the teacher's view, when it does.
    public var transferNote: String?
    public var configuration: [String: Any]
    /// A ready-made summary section (a text-kd run's table of the teacher and the students).
    public var summary: String = ""

    public init(title: String, models: [ModelSummary], metrics: [[String: Any]], test: EvaluationReport, classNames: [String],
                transfer: DataReport?, transferNote: String? = nil, configuration: [String: Any]) {
        self.title = title; self.models = models; self.metrics = metrics; self.test = test; self.classNames = classNames
        self.transfer = transfer; self.transferNote = transferNote; self.configuration = configuration
    }

    /// A regression run's page.
    public init(title: String, metrics: [[String: Any]], regression: RegressionReport, teacherRegression: RegressionReport?, configuration: [String: Any]) {
        self.title = title; self.models = []; self.metrics = metrics; self.test = nil; self.classNames = []
        self.regression = regression; self.teacherRegression = teacherRegression; self.transfer = nil; self.configuration = configuration
    }

    /// A text-kd run's page: `summary` (its table, as HTML), the curves and the configuration.
    public init(title: String, metrics: [[String: Any]], summary: String, configuration: [String: Any]) {
        self.title = title; self.models = []; self.metrics = metrics; self.test = nil; self.classNames = []
        self.transfer = nil; self.configuration = configuration; self.summary = summary
    }

    public var html: String {
        var body = "<h1>\(escape(title))</h1>\n"
        body += summary + modelsSection + curvesSection + testSection + regressionSection + transferSection + configurationSection
        return SVGChart.page(title: title, body: body, maxWidth: "60em", extraStyle:
            ".bar { display: inline-block; height: .8em; background: #4a7ab5; } pre { background: #f4f4f4; padding: 1em; overflow-x: auto; }")
    }

    // MARK: Sections

    private var modelsSection: String {
        guard !models.isEmpty else { return "" }
        var s = "<h2>Size, accuracy, latency</h2>\n<table><tr><th class=l>model</th><th class=l>spec</th><th>parameters</th><th>bytes</th><th>test accuracy</th><th>batch-1 latency</th></tr>\n"
        for m in models {
            s += "<tr><td class=l>\(escape(m.role))</td><td class=l>\(escape(m.spec))</td><td>\(m.parameters)</td><td>\(m.bytes)</td>"
            s += String(format: "<td>%.2f%%</td><td>%.1f µs</td></tr>\n", m.accuracy * 100, m.latencyMicroseconds)
        }
        s += "</table>\n"
        if let teacher = models.first(where: { $0.role.hasPrefix("teacher") }), let student = models.last, student.role != teacher.role {
            s += String(format: "<p>The student is %.1f× smaller (parameters), %.1f× faster at batch 1, and keeps %.1f%% of the teacher's accuracy (%+.2f points).</p>\n",
                        Double(teacher.parameters) / Double(max(student.parameters, 1)),
                        teacher.latencyMicroseconds / max(student.latencyMicroseconds, 1e-9),
                        student.accuracy / max(teacher.accuracy, 1e-9) * 100, (student.accuracy - teacher.accuracy) * 100)
        }
        return s
    }

    private var curvesSection: String {
        func series(_ key: String) -> [(Double, Double)] {
            metrics.compactMap { line in
                guard let epoch = (line["epoch"] as? NSNumber)?.doubleValue, let value = (line[key] as? NSNumber)?.doubleValue,
                      value.isFinite else { return nil }
                return (epoch, value)
            }
        }
        // Epochs are scored on the test set, or on a validation split (`validation_accuracy`).
        let held = metrics.contains { $0["validation_accuracy"] != nil } ? "validation" : "test"
        let loss = series("train_loss"), accuracy = series("\(held)_accuracy").map { ($0.0, $0.1 * 100) }, rmse = series("test_rmse")
        let recall = series("test_recall_at_10").map { ($0.0, $0.1 * 100) }
        guard !loss.isEmpty || !accuracy.isEmpty || !rmse.isEmpty || !recall.isEmpty else { return "" }
        return "<h2>Training</h2>\n" + lineChart(loss, title: "training loss") + lineChart(accuracy, title: "\(held) accuracy (%)")
            + lineChart(rmse, title: "test RMSE") + lineChart(recall, title: "test recall@10 (%)") + "\n"
    }

    private var regressionSection: String {
        guard let regression else { return "" }
        var s = "<h2>Test set</h2>\n<table><tr><th class=l>model</th><th>rows</th><th>RMSE</th><th>MAE</th><th>R²</th></tr>\n"
        for (name, r) in [("teacher", teacherRegression), ("student", regression)] {
            guard let r else { continue }
            s += "<tr><td class=l>\(name)</td>" + String(format: "<td>%d</td><td>%.4f</td><td>%.4f</td><td>%.4f</td></tr>\n", r.count, r.rmse, r.mae, r.r2)
        }
        return s + "</table>\n"
    }

    private var testSection: String {
        guard let test else { return "" }
        var s = String(format: "<h2>Student on the test set</h2>\n<p>%d samples: accuracy %.2f%%, top-5 %.2f%%, expected calibration error %.4f",
                       test.count, test.accuracy * 100, test.top5Accuracy * 100, test.expectedCalibrationError)
        if let agreement = test.teacherAgreement { s += String(format: ", agrees with the teacher on %.2f%%", agreement * 100) }
        s += ".</p>\n<table><tr><th class=l>class</th><th>accuracy</th><th class=l></th></tr>\n"
        for (c, accuracy) in test.perClassAccuracy.enumerated() {
            s += "<tr><td class=l>\(escape(name(c)))</td>" + String(format: "<td>%.2f%%</td>", accuracy * 100)
                + "<td class=l><span class=bar style=\"width:\(Int(accuracy * 200))px\"></span></td></tr>\n"
        }
        s += "</table>\n<p>Confusion matrix (rows: label, columns: prediction).</p>\n<table><tr><th></th>"
        for c in test.confusion.indices { s += "<th title=\"\(escape(name(c)))\">\(c)</th>" }
        s += "</tr>\n"
        for (label, row) in test.confusion.enumerated() {
            let total = max(row.reduce(0, +), 1)
            s += "<tr><th class=l>\(label) \(escape(name(label)))</th>"
            for (prediction, k) in row.enumerated() {
                let share = Double(k) / Double(total)
                let hue = prediction == label ? "74,122,181" : "200,60,60"
                s += String(format: "<td style=\"background: rgba(%@,%.2f)\">%d</td>", hue, min(1, share * (prediction == label ? 1 : 4)), k)
            }
            s += "</tr>\n"
        }
        return s + "</table>\n"
    }

    private var transferSection: String {
        guard let t = transfer else { return "" }
        var s = "<h2>Transfer set</h2>\n<p>\(t.rows) training rows, \(t.features) features, \(t.numClasses) classes.</p>\n"
        if let transferNote { s += "<p class=note>\(escape(transferNote))</p>\n" }
        if !t.classCounts.isEmpty {
            let most = max(t.classCounts.max() ?? 1, 1)
            s += "<h3>Class balance</h3>\n<table><tr><th class=l>class</th><th>rows</th><th>share</th><th class=l></th></tr>\n"
            for (c, k) in t.classCounts.enumerated() {
                s += "<tr><td class=l>\(escape(t.className(c)))</td><td>\(k)</td>" + String(format: "<td>%.1f%%</td>", Double(k) / Double(max(t.rows, 1)) * 100)
                    + "<td class=l><span class=bar style=\"width:\(k * 200 / most)px\"></span></td></tr>\n"
            }
            s += "</table>\n"
        } else {
            s += "<p>Unlabelled: the teacher's outputs are the only targets.</p>\n"
        }
        if !t.confidenceHistogram.isEmpty {
            let most = max(t.confidenceHistogram.max() ?? 1, 1)
            s += "<h3>Teacher confidence</h3>\n<table><tr><th class=l>max probability</th><th>rows</th><th class=l></th></tr>\n"
            for (b, k) in t.confidenceHistogram.enumerated() {
                s += String(format: "<tr><td class=l>%.1f–%.1f</td><td>%d</td>", Double(b) / 10, Double(b + 1) / 10, k)
                    + "<td class=l><span class=bar style=\"width:\(k * 200 / most)px\"></span></td></tr>\n"
            }
            s += "</table>\n"
        }
        if let agreement = t.teacherAgreement {
            s += String(format: "<p>The teacher agrees with the label on %.2f%% of rows (%d disagreements).</p>\n", agreement * 100, t.disagreementCount)
            if !t.disagreements.isEmpty {
                s += "<h3>Most confident disagreements (possible label noise)</h3>\n<table><tr><th>row</th><th class=l>label</th><th class=l>teacher</th><th>teacher p</th><th>label p</th></tr>\n"
                for d in t.disagreements {
                    s += "<tr><td>\(d.row)</td><td class=l>\(escape(t.className(d.label)))</td><td class=l>\(escape(t.className(d.teacherClass)))</td>"
                        + String(format: "<td>%.3f</td><td>%.3f</td></tr>\n", d.teacherProbability, d.labelProbability)
                }
                s += "</table>\n"
            }
        }
        s += "<p>Exact duplicates: \(t.duplicateRows) rows repeat an earlier row"
            + (t.conflictingDuplicateGroups > 0 ? " (\(t.conflictingDuplicateGroups) groups with conflicting labels)" : "") + ". "
        s += "Constant features: \(t.constantFeatures.count). Non-finite features: \(t.nonFiniteFeatures.count).</p>\n"
        return s
    }

    private var configurationSection: String {
        guard let data = try? JSONSerialization.data(withJSONObject: configuration, options: [.prettyPrinted, .sortedKeys]) else { return "" }
        return "<h2>Configuration</h2>\n<pre>\(escape(String(decoding: data, as: UTF8.self)))</pre>\n"
    }

    // MARK: Helpers

    private func name(_ c: Int) -> String { c < classNames.count ? classNames[c] : String(c) }

    /// An inline SVG line chart of `points` (x ascending), 360×160 with min/max labels.
    private func lineChart(_ allPoints: [(Double, Double)], title: String) -> String {
        // Points beyond ±1e15 (a diverging loss) would leave no scale to draw on: left out.
        let points = allPoints.filter { abs($0.0) < 1e15 && abs($0.1) < 1e15 }
        guard let first = points.first, let last = points.last else { return "" }
        let width = 360.0, height = 160.0, left = 44.0, bottom = 20.0, top = 18.0
        let ys = points.map(\.1)
        var low = ys.min()!, high = ys.max()!
        if high - low < 1e-9 * max(1, abs(high)) { low -= 0.5 * max(1, abs(low)); high += 0.5 * max(1, abs(high)) }
        let span = max(last.0 - first.0, 1)
        func px(_ x: Double) -> Double { left + (x - first.0) / span * (width - left - 8) }
        func py(_ y: Double) -> Double { top + (high - y) / (high - low) * (height - top - bottom) }
        let path = points.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
        return """
        <svg width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" role="img" aria-label="\(escape(title))">
        <text x="\(Int(left))" y="12">\(escape(title))</text>
        <line x1="\(Int(left))" y1="\(Int(height - bottom))" x2="\(Int(width - 8))" y2="\(Int(height - bottom))" stroke="#999"/>
        <line x1="\(Int(left))" y1="\(Int(top))" x2="\(Int(left))" y2="\(Int(height - bottom))" stroke="#999"/>
        <text x="2" y="\(Int(py(high)) + 4)">\(format(high))</text><text x="2" y="\(Int(py(low)) + 4)">\(format(low))</text>
        <text x="\(Int(left))" y="\(Int(height - 4))">epoch \(Int(first.0))</text>
        <text x="\(Int(width - 60))" y="\(Int(height - 4))">epoch \(Int(last.0))</text>
        <polyline fill="none" stroke="#4a7ab5" stroke-width="2" points="\(path)"/>
        </svg>
        """
    }

    private func format(_ value: Double) -> String { abs(value) >= 10 ? String(format: "%.1f", value) : String(format: "%.3f", value) }

    private func escape(_ text: String) -> String { SVGChart.escape(text) }
}
