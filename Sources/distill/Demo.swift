import ArgumentParser
import DistillData
import DistillNN
import DistillTensor
import DistillTraining
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The main job on Fashion-MNIST: a teacher, a scratch student and a distilled student, side by side.",
        discussion: """
        The teacher (cnn-small, 421,642 parameters) is trained once and cached. The student (an MLP
        784-64-10, 50,890 parameters) is trained twice from the same initialisation and batch order:
        from scratch with cross-entropy, and distilled from the teacher's soft targets (T = 2,
        0.5·T²·KL + 0.5·CE, the recipe that beat scratch in our measurements; see README).
        """)
    @Option(help: "Folder for the run (teacher cache, students, summary).") var output = "runs/demo"
    @Option(help: "Teacher epochs.") var teacherEpochs = 8
    @Option(help: "Student epochs (scratch and distilled alike).") var studentEpochs = 60
    @Option(help: "Student spec.") var student = "mlp:784-64-10"
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Flag(help: "Retrain the teacher even when a cached one exists.") var retrainTeacher = false
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Flag(help: "No progress output.") var quiet = false

    func run() throws {
        let started = DispatchTime.now().uptimeNanoseconds
        if !quiet { log("BLAS kernels: \(BLAS.kernelDescription); \(Parallel.workers) worker threads") }
        let data = try FashionMNIST.load()
        let root = URL(fileURLWithPath: output)
        let teacherFile = root.appendingPathComponent("teacher/best.safetensors")

        if retrainTeacher || !FileManager.default.fileExists(atPath: teacherFile.path) {
            if !quiet { log("== training the teacher (cnn-small, \(teacherEpochs) epochs); it is cached in \(teacherFile.path)") }
            var t = Experiment()
            t.student = "cnn-small"
            t.options.epochs = teacherEpochs
            t.options.seed = seed
            t.options.quiet = quiet
            t.output = root.appendingPathComponent("teacher").path
            _ = try ExperimentRunner.run(t, preloaded: data)
        } else if !quiet {
            log("== reusing the cached teacher \(teacherFile.path) (--retrain-teacher to train it again)")
        }

        var scratch = Experiment()
        scratch.student = student
        scratch.options.epochs = studentEpochs
        scratch.options.seed = seed
        scratch.options.quiet = quiet
        scratch.output = root.appendingPathComponent("scratch").path
        if !quiet { log("== training the student from scratch (\(student), \(studentEpochs) epochs)") }
        let scratchResult = try ExperimentRunner.run(scratch, preloaded: data)

        var kd = scratch
        kd.teachers = [teacherFile.path]
        var kdTerm = LossTerm(.kd, weight: 0.5)
        kdTerm.temperature = 2
        kd.losses = [kdTerm, LossTerm(.ce, weight: 0.5)]
        kd.output = root.appendingPathComponent("distilled").path
        if !quiet { log("== distilling the teacher into the student (same initialisation and batch order)") }
        let kdResult = try ExperimentRunner.run(kd, preloaded: data)

        guard let teacherRow = kdResult.rows.first(where: { $0.role == "teacher" }),
              var scratchRow = scratchResult.rows.last, var kdRow = kdResult.rows.last else { return }
        scratchRow.role = "scratch"
        kdRow.role = "distilled"
        let rows = [teacherRow, scratchRow, kdRow]
        let minutes = Double(DispatchTime.now().uptimeNanoseconds - started) / 60e9
        try AtomicFile.write(Data((summaryTable(rows) + "\n").utf8), to: root.appendingPathComponent("summary.txt"))
        if json {
            func entry(_ r: ModelSummary) -> [String: Any] {
                ["accuracy": r.accuracy, "params": r.parameters, "bytes": r.bytes, "latency_us": r.latencyMicroseconds, "spec": r.spec]
            }
            printJSON(["teacher": entry(teacherRow), "scratch": entry(scratchRow), "distilled": entry(kdRow), "minutes": minutes])
            return
        }
        print(summaryTable(rows))
        let gain = (kdRow.accuracy - scratchRow.accuracy) * 100
        print(String(format: "\nThe distilled student is %.1fx smaller than the teacher and %@ the scratch student by %.2f points (%.1f min).",
                     Double(teacherRow.parameters) / Double(kdRow.parameters), gain >= 0 ? "beats" : "trails", abs(gain), minutes))
        print("Run folders: \(root.path)/{teacher,scratch,distilled}")
    }
}
