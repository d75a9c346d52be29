import DistillNN
import DistillTensor
import DistillTestSupport
import DistillText
import DistillTraining
import Foundation
import Testing

// Attention transfer (`attentionTransferLoss`, `AttentionTransfer` in
// Sources/DistillTraining/EmbeddingLosses.swift; the scores tapped at `….attention.scores`,
// Sources/DistillNN/Transformer.swift).

@Suite("Attention transfer") struct AttentionTransferTests {
    /// Reference values from NumPy (padding key at −1e9 on both sides, the padded query row left out):
    ///
    ///     def sm(x): e = np.exp(x - x.max(-1, keepdims=True)); return e / e.sum(-1, keepdims=True)
    ///     s = [[[[0, 0, pad], [1, 0, pad], [0.3, -0.2, pad]]]]
    ///     t = [[[[log 3, 0, pad], [0, 0, pad], [1, 1, pad]], [[0, log 3, pad], [2, 0, pad], [0, 0, pad]]]]
    ///     T = sm(t).mean(1)  (two teacher heads for one student head); KL(T‖sm(s)) over the 2 real rows / 2
    ///     → 0.0020408671038453924; with the first teacher head alone → 0.12546327144970726
    @Test func referenceValues() {
        let pad: Float = -1e9
        let student = Tensor(shape: [1, 1, 3, 3], scalars: [0, 0, pad, 1, 0, pad, 0.3, -0.2, pad])
        let teacher = Tensor(shape: [1, 2, 3, 3], scalars: [Float(log(3.0)), 0, pad, 0, 0, pad, 1, 1, pad,
                                                             0, Float(log(3.0)), pad, 2, 0, pad, 0, 0, pad])
        let mask = Tensor(shape: [1, 3], scalars: [1, 1, 0])
        let grouped = attentionTransferLoss(studentScores: student, teacherScores: teacher, mask: mask).item()
        #expect(abs(grouped - 0.0020408671) < 1e-6, "two teacher heads per student head: \(grouped)")
        let oneToOne = attentionTransferLoss(studentScores: student, teacherScores: teacher.slice(axis: 1, start: 0, length: 1), mask: mask).item()
        #expect(abs(oneToOne - 0.12546327) < 1e-6, "one to one: \(oneToOne)")
        // Equal distributions: zero.
        #expect(abs(attentionTransferLoss(studentScores: student, teacherScores: student, mask: mask).item()) < 1e-6)
    }

    @Test func gradients() {
        let x = Tensor.testNormal([2, 2, 4, 4], seed: 41, requiresGrad: true)
        let teacher = Tensor.testNormal([2, 4, 4, 4], seed: 42)
        // Row 0 has 3 tokens, row 1 has 4; the padding key gets −1e9 in both.
        var additive = [Float](repeating: 0, count: 2 * 4)
        additive[3] = -1e9
        let keys = Tensor(shape: [2, 1, 1, 4], scalars: additive)
        let mask = Tensor(shape: [2, 4], scalars: [1, 1, 1, 0, 1, 1, 1, 1])
        expectGradients("attention transfer", inputs: [x], atol: 1e-4) {
            attentionTransferLoss(studentScores: $0[0] + keys, teacherScores: teacher + keys, mask: mask)
        }
    }

    /// The scores are tapped where attention transfer looks for them, and match the attention's own softmax input.
    @Test func scoresAreTapped() throws {
        let encoder = try BertEncoder(TransformerConfig(vocabularySize: 20, hiddenSize: 8, layers: 2, heads: 2, intermediateSize: 12, maxPositions: 10), seed: 3)
        let model = Sequential([encoder])
        let taps = try model.tapOutputs(["0.encoder.layer.1.attention.scores"])
        _ = model(Tensor(shape: [2, 4], scalars: [2, 5, 7, 3, 2, 9, 3, 0]))
        let scores = try #require(taps.outputs["0.encoder.layer.1.attention.scores"])
        #expect(scores.shape == [2, 2, 4, 4])
        #expect(scores.data[(1 * 2 * 4 + 0) * 4 + 3] < -1e8, "row 1's padding key")
    }

    /// text-kd with attention transfer: one to one (2 heads each) and grouped (1 student head, 2
    /// teacher heads, every mapped layer); the term falls over the epochs.
    @Test func distilsWithAttentionTransfer() throws {
        let fixture = try TinyTextTask()
        for (student, layers, run) in [("bert:2-16", TextDistillationSettings.AttentionLayers.last, "last"), ("bert:2-8-1-16", .mapped, "mapped")] {
            var settings = fixture.settings(student: student, run: run)
            settings.attentionWeight = 1
            settings.attentionLayers = layers
            if student == "bert:2-8-1-16" { settings.initFromTeacher = false }
            let result = try TextDistillation.run(settings, teacher: fixture.teacher)
            let lines = try String(contentsOf: fixture.dir.file("\(run)/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            let attention = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["loss_attention"] as? Double }
            #expect(attention.count == settings.options.epochs && attention.last! < attention.first!, "\(student): attention loss per epoch \(attention)")
            #expect(result.rows[1].report.teacherCosine > 0.8, "\(student): cos(teacher) \(result.rows[1].report.teacherCosine)")
        }
        var bad = fixture.settings(student: "bert:1-12-3-24", run: "bad")
        bad.attentionWeight = 1
        bad.initFromTeacher = false
        expectMessage(["--attention-weight", "2 heads are not a multiple of the student's 3"]) { _ = try TextDistillation.run(bad, teacher: fixture.teacher) }
        var bag = fixture.settings(student: "bag:45-0-8-16", run: "bag")
        bag.attentionWeight = 1
        expectMessage(["--attention-weight", "bert: students"]) { _ = try TextDistillation.run(bag, teacher: fixture.teacher) }
    }
}
