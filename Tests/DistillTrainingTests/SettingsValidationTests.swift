import DistillTensor
import DistillTestSupport
import DistillTraining
import Foundation
import Testing

/// Settings from YAML, `config.json` and the command line are untrusted: every value is checked
/// against its range where the experiment is built, and no value makes the parser trap.
@Suite("Settings validation")
struct SettingsValidationTests {
    static var base: [String: Any] { ["data": "d.npz", "student": "mlp:4-8-3", "epochs": 1] }

    static var refused: [(key: String, value: Any, fragment: String)] { [
        ("epochs", Double.infinity, "'epochs' (--epochs) must be an integer"),
        ("epochs", 1e300, "'epochs' (--epochs) must be an integer"),
        ("epochs", Int.max, "'epochs' (--epochs) must be 1...100000"),
        ("epochs", 0, "'epochs' (--epochs) must be 1...100000"),
        ("batch_size", Int.max, "'batch_size' (--batch-size) must be 1..."),
        ("seed", -1, "'seed' (--seed) must be a non-negative integer"),
        ("learning_rate", Double.nan, "'learning_rate' (--lr) must be a positive finite number"),
        ("learning_rate", 1e300, "'learning_rate' (--lr)"),
        ("momentum", Double.nan, "'momentum' (--momentum) must be in [0, 1)"),
        ("momentum", 2, "'momentum'"),
        ("weight_decay", -1, "'weight_decay'"),
        ("gradient_clip", 0, "'gradient_clip'"),
        ("warmup_epochs", 5, "'warmup_epochs' (--warmup-epochs) must be 0...epochs (1)"),
        ("shift", -1, "'shift'"),
        ("train_limit", 0, "'train_limit' (--train-limit) must be at least 1"),
        ("label_limit", -1, "'label_limit'"),
        ("flip", "maybe", "'flip' (--flip) must be true or false"),
        ("optimizer", "rmsprop", "unknown optimizer 'rmsprop'"),
        ("losses", [Any](), "'losses' is empty"),
        ("losses", [["kd": ["temperature": 0]]], "temperature (--temperature) must be in (0, 1000]"),
        ("losses", [["kd": ["temperature": Double.nan]]], "temperature"),
        ("losses", [["kd": ["weight": -1]]], "weight must be a non-negative finite number"),
        ("losses", [["dkd": ["warmup_epochs": Double.nan]]], "warmup_epochs must be an integer"),
        ("losses", [["dkd": ["beta": Double.infinity]]], "beta must be a non-negative finite number"),
    ] }

    @Test("each out-of-range setting is refused naming the setting and its option")
    func refusedSettings() {
        for c in Self.refused {
            var map = Self.base
            map[c.key] = c.value
            if c.key == "losses" { map["teacher_outputs"] = "t.npy" }
            expectMessage([c.fragment]) { _ = try Experiment(map) }
        }
    }

    /// Random maps of known keys to hostile values (huge, negative, NaN, ±Inf, strings, lists,
    /// maps): building the experiment either throws a TensorError or gives one whose settings are
    /// all in range. A trap would end the test process, so finishing is the main assertion.
    @Test("random settings never trap and never pass out of range")
    func randomSettings() {
        var g = SeededGenerator(seed: 11)
        let values: [Any] = [0, 1, -1, 2, 7, Int.max, Int.min, 1 << 40, 0.5, -0.5, 1e300, -1e300, Double.nan, Double.infinity, -Double.infinity,
                             1e-300, "", "x", "adam", "cosine", "logits", "mlp:4-8-3", true, false, [Any](), [1, 2], ["a": 1], NSNull()]
        let keys = Array(Experiment.knownKeys)
        let lossNames = ["ce", "kd", "dkd", "dist", "rkd", "bogus"]
        let lossKeys = ["weight", "temperature", "alpha", "beta", "gamma", "warmup_epochs", "standardize"]
        var accepted = 0
        for _ in 0..<4000 {
            var map: [String: Any] = [:]
            for _ in 0..<Int(g.next() % 6) + 1 { map[keys[Int(g.next() % UInt64(keys.count))]] = values[Int(g.next() % UInt64(values.count))] }
            if g.next() % 3 == 0 {
                var options: [String: Any] = [:]
                for _ in 0..<Int(g.next() % 3) { options[lossKeys[Int(g.next() % UInt64(lossKeys.count))]] = values[Int(g.next() % UInt64(values.count))] }
                map["losses"] = [[lossNames[Int(g.next() % UInt64(lossNames.count))]: options]]
            }
            do {
                let e = try Experiment(map)
                accepted += 1
                let o = e.options
                #expect((1...Experiment.maxEpochs).contains(o.epochs) && (1...Experiment.maxBatchSize).contains(o.batchSize))
                #expect(o.learningRate > 0 && o.learningRate.isFinite && o.momentum >= 0 && o.momentum < 1 && o.weightDecay.isFinite)
                #expect(e.losses.allSatisfy { $0.temperature > 0 && $0.temperature.isFinite && $0.weight >= 0 && $0.weight.isFinite })
            } catch is TensorError {
            } catch {
                Issue.record("a non-TensorError escaped: \(error) for \(map)")
            }
        }
        #expect(accepted > 0, "some random maps are valid experiments")
    }
}
