import DistillData
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// Hostile data files (the reader side of tests/hostile/cases_data.py): each must fail with an
/// error naming the file and the problem, without a crash, a hang or a large allocation.
@Suite struct HostileInputTests {
    // MARK: Files that are not regular files

    @Test func readersRefuseFoldersFIFOsAndDevices() throws {
        let dir = try TemporaryDirectory()
        let fifo = dir.file("pipe.csv")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        expectDataError("pipe.csv", "FIFO") { _ = try CSVTable.load(fifo) }
        let folder = dir.file("folder.npy")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        expectDataError("folder.npy", "folder") { _ = try NPY.read(folder) }
        expectDataError("/dev/zero", "device") { _ = try IDX.read(URL(fileURLWithPath: "/dev/zero")) }
        expectDataError("missing.npz", "no such file") { _ = try NPZ.read(dir.file("missing.npz")) }
    }

    // MARK: CSV

    @Test func csvRefusesControlCharactersInFields() throws {
        // Number parsing stops at a NUL: `5\0abc` must not read as 5.
        expectDataError("t.csv", "line 3, column 1", "control character 0x00") {
            _ = try CSVTable.parse(Data("a,y\n1,0\n5\0abc,1\n".utf8), name: "t.csv")
        }
        expectDataError("t.csv", "line 2, column 2", "control character 0x01") {
            _ = try CSVTable.parse(Data("a,y\n\"1\",\"\u{1}\"\n".utf8), name: "t.csv")
        }
        // Tabs, and newlines inside quotes, are text.
        let table = try CSVTable.parse(Data("a,b\n\t1\t,\"x\ny\"\n".utf8), name: "t.csv")
        #expect(table.rows == [["1", "x\ny"]])
    }

    @Test func csvWithManyColumnsReadsInLinearTime() throws {
        let columns = 200_000
        let text = (0..<columns).map { "c\($0)" }.joined(separator: ",") + ",y\n"
            + String(repeating: "1,", count: columns) + "0\n" + String(repeating: "2,", count: columns) + "1\n"
        let started = Date()
        let dataset = try CSVTable.parse(Data(text.utf8), name: "wide.csv").dataset(labelColumn: "y")
        #expect(dataset.featureShape == [2, columns])
        #expect(Date().timeIntervalSince(started) < 30)  // quadratic column lookups took minutes
    }

    @Test func csvErrorsQuoteLongCellsAndListsShortly() throws {
        let long = String(repeating: "x", count: 100_000)
        expectDataError("t.csv", "… (100000 bytes)") {
            _ = try CSVTable.parse(Data("a,y\n1,0\n2,0\n3,1\n\(long),1\n".utf8), name: "t.csv").dataset(labelColumn: "y")
        }
        let header = (0..<1000).map { "c\($0)" }.joined(separator: ",")
        do {
            _ = try CSVTable.parse(Data("\(header)\n\(header)\n".utf8), name: "t.csv").dataset(labelColumn: "label")
            Issue.record("expected an error")
        } catch let error as DataError {
            #expect(error.message.contains("and 980 more"))
            #expect(error.message.count < 1000)
        }
    }

    @Test func csvLabelsAreBoundedClassIndices() throws {
        for label in ["9223372036854775807", "1099511627776", "65536", "-1", "1.5", "nan", "1e400"] {
            expectDataError("t.csv", "line 3, column 2", "'\(label)' is not a class index") {
                _ = try CSVTable.parse(Data("a,y\n1,0\n2,\(label)\n".utf8), name: "t.csv").dataset(labelColumn: "y")
            }
        }
        expectDataError("t.csv", "no feature columns") {
            _ = try CSVTable.parse(Data("y\n0\n1\n".utf8), name: "t.csv").dataset(labelColumn: "y")
        }
    }

    @Test func csvSchemaFromAModelFileIsBounded() throws {
        let table = try CSVTable.parse(Data("a,y\n1,0\n".utf8), name: "t.csv")
        let schema = CSVSchema(features: [.init(name: "a", categories: nil)], label: .integerClasses(column: "y", numClasses: 1 << 40))
        expectDataError("t.csv", "1099511627776 classes, outside 1...65536") { _ = try table.dataset(schema: schema) }
        let twice = CSVSchema(features: [.init(name: "a", categories: nil)], label: .namedClasses(column: "y", classNames: ["0", "0"]))
        expectDataError("t.csv", "lists '0' twice among the class names") { _ = try table.dataset(schema: twice) }
        let categoriesTwice = CSVSchema(features: [.init(name: "a", categories: ["1", "1"])], label: .target(column: "y"))
        expectDataError("t.csv", "lists '1' twice among the categories of column 'a'") { _ = try table.regression(schema: categoriesTwice) }
    }

    @Test func csvOneHotWidthIsBounded() throws {
        // 600 rows of three all-distinct string columns: 1,800 features × 600 rows is within
        // ReadLimits but must still fit the memory budget; here it does, and the shape says so.
        var text = "a,b,c,y\n"
        for i in 0..<600 { text += "u\(i),v\(i),w\(i),\(i % 3)\n" }
        let dataset = try CSVTable.parse(Data(text.utf8), name: "t.csv").dataset(labelColumn: "y")
        #expect(dataset.featureShape == [600, 1800])
        // A column with more distinct values than maxCategories is refused, not expanded.
        expectDataError("t.csv", "column 'a' has more than 100 distinct values") {
            _ = try CSVTable.parse(Data(text.utf8), name: "t.csv").dataset(labelColumn: "y", maxCategories: 100)
        }
    }

    // MARK: NPY

    @Test func npyIntegersBeyond2To62AreRefused() throws {
        let data = try NPY.encode(ints: [0, Int.max], shape: [2])
        expectDataError("y.npy", "element 1 (9223372036854775807) is beyond ±2^62") { _ = try NPY.decodeInts(data, name: "y.npy") }
        #expect(try NPY.decodeInts(NPY.encode(ints: [-(1 << 61), 1 << 61], shape: [2]), name: "y.npy").values == [-(1 << 61), 1 << 61])
    }

    @Test func npyShapeOverflowHiddenBehindAZeroIsRefused() throws {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4), }"
        let bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0] + le(UInt16(header.utf8.count)) + Array(header.utf8)
        expectDataError("z.npy", "shape [0, 4611686018427387904, 4]") { _ = try NPY.decode(Data(bytes), name: "z.npy") }
    }

    // MARK: ZIP / NPZ

    /// An archive whose central directory lists `copies` entries all pointing at one deflated member.
    static func overlappingArchive(copies: Int) throws -> Data {
        let single = try NPZ.encode(entries: ["xxxxxx": NPY.encode(Tensor.zeros([1000]))], compressed: true)
        let bytes = [UInt8](single)
        // The end record is the last 22 bytes; the one central header sits just before it.
        let directoryOffset = Int(UInt32(bytes[bytes.count - 6]) | UInt32(bytes[bytes.count - 5]) << 8
                                  | UInt32(bytes[bytes.count - 4]) << 16 | UInt32(bytes[bytes.count - 3]) << 24)
        let central = Array(bytes[directoryOffset ..< bytes.count - 22])
        var out = Array(bytes[..<directoryOffset])
        for k in 0..<copies {
            var header = central
            header.replaceSubrange(46 ..< 46 + 6, with: Array(String(format: "%06d", k).utf8))  // a unique name, same length
            out += header
        }
        out += [0x50, 0x4B, 0x05, 0x06, 0, 0, 0, 0] + le(UInt16(copies)) + le(UInt16(copies))
            + le(UInt32(central.count * copies)) + le(UInt32(directoryOffset)) + [0, 0]
        return Data(out)
    }

    @Test func zipEntriesThatOverlapAreRefused() throws {
        let bomb = try Self.overlappingArchive(copies: 4000)
        expectDataError("bomb.npz", "overlaps") { _ = try NPZ.decodeEntries(bomb, name: "bomb.npz") }
        #expect(try NPZ.decodeEntries(Self.overlappingArchive(copies: 1), name: "one.npz").count == 1)
    }

    @Test func deflatedEntryThatClaimsMoreThanItHoldsFailsWithoutAllocatingTheClaim() throws {
        // 64 KiB of incompressible data whose headers claim 60 MiB (within deflate's ratio).
        let payload = Data(randomBytes(count: 64 << 10, seed: 3))
        var bytes = [UInt8](try NPZ.encode(entries: ["x": payload], compressed: true))
        let claim = le(UInt32(60 << 20))
        bytes.replaceSubrange(22..<26, with: claim)  // local header: uncompressed size
        let directoryOffset = Int(UInt32(bytes[bytes.count - 6]) | UInt32(bytes[bytes.count - 5]) << 8
                                  | UInt32(bytes[bytes.count - 4]) << 16 | UInt32(bytes[bytes.count - 3]) << 24)
        bytes.replaceSubrange(directoryOffset + 24 ..< directoryOffset + 28, with: claim)
        expectDataError("lie.npz", "short of the entry's declared 62914560 bytes") { _ = try NPZ.decodeEntries(Data(bytes), name: "lie.npz") }
    }

    static func classificationArchive(_ arrays: [String: Data], in dir: TemporaryDirectory) throws -> URL {
        let url = dir.file("d.npz")
        try NPZ.encode(entries: arrays, compressed: false).write(to: url)
        return url
    }

    static func goodArrays() throws -> [String: Data] {
        ["x_train": NPY.encode(Tensor.zeros([6, 2])), "y_train": try NPY.encode(ints: [0, 1, 2, 0, 1, 2], shape: [6]),
         "x_test": NPY.encode(Tensor.zeros([3, 2])), "y_test": try NPY.encode(ints: [2, 1, 0], shape: [3])]
    }

    @Test func npzClassificationReadsAGoodArchive() throws {
        let dir = try TemporaryDirectory()
        let (train, test) = try NPZ.readClassification(Self.classificationArchive(Self.goodArrays(), in: dir))
        #expect(train.featureShape == [6, 2] && test.featureShape == [3, 2])
        #expect(train.numClasses == 3 && test.labels == [2, 1, 0])
    }

    /// uint8 images (Keras's datasets) hold 0-255 and are read in [0, 1], like the built-in
    /// datasets, [N, H, W] as [N, 1, H, W]; uint8 table columns (rank 2) keep their values.
    @Test func npzUInt8ImagesAreScaledToTheUnitInterval() throws {
        let dir = try TemporaryDirectory()
        func uint8(_ values: [UInt8], shape: String) -> Data { Data(npyBytes(descr: "|u1", shape: shape, payload: values)) }
        var arrays = try Self.goodArrays()
        arrays["x_train"] = uint8((0..<24).map { UInt8($0 * 10 + 15) }, shape: "(6, 2, 2)")
        arrays["x_test"] = uint8([255, 0, 51, 102, 0, 0, 0, 0, 0, 0, 0, 0], shape: "(3, 2, 2)")
        let (train, test) = try NPZ.readClassification(Self.classificationArchive(arrays, in: dir))
        #expect(test.rows([0]).scalars == [1, 0, 0.2, 0.4])
        #expect(train.rows([0]).scalars.map { ($0 * 255).rounded() } == [15, 25, 35, 45])
        #expect(train.exampleShape == [1, 2, 2] && test.exampleShape == [1, 2, 2], "[N, H, W] is read as one-channel images")
        arrays["x_train"] = uint8((0..<12).map { UInt8($0) }, shape: "(6, 2)")
        arrays["x_test"] = uint8([200, 1, 2, 3, 4, 5], shape: "(3, 2)")
        let (_, table) = try NPZ.readClassification(Self.classificationArchive(arrays, in: dir))
        #expect(table.rows([0]).scalars == [200, 1])
    }

    static let classificationCases: [(String, Data?, [String])] = [
        ("y_train", try! NPY.encode(ints: [0, 1, 2, 0, 1, 1 << 40], shape: [6]), ["y_train.npy", "label 1099511627776 of example 5", "65536"]),
        ("y_train", try! NPY.encode(ints: [0, 1, 2, 0, 1, -1], shape: [6]), ["y_train.npy", "label -1 of example 5 is negative"]),
        ("y_train", NPY.encode(Tensor([0, 1, 2, 0, 1, 1.5])), ["y_train.npy", "element 5 (1.5)", "not a whole number"]),
        ("y_train", try! NPY.encode(ints: [0, 1, 2, 0, 1], shape: [5]), ["'y_train' has shape [5], expected [6]"]),
        ("y_train", try! NPY.encode(ints: Array(repeating: 0, count: 12), shape: [6, 2]), ["'y_train' has shape [6, 2]"]),
        ("y_test", try! NPY.encode(ints: [2, 1, 3], shape: [3]), ["y_test.npy", "label 3 of example 2 is outside the 3 classes"]),
        ("x_train", NPY.encode(Tensor.zeros([12])), ["'x_train' has shape [12]", "one row per example"]),
        ("x_train", NPY.encode(Tensor.zeros([0, 2])), ["'x_train' has shape [0, 2]: no examples"]),
        ("x_train", NPY.encode(Tensor.zeros([6, 0])), ["'x_train' has shape [6, 0]: examples with no values"]),
        ("x_test", NPY.encode(Tensor.zeros([3, 5])), ["'x_test' has examples of shape [5], 'x_train' of shape [2]"]),
        ("x_test", nil, ["no array 'x_test'"]),
    ]

    @Test(arguments: classificationCases)
    func npzClassificationRefuses(_ key: String, _ replacement: Data?, _ fragments: [String]) throws {
        var arrays = try Self.goodArrays()
        arrays[key] = replacement
        let dir = try TemporaryDirectory()
        let url = try Self.classificationArchive(arrays, in: dir)
        do {
            _ = try NPZ.readClassification(url)
            Issue.record("expected an error for \(fragments)")
        } catch let error as DataError {
            #expect(error.message.contains(url.path), "\(error.message)")
            for fragment in fragments { #expect(error.message.contains(fragment), "\(error.message) lacks \(fragment)") }
        }
    }

    // MARK: IDX

    @Test func gzipIDXThatClaimsMoreThanItHoldsFailsWhenTheDataRunsOut() throws {
        // The header claims 1 GiB; the incompressible data is 1 MiB (a ratio deflate could
        // honestly reach, so it is not refused up front).
        let header: [UInt8] = [0, 0, 8, 3] + be(UInt32(1024)) + be(UInt32(1024)) + be(UInt32(1024))
        let data = header + randomBytes(count: 1 << 20, seed: 5)
        let gz = try Gzip.compress(Data(data))
        expectDataError("claim.idx.gz", "short of the data of shape [1024, 1024, 1024]") {
            _ = try IDX.decode(gz, name: "claim.idx.gz", limits: ReadLimits(maxFileBytes: 1 << 30, maxPayloadBytes: 2 << 30))
        }
    }

    @Test func imageDatasetsNeedImagesWithPixels() throws {
        let dir = try TemporaryDirectory()
        let labels = try dir.write("labels.idx", IDX.encode(shape: [2], values: [0, 1]))
        for shape in [[2, 0, 0], [0, 28, 28]] {
            let images = try dir.write("images.idx", IDX.encode(shape: shape, values: []))
            let labelFile = shape[0] == 0 ? try dir.write("none.idx", IDX.encode(shape: [0], values: [])) : labels
            expectDataError("images.idx", "\(shape)", "at least one image of at least 1×1 pixels") {
                _ = try IDX.loadImageDataset(images: images, labels: labelFile, classNames: ["a", "b"])
            }
        }
    }

    // MARK: LabeledDataset

    @Test func labeledDatasetNamesItsSourceAndBoundsClasses() throws {
        expectDataError("train.npz: 3 labels for 2 examples") {
            _ = try LabeledDataset(features: Tensor.zeros([2, 2]), labels: [0, 1, 0], numClasses: 2, source: "train.npz")
        }
        expectDataError("LabeledDataset: 65537 classes, more than the 65536") {
            _ = try LabeledDataset(features: Tensor.zeros([1, 2]), labels: [0], numClasses: 65537)
        }
        expectDataError("y.npy: label 9223372036854775807 of example 1") {
            _ = try LabeledDataset.classCount(of: [0, Int.max], source: "y.npy")
        }
        expectDataError("y.npy: no labels") { _ = try LabeledDataset.classCount(of: [], source: "y.npy") }
        // Derived datasets keep their file for later messages.
        let fromFile = try LabeledDataset(features: Tensor.zeros([4, 2]), labels: [0, 1, 0, 1], numClasses: 2, source: "a.npz")
        #expect(try fromFile.subset([1, 2]).source == "a.npz")
        #expect(try fromFile.split(validationFraction: 0.5, seed: 1).validation.source == "a.npz")
        expectDataError("a.npz: subset index 9 outside 0..<4") { _ = try fromFile.subset([9]) }
        #expect(try LabeledDataset.classCount(of: [0, 4, 2], source: "y.npy") == 5)
    }

    @Test func decodedFeatureStatisticsAreChecked() throws {
        let text = #"{"exampleShape": [3], "mean": [0, 0, 0], "std": [1]}"#
        expectDataError("1 deviations for example shape [3]") { _ = try JSONDecoder().decode(FeatureStatistics.self, from: Data(text.utf8)) }
        let good = try FeatureStatistics(exampleShape: [2], mean: [1, 2], std: [3, 4])
        #expect(try JSONDecoder().decode(FeatureStatistics.self, from: JSONEncoder().encode(good)) == good)
    }

    @Test func shiftsBeyondTheImageLeaveZeros() throws {
        // 100-pixel shifts and crops on 3x3 images: most draws move the image out entirely (a
        // vertical shift of h or more once trapped on an empty range).
        let images = Tensor(shape: [8, 1, 3, 3], scalars: (0..<72).map { Float($0 + 1) })
        var generator = SeededGenerator(seed: 9)
        for op in [Augmentation.Operation.shift(maxPixels: 100), .crop(padding: 100)] {
            let out = try Augmentation([op]).apply(to: images, using: &generator)
            #expect(out.shape == images.shape)
            #expect(out.scalars.allSatisfy { $0 == 0 || images.scalars.contains($0) })
        }
    }

    @Test func augmentationOffsetsAreBounded() throws {
        expectDataError("crop(padding: 9223372036854775807) must be in 0...65536") { _ = try Augmentation([.crop(padding: Int.max)]) }
        expectDataError("shift(maxPixels: 70000)") { _ = try Augmentation([.shift(maxPixels: 70000)]) }
    }
}
