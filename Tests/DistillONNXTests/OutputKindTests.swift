import DistillONNX
import DistillTensor
import Foundation
import Testing

/// What a classifier's output holds: from the graph (ONNXModel.outputKind) and from the numbers
/// (ONNXOutputKind.observed).
@Suite("ONNX output kinds")
struct OutputKindTests {
    @Test("rows in [0, 1] summing to 1 are probabilities; their logarithms are log-probabilities; anything else neither")
    func observedKinds() {
        let p = Tensor(shape: [3, 3], scalars: [0.2, 0.3, 0.5, 0.015081, 0.031242, 0.953677, 0, 1.0000001, 0])
        #expect(ONNXOutputKind.observed(in: p) == .probabilities)
        #expect(ONNXOutputKind.observed(in: withNoGrad { p.log() }) == .logProbabilities)
        #expect(ONNXOutputKind.observed(in: Tensor(shape: [1, 3], scalars: [2, -1, 0.5])) == nil)
        #expect(ONNXOutputKind.observed(in: Tensor(shape: [1, 3], scalars: [0.5, 0.5, 0.5])) == nil)
        #expect(ONNXOutputKind.observed(in: Tensor(shape: [1, 2], scalars: [.nan, 1])) == nil)
        #expect(ONNXOutputKind.observed(in: Tensor(shape: [3], scalars: [0.2, 0.3, 0.5])) == nil, "one row per example, two or more columns")
    }

    /// SVM decisions become per-class scores whose argmax is the SVM's label. Three classes, pairs
    /// (0,1), (0,2), (1,2) deciding 0.5, −1, 2: one vote each; confidences −0.5, 1.5, −1 scaled by
    /// c / (3(|c| + 1)) → [1 − 1/9, 1.2, 1 − 1/6] (scikit-learn's one-vs-rest decision function).
    /// Two classes: (−f, f) means class 0 for f > 0, so the scores are (f, −f).
    @Test func svmDecisionsBecomeClassScores() {
        let kind = ONNXOutputKind.svmDecisions
        #expect([1, 2, 3, 4, 6, 7, 45].map { kind.classes(forWidth: $0) } == [nil, 2, 3, nil, 4, nil, 10])
        #expect(ONNXOutputKind.logits.classes(forWidth: 1) == 2 && ONNXOutputKind.logits.classes(forWidth: 6) == 6)
        let three = kind.logits(from: Tensor(shape: [1, 3], scalars: [0.5, -1, 2]))
        let expected: [Float] = [1 - 1.0 / 9, 1.2, 1 - 1.0 / 6]
        #expect(three.shape == [1, 3] && zip(three.scalars, expected).allSatisfy { abs($0 - $1) < 1e-6 }, "\(three.scalars)")
        #expect(kind.logits(from: Tensor(shape: [2, 2], scalars: [-0.3, 0.3, 2, -2])).scalars == [0.3, -0.3, -2, 2])
    }
}
