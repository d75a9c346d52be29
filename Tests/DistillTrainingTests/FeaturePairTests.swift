import DistillNN
import DistillTensor
import DistillTraining
import Foundation
import Testing

/// Feature-loss layer pairs are checked on the first batch's features
/// (`DistillationObjective.prepareAdapters`), so a pair a loss cannot compare is a clear error
/// naming both layers and shapes before any step, not a crash inside the loss.
@Suite("Feature-loss layer pairs") struct FeaturePairTests {
    func term(_ method: LossTerm.Method) -> LossTerm {
        var t = LossTerm(method)
        t.studentLayers = ["s"]; t.teacherLayers = ["t"]
        return t
    }

    @Test func attentionTransferNeedsFeatureMapsOfOneSpatialSize() throws {
        let objective = try DistillationObjective(terms: [term(.at)])
        var g = SeededGenerator(seed: 1)
        let map = Tensor.randomNormal([4, 8, 6, 6], using: &g)
        let vector = Tensor.randomNormal([4, 16], using: &g)
        let smaller = Tensor.randomNormal([4, 8, 3, 3], using: &g)
        #expect(throws: TensorError.self) { try objective.prepareAdapters(studentFeatures: ["s": vector], teacherFeatures: ["t": map], seed: 0) }
        do {
            try objective.prepareAdapters(studentFeatures: ["s": smaller], teacherFeatures: ["t": map], seed: 0)
            Issue.record("AT accepted maps of 3×3 against 6×6")
        } catch {
            let message = "\(error)"
            #expect(message.contains("'s'") && message.contains("'t'") && message.contains("[4, 8, 3, 3]") && message.contains("spatial"), "\(message)")
        }
        try objective.prepareAdapters(studentFeatures: ["s": map], teacherFeatures: ["t": map], seed: 0)
    }

    @Test func aMissingLayerOutputIsNamed() throws {
        let objective = try DistillationObjective(terms: [term(.sp)])
        var g = SeededGenerator(seed: 2)
        let x = Tensor.randomNormal([4, 5], using: &g)
        do {
            try objective.prepareAdapters(studentFeatures: ["s": x], teacherFeatures: [:], seed: 0)
            Issue.record("a missing teacher layer was accepted")
        } catch { #expect("\(error)".contains("teacher layer 't'"), "\(error)") }
    }

    /// A student feature map against a teacher vector gets a linear map of the flattened map
    /// (it used to build a 1×1 convolution and crash on the vector), and the loss is finite.
    @Test func fitnetsMapsAFeatureMapOntoAVector() throws {
        let objective = try DistillationObjective(terms: [term(.fitnets)])
        var g = SeededGenerator(seed: 3)
        let map = Tensor.randomNormal([4, 2, 3, 3], using: &g)
        let vector = Tensor.randomNormal([4, 5], using: &g)
        try objective.prepareAdapters(studentFeatures: ["s": map], teacherFeatures: ["t": vector], seed: 0)
        #expect(objective.adapterParameters.map(\.shape).contains([5, 18]) || objective.adapterParameters.map(\.shape).contains([18, 5]),
                "\(objective.adapterParameters.map(\.shape))")
        let logits = Tensor.randomNormal([4, 3], using: &g)
        let value = try objective.loss(studentLogits: logits, studentFeatures: ["s": map], teacherLogits: [logits],
                                       teacherFeatures: ["t": vector], labels: [0, 1, 2, 0], epoch: 0).total.item()
        #expect(value.isFinite && value > 0, "\(value)")
    }

    /// RKD compares distances and angles between rows; an epoch's last batch of one row has none,
    /// and contributes 0 instead of stopping the run.
    @Test func relationalLossOnOneRowIsZero() throws {
        let objective = try DistillationObjective(terms: [term(.rkd)])
        var g = SeededGenerator(seed: 4)
        let s = Tensor.randomNormal([1, 6], using: &g), t = Tensor.randomNormal([1, 4], using: &g)
        let logits = Tensor.randomNormal([1, 3], using: &g)
        try objective.prepareAdapters(studentFeatures: ["s": s], teacherFeatures: ["t": t], seed: 0)
        let value = try objective.loss(studentLogits: logits, studentFeatures: ["s": s], teacherLogits: [logits],
                                       teacherFeatures: ["t": t], labels: [1], epoch: 0).total.item()
        #expect(value == 0)
    }
}
