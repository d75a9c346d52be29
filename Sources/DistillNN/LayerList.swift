import DistillTensor
import Foundation

/// Builds a `Sequential` from a list of layer descriptions, the form a YAML model file takes:
///
/// ```yaml
/// layers:
///   - conv2d: {in: 1, out: 16, kernel: 3, padding: 1}
///   - batchnorm2d: {features: 16}
///   - relu
///   - maxpool2d: {kernel: 2}
///   - flatten
///   - linear: {in: 3136, out: 10}
/// ```
/// Each entry is a layer name, or a one-key map from the name to its options.
public enum LayerList {
    public static let layerNames = ["linear", "conv2d", "batchnorm1d", "batchnorm2d", "relu", "gelu", "sigmoid", "tanh",
                                    "leaky_relu", "maxpool2d", "avgpool2d", "global_avgpool2d", "flatten", "dropout", "residual"]

    /// Builds the layers in order; throws before allocating a layer that would take the model
    /// past `maxParameters`.
    public static func build(_ list: [Any], generator g: inout SeededGenerator, maxParameters: Int = ModelZoo.maxParameters) throws -> Sequential {
        guard !list.isEmpty else { throw TensorError("the layer list is empty") }
        guard list.count <= 10_000 else { throw TensorError("the layer list has \(list.count) layers; the limit is 10,000") }
        var budget = maxParameters
        return Sequential(try list.enumerated().map { index, item in try layer(item, index: index, &g, budget: &budget) })
    }

    static func layer(_ item: Any, index: Int, _ g: inout SeededGenerator, budget: inout Int) throws -> Module {
        let name: String, options: [String: Any]
        if let s = item as? String { name = s; options = [:] }
        else if let m = item as? [String: Any], m.count == 1, let (k, v) = m.first {
            name = k
            options = v as? [String: Any] ?? [:]
        } else { throw TensorError("layer \(index): write a layer as a name or {name: {options}}") }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = options[key] as? Int, v >= 0, v <= 1 << 24 { return v }
            if options[key] == nil, let fallback { return fallback }
            throw TensorError("layer \(index) (\(name)): option '\(key)' must be a non-negative integer")
        }
        func positive(_ key: String, _ fallback: Int? = nil) throws -> Int {
            let v = try int(key, fallback)
            guard v > 0 else { throw TensorError("layer \(index) (\(name)): option '\(key)' must be positive") }
            return v
        }
        // Parameters (upper bound) of this layer, spent from the budget before anything is allocated.
        func spend(_ factors: [Int]...) throws {
            var total = 0
            for term in factors {
                var p = 1
                for f in term { guard let m = checkedMul(p, f) else { p = Int.max; break }; p = m }
                let (t, o) = total.addingReportingOverflow(p)
                total = o ? Int.max : t
            }
            guard total <= budget else {
                throw TensorError("layer \(index) (\(name)) takes the model past the parameter limit (\(budget) left; ModelZoo.build's maxParameters is the limit, raise it if the model is real)")
            }
            budget -= total
        }
        switch name {
        case "linear": try spend([try positive("in"), try positive("out")], [try positive("out")]); return Linear(try positive("in"), try positive("out"), bias: options["bias"] as? Bool ?? true, generator: &g)
        case "conv2d":
            let cin = try positive("in"), cout = try positive("out"), groups = try positive("groups", 1)
            guard cin % groups == 0 && cout % groups == 0 else { throw TensorError("layer \(index) (conv2d): groups \(groups) must divide in \(cin) and out \(cout)") }
            try spend([cout, cin / groups, try positive("kernel"), try positive("kernel")], [cout])
            return Conv2d(cin, cout, kernel: try positive("kernel"), stride: try positive("stride", 1), padding: try int("padding", 0),
                          dilation: try positive("dilation", 1), groups: groups, bias: options["bias"] as? Bool ?? true, generator: &g)
        case "batchnorm1d": try spend([4, try positive("features")]); return BatchNorm1d(try positive("features"))
        case "batchnorm2d": try spend([4, try positive("features")]); return BatchNorm2d(try positive("features"))
        case "relu": return ReLU()
        case "gelu": return GELU()
        case "sigmoid": return Sigmoid()
        case "tanh": return Tanh()
        case "leaky_relu":
            let slope = options["slope"] as? Double ?? 0.01
            guard slope.isFinite else { throw TensorError("layer \(index) (leaky_relu): slope must be a finite number") }
            return LeakyReLU(slope: Float(slope))
        case "maxpool2d": return MaxPool2d(try positive("kernel"), stride: try positive("stride", try positive("kernel")), padding: try int("padding", 0))
        case "avgpool2d": return AvgPool2d(try positive("kernel"), stride: try positive("stride", try positive("kernel")), padding: try int("padding", 0))
        case "global_avgpool2d": return GlobalAvgPool2d()
        case "flatten": return Flatten()
        case "dropout":
            let p = options["p"] as? Double ?? 0.5
            guard p >= 0 && p < 1 else { throw TensorError("layer \(index) (dropout): p must be in [0, 1)") }
            return Dropout(Float(p), seed: g.next())
        case "residual":
            let cin = try positive("in"), cout = try positive("out")
            try spend([9, cin, cout], [9, cout, cout], [cin, cout], [12, cout])
            return ResidualBlock(try positive("in"), try positive("out"), stride: try positive("stride", 1), generator: &g)
        default: throw TensorError("layer \(index): unknown layer '\(name)'; valid: \(layerNames.joined(separator: ", "))")
        }
    }
}
