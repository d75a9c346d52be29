import DistillData
import DistillTensor
import Foundation

/// Resolves a `--data` argument to train and test splits.
///
/// `fashion-mnist` and `mnist` name the Debian datasets (or `$DISTILL_DATA_DIR`); a `.csv` path is
/// tabular data (`--label` names the class column; without `--test-data` a 20% seeded validation
/// split is held out); `.npz` files hold `x_train`, `y_train`, `x_test`, `y_test`.
public enum DataSource {
    public static let names = ["fashion-mnist", "mnist", "PATH.csv", "PATH.npz"]

    public static func load(_ data: String, testData: String? = nil, labelColumn: String? = nil, seed: UInt64 = 0) throws -> (train: LabeledDataset, test: LabeledDataset) {
        switch data.lowercased() {
        case "fashion-mnist", "fashion_mnist", "fashionmnist": return try FashionMNIST.load()
        case "mnist": return try MNIST.load()
        default: break
        }
        let url = URL(fileURLWithPath: data)
        switch url.pathExtension.lowercased() {
        case "csv":
            guard let labelColumn else { throw TensorError("\(data): name the label column with --label COLUMN") }
            let train = try CSVTable.read(url, labelColumn: labelColumn)
            if let testData {
                let test = try CSVTable.read(URL(fileURLWithPath: testData), labelColumn: labelColumn)
                return (train, test)
            }
            let parts = try train.split(validationFraction: 0.2, seed: seed)
            return (parts.train, parts.validation)
        case "npz":
            let arrays = try NPZ.read(url)
            func need(_ k: String) throws -> Tensor {
                guard let t = arrays[k] else { throw TensorError("\(data): no array '\(k)' (expected x_train, y_train, x_test, y_test; found \(arrays.keys.sorted().joined(separator: ", ")))") }
                return t
            }
            func dataset(_ x: Tensor, _ y: Tensor) throws -> LabeledDataset {
                let labels = y.scalars.map { Int($0) }
                return try LabeledDataset(features: x, labels: labels, numClasses: (labels.max() ?? 0) + 1)
            }
            return (try dataset(need("x_train"), need("y_train")), try dataset(need("x_test"), need("y_test")))
        default:
            throw TensorError("unknown data '\(data)'; valid: \(names.joined(separator: ", "))")
        }
    }
}
