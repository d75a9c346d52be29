import DistillData
import DistillTensor
import Foundation
import Testing

@Suite struct DatasetTests {
    func table() throws -> LabeledDataset {
        try LabeledDataset(features: Tensor(shape: [6, 2], scalars: [1, 10, 2, 10, 3, 10, 4, 10, 5, 10, 6, 10]),
                           labels: [0, 1, 2, 0, 1, 2], numClasses: 3, classNames: ["a", "b", "c"],
                           featureNames: ["x", "const"])
    }

    @Test func subsetAndPrefix() throws {
        let d = try table()
        let s = try d.subset([4, 0, 4])
        #expect(s.features.scalars == [5, 10, 1, 10, 5, 10])
        #expect(s.labels == [1, 0, 1])
        #expect(s.classNames == d.classNames && s.featureNames == d.featureNames)
        #expect(d.prefix(2).labels == [0, 1])
        #expect(d.prefix(100).count == 6)
        #expect(d.classCounts == [2, 2, 2])
        expectDataError("index 6 outside 0..<6") { _ = try d.subset([6]) }
    }

    @Test func validation() throws {
        expectDataError("label 3 of example 1 is outside 0..<3") {
            _ = try LabeledDataset(features: Tensor.zeros([2, 1]), labels: [0, 3], numClasses: 3)
        }
        expectDataError("1 labels for 2 examples") { _ = try LabeledDataset(features: Tensor.zeros([2, 1]), labels: [0], numClasses: 3) }
        expectDataError("2 class names for 3 classes") {
            _ = try LabeledDataset(features: Tensor.zeros([2, 1]), labels: [], numClasses: 3, classNames: ["a", "b"])
        }
    }

    @Test func seededSplit() throws {
        let d = try LabeledDataset(features: Tensor(shape: [100, 1], scalars: (0..<100).map(Float.init)),
                                   labels: (0..<100).map { $0 % 4 }, numClasses: 4)
        let (train, validation) = try d.split(validationFraction: 0.2, seed: 5)
        #expect(train.count == 80 && validation.count == 20)
        let all = (train.features.scalars + validation.features.scalars).sorted()
        #expect(all == (0..<100).map(Float.init))
        #expect(train.features.scalars == train.features.scalars.sorted())  // original order kept
        #expect(validation.labels == validation.features.scalars.map { Int($0) % 4 })
        let again = try d.split(validationFraction: 0.2, seed: 5)
        #expect(again.validation.features.scalars == validation.features.scalars)
        let other = try d.split(validationFraction: 0.2, seed: 6)
        #expect(other.validation.features.scalars != validation.features.scalars)
        #expect(try d.split(validationFraction: 0, seed: 1).validation.count == 0)
        expectDataError("validationFraction 1.5") { _ = try d.split(validationFraction: 1.5, seed: 1) }
    }

    @Test func standardization() throws {
        let (train, test) = try table().split(validationFraction: 0.5, seed: 1)
        let stats = try FeatureStatistics(computedFrom: train)
        #expect(stats.exampleShape == [2])
        let xs = train.features.scalars.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        let mean = xs.reduce(0, +) / Float(xs.count)
        let std = (xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(xs.count)).squareRoot()
        #expect(abs(stats.mean[0] - mean) < 1e-5 && abs(stats.std[0] - std) < 1e-5)
        #expect(stats.mean[1] == 10 && stats.std[1] == 0)

        let standardized = try train.standardized(with: stats)
        let z = standardized.features.scalars
        let zx = z.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        #expect(abs(zx.reduce(0, +)) < 1e-5)
        let variance: Float = zx.map { $0 * $0 }.reduce(0, +) / Float(zx.count)
        #expect(abs(variance - 1) < 1e-5)
        // A constant feature is centred, never divided by zero.
        #expect(z.enumerated().filter { $0.offset % 2 == 1 }.allSatisfy { $0.element == 0 })
        // Test data uses the training statistics.
        let t = try test.standardized(with: stats).features.scalars
        #expect(abs(t[0] - (test.features.scalars[0] - mean) / std) < 1e-5)
        #expect(train.labels == standardized.labels)

        let encoded = try JSONEncoder().encode(stats)
        #expect(try JSONDecoder().decode(FeatureStatistics.self, from: encoded) == stats)
        expectDataError("statistics are for [2]") { _ = try stats.apply(to: Tensor.zeros([3, 3])) }
        expectDataError("at least one example") { _ = try FeatureStatistics(computedFrom: Tensor.zeros([0, 2])) }
    }
}

/// Byte-backed images (how MNIST-style files are held) read exactly as the Float32 `byte / 255`
/// array they stand for, through every way of reading examples.
@Suite struct ByteImageDatasetTests {
    let bytes: [UInt8] = (0..<(6 * 2 * 3)).map { UInt8(($0 * 37) % 256) }
    var labels: [Int] { [0, 1, 2, 0, 1, 2] }

    @Test func bytesReadAsTheFloatsTheyStandFor() throws {
        let asBytes = try LabeledDataset(unitBytes: bytes, shape: [6, 1, 2, 3], labels: labels, numClasses: 3)
        let asFloats = try LabeledDataset(features: Tensor(shape: [6, 1, 2, 3], scalars: bytes.map { Float($0) / 255 }),
                                          labels: labels, numClasses: 3)
        #expect(asBytes.featureShape == [6, 1, 2, 3] && asBytes.count == 6 && asBytes.exampleSize == 6)
        #expect(asBytes.features.scalars == asFloats.features.scalars)
        #expect(asBytes.rows([4, 0, 4]).scalars == asFloats.rows([4, 0, 4]).scalars)
        #expect(asBytes.rows(2..<5).shape == [3, 1, 2, 3])
        let subset = try asBytes.subset([5, 1])
        #expect(subset.features.scalars == (try asFloats.subset([5, 1])).features.scalars)
        #expect(subset.labels == [2, 1])
        let (train, validation) = try asBytes.split(validationFraction: 0.5, seed: 3)
        let (floatTrain, floatValidation) = try asFloats.split(validationFraction: 0.5, seed: 3)
        #expect(train.features.scalars == floatTrain.features.scalars)
        #expect(validation.features.scalars == floatValidation.features.scalars)
        // Bytes decode to 0...1, so the training data's NaN scan skips them (and their subsets).
        #expect(asBytes.isFiniteByConstruction && subset.isFiniteByConstruction && train.isFiniteByConstruction)
        #expect(!asFloats.isFiniteByConstruction)
    }

    @Test func aByteCountThatDoesNotFillTheShapeIsRefused() {
        expectDataError("35 bytes do not fill shape [6, 1, 2, 3]") {
            _ = try LabeledDataset(unitBytes: Array(bytes.dropLast()), shape: [6, 1, 2, 3], labels: labels, numClasses: 3)
        }
        expectDataError("6 labels for 3 examples") {
            _ = try LabeledDataset(unitBytes: Array(bytes.prefix(18)), shape: [3, 1, 2, 3], labels: labels, numClasses: 3)
        }
    }
}
