import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

@Suite("Layer behaviour")
struct LayerBehaviourTests {
    // MARK: Sequential's ReLU → MaxPool2d reordering

    /// Inputs for the reordering check: distinct values, values with exact ties, and windows that
    /// are all negative or hold an exact zero (where ReLU-first produces ties of zeros).
    static let reorderInputs: [(name: String, make: @Sendable () -> Tensor)] = [
        ("distinct", { .testDistinct([2, 3, 6, 6], seed: 80) }),
        ("normal", { .testNormal([2, 2, 7, 5], seed: 81) }),
        ("ties, zeros and all-negative windows", {
            let values: [Float] = [-1, -2, -3, -0.5, 0, -1, 2, 2, 0.5, 0.5, -4, 0, 3, -3, 3, 1,
                                   0, 0, 0, 0, -0.25, 1, 1, -0.25, 7, -7, 0, 0, -2, -2, -2, -2]
            return Tensor(shape: [1, 2, 4, 4], scalars: values, requiresGrad: true)
        }),
    ]

    @Test("ReLU→MaxPool2d in a Sequential gives the same output and input gradient as relu then max-pool",
          arguments: [
            (2, nil as Int?, 0), (3, 2, 1), (2, 1, 0), (3, 3, 0),
          ])
    func reluMaxPoolReordering(kernel: Int, stride: Int?, padding: Int) {
        for (name, make) in Self.reorderInputs {
            let pool = MaxPool2d(kernel, stride: stride, padding: padding)
            let label = "\(name), kernel \(kernel) stride \(stride ?? kernel) padding \(padding)"
            // Reference: the two ops applied explicitly, ReLU first.
            let x1 = make()
            let y1 = x1.relu().maxPool2d(pool.config)
            let r = Tensor.testNormal(y1.shape, seed: 7, requiresGrad: false)
            (y1 * r).sum().backward()
            // The optimised path inside Sequential.
            let x2 = make()
            let y2 = Sequential([ReLU(), pool])(x2)
            (y2 * r).sum().backward()
            #expect(y2.shape == y1.shape, "\(label)")
            #expect(y2.scalars == y1.scalars, "\(label): outputs differ")
            #expect(x2.grad?.scalars == x1.grad?.scalars, "\(label): input gradients differ")
        }
    }

    @Test("a tap on the ReLU turns the reordering off without changing the result")
    func reorderingWithTap() throws {
        let x = Tensor.testDistinct([1, 2, 4, 4], seed: 82, requiresGrad: false)
        let plain = Sequential([ReLU(), MaxPool2d(2)])
        let tapped = Sequential([ReLU(), MaxPool2d(2)])
        let taps = try tapped.tapOutputs(["0"])
        #expect(tapped(x).scalars == plain(x).scalars)
        // The tap saw the full-size ReLU output, so the ReLU really ran on its own.
        #expect(taps.outputs["0"]?.shape == [1, 2, 4, 4])
        #expect(taps.outputs["0"]?.scalars == x.relu().scalars)
    }

    // MARK: Dropout

    @Test("Dropout in evaluation mode is the identity; in training it zeroes about p and rescales the rest")
    func dropout() {
        let x = Tensor.testUniform([40, 50], seed: 83, low: 0.5, high: 1.5)
        let layer = Dropout(0.3, seed: 9)
        layer.eval()
        #expect(layer(x).scalars == x.scalars)

        layer.train()
        let y = layer(x)
        let ys = y.scalars, xs = x.scalars
        let zeros = ys.filter { $0 == 0 }.count
        #expect(abs(Double(zeros) / Double(ys.count) - 0.3) < 0.04, "dropped fraction \(Double(zeros) / Double(ys.count))")
        let survivorsScaled = zip(ys, xs).allSatisfy { y, x in y == 0 || abs(y - x / 0.7) <= 1e-6 * abs(x / 0.7) }
        #expect(survivorsScaled)
        // Gradient: the same mask and scale.
        y.sum().backward()
        let g = x.grad!.scalars
        #expect(zip(g, ys).allSatisfy { g, y in y == 0 ? g == 0 : abs(g - 1 / 0.7) < 1e-6 })
        // Reproducible from the seed.
        let again = Dropout(0.3, seed: 9)
        #expect(again(x.detached()).scalars == ys)
    }

    // MARK: Batch-norm against PyTorch

    @Test("BatchNorm running statistics and outputs match torch.nn.BatchNorm after two steps", arguments: NNGolden.batchNormCases)
    func batchNormGolden(_ c: NNGolden.BatchNormCase) {
        let bn: BatchNorm = c.dims == 1 ? BatchNorm1d(c.shape[1]) : BatchNorm2d(c.shape[1])
        bn.weight.assign(Tensor(c.weight))
        bn.bias.assign(Tensor(c.bias))
        let n = c.shape.reduce(1, *)
        let first = Tensor(shape: c.shape, scalars: pattern(n, c.firstPattern).map { Float($0 * 2.0 + 0.5) })
        let second = Tensor(shape: c.shape, scalars: pattern(n, c.secondPattern).map { Float($0 * 1.5 - 0.3) })
        _ = bn(first)
        let out = bn(second)
        assertClose(out.scalars, c.secondOutput, atol: 1e-5, rtol: 1e-5, "second training output")
        assertClose(bn.runningMean.scalars, c.runningMean, atol: 1e-6, rtol: 1e-5, "running_mean")
        assertClose(bn.runningVar.scalars, c.runningVar, atol: 1e-6, rtol: 1e-5, "running_var")
        #expect(bn.numBatchesTracked.item() == 2)
        bn.eval()
        assertClose(bn(first).scalars, c.evalOutput, atol: 1e-5, rtol: 1e-5, "evaluation output")
        #expect(bn.numBatchesTracked.item() == 2, "evaluation must not count batches")
    }

    // MARK: Default initialisation

    @Test("Linear(784, 64) weights are U(±1/√784), like PyTorch's default")
    func linearInitialisation() {
        var g = SeededGenerator(seed: 0)
        let layer = Linear(784, 64, generator: &g)
        let bound = 1 / Double(784).squareRoot()
        let w = layer.weight.scalars.map(Double.init)
        #expect(w.count == 784 * 64)
        #expect(w.allSatisfy { abs($0) <= bound }, "a weight outside ±1/28")
        #expect(layer.bias!.scalars.allSatisfy { abs(Double($0)) <= bound }, "a bias outside ±1/28")
        let mean = w.reduce(0, +) / Double(w.count)
        let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(w.count - 1)).squareRoot()
        #expect(abs(mean) < 0.02 * bound, "mean \(mean)")
        #expect(abs(std / (bound / 3.0.squareRoot()) - 1) < 0.05, "std \(std), uniform gives \(bound / 3.0.squareRoot())")
        // PyTorch's own draw (different generator, same distribution) has the same bound and spread.
        let torch = NNGolden.torchLinear784x64
        #expect(torch.maxAbs <= bound)
        #expect(abs(std / torch.std - 1) < 0.05, "std \(std), torch's \(torch.std)")
        // Roughly uniform: ten equal bins each hold 10% ± 1% of the weights.
        var bins = [Int](repeating: 0, count: 10)
        for v in w { bins[min(9, Int((v + bound) / (2 * bound) * 10))] += 1 }
        for (i, b) in bins.enumerated() {
            #expect(abs(Double(b) / Double(w.count) - 0.1) < 0.01, "bin \(i) holds \(b) of \(w.count)")
        }
    }

    @Test("Conv2d's bound uses fan-in = in/groups·k·k")
    func convInitialisation() {
        var g = SeededGenerator(seed: 1)
        for (cin, cout, k, groups) in [(3, 8, 3, 1), (8, 8, 3, 8), (4, 6, 5, 2)] {
            let conv = Conv2d(cin, cout, kernel: k, groups: groups, generator: &g)
            let bound = Float(1 / Double(cin / groups * k * k).squareRoot())
            #expect(conv.weight.shape == [cout, cin / groups, k, k])
            let w = conv.weight.scalars
            #expect(w.allSatisfy { abs($0) <= bound })
            // The bound is reached: the largest weight is within 20% of it.
            #expect((w.map(abs).max() ?? 0) > 0.8 * bound, "conv \(cin)→\(cout) k\(k) groups \(groups)")
            #expect(conv.bias!.scalars.allSatisfy { abs($0) <= bound })
        }
    }

    @Test("BatchNorm starts at weight 1, bias 0, running mean 0, running variance 1")
    func batchNormInitialisation() {
        let bn = BatchNorm2d(4)
        #expect(bn.weight.scalars == [1, 1, 1, 1] && bn.bias.scalars == [0, 0, 0, 0])
        #expect(bn.runningMean.scalars == [0, 0, 0, 0] && bn.runningVar.scalars == [1, 1, 1, 1])
        #expect(bn.numBatchesTracked.shape == [] && bn.numBatchesTracked.item() == 0)
        #expect(bn.weight.requiresGrad && bn.bias.requiresGrad && !bn.runningMean.requiresGrad)
    }
}
