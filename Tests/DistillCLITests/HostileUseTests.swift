import DistillTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Uses of the command line that once crashed, or silently did the wrong thing, each with the
/// clear error or the behaviour it has now. All run on a 200-row table with 3 features and 2
/// classes, and a teacher trained on it for 2 epochs.
@Suite("CLI hostile use", .enabled(if: distillBinary != nil, "needs the distill binary (swift build)"))
struct HostileUseTests {
    /// A fresh folder holding data.csv and, trained on it, teacher/ (best.safetensors and the rest).
    func folderWithTeacher() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-hostile-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var csv = "a,b,c,label\n"
        for i in 0..<200 {
            let a = Double((i * 37) % 101) / 101, b = Double((i * 53) % 89) / 89, c = Double(i % 7) / 7
            csv += "\(a),\(b),\(c),\(a + b > 1 ? 1 : 0)\n"
        }
        try Data(csv.utf8).write(to: folder.appendingPathComponent("data.csv"))
        let trained = try runDistill(["train", "--data", "data.csv", "--label", "label", "--model", "mlp:3-16-2", "--epochs", "2",
                                      "--output", "teacher", "--quiet"], in: folder)
        try #require(trained.status == 0, "stderr: \(trained.error)")
        return folder
    }

    func exists(_ folder: URL, _ path: String) -> Bool { FileManager.default.fileExists(atPath: folder.appendingPathComponent(path).path) }

    @Test func aTwoEpochRunKeepsItsBestModel() throws {
        let folder = try folderWithTeacher()
        #expect(exists(folder, "teacher/best.safetensors") && exists(folder, "teacher/student.safetensors"))
    }

    /// DKD splits each row's target class from the others: rows without a label (--label-limit,
    /// --mixup, --label-free) are refused before anything is written instead of failing inside the loss.
    @Test func dkdRefusesRowsWithoutLabels() throws {
        let folder = try folderWithTeacher()
        let common = ["kd", "--data", "data.csv", "--label", "label", "--teacher", "teacher/best.safetensors", "--student", "mlp:3-8-2",
                      "--method", "dkd", "--epochs", "1", "--quiet"]
        for (extra, status) in [(["--label-limit", "10"], Int32(64)), (["--mixup", "0.2"], 64), (["--label-free"], 64)] {
            let result = try runDistill(common + extra + ["--output", "s"], in: folder)
            #expect(result.status == status && result.error.contains("dkd") && result.error.contains(extra[0]), "\(extra): \(result.error)")
            #expect(!exists(folder, "s"), "\(extra) wrote a run folder")
        }
    }

    /// `export` never writes over its own model, nor turns a FIFO into a regular file; a link is
    /// written through; a model argument that is a FIFO, a device, a folder without a model or
    /// an ONNX graph is named as such.
    @Test func exportOutputsAndModelInputsAreChecked() throws {
        let folder = try folderWithTeacher()
        let model = "teacher/best.safetensors"
        let ownName = try runDistill(["export", model, "--onnx", model], in: folder)
        #expect(ownName.status == 64 && ownName.error.contains("that name is for a model"), "\(ownName.error)")
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("alias.onnx").path, withDestinationPath: model)
        let throughLink = try runDistill(["export", model, "--onnx", "alias.onnx"], in: folder)
        #expect(throughLink.status == 1 && throughLink.error.contains("is the model being exported"), "\(throughLink.error)")
        #expect(mkfifo(folder.appendingPathComponent("pipe.onnx").path, 0o644) == 0)
        let pipe = try runDistill(["export", model, "--onnx", "pipe.onnx"], in: folder)
        #expect(pipe.status == 1 && pipe.error.contains("is a FIFO (named pipe), not a regular file; name a file to write"), "\(pipe.error)")
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("link.onnx").path, withDestinationPath: "real.onnx")
        let linked = try runDistill(["export", model, "--onnx", "link.onnx"], in: folder)
        #expect(linked.status == 0 && exists(folder, "real.onnx"), "\(linked.error)")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: folder.appendingPathComponent("link.onnx").path)) == "real.onnx")
        for (arguments, status, says) in [(["--coreml", "n.mlmodel", "--class-names", "a,a"], Int32(1), "the class name 'a' is given twice"),
                                          (["--c", "n.c", "--class-names", "a,"], 1, "class name 2 is empty"),
                                          (["--onnx", "n.onnx", "--samples", "5"], 64, "--samples is for --calibration")] {
            let result = try runDistill(["export", model] + arguments, in: folder)
            #expect(result.status == status && result.error.contains(says), "\(arguments): \(result.error)")
        }
        let mlpackage = try runDistill(["export", model, "--coreml", "m.mlpackage"], in: folder)
        #expect(mlpackage.status == 64 && mlpackage.error.contains(".mlpackage is a folder format"), "\(mlpackage.error)")

        try FileManager.default.createDirectory(at: folder.appendingPathComponent("empty-run"), withIntermediateDirectories: true)
        for (arguments, says) in [(["eval", "pipe.onnx"], "is a FIFO (named pipe)"), (["eval", "/dev/zero"], "is a device, not a regular file"),
                                  (["export", "empty-run", "--onnx", "o.onnx"], "is a folder without best.safetensors"),
                                  (["inspect", "empty-run"], "is a folder without best.safetensors"),
                                  (["export", "real.onnx", "--c", "o.c"], "is an ONNX graph; this takes DistillKit model files")] {
            let result = try runDistill(arguments, in: folder)
            #expect(result.status == 1 && result.error.contains(says), "\(arguments): \(result.error)")
        }
    }

    /// A teacher replaced at the same path while its student's run was stopped: `--resume` says
    /// so instead of finishing the run with another teacher.
    @Test func resumeNoticesAReplacedTeacher() throws {
        let folder = try folderWithTeacher()
        let kd = try runDistill(["kd", "--data", "data.csv", "--label", "label", "--teacher", "teacher/best.safetensors", "--student", "mlp:3-8-2",
                                 "--epochs", "1", "--output", "s", "--quiet"], in: folder)
        try #require(kd.status == 0, "\(kd.error)")
        #expect(exists(folder, "s/teachers.json"))
        let other = try runDistill(["train", "--data", "data.csv", "--label", "label", "--model", "mlp:3-4-2", "--epochs", "1", "--output", "other", "--quiet"], in: folder)
        try #require(other.status == 0, "\(other.error)")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("teacher/best.safetensors"))
        try FileManager.default.copyItem(at: folder.appendingPathComponent("other/best.safetensors"), to: folder.appendingPathComponent("teacher/best.safetensors"))
        let resumed = try runDistill(["kd", "--resume", "s", "--quiet"], in: folder)
        #expect(resumed.status == 1 && resumed.error.contains("teacher/best.safetensors is not the file this run started with"), "\(resumed.error)")
    }

    /// A memory budget that is no size is an error naming the variable, not a budget silently dropped.
    @Test func aMemoryBudgetThatIsNoSizeIsAnError() throws {
        for value in ["512mb", "banana", "0", "4e7"] {
            let result = try runDistill(["inspect", "missing.onnx"], environment: ["DISTILL_MAX_MEMORY": value])
            #expect(result.status == 1 && result.error.contains("DISTILL_MAX_MEMORY=\(value): expected a positive size"), "\(value): \(result.error)")
        }
    }

    /// `--resume DIR` continues the run as recorded: a changed option or experiment file is
    /// refused (it would have been ignored), and a fresh run into the same folder replaces the
    /// earlier run's files instead of mixing with them.
    @Test func resumeRefusesChangesAndAFreshRunReplacesTheOldOne() throws {
        let folder = try folderWithTeacher()
        let changed = try runDistill(["train", "--resume", "teacher", "--epochs", "3", "--quiet"], in: folder)
        #expect(changed.status == 64 && changed.error.contains("--epochs") && changed.error.contains("--resume teacher"), "\(changed.error)")
        let kd = try runDistill(["kd", "--resume", "teacher", "--quiet"], in: folder)
        #expect(kd.status == 0, "kd --resume needs no --teacher: \(kd.error)")

        func experiment(epochs: Int) throws {
            try Data("data: data.csv\nlabel: label\nstudent: mlp:3-8-2\nepochs: \(epochs)\noutput: exp\n".utf8)
                .write(to: folder.appendingPathComponent("exp.yaml"))
        }
        func metricLines() throws -> Int {
            try String(contentsOf: folder.appendingPathComponent("exp/metrics.jsonl"), encoding: .utf8).split(separator: "\n").count
        }
        try experiment(epochs: 2)
        #expect(try runDistill(["run", "exp.yaml", "--quiet"], in: folder).status == 0)
        #expect(try metricLines() == 2)
        try experiment(epochs: 3)
        let edited = try runDistill(["run", "exp.yaml", "--resume", "exp", "--quiet"], in: folder)
        #expect(edited.status == 64 && edited.error.contains("epochs: 2 recorded, 3 now"), "\(edited.error)")
        try experiment(epochs: 1)
        #expect(try runDistill(["run", "exp.yaml", "--quiet"], in: folder).status == 0)
        #expect(try metricLines() == 1, "the fresh run kept the earlier run's epochs")
    }

    /// `distill eval` on a .csv scores every row (it used to score a 20% split).
    @Test func evalScoresEveryRowOfATable() throws {
        let folder = try folderWithTeacher()
        let result = try runDistill(["eval", "teacher/best.safetensors", "--data", "data.csv", "--label", "label", "--json"], in: folder)
        #expect(result.status == 0 && result.output.contains("\"count\":200"), "\(result.output) \(result.error)")
    }

    /// An ONNX teacher whose output width is not the data's class count is refused before
    /// training, naming the file (it crashed inside the KD loss).
    @Test func anONNXTeacherOfTheWrongWidthIsRefused() throws {
        let folder = try folderWithTeacher()
        var csv = "a,b,c,label\n"
        for i in 0..<60 { csv += "\(Double(i % 5) / 5),\(Double(i % 3) / 3),0.5,\(i % 3)\n" }
        try Data(csv.utf8).write(to: folder.appendingPathComponent("three.csv"))
        #expect(try runDistill(["train", "--data", "three.csv", "--label", "label", "--model", "mlp:3-8-3", "--epochs", "1",
                                "--output", "t3", "--quiet"], in: folder).status == 0)
        #expect(try runDistill(["export", "t3/best.safetensors", "--onnx", "t3.onnx"], in: folder).status == 0)
        let result = try runDistill(["kd", "--data", "data.csv", "--label", "label", "--teacher", "t3.onnx", "--student", "mlp:3-8-2",
                                     "--epochs", "1", "--output", "s", "--quiet"], in: folder)
        #expect(result.status == 1 && result.error.contains("t3.onnx") && result.error.contains("3 values per example")
                && result.error.contains("2 classes"), "\(result.error)")
    }

    /// Output paths that would destroy the input or write the wrong kind of file are refused.
    @Test func outputPathsAreChecked() throws {
        let folder = try folderWithTeacher()
        let before = try Data(contentsOf: folder.appendingPathComponent("teacher/best.safetensors"))
        let same = try runDistill(["quantize", "teacher/best.safetensors", "--calibration", "data.csv", "--label", "label",
                                   "--output", "teacher/best.safetensors"], in: folder)
        #expect(same.status == 64 && same.error.contains("is the model being quantized"), "\(same.error)")
        #expect(try Data(contentsOf: folder.appendingPathComponent("teacher/best.safetensors")) == before)
        let header = try runDistill(["export", "teacher/best.safetensors", "--c", "model.h"], in: folder)
        #expect(header.status == 64 && header.error.contains("--c model.h") && header.error.contains(".c file"), "\(header.error)")
        let intoFolder = try runDistill(["export", "teacher/best.safetensors", "--onnx", "teacher"], in: folder)
        #expect(intoFolder.status != 0 && intoFolder.error.contains("teacher"), "\(intoFolder.error)")
        #expect(exists(folder, "teacher/config.json"), "the folder was replaced")
    }

    /// `distill inspect` on an int8 student shows its QDQ graph, its parameters and int8 bytes
    /// (it showed no operators and 0 parameters).
    @Test func inspectDescribesAnInt8Student() throws {
        let folder = try folderWithTeacher()
        #expect(try runDistill(["quantize", "teacher/best.safetensors", "--calibration", "data.csv", "--label", "label",
                                "--output", "q.safetensors"], in: folder).status == 0)
        let result = try runDistill(["inspect", "q.safetensors"], in: folder)
        #expect(result.status == 0 && result.output.contains("int8 model (mlp:3-16-2)") && result.output.contains("QuantizeLinear")
                && result.output.contains("parameters: 98 (") && result.output.contains("logits: FLOAT[N,2]"), "\(result.output)")
    }

    /// `data tokenize --out .npy` pads every row to the longest: the array is checked against
    /// the memory budget before it is made (one long row asked for gigabytes).
    @Test func tokenizeChecksThePaddedSize() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-tokenize-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nword\n".utf8).write(to: folder.appendingPathComponent("vocab.txt"))
        var csv = "text\n" + String(repeating: "word ", count: 2_000) + "\n"
        for _ in 0..<200 { csv += "word\n" }
        try Data(csv.utf8).write(to: folder.appendingPathComponent("in.csv"))
        let arguments = ["data", "tokenize", "--tokenizer", "vocab.txt", "--data", "in.csv", "--column", "text", "--max-length", "5000", "--out", "ids.npy"]
        let refused = try runDistill(arguments, in: folder, environment: ["DISTILL_MAX_MEMORY": "1m"])
        #expect(refused.status == 64 && refused.error.contains("memory budget") && refused.error.contains("--max-length"), "\(refused.error)")
        #expect(!exists(folder, "ids.npy"))
        #expect(try runDistill(arguments, in: folder).status == 0)
    }

    /// `distill bench` checks the student against the benchmark's data like training does.
    @Test func benchChecksTheStudentShape() throws {
        let result = try runDistill(["bench", "kd", "--teacher", "mlp:784-16-10", "--student", "mlp:784-8-7", "--steps", "1", "--repeats", "1"])
        #expect(result.status == 1 && result.error.contains("mlp:784-8-7") && result.error.contains("10 classes"), "\(result.error)")
    }
}
