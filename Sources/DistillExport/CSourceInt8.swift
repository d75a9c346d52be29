import DistillNN
import Foundation

extension CSourceExport {
    /// The C99 source and header of an int8 student (`distill quantize`): integer arithmetic as
    /// DistillKit's int8 path runs it, so the outputs are the same floats bit for bit.
    ///
    /// Activations are bytes (`q`, with a scale and zero point per tensor), weights signed bytes
    /// with a scale per output channel. A convolution or linear layer sums `(q − zero point) · w`
    /// in an int32 accumulator, then requantises: `v = (float)acc · scale + bias` (scale =
    /// s_in · s_w / s_out, bias / s_out, both computed as DistillKit computes them), clamped to
    /// ±32768, rounded to nearest even, shifted by the output's zero point and clamped to a byte
    /// (from the zero point when a ReLU follows). The last layer writes `(float)acc · scale + bias`
    /// as the output. Pooling works on the bytes (max exactly; average as the rounded mean of
    /// `q − zero point`). The input is standardised (tabular models) and quantized from floats.
    /// Sums are `int` (`dk_acc`): an int8 student sums at most `QuantizedPlan.maxProductsPerSum`
    /// products, which an int32 holds (a convolution clips its window to the image once per
    /// position instead of testing every tap: integer sums in any order are equal).
    /// Floating-point contraction stays off (ISO C mode in GCC, a pragma for clang) so every
    /// `a · b + c` rounds twice, as DistillKit's kernels do.
    public static func generate(_ student: QuantizedStudent, preprocessing: ExportPreprocessing = .init(),
                                options: Options = .init()) throws -> (source: String, header: String) {
        let prefix = options.prefix
        try checkPrefix(prefix)
        let shape = student.info.inputShape
        guard shape.count == 1 || shape.count == 3 else {
            throw ExportError(format: format, "int8 inputs of shape \(shape): DistillKit exports feature vectors [F] and images [C, H, W]")
        }
        var body: [String] = []
        var constants: [String] = []
        var used = Set<Int8Helper>()
        // The activation's shape ([C, H, W] or [F]), its quantization, and which byte buffer holds it.
        var current = shape, quantization = student.input, buffer = 0
        var largest = shape.reduce(1, *)
        let features = shape.reduce(1, *)
        func next() -> Int { 1 - buffer }
        func bytes(_ b: Int) -> String { "q\(b)" }

        // Standardise (tabular), then quantize the input.
        var standardize = "0, 0, 0"
        if let mean = preprocessing.inputMean, let std = preprocessing.inputStd {
            guard mean.count == std.count, mean.count == features || mean.count == 1 else {
                throw ExportError(format: format, "the input statistics have \(mean.count) means for \(features) features")
            }
            constants.append(array("input_mean", mean))
            constants.append(array("input_scale", std.map { $0 < 1e-6 ? 1 : 1 / $0 }))
            standardize = "input_mean, input_scale, \(mean.count)"
        }
        used.insert(.quantize)
        body.append("    /* input: \(shape), quantized with scale \(student.input.scale), zero point \(student.input.zeroPoint) */")
        body.append("    dk_quantize(input, \(bytes(buffer)), \(features), \(standardize), \(floatLiteral(1 / student.input.scale)), \(student.input.zeroPoint));")

        var floatOutput: Int?
        // The most products any one accumulator sums (a linear layer's inputs, a convolution's window × channels).
        var maxProducts = 0
        for layer in student.layers {
            switch layer {
            case let .linear(w, _, _, _): maxProducts = max(maxProducts, w.shape.dropFirst().reduce(1, *))
            case let .convolution(w, _, _, _, _, _): maxProducts = max(maxProducts, w.shape.dropFirst().reduce(1, *))
            default: break
            }
        }
        for (index, layer) in student.layers.enumerated() {
            let tag = "l\(index)"
            switch layer {
            case let .convolution(w, bias, stride, padding, relu, output):
                guard current.count == 3, w.shape.count == 4, w.shape[1] == current[0], stride.count == 2, padding.count == 2 else {
                    throw ExportError(format: format, "int8 layer \(index): a convolution \(w.shape) does not fit its input \(current)")
                }
                let (outs, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
                let oh = (current[1] + 2 * padding[0] - kh) / stride[0] + 1, ow = (current[2] + 2 * padding[1] - kw) / stride[1] + 1
                let (scale, b) = epilogue(input: quantization, weightScales: w.scales, bias: bias, output: output)
                constants += [int8Array("\(tag)_weight", w.values), array("\(tag)_scale", scale), array("\(tag)_bias", b)]
                used.insert(.convolution); used.insert(.requantize)
                body.append("    dk_conv2d_int8(\(bytes(buffer)), \(bytes(next())), \(tag)_weight, \(tag)_scale, \(tag)_bias, \(current[0]), \(current[1]), \(current[2]), "
                            + "\(quantization.zeroPoint), \(outs), \(kh), \(kw), \(stride[0]), \(stride[1]), \(padding[0]), \(padding[1]), \(oh), \(ow), \(output.zeroPoint), \(relu ? 1 : 0));")
                current = [outs, oh, ow]; quantization = output; buffer = next()
            case let .maxPool(k, s, p), let .avgPool(k, s, p):
                guard current.count == 3, k.count == 2, s.count == 2, p.count == 2 else {
                    throw ExportError(format: format, "int8 layer \(index): pooling on a \(current) value")
                }
                var average = false
                if case .avgPool = layer { average = true }
                let oh = (current[1] + 2 * p[0] - k[0]) / s[0] + 1, ow = (current[2] + 2 * p[1] - k[1]) / s[1] + 1
                used.insert(.pool)
                body.append("    dk_pool_int8(\(bytes(buffer)), \(bytes(next())), \(current[0]), \(current[1]), \(current[2]), \(k[0]), \(k[1]), \(s[0]), \(s[1]), "
                            + "\(p[0]), \(p[1]), \(oh), \(ow), \(quantization.zeroPoint), \(average ? 1 : 0));")
                current = [current[0], oh, ow]; buffer = next()
            case .globalAvgPool:
                guard current.count == 3 else { throw ExportError(format: format, "int8 layer \(index): global pooling on a \(current) value") }
                used.insert(.pool)
                body.append("    dk_pool_int8(\(bytes(buffer)), \(bytes(next())), \(current[0]), \(current[1]), \(current[2]), \(current[1]), \(current[2]), "
                            + "\(current[1]), \(current[2]), 0, 0, 1, 1, \(quantization.zeroPoint), 1);")
                current = [current[0], 1, 1]; buffer = next()
            case .flatten:
                current = [current.reduce(1, *)]
            case let .linear(w, bias, relu, output):
                let inputs = current.reduce(1, *)
                guard w.shape.count == 2, w.shape[1] == inputs else {
                    throw ExportError(format: format, "int8 layer \(index): a linear layer \(w.shape) does not fit its \(inputs) inputs")
                }
                let outs = w.shape[0]
                let (scale, b) = epilogue(input: quantization, weightScales: w.scales, bias: bias, output: output)
                constants += [int8Array("\(tag)_weight", w.values), array("\(tag)_scale", scale), array("\(tag)_bias", b)]
                used.insert(.linear)
                used.insert(.requantize)  // dk_linear_int8 calls it for byte outputs
                if let output {
                    body.append("    dk_linear_int8(\(bytes(buffer)), \(bytes(next())), 0, \(tag)_weight, \(tag)_scale, \(tag)_bias, \(inputs), \(outs), "
                                + "\(quantization.zeroPoint), \(output.zeroPoint), \(relu ? 1 : 0));")
                    quantization = output; buffer = next()
                } else {
                    guard index == student.layers.count - 1 else {
                        throw ExportError(format: format, "int8 layer \(index): only the last layer may write floats")
                    }
                    body.append("    dk_linear_int8(\(bytes(buffer)), 0, logits, \(tag)_weight, \(tag)_scale, \(tag)_bias, \(inputs), \(outs), "
                                + "\(quantization.zeroPoint), 0, 0);")
                    floatOutput = outs
                }
                current = [outs]
            }
            largest = max(largest, current.reduce(1, *))
        }
        guard let outputs = floatOutput else {
            throw ExportError(format: format, "the int8 student does not end with a linear layer writing floats")
        }
        let names = options.classNames ?? (0..<outputs).map(String.init)
        guard names.count == outputs else { throw ExportError(format: format, "\(names.count) class names for \(outputs) outputs") }

        // Workspace: the logits, then two byte buffers for the activations.
        let workspaceFloats = outputs + 2 * ((largest + 3) / 4)
        let h = header(options, inputShape: shape, outputs: outputs, workspaceFloats: workspaceFloats,
                       arithmetic: "int8 weights, uint8 activations, int32 accumulators (DistillKit's int8 path, bit for bit)")
        let upper = prefix.uppercased()
        var c = ["/* Generated by DistillKit: the int8 student as plain C99 integer arithmetic. Do not edit; re-export instead. */",
                 "#include \"\(options.headerName)\"", "#include <math.h>",
                 "#if defined(__clang__)", "#pragma STDC FP_CONTRACT OFF", "#endif", ""]
        c.append("const char *const \(prefix)_class_names[\(upper)_OUTPUT_SIZE] = {\n" + names.map { "    " + cString($0) }.joined(separator: ",\n") + "\n};\n")
        c += constants
        // The accumulator: int, which no sum overflows (QuantizedPlan refuses wider layers).
        guard maxProducts <= QuantizedPlan.maxProductsPerSum else {
            throw ExportError(format: format, "a layer sums \(maxProducts) products, more than an int32 holds (\(QuantizedPlan.maxProductsPerSum))")
        }
        c.append("/* Sums of (q - zero point) * w: |each product| <= 255 * 127, at most \(maxProducts) per sum: int never overflows. */\ntypedef int dk_acc;\n")
        for helper in Int8Helper.allCases where used.contains(helper) { c.append(helper.source) }
        let workspace = """
            float *ws = workspace;
                float *logits = workspace;
                unsigned char *q0 = (unsigned char *)(workspace + \(outputs)), *q1 = q0 + \(4 * ((largest + 3) / 4));
                (void)q1; /* unused by a one-layer model */
            """
        c += api(prefix, body: body, result: "logits", workspace: workspace)
        return (c.joined(separator: "\n"), h)
    }

    /// Writes an int8 student's `source` and its header, atomically, after generating both.
    public static func write(_ student: QuantizedStudent, preprocessing: ExportPreprocessing = .init(), to source: URL, options: Options = .init()) throws -> URL {
        let header = source.deletingPathExtension().appendingPathExtension("h")
        var options = options
        options.headerName = header.lastPathComponent
        let (c, h) = try generate(student, preprocessing: preprocessing, options: options)
        try writeAtomically(Data(h.utf8), to: header, format: format)
        try writeAtomically(Data(c.utf8), to: source, format: format)
        return header
    }

    /// The requantisation constants DistillKit's int8 plan uses: s_in · s_w / s_out and bias / s_out
    /// (s_out = 1 for the float output), in the same Float operations.
    static func epilogue(input: ActivationQuantization, weightScales: [Float], bias: [Float]?, output: ActivationQuantization?) -> ([Float], [Float]) {
        let outScale = output?.scale ?? 1
        let scale = weightScales.map { input.scale * $0 / outScale }
        let b = (0..<weightScales.count).map { $0 < (bias?.count ?? 0) ? bias![$0] / outScale : 0 }
        return (scale, b)
    }

    static func int8Array(_ name: String, _ values: [Int8]) -> String {
        var lines = ["static const signed char \(name)[\(max(values.count, 1))] = {"]
        var line = "   "
        for (i, v) in values.enumerated() {
            line += " \(v)" + (i + 1 < values.count ? "," : "")
            if line.count > 110 { lines.append(line); line = "   " }
        }
        if line.count > 3 { lines.append(line) }
        if values.isEmpty { lines.append("    0") }
        lines.append("};")
        return lines.joined(separator: "\n")
    }

    enum Int8Helper: CaseIterable {
        case requantize, quantize, convolution, linear, pool

        var source: String {
            switch self {
            case .requantize: return """
                /* An int32 sum to the next layer's byte: (float)acc * scale + bias, clamped, rounded to nearest even, shifted. */
                static unsigned char dk_requantize(dk_acc acc, float scale, float bias, int zero_point, int relu) {
                    float v = (float)acc * scale;
                    long q;
                    int low = relu ? zero_point : 0;
                    v = v + bias;
                    v = fminf(fmaxf(v, -32768.0f), 32768.0f);
                    q = (long)nearbyintf(v) + zero_point;
                    return (unsigned char)(q < low ? low : q > 255 ? 255 : q);
                }

                """
            case .quantize: return """
                /* Floats to bytes: x (standardised when mean is given) * inv_scale, rounded to nearest even, plus the zero point. */
                static void dk_quantize(const float *x, unsigned char *q, int count, const float *mean, const float *scale, int pairs,
                                        float inv_scale, int zero_point) {
                    int i;
                    for (i = 0; i < count; ++i) {
                        float v = x[i];
                        long r;
                        if (mean != 0) { int j = pairs == 1 ? 0 : i; v = (v - mean[j]) * scale[j]; }
                        v = v * inv_scale;
                        v = v != v ? 0.0f : fminf(fmaxf(v, -32768.0f), 32768.0f);
                        r = (long)nearbyintf(v) + zero_point;
                        q[i] = (unsigned char)(r < 0 ? 0 : r > 255 ? 255 : r);
                    }
                }

                """
            case .convolution: return """
                /* Convolution on bytes, C, H, W layout: sum of (q - zin) * w over the window (padding adds nothing), requantised. */
                static void dk_conv2d_int8(const unsigned char *x, unsigned char *y, const signed char *w, const float *scale, const float *bias,
                                           int cin, int h, int wi, int zin, int cout, int kh, int kw, int sh, int sw, int ph, int pw,
                                           int oh, int ow, int zout, int relu) {
                    int o, c, u, v, p, q;
                    for (o = 0; o < cout; ++o) {
                        for (p = 0; p < oh; ++p) {
                            /* The window's rows inside the image: u0 <= u < u1. */
                            const int y0 = p * sh - ph, u0 = y0 < 0 ? -y0 : 0, u1 = y0 + kh > h ? h - y0 : kh;
                            for (q = 0; q < ow; ++q) {
                                const int x0 = q * sw - pw, v0 = x0 < 0 ? -x0 : 0, v1 = x0 + kw > wi ? wi - x0 : kw;
                                dk_acc acc = 0;
                                for (c = 0; c < cin; ++c) {
                                    const unsigned char *plane = x + (long)c * h * wi;
                                    const signed char *kernel = w + ((long)o * cin + c) * kh * kw;
                                    for (u = u0; u < u1; ++u) {
                                        const unsigned char *in = plane + (long)(y0 + u) * wi;
                                        const signed char *k = kernel + u * kw;
                                        for (v = v0; v < v1; ++v) acc += (dk_acc)((int)in[x0 + v] - zin) * k[v];
                                    }
                                }
                                y[((long)o * oh + p) * ow + q] = dk_requantize(acc, scale[o], bias[o], zout, relu);
                            }
                        }
                    }
                }

                """
            case .linear: return """
                /* Fully connected on bytes: sum of (q - zin) * w, requantised to bytes, or (float)acc * scale + bias into floats. */
                static void dk_linear_int8(const unsigned char *x, unsigned char *y, float *y_float, const signed char *w, const float *scale,
                                           const float *bias, int inputs, int outputs, int zin, int zout, int relu) {
                    int o, i;
                    for (o = 0; o < outputs; ++o) {
                        const signed char *row = w + (long)o * inputs;
                        dk_acc acc = 0;
                        for (i = 0; i < inputs; ++i) acc += (dk_acc)((int)x[i] - zin) * row[i];
                        if (y_float != 0) {
                            float v = (float)acc * scale[o];
                            y_float[o] = v + bias[o];
                        } else {
                            y[o] = dk_requantize(acc, scale[o], bias[o], zout, relu);
                        }
                    }
                }

                """
            case .pool: return """
                /* Pooling on bytes: the largest byte (padding never wins), or the rounded mean of q - zero point over the
                   window's area (padding counts as zero) shifted back. */
                static void dk_pool_int8(const unsigned char *x, unsigned char *y, int c, int h, int w, int kh, int kw, int sh, int sw,
                                         int ph, int pw, int oh, int ow, int zero_point, int average) {
                    const float area = (float)(kh * kw);
                    int k, p, q, i, j;
                    for (k = 0; k < c; ++k) {
                        const unsigned char *in = x + (long)k * h * w;
                        for (p = 0; p < oh; ++p) for (q = 0; q < ow; ++q) {
                            long sum = average ? 0 : -1, r;
                            for (i = p * sh - ph; i < p * sh - ph + kh; ++i) {
                                if (i < 0 || i >= h) continue;
                                for (j = q * sw - pw; j < q * sw - pw + kw; ++j) {
                                    if (j < 0 || j >= w) continue;
                                    if (average) sum += (long)in[i * w + j] - zero_point;
                                    else if (in[i * w + j] > sum) sum = in[i * w + j];
                                }
                            }
                            r = average ? (long)nearbyintf((float)sum / area) + zero_point : sum;
                            y[((long)k * oh + p) * ow + q] = (unsigned char)(r < 0 ? 0 : r > 255 ? 255 : r);
                        }
                    }
                }

                """
            }
        }
    }
}
