import DistillNN
import DistillTensor
import Foundation

/// An int8 student written as a QDQ ONNX graph: the layout onnxruntime's own `quantize_static`
/// writes, which any ONNX runtime runs (in float, or fused into integer kernels where it can).
///
/// - the input goes through QuantizeLinear → DequantizeLinear with the student's input scale and
///   zero point (UINT8);
/// - each weight is an INT8 initializer read through DequantizeLinear with its per-output-channel
///   scales (axis 0, zero points 0); biases stay FLOAT;
/// - each layer's output (after its ReLU) goes through QuantizeLinear → DequantizeLinear with the
///   scale and zero point the student stores it with, and so does each pooling's output (the
///   int8 plan rounds an average to its input's scale); the last layer's output is the logits.
///
/// The graph therefore computes exactly the int8 student's quantized values, up to the rounding
/// of float sums at the midpoint between two steps. Preprocessing (a tabular student's
/// standardisation) goes in front as in `ONNXExport`. Opset 13 or later (per-axis scales).
extension ONNXExport {
    public static func serializeQDQ(_ student: QuantizedStudent, opset: Int = 17, metadata: [String: String] = [:],
                                    preprocessing: Preprocessing = .init(), inputName: String = "input", outputName: String = "logits") throws -> Data {
        guard supportedOpsets.contains(opset), opset >= 13 else {
            throw ONNXError("opset \(opset): QDQ export needs opset 13 or later (per-channel DequantizeLinear), up to \(supportedOpsets.upperBound)")
        }
        let builder = GraphBuilder(opset: opset)
        let inputShape = student.info.inputShape
        var x = inputName
        let features = inputShape.reduce(1, *)
        for (name, values, op) in [("input_mean", preprocessing.inputMean, "Sub"),
                                   ("input_std", preprocessing.inputStd.map { $0.map { $0 < 1e-6 ? 1 : $0 } }, "Div")] {
            guard let values else { continue }
            guard values.count == features || values.count == 1 else { throw ONNXError("\(name) has \(values.count) values; inputs have \(features) features") }
            x = builder.add(op, [x, try builder.constant("preprocessing.\(name)", Tensor(shape: values.count == 1 ? [] : inputShape, scalars: values))], path: "preprocessing")
        }

        /// Quantize then dequantize `value` as `q` stores it.
        func qdq(_ value: String, _ q: ActivationQuantization, _ path: String) throws -> String {
            let scale = try builder.constant("\(path).scale", Tensor(scalar: q.scale))
            let zero = "\(path).zero_point"
            builder.initializers.append(try ONNXValue.int(IntTensor(shape: [], values: [Int64(q.zeroPoint)], type: .uint8)).encoded(name: zero))
            let quantized = builder.add("QuantizeLinear", [value, scale, zero], path: path)
            return builder.add("DequantizeLinear", [quantized, scale, zero], path: path)
        }
        /// The INT8 weight read through a per-channel DequantizeLinear.
        func weight(_ w: QuantizedWeight, _ path: String) throws -> String {
            let name = "\(path).weight_int8", zero = "\(path).weight_zero_point"
            builder.initializers.append(try ONNXValue.int(IntTensor(shape: w.shape, values: w.values.map(Int64.init), type: .int8)).encoded(name: name))
            builder.initializers.append(try ONNXValue.int(IntTensor(shape: [w.scales.count], values: [Int64](repeating: 0, count: w.scales.count), type: .int8)).encoded(name: zero))
            let scale = try builder.constant("\(path).weight_scale", Tensor(w.scales))
            return builder.add("DequantizeLinear", [name, scale, zero], path: path, [attribute("axis", int: 0)])
        }

        x = try qdq(x, student.input, "input_quantization")
        var current = student.input
        var rank = inputShape.count + 1
        for (k, layer) in student.layers.enumerated() {
            let path = "\(k)"
            switch layer {
            case .linear(let w, let bias, let relu, let output):
                if rank > 2 { x = builder.add("Flatten", [x], path: path, [attribute("axis", int: 1)]); rank = 2 }
                var inputs = [x, try weight(w, path)]
                if let bias { inputs.append(try builder.constant("\(path).bias", Tensor(bias))) }
                x = builder.add("Gemm", inputs, path: path, [attribute("transB", int: 1)])
                if relu { x = builder.add("Relu", [x], path: path) }
                if let output { x = try qdq(x, output, "\(path).output"); current = output }
            case .convolution(let w, let bias, let stride, let padding, let relu, let output):
                var inputs = [x, try weight(w, path)]
                if let bias { inputs.append(try builder.constant("\(path).bias", Tensor(bias))) }
                x = builder.add("Conv", inputs, path: path, [
                    attribute("kernel_shape", ints: Array(w.shape[2...])), attribute("strides", ints: stride),
                    attribute("pads", ints: padding + padding), attribute("dilations", ints: [1, 1]), attribute("group", int: 1),
                ])
                if relu { x = builder.add("Relu", [x], path: path) }
                x = try qdq(x, output, "\(path).output")
                current = output
            case .maxPool(let kernel, let stride, let padding):
                x = builder.add("MaxPool", [x], path: path, [attribute("kernel_shape", ints: kernel), attribute("strides", ints: stride), attribute("pads", ints: padding + padding)])
                x = try qdq(x, current, "\(path).output")
            case .avgPool(let kernel, let stride, let padding):
                x = builder.add("AveragePool", [x], path: path, [attribute("kernel_shape", ints: kernel), attribute("strides", ints: stride),
                                                                attribute("pads", ints: padding + padding), attribute("count_include_pad", int: 1)])
                x = try qdq(x, current, "\(path).output")
            case .globalAvgPool:
                x = builder.add("GlobalAveragePool", [x], path: path)
                x = try qdq(x, current, "\(path).output")
                x = builder.add("Flatten", [x], path: path, [attribute("axis", int: 1)])
                rank = 2
            case .flatten:
                x = builder.add("Flatten", [x], path: path, [attribute("axis", int: 1)])
                rank = 2
            }
        }
        builder.nodes.append(node("Identity", [x], [outputName], name: "output"))

        // The logits' width is the last linear layer's output count.
        var classes = student.info.numClasses
        if case .linear(let w, _, _, _)? = student.layers.last { classes = w.shape[0] }
        let proto = model(named: "distillkit-int8", builder: builder, input: (inputName, inputShape), output: (outputName, [classes]),
                          opset: opset, metadata: metadata)
        return try proto.serializedBytes()
    }

    /// Writes `student` to `url` as QDQ ONNX, atomically.
    public static func writeQDQ(_ student: QuantizedStudent, to url: URL, opset: Int = 17, metadata: [String: String] = [:],
                                preprocessing: Preprocessing = .init()) throws {
        let data = try serializeQDQ(student, opset: opset, metadata: metadata, preprocessing: preprocessing)
        do { try AtomicFile.write(data, to: url) } catch let error as TensorError { throw ONNXError(error.message) }
    }
}
