/// Pareto frontiers of a trade-off where one figure should be small (latency, bytes) and the
/// other large (accuracy).
///
/// A point *dominates* another when it costs no more and is worth no less, and is strictly better
/// in at least one of the two. The frontier is the set of points no other point dominates: the
/// only ones worth choosing, whatever weight one gives to cost and value. Equal points do not
/// dominate each other, so both stay on the frontier. Points with a non-finite figure (a student
/// whose latency could not be measured) are never on it and never dominate.
public enum Pareto {
    /// Whether `a` dominates `b`.
    public static func dominates(_ a: (cost: Double, value: Double), _ b: (cost: Double, value: Double)) -> Bool {
        guard a.cost.isFinite, a.value.isFinite, b.cost.isFinite, b.value.isFinite else { return false }
        return a.cost <= b.cost && a.value >= b.value && (a.cost < b.cost || a.value > b.value)
    }

    /// For each point, whether it is on the frontier (in the order given).
    public static func frontier(_ points: [(cost: Double, value: Double)]) -> [Bool] {
        points.map { p in
            p.cost.isFinite && p.value.isFinite && !points.contains { dominates($0, p) }
        }
    }
}
