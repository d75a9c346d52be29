import DistillData
import DistillTensor
import Foundation

/// The teacher's logits for the training rows, computed once for a whole sweep or fit instead of
/// once per run: each distilled run would otherwise run the teacher over every training row again
/// (offline distillation caches them only within one run). The runs then read the file as cached
/// teacher outputs (`Experiment.teacherOutputs`): the same targets, bit for bit.
///
/// Only where the targets cannot differ: image or `.npz` data (a `.csv` teacher sees raw rows
/// through its own statistics, so it stays in the loop), no augmentation and no mixup (the
/// teacher must see each new view), logit losses only, one teacher model.
final class SharedTeacherLogits {
    let folder: URL
    let train: LabeledDataset
    let quiet: Bool
    /// The file, once written.
    private var file: String? = nil

    /// Logits over `train` (the rows the runs train on, in order), written to `folder` when first needed.
    init(folder: URL, train: LabeledDataset, quiet: Bool) {
        self.folder = folder; self.train = train; self.quiet = quiet
    }

    /// Computes and writes the logits for `e`'s teacher (when sharing applies to `e`). With
    /// several ranks (a sweep under mpirun), call on every rank: each computes its share of the
    /// rows, rank 0 writes the file, and every rank's runs then read it.
    func prepare(_ e: Experiment, world: Distributed) throws {
        guard Self.applies(to: e), file == nil else { return }
        let path = e.teachers[0]
        let teacher = try loadTeacher(path, options: e.onnxTeacher)
        try checkTeacher(teacher, path: path, exampleShape: train.exampleShape, numClasses: train.numClasses, classNames: train.classNames)
        if !quiet { log("computing the teacher's logits for \(train.count) training rows once, for every distilled run (no augmentation: offline distillation)") }
        let logits = try TeacherOutputs.compute(teacher, inputs: train, batchSize: 256, world: world, on: .rankZero)
        let url = folder.appendingPathComponent("teacher_logits.npy")
        if let logits {
            try TeacherOutputs.write(logits, to: url.path, record: ["teacher": path, "data": e.data, "rows": String(train.count), "kind": "logits"],
                                     classNames: train.classNames)
        }
        try world.barrier()  // the file is written before any rank's run reads it
        file = url.path
    }

    static func applies(to e: Experiment) -> Bool {
        e.teachers.count == 1 && e.teacherOutputs == nil && FileKind(e.data) != .csv && e.options.shift == 0 && !e.options.flip
            && e.mixup == nil && !e.losses.contains { $0.method.usesFeatures } && e.losses.contains { $0.method != .ce }
    }

    /// `e` reading the shared logits instead of running its teacher, or `e` itself when sharing does not apply.
    func sharing(_ e: Experiment) throws -> Experiment {
        guard Self.applies(to: e) else { return e }
        if file == nil { try prepare(e, world: .oneProcess) }
        var shared = e
        shared.teachers = []
        shared.onnxTeacher = ONNXTeacherOptions()
        shared.teacherOutputs = file
        shared.teacherOutputsKind = .logits
        return shared
    }
}
