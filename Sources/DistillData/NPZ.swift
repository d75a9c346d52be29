import DistillTensor
import Foundation

/// NumPy's `.npz` archives (`np.savez`, `np.savez_compressed`): a ZIP file of `.npy` entries.
///
/// Entries may be stored or deflated; the ZIP container is parsed by `ZIP`. Before an entry is
/// extracted its declared uncompressed size is checked against `ReadLimits.maxPayloadBytes` (per
/// entry and for the whole archive), and extraction produces exactly that many bytes or fails,
/// so a ZIP bomb fails with a message instead of filling memory.
public enum NPZ {
    /// Most entries an archive may have.
    public static let maxEntries = 100_000

    /// Every array in the archive as Float32, keyed by entry name without `.npy`
    /// (`np.savez(f, x=a)` gives `"x"`).
    public static func read(_ url: URL, limits: ReadLimits = .default) throws -> [String: Tensor] {
        try decode(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// The raw `.npy` bytes of every entry, keyed by name without `.npy`; decode one with
    /// `NPY.decode` or, for integer labels, `NPY.decodeInts`.
    public static func readEntries(_ url: URL, limits: ReadLimits = .default) throws -> [String: Data] {
        try decodeEntries(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// Every array in the in-memory archive `data` as Float32; `name` appears in errors.
    public static func decode(_ data: Data, name: String, limits: ReadLimits = .default) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (key, entry) in try decodeEntries(data, name: name, limits: limits) {
            tensors[key] = try NPY.decode(entry, name: "\(name)[\(key).npy]", limits: limits)
        }
        return tensors
    }

    /// The raw `.npy` bytes of every entry of the in-memory archive `data`.
    public static func decodeEntries(_ data: Data, name: String, limits: ReadLimits = .default) throws -> [String: Data] {
        guard data.count <= limits.maxFileBytes else {
            throw DataError(file: name, "\(data.count) bytes, more than the \(limits.maxFileBytes)-byte limit (ReadLimits.maxFileBytes)")
        }
        var entries: [String: Data] = [:]
        var total: UInt64 = 0
        for entry in try ZIP.entries(of: data, name: name, maxEntries: maxEntries) where !entry.isDirectory {
            guard entry.name.hasSuffix(".npy") else {
                throw DataError(file: name, "entry '\(abbreviated(entry.name))' is not a .npy array")
            }
            let key = String(entry.name.dropLast(4))
            guard entries[key] == nil else { throw DataError(file: name, "entry '\(abbreviated(entry.name))' appears twice") }
            let declared = entry.uncompressedSize
            total += min(declared, UInt64(Int.max))
            guard declared <= UInt64(limits.maxPayloadBytes), total <= UInt64(limits.maxPayloadBytes) else {
                throw DataError(file: name, "entry '\(abbreviated(entry.name))' declares \(declared) uncompressed bytes, over the \(limits.maxPayloadBytes)-byte limit (ReadLimits.maxPayloadBytes)")
            }
            try checkBudget(bytes: Int(total), file: name, for: "the entries up to '\(abbreviated(entry.name))' (\(total) uncompressed bytes in all)")
            // Deflate expands at most ~1032:1: a larger claim is corrupt (and must not size an allocation).
            guard declared <= (entry.compressedSize + 1024) * 1100 else {
                throw DataError(file: name, "entry '\(abbreviated(entry.name))' declares \(declared) uncompressed bytes from \(entry.compressedSize) compressed bytes, impossible for deflate")
            }
            entries[key] = try ZIP.extract(entry, from: data, name: name)
        }
        return entries
    }

    /// Writes `tensors` as `<f4` `.npy` entries named `<key>.npy`, deflated when `compressed`
    /// (like `np.savez_compressed`), atomically.
    public static func write(_ tensors: [String: Tensor], to url: URL, compressed: Bool = false) throws {
        try writeAtomically(encode(tensors, compressed: compressed), to: url)
    }

    /// The bytes of an `.npz` archive holding `tensors` (entries in sorted order).
    public static func encode(_ tensors: [String: Tensor], compressed: Bool = false) throws -> Data {
        try encode(entries: tensors.mapValues { NPY.encode($0) }, compressed: compressed)
    }

    /// The bytes of an `.npz` archive from raw `.npy` entries (e.g. from `NPY.encode(ints:shape:)`).
    public static func encode(entries: [String: Data], compressed: Bool = false) throws -> Data {
        try ZIP.archive(entries.keys.sorted().map { (name: $0 + ".npy", data: entries[$0]!) }, compressed: compressed)
    }
}

extension NPZ {
    /// The arrays a classification archive holds: features and integer labels of each split.
    public static let classificationArrays = ["x_train", "y_train", "x_test", "y_test"]

    /// The training and test sets of a classification archive (`np.savez(f, x_train=..., y_train=...,
    /// x_test=..., y_test=...)`): features `[N, ...]` of rank 2 or more (uint8 images, rank 3 or
    /// more, scaled from 0-255 to [0, 1]), labels `[N]` of whole
    /// numbers; the classes are 0 through the largest training label. Every error names the file and
    /// the array: a missing array, features without rows or without values per row, a label count
    /// different from the row count, test examples shaped differently from training examples, a
    /// negative or fractional label, more than `LabeledDataset.maxClasses` classes, a test label the
    /// training labels do not cover.
    public static func readClassification(_ url: URL, limits: ReadLimits = .default) throws -> (train: LabeledDataset, test: LabeledDataset) {
        try decodeClassification(readFile(url, limit: limits.maxFileBytes), name: url.path, limits: limits)
    }

    /// The training and test sets of the in-memory classification archive `data` (see
    /// `readClassification`); `name` starts every error message.
    public static func decodeClassification(_ data: Data, name path: String, limits: ReadLimits = .default) throws -> (train: LabeledDataset, test: LabeledDataset) {
        let entries = try decodeEntries(data, name: path, limits: limits)
        func array(_ key: String) throws -> Data {
            guard let bytes = entries[key] else {
                let found = entries.isEmpty ? "it holds no arrays" : "found \(abbreviatedList(entries.keys.sorted()))"
                throw DataError(file: path, "no array '\(key)' (a classification archive holds \(classificationArrays.joined(separator: ", ")); \(found))")
            }
            return bytes
        }
        func features(_ key: String) throws -> Tensor {
            let bytes = try array(key), name = "\(path)[\(key).npy]"
            let x = try NPY.decode(bytes, name: name, limits: limits)
            // uint8 images (Keras's datasets, PIL) hold 0-255; DistillKit's images are in [0, 1], as
            // the built-in datasets load and as teachers are fed.
            let dtype = try NPY.parseHeader(bytes, name: name, limits: limits).dtype
            if x.rank >= 3 && dtype.kind == "u" && dtype.size == 1 {
                for i in 0..<x.count { x.data[i] /= 255 }  // as the IDX reader: pixel / 255
            }
            guard x.rank >= 2 else {
                throw DataError(file: path, "'\(key)' has shape \(x.shape): features must be [N, F] or [N, ...], one row per example")
            }
            guard x.shape[0] > 0 else { throw DataError(file: path, "'\(key)' has shape \(x.shape): no examples") }
            guard x.count > 0 else { throw DataError(file: path, "'\(key)' has shape \(x.shape): examples with no values") }
            // [N, H, W] is a stack of one-channel images: [N, 1, H, W], as convolutions and the
            // built-in datasets take them.
            return x.rank == 3 ? x.reshaped([x.shape[0], 1, x.shape[1], x.shape[2]]) : x
        }
        func labels(_ key: String, rows: Int, of features: String) throws -> [Int] {
            let (shape, values) = try NPY.decodeInts(array(key), name: "\(path)[\(key).npy]", limits: limits)
            guard shape == [rows] || shape == [rows, 1] else {
                throw DataError(file: path, "'\(key)' has shape \(shape), expected [\(rows)]: one label per row of '\(features)'")
            }
            return values
        }
        let trainFeatures = try features("x_train")
        let testFeatures = try features("x_test")
        guard testFeatures.shape.dropFirst() == trainFeatures.shape.dropFirst() else {
            throw DataError(file: path, "'x_test' has examples of shape \(Array(testFeatures.shape.dropFirst())), 'x_train' of shape \(Array(trainFeatures.shape.dropFirst()))")
        }
        let trainLabels = try labels("y_train", rows: trainFeatures.shape[0], of: "x_train")
        let testLabels = try labels("y_test", rows: testFeatures.shape[0], of: "x_test")
        let classes = try LabeledDataset.classCount(of: trainLabels, source: "\(path)[y_train.npy]")
        if let bad = testLabels.firstIndex(where: { $0 < 0 || $0 >= classes }) {
            throw DataError(file: "\(path)[y_test.npy]", "label \(testLabels[bad]) of example \(bad) is outside the \(classes) classes of y_train (0..<\(classes))")
        }
        let train = try LabeledDataset(features: trainFeatures, labels: trainLabels, numClasses: classes, source: path)
        let test = try LabeledDataset(features: testFeatures, labels: testLabels, numClasses: classes, source: path)
        return (train, test)
    }
}
