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
}
