import DistillTestSupport
import Foundation
import Testing

/// One case per error path of the command line: each must exit with its status (64 for a usage
/// error, 1 for a failure), without a signal, and say what is wrong, naming the option or file.
@Suite("CLI error paths", .enabled(if: distillBinary != nil, "needs the distill binary (swift build)"))
struct ErrorPathTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var arguments: [String]
        var status: Int32
        var says: [String]
        var testDescription: String { "distill " + arguments.joined(separator: " ") }
    }

    static let cases: [Case] = [
        // Usage errors: ArgumentParser and the commands' own validation.
        Case(arguments: ["train", "--optimizer", "rmsprop"], status: 64, says: ["rmsprop", "adam", "adamw", "sgd"]),
        Case(arguments: ["train", "--schedule", "linear"], status: 64, says: ["linear", "cosine"]),
        Case(arguments: ["kd", "--method", "magic", "--teacher", "t.safetensors"], status: 64, says: ["magic", "dkd"]),
        Case(arguments: ["kd", "--student", "mlp:784-10"], status: 64, says: ["--teacher", "--teacher-outputs"]),
        Case(arguments: ["kd", "--teacher", "t.safetensors", "--alpha", "2"], status: 64, says: ["--alpha 2", "[0, 1]"]),
        Case(arguments: ["kd", "--teacher", "t.safetensors", "--temperature", "0"], status: 64, says: ["--temperature", "(0, 1000]"]),
        Case(arguments: ["kd", "--teacher", "t.safetensors", "--method", "ce"], status: 64, says: ["distill train"]),
        Case(arguments: ["kd", "--teacher-outputs", "t.npy", "--teacher-outputs-kind", "scores"], status: 64, says: ["scores", "logits", "probs"]),
        Case(arguments: ["cache-teacher", "--teacher", "t.safetensors", "--out", "t.npy", "--views", "0"], status: 64, says: ["--views 0"]),
        Case(arguments: ["cache-teacher", "--teacher", "t.safetensors", "--out", "t.txt"], status: 64, says: ["--out t.txt", ".npy"]),
        Case(arguments: ["cache-teacher", "--teacher", "t.safetensors", "--out", "t.npy", "--views", "2"], status: 64, says: ["--shift", "--flip"]),
        Case(arguments: ["data-report", "--top=-1"], status: 64, says: ["--top -1"]),
        Case(arguments: ["train", "--no-such-option"], status: 64, says: ["--no-such-option"]),
        Case(arguments: ["train", "--validation", "1.5"], status: 64, says: ["--validation", "(0, 1)", "1.5"]),
        Case(arguments: ["quantize", "m.safetensors", "--calibration", "fashion-mnist", "--output", "q.safetensors", "--qat-epochs", "3"],
             status: 64, says: ["--qat-epochs", "add --qat"]),
        Case(arguments: ["quantize", "m.safetensors", "--calibration", "fashion-mnist", "--output", "q.safetensors", "--qat", "--qat-epochs", "0"],
             status: 64, says: ["--qat-epochs 0", "1...100"]),
        Case(arguments: ["quantize", "m.safetensors", "--calibration", "fashion-mnist", "--output", "q.safetensors", "--qat", "--qat-learning-rate", "0"],
             status: 64, says: ["--qat-learning-rate"]),
        Case(arguments: ["sweep", "--students", "mlp:784-32-10", "--seeds", "0"], status: 64, says: ["--seeds 0", "1...100"]),
        Case(arguments: ["fit", "--min-accuracy", "0"], status: 64, says: ["--min-accuracy 0", "(0, 1]"]),
        Case(arguments: ["fit", "--min-accuracy", "0.9", "--max-bytes", "0x10"], status: 64, says: ["--max-bytes '0x10'", "100k"]),
        Case(arguments: ["fit", "--min-accuracy", "0.9", "--epochs", "0"], status: 64, says: ["--epochs 0"]),
        Case(arguments: ["text-kd", "--max-length", "1"], status: 64, says: ["--max-length 1", "3...512"]),
        Case(arguments: ["text-kd", "--cosine-weight", "0"], status: 64, says: ["--cosine-weight", "--mse-weight"]),
        Case(arguments: ["text-kd", "--gradient-clip", "0"], status: 64, says: ["--gradient-clip 0"]),
        Case(arguments: ["text-kd", "--train-limit", "0"], status: 64, says: ["--train-limit 0"]),
        Case(arguments: ["text-kd", "--layer-map", "a,b"], status: 64, says: ["--layer-map"]),
        Case(arguments: ["text-kd", "--hidden-weight", "-1"], status: 64, says: ["--hidden-weight"]),
        Case(arguments: ["embed", "--text", "a", "--data", "t.csv"], status: 64, says: ["--text", "--data"]),
        Case(arguments: ["embed", "--data", "t.csv", "--out", "t.txt"], status: 64, says: ["--out t.txt", ".npy"]),
        // Failures: settings out of range, missing files, data that does not fit.
        Case(arguments: ["train", "--epochs", "0"], status: 64, says: ["'epochs' (--epochs)", "1...100000"]),
        Case(arguments: ["train", "--seed", "9223372036854775808"], status: 64, says: ["'seed' (--seed) must be 0...9223372036854775807"]),
        Case(arguments: ["kd", "--teacher", "t/best.safetensors", "--output", "t"], status: 64, says: ["'output' (--output) t holds the teacher"]),
        Case(arguments: ["train", "--batch-size", "0"], status: 64, says: ["'batch_size' (--batch-size)"]),
        Case(arguments: ["train", "--lr", "nan"], status: 64, says: ["'learning_rate' (--lr)"]),
        Case(arguments: ["train", "--data", "missing.csv", "--label", "y"], status: 1, says: ["missing.csv"]),
        Case(arguments: ["train", "--data", "tables.xlsx"], status: 1, says: ["tables.xlsx", "fashion-mnist"]),
        Case(arguments: ["train", "--target", "y"], status: 64, says: ["'target' (--target)", ".csv"]),
        Case(arguments: ["kd", "--teacher", "missing.safetensors"], status: 1, says: ["missing.safetensors", "does not exist"]),
        Case(arguments: ["eval", "missing.safetensors"], status: 1, says: ["missing.safetensors"]),
        Case(arguments: ["eval", "m.onnx", "--teacher-output", "probs"], status: 64, says: ["--teacher-output", "--model-output"]),
        Case(arguments: ["eval", "m.safetensors", "--model-output", "probs"], status: 64, says: ["--model-output", "m.safetensors"]),
        Case(arguments: ["run", "missing.yaml"], status: 1, says: ["missing.yaml"]),
        Case(arguments: ["inspect", "missing.onnx"], status: 1, says: ["missing.onnx"]),
        Case(arguments: ["export", "missing.safetensors", "--onnx", "out.onnx"], status: 1, says: ["missing.safetensors"]),
        Case(arguments: ["text-kd", "--teacher", ".", "--corpus", "missing.csv"], status: 64, says: ["missing.csv", "debian-packages"]),
        Case(arguments: ["embed", "missing-folder", "--text", "a"], status: 1, says: ["missing-folder"]),
        Case(arguments: ["data", "tokenize", "--tokenizer", "missing.json", "--data", "t.csv", "--column", "text", "--out", "ids.npy"],
             status: 1, says: ["missing.json"]),
    ]

    @Test(arguments: cases)
    func failsWithAClearMessage(_ c: Case) throws {
        let result = try runDistill(c.arguments, in: scratch())
        #expect(result.status == c.status, "exit status \(result.status), expected \(c.status); stderr: \(result.error)")
        for phrase in c.says { #expect(result.error.contains(phrase), "stderr lacks '\(phrase)': \(result.error)") }
    }

    /// An error found after the options parsed is its message alone, not the root command's usage
    /// ("Usage: distill <subcommand>" would point at the wrong help); a parse error keeps the usage.
    @Test func runtimeErrorsAreTheMessageAlone() throws {
        let runtime = try runDistill(["train", "--data", "missing.csv", "--label", "y"], in: scratch())
        #expect(runtime.error.hasPrefix("Error: ") && runtime.error.hasSuffix("missing.csv: no such file\n"), "stderr: \(runtime.error)")
        #expect(!runtime.error.contains("Usage:"), "stderr: \(runtime.error)")
        let parse = try runDistill(["train", "--no-such-option"], in: scratch())
        #expect(parse.error.contains("Usage: distill train"), "stderr: \(parse.error)")
    }

    /// `distill sweep --teacher-outputs`: a missing file, or a teacher given twice, is an error
    /// naming it before any training.
    @Test func sweepWithCachedOutputsChecksThemFirst() throws {
        let folder = try scratch()
        var csv = "a,b,label\n"
        for i in 0..<100 { csv += "\(Double(i % 7) / 7),\(Double(i % 3) / 3),\(i % 2)\n" }
        try Data(csv.utf8).write(to: folder.appendingPathComponent("data.csv"))
        let common = ["sweep", "--data", "data.csv", "--label", "label", "--students", "mlp:2-8-2", "--seeds", "1", "--quiet"]
        let missing = try runDistill(common + ["--teacher-outputs", "views.npy"], in: folder)
        #expect(missing.status == 1 && missing.error.contains("views.npy"), "stderr: \(missing.error)")
        let both = try runDistill(common + ["--teacher-outputs", "views.npy", "--teacher", "t.safetensors"], in: folder)
        #expect(both.status == 1 && both.error.contains("t.safetensors") && both.error.contains("not both"), "stderr: \(both.error)")
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("runs").path))
    }

    /// A fresh empty folder, so that relative paths in the cases never exist.
    func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-cli-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// `distill run FILE` with the command line overriding the file's epochs and validation share.
@Suite("distill run overrides", .enabled(if: distillBinary != nil, "needs the distill binary (swift build)"))
struct RunOverrideTests {
    @Test func epochsAndValidationOverrideTheFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-run-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var csv = "a,b,label\n"
        for i in 0..<200 { csv += "\(Double(i % 17) / 17),\(Double(i % 5) / 5),\(i % 2)\n" }
        try Data(csv.utf8).write(to: folder.appendingPathComponent("data.csv"))
        try Data("data: data.csv\nlabel: label\nstudent: mlp:2-8-2\nepochs: 5\noutput: run\n".utf8)
            .write(to: folder.appendingPathComponent("exp.yaml"))
        let result = try runDistill(["run", "exp.yaml", "--epochs", "2", "--validation", "0.25", "--quiet"], in: folder)
        #expect(result.status == 0, "stderr: \(result.error)")
        let lines = try String(contentsOf: folder.appendingPathComponent("run/metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        #expect(lines.count == 2, "\(lines.count) epochs")
        #expect(lines.allSatisfy { $0.contains("\"validation_accuracy\"") && !$0.contains("\"test_accuracy\"") })
        let config = try String(contentsOf: folder.appendingPathComponent("run/config.json"), encoding: .utf8)
        #expect(config.contains("\"validation\" : 0.25"), "\(config)")
    }
}
