import ArgumentParser
import DistillData
import DistillNN
import DistillTensor
import DistillTraining
import Foundation

struct CacheTeacher: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache-teacher",
        abstract: "Write a teacher's logits for every training row to a file, for `distill kd --teacher-outputs`.",
        discussion: """
        The file has one row per row of the training file, in file order ([N, C]); with --views K, the \
        teacher labels K augmented views of every sample ([K, N, C]) and the augmentation (views, shift, \
        flip, seed) is recorded in FILE.json (and in the metadata of a .safetensors file), so that \
        `distill kd --teacher-outputs FILE` replays exactly those views. Format by extension: .npy, \
        .npz (array `logits`), .safetensors (tensor `logits`) or .csv ([N, C] only). Under mpirun \
        the ranks share the rows out and rank 0 writes the one file (the same bytes as one process).
        """)
    @Option(help: "Teacher model file (or a run folder: its best.safetensors).", transform: RunFolder.modelFile) var teacher: String
    @Option(help: "Data: fashion-mnist, mnist, a .csv file (with --label) or a .npz file.") var data = "fashion-mnist"
    @Option(help: "Label column of a .csv file.") var label: String?
    @Option(help: "Output file: .npy, .npz, .safetensors or .csv.") var out: String
    @Option(help: "Augmented views per sample (1: the samples as they are).") var views = 1
    @Option(help: "Random shift of each view, in pixels.") var shift = 0
    @Flag(help: "Random horizontal flips of each view.") var flip = false
    @Option(help: "Seed of the augmentation.") var seed: UInt64 = 0
    @Option(help: "Rows per teacher call (larger batches use more memory, not less time).") var batchSize = 256
    @OptionGroup var teacherReading: ONNXTeacherFlags

    func validate() throws {
        guard (1...TeacherOutputs.maxViews).contains(views) else { throw ValidationError("--views \(views): must be 1...\(TeacherOutputs.maxViews)") }
        guard (1...(1 << 20)).contains(batchSize) else { throw ValidationError("--batch-size \(batchSize): must be 1...\(1 << 20)") }
        guard TeacherOutputs.formats.contains(FileKind(out)) else {
            throw ValidationError("--out \(out): the format comes from the extension: \(TeacherOutputs.formats.map { "." + $0.rawValue }.joined(separator: ", "))")
        }
        guard shift >= 0 else { throw ValidationError("--shift must not be negative") }
        if views > 1 && shift == 0 && !flip { throw ValidationError("--views \(views) needs an augmentation (--shift N and/or --flip): otherwise every view is the same") }
        if views == 1 && (shift > 0 || flip) { throw ValidationError("--shift/--flip make augmented views: give --views K (K ≥ 2)") }
    }

    func run() throws {
        // Every row of the training file, in file order (a .csv is not split here).
        let isCSV = FileKind(data) == .csv
        let (train, _) = try DataSource.load(data, testData: isCSV ? data : nil, labelColumn: label)
        let model = try loadTeacher(teacher, options: teacherReading.options)
        try checkTeacher(model, path: teacher, exampleShape: train.exampleShape, numClasses: train.numClasses > 0 ? train.numClasses : nil, classNames: train.classNames)
        if isMainRank { try warnIfNearChance(model, path: teacher, on: train) }
        try MemoryBudget.check(shape: [views, train.count] + train.exampleShape, for: "--views \(views) of \(train.count) rows of \(data)")
        let inputs = views > 1 ? try TeacherOutputs.augmentedViews(train, views: views, shift: shift, flip: flip, seed: seed) : train
        let t0 = Date()
        // Under mpirun each rank runs its share of the batches and rank 0 alone writes the file.
        let world = try Distributed.world
        guard var logits = try TeacherOutputs.compute(model, inputs: inputs, batchSize: batchSize, world: world, on: .rankZero) else { return }
        if views > 1 { logits = logits.reshaped([views, train.count, logits.shape[1]]) }
        let record: [String: String] = [
            "teacher": teacher, "data": data, "rows": String(train.count), "classes": String(logits.shape.last!),
            "kind": "logits", "views": String(views), "shift": String(shift), "flip": String(flip), "seed": String(seed),
        ]
        try TeacherOutputs.write(logits, to: out, record: record, classNames: train.classNames)
        print(String(format: "%@: teacher logits %@ for %d training rows%@ (%.1f s%@); record in %@.json",
                     out, "\(logits.shape)", train.count, views > 1 ? " × \(views) views" : "", Date().timeIntervalSince(t0),
                     world.isDistributed ? " on \(world.size) ranks" : "", out))
    }
}

struct DataReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data-report",
        abstract: "What is in the transfer data: class balance, teacher confidence, likely label noise, duplicates, bad features.")
    @Option(help: "Data: fashion-mnist, mnist, a .csv file or a .npz file.") var data = "fashion-mnist"
    @Option(help: "Label column of a .csv file (omit for unlabelled data).") var label: String?
    @Option(help: "Teacher model file or run folder (adds the confidence histogram and teacher-label disagreements).", transform: RunFolder.modelFile) var teacher: String?
    @Option(help: "Cached teacher outputs instead of a teacher model (one row per training row).") var teacherOutputs: String?
    @Option(help: "What --teacher-outputs holds.") var teacherOutputsKind = TeacherOutputs.Kind.logits
    @Option(help: "How many disagreements and duplicate groups to list.") var top = 10
    @OptionGroup var teacherReading: ONNXTeacherFlags
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        guard (0...100_000).contains(top) else { throw ValidationError("--top \(top): must be 0...100000") }
    }

    func run() throws {
        let isCSV = FileKind(data) == .csv
        let (train, _) = try DataSource.load(data, testData: isCSV ? data : nil, labelColumn: label, allowUnlabeled: true)
        var probabilities: Tensor? = nil
        if let path = teacherOutputs {
            let kind = teacherOutputsKind
            let file = try TeacherOutputs.read(path)
            try TeacherOutputs.check(file, kind: kind, expectedRows: train.count, expectedClasses: train.numClasses > 0 ? train.numClasses : nil)
            probabilities = kind == .probs ? file.values : withNoGrad { file.values.softmax(axis: 1) }
        } else if let teacher {
            let model = try loadTeacher(teacher, options: teacherReading.options)
            try checkTeacher(model, path: teacher, exampleShape: train.exampleShape, numClasses: train.numClasses > 0 ? train.numClasses : nil, classNames: train.classNames)
            let logits = try TeacherOutputs.compute(model, inputs: train)
            probabilities = withNoGrad { logits.softmax(axis: 1) }
        }
        let report = try DataReport(train, teacherProbabilities: probabilities, top: top)
        if json { printJSON(report.json) } else { print(report.text(name: data)) }
    }
}
