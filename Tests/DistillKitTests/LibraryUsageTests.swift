import DistillKit
import Foundation
import Testing

/// The README's library example, as a test: with `import DistillKit` alone, train a teacher,
/// distil a student from it, evaluate the student and export it to ONNX.
@Suite("DistillKit as a library")
struct LibraryUsageTests {
    @Test("the README's program runs with one import")
    func readmeProgram() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-library-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // Three Gaussian blobs in four features: class c raises feature c.
        var g = SeededGenerator(seed: 3)
        var rows = ["x0,x1,x2,x3,label"]
        for i in 0..<600 {
            let label = i % 3
            let x = (0..<4).map { j in Float(g.next() % 1000) / 500 - 1 + (j == label ? 3 : 0) }
            rows.append(x.map { "\($0)" }.joined(separator: ",") + ",\(label)")
        }
        try rows.joined(separator: "\n").write(to: folder.appendingPathComponent("train.csv"), atomically: true, encoding: .utf8)
        let csv = folder.appendingPathComponent("train.csv").path, runs = folder.appendingPathComponent("runs").path

        // --- the README's program, paths aside ---
        var teacher = Experiment()
        teacher.data = csv
        teacher.labelColumn = "label"
        teacher.student = "mlp:4-64-3"
        teacher.options.epochs = 10
        teacher.options.quiet = true
        teacher.output = "\(runs)/teacher"
        _ = try ExperimentRunner.run(teacher)

        var kd = Experiment()
        kd.data = csv
        kd.labelColumn = "label"
        kd.teachers = ["\(runs)/teacher"]  // a run folder, a .safetensors model or an .onnx file
        kd.student = "mlp:4-8-3"
        var soft = LossTerm(.kd, weight: 0.5)
        soft.temperature = 2
        kd.losses = [soft, LossTerm(.ce, weight: 0.5)]
        kd.options.epochs = 10
        kd.options.quiet = true
        kd.output = "\(runs)/student"
        let result = try ExperimentRunner.run(kd)
        print(summaryTable(result.rows))

        // The student alone as ONNX, with the standardisation it learned on the table folded in.
        let path = "\(runs)/student/best.safetensors"
        let (student, info) = try SavedModel.load(URL(fileURLWithPath: path))
        var preprocessing = ONNXExport.Preprocessing()
        if let statistics = try Tabular.statistics(of: info, source: path) { preprocessing.inputMean = statistics.mean; preprocessing.inputStd = statistics.std }
        try ONNXExport.write(student, inputShape: info.inputShape, to: URL(fileURLWithPath: "\(runs)/student.onnx"), preprocessing: preprocessing)
        // --- end ---

        #expect(result.training.test.accuracy > 0.9)
        #expect(result.rows.map(\.role) == ["teacher", "distilled"])
        #expect(try ONNXModel(contentsOf: URL(fileURLWithPath: "\(runs)/student.onnx")).inputs.count == 1)
    }
}
