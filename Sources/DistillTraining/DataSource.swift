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

    /// `allowUnlabeled`: a `.csv` without `labelColumn` is read as unlabelled data (transfer data).
    public static func load(_ data: String, testData: String? = nil, labelColumn: String? = nil, seed: UInt64 = 0,
                            allowUnlabeled: Bool = false) throws -> (train: LabeledDataset, test: LabeledDataset) {
        switch data.lowercased() {
        case "fashion-mnist", "fashion_mnist", "fashionmnist": return try FashionMNIST.load()
        case "mnist": return try MNIST.load()
        default: break
        }
        let url = URL(fileURLWithPath: data)
        switch FileKind(data) {
        case .csv:
            guard labelColumn != nil || allowUnlabeled else { throw TensorError("\(data): name the label column with --label COLUMN") }
            let table = try CSVTable.load(url)
            // The test file is encoded with the training file's schema (same one-hot columns and classes).
            let schema = try table.inferSchema(labelColumn: labelColumn)
            let train = try table.dataset(schema: schema)
            if let testData {
                // The training file as its own test set (cache-teacher, data-report: every row, in file order) is read once.
                return (train, testData == data ? train : try CSVTable.read(URL(fileURLWithPath: testData), schema: schema))
            }
            let parts = try train.split(validationFraction: 0.2, seed: seed)
            return (parts.train, parts.validation)
        case .npz:
            return try NPZ.readClassification(url)
        default:
            throw TensorError("unknown data '\(data)'; valid: \(names.joined(separator: ", "))")
        }
    }

    /// Throws naming `name` and the first row of `dataset` with a NaN or infinite feature: a model
    /// scored on such a row gives a silently meaningless answer (a ReLU turns NaN into 0). 8-bit
    /// data is not scanned: its values are finite by construction.
    public static func requireFinite(_ dataset: LabeledDataset, name: String) throws {
        guard dataset.count > 0, !dataset.isFiniteByConstruction else { return }
        let block = 1024
        var start = 0
        while start < dataset.count {
            let rows = dataset.rows(Array(start..<min(start + block, dataset.count)))
            if let bad = rows.firstNonFiniteIndex {
                let perRow = max(1, rows.count / rows.shape[0])
                throw TensorError("\(name): row \(start + bad / perRow) holds \(rows.data[bad]) (feature \(bad % perRow)); features must be finite numbers")
            }
            start += block
        }
    }

    /// The rows of a `.csv` training file (in file order) that `load` keeps for training when it
    /// holds out the 20% validation split itself: the same seeded split as `LabeledDataset.split`.
    public static func csvTrainingRows(total: Int, seed: UInt64) -> [Int] {
        LabeledDataset.splitRows(count: total, validationFraction: 0.2, seed: seed).train
    }
}
