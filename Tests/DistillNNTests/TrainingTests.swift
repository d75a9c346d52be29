import DistillNN
import DistillTensor
import DistillTestSupport
import Testing

// Small end-to-end runs: the layers, autograd and optimizers together actually learn.

@Suite("End-to-end training")
struct TrainingTests {
    /// 160 points in 6 dimensions, labelled by which side of a fixed hyperplane they lie on,
    /// with points closer than 0.3 to the plane dropped (a margin, so the problem is separable).
    static func separableProblem() -> (x: Tensor, labels: [Int]) {
        var g = SeededGenerator(seed: 123)
        let normal: [Double] = [0.8, -0.5, 0.3, 0.0, 1.2, -0.7]
        let norm = normal.map { $0 * $0 }.reduce(0, +).squareRoot()
        var rows: [Float] = [], labels: [Int] = []
        while labels.count < 160 {
            let p = (0..<6).map { _ in g.nextGaussian() }
            let side = zip(p, normal).map(*).reduce(0, +) / norm
            guard abs(side) > 0.3 else { continue }
            rows += p.map(Float.init)
            labels.append(side > 0 ? 1 : 0)
        }
        return (Tensor(shape: [160, 6], scalars: rows), labels)
    }

    @Test("an MLP trained with Adam for 200 steps separates a separable problem (>95% training accuracy)")
    func mlpLearns() throws {
        let (x, labels) = Self.separableProblem()
        #expect(labels.filter { $0 == 1 }.count > 40 && labels.filter { $0 == 0 }.count > 40, "both classes present")
        let model = try ModelZoo.build("mlp:6-16-2", seed: 7)
        let optimizer = Adam(parameters: model.trainableParameters(), learningRate: 0.01)
        let before = accuracy(withNoGrad { model(x) }, labels)
        var firstLoss: Float = 0, lastLoss: Float = 0
        for step in 0..<200 {
            optimizer.zeroGrad()
            let loss = crossEntropy(model(x), labels)
            loss.backward()
            optimizer.step()
            if step == 0 { firstLoss = loss.item() }
            lastLoss = loss.item()
        }
        let after = accuracy(withNoGrad { model(x) }, labels)
        #expect(after > 0.95, "training accuracy \(after) (before training \(before)); loss \(firstLoss) → \(lastLoss)")
        #expect(lastLoss < firstLoss / 2, "loss \(firstLoss) → \(lastLoss)")
    }

    @Test("cnn-tiny's loss falls over 20 Adam steps on random images with fixed labels")
    func cnnTinyLossFalls() throws {
        let model = try ModelZoo.build("cnn-tiny", seed: 8)
        let x = Tensor.testUniform([8, 1, 28, 28], seed: 97, low: 0, high: 1, requiresGrad: false)
        let labels = [0, 1, 2, 3, 4, 5, 6, 7]
        let optimizer = Adam(parameters: model.trainableParameters(), learningRate: 1e-3)
        var losses: [Float] = []
        for _ in 0..<20 {
            optimizer.zeroGrad()
            let loss = crossEntropy(model(x), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        }
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(losses.last! < 0.8 * losses.first!, "losses \(losses)")
        let final = withNoGrad { crossEntropy(model(x), labels) }.item()
        #expect(final < losses.first!, "final loss \(final), first \(losses.first!)")
    }
}
