import DistillData
import DistillNN
import DistillONNX
import DistillTensor
import DistillText
import Foundation

/// `distill export STUDENT --onnx FILE` for a text student of `distill text-kd`: the graph of
/// `TextONNXExport` (token ids and attention mask in, the L2-normalised sentence vector out), run
/// in DistillKit's ONNX runtime against the student before anything is written, and the
/// student's tokenizer file copied beside it (`FILE` without `.onnx`, plus `.tokenizer.json` or
/// `.vocab.txt`), since the tokenizer is not part of the graph.
public enum TextStudentExport {
    /// The largest difference allowed between the exported graph's vectors and the student's.
    public static let tolerance: Float = 1e-4

    public struct Report {
        public var file: URL
        public var tokenizerFile: URL?
        public var spec: String
        public var parameters: Int
        public var opset: Int
        public var maxLength: Int
        public var dimension: Int
        /// Token sequences the export was checked on, and the largest difference seen.
        public var checkedSequences: Int
        public var largestDifference: Float

        public var text: String {
            var lines = [String(format: "%@: ONNX opset %d, %@ (%d parameters): input_ids and attention_mask (INT64 [N, L], L ≤ %d as trained) → sentence_embedding (FLOAT [N, %d], L2-normalised)",
                                file.path, opset, spec, parameters, maxLength, dimension)]
            lines.append(String(format: "checked in DistillKit's ONNX runtime on %d token sequences: largest difference %.2e", checkedSequences, largestDifference))
            if let tokenizerFile { lines.append("tokenizer (outside the graph): \(tokenizerFile.path)") }
            return lines.joined(separator: "\n")
        }

        public var json: [String: Any] {
            ["format": "onnx", "path": file.path, "tokenizer": tokenizerFile?.path as Any, "spec": spec, "params": parameters, "opset": opset,
             "max_length": maxLength, "dimension": dimension, "inputs": [TextONNXExport.inputIDsName, TextONNXExport.attentionMaskName],
             "output": TextONNXExport.outputName, "checked_sequences": checkedSequences, "largest_difference": Double(largestDifference)]
        }
    }

    /// `distill inspect` of a text student (a model file or run folder): its ONNX export's inputs
    /// (token ids and mask), output (the sentence vector), operators and FLOPs (for one token);
    /// nil when it is not a text student.
    public static func summary(modelAt: URL) throws -> InspectionSummary? {
        guard TextModelFile.isTextModel(modelAt.path), let student = try TextStudent.load(modelAt) else { return nil }
        let modelFile = FileKind(modelAt.path) == .safetensors ? modelAt : RunFolder(modelAt).bestModel
        let spec = TextModelFile.studentMetadata(modelFile)?["distillkit.spec"] ?? "text student"
        var summary = ModelInspector.summary(try ONNXModel(data: try TextONNXExport.serialize(student.model), source: modelAt.path))
        summary.format = "DistillKit text student (\(spec)): \(student.maxLength) tokens at most, a \(student.dimension)-value sentence vector"
        summary.producer = ""
        summary.parameters = student.parameterCount
        summary.bytes = student.model.stateBytes
        return summary
    }

    /// A Hugging Face `tokenizer.json` set to truncate at `length` tokens, the length the student
    /// was trained with and the graph reads (and to pad to it where it pads to a fixed length): as
    /// the teacher shipped it, it cuts at the teacher's length, and longer inputs would give other
    /// vectors than DistillKit's.
    static func tokenizer(_ data: Data, cutAt length: Int, source: String) throws -> Data {
        guard var json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TensorError("\(source): not a tokenizer.json (a JSON object)")
        }
        var truncation = json["truncation"] as? [String: Any] ?? ["direction": "Right", "strategy": "LongestFirst", "stride": 0]
        truncation["max_length"] = length
        json["truncation"] = truncation
        if var padding = json["padding"] as? [String: Any], (padding["strategy"] as? [String: Any])?["Fixed"] != nil {
            padding["strategy"] = ["Fixed": length]
            json["padding"] = padding
        }
        return try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes])
    }

    /// Exports the text student at `modelAt` (a model file or run folder), or returns nil when it
    /// is not a text student (the caller then exports it as any other model).
    public static func onnx(modelAt: URL, to url: URL, opset: Int = 17) throws -> Report? {
        guard let student = try TextStudent.load(modelAt) else { return nil }
        let modelFile = FileKind(modelAt.path) == .safetensors ? modelAt : RunFolder(modelAt).bestModel
        let metadata = TextModelFile.studentMetadata(modelFile) ?? [:]
        let spec = metadata["distillkit.spec"] ?? "text student"
        let data = try TextONNXExport.serialize(student.model, opset: opset, metadata: [
            "distillkit.task": TextStudent.task, "distillkit.spec": spec, "distillkit.max_length": "\(student.maxLength)",
            "distillkit.tokenizer": "WordPiece ids of \(metadata[TextStudent.tokenizerKey] ?? "the teacher's tokenizer"), [CLS] … [SEP], padded with 0",
        ])
        // Check: random token sequences of many lengths, through the graph and through the student.
        var g = SeededGenerator(seed: 18)
        let vocabulary = student.tokenizer.vocabularySize
        let lengths = [1, 2, 3] + (0..<21).map { _ in 3 + g.nextInt(below: max(student.maxLength - 2, 1)) }
        let sequences = lengths.map { n in (0..<n).map { _ in 1 + g.nextInt(below: vocabulary - 1) } }
        let ids = Tensor.zeros([sequences.count, student.maxLength])
        for (r, row) in sequences.enumerated() { for (j, id) in row.enumerated() { ids.data[r * student.maxLength + j] = Float(id) } }
        let expected = TextDistillation.normalizedVectors(student.model, ids: ids, plan: student.plan)
        let difference = try TextONNXExport.largestDifference(data, ids: sequences, expected: expected)
        guard difference <= tolerance else {
            throw ONNXError("\(url.path): not written: the exported graph's vectors differ from the student's by \(difference) (more than \(tolerance))")
        }
        try AtomicFile.write(data, to: url)
        var tokenizerCopy: URL?
        if let name = metadata[TextStudent.tokenizerKey] {
            let source = modelFile.deletingLastPathComponent().appendingPathComponent(name)
            let stem = url.pathExtension.lowercased() == "onnx" ? url.deletingPathExtension() : url
            let copy = URL(fileURLWithPath: stem.path + "." + (name.hasSuffix(".txt") ? "vocab.txt" : "tokenizer.json"))
            let bytes = try InputFile.read(source, what: "the student's tokenizer")
            try AtomicFile.write(name.hasSuffix(".txt") ? bytes : try Self.tokenizer(bytes, cutAt: student.maxLength, source: source.path), to: copy)
            tokenizerCopy = copy
        }
        return Report(file: url, tokenizerFile: tokenizerCopy, spec: spec, parameters: student.parameterCount, opset: opset,
                      maxLength: student.maxLength, dimension: student.dimension, checkedSequences: sequences.count, largestDifference: difference)
    }
}
