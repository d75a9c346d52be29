import DistillData
import DistillNN
import DistillTensor
import DistillTraining
import Foundation
import Testing

/// A temporary folder for one test.
func scratchFolder(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Three Gaussian blobs in 4 features: `rows` lines of `x0,x1,x2,x3,label`, seeded.
func blobCSV(rows: Int, seed: UInt64, offset: Float = 5) -> String {
    var g = SeededGenerator(seed: seed)
    var text = "x0,x1,x2,x3,label\n"
    for _ in 0..<rows {
        let c = g.nextInt(below: 3)
        let x = (0..<4).map { j in Float(g.nextGaussian()) * 1.5 + (j == c ? 3 : 0) + offset }
        text += x.map { "\($0)" }.joined(separator: ",") + ",\(c)\n"
    }
    return text
}

func write(_ text: String, _ url: URL) throws { try Data(text.utf8).write(to: url) }

/// A quiet classification run on blob CSVs written into `folder` (train.csv and test.csv, from
/// `seeds`): 10 epochs of batch 16, its run folder `folder/output`.
func blobExperiment(in folder: URL, rows: (train: Int, test: Int), seeds: (UInt64, UInt64), offset: Float = 5,
                    student: String, output: String) throws -> Experiment {
    let train = folder.appendingPathComponent("train.csv"), test = folder.appendingPathComponent("test.csv")
    try write(blobCSV(rows: rows.train, seed: seeds.0, offset: offset), train)
    try write(blobCSV(rows: rows.test, seed: seeds.1, offset: offset), test)
    var e = Experiment()
    e.data = train.path; e.testData = test.path; e.labelColumn = "label"
    e.student = student; e.options.epochs = 10; e.options.batchSize = 16; e.options.quiet = true
    e.output = folder.appendingPathComponent(output).path
    return e
}

@Suite("Cached teacher outputs: readers, checks, distillation")
struct TeacherOutputsTests {
    let logits = Tensor(shape: [3, 2], scalars: [1, -1, 0.5, 2, -3, 0])

    @Test func readersRoundTripEveryFormat() throws {
        let folder = scratchFolder("to-formats")
        for ext in ["npy", "npz", "safetensors", "csv"] {
            let path = folder.appendingPathComponent("t.\(ext)").path
            try TeacherOutputs.write(logits, to: path, record: ["seed": "3"])
            let file = try TeacherOutputs.read(path)
            #expect(file.values.shape == [3, 2], "\(ext)")
            #expect(file.values.scalars == logits.scalars, "\(ext)")
            #expect(file.record["seed"] == "3", "\(ext): the sidecar record is read back")
        }
    }

    @Test func npzAndSafetensorsPickANamedArray() throws {
        let folder = scratchFolder("to-named")
        let npz = folder.appendingPathComponent("two.npz")
        try NPZ.write(["logits": logits, "other": Tensor.zeros([3, 2])], to: npz)
        #expect(throws: DataError.self) { try TeacherOutputs.read(npz.path) }
        #expect(try TeacherOutputs.read(npz.path, array: "logits").values.scalars == logits.scalars)
        let st = folder.appendingPathComponent("two.safetensors")
        try Safetensors.save(["a": logits, "b": Tensor.ones([3, 2])], to: st)
        #expect(try TeacherOutputs.read(st.path, array: "b").values.scalars == [Float](repeating: 1, count: 6))
        do { _ = try TeacherOutputs.read(st.path); Issue.record("two tensors need a name") } catch let e as DataError {
            #expect(e.message.contains("--teacher-outputs-array"))
        }
        do { _ = try TeacherOutputs.read(npz.path, array: "nope"); Issue.record("unknown name") } catch let e as DataError {
            #expect(e.message.contains("no array 'nope'"))
        }
    }

    @Test func npyOfOtherDtypesAndOneDimensionalReads() throws {
        let folder = scratchFolder("to-1d")
        let url = folder.appendingPathComponent("y.npy")
        try NPY.write(Tensor([1, 2, 3]), to: url)
        #expect(try TeacherOutputs.read(url.path).values.shape == [3, 1])
    }

    @Test func csvErrorsNameLineAndColumn() throws {
        let folder = scratchFolder("to-csv")
        let missing = folder.appendingPathComponent("missing.csv")
        try write("a,b\n1,2\n3,\n", missing)
        do { _ = try TeacherOutputs.read(missing.path); Issue.record("missing cell") } catch let e as DataError {
            #expect(e.message.contains("missing.csv") && e.message.contains("line 3") && e.message.contains("column 'b'") && e.message.contains("missing"))
        }
        let text = folder.appendingPathComponent("text.csv")
        try write("a,b\n1,2\nx,4\n", text)
        do { _ = try TeacherOutputs.read(text.path); Issue.record("non-numeric cell") } catch let e as DataError {
            #expect(e.message.contains("line 3") && e.message.contains("column 'a'") && e.message.contains("'x' is not a number"))
        }
        let short = folder.appendingPathComponent("short.csv")
        try write("a,b\n1,2\n3\n", short)
        do { _ = try TeacherOutputs.read(short.path); Issue.record("short row") } catch let e as DataError {
            #expect(e.message.contains("line 3") && e.message.contains("1 fields"))
        }
        let nan = folder.appendingPathComponent("nan.csv")
        try write("a,b\n1,2\n\n3,nan\n", nan)
        let file = try TeacherOutputs.read(nan.path)
        do { try TeacherOutputs.check(file, kind: .logits, expectedRows: 2, expectedClasses: 2); Issue.record("NaN") } catch let e as DataError {
            #expect(e.message.contains("row 1 (line 4), column 'b'") && e.message.contains("finite"))
        }
    }

    @Test func checksRowsFinitenessAndProbabilities() throws {
        func file(_ values: [Float], _ shape: [Int]) -> TeacherOutputs.File {
            TeacherOutputs.File(values: Tensor(shape: shape, scalars: values), path: "t.npy", record: [:])
        }
        let good = file([0.25, 0.75, 1, 0], [2, 2])
        try TeacherOutputs.check(good, kind: .probs, expectedRows: 2, expectedClasses: 2)
        func message(_ f: TeacherOutputs.File, _ kind: TeacherOutputs.Kind, rows: Int = 2, classes: Int? = 2) -> String {
            do { try TeacherOutputs.check(f, kind: kind, expectedRows: rows, expectedClasses: classes); return "" } catch { return "\(error)" }
        }
        #expect(message(good, .probs, rows: 3).contains("2 rows of teacher outputs, the training data has 3 rows"))
        #expect(message(good, .probs, classes: 3).contains("2 columns"))
        #expect(message(file([0, 1, .nan, 0], [2, 2]), .logits).contains("t.npy: row 1, column 0: the value is nan"))
        #expect(message(file([0, 1, .infinity, 0], [2, 2]), .logits).contains("row 1"))
        #expect(message(file([1.2, -0.2, 0.5, 0.5], [2, 2]), .probs).contains("row 0, column 1: negative probability"))
        #expect(message(file([0.5, 0.5, 0.6, 0.6], [2, 2]), .probs).contains("row 1: probabilities sum to 1.2"))
        #expect(message(file([0.5, 0.5, 0.5, 0.5005], [2, 2]), .probs) == "", "within 1e-3")
        #expect(message(file([3, -2, 0.6, 0.6], [2, 2]), .logits) == "", "logits need not be distributions")
        #expect(message(file([0.5, 0.5, 1, 0, 0.5, 0.5, 0.9, 0], [2, 2, 2]), .probs).contains("view 1, row 1"))
    }

    @Test func temperedProbabilitiesMatchSoftmaxAtTemperature() throws {
        let z = Tensor(shape: [2, 3], scalars: [1, 2, 3, -1, 0, 4])
        let p = z.softmax(axis: 1)
        let tempered = TeacherOutputs.temperedProbabilities(p, temperature: 4)
        let expected = z.scaled(0.25).softmax(axis: 1)
        for (a, b) in zip(tempered.scalars, expected.scalars) { #expect(abs(a - b) < 1e-6) }
        // softTargetLoss on tempered probabilities equals kdLoss on the logits.
        let s = Tensor(shape: [2, 3], scalars: [0.3, -0.2, 0.1, 2, 1, 0])
        let a = softTargetLoss(student: s, targetProbabilities: tempered, temperature: 4).item()
        let b = kdLoss(student: s, teacher: z, temperature: 4).item()
        #expect(abs(a - b) < 1e-5)
    }

    @Test func csvTrainingRowsMatchTheSplit() throws {
        let d = try LabeledDataset(features: Tensor(shape: [50, 1], scalars: (0..<50).map(Float.init)), labels: [], numClasses: 0)
        let split = try d.split(validationFraction: 0.2, seed: 7)
        #expect(DataSource.csvTrainingRows(total: 50, seed: 7).map(Float.init) == split.train.features.scalars)
    }

    @Test func augmentedViewsAreDeterministic() throws {
        var g = SeededGenerator(seed: 1)
        let images = try LabeledDataset(features: Tensor.randomUniform([5, 1, 6, 6], using: &g), labels: [0, 1, 0, 1, 1], numClasses: 2)
        let a = try TeacherOutputs.augmentedViews(images, views: 3, shift: 1, flip: true, seed: 9)
        let b = try TeacherOutputs.augmentedViews(images, views: 3, shift: 1, flip: true, seed: 9)
        #expect(a.count == 15 && a.labels == images.labels + images.labels + images.labels)
        #expect(a.features.scalars == b.features.scalars)
        #expect(a.features.scalars != (try TeacherOutputs.augmentedViews(images, views: 3, shift: 1, flip: true, seed: 10)).features.scalars)
    }

    @Test func labelLimitAndMixupBatches() throws {
        let inputs = Tensor(shape: [4, 2], scalars: [0, 0, 1, 1, 2, 2, 3, 3])
        let (x, labels, indices) = TransferSet.prepare(inputs: inputs, labels: [1, 0, 1, 0], indices: [7, 2, 9, 4], labelLimit: 5, mixup: nil, seed: 0, step: 0)
        #expect(x.scalars == inputs.scalars && labels == [-1, 0, -1, 0] && indices == [7, 2, 9, 4])
        let (mx, ml, mi) = TransferSet.prepare(inputs: inputs, labels: [1, 0, 1, 0], indices: [7, 2, 9, 4], labelLimit: nil, mixup: 0.4, seed: 0, step: 3)
        #expect(mx.shape == [8, 2] && ml == [1, 0, 1, 0, -1, -1, -1, -1] && mi == [7, 2, 9, 4, -1, -1, -1, -1])
        for r in 4..<8 {  // each mixed row is a convex combination: both coordinates equal, within [0, 3]
            #expect(mx.data[2 * r] == mx.data[2 * r + 1] && mx.data[2 * r] >= 0 && mx.data[2 * r] <= 3)
        }
        // Masked cross-entropy: rows labelled -1 contribute nothing.
        let objective = try DistillationObjective(terms: [LossTerm(.ce)])
        let z = Tensor(shape: [4, 2], scalars: [2, 0, 0, 2, 5, -5, 1, 0])
        let masked = try objective.loss(studentLogits: z, studentFeatures: [:], teacherLogits: [], teacherFeatures: [:], labels: [-1, 1, -1, 0], epoch: 0).total.item()
        let direct = crossEntropy(logits: Tensor(shape: [2, 2], scalars: [0, 2, 1, 0]), labels: [1, 0]).item()
        #expect(abs(masked - direct) < 1e-6)
        let none = try objective.loss(studentLogits: z, studentFeatures: [:], teacherLogits: [], teacherFeatures: [:], labels: [-1, -1, -1, -1], epoch: 0).total.item()
        #expect(none == 0)
    }

    /// A teacher trained on a CSV, its logits written by numpy-free code to .npy, and the same
    /// distillation run with the teacher in the loop and from the file: the same accuracy.
    @Test func distillingFromAFileMatchesTheTeacherInTheLoop() throws {
        let folder = scratchFolder("to-e2e")
        let t = try blobExperiment(in: folder, rows: (600, 300), seeds: (1, 2), student: "mlp:4-32-3", output: "teacher")
        let train = URL(fileURLWithPath: t.data), test = URL(fileURLWithPath: t.testData!)
        let teacherResult = try ExperimentRunner.run(t)
        #expect(teacherResult.training.test.accuracy > 0.8)
        let teacherPath = folder.appendingPathComponent("teacher/student.safetensors").path
        // The saved teacher standardises raw rows itself.
        let (model, info) = try SavedModel.load(URL(fileURLWithPath: teacherPath))
        let stats = try #require(try Tabular.statistics(of: info, source: teacherPath))
        let raw = try CSVTable.read(train, labelColumn: "label")
        let teacher = StandardizingTeacher(ModuleTeacher(model, name: "t"), own: stats, input: nil)
        let logits = try TeacherOutputs.compute(teacher, inputs: raw)
        let npy = folder.appendingPathComponent("logits.npy")
        try NPY.write(logits, to: npy)

        func distill(_ configure: (inout Experiment) -> Void) throws -> Double {
            var e = Experiment()
            e.data = train.path; e.testData = test.path; e.labelColumn = "label"
            e.student = "mlp:4-8-3"; e.options.epochs = 10; e.options.batchSize = 16; e.options.quiet = true
            e.losses = [LossTerm(.kd, weight: 0.9), LossTerm(.ce, weight: 0.1)]
            configure(&e)
            return try ExperimentRunner.run(e).training.test.accuracy
        }
        let inLoop = try distill { $0.teachers = [teacherPath] }
        let fromFile = try distill { $0.teacherOutputs = npy.path }
        #expect(abs(inLoop - fromFile) < 0.01, "in the loop \(inLoop), from the file \(fromFile)")
        // Probabilities go through softTargetLoss and train as well.
        let probsPath = folder.appendingPathComponent("probs.csv").path
        try TeacherOutputs.write(logits.softmax(axis: 1), to: probsPath, record: [:])
        let fromProbs = try distill { $0.teacherOutputs = probsPath; $0.teacherOutputsKind = .probs }
        #expect(abs(inLoop - fromProbs) < 0.03, "in the loop \(inLoop), from probabilities \(fromProbs)")
    }

    @Test func badOutputsTrainNothing() throws {
        let folder = scratchFolder("to-bad")
        let train = folder.appendingPathComponent("train.csv")
        try write(blobCSV(rows: 100, seed: 3), train)
        var values = [Float](repeating: 0.1, count: 100 * 3)
        values[3 * 42 + 1] = .nan
        let npy = folder.appendingPathComponent("bad.npy")
        try NPY.write(Tensor(shape: [100, 3], scalars: values), to: npy)
        var e = Experiment()
        e.data = train.path; e.labelColumn = "label"; e.student = "mlp:4-8-3"; e.options.quiet = true
        e.losses = [LossTerm(.kd)]
        e.teacherOutputs = npy.path
        e.output = folder.appendingPathComponent("run").path
        do { _ = try ExperimentRunner.run(e); Issue.record("NaN accepted") } catch {
            #expect("\(error)".contains("bad.npy: row 42, column 1"))
        }
        #expect(!FileManager.default.fileExists(atPath: e.output!), "nothing was trained or written")
        // Wrong row count; probabilities that are logits.
        try NPY.write(Tensor.zeros([99, 3]), to: npy)
        #expect(throws: (any Error).self) { try ExperimentRunner.run(e) }
        let good = folder.appendingPathComponent("logits.npy")
        var g = SeededGenerator(seed: 5)
        try NPY.write(Tensor.randomNormal([100, 3], using: &g), to: good)
        e.teacherOutputs = good.path; e.teacherOutputsKind = .probs
        do { _ = try ExperimentRunner.run(e); Issue.record("logits accepted as probabilities") } catch {
            #expect("\(error)".contains("logits.npy: row 0"))
        }
    }
}

@Suite("Cached outputs of augmented views")
struct TeacherOutputViewsTests {
    @Test func viewsAreReplayedFromTheRecord() throws {
        var g = SeededGenerator(seed: 2)
        let train = try LabeledDataset(features: Tensor.randomUniform([24, 1, 6, 6], using: &g), labels: (0..<24).map { $0 % 2 }, numClasses: 2)
        let test = train.prefix(8)
        let teacher = ModuleTeacher(try ModelZoo.build("mlp:36-8-2", inputShape: [1, 6, 6], numClasses: 2, seed: 1), name: "t")
        let views = try TeacherOutputs.augmentedViews(train, views: 3, shift: 1, flip: true, seed: 4)
        let logits = try TeacherOutputs.compute(teacher, inputs: views).reshaped([3, 24, 2])
        let folder = scratchFolder("views")
        let path = folder.appendingPathComponent("views.safetensors").path
        try TeacherOutputs.write(logits, to: path, record: ["views": "3", "shift": "1", "flip": "true", "seed": "4"])
        try FileManager.default.removeItem(atPath: path + ".json")  // the safetensors metadata is enough
        var e = Experiment()
        e.student = "mlp:36-4-2"; e.options.epochs = 1; e.options.quiet = true
        e.losses = [LossTerm(.kd)]
        e.teacherOutputs = path
        let objective = try DistillationObjective(terms: e.losses)
        let loaded = try TeacherOutputs.teacher(for: e, train: train, fileRows: (Array(0..<24), 24), objective: objective)
        #expect(loaded.train.count == 72)
        #expect(loaded.train.features.scalars == views.features.scalars)
        // The cached row of view k, sample i is the teacher on that very view.
        let row = try loaded.teacher.logits(loaded.train.features.reshaped([72, 36]).indexSelect(axis: 0, indices: [50]).reshaped([1, 1, 6, 6]), indices: [50])
        let direct = try teacher.logits(views.features.indexSelect(axis: 0, indices: [50]))
        #expect(row.scalars == direct.scalars)
        _ = try ExperimentRunner.run(e, preloaded: (train, test))
        // Without the record the views cannot be replayed.
        let npy = folder.appendingPathComponent("views.npy")
        try NPY.write(logits, to: npy)
        e.teacherOutputs = npy.path
        do { _ = try ExperimentRunner.run(e, preloaded: (train, test)); Issue.record("views without a record") } catch {
            #expect("\(error)".contains("no augmentation record"))
        }
    }
}
