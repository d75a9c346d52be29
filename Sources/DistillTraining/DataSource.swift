import DistillData
import DistillNN
import DistillTensor
import Foundation

/// Resolves a `--data` argument to train and test splits.
///
/// `fashion-mnist` and `mnist` name the Debian datasets (or `$DISTILL_DATA_DIR`); a `.csv` path is
/// tabular data (`--label` names the class column; without `--test-data` a 20% seeded validation
/// split is held out); `.npz` files hold `x_train`, `y_train`, `x_test`, `y_test`.
public enum DataSource {
    public static let names = ["fashion-mnist", "mnist", "PATH.csv", "PATH.npz"]

    /// `allowUnlabeled`: a `.csv` without `labelColumn` is read as unlabelled data (transfer data).
    public static func load(_ data: String, testData: String? = nil, labelColumn: String? = nil, seed: UInt64 = 0,
                            allowUnlabeled: Bool = false) throws -> (train: LabeledDataset, test: LabeledDataset) {
        switch data.lowercased() {
        case "fashion-mnist", "fashion_mnist", "fashionmnist": return try FashionMNIST.load()
        case "mnist": return try MNIST.load()
        default: break
        }
        let url = URL(fileURLWithPath: data)
        switch url.pathExtension.lowercased() {
        case "csv":
            guard labelColumn != nil || allowUnlabeled else { throw TensorError("\(data): name the label column with --label COLUMN") }
            let table = try CSVTable.load(url)
            // The test file is encoded with the training file's schema (same one-hot columns and classes).
            let schema = try table.inferSchema(labelColumn: labelColumn)
            let train = try table.dataset(schema: schema)
            if let testData {
                return (train, try CSVTable.read(URL(fileURLWithPath: testData), schema: schema))
            }
            let parts = try train.split(validationFraction: 0.2, seed: seed)
            return (parts.train, parts.validation)
        case "npz":
            return try npzSplits(url, name: data)
        default:
            throw TensorError("unknown data '\(data)'; valid: \(names.joined(separator: ", "))")
        }
    }

    /// `x_train, y_train, x_test, y_test` of an `.npz` file, checked as a whole: features [N, ...]
    /// with at least one row and one feature, test examples of the training examples' shape, one
    /// integer label per row, test labels within the training classes. Errors name the file and array.
    static func npzSplits(_ url: URL, name: String) throws -> (train: LabeledDataset, test: LabeledDataset) {
        let entries = try NPZ.readEntries(url)
        func need(_ k: String) throws -> Data {
            guard let d = entries[k] else { throw TensorError("\(name): no array '\(k)' (expected x_train, y_train, x_test, y_test; found \(entries.keys.sorted().prefix(20).joined(separator: ", ")))") }
            return d
        }
        func features(_ k: String) throws -> Tensor {
            let x = try NPY.decode(need(k), name: "\(name)[\(k)]")
            guard x.rank >= 2 else { throw TensorError("\(name)[\(k)]: features of shape \(x.shape); expected [N, ...] with one row per example (e.g. [N, F] or [N, C, H, W])") }
            guard x.rank <= 1 + ModelShapes.maxRank else { throw TensorError("\(name)[\(k)]: features of shape \(x.shape) have more than \(ModelShapes.maxRank) dimensions per example") }
            guard x.shape[0] > 0 else { throw TensorError("\(name)[\(k)]: no rows (shape \(x.shape))") }
            guard x.shape.dropFirst().allSatisfy({ $0 > 0 }) else { throw TensorError("\(name)[\(k)]: examples of shape \(Array(x.shape.dropFirst())) hold no features") }
            return x
        }
        func labels(_ k: String) throws -> [Int] {
            let decoded = try NPY.decodeInts(need(k), name: "\(name)[\(k)]")
            guard decoded.shape.count == 1 else { throw TensorError("\(name)[\(k)]: labels of shape \(decoded.shape); expected [N], one class index per row") }
            return decoded.values
        }
        let (xTrain, yTrain, xTest, yTest) = (try features("x_train"), try labels("y_train"), try features("x_test"), try labels("y_test"))
        guard xTest.shape.dropFirst().elementsEqual(xTrain.shape.dropFirst()) else {
            throw TensorError("\(name): x_test examples have shape \(Array(xTest.shape.dropFirst())), x_train examples \(Array(xTrain.shape.dropFirst()))")
        }
        let classes = try LabeledDataset.classCount(of: yTrain, source: "\(name)[y_train]")
        if let bad = yTest.firstIndex(where: { $0 < 0 || $0 >= classes }) {
            throw TensorError("\(name)[y_test]: label \(yTest[bad]) of row \(bad) is outside the \(classes) classes of y_train")
        }
        for (x, y, k) in [(xTrain, yTrain, "train"), (xTest, yTest, "test")] where x.shape[0] != y.count {
            throw TensorError("\(name): x_\(k) has \(x.shape[0]) rows, y_\(k) \(y.count) labels")
        }
        return (try LabeledDataset(features: xTrain, labels: yTrain, numClasses: classes, source: "\(name)[x_train]"),
                try LabeledDataset(features: xTest, labels: yTest, numClasses: classes, source: "\(name)[x_test]"))
    }

    /// The rows of a `.csv` training file (in file order) that `load` keeps for training when it
    /// holds out the 20% validation split itself: the same seeded split as `LabeledDataset.split`.
    public static func csvTrainingRows(total: Int, seed: UInt64) -> [Int] {
        var generator = SeededGenerator(seed: seed)
        let order = generator.permutation(total)
        let nValidation = Int((0.2 * Double(total)).rounded())
        return order[nValidation...].sorted()
    }
}
