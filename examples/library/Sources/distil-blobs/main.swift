// Trains a teacher on a table, distils a small student from it, evaluates both and exports the
// student as ONNX, with `import DistillKit` alone. The data: three Gaussian blobs in four
// features (class c raises feature c), written as a CSV file with a label column.
import DistillKit
import Foundation

let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distil-blobs-\(getpid())")
try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: folder) }
var g = SeededGenerator(seed: 3)
var rows = ["x0,x1,x2,x3,label"]
for i in 0..<600 {
    let label = i % 3
    let x = (0..<4).map { j in Float(g.next() % 1000) / 500 - 1 + (j == label ? 3 : 0) }
    rows.append(x.map { "\($0)" }.joined(separator: ",") + ",\(label)")
}
let csv = folder.appendingPathComponent("train.csv").path, runs = folder.appendingPathComponent("runs").path
try rows.joined(separator: "\n").write(toFile: csv, atomically: true, encoding: .utf8)

// --- the README's program (paths aside) ---
var teacher = Experiment()
teacher.data = csv; teacher.labelColumn = "label"
teacher.student = "mlp:4-64-3"; teacher.options.epochs = 10; teacher.output = "\(runs)/teacher"
_ = try ExperimentRunner.run(teacher)

var kd = Experiment()
kd.data = csv; kd.labelColumn = "label"
kd.teachers = ["\(runs)/teacher"]            // a run folder, a .safetensors model or an .onnx file
kd.student = "mlp:4-8-3"
kd.losses = LossTerm.recipe()                 // 0.5·KD at T = 2 + 0.5·CE, the default of `distill kd`
kd.options.epochs = 10; kd.output = "\(runs)/student"
let result = try ExperimentRunner.run(kd)
print(summaryTable(result.rows))          // parameters, bytes, accuracy, latency of teacher and student

// the student alone, the table's standardisation folded in, read back and checked
let export = try StudentExport.onnx(modelAt: URL(fileURLWithPath: "\(runs)/student/best.safetensors"),
                                    to: URL(fileURLWithPath: "\(runs)/student.onnx"))
print(export.text)
// --- end ---

// Checked by scripts/test.sh through the exit status.
guard result.training.test.accuracy > 0.9, result.rows.map(\.role) == ["teacher", "distilled"] else {
    print("unexpected result: accuracy \(result.training.test.accuracy), rows \(result.rows.map(\.role))")
    exit(1)
}
