import DistillData
import DistillTensor
import Foundation

/// A teacher whose logits for every training row are already known: computed once from a model
/// (offline distillation, when no augmentation changes the inputs) or read from a file.
public final class CachedTeacher: Teacher {
    /// [N, C] logits, row i for dataset row i.
    public let logitTable: Tensor
    public let name: String
    public let parameterCount: Int
    public let bytes: Int

    public init(logits: Tensor, name: String, parameterCount: Int = 0, bytes: Int = 0) {
        precondition(logits.rank == 2, "CachedTeacher: logits must be [N, C], got \(logits.shape)")
        logitTable = logits
        self.name = name; self.parameterCount = parameterCount; self.bytes = bytes
    }

    /// Runs `teacher` once over the examples of `inputs` in batches and keeps the logits. With
    /// several ranks (`world`), each runs its share of the batches and every rank gets the whole
    /// table (`TeacherOutputs.compute`).
    public static func precomputed(from teacher: Teacher, inputs: LabeledDataset, batchSize: Int = 256,
                                   world: Distributed? = nil) throws -> CachedTeacher {
        let table = try TeacherOutputs.compute(teacher, inputs: inputs, batchSize: batchSize, world: world ?? .oneProcess, on: .everyRank)
        return CachedTeacher(logits: table!, name: teacher.name, parameterCount: teacher.parameterCount, bytes: teacher.bytes)
    }

    public func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        guard features.isEmpty else { throw TensorError("\(name): cached teacher outputs hold logits only; feature methods need the teacher model") }
        guard indices.count == inputs.shape[0], indices.allSatisfy({ $0 >= 0 && $0 < logitTable.shape[0] }) else {
            throw TensorError("\(name): cached outputs cover \(logitTable.shape[0]) rows; the batch asks for rows outside them")
        }
        return (withNoGrad { logitTable.indexSelect(axis: 0, indices: indices) }, [:])
    }
}

/// A cached teacher whose file holds class probabilities rather than logits: the objective's
/// `kd` term then uses `softTargetLoss` on `p^(1/T)` renormalised instead of `kdLoss`.
public final class CachedProbabilityTeacher: Teacher {
    public let table: CachedTeacher
    public var name: String { table.name }
    public var parameterCount: Int { 0 }
    public var bytes: Int { 0 }
    public init(probabilities: Tensor, name: String) { table = CachedTeacher(logits: probabilities, name: name) }
    /// Returns the probabilities (argmax is the teacher's prediction, as with logits).
    public func forward(_ inputs: Tensor, indices: [Int], features: [String]) throws -> (logits: Tensor, features: [String: Tensor]) {
        try table.forward(inputs, indices: indices, features: features)
    }
}

// MARK: Teacher outputs as teachers: views, computed tables, tempered probabilities, the rows a file covers

extension TeacherOutputs {
    /// The training set seen through `views` augmented views (shift up to `shift` pixels, random
    /// horizontal flips): `[K·N, ...]`, view k of sample i at row `k·N + i`, labels repeated.
    /// Deterministic in `seed`: `cache-teacher` and `kd --teacher-outputs` regenerate the same views.
    public static func augmentedViews(_ dataset: LabeledDataset, views: Int, shift: Int, flip: Bool, seed: UInt64) throws -> LabeledDataset {
        guard views >= 1 else { throw DataError("augmented views: --views must be at least 1, got \(views)") }
        var ops: [Augmentation.Operation] = []
        if shift > 0 { ops.append(.shift(maxPixels: shift)) }
        if flip { ops.append(.horizontalFlip(probability: 0.5)) }
        let augmentation = try Augmentation(ops)
        if !ops.isEmpty && dataset.featureShape.count != 4 { throw DataError("augmented views: shift and flip need images [N, C, H, W], got \(dataset.featureShape)") }
        let n = dataset.count, rowSize = dataset.exampleSize, chunk = 1024
        let out = Tensor(uninitializedShape: [views * n] + dataset.exampleShape)
        for k in 0..<views {
            var start = 0
            while start < n {
                let count = min(chunk, n - start)
                let part = dataset.rows(start..<(start + count))
                var generator = SeededGenerator(seed: mixSeed(seed, UInt64(k), UInt64(start)))
                let augmented = ops.isEmpty ? part : try augmentation.apply(to: part, using: &generator)
                (out.data + (k * n + start) * rowSize).update(from: augmented.data, count: count * rowSize)
                start += count
            }
        }
        let labels = dataset.labels.isEmpty ? [] : Array((0..<views).map { _ in dataset.labels }.joined())
        return try LabeledDataset(features: out, labels: labels, numClasses: dataset.numClasses,
                                  classNames: dataset.classNames, featureNames: dataset.featureNames)
    }

    /// The teacher's outputs for every row of `inputs` (`[N, ...]`), computed in batches: `[N, C]`.
    public static func compute(_ teacher: Teacher, inputs: LabeledDataset, batchSize: Int = 256) throws -> Tensor {
        try compute(teacher, inputs: inputs, batchSize: batchSize, world: .oneProcess, on: .everyRank)!
    }

    /// Which ranks get a table computed across ranks.
    public enum Destination: Sendable { case everyRank, rankZero }

    /// The teacher's outputs for every row of `inputs`, `[N, C]`, computed across the ranks of
    /// `world`: each runs its `blockShare` of the batches (the batches one process runs, so every
    /// row's outputs are the same bits), then the rows are gathered in order on every rank or on
    /// rank 0 alone (nil on the others).
    public static func compute(_ teacher: Teacher, inputs: LabeledDataset, batchSize: Int, world: Distributed, on destination: Destination) throws -> Tensor? {
        let mine = world.blockShare(of: inputs.count, block: batchSize)
        var parts: [Tensor] = []
        for start in stride(from: mine.lowerBound, to: mine.upperBound, by: batchSize) {
            let rows = start..<min(start + batchSize, mine.upperBound)
            parts.append(try teacher.logits(inputs.rows(rows), indices: Array(rows)))
        }
        guard world.isDistributed else { return withNoGrad { Tensor.concat(parts, axis: 0) } }
        let local = parts.isEmpty ? nil : withNoGrad { Tensor.concat(parts, axis: 0) }
        // The column count, from the ranks that have rows (a rank may have none: fewer batches than
        // ranks): Σ width, Σ 1, Σ width² over them, equal widths when Σ width² = width² · Σ 1.
        var columns = [Double(local?.shape[1] ?? 0), local == nil ? 0 : 1, Double(local?.shape[1] ?? 0) * Double(local?.shape[1] ?? 0)]
        try world.allreduceSum(&columns)
        let width = columns[1] > 0 ? Int(columns[0] / columns[1]) : 0
        guard columns[1] > 0, columns[2] == Double(width * width) * columns[1] else {
            throw TensorError("\(teacher.name): the ranks' teacher outputs have different widths")
        }
        let bytes = local.map { Data(bytes: $0.data, count: $0.count * MemoryLayout<Float>.size) } ?? Data()
        let gathered = destination == .everyRank ? try world.allgather(bytes) : try world.gather(bytes)
        guard let gathered else { return nil }
        let table = Tensor(uninitializedShape: [inputs.count, width])
        var offset = 0
        for (r, part) in gathered.enumerated() {
            let rows = Distributed.blockShare(of: inputs.count, block: batchSize, rank: r, size: world.size).count
            guard part.count == rows * width * MemoryLayout<Float>.size else {
                throw TensorError("\(teacher.name): rank \(r) sent \(part.count) bytes of teacher outputs, expected \(rows) rows of \(width)")
            }
            part.withUnsafeBytes { raw in
                if rows > 0 { (table.data + offset).update(from: raw.bindMemory(to: Float.self).baseAddress!, count: rows * width) }
            }
            offset += rows * width
        }
        return table
    }

    /// A seed for cached views and mixup partners: `SeededGenerator.mix` on this file's own stream
    /// (fixed: files written with a recorded seed replay the same views).
    static func mixSeed(_ values: UInt64...) -> UInt64 { SeededGenerator.mix(start: 0x243F_6A88_85A3_08D3, values) }

    /// `p^(1/T)` renormalised per row: probabilities at temperature T from probabilities at
    /// temperature 1 (equal to `softmax(log p / T)`; zeros stay zero).
    public static func temperedProbabilities(_ p: Tensor, temperature: Float) -> Tensor {
        precondition(p.rank == 2, "temperedProbabilities: expected [N, C], got \(p.shape)")
        if temperature == 1 { return p }
        let n = p.shape[0], c = p.shape[1]
        let out = Tensor(uninitializedShape: p.shape)
        let src = p.data, dst = out.data
        for r in 0..<n {
            var sum: Float = 0
            for j in 0..<c {
                let v = src[r * c + j] > 0 ? Foundation.pow(src[r * c + j], 1 / temperature) : 0
                dst[r * c + j] = v; sum += v
            }
            let scale = sum > 0 ? 1 / sum : 0
            for j in 0..<c { dst[r * c + j] *= scale }
        }
        return out
    }
}

extension TeacherOutputs {
    /// Which rows of the training file the loaded training set holds, in order, and how many rows
    /// the file has: all of them, or the 80% `DataSource` keeps when it splits a `.csv` itself.
    /// (`--train-limit` is applied afterwards by `teacher(for:)`.)
    public static func trainingFileRows(_ experiment: Experiment, loadedTrain: Int, loadedTest: Int, preloaded: Bool) -> (rows: [Int], total: Int) {
        if !preloaded && experiment.testData == nil && FileKind(experiment.data) == .csv {
            let total = loadedTrain + loadedTest
            return (DataSource.csvTrainingRows(total: total, seed: experiment.options.seed), total)
        }
        return (Array(0..<loadedTrain), loadedTrain)
    }

    /// Reads `experiment.teacherOutputs`, checks it against the training file (rows, classes,
    /// finiteness, probabilities), and returns the cached teacher for the training rows and the
    /// training set it labels (`K·N` rows for `[K, N, C]` outputs: the regenerated views).
    /// `keeping`: the rows of `train` to train on, the rest held out for validation.
    public static func teacher(for experiment: Experiment, train: LabeledDataset, fileRows: (rows: [Int], total: Int),
                               objective: DistillationObjective, keeping: [Int]? = nil) throws -> (teacher: Teacher, train: LabeledDataset) {
        guard let path = experiment.teacherOutputs else { throw TensorError("no teacher outputs given") }
        let kind = experiment.teacherOutputsKind
        if kind == .probs, let bad = objective.terms.first(where: { ![.kd, .ce].contains($0.method) }) {
            throw TensorError("\(path): probabilities distill with kd (softTargetLoss); '\(bad.method.rawValue)' needs teacher logits (--teacher-outputs-kind logits)")
        }
        if !objective.teacherFeatureNames.isEmpty {
            throw TensorError("\(path): cached teacher outputs hold logits only; feature methods need the teacher model")
        }
        let file = try read(path, array: experiment.teacherOutputsArray)
        // Every row of the file is checked, those of held-out rows too: a bad file is refused whole.
        let total = file.rows == train.count ? train.count : fileRows.total
        try check(file, kind: kind, expectedRows: total, expectedClasses: train.isLabeled || train.numClasses > 0 ? train.numClasses : nil)
        var rows = file.rows == train.count ? Array(0..<train.count) : fileRows.rows
        if rows.count > train.count { rows = Array(rows.prefix(train.count)) }  // --train-limit
        var values = file.values
        var transfer = train
        if file.views > 1 {
            guard file.rows == train.count else {
                throw TensorError("\(path): augmented views are replayed for the whole training file; drop --train-limit and give --test-data")
            }
            guard experiment.options.shift == 0 && !experiment.options.flip else {
                throw TensorError("\(path): the outputs hold \(file.views) augmented views; the views are replayed, so drop --shift/--flip")
            }
            let augmentation = try file.viewAugmentation()
            transfer = try augmentedViews(train, views: file.views, shift: augmentation.shift, flip: augmentation.flip, seed: augmentation.seed)
            rows = (0..<file.views).flatMap { k in rows.map { k * file.rows + $0 } }
            values = values.reshaped([file.views * file.rows, file.classes])
        }
        if let keeping {
            guard file.views == 1 else {
                throw TensorError("\(path): \(Experiment.setting("validation")) cannot hold rows out of \(file.views) cached augmented views (each image's views would stay in training); cache one view, or drop validation")
            }
            rows = keeping.map { rows[$0] }
            transfer = try transfer.subset(keeping)
        }
        if rows != Array(0..<values.shape[0]) { values = withNoGrad { values.indexSelect(axis: 0, indices: rows) } }
        let name = "cached \(kind.rawValue) (\(URL(fileURLWithPath: path).lastPathComponent))"
        if kind == .probs {
            objective.teacherGivesProbabilities = true
            return (CachedProbabilityTeacher(probabilities: values, name: name), transfer)
        }
        return (CachedTeacher(logits: values, name: name), transfer)
    }
}
