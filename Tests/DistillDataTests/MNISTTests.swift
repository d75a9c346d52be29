import DistillData
import DistillTestSupport
import Foundation
import Testing

/// Whether Debian's dataset-fashion-mnist is installed here.
let fashionMNISTInstalled = FileManager.default.fileExists(atPath: FashionMNIST.systemDirectory + "/train-images-idx3-ubyte.gz")

@Suite struct MNISTTests {
    /// Writes a small fake MNIST-style dataset: `n` train and `m` test images of 28×28.
    func writeFake(in folder: URL, train n: Int = 12, test m: Int = 5, gzip: Bool = true,
                   labels: ((Int) -> UInt8)? = nil) throws {
        let suffix = gzip ? ".gz" : ""
        for (prefix, count) in [("train", n), ("t10k", m)] {
            let pixels = (0..<count * 784).map { UInt8($0 % 256) }
            try IDX.write(shape: [count, 28, 28], values: pixels,
                          to: folder.appendingPathComponent("\(prefix)-images-idx3-ubyte\(suffix)"), gzip: gzip)
            try IDX.write(shape: [count], values: (0..<count).map { labels?($0) ?? UInt8($0 % 10) },
                          to: folder.appendingPathComponent("\(prefix)-labels-idx1-ubyte\(suffix)"), gzip: gzip)
        }
    }

    @Test func loadsFromAFolder() throws {
        let dir = try TemporaryDirectory()
        try writeFake(in: dir.url)
        let (train, test) = try FashionMNIST.load(directory: dir.url)
        #expect(train.features.shape == [12, 1, 28, 28])
        #expect(test.features.shape == [5, 1, 28, 28])
        #expect(train.labels == (0..<12).map { $0 % 10 })
        #expect(train.numClasses == 10)
        #expect(train.classNames[0] == "T-shirt/top" && train.classNames[9] == "Ankle boot")
        #expect(train.features.scalars[255] == 1 && train.features.scalars[256] == 0)
        #expect(train.features.scalars[51] == Float(51) / 255)
    }

    @Test func acceptsUncompressedFiles() throws {
        let dir = try TemporaryDirectory()
        try writeFake(in: dir.url, gzip: false)
        let (train, _) = try MNIST.load(directory: dir.url)
        #expect(train.count == 12)
        #expect(train.classNames == (0..<10).map(String.init))
    }

    @Test func findsTheEnvironmentFolder() throws {
        let dir = try TemporaryDirectory()
        let sub = dir.url.appendingPathComponent("fashion-mnist")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        try writeFake(in: sub)
        let files = try FashionMNIST.locate(environment: ["DISTILL_DATA_DIR": dir.url.path])
        #expect(files.trainImages.path == sub.appendingPathComponent("train-images-idx3-ubyte.gz").path)
        // MNIST looks for mnist/ first, then the folder itself; neither has the files here.
        expectDataError("MNIST not found", dir.url.path + "/mnist", "DISTILL_DATA_DIR") {
            _ = try MNIST.locate(environment: ["DISTILL_DATA_DIR": dir.url.path])
        }
    }

    @Test func missingDatasetSaysHowToInstall() throws {
        let dir = try TemporaryDirectory()
        try IDX.write(shape: [1], values: [0], to: dir.file("train-labels-idx1-ubyte.gz"), gzip: true)
        expectDataError("Fashion-MNIST not found", dir.url.path, "missing train-images-idx3-ubyte[.gz]",
                        "apt-get install dataset-fashion-mnist", "DISTILL_DATA_DIR") {
            _ = try FashionMNIST.load(directory: dir.url)
        }
        expectDataError("apt-get install dataset-fashion-mnist") {
            _ = try FashionMNIST.locate(environment: ["DISTILL_DATA_DIR": dir.file("nowhere").path])
        }
    }

    @Test func checksLabels() throws {
        let dir = try TemporaryDirectory()
        try writeFake(in: dir.url, labels: { $0 == 7 ? 10 : 1 })
        expectDataError("train-labels-idx1-ubyte.gz", "offset 15", "label 10 of example 7") {
            _ = try FashionMNIST.load(directory: dir.url)
        }
        let other = try TemporaryDirectory()
        try writeFake(in: other.url)
        try IDX.write(shape: [11], values: [UInt8](repeating: 0, count: 11),
                      to: other.file("train-labels-idx1-ubyte.gz"), gzip: true)
        expectDataError("11 labels for 12 images") { _ = try FashionMNIST.load(directory: other.url) }
        try IDX.write(shape: [12, 784], values: [UInt8](repeating: 0, count: 12 * 784),
                      to: other.file("train-images-idx3-ubyte.gz"), gzip: true)
        expectDataError("images must have rank 3") { _ = try FashionMNIST.load(directory: other.url) }
    }

    /// The real dataset, from Debian's dataset-fashion-mnist.
    @Test(.enabled(if: fashionMNISTInstalled, "dataset-fashion-mnist is not installed"))
    func realFashionMNIST() throws {
        let (train, test) = try FashionMNIST.load()
        #expect(train.features.shape == [60000, 1, 28, 28])
        #expect(test.features.shape == [10000, 1, 28, 28])
        #expect(train.labels.count == 60000 && test.labels.count == 10000)
        #expect(train.classCounts == [Int](repeating: 6000, count: 10))
        #expect(test.classCounts == [Int](repeating: 1000, count: 10))
        var lo: Float = .infinity, hi: Float = -.infinity
        for v in train.features.scalars { lo = min(lo, v); hi = max(hi, v) }
        #expect(lo == 0 && hi == 1)
    }
}
