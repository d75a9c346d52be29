import DistillNN
import DistillTensor
import Foundation

/// The settings of a sentence-transformers folder, read and checked at one boundary: the
/// encoder's sizes from `config.json` (Hugging Face's `BertConfig`), mean pooling from
/// `1_Pooling/config.json`, the default truncation length from `sentence_bert_config.json`.
/// Every problem is a `TextError` naming the file and the field.
public struct EncoderFolder: Sendable {
    public let folder: URL
    public let config: TransformerConfig
    /// Texts are cut to this many tokens unless the caller asks otherwise (sentence-transformers'
    /// `max_seq_length`; the position table's size when the folder does not say).
    public let maxSequenceLength: Int

    public var configFile: URL { folder.appendingPathComponent("config.json") }
    public var weightsFile: URL { folder.appendingPathComponent("model.safetensors") }
    public var poolingFile: URL { folder.appendingPathComponent("1_Pooling/config.json") }
    public var sentenceConfigFile: URL { folder.appendingPathComponent("sentence_bert_config.json") }

    /// The largest JSON settings file read.
    static let maxSettingsBytes = 1 << 20

    public init(_ folder: URL) throws {
        self.folder = folder
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw TextError.missingFile(path: folder.path, what: "a sentence-transformers folder (config.json, model.safetensors, tokenizer.json, 1_Pooling/config.json)")
        }
        let configFile = folder.appendingPathComponent("config.json")
        let json = try Self.readObject(configFile, what: "the encoder's Hugging Face config (config.json)")
        func int(_ key: String, default value: Int? = nil) throws -> Int {
            guard let raw = json[key] else {
                if let value { return value }
                throw TextError.malformed(path: configFile.path, problem: "\"\(key)\" is missing")
            }
            guard let n = raw as? Int else {
                throw TextError.malformed(path: configFile.path, problem: "\"\(key)\" must be a whole number, found \(raw)")
            }
            return n
        }
        if let type = json["model_type"], (type as? String) != "bert" {
            throw TextError.unsupported(path: configFile.path, feature: "model_type \(type) (DistillKit reads BERT encoders, model_type \"bert\")")
        }
        if let act = json["hidden_act"], (act as? String) != "gelu" {
            throw TextError.unsupported(path: configFile.path, feature: "hidden_act \(act) (DistillKit's encoder uses the exact erf GELU, \"gelu\")")
        }
        if let position = json["position_embedding_type"], (position as? String) != "absolute" {
            throw TextError.unsupported(path: configFile.path, feature: "position_embedding_type \(position) (only \"absolute\")")
        }
        var epsilon: Float = 1e-12
        if let raw = json["layer_norm_eps"] {
            guard let number = raw as? Double, number > 0, number < 1 else {
                throw TextError.malformed(path: configFile.path, problem: "\"layer_norm_eps\" must be a number between 0 and 1, found \(raw)")
            }
            epsilon = Float(number)
        }
        let config = TransformerConfig(
            vocabularySize: try int("vocab_size"), hiddenSize: try int("hidden_size"), layers: try int("num_hidden_layers"),
            heads: try int("num_attention_heads"), intermediateSize: try int("intermediate_size"),
            maxPositions: try int("max_position_embeddings"), typeVocabularySize: try int("type_vocab_size", default: 2),
            layerNormEpsilon: epsilon, normalizesEmbeddings: true)
        do { try config.validate() } catch let error as TensorError {
            throw TextError.malformed(path: configFile.path, problem: error.message)
        }
        self.config = config

        let pooling = folder.appendingPathComponent("1_Pooling/config.json")
        let poolingJSON = try Self.readObject(pooling, what: "the pooling settings (1_Pooling/config.json)")
        if let width = poolingJSON["word_embedding_dimension"] as? Int, width != config.hiddenSize {
            throw TextError.mismatch(path: pooling.path, otherPath: configFile.path,
                                     problem: "word_embedding_dimension \(width) but hidden_size \(config.hiddenSize)")
        }
        guard (poolingJSON["pooling_mode_mean_tokens"] as? Bool) == true else {
            throw TextError.unsupported(path: pooling.path, feature: "a pooling mode other than the mean of tokens (pooling_mode_mean_tokens is not true)")
        }
        for other in ["pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                      "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"] where (poolingJSON[other] as? Bool) == true {
            throw TextError.unsupported(path: pooling.path, feature: "\(other) (DistillKit pools by the mean of tokens only)")
        }

        var maxLength = config.maxPositions
        let sentenceConfig = folder.appendingPathComponent("sentence_bert_config.json")
        if FileManager.default.fileExists(atPath: sentenceConfig.path) {
            let settings = try Self.readObject(sentenceConfig, what: "sentence-transformers settings")
            if let raw = settings["max_seq_length"] {
                guard let n = raw as? Int, n >= 2, n <= config.maxPositions else {
                    throw TextError.malformed(path: sentenceConfig.path,
                                              problem: "\"max_seq_length\" must be a whole number from 2 to the \(config.maxPositions) positions, found \(raw)")
                }
                maxLength = n
            }
        }
        maxSequenceLength = maxLength
    }

    /// A JSON object from `url`, or a `TextError` saying what the file should have held.
    static func readObject(_ url: URL, what: String) throws -> [String: Any] {
        guard FileManager.default.fileExists(atPath: url.path) else { throw TextError.missingFile(path: url.path, what: what) }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TextError.malformed(path: url.path, problem: "cannot read (\(error.localizedDescription))")
        }
        guard data.count <= maxSettingsBytes else {
            throw TextError.malformed(path: url.path, problem: "\(data.count) bytes, more than the \(maxSettingsBytes)-byte limit for a settings file")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TextError.malformed(path: url.path, problem: "not a JSON object")
        }
        return object
    }

    /// Tensors of a `BertModel` checkpoint that a sentence encoder does not use.
    static func isUnused(_ name: String) -> Bool { name == "embeddings.position_ids" || name.hasPrefix("pooler.") }

    /// A `BertEncoder` with the weights of `model.safetensors`, matched by name. Names may carry
    /// `BertForX`'s `bert.` prefix. A missing tensor, a shape that differs from what config.json
    /// implies, or a tensor config.json has no place for (a 7th layer) is an error naming it.
    public func loadEncoder() throws -> BertEncoder {
        let encoder: BertEncoder
        do { encoder = try BertEncoder(config) } catch let error as TensorError {
            throw TextError.malformed(path: configFile.path, problem: error.message)
        }
        guard FileManager.default.fileExists(atPath: weightsFile.path) else {
            throw TextError.missingFile(path: weightsFile.path, what: "the encoder's weights (model.safetensors)")
        }
        func plain(_ name: String) -> String { name.hasPrefix("bert.") ? String(name.dropFirst(5)) : name }
        let tensors: [String: Tensor]
        do { tensors = try Safetensors.load(weightsFile, including: { !Self.isUnused(plain($0)) }) } catch let error as TensorError {
            throw TextError.malformed(path: weightsFile.path, problem: error.message)
        }
        var state: [String: Tensor] = [:]
        for (name, t) in tensors { state[plain(name)] = t }
        let expected = encoder.namedTensors()
        var missing: [String] = [], wrong: [String] = []
        for (name, tensor, _) in expected {
            guard let found = state[name] else { missing.append(name); continue }
            if found.shape != tensor.shape { wrong.append("\(name) is \(found.shape), config.json implies \(tensor.shape)") }
        }
        let known = Set(expected.map(\.name))
        let unexpected = state.keys.filter { !known.contains($0) }.sorted()
        if !missing.isEmpty || !wrong.isEmpty || !unexpected.isEmpty {
            var parts: [String] = []
            if !wrong.isEmpty { parts.append("shapes differ: \(wrong.prefix(5).joined(separator: "; "))\(wrong.count > 5 ? " (and \(wrong.count - 5) more)" : "")") }
            if !missing.isEmpty { parts.append("missing \(missing.count) tensors: \(missing.prefix(5).joined(separator: ", "))\(missing.count > 5 ? ", …" : "")") }
            if !unexpected.isEmpty { parts.append("\(unexpected.count) tensors config.json has no place for: \(unexpected.prefix(5).joined(separator: ", "))\(unexpected.count > 5 ? ", …" : "")") }
            throw TextError.mismatch(path: weightsFile.path, otherPath: configFile.path, problem: parts.joined(separator: "; "))
        }
        for (name, tensor, _) in expected { tensor.assign(state[name]!) }
        if let bad = expected.first(where: { !$0.tensor.isFinite }) {
            throw TextError.malformed(path: weightsFile.path, problem: "tensor \(bad.name) holds NaN or infinite values")
        }
        return encoder
    }
}
