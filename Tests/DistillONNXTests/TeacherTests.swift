@testable import DistillONNX
import DistillNN
import DistillTensor
import DistillTraining
import Foundation
import Testing

// ONNX models as teachers: inputs checked with advice, probabilities turned into logits,
// intermediate values by ONNX name, and loadTeacher dispatching on .onnx.

/// Writes `model` into a fresh folder and returns its URL (the caller removes the folder).
func writeModel(_ m: Onnx_ModelProto, name: String = "teacher.onnx") throws -> URL {
    let url = temporaryFolder().appendingPathComponent(name)
    try serialized(m).write(to: url)
    return url
}

@Suite("ONNX teachers")
struct TeacherTests {
    /// image [N,1,2,2] → Flatten → Gemm(3 classes) → logits, and a Softmax output after it.
    func imageClassifier(softmaxOnly: Bool = false) -> Onnx_ModelProto {
        var nodes = [makeNode("Flatten", ["image"], ["flat"], name: "flatten"),
                     makeNode("Gemm", ["flat", "W"], ["logits"], name: "fc", [intAttribute("transB", 1)])]
        var outputs = [tensorInfo("logits", [nil, 3])]
        if softmaxOnly {
            nodes.append(makeNode("Softmax", ["logits"], ["probs"], name: "softmax"))
            outputs = [tensorInfo("probs", [nil, 3])]
        }
        return makeModel(nodes: nodes, inputs: [tensorInfo("image", [nil, 1, 2, 2])], outputs: outputs,
                         initializers: [floatTensor("W", [3, 4], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1])])
    }

    @Test("logits and features by ONNX value name")
    func logitsAndFeatures() throws {
        let url = try writeModel(imageClassifier())
        defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
        let teacher = try loadTeacher(url.path)
        #expect(teacher is ONNXTeacher && teacher.parameterCount == 12)
        let x = Tensor(shape: [2, 1, 2, 2], scalars: [1, 2, 3, 4, 0, 0, 1, 1])
        let out = try teacher.forward(x, indices: [], features: ["flat"])
        #expect(out.logits.scalars == [1, 2, 7, 0, 0, 2])
        #expect(out.features["flat"]!.shape == [2, 4])
        #expect(errorMessage { _ = try teacher.forward(x, indices: [], features: ["nope"]) }.contains("no value named 'nope'"))
    }

    @Test("a data shape that does not fit is an error with advice")
    func shapeMismatch() throws {
        let url = try writeModel(imageClassifier())
        defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
        let teacher = try ONNXTeacher(url: url)
        let message = errorMessage { _ = try teacher.logits(Tensor.zeros([5, 4])) }
        #expect(message.contains("input 'image': [N,4] given, [N,1,2,2] expected; only the layout differs: re-export the teacher"), "\(message)")
        #expect(errorMessage { try teacher.checkExampleShape([9]) }.contains("the teacher was trained on other data (4 values per example, the data has 9)"))
    }

    @Test("a softmax output becomes log-probabilities, and normalisation is applied")
    func probabilities() throws {
        var m = imageClassifier(softmaxOnly: true)
        var mean = Onnx_StringStringEntryProto(), std = Onnx_StringStringEntryProto()
        mean.key = "distillkit.input_mean"; mean.value = "1"
        std.key = "distillkit.input_std"; std.value = "0.5"
        m.metadataProps = [mean, std]
        let url = try writeModel(m)
        defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
        let teacher = try ONNXTeacher(url: url)
        #expect(teacher.outputIsProbability && teacher.inputMean == [1] && teacher.inputStd == [0.5])
        // x = 1.5 everywhere → normalised 1 → logits [1, 1, 2] → log-softmax.
        let logits = try teacher.logits(Tensor.full([1, 1, 2, 2], 1.5))
        let lse = Foundation.log(2 * Foundation.exp(1.0) + Foundation.exp(2.0))
        let expected = [1 - lse, 1 - lse, 2 - lse].map { Float($0) }
        #expect(zip(logits.scalars, expected).allSatisfy { Swift.abs($0 - $1) < 1e-5 })
    }

    /// rows [N, 2] → Gemm(`classes` columns) → Sigmoid when `sigmoid`: a Keras-style binary
    /// (one column) or one-vs-rest head.
    func tabularHead(classes: Int, sigmoid: Bool) -> Onnx_ModelProto {
        var nodes = [makeNode("Gemm", ["x", "W"], ["z"], name: "fc", [intAttribute("transB", 1)])]
        if sigmoid { nodes.append(makeNode("Sigmoid", ["z"], ["p"], name: "sigmoid")) }
        let weights: [Float] = classes == 1 ? [1, -1] : [1, 0, 0, 1, -1, -1]
        return makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, 2])], outputs: [tensorInfo(sigmoid ? "p" : "z", [nil, classes])],
                         initializers: [floatTensor("W", [classes, 2], weights)])
    }

    /// A Sigmoid head holds per-class probabilities, not logits (read as logits, their softmax is
    /// nearly uniform and the teacher teaches nothing, silently): its logarithms are used, whose
    /// softmax is the probabilities normalised. One column is a binary classifier's positive class.
    @Test("sigmoid heads and single-column binary heads become two-or-more-class logits")
    func sigmoidAndBinaryHeads() throws {
        func sigma(_ z: Double) -> Double { 1 / (1 + Foundation.exp(-z)) }
        let x = Tensor(shape: [2, 2], scalars: [2, 0, 0, 3])
        let oneVsRest = try writeModel(tabularHead(classes: 3, sigmoid: true))
        defer { try? FileManager.default.removeItem(at: oneVsRest.deletingLastPathComponent()) }
        let multi = try ONNXTeacher(url: oneVsRest)
        #expect(multi.graphOutput.kind == .sigmoid && !multi.outputIsProbability)
        let logits = try multi.logits(x)
        let expected = [2.0, 0, -2, 0, 3, -3].map { Float(Foundation.log(sigma($0))) }
        #expect(logits.shape == [2, 3] && zip(logits.scalars, expected).allSatisfy { Swift.abs($0 - $1) < 1e-5 }, "\(logits.scalars)")
        #expect(multi.outputDescription.contains("sigmoid"), "\(multi.outputDescription)")

        for sigmoid in [true, false] {
            let url = try writeModel(tabularHead(classes: 1, sigmoid: sigmoid))
            defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
            let binary = try ONNXTeacher(url: url)
            let out = try binary.logits(x)
            // z = x0 − x1 = [2, −3]; softmax of the two logits must give [1 − σ(z), σ(z)].
            #expect(out.shape == [2, 2])
            for (row, z) in [2.0, -3.0].enumerated() {
                let a = Double(out.data[2 * row]), b = Double(out.data[2 * row + 1])
                let positive = Foundation.exp(b) / (Foundation.exp(a) + Foundation.exp(b))
                #expect(Swift.abs(positive - sigma(z)) < 1e-5, "sigmoid \(sigmoid), row \(row): \(positive) vs \(sigma(z))")
            }
            try checkTeacher(binary, path: url.path, exampleShape: [2], numClasses: 2)
            #expect(errorMessage { try checkTeacher(binary, path: url.path, exampleShape: [2], numClasses: 3) }.contains("read as 2 classes"))
        }
    }

    /// A Sigmoid head whose numbers leave [0, 1] contradicts the graph: an error, not a guess; and
    /// `--teacher-output sigmoid` is checked the same way.
    @Test("a declared or graph-implied sigmoid output is checked against the numbers")
    func sigmoidOutputChecked() throws {
        let url = try writeModel(tabularHead(classes: 3, sigmoid: false))
        defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
        let declared = try ONNXTeacher(url: url, outputKind: .sigmoid)
        #expect(errorMessage { _ = try declared.logits(Tensor(shape: [1, 2], scalars: [2, 0])) }.contains("--teacher-output sigmoid was given, but the first batch has values outside [0, 1]"))
        #expect(try ONNXTeacherOptions.outputKind("sigmoid") == .sigmoid)
    }

    /// A graph with several FLOAT [N, C] outputs: the one named like class scores is read; none
    /// named so is an error asking for --teacher-output-name (an (embedding, logits) pair of one
    /// width would otherwise teach the embedding), which picks any by name.
    @Test("the output to read, among several")
    func outputChoice() throws {
        func twoOutputs(_ first: String, _ second: String) -> Onnx_ModelProto {
            makeModel(nodes: [makeNode("Relu", ["x"], [first], name: "relu"), makeNode("Neg", ["x"], [second], name: "neg")],
                      inputs: [tensorInfo("x", [nil, 3])], outputs: [tensorInfo(first, [nil, 3]), tensorInfo(second, [nil, 3])])
        }
        let x = Tensor(shape: [1, 3], scalars: [1, -2, 3])
        let named = try writeModel(twoOutputs("embedding", "logits"))
        defer { try? FileManager.default.removeItem(at: named.deletingLastPathComponent()) }
        #expect(try ONNXTeacher(url: named).logits(x).scalars == [-1, 2, -3])
        let anonymous = try writeModel(twoOutputs("out0", "out1"))
        defer { try? FileManager.default.removeItem(at: anonymous.deletingLastPathComponent()) }
        let message = errorMessage { _ = try ONNXTeacher(url: anonymous) }
        #expect(message.contains("2 FLOAT [N, C] outputs") && message.contains("--teacher-output-name"), "\(message)")
        #expect(try ONNXTeacher(url: anonymous, outputName: "out1").logits(x).scalars == [-1, 2, -3])
        #expect(errorMessage { _ = try ONNXTeacher(url: anonymous, outputName: "nope") }.contains("'nope': no such output"))
    }

    @Test("models a teacher cannot use are refused when loaded")
    func refusals() throws {
        let twoInputs = makeModel(nodes: [makeNode("Add", ["a", "b"], ["y"])], inputs: [tensorInfo("a", [nil, 2]), tensorInfo("b", [nil, 2])],
                                  outputs: [tensorInfo("y", [nil, 2])])
        let url = try writeModel(twoInputs)
        defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
        #expect(errorMessage { _ = try ONNXTeacher(url: url) }.contains("a teacher takes one input; this model takes 2"))
        let labelsOnly = makeModel(nodes: [makeNode("ArgMax", ["x"], ["y"])], inputs: [tensorInfo("x", [nil, 2])], outputs: [tensorInfo("y", [nil], type: .int64)])
        let url2 = try writeModel(labelsOnly)
        defer { try? FileManager.default.removeItem(at: url2.deletingLastPathComponent()) }
        #expect(errorMessage { _ = try ONNXTeacher(url: url2) }.contains("no FLOAT [N, C] output to use as logits"))
    }
}
