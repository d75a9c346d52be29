import DistillData
import DistillNN
import DistillTensor
import Foundation

/// What `distill sweep` does: every student trained from scratch and distilled, over several
/// seeds, then measured (size, FLOPs, accuracy, latency, throughput) and placed on two Pareto
/// frontiers (accuracy against batch-1 latency, and against bytes).
public struct SweepSettings {
    /// Data, teacher(s), training options and the first seed, shared by every run; the student and
    /// the losses are set per run.
    public var base = Experiment()
    public var students: [SweepStudent] = []
    /// The distilled runs' losses (the scratch runs use cross-entropy alone).
    public var distillation: [LossTerm]
    /// Seeds per student: `base.options.seed`, +1, +2, ...
    public var seeds = 3
    /// The sweep folder: `sweep.jsonl`, `sweep.csv`, `sweep.html`, and `runs/STUDENT/seed-N/{scratch,distilled}`.
    public var output: URL
    /// Keep the students `sweep.jsonl` already holds (for the same settings) and continue the
    /// interrupted run from its checkpoint.
    public var resume = false
    /// Seconds spent timing each trained student (half at batch 1, half at batch 256).
    public var speedSeconds = 1.0
    /// Fills the `*_int8` columns; nil leaves them null (see `Int8Measurement`).
    public var int8: Int8Measurement? = nil
    /// Train and test sets already in memory (tests, and callers that load data once).
    public var preloaded: (train: LabeledDataset, test: LabeledDataset)? = nil

    /// The settings of a sweep writing `output`, distilling with Hinton's loss at the project's
    /// default recipe (T = 2, 0.5·KD + 0.5·CE; README, "Choosing T and α").
    public init(output: URL) {
        self.output = output
        distillation = LossTerm.recipe()
    }

    /// Most seeds a sweep may ask for.
    public static let maxSeeds = 100
}

/// One line of `sweep.jsonl`: one student, one seed, scratch and distilled.
public struct SweepSeedRow: Equatable {
    public var name: String
    public var spec: String
    public var seed: UInt64
    public var size: StudentSize
    /// Final test accuracy of the distilled run, and of the scratch run (fractions of 1).
    public var accuracy: Double
    public var accuracyScratch: Double
    /// The distilled student's speed (the scratch one has the same architecture).
    public var speed: StudentSpeed
    public var int8: Int8Figures?
    /// Minutes the two runs took (training and evaluation).
    public var minutes: Double
    /// The resolved settings of both runs: a resumed sweep keeps the line only when they match.
    public var fingerprint: String

    public var json: [String: Any] {
        var j: [String: Any] = ["name": name, "spec": spec, "seed": Int(exactly: seed) ?? Int.max, "params": size.parameters, "bytes": size.bytes,
                                "accuracy": accuracy, "accuracy_scratch": accuracyScratch, "latency_us_p50": speed.latencyMicrosecondsP50,
                                "samples_per_second": speed.samplesPerSecond, "inference_path": speed.path, "minutes": minutes,
                                "fingerprint": fingerprint]
        j["flops"] = size.flops ?? NSNull()
        j["bytes_int8"] = int8?.bytes ?? NSNull()
        j["accuracy_int8"] = int8?.accuracy ?? NSNull()
        j["latency_us_p50_int8"] = int8?.latencyMicrosecondsP50 ?? NSNull()
        j["samples_per_second_int8"] = int8?.samplesPerSecond ?? NSNull()
        return j
    }

    /// Reads a line written by `json`; nil when a field is missing or of the wrong type (the
    /// line is then not kept, and the student is trained again).
    public init?(json j: [String: Any]) {
        func number(_ k: String) -> Double? { (j[k] as? NSNumber).map(\.doubleValue).flatMap { $0.isFinite ? $0 : nil } }
        func fraction(_ k: String) -> Double? { number(k).flatMap { (0...1).contains($0) ? $0 : nil } }
        func positive(_ k: String) -> Double? { number(k).flatMap { $0 > 0 ? $0 : nil } }
        func count(_ k: String) -> Int? { (j[k] as? Int).flatMap { $0 >= 0 ? $0 : nil } }
        // A line edited by hand (an accuracy of 1e308, -5 parameters) is not kept: the student is trained again.
        guard let name = j["name"] as? String, let spec = j["spec"] as? String, let seed = j["seed"] as? Int, seed >= 0,
              let params = count("params"), let bytes = count("bytes"), let accuracy = fraction("accuracy"),
              let scratch = fraction("accuracy_scratch"), let latency = positive("latency_us_p50"), let rate = positive("samples_per_second"),
              let fingerprint = j["fingerprint"] as? String else { return nil }
        self.name = name; self.spec = spec; self.seed = UInt64(seed)
        size = StudentSize(parameters: params, bytes: bytes, flops: j["flops"] as? Int)
        self.accuracy = accuracy; accuracyScratch = scratch
        speed = StudentSpeed(latencyMicrosecondsP50: latency, samplesPerSecond: rate, path: j["inference_path"] as? String ?? "")
        if let b = count("bytes_int8"), let a = fraction("accuracy_int8"), let l = positive("latency_us_p50_int8"), let s = positive("samples_per_second_int8") {
            int8 = Int8Figures(bytes: b, accuracy: a, latencyMicrosecondsP50: l, samplesPerSecond: s)
        }
        minutes = number("minutes") ?? 0
        self.fingerprint = fingerprint
    }

    public init(name: String, spec: String, seed: UInt64, size: StudentSize, accuracy: Double, accuracyScratch: Double,
                speed: StudentSpeed, int8: Int8Figures? = nil, minutes: Double = 0, fingerprint: String = "") {
        self.name = name; self.spec = spec; self.seed = seed; self.size = size; self.accuracy = accuracy
        self.accuracyScratch = accuracyScratch; self.speed = speed; self.int8 = int8; self.minutes = minutes; self.fingerprint = fingerprint
    }
}

/// One student of the sweep table: its seeds' rows summarised, and its place on the frontiers.
public struct SweepRow: Equatable {
    public var name: String
    public var spec: String
    public var size: StudentSize
    public var seeds: Int
    /// Mean and standard deviation (n − 1; 0 for one seed) of the distilled test accuracy.
    public var accuracy: Double, accuracyStd: Double
    public var accuracyScratch: Double, accuracyScratchStd: Double
    /// Medians over the seeds.
    public var latencyMicrosecondsP50: Double, samplesPerSecond: Double
    /// Means (accuracy) and medians (speed) over the seeds, when every seed has them.
    public var int8: Int8Figures?
    /// On the frontier of distilled accuracy against batch-1 latency, and against bytes.
    public var paretoLatency = false, paretoBytes = false

    /// An accuracy (a fraction) as a percentage: "87.34 ± 0.12%" over several seeds, "87.34%" for
    /// one (its standard deviation says nothing).
    public func percent(_ mean: Double, std: Double) -> String {
        seeds > 1 ? String(format: "%.2f ± %.2f%%", mean * 100, std * 100) : String(format: "%.2f%%", mean * 100)
    }

    /// Summarises the rows of one student (at least one).
    public init(_ rows: [SweepSeedRow]) {
        let first = rows[0]
        name = first.name; spec = first.spec; size = first.size; seeds = rows.count
        (accuracy, accuracyStd) = Self.meanAndStd(rows.map(\.accuracy))
        (accuracyScratch, accuracyScratchStd) = Self.meanAndStd(rows.map(\.accuracyScratch))
        latencyMicrosecondsP50 = Self.median(rows.map(\.speed.latencyMicrosecondsP50))
        samplesPerSecond = Self.median(rows.map(\.speed.samplesPerSecond))
        let quantized = rows.compactMap(\.int8)
        if quantized.count == rows.count {
            int8 = Int8Figures(bytes: quantized[0].bytes, accuracy: Self.meanAndStd(quantized.map(\.accuracy)).mean,
                               latencyMicrosecondsP50: Self.median(quantized.map(\.latencyMicrosecondsP50)),
                               samplesPerSecond: Self.median(quantized.map(\.samplesPerSecond)))
        }
    }

    /// The row as `distill sweep --json` prints it (its documented keys; `*_int8` null without
    /// `--int8`; accuracies as fractions of 1).
    public var json: [String: Any] {
        var j: [String: Any] = ["spec": spec, "params": size.parameters, "bytes": size.bytes, "accuracy": accuracy, "accuracy_std": accuracyStd,
                                "accuracy_scratch": accuracyScratch, "latency_us_p50": latencyMicrosecondsP50,
                                "samples_per_second": samplesPerSecond, "pareto": ["latency": paretoLatency, "bytes": paretoBytes]]
        j["bytes_int8"] = int8?.bytes ?? NSNull()
        j["accuracy_int8"] = int8?.accuracy ?? NSNull()
        j["latency_us_p50_int8"] = int8?.latencyMicrosecondsP50 ?? NSNull()
        j["samples_per_second_int8"] = int8?.samplesPerSecond ?? NSNull()
        return j
    }

    static func meanAndStd(_ values: [Double]) -> (mean: Double, std: Double) {
        guard !values.isEmpty else { return (.nan, .nan) }
        let mean = values.reduce(0, +) / Double(values.count)
        guard values.count > 1 else { return (mean, 0) }
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)
        return (mean, variance.squareRoot())
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// Marks each row's place on the two frontiers (distilled accuracy against latency and bytes).
    public static func markPareto(_ rows: inout [SweepRow]) {
        let latency = Pareto.frontier(rows.map { ($0.latencyMicrosecondsP50, $0.accuracy) })
        let bytes = Pareto.frontier(rows.map { (Double($0.size.bytes), $0.accuracy) })
        for i in rows.indices { rows[i].paretoLatency = latency[i]; rows[i].paretoBytes = bytes[i] }
    }
}

/// A finished sweep.
public struct SweepResult {
    public var rows: [SweepRow]
    public var seedRows: [SweepSeedRow]
    public var folder: URL
    public var minutes: Double

    /// `{"rows": [...]}`, what `distill sweep --json` prints.
    public var json: [String: Any] { ["rows": rows.map(\.json)] }
}

/// Runs sweeps (`distill sweep`).
public enum SweepRunner {
    public static let jsonlName = "sweep.jsonl", csvName = "sweep.csv", htmlName = "sweep.html"

    /// Trains, measures and reports every student of `settings`. Every student and the teacher
    /// are checked against the data before anything is trained; a finished (student, seed) is
    /// written to `sweep.jsonl` at once, so a killed sweep rerun with `resume` loses at most the
    /// epochs since the interrupted run's last checkpoint.
    ///
    /// Under mpirun (`world` of several ranks) the (student, seed) pairs are shared out: rank 0
    /// hands the next pair (costliest first, `SweepQueue`) to whichever rank is free, trains pairs
    /// itself too, gathers the rows and writes `sweep.jsonl`, `sweep.csv` and `sweep.html` as one
    /// process would (`RankQueue`). Each rank trains its runs alone with its share of the host's
    /// cores; the sweep folder must be one every rank sees. The other ranks return a result
    /// without rows.
    public static func run(_ settings: SweepSettings, world: Distributed? = nil) throws -> SweepResult {
        let started = DispatchTime.now().uptimeNanoseconds
        let world = try world ?? Distributed.world
        var settings = settings
        if !world.isMain { settings.base.options.quiet = true }
        let quiet = settings.base.options.quiet
        let data = try settings.preloaded ?? DataSource.load(settings.base.data, testData: settings.base.testData,
                                                               labelColumn: settings.base.labelColumn, seed: settings.base.options.seed)
        let plans = try prepare(settings, data: data)
        // Under mpirun every rank must plan the same units on the same data, or ranks would train
        // what rank 0 did not ask for.
        try world.requireSameConfiguration(plans.flatMap { $0.seeds.map(\.fingerprint) }.joined(separator: ","),
                                           data: world.isDistributed ? data.train.fingerprint(continuing: data.test.fingerprint()) : 0)
        let folder = RunFolder(settings.output)
        let jsonl = settings.output.appendingPathComponent(jsonlName)
        var kept: [SweepSeedRow] = []
        let runsFolder = settings.output.appendingPathComponent("runs")
        if world.isMain {
            let holdsSweep = FileManager.default.fileExists(atPath: jsonl.path) || FileManager.default.fileExists(atPath: runsFolder.path)
            if !settings.resume && holdsSweep {
                throw TensorError("\(settings.output.path) already holds a sweep (\(jsonlName) or runs/); add --resume to continue it, or choose another --output")
            }
            if settings.resume && !holdsSweep {
                throw TensorError("--resume: \(settings.output.path) holds no sweep to resume (no \(jsonlName), no runs/); check --output, or start the sweep without --resume")
            }
            if FileManager.default.fileExists(atPath: jsonl.path) {
                let lines = readLines(jsonl)
                let wanted = Set(plans.flatMap { p in p.seeds.map { "\(p.student.name)|\($0.seed)|\($0.fingerprint)" } })
                for line in lines {
                    guard let row = SweepSeedRow(json: line), wanted.contains("\(row.name)|\(row.seed)|\(row.fingerprint)") else { continue }
                    kept.append(row)
                }
                if !quiet && kept.count < lines.count {
                    log("sweep: \(lines.count - kept.count) line(s) of \(jsonl.path) are for other students or settings; those runs are trained again")
                }
            }
            try folder.create()
        }
        try RankQueue.requireSharedFolder(settings.output, world: world)
        let sharedTeacher = SharedTeacherLogits(folder: settings.output, train: data.train.prefix(settings.base.trainLimit ?? data.train.count), quiet: quiet)

        let total = plans.reduce(0) { $0 + $1.seeds.count }
        var done: [String: SweepSeedRow] = Dictionary(kept.map { ("\($0.name)|\($0.seed)", $0) }, uniquingKeysWith: { a, _ in a })
        if !quiet && !done.isEmpty { log("sweep: resuming \(settings.output.path): \(done.count) of \(total) (student, seed) pairs already finished") }
        let weights = plans.map { $0.costPerSeed }
        let remainingWork = zip(plans, weights).reduce(0.0) { sum, pair in
            sum + Double(pair.0.seeds.filter { done["\(pair.0.student.name)|\($0.seed)"] == nil }.count) * pair.1
        }
        var workDone = 0.0
        let sweepStart = DispatchTime.now().uptimeNanoseconds
        var finished = done.count
        func eta(_ share: Double) -> String {
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - sweepStart) / 1e9
            return "\(ProgressBar.clock(elapsed)) elapsed, ETA \(share > 0 ? ProgressBar.clock(elapsed / share * (1 - share)) : "?")"
        }
        /// Writes the rows finished so far: the whole file, rewritten atomically (a kill leaves the previous version).
        func record(_ row: SweepSeedRow, cost: Double) throws {
            done["\(row.name)|\(row.seed)"] = row
            finished += 1
            workDone += cost
            let text = orderedRows(plans, done).map { String(decoding: (try? JSONSerialization.data(withJSONObject: $0.json, options: [.sortedKeys])) ?? Data(), as: UTF8.self) }
            try AtomicFile.write(Data((text.joined(separator: "\n") + "\n").utf8), to: jsonl)
        }

        if world.isDistributed {
            // Every (student, seed) pair is a unit; rank 0 says which are left (it read sweep.jsonl).
            let units = plans.indices.flatMap { p in plans[p].seeds.indices.map { (plan: p, seed: $0) } }
            var left = Data(units.indices.filter { done["\(plans[units[$0].plan].student.name)|\(plans[units[$0].plan].seeds[units[$0].seed].seed)"] == nil }
                .flatMap { RankQueue.encodeUnit($0) })
            try world.broadcast(&left)
            let remaining = try stride(from: 0, to: left.count, by: 8).map { try RankQueue.decodeUnit(left[$0..<$0 + 8]) }
            // The teacher's logits once, computed by all ranks together, before the runs that read them.
            let distilled = remaining.map { plans[units[$0].plan].seeds[units[$0].seed].distilled }
            if let first = distilled.first(where: { SharedTeacherLogits.applies(to: $0) }) { try sharedTeacher.prepare(first, world: world) }
            let order = SweepQueue(costs: remaining.map { weights[units[$0].plan] }).order.map { remaining[$0] }
            let context = UncheckedSendable((plans, units, data, settings, sharedTeacher))
            try RankQueue.run(world: world, order: order, work: { id in
                let (plans, units, data, settings, sharedTeacher) = context.value
                let plan = plans[units[id].plan]
                let row = try trainPair(plan, plan.seeds[units[id].seed], data: data, settings: settings, sharedTeacher: sharedTeacher,
                                        world: .oneProcess, quietRuns: true)
                return try JSONSerialization.data(withJSONObject: row.json, options: [.sortedKeys])
            }, started: { id, rank in
                guard !quiet else { return }
                let plan = plans[units[id].plan]
                log("sweep: rank \(rank) trains student \(units[id].plan + 1) of \(plans.count) (\(plan.student.name.prefix(60))), seed \(plan.seeds[units[id].seed].seed); \(finished) of \(total) done, \(eta(workDone / max(remainingWork, 1e-9)))")
            }, finished: { id, rank, result in
                guard let object = try JSONSerialization.jsonObject(with: result) as? [String: Any], let row = SweepSeedRow(json: object) else {
                    throw TensorError("sweep: rank \(rank) sent an unreadable result for unit \(id)")
                }
                try record(row, cost: weights[units[id].plan])
            })
            guard world.isMain else {
                try RankQueue.waitForRelease(world)
                return SweepResult(rows: [], seedRows: [], folder: settings.output, minutes: Double(DispatchTime.now().uptimeNanoseconds - started) / 60e9)
            }
        } else {
            for (index, plan) in plans.enumerated() {
                for (seedIndex, seedPlan) in plan.seeds.enumerated() where done["\(plan.student.name)|\(seedPlan.seed)"] == nil {
                    let row = try trainPair(plan, seedPlan, data: data, settings: settings, sharedTeacher: sharedTeacher, world: nil, quietRuns: false) { role in
                        guard !quiet else { return }
                        let share = (workDone + (role == "distilled" ? weights[index] / 2 : 0)) / max(remainingWork, 1e-9)
                        log("sweep: student \(index + 1) of \(plans.count) (\(plan.student.name.prefix(60))), seed \(seedIndex + 1) of \(plan.seeds.count), \(role); \(finished) of \(total) done, \(eta(share))")
                    }
                    try record(row, cost: weights[index])
                }
            }
        }

        let seedRows = orderedRows(plans, done)
        var rows = plans.map { plan in SweepRow(seedRows.filter { $0.name == plan.student.name }) }
        SweepRow.markPareto(&rows)
        let minutes = Double(DispatchTime.now().uptimeNanoseconds - started) / 60e9
        let result = SweepResult(rows: rows, seedRows: seedRows, folder: settings.output, minutes: minutes)
        try AtomicFile.write(Data(csv(rows).utf8), to: settings.output.appendingPathComponent(csvName))
        // Each student's curves from its first seed whose run folders are still there.
        let curves = plans.map { plan -> SweepReport.Curves in
            func series(_ e: Experiment) -> [(Double, Double)] { SweepReport.accuracySeries(RunFolder(URL(fileURLWithPath: e.output!)).readMetrics()) }
            let pairs = plan.seeds.lazy.map { (series($0.scratch), series($0.distilled)) }
            let (scratch, distilled) = pairs.first { !$0.0.isEmpty && !$0.1.isEmpty } ?? ([], [])
            return SweepReport.Curves(name: plan.student.name, scratch: scratch, distilled: distilled)
        }
        let report = SweepReport(title: "Sweep of \(rows.count) students on \(settings.base.data)", rows: rows, curves: curves,
                                 settings: describe(settings), int8Measured: settings.int8 != nil)
        try AtomicFile.write(Data(report.html.utf8), to: settings.output.appendingPathComponent(htmlName))
        try RankQueue.release(world)
        return result
    }

    /// Trains one student's scratch and distilled runs for one seed and measures the distilled
    /// student: its row of `sweep.jsonl`. `announce(role)` is called before each run.
    static func trainPair(_ plan: StudentPlan, _ seedPlan: SeedPlan, data: (train: LabeledDataset, test: LabeledDataset), settings: SweepSettings,
                          sharedTeacher: SharedTeacherLogits, world: Distributed?, quietRuns: Bool,
                          announce: (String) -> Void = { _ in }) throws -> SweepSeedRow {
        let pairStart = DispatchTime.now().uptimeNanoseconds
        var accuracies: [Double] = []
        for (role, experiment) in [("scratch", seedPlan.scratch), ("distilled", seedPlan.distilled)] {
            announce(role)
            var e = role == "distilled" ? try sharedTeacher.sharing(experiment) : experiment
            if quietRuns { e.options.quiet = true }
            let result = try runOne(e, data: data, settings: settings, world: world)
            accuracies.append(result.training.test.accuracy)
        }
        let runFolder = RunFolder(URL(fileURLWithPath: seedPlan.distilled.output!))
        let (student, info) = try SavedModel.load(runFolder.finalModel)
        let statistics = try Tabular.statistics(of: info, source: runFolder.finalModel.path)
        let speed = StudentSpeed.measure(student, exampleShape: info.inputShape, standardize: statistics, seconds: settings.speedSeconds)
        let int8 = try settings.int8.map { measure in
            try measure(student, info, data.train.prefix(settings.base.trainLimit ?? data.train.count), data.test)
        }
        let minutes = Double(DispatchTime.now().uptimeNanoseconds - pairStart) / 60e9
        return SweepSeedRow(name: plan.student.name, spec: plan.student.spec, seed: seedPlan.seed, size: plan.size,
                            accuracy: accuracies[1], accuracyScratch: accuracies[0], speed: speed, int8: int8,
                            minutes: minutes, fingerprint: seedPlan.fingerprint)
    }

    /// The table `distill sweep` prints; with `--int8`, the int8 student's accuracy, batch-1 latency
    /// and batch-256 throughput stand before the Pareto column.
    public static func table(_ rows: [SweepRow]) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        let width = min(40, max(8, rows.map(\.name.count).max() ?? 8))
        let hasInt8 = rows.contains { $0.int8 != nil }
        var lines = [pad("student", width) + "    params      bytes     FLOPs   scratch acc      distilled acc    gain  batch-1 µs  batch-256/s"
                     + (hasInt8 ? "  int8 acc  int8 µs    int8 /s" : "") + "  pareto"]
        for r in rows {
            let flops = String((r.size.flops.map { String($0) } ?? "?").suffix(9))
            let flopsCell = String(repeating: " ", count: 9 - flops.count) + flops
            let pareto = [r.paretoLatency ? "latency" : nil, r.paretoBytes ? "bytes" : nil].compactMap { $0 }.joined(separator: ",")
            func accuracyCell(_ mean: Double, _ std: Double) -> String {
                let text = r.percent(mean, std: std)
                return String(repeating: " ", count: max(0, 15 - text.count)) + text
            }
            var line = pad(String(r.name.prefix(width)), width) + String(format: " %9d %10d %@ %@ %@  %+5.2f  %10.1f  %11.0f",
                                                                          r.size.parameters, r.size.bytes, flopsCell,
                                                                          accuracyCell(r.accuracyScratch, r.accuracyScratchStd), accuracyCell(r.accuracy, r.accuracyStd),
                                                                          (r.accuracy - r.accuracyScratch) * 100, r.latencyMicrosecondsP50, r.samplesPerSecond)
            if hasInt8 {
                line += r.int8.map { String(format: "  %7.2f%%  %7.1f  %9.0f", $0.accuracy * 100, $0.latencyMicrosecondsP50, $0.samplesPerSecond) }
                    ?? "         -        -          -"
            }
            lines.append(line + "  " + (pareto.isEmpty ? "-" : pareto))
        }
        return lines.joined(separator: "\n")
    }

    /// `sweep.csv`: one line per student; empty cells where a figure is unknown (FLOPs of a layer
    /// the count does not cover, the int8 columns without `--int8`).
    public static func csv(_ rows: [SweepRow]) -> String {
        func cell(_ s: String) -> String { s.contains(where: { ",\"\n".contains($0) }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
        func number(_ d: Double?) -> String { d.map { String($0) } ?? "" }
        var lines = ["name,spec,params,bytes,flops,seeds,accuracy,accuracy_std,accuracy_scratch,accuracy_scratch_std,latency_us_p50,samples_per_second,bytes_int8,accuracy_int8,latency_us_p50_int8,samples_per_second_int8,pareto_latency,pareto_bytes"]
        for r in rows {
            lines.append([cell(r.name), cell(r.spec), String(r.size.parameters), String(r.size.bytes), r.size.flops.map(String.init) ?? "", String(r.seeds),
                          number(r.accuracy), number(r.accuracyStd), number(r.accuracyScratch), number(r.accuracyScratchStd),
                          number(r.latencyMicrosecondsP50), number(r.samplesPerSecond), r.int8.map { String($0.bytes) } ?? "",
                          number(r.int8?.accuracy), number(r.int8?.latencyMicrosecondsP50), number(r.int8?.samplesPerSecond),
                          String(r.paretoLatency), String(r.paretoBytes)].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: Planning

    /// One student's runs: its size and, per seed, the scratch and distilled experiments.
    struct StudentPlan {
        var student: SweepStudent
        var size: StudentSize
        var seeds: [SeedPlan]
        /// Relative cost of one seed (FLOPs × epochs × rows), for the ETA.
        var costPerSeed: Double
    }

    struct SeedPlan {
        var seed: UInt64
        var scratch: Experiment
        var distilled: Experiment
        var fingerprint: String
    }

    /// Checks everything that can be checked before training (settings, every student against
    /// the data's shape and classes, the teacher) and resolves each run's experiment.
    static func prepare(_ settings: SweepSettings, data: (train: LabeledDataset, test: LabeledDataset)) throws -> [StudentPlan] {
        guard (1...SweepSettings.maxSeeds).contains(settings.seeds) else { throw TensorError("--seeds \(settings.seeds): must be 1...\(SweepSettings.maxSeeds)") }
        guard settings.base.options.seed <= TrainingOptions.maxSeed - UInt64(settings.seeds - 1) else {
            throw TensorError("--seed \(settings.base.options.seed) with --seeds \(settings.seeds): the seeds \(settings.base.options.seed)... must stay within 0...\(TrainingOptions.maxSeed)")
        }
        guard !settings.students.isEmpty else { throw TensorError("--students: no students given") }
        guard settings.speedSeconds > 0 && settings.speedSeconds <= 600 else {
            throw TensorError("the speed measurement (--speed-seconds) takes (0, 600] seconds per student, got \(settings.speedSeconds)")
        }
        var base = settings.base
        guard base.target == nil else { throw TensorError("a sweep compares classifiers; --target (regression) is not supported by distill sweep") }
        base.teachers = base.teachers.map(RunFolder.modelFile)
        guard !base.teachers.isEmpty || base.teacherOutputs != nil else {
            throw TensorError("a sweep distils every student: give --teacher (a model from `distill train`) or --teacher-outputs (cached logits)")
        }
        // Cached outputs of K augmented views (`cache-teacher --views K`): each distilled run
        // replays the views (their augmentation, not --shift/--flip) for 1/K of the epochs, so the
        // two runs of a pair take the same number of steps; the scratch twin gets the views'
        // augmentation online unless --shift/--flip say otherwise.
        var views = 1, viewShift = 0, viewFlip = false
        if let path = base.teacherOutputs {
            guard base.teachers.isEmpty else { throw TensorError("give either --teacher (\(base.teachers[0])) or --teacher-outputs (\(path)), not both") }
            let file = try TeacherOutputs.read(path, array: base.teacherOutputsArray)
            if file.views > 1 {
                views = file.views
                (viewShift, viewFlip, _) = try file.viewAugmentation()
            }
        }
        guard settings.distillation.contains(where: { $0.method != .ce }) else { throw TensorError("the distilled runs need a distillation loss (kd, dkd, ...), not ce alone") }
        let trainRows = min(data.train.count, base.trainLimit ?? data.train.count)
        let exampleShape = data.train.exampleShape, classes = data.train.numClasses
        let dataName = "\(base.data) (examples \(exampleShape), \(classes) classes)"
        for path in base.teachers {
            let teacher = try loadTeacher(path, options: base.onnxTeacher)
            try checkTeacher(teacher, path: path, exampleShape: exampleShape, numClasses: classes, classNames: data.train.classNames)
        }
        var plans: [StudentPlan] = []
        for student in settings.students {
            let model: Sequential
            do {
                model = try ModelZoo.build(student.spec, inputShape: exampleShape, numClasses: classes, seed: 0)
                let output = try ModelShapes.outputShape(of: model, path: "", input: exampleShape, orThrowFor: "student '\(student.name.prefix(80))'")
                guard output == [classes] else {
                    throw TensorError("student '\(student.name.prefix(80))' gives \(output.count == 1 ? "\(output[0]) outputs" : "outputs of shape \(output)") per example; the data has \(classes) classes")
                }
            } catch let error as TensorError {
                throw TensorError("--students: \(error.message.hasPrefix("student '") ? "" : "student '\(student.name.prefix(80))': ")\(error.message) (the data: \(dataName))")
            }
            let size = StudentSize(model, spec: student.spec, exampleShape: exampleShape)
            var seeds: [SeedPlan] = []
            var epochs = 0
            for k in 0..<settings.seeds {
                let seed = base.options.seed + UInt64(k)
                let runs = settings.output.appendingPathComponent("runs").appendingPathComponent(StudentList.folderName(student.name))
                    .appendingPathComponent("seed-\(seed)")
                var scratch = try student.apply(to: base)
                scratch.options.seed = seed
                scratch.teachers = []
                scratch.teacherOutputs = nil
                scratch.onnxTeacher = ONNXTeacherOptions()
                scratch.mixup = nil
                scratch.labelLimit = nil
                scratch.losses = [LossTerm(.ce)]
                _ = scratch.options.chooseSizes(trainingRows: trainRows)
                scratch.output = runs.appendingPathComponent("scratch").path
                var distilled = try student.apply(to: base)
                distilled.options.seed = seed
                distilled.losses = settings.distillation
                _ = distilled.options.chooseSizes(trainingRows: trainRows)
                if views > 1 {
                    if scratch.options.shift == 0 && !scratch.options.flip { (scratch.options.shift, scratch.options.flip) = (viewShift, viewFlip) }
                    (distilled.options.shift, distilled.options.flip) = (0, false)
                    distilled.options.epochs = max(1, (distilled.options.epochs + views - 1) / views)
                }
                distilled.output = runs.appendingPathComponent("distilled").path
                do {
                    try scratch.validate()
                    try distilled.validate()
                } catch let error as TensorError { throw TensorError("student '\(student.name.prefix(80))': \(error.message)") }
                epochs = scratch.options.epochs
                seeds.append(SeedPlan(seed: seed, scratch: scratch, distilled: distilled,
                                      fingerprint: canonical(["scratch": withoutOutput(scratch.json), "distilled": withoutOutput(distilled.json)])))
            }
            let cost = Double(size.flops ?? 2 * size.parameters) * Double(epochs) * Double(trainRows)
            plans.append(StudentPlan(student: student, size: size, seeds: seeds, costPerSeed: max(cost, 1)))
        }
        return plans
    }

    /// Runs (or continues) one experiment. A run folder whose checkpoint was written with the
    /// same settings continues from it (a finished run just reloads); otherwise the run starts
    /// afresh in that folder.
    static func runOne(_ experiment: Experiment, data: (train: LabeledDataset, test: LabeledDataset), settings: SweepSettings,
                       world: Distributed? = nil) throws -> ExperimentRunner.Result {
        let folder = RunFolder(URL(fileURLWithPath: experiment.output!))
        var resume = false
        if FileManager.default.fileExists(atPath: folder.checkpoint.path), let saved = try? folder.readConfig() {
            let current = withoutOutput(experiment.json)
            resume = canonical(withoutOutput(saved)) == canonical(current)
            if !resume, let moved = relocated(saved, to: experiment, sweep: settings.output), canonical(withoutOutput(moved)) == canonical(current) {
                try folder.writeJSON(experiment.json, to: folder.config)  // its record follows the folder
                resume = true
            }
            if !resume && !experiment.options.quiet { log("sweep: \(folder.url.path) was trained with other settings; starting it again") }
        }
        do {
            return try ExperimentRunner.run(experiment, resume: resume, preloaded: data, world: world)
        } catch let interrupted as TrainingInterrupted {
            throw TrainingInterrupted(message: "sweep interrupted (signal \(interrupted.signal)) in \(folder.url.path), checkpoint saved; run the same `distill sweep` command with --resume to continue",
                                      signal: interrupted.signal)
        } catch let error as TensorError {
            throw TensorError("\(folder.url.path): \(error.message)")
        }
    }

    /// A run's recorded settings as they read after its sweep folder moved to `sweep`: the shared
    /// teacher logits (`SharedTeacherLogits`) it recorded at the folder's old place are the ones
    /// now at the new place. Nil when `saved` does not lie at the same place within the old folder.
    static func relocated(_ saved: [String: Any], to experiment: Experiment, sweep: URL) -> [String: Any]? {
        let root = sweep.standardizedFileURL.path + "/"
        guard let output = experiment.output.map({ URL(fileURLWithPath: $0).standardizedFileURL.path }), output.hasPrefix(root),
              let savedOutput = (saved["output"] as? String).map({ URL(fileURLWithPath: $0).standardizedFileURL.path }) else { return nil }
        let inside = String(output.dropFirst(root.count))
        guard savedOutput.hasSuffix("/" + inside) else { return nil }
        let oldRoot = String(savedOutput.dropLast(inside.count))
        var moved = saved
        if let file = saved["teacher_outputs"] as? String, let now = experiment.teacherOutputs,
           URL(fileURLWithPath: file).standardizedFileURL.path.hasPrefix(oldRoot),
           URL(fileURLWithPath: now).standardizedFileURL.path == root + URL(fileURLWithPath: file).standardizedFileURL.path.dropFirst(oldRoot.count) {
            moved["teacher_outputs"] = now
        }
        return moved
    }

    static func withoutOutput(_ json: [String: Any]) -> [String: Any] {
        var j = json
        j["output"] = nil
        return j
    }

    /// A JSON object as one string with sorted keys (numbers through one JSON round trip, so a
    /// value read back from a file compares equal to the value that was written).
    static func canonical(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
              let back = try? JSONSerialization.jsonObject(with: data),
              let again = try? JSONSerialization.data(withJSONObject: back, options: [.sortedKeys]) else { return "" }
        return String(decoding: again, as: UTF8.self)
    }

    static func readLines(_ url: URL) -> [[String: Any]] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func orderedRows(_ plans: [StudentPlan], _ done: [String: SweepSeedRow]) -> [SweepSeedRow] {
        plans.flatMap { plan in plan.seeds.compactMap { done["\(plan.student.name)|\($0.seed)"] } }
    }

    /// The settings in words, for the report.
    static func describe(_ settings: SweepSettings) -> [(String, String)] {
        let b = settings.base
        return [("data", b.data + (b.trainLimit.map { " (first \($0) training rows)" } ?? "")),
                ("teacher", b.teachers.isEmpty ? (b.teacherOutputs ?? "") : b.teachers.joined(separator: ", ")),
                ("distillation", settings.distillation.map { term in
                    let options = (term.json[term.method.rawValue] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                    return "\(term.method.rawValue) (\(options.joined(separator: ", ")))"
                }.joined(separator: " + ")),
                ("seeds", (0..<settings.seeds).map { String(b.options.seed + UInt64($0)) }.joined(separator: ", ")),
                ("epochs", b.options.epochsFromData ? "chosen from the data" : String(b.options.epochs)),
                ("optimizer", "\(b.options.optimizer.rawValue), learning rate \(b.options.learningRate), \(b.options.schedule.rawValue) schedule")]
    }
}

/// A value handed to another thread that only reads it (a sweep's plans and data, read by rank 0's
/// own runs while its main thread answers the other ranks).
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
