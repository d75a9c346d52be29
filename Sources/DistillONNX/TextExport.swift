import DistillNN
import DistillTensor
import Foundation
import SwiftProtobuf

/// Writes a text student (`distill text-kd`: a `bert:` transformer or a `bag:` token bag) as an
/// ONNX file whose output is the student's sentence vector, L2-normalised, as DistillKit computes it.
///
/// The tokenizer stays outside the graph, as in Hugging Face's own ONNX exports: the file takes
/// the WordPiece ids of `tokenizer.json` (`[CLS]` … `[SEP]`, padded with 0) and the attention mask,
///
///     input_ids        INT64 [N, L]   token ids, each row's tokens first, then padding
///     attention_mask   INT64 [N, L]   1 for a token, 0 for padding
///     sentence_embedding FLOAT [N, D] the unit-length sentence vector
///
/// with N and L dynamic (L up to the student's positions for `bert:`). The graph is the
/// student's inference written out in standard operators:
/// - `bert:`: word + position (+ token type 0) embeddings, layer norm, per layer the Q, K and V
///   products, scaled scores with −1e9 on padding keys, softmax, the output product, add & norm,
///   the GELU feed-forward block and add & norm; mean pooling over the mask; the projection to
///   the teacher's width when the student has one; then L2 normalisation (‖v‖ clamped at 1e-12).
/// - `bag:`: the mean of the rows of the tokens and of their hashed bigrams (`TokenBag`), then
///   the linear layer and L2 normalisation. The bigram hash is computed in the graph with int64
///   arithmetic only (the bits of the product that the bucket index uses, XOR done bit by bit),
///   which needs a power-of-two number of buckets up to 2^15 (`bag:D` uses 2^15).
/// Layer norm is `LayerNormalization` from opset 17, and written out as reductions before it.
public enum TextONNXExport {
    public static let inputIDsName = "input_ids"
    public static let attentionMaskName = "attention_mask"
    public static let outputName = "sentence_embedding"

    /// The serialized `ModelProto` of `model`, a `Sequential` holding a `BertEncoder` (and maybe
    /// its projection `Linear`) or a `TokenBag`. Anything else is refused, naming it.
    public static func serialize(_ model: Module, opset: Int = 17, metadata: [String: String] = [:]) throws -> Data {
        try modelProto(model, opset: opset, metadata: metadata).serializedBytes()
    }

    static func modelProto(_ model: Module, opset: Int, metadata: [String: String]) throws -> Onnx_ModelProto {
        guard ONNXExport.supportedOpsets.contains(opset) else {
            throw ONNXError("opset \(opset) cannot be exported; DistillKit writes opsets \(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound)")
        }
        let layers = (model as? Sequential)?.layers ?? [model]
        let graph = TextGraph(opset: opset)
        var vector: String, width: Int
        switch (layers.first, layers.count) {
        case (let encoder as BertEncoder, 1), (let encoder as BertEncoder, 2):
            (vector, width) = (try graph.bert(encoder, path: "0"), encoder.config.hiddenSize)
            if layers.count == 2 {
                guard let projection = layers[1] as? Linear, projection.weight.shape[1] == width else {
                    throw ONNXError("cannot export a text student whose layer '1' is \(type(of: layers[1])): a bert: student ends in its encoder or one Linear projection")
                }
                vector = try graph.builder.emit(projection, path: "1", input: vector, sample: Tensor.zeros([1, width])).0
                width = projection.weight.shape[0]
            }
        case (let bag as TokenBag, 1):
            (vector, width) = (try graph.tokenBag(bag, path: "0"), bag.projection.weight.shape[0])
        default:
            throw ONNXError("cannot export \(layers.map { "\(type(of: $0))" }.joined(separator: ", ")) as a text student: ONNX export of text models takes bert: and bag: students")
        }
        let normalized = try graph.l2Normalized(vector)
        graph.builder.nodes.append(ONNXExport.node("Identity", [normalized], [outputName], name: "output"))

        var proto = ONNXExport.model(named: "distillkit-text", builder: graph.builder, input: ("unused", [1]), output: (outputName, [width]),
                                     opset: opset, metadata: metadata)
        proto.graph.input = [valueInfo(inputIDsName, .int64, ["N", "L"]), valueInfo(attentionMaskName, .int64, ["N", "L"])]
        proto.graph.output = [valueInfo(outputName, .float, ["N", width])]
        return proto
    }

    /// A tensor value-info whose extents are numbers or named dynamic axes.
    static func valueInfo(_ name: String, _ type: ONNXDataType, _ shape: [Any]) -> Onnx_ValueInfoProto {
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = type.rawValue
        var s = Onnx_TensorShapeProto()
        s.dim = shape.map { extent in
            var dim = Onnx_TensorShapeProto.Dimension()
            if let n = extent as? Int { dim.dimValue = Int64(n) } else { dim.dimParam = "\(extent)" }
            return dim
        }
        tensorType.shape = s
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType = tensorType
        return info
    }

    /// Runs the serialized file in DistillKit's ONNX runtime on `ids` ([n][≤ L] token ids,
    /// padded here) and returns the largest absolute difference from `expected` [n, D].
    public static func largestDifference(_ data: Data, ids: [[Int]], expected: Tensor) throws -> Float {
        let onnx = try ONNXModel(data: data, source: "the exported text student")
        let length = max(ids.map(\.count).max() ?? 1, 1)
        var padded = [Int64](repeating: 0, count: ids.count * length), mask = padded
        for (r, row) in ids.enumerated() {
            for (j, id) in row.enumerated() { padded[r * length + j] = Int64(id); mask[r * length + j] = 1 }
        }
        let outputs = try onnx.run([inputIDsName: .int(IntTensor(shape: [ids.count, length], values: padded)),
                                    attentionMaskName: .int(IntTensor(shape: [ids.count, length], values: mask))])
        guard case .float(let y)? = outputs[outputName], y.shape == expected.shape else {
            throw ONNXError("the exported text student gave no \(outputName) of shape \(expected.shape)")
        }
        var worst: Float = 0
        for i in 0..<y.count { worst = max(worst, abs(y.data[i] - expected.data[i])) }
        return worst.isNaN ? .infinity : worst
    }
}

/// Builds a text student's graph on a `GraphBuilder`: the two inputs, the mask as floats, and
/// helpers for the operators whose form changed between opsets (reductions, layer norm).
final class TextGraph {
    let builder: GraphBuilder
    var opset: Int { builder.opset }
    /// attention_mask as FLOAT [N, L].
    let mask: String

    init(opset: Int) {
        builder = GraphBuilder(opset: opset)
        mask = builder.add("Cast", [TextONNXExport.attentionMaskName], path: "mask", [ONNXExport.attribute("to", int: Int(ONNXDataType.float.rawValue))])
    }

    func add(_ op: String, _ inputs: [String], _ path: String, _ attributes: [Onnx_AttributeProto] = []) -> String {
        builder.add(op, inputs, path: path, attributes)
    }

    func float(_ name: String, _ t: Tensor) throws -> String { try builder.constant(name, t) }

    func ints(_ name: String, _ values: [Int64], shape: [Int]? = nil) throws -> String {
        builder.initializers.append(try ONNXValue.int(IntTensor(shape: shape ?? [values.count], values: values)).encoded(name: name))
        return name
    }

    /// `x` reshaped with an ONNX shape (0 keeps the input's extent, −1 is inferred).
    func reshape(_ x: String, _ shape: [Int64], _ name: String) throws -> String {
        add("Reshape", [x, try ints(name, shape)], name)
    }

    /// ReduceSum / ReduceMean over `axes`: the axes are an input from opset 13 (ReduceSum) or 18
    /// (the others), an attribute before.
    func reduce(_ op: String, _ x: String, axes: [Int], keep: Bool, _ path: String) throws -> String {
        let since = op == "ReduceSum" ? 13 : 18
        let keepdims = ONNXExport.attribute("keepdims", int: keep ? 1 : 0)
        if opset >= since { return add(op, [x, try ints(builder.value(path, "axes"), axes.map(Int64.init))], path, [keepdims]) }
        return add(op, [x], path, [ONNXExport.attribute("axes", ints: axes), keepdims])
    }

    /// Layer norm over the last axis: `LayerNormalization` (opset 17 on), or its arithmetic.
    func layerNorm(_ x: String, _ norm: LayerNorm, path: String) throws -> String {
        let weight = try float("\(path).weight", norm.weight), bias = try float("\(path).bias", norm.bias)
        if opset >= 17 {
            return add("LayerNormalization", [x, weight, bias], path,
                       [ONNXExport.attribute("axis", int: -1), ONNXExport.attribute("epsilon", float: norm.epsilon)])
        }
        let centred = add("Sub", [x, try reduce("ReduceMean", x, axes: [-1], keep: true, path)], path)
        let variance = try reduce("ReduceMean", add("Mul", [centred, centred], path), axes: [-1], keep: true, path)
        let deviation = add("Sqrt", [add("Add", [variance, try float("\(path).epsilon", Tensor(scalar: norm.epsilon))], path)], path)
        return add("Add", [add("Mul", [add("Div", [centred, deviation], path), weight], path), bias], path)
    }

    /// A `Linear` on [N, L, in] values (MatMul with Wᵀ, then the bias).
    func linear(_ x: String, _ layer: Linear, path: String) throws -> String {
        try builder.emit(layer, path: path, input: x, sample: Tensor.zeros([1, 1, layer.weight.shape[1]])).0
    }

    /// Sum over the real tokens [N, L, D] → [N, D], and the token count [N, 1].
    func maskedSum(_ x: String, mask m: String, path: String) throws -> (sum: String, count: String) {
        let weighted = add("Mul", [x, try reshape(m, [0, 0, 1], builder.value(path, "mask_shape"))], path)
        return (try reduce("ReduceSum", weighted, axes: [1], keep: false, path), try reduce("ReduceSum", m, axes: [1], keep: true, path))
    }

    /// Rows of `x` [N, D] divided by their Euclidean norm, clamped at 1e-12 (as `l2Normalized`).
    func l2Normalized(_ x: String) throws -> String {
        let squares = try reduce("ReduceSum", add("Mul", [x, x], "normalize"), axes: [1], keep: true, "normalize")
        let norm = add("Max", [add("Sqrt", [squares], "normalize"), try float("normalize.epsilon", Tensor(scalar: 1e-12))], "normalize")
        return add("Div", [x, norm], "normalize")
    }

    // MARK: bert: students

    /// The encoder's mean-pooled vector [N, H] (not normalised: `l2Normalized` follows).
    func bert(_ encoder: BertEncoder, path: String) throws -> String {
        let c = encoder.config, e = encoder.embeddings
        let ids = TextONNXExport.inputIDsName
        let words = add("Gather", [try float("\(path).embeddings.word_embeddings.weight", e.wordEmbeddings.weight), ids], path + ".embeddings")
        // Positions 0..<L with token type 0 folded in: the first L rows of (positions + type 0).
        let typeZero = e.tokenTypeEmbeddings.weight.slice(axis: 0, start: 0, length: 1)
        let positions = try float("\(path).embeddings.position_and_type_0", withNoGrad { e.positionEmbeddings.weight + typeZero })
        let length = add("Slice", [add("Shape", [ids], path + ".embeddings"), try ints("\(path).length_start", [1]), try ints("\(path).length_end", [2])],
                         path + ".embeddings")
        let zero = try ints("\(path).zero", [0])
        let firstRows = add("Slice", [positions, zero, length, zero], path + ".embeddings")
        var h = try layerNorm(add("Add", [words, firstRows], path + ".embeddings"), e.layerNorm, path: "\(path).embeddings.LayerNorm")
        // 0 on tokens, −1e9 on padding keys: [N, 1, 1, L].
        let penalty = add("Mul", [add("Sub", [mask, try float("\(path).one", Tensor(scalar: 1))], path), try float("\(path).big", Tensor(scalar: 1e9))], path)
        let additive = try reshape(penalty, [0, 1, 1, -1], "\(path).mask_4d")
        let (heads, dh) = (c.heads, c.headSize)
        let scale = try float("\(path).score_scale", Tensor(scalar: 1 / Float(dh).squareRoot()))
        let splitShape = try ints("\(path).split_heads", [0, 0, Int64(heads), Int64(dh)])
        let mergeShape = try ints("\(path).merge_heads", [0, 0, Int64(c.hiddenSize)])
        for (i, layer) in encoder.encoder.layers.enumerated() {
            let p = "\(path).encoder.layer.\(i)", a = layer.attention
            func split(_ linear: Linear, _ name: String, _ order: [Int]) throws -> String {
                let projected = try self.linear(h, linear, path: "\(p).attention.self.\(name)")
                return add("Transpose", [add("Reshape", [projected, splitShape], p)], p, [ONNXExport.attribute("perm", ints: order)])
            }
            let q = try split(a.projections.query, "query", [0, 2, 1, 3])   // [N, A, L, dh]
            let kT = try split(a.projections.key, "key", [0, 2, 3, 1])      // [N, A, dh, L]
            let v = try split(a.projections.value, "value", [0, 2, 1, 3])   // [N, A, L, dh]
            let scores = add("Add", [add("Mul", [add("MatMul", [q, kT], p), scale], p), additive], p)
            let weights = add("Softmax", [scores], p, [ONNXExport.attribute("axis", int: opset >= 13 ? -1 : 3)])
            let context = add("Transpose", [add("MatMul", [weights, v], p)], p, [ONNXExport.attribute("perm", ints: [0, 2, 1, 3])])
            let attended = try linear(add("Reshape", [context, mergeShape], p), a.output.dense, path: "\(p).attention.output.dense")
            h = try layerNorm(add("Add", [attended, h], p), a.output.layerNorm, path: "\(p).attention.output.LayerNorm")
            let inner = try linear(h, layer.intermediate.dense, path: "\(p).intermediate.dense")
            let activated = try builder.emitLayer(GELU(), path: "\(p).intermediate.gelu", input: inner, sample: Tensor.zeros([1])).0
            let out = try linear(activated, layer.output.dense, path: "\(p).output.dense")
            h = try layerNorm(add("Add", [out, h], p), layer.output.layerNorm, path: "\(p).output.LayerNorm")
        }
        let (sum, count) = try maskedSum(h, mask: mask, path: path + ".pooling")
        return add("Div", [sum, add("Max", [count, try float("\(path).pooling.min_count", Tensor(scalar: 1e-9))], path + ".pooling")], path + ".pooling")
    }

    // MARK: bag: students

    /// The token bag's output [N, outputs] (not normalised).
    func tokenBag(_ bag: TokenBag, path: String) throws -> String {
        let buckets = bag.bigramBuckets
        guard buckets == 0 || (buckets & (buckets - 1) == 0 && buckets <= 1 << 15) else {
            throw ONNXError("cannot export a token bag with \(buckets) bigram buckets to ONNX: the hash is written for a power of two up to 32768 (bag:D uses 32768)")
        }
        let ids = TextONNXExport.inputIDsName
        let table = try float("\(path).embedding", bag.embedding)
        var (sum, count) = try maskedSum(add("Gather", [table, ids], path), mask: mask, path: path)
        if buckets > 0 {
            // Neighbouring pairs (a, b) = (ids[:, j], ids[:, j+1]), kept where both are tokens.
            let one = try ints("\(path).one", [1]), zero = try ints("\(path).zero", [0])
            let minusOne = try ints("\(path).minus_one", [-1]), end = try ints("\(path).end", [Int64.max])
            func shifted(_ x: String, first: Bool) -> String {
                add("Slice", first ? [x, zero, minusOne, one] : [x, one, end, one], path + ".bigrams")
            }
            let pairMask = add("Mul", [shifted(mask, first: true), shifted(mask, first: false)], path + ".bigrams")
            let row = try bigramRows(shifted(ids, first: true), shifted(ids, first: false), buckets: buckets, vocabulary: bag.vocabulary,
                                     path: path + ".bigrams")
            let (bigramSum, bigramCount) = try maskedSum(add("Gather", [table, row], path + ".bigrams"), mask: pairMask, path: path + ".bigrams")
            sum = add("Add", [sum, bigramSum], path)
            count = add("Add", [count, bigramCount], path)
        }
        // An all-padding row averages nothing: 0 / 1, then the bias, as TokenBag gives.
        let mean = add("Div", [sum, add("Max", [count, try float("\(path).min_count", Tensor(scalar: 1))], path)], path)
        return try builder.emit(bag.projection, path: "\(path).projection", input: mean, sample: Tensor.zeros([1, bag.embedding.shape[1]])).0
    }

    /// `TokenBag.bigramRow(a, b)` in int64 arithmetic: vocabulary + (((a·C₁) ⊕ (b·C₂)) mod 2⁶⁴ ≫ 17)
    /// mod buckets. For buckets a power of two up to 2^15 only bits 17…31 of the two products
    /// count, and those bits of a·C₁ are those of a·(C₁ mod 2³²), which for ids below 2^24 fits
    /// int64 exactly. The XOR of the two 15-bit values is taken bit by bit: ((x/2ᵏ mod 2 +
    /// y/2ᵏ mod 2) mod 2)·2ᵏ summed over k.
    func bigramRows(_ a: String, _ b: String, buckets: Int, vocabulary: Int, path: String) throws -> String {
        let low32 = try ints("\(path).two_pow_32", [1 << 32]), shift = try ints("\(path).two_pow_17", [1 << 17])
        let powers = try ints("\(path).bit_values", (0..<15).map { Int64(1) << $0 }), two = try ints("\(path).two", [2])
        func bits(_ x: String, _ multiplier: UInt64, _ name: String) throws -> String {
            let m = try ints("\(path).\(name)", [Int64(multiplier & 0xFFFF_FFFF)])
            let top15 = add("Div", [add("Mod", [add("Mul", [x, m], path), low32], path), shift], path)
            let column = try reshape(top15, [0, 0, 1], builder.value(path, "bits_shape"))
            return add("Mod", [add("Div", [column, powers], path), two], path)   // [N, L−1, 15]
        }
        let xorBits = add("Mod", [add("Add", [try bits(a, 0x9E37_79B9_7F4A_7C15, "c1"), try bits(b, 0xC2B2_AE3D_27D4_EB4F, "c2")], path), two], path)
        let hash = try reduce("ReduceSum", add("Mul", [xorBits, powers], path), axes: [2], keep: false, path)
        let bucket = add("Mod", [hash, try ints("\(path).buckets", [Int64(buckets)])], path)
        return add("Add", [bucket, try ints("\(path).vocabulary", [Int64(vocabulary)])], path)
    }
}
