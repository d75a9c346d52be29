import DistillTensor
import Foundation

/// An int8 student on disk: a safetensors file whose weights are I8 tensors beside F32 scales and
/// biases, with the float model's description (`distillkit.spec`, `input_shape`, `num_classes`,
/// its preprocessing) and `distillkit.quantization = int8` in the metadata. `SavedModel.load`
/// recognises such a file and returns a `QuantizedModel`, so every command that takes a model
/// takes it.
///
/// Tensors: `input.scale` [1]; per computational layer k, `layers.k.weight` (I8, the float
/// layer's shape), `layers.k.weight_scale` [out], `layers.k.bias` [out] (when it has one),
/// `layers.k.output_scale` [1] (all but the last). The metadata entry `distillkit.int8.layers` is
/// a JSON list of the layers (op, stride, padding, ReLU, output zero point).
extension QuantizedStudent {
    /// The metadata value that marks an int8 file.
    public static let marker = "int8"
    static let markerKey = "distillkit.quantization"

    /// The file's bytes.
    public func encoded() -> Data {
        var floats: [String: (shape: [Int], values: [Float])] = ["input.scale": ([1], [input.scale])]
        var bytes: [String: (shape: [Int], values: [Int8])] = [:]
        var descriptions: [[String: Any]] = []
        for (k, layer) in layers.enumerated() {
            var d: [String: Any]
            func store(_ w: QuantizedWeight, _ bias: [Float]?, _ output: ActivationQuantization?) {
                bytes["layers.\(k).weight"] = (w.shape, w.values)
                floats["layers.\(k).weight_scale"] = ([w.scales.count], w.scales)
                if let bias { floats["layers.\(k).bias"] = ([bias.count], bias) }
                if let output { floats["layers.\(k).output_scale"] = ([1], [output.scale]); d["output_zero_point"] = Int(output.zeroPoint) }
                d["bias"] = bias != nil
            }
            switch layer {
            case .linear(let w, let bias, let relu, let output):
                d = ["op": "linear", "relu": relu]
                store(w, bias, output)
            case .convolution(let w, let bias, let stride, let padding, let relu, let output):
                d = ["op": "conv", "relu": relu, "stride": stride, "padding": padding]
                store(w, bias, output)
            case .maxPool(let kernel, let stride, let padding): d = ["op": "max_pool", "kernel": kernel, "stride": stride, "padding": padding]
            case .avgPool(let kernel, let stride, let padding): d = ["op": "avg_pool", "kernel": kernel, "stride": stride, "padding": padding]
            case .globalAvgPool: d = ["op": "global_avg_pool"]
            case .flatten: d = ["op": "flatten"]
            }
            descriptions.append(d)
        }
        var metadata = info.savedModel.metadata
        metadata[Self.markerKey] = Self.marker
        metadata["distillkit.int8.layers"] = String(decoding: try! JSONSerialization.data(withJSONObject: descriptions, options: [.sortedKeys]), as: UTF8.self)
        metadata["distillkit.int8.input_zero_point"] = String(input.zeroPoint)
        metadata["distillkit.int8.calibration"] = calibration.rawValue

        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        let names = (Array(floats.keys) + Array(bytes.keys)).sorted()
        for name in names {
            if let f = floats[name] {
                header[name] = ["dtype": "F32", "shape": f.shape, "data_offsets": [offset, offset + 4 * f.values.count]] as [String: Any]
                offset += 4 * f.values.count
            } else if let b = bytes[name] {
                header[name] = ["dtype": "I8", "shape": b.shape, "data_offsets": [offset, offset + b.values.count]] as [String: Any]
                offset += b.values.count
            }
        }
        var json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names {
            if let f = floats[name] { f.values.withUnsafeBytes { out.append(contentsOf: $0) } }  // little-endian hosts only (x86-64, arm64)
            else if let b = bytes[name] { b.values.withUnsafeBytes { out.append(contentsOf: $0) } }
        }
        return out
    }

    /// Writes the file atomically.
    public func save(to url: URL) throws { try AtomicFile.write(encoded(), to: url) }

    /// The int8 student in `data`, nil when the bytes are a safetensors file without the int8
    /// marker (a float model), or an error naming `name` and the problem for a malformed one.
    public static func decodeIfQuantized(_ data: Data, name: String) throws -> QuantizedStudent? {
        func fail(_ why: String) -> TensorError { TensorError("\(name): not a valid int8 model file: \(why)") }
        guard data.count >= 8 else { return nil }  // the float reader reports it
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(Safetensors.maxHeaderBytes), headerLength <= UInt64(data.count - 8) else { return nil }
        let headerEnd = 8 + Int(headerLength)
        guard let header = (try? JSONSerialization.jsonObject(with: data.subdata(in: data.startIndex + 8 ..< data.startIndex + headerEnd))) as? [String: Any],
              let metadata = header["__metadata__"] as? [String: String], let marker = metadata[markerKey] else { return nil }
        guard marker == Self.marker else { throw fail("\(markerKey) is '\(marker.prefix(40))'; DistillKit reads '\(Self.marker)'") }

        // Tensors: F32 and I8 only, each inside the data section, none overlapping.
        let body = data.count - headerEnd
        var floats: [String: (shape: [Int], values: [Float])] = [:], bytes: [String: (shape: [Int], values: [Int8])] = [:]
        var ranges: [(Int, Int)] = []
        for (key, value) in header where key != "__metadata__" {
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String, let shape = entry["shape"] as? [Int],
                  let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else { throw fail("entry '\(key)' lacks dtype, shape or data_offsets") }
            guard dtype == "F32" || dtype == "I8" else { throw fail("tensor '\(key)' has dtype \(dtype); int8 files hold F32 and I8") }
            var count = 1
            for d in shape {
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                guard d >= 0, !overflow, p <= body else { throw fail("tensor '\(key)' declares shape \(shape), larger than the file") }
                count = p
            }
            let width = dtype == "F32" ? 4 : 1
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= body, offsets[1] - offsets[0] == count * width else {
                throw fail("tensor '\(key)' has data_offsets \(offsets) that do not hold \(count) values of \(dtype) in the \(body)-byte data section")
            }
            ranges.append((offsets[0], offsets[1]))
            data.withUnsafeBytes { raw in
                let base = raw.baseAddress! + headerEnd + offsets[0]
                if width == 4 {
                    floats[key] = (shape, (0..<count).map { Float(bitPattern: base.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) })
                } else {
                    bytes[key] = (shape, (0..<count).map { Int8(bitPattern: base.load(fromByteOffset: $0, as: UInt8.self)) })
                }
            }
        }
        ranges.sort { $0 < $1 }
        var end = 0
        for r in ranges {
            guard r.0 >= end else { throw fail("two tensors' data ranges overlap at byte \(r.0)") }
            end = r.1
        }

        // The float model's description, checked as SavedModel checks it.
        guard let spec = metadata["distillkit.spec"] else { throw fail("no distillkit.spec (the float model it was quantized from)") }
        let shape = (metadata["distillkit.input_shape"] ?? "").split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !shape.isEmpty, shape.allSatisfy({ $0 != nil }) else { throw fail("distillkit.input_shape must be a comma-separated list of integers") }
        try ModelShapes.checkExampleShape(shape.map { $0! }, what: name)
        guard let classes = Int(metadata["distillkit.num_classes"] ?? ""), (1...ModelZoo.maxClasses).contains(classes) else {
            throw fail("distillkit.num_classes must be a class count (1...\(ModelZoo.maxClasses))")
        }
        let description = SavedModel(spec: spec, inputShape: shape.map { $0! }, numClasses: classes,
                                     extra: metadata.filter { !$0.key.hasPrefix("distillkit.") && $0.key != "format" })
        func scalar(_ key: String) throws -> Float {
            guard let f = floats[key], f.values.count == 1, f.values[0] > 0, f.values[0].isFinite else { throw fail("'\(key)' must hold one positive finite scale") }
            return f.values[0]
        }
        func zeroPoint(_ value: Any?, _ what: String) throws -> Int32 {
            guard let z = value as? Int, (0...255).contains(z) else { throw fail("\(what): the zero point must be an integer in 0...255") }
            return Int32(z)
        }
        func pair(_ value: Any?, _ what: String) throws -> [Int] {
            guard let p = value as? [Int], p.count == 2, p.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else { throw fail("\(what) must be two integers in 0...65536") }
            return p
        }
        guard let text = metadata["distillkit.int8.layers"],
              let list = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]], !list.isEmpty, list.count <= 4096 else {
            throw fail("distillkit.int8.layers must be a JSON list of layers")
        }
        let input = ActivationQuantization(scale: try scalar("input.scale"),
                                           zeroPoint: try zeroPoint(Int(metadata["distillkit.int8.input_zero_point"] ?? ""), "distillkit.int8.input_zero_point"))
        guard let calibration = CalibrationMethod(rawValue: metadata["distillkit.int8.calibration"] ?? "") else {
            throw fail("distillkit.int8.calibration must be one of \(CalibrationMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var layers: [QuantizedLayer] = []
        var used: Set<String> = ["input.scale"]
        for (k, d) in list.enumerated() {
            let op = d["op"] as? String ?? ""
            func weight() throws -> (QuantizedWeight, [Float]?) {
                guard let w = bytes["layers.\(k).weight"], let s = floats["layers.\(k).weight_scale"], w.shape.count >= 2, s.values.count == w.shape[0],
                      s.values.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                    throw fail("layer \(k) (\(op)) needs an I8 'layers.\(k).weight' and one positive scale per output in 'layers.\(k).weight_scale'")
                }
                var bias: [Float]? = nil
                if d["bias"] as? Bool == true {
                    guard let b = floats["layers.\(k).bias"], b.values.count == w.shape[0], b.values.allSatisfy(\.isFinite) else {
                        throw fail("layer \(k) (\(op)) needs a finite 'layers.\(k).bias' of \(w.shape[0]) values")
                    }
                    bias = b.values
                    used.insert("layers.\(k).bias")
                }
                used.formUnion(["layers.\(k).weight", "layers.\(k).weight_scale"])
                return (QuantizedWeight(shape: w.shape, values: w.values, scales: s.values), bias)
            }
            func output() throws -> ActivationQuantization {
                used.insert("layers.\(k).output_scale")
                return ActivationQuantization(scale: try scalar("layers.\(k).output_scale"), zeroPoint: try zeroPoint(d["output_zero_point"], "layer \(k)"))
            }
            let relu = d["relu"] as? Bool ?? false
            switch op {
            case "linear":
                let (w, b) = try weight()
                layers.append(.linear(weight: w, bias: b, relu: relu, output: d["output_zero_point"] == nil ? nil : try output()))
            case "conv":
                let (w, b) = try weight()
                layers.append(.convolution(weight: w, bias: b, stride: try pair(d["stride"], "layer \(k)'s stride"),
                                           padding: try pair(d["padding"], "layer \(k)'s padding"), relu: relu, output: try output()))
            case "max_pool", "avg_pool":
                let (kernel, stride, padding) = (try pair(d["kernel"], "layer \(k)'s kernel"), try pair(d["stride"], "layer \(k)'s stride"), try pair(d["padding"], "layer \(k)'s padding"))
                layers.append(op == "max_pool" ? .maxPool(kernel: kernel, stride: stride, padding: padding) : .avgPool(kernel: kernel, stride: stride, padding: padding))
            case "global_avg_pool": layers.append(.globalAvgPool)
            case "flatten": layers.append(.flatten)
            default: throw fail("layer \(k) has op '\(op.prefix(40))'; int8 files hold linear, conv, max_pool, avg_pool, global_avg_pool and flatten")
            }
        }
        let unexpected = Set(floats.keys).union(bytes.keys).subtracting(used)
        guard unexpected.isEmpty else { throw fail("tensors no layer uses: \(unexpected.sorted().prefix(5).joined(separator: ", "))") }
        let student = QuantizedStudent(info: SavedModelDescription(description), input: input, layers: layers, calibration: calibration)
        // The plan checks that the layers chain; its message names the model.
        do { _ = try QuantizedPlan(student) } catch let error as TensorError { throw TensorError("\(name): \(error.message)") }
        return student
    }

    /// Reads an int8 student file.
    public static func load(_ url: URL) throws -> QuantizedStudent {
        let data = try SavedModel.readFile(url)
        guard let student = try decodeIfQuantized(data, name: url.path) else {
            throw TensorError("\(url.path): not an int8 model (no \(markerKey) entry in its metadata); make one with `distill quantize`")
        }
        return student
    }
}
