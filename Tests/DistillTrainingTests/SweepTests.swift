import DistillData
import DistillNN
import DistillTensor
@testable import DistillTraining
import Foundation
import Testing

/// The digits example (8×8 images as 64 features, 10 classes; 1,347 training and 450 test rows).
private let digitsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("examples/digits")

private func temporaryFolder(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-sweep-\(name)-\(getpid())")
    try? FileManager.default.removeItem(at: url)
    return url
}

/// An experiment on the digits files, quiet.
private func digitsExperiment() -> Experiment {
    var e = Experiment()
    e.data = digitsFolder.appendingPathComponent("train.csv").path
    e.testData = digitsFolder.appendingPathComponent("test.csv").path
    e.labelColumn = "label"
    e.options.quiet = true
    return e
}

/// A small teacher for the digits, trained once per test process.
private let digitsTeacher: Result<String, Error> = Result {
    let folder = temporaryFolder("teacher")
    var e = digitsExperiment()
    e.student = "mlp:64-64-10"
    e.options.epochs = 5
    e.output = folder.path
    _ = try ExperimentRunner.run(e)
    return RunFolder(folder).finalModel.path
}

/// Runs `body`, which must throw a `TensorError` whose message holds every fragment.
private func expectError<T>(containing fragments: String..., sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T) {
    expectError(containing: fragments, sourceLocation: sourceLocation, body)
}

private func expectError<T>(containing fragments: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T) {
    do {
        _ = try body()
        Issue.record("expected an error containing \(fragments)", sourceLocation: sourceLocation)
    } catch let error as TensorError {
        #expect(fragments.allSatisfy(error.message.contains), "\(error.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a TensorError, got \(error)", sourceLocation: sourceLocation)
    }
}

private func seedRow(_ name: String, bytes: Int, latency: Double, accuracy: Double, scratch: Double = 0.5, seed: UInt64 = 0) -> SweepSeedRow {
    SweepSeedRow(name: name, spec: name, seed: seed, size: StudentSize(parameters: bytes / 4, bytes: bytes, flops: nil),
                 accuracy: accuracy, accuracyScratch: scratch, speed: StudentSpeed(latencyMicrosecondsP50: latency, samplesPerSecond: 1, path: "test"))
}

@Suite("Pareto frontiers")
struct ParetoTests {
    @Test func handMadePointsDominatedOnesNeverFlagged() {
        let points: [(cost: Double, value: Double)] = [
            (1, 0.90),   // A: frontier
            (2, 0.95),   // B: frontier
            (2, 0.90),   // C: dominated by A (same value, costs more)
            (3, 0.94),   // D: dominated by B
            (0.5, 0.50), // E: frontier (cheapest)
            (1, 0.90),   // F: equal to A; equal points do not dominate each other
            (.nan, 0.99), // G: unmeasured: never on the frontier, never dominates
            (4, 0.95),   // H: dominated by B (same value, costs more)
        ]
        #expect(Pareto.frontier(points) == [true, true, false, false, true, true, false, false])
    }

    /// On random clouds, a flagged point is dominated by none, and an unflagged one by some point.
    @Test func frontierMatchesTheDefinitionOnRandomPoints() {
        var g = SeededGenerator(seed: 42)
        for _ in 0..<50 {
            let points = (0..<20).map { _ in (cost: Double(Int.random(in: 1...8, using: &g)), value: Double(Int.random(in: 1...8, using: &g)) / 8) }
            for (i, flagged) in Pareto.frontier(points).enumerated() {
                let dominated = points.contains { Pareto.dominates($0, points[i]) }
                #expect(flagged == !dominated)
            }
        }
    }

    /// The two frontiers of a sweep differ: a student can be fast but large.
    @Test func sweepRowsGetBothFlags() {
        var rows = [
            SweepRow([seedRow("small-slow", bytes: 1_000, latency: 9, accuracy: 0.80)]),
            SweepRow([seedRow("large-fast", bytes: 9_000, latency: 1, accuracy: 0.80)]),
            SweepRow([seedRow("large-slow", bytes: 9_000, latency: 9, accuracy: 0.79)]),
            SweepRow([seedRow("best", bytes: 20_000, latency: 20, accuracy: 0.90)]),
        ]
        SweepRow.markPareto(&rows)
        #expect(rows.map(\.paretoLatency) == [false, true, false, true])
        #expect(rows.map(\.paretoBytes) == [true, false, false, true])
    }

    @Test func seedsAverageAndJSONHasTheIssueKeys() throws {
        let row = SweepRow([seedRow("s", bytes: 400, latency: 3, accuracy: 0.80, scratch: 0.70, seed: 0),
                            seedRow("s", bytes: 400, latency: 5, accuracy: 0.90, scratch: 0.72, seed: 1),
                            seedRow("s", bytes: 400, latency: 4, accuracy: 0.85, scratch: 0.74, seed: 2)])
        #expect(abs(row.accuracy - 0.85) < 1e-12 && abs(row.accuracyStd - 0.05) < 1e-12)
        #expect(abs(row.accuracyScratch - 0.72) < 1e-12 && row.latencyMicrosecondsP50 == 4 && row.seeds == 3)
        #expect(Set(row.json.keys) == ["spec", "params", "bytes", "bytes_int8", "accuracy", "accuracy_std", "accuracy_scratch", "accuracy_int8",
                                       "latency_us_p50", "latency_us_p50_int8", "samples_per_second", "samples_per_second_int8", "pareto"])
        #expect(row.json["accuracy_int8"] is NSNull)  // without --int8: null, never a made-up number
        // A jsonl line reads back to the same row.
        let line = seedRow("s", bytes: 400, latency: 3, accuracy: 0.8)
        let data = try JSONSerialization.data(withJSONObject: line.json)
        #expect(SweepSeedRow(json: try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])) == line)
        // A line edited to impossible figures is not kept (its student is trained again).
        for (key, value) in [("accuracy", 1e308 as Any), ("accuracy_scratch", -0.1), ("params", -5), ("latency_us_p50", 0)] {
            var edited = line.json
            edited[key] = value
            #expect(SweepSeedRow(json: edited) == nil, "\(key) \(value)")
        }
    }
}

/// The printed table has int8 columns exactly when the sweep measured int8 (`--int8`).
@Suite("The sweep's table")
struct SweepTableTests {
    @Test func int8ColumnsOnlyWithInt8Figures() {
        var plain = seedRow("mlp:4-8-2", bytes: 400, latency: 3, accuracy: 0.8)
        let without = SweepRunner.table([SweepRow([plain])])
        #expect(!without.contains("int8"))
        plain.int8 = Int8Figures(bytes: 120, accuracy: 0.7925, latencyMicrosecondsP50: 1.5, samplesPerSecond: 123_456)
        let lines = SweepRunner.table([SweepRow([plain])]).split(separator: "\n")
        #expect(lines.count == 2 && lines[0].contains("int8 acc") && lines[0].hasSuffix("pareto"))
        #expect(lines[1].contains("79.25%") && lines[1].contains("1.5") && lines[1].contains("123456"))
    }

    /// One seed has no spread: its accuracy stands alone, in the table and on the page, in the
    /// columns the several-seed rows use.
    @Test func oneSeedShowsNoPlusMinus() {
        let one = SweepRow([seedRow("a", bytes: 400, latency: 3, accuracy: 0.8, scratch: 0.7)])
        let two = SweepRow([seedRow("b", bytes: 400, latency: 3, accuracy: 0.8, scratch: 0.7, seed: 0),
                            seedRow("b", bytes: 400, latency: 3, accuracy: 0.9, scratch: 0.7, seed: 1)])
        let lines = SweepRunner.table([one, two]).split(separator: "\n")
        #expect(!lines[1].contains("±") && lines[1].contains("80.00%") && lines[1].contains("70.00%"))
        #expect(lines[2].contains("85.00 ± 7.07%"))
        #expect(lines[1].count == lines[2].count, "the columns stay aligned")
        let html = SweepReport(title: "s", rows: [one], curves: [], settings: [], int8Measured: false).html
        #expect(html.contains("<td>80.00%</td>") && !html.contains("± 0.00%"))
    }
}

@Suite("Student lists")
/// The inline SVG plots of sweep.html and fit.html.
struct SVGChartTests {
    @Test func labelsOfRightHandPointsEndAtThePointAndStayInsideThePlot() {
        let points = [1.0, 10, 100, 1000].map { SVGChart.Point(x: $0, y: $0.squareRoot(), label: "student-\(Int($0))", style: .regular) }
        let svg = SVGChart.scatter(points, title: "t", xTitle: "x", yTitle: "y", logX: true)
        let labels = svg.split(separator: "\n").filter { $0.contains(">student-") && $0.hasPrefix("<text") }
        #expect(labels.count == 4)
        for line in labels {
            let rightHand = line.contains("student-1000")  // x = 100 falls just left of the last third
            #expect(line.contains("text-anchor=\"end\"") == rightHand, "\(line)")
        }
    }

    /// scripts/render_png.sh renders this section alone for the docs' PNG: it finds it by its heading.
    @Test func theSweepPageHasAParetoSection() {
        var rows = [SweepRow([seedRow("a", bytes: 100, latency: 1, accuracy: 0.8)]), SweepRow([seedRow("b", bytes: 200, latency: 2, accuracy: 0.9)])]
        SweepRow.markPareto(&rows)
        let html = SweepReport(title: "sweep", rows: rows, curves: [], settings: [], int8Measured: false).html
        #expect(html.contains("<h2>Pareto frontiers</h2>") && html.contains("<svg"))
    }
}

struct StudentListTests {
    @Test func bracesExpandAndMultiply() throws {
        #expect(try StudentList.expandBraces("mlp:784-{32,64,128}-10") == ["mlp:784-32-10", "mlp:784-64-10", "mlp:784-128-10"])
        #expect(try StudentList.expandBraces("mlp:784-{32,64}-{16,8}-10") == ["mlp:784-32-16-10", "mlp:784-32-8-10", "mlp:784-64-16-10", "mlp:784-64-8-10"])
        #expect(try StudentList.expandBraces("lenet5") == ["lenet5"])
        let students = try StudentList.parse("mlp:784-{32,64}-10, lenet5,layers:[\"flatten\",{\"linear\":{\"in\":784,\"out\":10}}]")
        #expect(students.map(\.spec) == ["mlp:784-32-10", "mlp:784-64-10", "lenet5", "layers:[\"flatten\",{\"linear\":{\"in\":784,\"out\":10}}]"])
    }

    @Test func malformedListsAreErrorsNamingTheProblem() {
        for (text, fragment) in [("mlp:784-{32,64-10", "unbalanced"), ("mlp:784-{32,{64}}-10", "nest"), ("mlp:784-{32,}-10", "empty choice"),
                                 ("lenet5,lenet5", "listed twice"), ("", "no students"), ("mlp:784-32}-10", "unbalanced")] {
            expectError(containing: fragment) { try StudentList.parse(text) }
        }
    }

    @Test func yamlListWithOverrides() throws {
        let folder = temporaryFolder("list")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent("students.yaml")
        try """
        students:
          - mlp:64-{8,16}-10
          - student: mlp:64-32-10
            epochs: 7
            learning_rate: 0.002
          - name: tiny-layers
            layers: [flatten, {linear: {in: 64, out: 10}}]
            flip: true
        """.write(to: file, atomically: true, encoding: .utf8)
        let students = try StudentList.parse(file.path)
        #expect(students.map(\.name) == ["mlp:64-8-10", "mlp:64-16-10", "mlp:64-32-10", "tiny-layers"])
        let e = try students[2].apply(to: Experiment())
        #expect(e.options.epochs == 7 && e.options.learningRate == 0.002 && e.student == "mlp:64-32-10")
        #expect(try students[3].apply(to: Experiment()).options.flip)
        #expect(students[3].spec.hasPrefix("layers:"))

        try "students:\n  - student: lenet5\n    epochs: 0\n".write(to: file, atomically: true, encoding: .utf8)
        expectError(containing: "epochs") { try StudentList.parse(file.path) }
        try "students:\n  - student: lenet5\n    temprature: 3\n".write(to: file, atomically: true, encoding: .utf8)
        expectError(containing: "unknown setting temprature") { try StudentList.parse(file.path) }
    }
}

/// A deterministic stand-in for training: accuracy rises with epochs toward a ceiling that grows
/// with the candidate's size; each epoch costs fake seconds in proportion to its FLOPs.
private final class FakeTrainer: FitTrainer {
    var clock = 0.0
    var calls: [(name: String, epochs: Int)] = []
    var testCalls: [String] = []
    var testAnswer: Double
    /// A call that ends past this fake time throws `TrainingDeadlinePassed`, as a real run stops.
    var deadline: Double?
    /// Validation accuracy after `epochs` epochs in all; `accuracy(_:epochs:)` unless given.
    let curve: (FitCandidate, Int) -> Double

    init(testAnswer: Double = 0.0, curve: @escaping (FitCandidate, Int) -> Double = FakeTrainer.accuracy) {
        self.testAnswer = testAnswer
        self.curve = curve
    }

    static func ceiling(_ c: FitCandidate) -> Double { 1 - 0.5 / (1 + Double(c.size.bytes) / 1000) }
    static func accuracy(_ c: FitCandidate, epochs: Int) -> Double { ceiling(c) * (1 - exp(-Double(epochs) / 3)) }

    func train(_ c: FitCandidate, toEpochs epochs: Int) throws -> Double {
        #expect(testCalls.isEmpty, "training after the test set was read")
        let before = calls.last(where: { $0.name == c.name })?.epochs ?? 0
        #expect(epochs > before, "a rung trains further, never again from the start")
        clock += Double(epochs - before) * Double(c.size.flops!) / 1e4
        calls.append((c.name, epochs))
        if let deadline, clock > deadline { throw TrainingDeadlinePassed(epochsDone: epochs - 1) }
        return curve(c, epochs)
    }

    func testAccuracy(_ c: FitCandidate) throws -> Double {
        testCalls.append(c.name)
        return testAnswer
    }
}

private func fakeCandidates() -> [FitCandidate] {
    // Listed out of order on purpose: the search sorts by bytes, then latency.
    [4000, 500, 16000, 1000, 2000, 250, 8000, 64000, 32000].map { bytes in
        FitCandidate(name: "c\(bytes)", spec: "fake", size: StudentSize(parameters: bytes / 4, bytes: bytes, flops: bytes / 2),
                     latencyMicrosecondsP50: Double(bytes) / 1000)
    }
}

@Suite("Successive halving")
struct SuccessiveHalvingTests {
    let search = SuccessiveHalving(rungEpochs: [1, 2, 4, 8])

    @Test func rungsHalveTheEpochs() {
        #expect(SuccessiveHalving(finalEpochs: 16).rungEpochs == [2, 4, 8, 16])
        #expect(SuccessiveHalving(finalEpochs: 3).rungEpochs == [1, 3])
        #expect(SuccessiveHalving(finalEpochs: 1).rungEpochs == [1])
    }

    @Test func choosesTheSmallestThatMeetsAndIsDeterministic() throws {
        let objective = FitObjective(minAccuracy: 0.85, budgetMinutes: 60)
        let a = FakeTrainer(), b = FakeTrainer()
        let first = try search.search(fakeCandidates(), objective: objective, trainer: a, clock: { a.clock })
        let second = try search.search(fakeCandidates().reversed(), objective: objective, trainer: b, clock: { b.clock })
        #expect(a.calls.map(\.name) == b.calls.map(\.name) && a.calls.map(\.epochs) == b.calls.map(\.epochs))
        #expect(first.chosen == second.chosen && first.met)
        // It met the floor on validation data; no candidate that met it anywhere is smaller.
        #expect(first.validationAccuracy >= 0.85)
        let met = first.trials.filter { $0.rungs.contains { $0.accuracy >= 0.85 } }.map(\.candidate)
        #expect(met.allSatisfy { !$0.isSmaller(than: first.chosen) })
        #expect(first.missed.isEmpty)
        // Never trains a candidate that a smaller finished one already dominates: after each
        // call that met the floor, every later call is for a smaller candidate.
        var best: FitCandidate? = nil
        let byName = Dictionary(uniqueKeysWithValues: fakeCandidates().map { ($0.name, $0) })
        for call in a.calls {
            let c = byName[call.name]!
            if let best { #expect(c.isSmaller(than: best), "\(c.name) trained after \(best.name) met the objective") }
            if FakeTrainer.accuracy(c, epochs: call.epochs) >= 0.85, best.map({ c.isSmaller(than: $0) }) ?? true { best = c }
        }
    }

    /// A small student that learns slowly is dropped by the halving at the first rung, but meets
    /// the floor at full length: the second chance trains it to the last rung before answering,
    /// so the answer is the smallest that meets the objective, not the smallest fast learner.
    @Test func haltedSmallerCandidatesGetASecondChanceAtFullLength() throws {
        let slow = FakeTrainer { c, epochs in c.name == "c250" ? (epochs < 8 ? 0.1 : 0.9) : FakeTrainer.accuracy(c, epochs: epochs) }
        let outcome = try search.search(fakeCandidates(), objective: FitObjective(minAccuracy: 0.85, budgetMinutes: 60), trainer: slow, clock: { slow.clock })
        #expect(outcome.met && outcome.chosen.name == "c250")
        let trial = outcome.trials[outcome.chosenIndex]
        // Halved after the first rung (no 2- or 4-epoch rung), then trained to the last.
        #expect(trial.rungs.map(\.epochs) == [1, 8] && trial.stop == .chosen)
        // The candidate that won before the second chance is now dominated by the smaller one.
        #expect(outcome.trials.filter { $0.stop == .dominated }.contains { $0.rungs.contains { $0.accuracy >= 0.85 } })
    }

    /// The choice depends on validation accuracy alone: the test set is read once, after every
    /// training call, for the chosen candidate, and whatever it says does not change the choice.
    @Test func testSetIsReadOnceAfterTheChoice() throws {
        let objective = FitObjective(minAccuracy: 0.85, budgetMinutes: 60)
        let low = FakeTrainer(testAnswer: 0.01), high = FakeTrainer(testAnswer: 0.99)
        let a = try search.search(fakeCandidates(), objective: objective, trainer: low, clock: { low.clock })
        let b = try search.search(fakeCandidates(), objective: objective, trainer: high, clock: { high.clock })
        #expect(low.testCalls == [a.chosen.name] && high.testCalls == [b.chosen.name])
        #expect(a.chosen == b.chosen && a.testAccuracy == 0.01 && b.testAccuracy == 0.99)
    }

    @Test func budgetIsRespected() throws {
        let unlimited = FakeTrainer()
        _ = try search.search(fakeCandidates(), objective: FitObjective(minAccuracy: 0.999, budgetMinutes: 600), trainer: unlimited, clock: { unlimited.clock })
        let budgetSeconds = unlimited.clock / 3
        let limited = FakeTrainer()
        let outcome = try search.search(fakeCandidates(), objective: FitObjective(minAccuracy: 0.999, budgetMinutes: budgetSeconds / 60),
                                        trainer: limited, clock: { limited.clock })
        #expect(limited.clock <= budgetSeconds, "spent \(limited.clock) s of a \(budgetSeconds) s budget")
        #expect(limited.calls.count < unlimited.calls.count)
        #expect(outcome.trials.contains { $0.stop == .budget })
    }

    /// A candidate whose rung the deadline cuts (a real run stops after the epoch that passes it)
    /// is stopped by the budget, and its unfinished rung is not recorded.
    @Test func aRungCutByTheDeadlineIsStoppedByTheBudget() throws {
        let first = fakeCandidates().sorted { $0.isSmaller(than: $1) }[0]
        let probe = FakeTrainer()
        _ = try probe.train(first, toEpochs: search.rungEpochs[0])
        let trainer = FakeTrainer()
        trainer.deadline = probe.clock * 1.001
        let outcome = try search.search(fakeCandidates(), objective: FitObjective(minAccuracy: 0.999, budgetMinutes: 600), trainer: trainer, clock: { trainer.clock })
        #expect(outcome.chosen == first && outcome.trials.filter { !$0.rungs.isEmpty }.count == 1)
        #expect(outcome.trials.filter { $0.stop == .budget }.count == outcome.trials.count - 1)
        let none = FakeTrainer()
        none.deadline = 0
        expectError(containing: "ended before any candidate was trained") {
            _ = try search.search(fakeCandidates(), objective: FitObjective(minAccuracy: 0.999, budgetMinutes: 600), trainer: none, clock: { none.clock })
        }
    }

    @Test func unmetObjectiveReturnsTheClosestWithItsMiss() throws {
        let trainer = FakeTrainer()
        let outcome = try search.search(fakeCandidates(), objective: FitObjective(minAccuracy: 0.999, budgetMinutes: 600), trainer: trainer, clock: { trainer.clock })
        #expect(!outcome.met && outcome.trials[outcome.chosenIndex].stop == .closest)
        let best = outcome.trials.compactMap(\.lastAccuracy).max()!
        #expect(outcome.validationAccuracy == best)
        #expect(abs(outcome.missed["accuracy"]! - (0.999 - best)) < 1e-12 && outcome.missed.count == 1)
    }

    @Test func ceilingsExcludeCandidatesBeforeTraining() throws {
        let trainer = FakeTrainer()
        let objective = FitObjective(minAccuracy: 0.5, maxLatencyMicroseconds: 10, maxBytes: 4000, budgetMinutes: 60)
        let outcome = try search.search(fakeCandidates(), objective: objective, trainer: trainer, clock: { trainer.clock })
        #expect(trainer.calls.allSatisfy { Int($0.name.dropFirst())! <= 4000 })
        #expect(outcome.trials.filter { $0.stop == .overBytes }.count == 4)
        #expect(outcome.chosen.size.bytes <= 4000)
    }
}

@Suite("Fit objective and sizes")
struct FitObjectiveTests {
    @Test func byteCountsTakeSuffixes() throws {
        #expect(try ByteCount.parse("100k") == 100_000)
        #expect(try ByteCount.parse("1.5M") == 1_500_000)
        #expect(try ByteCount.parse("64Ki") == 65_536)
        #expect(try ByteCount.parse("2048") == 2048)
        #expect(try ByteCount.parse("100kB") == 100_000)
        #expect(try ByteCount.parse("1G") == 1_000_000_000)
        #expect(try ByteCount.parse("2Gi") == 2 << 30)
        #expect(try ByteCount.parse("1e5") == 100_000)
        for bad in ["", "k", "-5", "abc", "1e400", "0", "0x10", "inf", "nan", "1T"] {
            expectError(containing: "--max-bytes") { try ByteCount.parse(bad) }
        }
    }

    @Test func contradictoryAndUnreachableObjectivesAreErrors() throws {
        for objective in [FitObjective(minAccuracy: 1.5), FitObjective(minAccuracy: 0), FitObjective(minAccuracy: 0.9, maxLatencyMicroseconds: -1),
                          FitObjective(minAccuracy: 0.9, maxBytes: 0), FitObjective(minAccuracy: 0.9, budgetMinutes: 0)] {
            #expect(throws: TensorError.self) { try objective.validate() }
        }
        let candidates = fakeCandidates()
        expectError(containing: "unreachable objective: --max-bytes 100") { try FitRunner.checkReachable(candidates, objective: FitObjective(minAccuracy: 0.9, maxBytes: 100), family: .mlp) }
        expectError(containing: "unreachable objective: --max-latency-us") { try FitRunner.checkReachable(candidates, objective: FitObjective(minAccuracy: 0.9, maxLatencyMicroseconds: 0.1), family: .mlp) }
        // Fast candidates are large, small ones slow: each ceiling alone can be met, both cannot.
        let crossed = [FitCandidate(name: "small-slow", spec: "", size: StudentSize(parameters: 1, bytes: 100, flops: 1), latencyMicrosecondsP50: 50),
                       FitCandidate(name: "large-fast", spec: "", size: StudentSize(parameters: 1, bytes: 9000, flops: 1), latencyMicrosecondsP50: 1)]
        expectError(containing: "contradictory objective") { try FitRunner.checkReachable(crossed, objective: FitObjective(minAccuracy: 0.9, maxLatencyMicroseconds: 10, maxBytes: 1000), family: .any) }
        expectError(containing: "--family cnn needs images") { try FitFamily.cnn.candidates(exampleShape: [64], classes: 10) }
    }

    @Test func familiesFitTheData() throws {
        let images = try FitFamily.any.candidates(exampleShape: [1, 28, 28], classes: 10)
        #expect(images.count == FitFamily.mlpHiddenLayers.count + FitFamily.cnnShapes.count)
        for (name, spec) in images {
            let model = try ModelZoo.build(spec, inputShape: [1, 28, 28], numClasses: 10)
            #expect(try ModelShapes.check(model, inputShape: [1, 28, 28], numClasses: 10) == [10], "\(name)")
        }
        #expect(try FitFamily.any.candidates(exampleShape: [64], classes: 3).allSatisfy { $0.spec.hasPrefix("mlp:64-") && $0.spec.hasSuffix("-3") })
        // Fit's names are specs every command takes: cnn:8-16 is its layer list, weight for weight.
        let named = try ModelZoo.build("cnn:8-16", inputShape: [1, 28, 28], numClasses: 10, seed: 3)
        let listed = try ModelZoo.build(try Experiment.layerSpec(ModelZoo.smallCNN(8, 16, hidden: 0, inputShape: [1, 28, 28], classes: 10)),
                                        inputShape: [1, 28, 28], numClasses: 10, seed: 3)
        #expect(named.parameterCount == 9_098 && named.stateDict().mapValues(\.scalars) == listed.stateDict().mapValues(\.scalars))
        #expect(try ModelZoo.build("cnn:4-8-fc64", inputShape: [3, 8, 8], numClasses: 2).parameterCount > 0)
        for bad in ["cnn:8", "cnn:8-16-64", "cnn:0-16", "cnn:8-x"] {
            expectError(containing: "cnn:A-B or cnn:A-B-fcH") { try ModelZoo.build(bad, inputShape: [1, 28, 28], numClasses: 10) }
        }
    }
}

@Suite("Sweep and fit on the digits", .serialized)
struct SweepRunTests {
    func settings(_ folder: URL, students: String) throws -> SweepSettings {
        var s = SweepSettings(output: folder)
        s.base = digitsExperiment()
        s.base.teachers = [try digitsTeacher.get()]
        s.base.options.epochs = 3
        s.students = try StudentList.parse(students)
        s.seeds = 2
        s.speedSeconds = 0.02
        return s
    }

    @Test func studentsThatDoNotFitAreErrorsBeforeTraining() throws {
        for (students, fragments) in [("mlp:64-16-10,mlp:784-32-10", ["mlp:784-32-10", "784 features, gets 64"]),
                                      ("mlp:64-32-5", ["mlp:64-32-5", "5 outputs", "10 classes"])] {
            let folder = temporaryFolder("misfit")
            expectError(containing: fragments) { try SweepRunner.run(try settings(folder, students: students)) }
            #expect(!FileManager.default.fileExists(atPath: folder.path), "nothing may be written before the students are checked")
        }
        var noTeacher = try settings(temporaryFolder("noteacher"), students: "mlp:64-16-10")
        noTeacher.base.teachers = []
        expectError(containing: "--teacher") { try SweepRunner.run(noTeacher) }
    }

    /// `--int8`: every distilled student is quantized, scored and timed; the columns are filled
    /// and the int8 student stays close to the float one while taking about a quarter of the bytes.
    @Test func int8ColumnsAreFilledWhenWired() throws {
        var s = try settings(temporaryFolder("int8"), students: "mlp:64-32-10")
        s.seeds = 1
        s.int8 = StudentQuantization.sweepMeasurement(samples: 300, seconds: 0.02)
        let result = try SweepRunner.run(s)
        let row = try #require(result.rows.first)
        let int8 = try #require(row.int8)
        #expect(abs(int8.accuracy - row.accuracy) < 0.05, "int8 \(int8.accuracy) against float \(row.accuracy)")
        #expect(int8.bytes * 3 < row.size.bytes && int8.latencyMicrosecondsP50 > 0 && int8.samplesPerSecond > 0)
        #expect(result.json["rows"].flatMap { ($0 as? [[String: Any]])?.first?["accuracy_int8"] as? Double } != nil)
    }

    /// A sweep killed after its first (student, seed) and during a distilled run, rerun with
    /// resume: the finished pair is kept (its run folders, deleted here, are not trained again),
    /// the interrupted run continues from its checkpoint, and the table equals an uninterrupted
    /// sweep's.
    @Test func killedSweepResumes() throws {
        let students = "mlp:64-{8,16}-10"
        let straight = try SweepRunner.run(try settings(temporaryFolder("straight"), students: students))
        #expect(straight.seedRows.count == 4 && straight.rows.count == 2)

        let folder = temporaryFolder("killed")
        _ = try SweepRunner.run(try settings(folder, students: students))
        // The kill: sweep.jsonl has only its first line...
        let jsonl = folder.appendingPathComponent(SweepRunner.jsonlName)
        let lines = try String(contentsOf: jsonl, encoding: .utf8).split(separator: "\n")
        try (lines[0] + "\n").write(to: jsonl, atomically: true, encoding: .utf8)
        let runs = folder.appendingPathComponent("runs/\(StudentList.folderName("mlp:64-8-10"))")
        try FileManager.default.removeItem(at: runs.appendingPathComponent("seed-0"))
        // ...and the second pair's distilled run stopped after epoch 1 of 3 (its checkpoint and
        // config.json as a killed run leaves them).
        let interrupted = RunFolder(runs.appendingPathComponent("seed-1/distilled"))
        let config = try Data(contentsOf: interrupted.config)
        var partial = try interrupted.readExperiment()
        try FileManager.default.removeItem(at: interrupted.url)
        partial.options.epochs = 1
        partial.output = interrupted.url.path
        _ = try ExperimentRunner.run(partial)
        try config.write(to: interrupted.config)
        let firstEpoch = try #require(interrupted.readMetrics().first)

        expectError(containing: "--resume") { try SweepRunner.run(try settings(folder, students: students)) }
        var elsewhere = try settings(temporaryFolder("no-sweep-here"), students: students)
        elsewhere.resume = true
        expectError(containing: "holds no sweep to resume") { try SweepRunner.run(elsewhere) }
        var again = try settings(folder, students: students)
        again.resume = true
        let resumed = try SweepRunner.run(again)

        #expect(!FileManager.default.fileExists(atPath: runs.appendingPathComponent("seed-0").path), "a finished pair was trained again")
        let metrics = interrupted.readMetrics()
        #expect(metrics.count == 3)
        #expect((metrics.first?["seconds"] as? Double) == (firstEpoch["seconds"] as? Double), "the interrupted run started again instead of continuing")
        // Kept rows come back through JSON (15 significant digits): equal to 1e-12.
        for (a, b) in zip(resumed.seedRows, straight.seedRows) {
            #expect(abs(a.accuracy - b.accuracy) < 1e-12 && abs(a.accuracyScratch - b.accuracyScratch) < 1e-12, "\(a.name) seed \(a.seed)")
        }
        #expect(resumed.seedRows.count == straight.seedRows.count)
        #expect(try String(contentsOf: jsonl, encoding: .utf8).split(separator: "\n").count == 4)

        // The files the sweep promises.
        let html = try String(contentsOf: folder.appendingPathComponent(SweepRunner.htmlName), encoding: .utf8)
        #expect(html.components(separatedBy: "<svg").count - 1 == 2 + 2, "two Pareto plots and two students' curves (the first student's from its second seed)")
        #expect(!html.contains("<script") && !html.contains("http"))
        let csv = try String(contentsOf: folder.appendingPathComponent(SweepRunner.csvName), encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 3 && csv[0].hasPrefix("name,spec,params,bytes,flops,seeds,accuracy,accuracy_std"))
        #expect(resumed.rows.allSatisfy { $0.size.flops != nil && $0.latencyMicrosecondsP50 > 0 && $0.samplesPerSecond > 0 && $0.int8 == nil })
    }

    /// The digits as 1×8×8 images in [0, 1], as image data (a teacher there needs no statistics).
    static func digitsImages() throws -> (train: LabeledDataset, test: LabeledDataset) {
        let (train, test) = try DataSource.load(digitsFolder.appendingPathComponent("train.csv").path,
                                                testData: digitsFolder.appendingPathComponent("test.csv").path, labelColumn: "label")
        func images(_ d: LabeledDataset) throws -> LabeledDataset {
            try LabeledDataset(features: Tensor(shape: [d.count, 1, 8, 8], scalars: d.features.scalars.map { $0 / 16 }), labels: d.labels, numClasses: 10)
        }
        return (try images(train), try images(test))
    }

    /// A teacher trained on `digitsImages`, as the path of its model file.
    static func imageTeacher(_ images: (train: LabeledDataset, test: LabeledDataset), name: String) throws -> String {
        var t = Experiment()
        t.data = "digits-images.npz"
        t.student = "mlp:64-64-10"
        t.options.epochs = 3
        t.options.quiet = true
        t.output = temporaryFolder(name).path
        _ = try ExperimentRunner.run(t, preloaded: images)
        return RunFolder(URL(fileURLWithPath: t.output!)).finalModel.path
    }

    /// A one-seed sweep of mlp:64-16-10 on `digitsImages`, without its teacher.
    static func imageSweep(_ folder: URL, images: (train: LabeledDataset, test: LabeledDataset), epochs: Int) -> SweepSettings {
        var s = SweepSettings(output: folder)
        s.base.data = "digits-images.npz"
        s.base.options.epochs = epochs
        s.base.options.quiet = true
        s.students = [SweepStudent(spec: "mlp:64-16-10")]
        s.seeds = 1
        s.speedSeconds = 0.01
        s.preloaded = images
        return s
    }

    /// `imageSweep` for 2 epochs in a fresh folder named `name`, distilling from a teacher trained on the images.
    static func imageSweepWithTeacher(_ name: String) throws -> (SweepSettings, (train: LabeledDataset, test: LabeledDataset)) {
        let images = try digitsImages()
        var s = imageSweep(temporaryFolder(name), images: images, epochs: 2)
        s.base.teachers = [try imageTeacher(images, name: "\(name)-teacher")]
        return (s, images)
    }

    /// On image data the sweep runs the teacher once for all its distilled runs; the runs read
    /// those logits and train exactly as with the teacher in the loop.
    @Test func sharedTeacherLogitsGiveTheSameRuns() throws {
        let (s, images) = try Self.imageSweepWithTeacher("shared")
        let folder = s.output
        let swept = try SweepRunner.run(s)
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("teacher_logits.npy").path))
        let config = try RunFolder(folder.appendingPathComponent("runs/\(StudentList.folderName("mlp:64-16-10"))/seed-0/distilled")).readConfig()
        #expect(config["teacher_outputs"] as? String == folder.appendingPathComponent("teacher_logits.npy").path)

        var direct = s.base
        direct.student = "mlp:64-16-10"
        direct.losses = s.distillation
        direct.output = temporaryFolder("shared-direct").path
        let run = try ExperimentRunner.run(direct, preloaded: images)
        #expect(swept.seedRows[0].accuracy == run.training.test.accuracy)
    }

    /// A sweep folder moved while one of its distilled runs was interrupted: with `--resume` in its
    /// new place, that run continues from its checkpoint (it recorded the shared teacher logits
    /// at the old place) instead of starting again.
    @Test func aMovedSweepContinuesItsInterruptedRun() throws {
        var (s, images) = try Self.imageSweepWithTeacher("moved")
        let before = s.output
        _ = try SweepRunner.run(s)
        // The kill: no row written, the distilled run stopped after epoch 1 of 2.
        try Data().write(to: before.appendingPathComponent(SweepRunner.jsonlName))
        let inside = "runs/\(StudentList.folderName("mlp:64-16-10"))/seed-0/distilled"
        let interrupted = RunFolder(before.appendingPathComponent(inside))
        let config = try Data(contentsOf: interrupted.config)
        var partial = try interrupted.readExperiment()
        try FileManager.default.removeItem(at: interrupted.url)
        partial.options.epochs = 1
        _ = try ExperimentRunner.run(partial, preloaded: images)
        try config.write(to: interrupted.config)
        let firstEpoch = try #require(interrupted.readMetrics().first)

        let after = temporaryFolder("moved-after")
        // Copied, then removed: a move would carry along the lock file this process still holds.
        try FileManager.default.copyItem(at: before, to: after)
        try FileManager.default.removeItem(at: before)
        s.output = after
        s.resume = true
        let resumed = try SweepRunner.run(s)
        let moved = RunFolder(after.appendingPathComponent(inside))
        #expect(moved.readMetrics().count == 2)
        #expect((moved.readMetrics().first?["seconds"] as? Double) == (firstEpoch["seconds"] as? Double), "the interrupted run started again")
        #expect(try moved.readConfig()["teacher_outputs"] as? String == after.appendingPathComponent("teacher_logits.npy").path)
        #expect(resumed.seedRows.count == 1)
    }

    /// `--teacher-outputs` with K cached augmented views (as `distill cache-teacher --views K`
    /// writes them): each distilled run replays the views for 1/K of the epochs, the same number
    /// of steps as its scratch twin, which gets the views' augmentation online. The distilled run
    /// equals `distill kd` on the same file for those epochs.
    @Test func cachedViewsGiveDistilledRunsAsManyStepsAsScratch() throws {
        let images = try Self.digitsImages()
        let teacher = try loadTeacher(try Self.imageTeacher(images, name: "views-teacher"))
        let views = 2
        let inputs = try TeacherOutputs.augmentedViews(images.train, views: views, shift: 1, flip: false, seed: 5)
        let logits = try TeacherOutputs.compute(teacher, inputs: inputs).reshaped([views, images.train.count, 10])
        let folder = temporaryFolder("views")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent("views.npy").path
        try TeacherOutputs.write(logits, to: file, record: ["views": "2", "shift": "1", "flip": "false", "seed": "5"])

        var s = Self.imageSweep(folder.appendingPathComponent("sweep"), images: images, epochs: 4)
        s.base.teacherOutputs = file
        let swept = try SweepRunner.run(s)
        let runs = s.output.appendingPathComponent("runs/\(StudentList.folderName("mlp:64-16-10"))/seed-0")
        let scratch = try RunFolder(runs.appendingPathComponent("scratch")).readConfig()
        let distilled = try RunFolder(runs.appendingPathComponent("distilled")).readConfig()
        #expect(scratch["epochs"] as? Int == 4 && scratch["shift"] as? Int == 1 && scratch["flip"] as? Bool == false)
        #expect(distilled["epochs"] as? Int == 2 && distilled["shift"] as? Int == 0 && distilled["flip"] as? Bool == false)
        #expect(RunFolder(runs.appendingPathComponent("distilled")).readMetrics().count == 2)

        var direct = s.base
        direct.student = "mlp:64-16-10"
        direct.losses = s.distillation
        direct.options.epochs = 2
        direct.output = temporaryFolder("views-direct").path
        let run = try ExperimentRunner.run(direct, preloaded: images)
        #expect(swept.seedRows[0].accuracy == run.training.test.accuracy)
        #expect(swept.seedRows[0].accuracy > 0.5 && swept.seedRows[0].accuracyScratch > 0.5, "\(swept.seedRows[0].accuracy), \(swept.seedRows[0].accuracyScratch)")
    }

    /// `distill fit` on the digits: candidates train on the training rows minus a validation
    /// split, which serves as their "test" set; the test file is scored once for the answer.
    @Test func fitChoosesOnValidationRows() throws {
        let folder = temporaryFolder("fit")
        var settings = FitSettings(objective: FitObjective(minAccuracy: 0.6, budgetMinutes: 5), output: folder)
        settings.base = digitsExperiment()
        settings.base.teachers = [try digitsTeacher.get()]
        settings.family = .mlp
        settings.finalEpochs = 2
        settings.speedSeconds = 0.01
        let result = try FitRunner.run(settings)
        #expect(result.outcome.met && result.outcome.validationAccuracy >= 0.6)
        #expect(result.candidateCount == FitFamily.mlpHiddenLayers.count)
        for file in ["best.safetensors", "fit.json", "fit.html"] {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(file).path), "\(file) missing")
        }
        // Each candidate's run was scored on the 135 validation rows (10% of 1,347), not on the 450 test rows.
        let chosen = folder.appendingPathComponent("candidates/\(StudentList.folderName(result.outcome.chosen.name))/summary.json")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: chosen)) as? [String: Any])
        #expect((summary["test"] as? [String: Any])?["count"] as? Int == 135)
        // ... and its metrics name them so: validation_accuracy, never test_accuracy.
        let metrics = try String(contentsOf: chosen.deletingLastPathComponent().appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        #expect(metrics.contains("\"validation_accuracy\"") && !metrics.contains("\"test_accuracy\""))
        let (model, _) = try SavedModel.load(result.model)
        #expect(model.parameterCount == result.outcome.chosen.size.parameters)
        #expect(Set(result.json.keys).isSuperset(of: ["spec", "params", "bytes", "accuracy", "latency_us_p50", "met", "missed", "candidates", "minutes"]))

        var tooSmall = settings
        tooSmall.output = temporaryFolder("fit-unreachable")
        tooSmall.objective.maxBytes = 100
        expectError(containing: "unreachable objective") { try FitRunner.run(tooSmall) }
        #expect(!FileManager.default.fileExists(atPath: tooSmall.output.path), "nothing may be trained for an unreachable objective")
    }
}
