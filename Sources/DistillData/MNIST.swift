import DistillTensor
import Foundation

/// The four IDX files of an MNIST-style dataset, found on disk.
public struct IDXDatasetFiles: Sendable, Equatable {
    /// `train-images-idx3-ubyte[.gz]` and the other three, in the order the dataset is loaded.
    public let trainImages: URL
    public let trainLabels: URL
    public let testImages: URL
    public let testLabels: URL
}

/// How to find and describe one MNIST-style dataset (shared by `MNIST` and `FashionMNIST`).
struct IDXDatasetSpec: Sendable {
    var displayName: String
    /// Folder name looked for under `$DISTILL_DATA_DIR`.
    var subfolder: String
    var systemDirectory: String
    var installAdvice: String
    var classNames: [String]

    static let baseNames = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    /// The files, as install advice names them.
    static let fourFiles = "the four files (\(baseNames.map { $0 + ".gz" }.joined(separator: ", ")); uncompressed also works)"

    /// The folder's four files (each gzipped or raw), or the names of those missing.
    static func files(in folder: URL) -> (files: IDXDatasetFiles?, missing: [String]) {
        var found: [URL] = []
        var missing: [String] = []
        for base in baseNames {
            let candidates = [folder.appendingPathComponent(base + ".gz"), folder.appendingPathComponent(base)]
            if let url = candidates.first(where: { FileManager.default.isReadableFile(atPath: $0.path) }) {
                found.append(url)
            } else {
                missing.append(base + "[.gz]")
            }
        }
        if !missing.isEmpty { return (nil, missing) }
        return (IDXDatasetFiles(trainImages: found[0], trainLabels: found[1], testImages: found[2], testLabels: found[3]), [])
    }

    /// Looks in `directory` when given; else in `$DISTILL_DATA_DIR/<subfolder>`, then
    /// `$DISTILL_DATA_DIR`; else in the system folder.
    func locate(directory: URL?, environment: [String: String]) throws -> IDXDatasetFiles {
        var candidates: [URL] = []
        if let directory {
            candidates = [directory]
        } else if let env = environment["DISTILL_DATA_DIR"], !env.isEmpty {
            let root = URL(fileURLWithPath: env)
            candidates = [root.appendingPathComponent(subfolder), root]
        } else {
            candidates = [URL(fileURLWithPath: systemDirectory)]
        }
        var report: [String] = []
        for folder in candidates {
            let (files, missing) = Self.files(in: folder)
            if let files { return files }
            report.append("\(folder.path) (missing \(missing.joined(separator: ", ")))")
        }
        throw DataError("\(displayName) not found: looked in \(report.joined(separator: "; ")). \(installAdvice)")
    }

    func load(directory: URL?, environment: [String: String], limits: ReadLimits) throws -> (train: LabeledDataset, test: LabeledDataset) {
        let files = try locate(directory: directory, environment: environment)
        let train = try IDX.loadImageDataset(images: files.trainImages, labels: files.trainLabels, classNames: classNames, limits: limits)
        let test = try IDX.loadImageDataset(images: files.testImages, labels: files.testLabels, classNames: classNames, limits: limits)
        return (train, test)
    }
}

/// An MNIST-style dataset (`MNIST`, `FashionMNIST`): where it is looked for and how it loads.
public protocol IDXDataset {
    /// The name errors use.
    static var displayName: String { get }
    /// The ten class names, by label.
    static var classNames: [String] { get }
    /// The folder looked for under `$DISTILL_DATA_DIR`.
    static var subfolder: String { get }
    /// Where a system-wide copy is looked for.
    static var systemDirectory: String { get }
    /// What the not-found error advises.
    static var installAdvice: String { get }
}

extension IDXDataset {
    static var spec: IDXDatasetSpec {
        IDXDatasetSpec(displayName: displayName, subfolder: subfolder, systemDirectory: systemDirectory,
                       installAdvice: installAdvice, classNames: classNames)
    }

    /// Loads the training and test sets from `directory`; when nil, from `$DISTILL_DATA_DIR/<name>`
    /// or `$DISTILL_DATA_DIR`, else from the system folder. When the files are missing, the error
    /// says how to install them.
    public static func load(directory: URL? = nil, limits: ReadLimits = .default) throws -> (train: LabeledDataset, test: LabeledDataset) {
        try spec.load(directory: directory, environment: ProcessInfo.processInfo.environment, limits: limits)
    }

    /// Where `load` would read from, without reading (throws the same not-found error).
    public static func locate(directory: URL? = nil,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> IDXDatasetFiles {
        try spec.locate(directory: directory, environment: environment)
    }
}

/// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 28×28 grey images of 10 kinds of clothing,
/// 60,000 for training and 10,000 for testing — a drop-in, harder replacement for MNIST.
///
/// Debian ships it as `dataset-fashion-mnist` (gzipped IDX files in
/// `/usr/share/datasets/fashion-mnist`). Images load as Float32 `pixel / 255` in [0, 1], shape
/// `[N, 1, 28, 28]`.
public enum FashionMNIST: IDXDataset {
    /// The ten classes, by label.
    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    /// Where Debian's `dataset-fashion-mnist` installs the files.
    public static let systemDirectory = "/usr/share/datasets/fashion-mnist"
    public static let displayName = "Fashion-MNIST", subfolder = "fashion-mnist"
    public static let installAdvice = "Install it with `apt-get install dataset-fashion-mnist` (it goes to \(systemDirectory)), "
        + "or put \(IDXDatasetSpec.fourFiles) in a folder and set DISTILL_DATA_DIR to it or pass its path."
}

/// MNIST handwritten digits (LeCun et al. 1998): 60,000 training and 10,000 test 28×28 images.
///
/// Debian has no MNIST package; put the four IDX files in a folder and pass it, or set
/// `DISTILL_DATA_DIR` (to that folder, or to a parent holding it as `mnist/`). `/usr/share/datasets/mnist`
/// is used when it exists. Images read as `[N, 1, 28, 28]` values in [0, 1] (held as bytes).
public enum MNIST: IDXDataset {
    /// The ten classes: the digits "0" to "9".
    public static let classNames = (0..<10).map(String.init)
    /// Where a system-wide copy is looked for.
    public static let systemDirectory = "/usr/share/datasets/mnist"
    public static let displayName = "MNIST", subfolder = "mnist"
    public static let installAdvice = "Debian has no MNIST package (for Fashion-MNIST: `apt-get install dataset-fashion-mnist`); "
        + "put \(IDXDatasetSpec.fourFiles) in \(systemDirectory) or in a folder named by DISTILL_DATA_DIR, or pass its path."
}

extension IDX {
    /// Loads an MNIST-style pair: unsigned-byte images `[N, H, W]` and labels `[N]`, as a dataset of
    /// `[N, 1, H, W]` images read as `pixel / 255` (held as bytes) with `classNames.count` classes. Checks that there
    /// is one label per image and every label is a class index.
    public static func loadImageDataset(images: URL, labels: URL, classNames: [String],
                                        limits: ReadLimits = .default) throws -> LabeledDataset {
        let (imageShape, pixels) = try read(images, limits: limits)
        guard imageShape.count == 3 else {
            throw DataError(file: images.path, offset: 3, "images must have rank 3 ([N, rows, columns]), the header says shape \(imageShape)")
        }
        guard imageShape.allSatisfy({ $0 > 0 }) else {
            throw DataError(file: images.path, offset: 4, "the header says shape \(imageShape): a dataset needs at least one image of at least 1×1 pixels")
        }
        let (labelShape, labelBytes) = try read(labels, limits: limits)
        guard labelShape.count == 1 else {
            throw DataError(file: labels.path, offset: 3, "labels must have rank 1 ([N]), the header says shape \(labelShape)")
        }
        guard labelShape[0] == imageShape[0] else {
            throw DataError(file: labels.path, "\(labelShape[0]) labels for \(imageShape[0]) images in \(images.path)")
        }
        let headerBytes = 4 + 4 * labelShape.count
        if let bad = labelBytes.firstIndex(where: { Int($0) >= classNames.count }) {
            throw DataError(file: labels.path, offset: headerBytes + bad,
                            "label \(labelBytes[bad]) of example \(bad) is not a class index (0..<\(classNames.count))")
        }
        // Kept as bytes (a quarter of the Float32 size), decoded batch by batch.
        return try LabeledDataset(unitBytes: pixels, shape: [imageShape[0], 1, imageShape[1], imageShape[2]],
                                  labels: labelBytes.map { Int($0) },
                                  numClasses: classNames.count, classNames: classNames, source: images.path)
    }
}
