import DistillData
import DistillTensor
import Foundation
import Testing

/// `n` images [1, 4, 4] whose pixels are `100 · index + position`, labels `index % 3`.
func imageDataset(_ n: Int = 10, labeled: Bool = true) throws -> LabeledDataset {
    let features = Tensor(shape: [n, 1, 4, 4], scalars: (0..<n * 16).map { Float($0 / 16 * 100 + $0 % 16) })
    return try LabeledDataset(features: features, labels: labeled ? (0..<n).map { $0 % 3 } : [], numClasses: 3)
}

/// Everything observable about a batch, for comparisons.
func summary(_ b: Batch) -> [String] {
    ["\(b.position)", "\(b.indices)", "\(b.labels)", "\(b.inputs.shape)", "\(b.inputs.scalars)"]
}

@Suite struct BatchLoaderTests {
    @Test func batchesCoverTheEpoch() throws {
        let data = try imageDataset()
        let loader = try BatchLoader(dataset: data, batchSize: 3, seed: 1)
        #expect(loader.batchesPerEpoch == 4)
        let batches = Array(try loader.batches(epoch: 0))
        #expect(batches.map(\.count) == [3, 3, 3, 1])
        #expect(batches.flatMap(\.indices).sorted() == Array(0..<10))
        #expect(batches.flatMap(\.indices) == loader.order(epoch: 0))
        for b in batches {
            #expect(b.labels == b.indices.map { $0 % 3 })
            for (row, i) in b.indices.enumerated() {
                #expect(Array(b.inputs.scalars[row * 16 ..< row * 16 + 16]) == Array(data.features.scalars[i * 16 ..< i * 16 + 16]))
            }
        }
        let dropping = try BatchLoader(dataset: data, batchSize: 3, seed: 1, dropLast: true)
        #expect(dropping.batchesPerEpoch == 3)
        #expect(Array(try dropping.batches(epoch: 0)).map(\.count) == [3, 3, 3])
        let ordered = try BatchLoader(dataset: data, batchSize: 4, shuffle: false)
        #expect(Array(try ordered.batches(epoch: 5)).flatMap(\.indices) == Array(0..<10))
    }

    @Test func sameSeedSameBatches() throws {
        let data = try imageDataset()
        let a = try BatchLoader(dataset: data, batchSize: 4, seed: 7)
        let b = try BatchLoader(dataset: data, batchSize: 4, seed: 7, prefetch: false)
        #expect(Array(try a.batches(epochs: 0..<3)).map(summary) == Array(try b.batches(epochs: 0..<3)).map(summary))
        let other = try BatchLoader(dataset: data, batchSize: 4, seed: 8)
        #expect(other.order(epoch: 0) != a.order(epoch: 0))
        #expect(a.order(epoch: 0) != a.order(epoch: 1))
        #expect(a.order(epoch: 1).sorted() == Array(0..<10))
    }

    /// Batches large enough for the cores to share the copy (built on the calling thread) hold
    /// the same rows as those built in the background, for float and byte storage alike.
    @Test func rowsCopiedByTheWorkersMatchTheBackgroundBuilder() throws {
        let rows = 300, width = 784
        let bytes = (0..<rows * width).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        let labels = (0..<rows).map { $0 % 10 }
        let stored = try LabeledDataset(unitBytes: bytes, shape: [rows, width], labels: labels, numClasses: 10)
        let floats = try LabeledDataset(features: stored.rows(Array(0..<rows)), labels: labels, numClasses: 10)
        for data in [stored, floats] {
            let background = try BatchLoader(dataset: data, batchSize: 128, seed: 3)
            let caller = try BatchLoader(dataset: data, batchSize: 128, seed: 3, prefetch: false)
            let a = Array(try background.batches(epochs: 0..<2)), b = Array(try caller.batches(epochs: 0..<2))
            #expect(a.map(summary) == b.map(summary))
            #expect(b[0].inputs.scalars == data.rows(b[0].indices).scalars)
        }
    }

    @Test func resumingMatchesAFullRun() throws {
        let data = try imageDataset(11)
        let augmentation = try Augmentation([.shift(maxPixels: 1), .horizontalFlip(probability: 0.5)])
        let loader = try BatchLoader(dataset: data, batchSize: 3, seed: 99, augmentation: augmentation)
        let full = Array(try loader.batches(epochs: 0..<3)).map(summary)
        #expect(full.count == 12)
        #expect(try loader.batches(epochs: 0..<3).count == 12)
        for (k, start) in [BatchPosition(epoch: 1, batch: 2), BatchPosition(epoch: 0, batch: 0),
                           BatchPosition(epoch: 2, batch: 3), BatchPosition(epoch: 1, batch: 4)].enumerated() {
            let resumed = Array(try loader.batches(epochs: 0..<3, resumingAt: start)).map(summary)
            let skip = start.epoch * 4 + start.batch
            #expect(resumed == Array(full[skip...]), "case \(k): resume at \(start)")
        }
        // A fresh loader (a restarted process) resumes the same way; so does a single batch.
        let restarted = try BatchLoader(dataset: data, batchSize: 3, seed: 99, augmentation: augmentation)
        #expect(Array(try restarted.batches(epoch: 2, startingAt: 1)).map(summary) == Array(full[9...]))
        #expect(summary(try restarted.batch(at: BatchPosition(epoch: 1, batch: 1))) == full[5])
        expectDataError("no batch at epoch 0, batch 4") { _ = try loader.batch(at: BatchPosition(epoch: 0, batch: 4)) }
        expectDataError("cannot resume") { _ = try loader.batches(epochs: 1..<3, resumingAt: BatchPosition(epoch: 0, batch: 0)) }
    }

    @Test func unlabelledAndEmpty() throws {
        let loader = try BatchLoader(dataset: imageDataset(5, labeled: false), batchSize: 2)
        let batches = Array(try loader.batches(epoch: 0))
        #expect(batches.count == 3 && batches.allSatisfy { $0.labels.isEmpty })
        let none = try BatchLoader(dataset: imageDataset(0), batchSize: 2)
        #expect(Array(try none.batches(epochs: 0..<5)).isEmpty)
        expectDataError("batchSize 0") { _ = try BatchLoader(dataset: imageDataset(), batchSize: 0) }
    }

    @Test func augmentationIsReproducible() throws {
        let data = try imageDataset(8)
        let augmentation = try Augmentation([.crop(padding: 2), .horizontalFlip(probability: 0.5)])
        let loader = try BatchLoader(dataset: data, batchSize: 8, shuffle: false, seed: 3, augmentation: augmentation)
        let e0 = try loader.batch(at: BatchPosition(epoch: 0, batch: 0))
        let again = try loader.batch(at: BatchPosition(epoch: 0, batch: 0))
        let e1 = try loader.batch(at: BatchPosition(epoch: 1, batch: 0))
        #expect(e0.inputs.shape == [8, 1, 4, 4])
        #expect(e0.inputs.scalars == again.inputs.scalars)
        #expect(e0.inputs.scalars != e1.inputs.scalars)
        #expect(e0.inputs.scalars != data.features.scalars)
        // Each augmented image is a zero-filled shift (|d| ≤ 2), possibly mirrored, of its source.
        for i in 0..<8 {
            let out = Array(e0.inputs.scalars[i * 16 ..< i * 16 + 16])
            let src = Array(data.features.scalars[i * 16 ..< i * 16 + 16])
            var matched = false
            for dy in -2...2 { for dx in -2...2 { for flip in [false, true] {
                var candidate = [Float](repeating: 0, count: 16)
                for y in 0..<4 { for x in 0..<4 {
                    let sy = y - dy, sx = x - dx
                    if sy >= 0 && sy < 4 && sx >= 0 && sx < 4 { candidate[y * 4 + x] = src[sy * 4 + sx] }
                } }
                if flip { candidate = (0..<16).map { candidate[$0 / 4 * 4 + 3 - $0 % 4] } }
                if candidate == out { matched = true }
            } } }
            #expect(matched, "image \(i)")
        }
    }

    @Test func augmentationOperations() throws {
        let image = Tensor(shape: [1, 2, 2, 3], scalars: (1...12).map(Float.init))
        var g = SeededGenerator(seed: 0)
        #expect(try Augmentation([.horizontalFlip(probability: 1)]).apply(to: image, using: &g).scalars
                == [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10])
        #expect(try Augmentation([.horizontalFlip(probability: 0)]).apply(to: image, using: &g).scalars == image.scalars)
        #expect(try Augmentation([.shift(maxPixels: 0), .crop(padding: 0)]).apply(to: image, using: &g).scalars == image.scalars)
        // Shifts keep the shape and only ever bring in zeros.
        let shifted = try Augmentation([.shift(maxPixels: 5)]).apply(to: image, using: &g)
        #expect(shifted.shape == image.shape)
        #expect(shifted.scalars.allSatisfy { $0 == 0 || image.scalars.contains($0) })
        #expect(image.scalars == (1...12).map(Float.init))  // the input is untouched
        expectDataError("shift(maxPixels: -1) must be in 0...65536") { _ = try Augmentation([.shift(maxPixels: -1)]) }
        expectDataError("outside [0, 1]") { _ = try Augmentation([.horizontalFlip(probability: 2)]) }
        let table = try LabeledDataset(features: Tensor.zeros([4, 3]), labels: [0, 1, 0, 1], numClasses: 2)
        expectDataError("[N, C, H, W]", "[4, 3]") {
            _ = try BatchLoader(dataset: table, batchSize: 2, augmentation: Augmentation([.horizontalFlip(probability: 0.5)]))
        }
    }
}
