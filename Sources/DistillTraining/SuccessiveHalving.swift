import DistillTensor
import Foundation

/// A student `distill fit` may choose: its spec, and the figures known before any training
/// (size from the architecture, latency from timing it once with random weights).
public struct FitCandidate: Sendable, Equatable {
    public var name: String
    public var spec: String
    public var size: StudentSize
    public var latencyMicrosecondsP50: Double

    public init(name: String, spec: String, size: StudentSize, latencyMicrosecondsP50: Double) {
        self.name = name; self.spec = spec; self.size = size; self.latencyMicrosecondsP50 = latencyMicrosecondsP50
    }

    /// The objective's order: fewer bytes first, then lower latency (then the name, so the order
    /// is total and the search deterministic).
    public func isSmaller(than other: FitCandidate) -> Bool {
        (size.bytes, latencyMicrosecondsP50, name) < (other.size.bytes, other.latencyMicrosecondsP50, other.name)
    }
}

/// What the user asks of a student: an accuracy floor, optionally a latency and a size ceiling,
/// and a time budget for the search.
public struct FitObjective: Sendable, Equatable {
    /// Validation (for the choice) and test (reported) accuracy to reach, a fraction of 1.
    public var minAccuracy: Double
    public var maxLatencyMicroseconds: Double?
    public var maxBytes: Int?
    public var budgetMinutes: Double

    public init(minAccuracy: Double, maxLatencyMicroseconds: Double? = nil, maxBytes: Int? = nil, budgetMinutes: Double = 20) {
        self.minAccuracy = minAccuracy; self.maxLatencyMicroseconds = maxLatencyMicroseconds; self.maxBytes = maxBytes; self.budgetMinutes = budgetMinutes
    }

    /// Longest budget accepted (a week).
    public static let maxBudgetMinutes = 7.0 * 24 * 60

    /// Throws, naming the option, unless every number can be met by some model at all.
    public func validate() throws {
        guard minAccuracy > 0 && minAccuracy <= 1 else {
            throw TensorError("--min-accuracy \(minAccuracy): an accuracy is a fraction in (0, 1], e.g. 0.88 for 88%")
        }
        if let maxLatencyMicroseconds, !(maxLatencyMicroseconds > 0 && maxLatencyMicroseconds.isFinite) {
            throw TensorError("--max-latency-us \(maxLatencyMicroseconds): must be a positive number of microseconds")
        }
        if let maxBytes, maxBytes <= 0 { throw TensorError("--max-bytes \(maxBytes): must be a positive size, e.g. 100k") }
        guard budgetMinutes > 0 && budgetMinutes <= Self.maxBudgetMinutes else {
            throw TensorError("--budget-minutes \(budgetMinutes): must be in (0, \(Int(Self.maxBudgetMinutes))]")
        }
    }

    /// Whether a candidate's size and latency are within the ceilings (known before training).
    public func allowsSize(of c: FitCandidate) -> Bool {
        (maxBytes.map { c.size.bytes <= $0 } ?? true) && (maxLatencyMicroseconds.map { c.latencyMicrosecondsP50 <= $0 } ?? true)
    }

    /// How much a candidate with `accuracy` misses each constraint by (accuracy as a fraction,
    /// latency in µs, bytes); empty when it meets them all.
    public func misses(_ c: FitCandidate, accuracy: Double) -> [String: Double] {
        var missed: [String: Double] = [:]
        if accuracy < minAccuracy { missed["accuracy"] = minAccuracy - accuracy }
        if let m = maxLatencyMicroseconds, c.latencyMicrosecondsP50 > m { missed["latency_us_p50"] = c.latencyMicrosecondsP50 - m }
        if let m = maxBytes, c.size.bytes > m { missed["bytes"] = Double(c.size.bytes - m) }
        return missed
    }
}

/// Trains the candidates of a search. The search only ever sees validation accuracy from
/// `train`; `testAccuracy` is asked once, for the candidate already chosen.
public protocol FitTrainer: AnyObject {
    /// Trains `candidate` until it has had `epochs` epochs in all (continuing from its previous
    /// call, if any) and returns its accuracy on the validation split.
    func train(_ candidate: FitCandidate, toEpochs epochs: Int) throws -> Double
    /// The chosen candidate's accuracy on the test set, after the search.
    func testAccuracy(_ candidate: FitCandidate) throws -> Double
}

/// Why the search stopped with a candidate.
public enum FitStop: String, Sendable {
    case chosen = "chosen: the smallest that met the objective"
    case closest = "closest: nothing met the objective; the nearest miss"
    case overBytes = "not trained: over --max-bytes"
    case overLatency = "not trained: over --max-latency-us"
    case dominated = "stopped: a smaller candidate met the objective"
    case halved = "stopped: not in the promising half"
    case budget = "stopped: the budget would run out"
    case lastRung = "trained to the last rung without meeting the objective"
}

/// One candidate's path through the search: validation accuracy after each rung it reached.
public struct FitTrial: Sendable {
    public var candidate: FitCandidate
    public var rungs: [(epochs: Int, accuracy: Double)] = []
    public var stop: FitStop? = nil

    public var lastAccuracy: Double? { rungs.last?.accuracy }
}

/// The result of a search.
public struct FitOutcome: Sendable {
    public var trials: [FitTrial]
    /// Index in `trials` of the chosen (or, when none met the objective, the closest) candidate.
    public var chosenIndex: Int
    public var met: Bool
    public var validationAccuracy: Double
    public var testAccuracy: Double
    /// How far the chosen candidate misses each constraint on validation data (empty when met).
    public var missed: [String: Double]
    public var seconds: Double

    public var chosen: FitCandidate { trials[chosenIndex].candidate }
    /// Candidates trained for at least one rung.
    public var trainedCount: Int { trials.filter { !$0.rungs.isEmpty }.count }
}

/// Successive halving (Jamieson & Talwalkar 2016; Li et al., Hyperband, 2017) for the smallest
/// student that meets an objective.
///
/// Every candidate within the size and latency ceilings is trained for the first rung's epochs;
/// then the most accurate half (on validation data) continues to the next rung, with twice the
/// epochs, and so on. Within a rung candidates are trained smallest first (bytes, then latency),
/// and as soon as one meets the accuracy floor it is kept as the answer and every larger
/// candidate is dropped: a candidate that a smaller finished one already dominates is never
/// trained again. Before answering, the candidates smaller than the answer that the halving
/// stopped are trained to the last rung (smallest first): small students lag at early rungs.
/// The budget is checked before each training call against an estimate of its
/// cost (seconds per epoch per FLOP, from the calls so far).
public struct SuccessiveHalving: Sendable {
    /// Total epochs a candidate has had after each rung, increasing.
    public var rungEpochs: [Int]
    /// Share of the candidates that go on to the next rung.
    public var keepFraction = 0.5

    /// Rungs ending at `finalEpochs`, each with half the epochs of the next (at least one), e.g.
    /// 16 → 2, 4, 8, 16.
    public init(finalEpochs: Int, rungs: Int = 4) {
        let final = max(1, finalEpochs)
        var epochs: [Int] = []
        for k in stride(from: max(1, rungs) - 1, through: 0, by: -1) {
            let e = max(1, final >> k)
            if epochs.last != e { epochs.append(e) }
        }
        rungEpochs = epochs
    }

    public init(rungEpochs: [Int], keepFraction: Double = 0.5) {
        self.rungEpochs = rungEpochs
        self.keepFraction = keepFraction
    }

    /// Runs the search. `clock` gives the seconds spent so far of `objective.budgetMinutes`,
    /// counted from the start of the whole job (measuring the candidates' latency comes out of
    /// the same budget); `log` receives one line per training call.
    public func search(_ candidates: [FitCandidate], objective: FitObjective, trainer: FitTrainer,
                       clock: () -> Double, log: (String) -> Void = { _ in }) throws -> FitOutcome {
        guard !rungEpochs.isEmpty, zip(rungEpochs, rungEpochs.dropFirst()).allSatisfy({ $0 < $1 }), rungEpochs[0] >= 1 else {
            throw TensorError("successive halving needs increasing rung epochs from 1 up, got \(rungEpochs)")
        }
        let start = clock()
        let budget = objective.budgetMinutes * 60
        var trials = candidates.sorted { $0.isSmaller(than: $1) }.map { FitTrial(candidate: $0) }
        for i in trials.indices {
            let c = trials[i].candidate
            if let m = objective.maxBytes, c.size.bytes > m { trials[i].stop = .overBytes }
            else if let m = objective.maxLatencyMicroseconds, c.latencyMicrosecondsP50 > m { trials[i].stop = .overLatency }
        }
        var alive = trials.indices.filter { trials[$0].stop == nil }
        guard !alive.isEmpty else { throw TensorError("no candidate is within --max-bytes and --max-latency-us; nothing to train") }
        var winner: Int? = nil
        var observedSeconds = 0.0, observedWork = 0.0
        func work(_ c: FitCandidate, epochs: Int) -> Double { Double(max(c.size.flops ?? 2 * c.size.parameters, 1)) * Double(epochs) }

        /// Trains candidate `i` to `epochs` unless the budget would run out (then marks it
        /// `.budget`); records the rung and makes it the winner when it meets the floor.
        func trainRung(_ i: Int, rung: Int, epochs: Int) throws {
            let c = trials[i].candidate
            let newEpochs = epochs - (trials[i].rungs.last?.epochs ?? 0)
            let now = clock()
            guard now < budget else { trials[i].stop = .budget; return }
            if observedWork > 0, now + observedSeconds / observedWork * work(c, epochs: newEpochs) > budget {
                trials[i].stop = .budget
                return
            }
            let t0 = clock()
            let accuracy: Double
            do { accuracy = try trainer.train(c, toEpochs: epochs) } catch is TrainingDeadlinePassed {
                trials[i].stop = .budget  // the budget ran out in the middle of this rung
                return
            }
            observedSeconds += clock() - t0
            observedWork += work(c, epochs: newEpochs)
            trials[i].rungs.append((epochs, accuracy))
            log(String(format: "fit: rung %d (%d epochs): %@ validation accuracy %.2f%%%@", rung + 1, epochs, c.name, accuracy * 100,
                       accuracy >= objective.minAccuracy ? " (meets the objective)" : ""))
            if accuracy >= objective.minAccuracy {
                if let w = winner { trials[w].stop = .dominated }
                winner = i
            }
        }

        rungs: for (rung, epochs) in rungEpochs.enumerated() {
            for i in alive {
                if let w = winner, !trials[i].candidate.isSmaller(than: trials[w].candidate) { trials[i].stop = .dominated; continue }
                try trainRung(i, rung: rung, epochs: epochs)
            }
            alive = alive.filter { trials[$0].stop == nil && $0 != winner && !trials[$0].rungs.isEmpty }
            guard rung + 1 < rungEpochs.count, !alive.isEmpty else { break rungs }
            // The promising half: the most accurate, the smaller first among equals.
            let ranked = alive.sorted { a, b in
                let (x, y) = (trials[a].lastAccuracy ?? 0, trials[b].lastAccuracy ?? 0)
                return x != y ? x > y : trials[a].candidate.isSmaller(than: trials[b].candidate)
            }
            let keep = max(1, Int((Double(ranked.count) * keepFraction).rounded(.up)))
            for i in ranked.dropFirst(keep) { trials[i].stop = .halved }
            alive = ranked.prefix(keep).sorted()
        }
        for i in alive where trials[i].stop == nil { trials[i].stop = .lastRung }

        // A second chance for the smaller candidates the halving stopped: early rungs favour wide
        // students, which learn faster, so a small one that would have met the floor at full
        // length can be dropped at the first rung. Before answering, each candidate smaller than
        // the winner that was halved is trained to the last rung, smallest first, while the
        // budget lasts; the first that meets the floor becomes the answer.
        if let first = winner {
            let lastRung = rungEpochs.count - 1
            for i in trials.indices where trials[i].stop == .halved && trials[i].candidate.isSmaller(than: trials[first].candidate) {
                trials[i].stop = nil
                try trainRung(i, rung: lastRung, epochs: rungEpochs[lastRung])
                if winner == i { break }
                if trials[i].stop == nil { trials[i].stop = .lastRung }
            }
        }

        let chosen: Int
        if let winner {
            chosen = winner
            trials[winner].stop = .chosen
        } else {
            let trained = trials.indices.filter { !trials[$0].rungs.isEmpty }
            guard let closest = trained.max(by: { a, b in
                let (x, y) = (trials[a].lastAccuracy!, trials[b].lastAccuracy!)
                return x != y ? x < y : trials[b].candidate.isSmaller(than: trials[a].candidate)
            }) else { throw TensorError("the budget (\(objective.budgetMinutes) minutes) ended before any candidate was trained; give a larger --budget-minutes") }
            chosen = closest
            trials[closest].stop = .closest
        }
        let validation = trials[chosen].lastAccuracy!
        let test = try trainer.testAccuracy(trials[chosen].candidate)
        return FitOutcome(trials: trials, chosenIndex: chosen, met: winner != nil, validationAccuracy: validation, testAccuracy: test,
                          missed: objective.misses(trials[chosen].candidate, accuracy: validation), seconds: clock() - start)
    }
}
