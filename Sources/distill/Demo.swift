import ArgumentParser
import DistillTensor
import DistillTraining
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The main job on Fashion-MNIST: a teacher, a scratch student and a distilled student, side by side.",
        discussion: """
        The teacher (cnn-small, 421,642 parameters) is trained once and cached; 5,000 of the \
        60,000 training images are held out to pick its best epoch, so the test set is never used \
        to choose. The student (an MLP 784-64-10, 50,890 parameters) is trained twice from the \
        same initialisation and batch order: from scratch with cross-entropy, and distilled from \
        the teacher's soft targets (T = 2, 0.5·T²·KL + 0.5·CE, the recipe that beat scratch in our \
        measurements; see README).
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
        if !quiet { log("BLAS kernels: \(BLAS.kernelDescription); DistillKit's kernels: \(CPUFeatures.kernelDescription); \(Parallel.workers) worker threads") }
        var job = DemoJob(output: URL(fileURLWithPath: output))
        job.student = student
        job.teacherEpochs = teacherEpochs
        job.studentEpochs = studentEpochs
        job.seed = seed
        job.retrainTeacher = retrainTeacher
        job.quiet = quiet
        let r = try job.run()
        if json {
            func entry(_ r: ModelSummary) -> [String: Any] {
                ["accuracy": r.accuracy, "params": r.parameters, "bytes": r.bytes, "latency_us": r.latencyMicroseconds, "spec": r.spec]
            }
            printJSON(["teacher": entry(r.teacher), "scratch": entry(r.scratch), "distilled": entry(r.distilled), "minutes": r.minutes])
            return
        }
        print(summaryTable(r.rows))
        print(String(format: "\nThe distilled student is %.1fx smaller than the teacher and %@ the scratch student by %.2f points (%.1f min).",
                     Double(r.teacher.parameters) / Double(r.distilled.parameters), r.gainPoints >= 0 ? "beats" : "trails",
                     abs(r.gainPoints), r.minutes))
        print("Run folders: \(job.output.path)/{teacher,scratch,distilled}")
    }
}
