import DistillTensor
import Foundation

/// Where a run is in its data: an epoch and a batch index within it (both from 0).
public struct BatchPosition: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    /// Epoch, from 0.
    public var epoch: Int
    /// Batch within the epoch, from 0.
    public var batch: Int
    public init(epoch: Int, batch: Int) { self.epoch = epoch; self.batch = batch }
    public static func < (a: BatchPosition, b: BatchPosition) -> Bool { (a.epoch, a.batch) < (b.epoch, b.batch) }
    public var description: String { "epoch \(epoch), batch \(batch)" }
}

/// One mini-batch.
///
/// `inputs` is the single tensor of this step — augmented, when the loader augments. Feed the
/// same tensor to the teacher and the student: distillation compares their outputs on identical
/// inputs, so there is deliberately no separate "teacher view" of a batch.
public struct Batch: Sendable {
    /// `[B, ...]`, the examples of this batch (augmented if the loader augments).
    public let inputs: Tensor
    /// The examples' class labels (empty when the dataset is unlabelled).
    public let labels: [Int]
    /// The examples' rows in the dataset.
    public let indices: [Int]
    /// Which batch this is.
    public let position: BatchPosition
    /// Number of examples.
    public var count: Int { indices.count }
}

/// Cuts a dataset into mini-batches: a seeded shuffle per epoch, optional augmentation, and the
/// next batch built on a background thread while the caller trains on the current one.
///
/// Everything a batch holds is a pure function of `(seed, epoch, batch index)`: the epoch's order
/// comes from a generator seeded with (seed, epoch), augmentation from one seeded with (seed, epoch,
/// batch). The same loader settings therefore give the same batches on every run and machine,
/// whatever the thread timing, and a run resumed at a `BatchPosition` sees exactly the batches an
/// uninterrupted run would have seen from there.
///
/// ```swift
/// let loader = try BatchLoader(dataset: train, batchSize: 128, seed: 42)
/// for batch in try loader.batches(epochs: 0..<10) { ... }   // or resumingAt: saved position
/// ```
public final class BatchLoader: Sendable {
    /// The examples batches are drawn from.
    public let dataset: LabeledDataset
    /// Examples per batch (the last batch of an epoch may be smaller unless `dropLast`).
    public let batchSize: Int
    /// Whether each epoch visits the examples in a fresh seeded order (else dataset order).
    public let shuffle: Bool
    /// Seeds the per-epoch order and the augmentation.
    public let seed: UInt64
    /// Whether the last, smaller batch of an epoch is skipped.
    public let dropLast: Bool
    /// Applied to each batch as it is built; nil for none.
    public let augmentation: Augmentation?
    /// Whether the next batch is built in the background. Without it, each batch is built on
    /// the calling thread when asked for, its rows copied by all of `Parallel`'s workers.
    public let prefetch: Bool

    /// Throws when `batchSize < 1`, or when `augmentation` is given for features that are not
    /// `[N, C, H, W]` images.
    public init(dataset: LabeledDataset, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0,
                dropLast: Bool = false, augmentation: Augmentation? = nil, prefetch: Bool = true) throws {
        guard batchSize >= 1 else { throw DataError("BatchLoader: batchSize \(batchSize) must be at least 1") }
        if let augmentation, !augmentation.operations.isEmpty { try augmentation.validate(imageShape: dataset.featureShape) }
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        self.augmentation = augmentation
        self.prefetch = prefetch
    }

    /// Batches in one epoch.
    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// The order in which epoch `epoch` visits the dataset's rows.
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return Array(0..<dataset.count) }
        var generator = SeededGenerator(seed: SeededGenerator.mix(start: Self.seedStream, [seed, 0x5348_5546, UInt64(bitPattern: Int64(epoch))]))
        return generator.permutation(dataset.count)
    }

    /// The batch at `position`, built on the calling thread.
    public func batch(at position: BatchPosition) throws -> Batch {
        try check(position)
        return makeBatch(position, order: order(epoch: position.epoch))
    }

    /// The batches of one epoch, from batch `start` on.
    public func batches(epoch: Int, startingAt start: Int = 0) throws -> Batches {
        try batches(epochs: epoch ..< epoch + 1, resumingAt: BatchPosition(epoch: epoch, batch: start))
    }

    /// The batches of `epochs`, in order; with `resumingAt`, from that position on (a position at
    /// the end of an epoch continues with the next one).
    public func batches(epochs: Range<Int>, resumingAt position: BatchPosition? = nil) throws -> Batches {
        let start = position ?? BatchPosition(epoch: epochs.lowerBound, batch: 0)
        guard epochs.lowerBound >= 0 else { throw DataError("BatchLoader: epochs \(epochs) must not be negative") }
        guard start.epoch >= epochs.lowerBound, start.batch >= 0, start.batch <= batchesPerEpoch else {
            throw DataError("BatchLoader: cannot resume at \(start): outside epochs \(epochs) with \(batchesPerEpoch) batches each")
        }
        return Batches(loader: self, start: start, endEpoch: epochs.upperBound)
    }

    private func check(_ p: BatchPosition) throws {
        guard p.epoch >= 0, p.batch >= 0, p.batch < batchesPerEpoch else {
            throw DataError("BatchLoader: no batch at \(p) (epochs from 0, \(batchesPerEpoch) batches each)")
        }
    }

    /// Builds the batch at `position` of an epoch visiting rows in `order`.
    func makeBatch(_ position: BatchPosition, order: [Int]) -> Batch {
        let lo = position.batch * batchSize, hi = min(order.count, lo + batchSize)
        let indices = Array(order[lo..<hi])
        var inputs: Tensor
        if prefetch {  // on the background thread: the workers are the caller's
            inputs = dataset.rows(indices)
        } else {
            inputs = Tensor(uninitializedShape: [indices.count] + dataset.exampleShape)
            let size = dataset.exampleSize, out = SharedPointer(inputs.data), dataset = dataset
            Parallel.forChunks(indices.count, costPerItem: size) { rows in
                dataset.copyRows(indices[rows], into: out.p + rows.lowerBound * size)
            }
        }
        if let augmentation, !augmentation.operations.isEmpty {
            var generator = SeededGenerator(seed: SeededGenerator.mix(start: Self.seedStream, [seed, 0x4155_4755, UInt64(bitPattern: Int64(position.epoch)),
                                                                                      UInt64(bitPattern: Int64(position.batch))]))
            // Validated in init: the features are [N, C, H, W], so this cannot fail.
            inputs = try! augmentation.apply(to: inputs, using: &generator)
        }
        let labels = dataset.labels.isEmpty ? [] : indices.map { dataset.labels[$0] }
        return Batch(inputs: inputs, labels: labels, indices: indices, position: position)
    }

    /// Start of the loader's own stream of `SeededGenerator.mix` seeds (data order, augmentation).
    static let seedStream: UInt64 = 0x6A09_E667_F3BC_C909
}

/// The batches from a start position to the end of an epoch range (see `BatchLoader.batches`).
public struct Batches: Sequence, Sendable {
    let loader: BatchLoader
    let start: BatchPosition
    let endEpoch: Int

    public func makeIterator() -> Iterator { Iterator(loader: loader, start: start, endEpoch: endEpoch) }

    /// How many batches the sequence yields.
    public var count: Int {
        let perEpoch = loader.batchesPerEpoch
        guard start.epoch < endEpoch else { return 0 }
        return (endEpoch - start.epoch) * perEpoch - start.batch
    }

    /// Yields batches in order, building batch k + 1 in the background while the caller works on k.
    public final class Iterator: IteratorProtocol {
        private let loader: BatchLoader
        private let endEpoch: Int
        /// The next position to yield, nil when done.
        private var position: BatchPosition?
        private var orderEpoch = -1
        private var order: [Int] = []
        private var pending: (position: BatchPosition, slot: Slot)?

        init(loader: BatchLoader, start: BatchPosition, endEpoch: Int) {
            self.loader = loader
            self.endEpoch = endEpoch
            position = Self.normalized(start, perEpoch: loader.batchesPerEpoch, endEpoch: endEpoch)
        }

        /// `p`, moved to the start of the next non-empty epoch when it is past the end of its own.
        private static func normalized(_ p: BatchPosition, perEpoch: Int, endEpoch: Int) -> BatchPosition? {
            guard perEpoch > 0 else { return nil }
            var p = p
            if p.batch >= perEpoch { p = BatchPosition(epoch: p.epoch + 1, batch: 0) }
            return p.epoch < endEpoch ? p : nil
        }

        private func orderFor(_ epoch: Int) -> [Int] {
            if orderEpoch != epoch { order = loader.order(epoch: epoch); orderEpoch = epoch }
            return order
        }

        public func next() -> Batch? {
            guard let current = position else { return nil }
            let batch: Batch
            if let pending, pending.position == current {
                batch = pending.slot.take()
            } else {
                batch = loader.makeBatch(current, order: orderFor(current.epoch))
            }
            pending = nil
            position = Self.normalized(BatchPosition(epoch: current.epoch, batch: current.batch + 1),
                                       perEpoch: loader.batchesPerEpoch, endEpoch: endEpoch)
            if loader.prefetch, let upcoming = position {
                let slot = Slot(), loader = self.loader, order = orderFor(upcoming.epoch)
                DispatchQueue.global(qos: .userInitiated).async {
                    slot.fill(loader.makeBatch(upcoming, order: order))
                }
                pending = (upcoming, slot)
            }
            return batch
        }
    }
}

/// A batch being built on another thread. `fill` happens once, before the semaphore is
/// signalled; `take` reads only after waiting on it, so the semaphore orders the two accesses.
private final class Slot: @unchecked Sendable {
    private var batch: Batch?
    private let ready = DispatchSemaphore(value: 0)

    func fill(_ b: Batch) { batch = b; ready.signal() }
    func take() -> Batch { ready.wait(); return batch! }
}
