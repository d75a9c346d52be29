import DistillTraining
import Foundation
import Testing

/// Epochs and batch size that nobody gave are chosen from the training set's size; given ones
/// (command line, config file, `config.json` of a run being resumed) are never changed.
@Suite("Defaults from the data")
struct DefaultsTests {
    static func chosen(rows: Int, _ change: (inout TrainingOptions) -> Void = { _ in }) -> (batch: Int, epochs: Int, note: String?) {
        var options = Experiment().options
        change(&options)
        let note = options.chooseSizes(trainingRows: rows)
        return (options.batchSize, options.epochs, note)
    }

    @Test("small tables get small batches and enough epochs; Fashion-MNIST keeps 10 epochs of 128",
          arguments: [(1_347, 32, 59), (60_000, 128, 10), (100, 16, 200), (5_000, 128, 63), (500, 16, 79)])
    func sizesFromRows(rows: Int, batch: Int, epochs: Int) {
        let c = Self.chosen(rows: rows)
        #expect(c.batch == batch && c.epochs == epochs)
        #expect(c.note?.contains("batch size \(batch), \(epochs) epochs for \(rows) training rows") == true)
    }

    @Test("a given epoch count or batch size is kept, and only the other one is chosen")
    func givenSizesAreKept() {
        let epochsGiven = Self.chosen(rows: 1_347) { $0.epochs = 3 }
        #expect(epochsGiven.epochs == 3 && epochsGiven.batch == 32)
        // The note names only the rule that was applied.
        #expect(epochsGiven.note == "batch size 32 for 1347 training rows (about 32 batches an epoch, 16 to 128 rows each); --batch-size chooses it")
        let batchGiven = Self.chosen(rows: 1_347) { $0.batchSize = 64 }
        #expect(batchGiven.batch == 64 && batchGiven.epochs == 2_500 / 22 + 1)
        #expect(batchGiven.note?.hasSuffix("(about 2500 optimizer steps, at least 10 epochs); --epochs chooses it") == true)
        let bare = TrainingOptions()  // a library user's options: fixed 10 epochs of 128
        var copy = bare
        #expect(copy.chooseSizes(trainingRows: 10) == nil && copy.epochs == 10 && copy.batchSize == 128)
    }

    @Test("config files: absent keys are chosen from the data, present ones kept; config.json round-trips")
    func configFiles() throws {
        let absent = try Experiment(["data": "fashion-mnist"])
        #expect(absent.options.epochsFromData && absent.options.batchSizeFromData)
        let present = try Experiment(["data": "fashion-mnist", "epochs": 4, "batch_size": 8])
        #expect(!present.options.epochsFromData && !present.options.batchSizeFromData)
        var resolved = absent
        _ = resolved.options.chooseSizes(trainingRows: 1_347)
        let data = try JSONSerialization.data(withJSONObject: resolved.json)
        let reread = try Experiment(try #require(JSONSerialization.jsonObject(with: data) as? [String: Any]))
        #expect(!reread.options.epochsFromData && reread.options.epochs == 59 && reread.options.batchSize == 32)
    }

    @Test("warm-up epochs beyond the default 10 are fine when the chosen epochs cover them")
    func warmupCheckedAgainstChosenEpochs() throws {
        var e = try Experiment(["data": "fashion-mnist", "warmup_epochs": 20])
        try e.validate()
        _ = e.options.chooseSizes(trainingRows: 1_347)
        try e.validate()
        _ = e  // 59 epochs cover 20 of warm-up
    }
}
