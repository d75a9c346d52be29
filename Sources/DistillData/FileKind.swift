import Foundation

/// What a file holds, decided by its extension (any case): the one place DistillKit reads a path's
/// ending, so every command treats `model.ONNX` and `data.Csv` alike.
public enum FileKind: String, Sendable {
    case safetensors, onnx, csv, npy, npz, yaml, other

    public init(_ path: String) {
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "safetensors": self = .safetensors
        case "onnx": self = .onnx
        case "csv": self = .csv
        case "npy": self = .npy
        case "npz": self = .npz
        case "yaml", "yml": self = .yaml
        default: self = .other
        }
    }
}
