import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// Reference values from PyTorch 2.13 (CPU), written by scripts/golden/make_golden.py into
// Golden/*.json together with their inputs. The snippet above each test is the one that produced
// its numbers (`randn(seed, *shape, scale)` is `np.random.RandomState(seed).standard_normal(shape)
// * scale` as float32; `uniform` likewise); each JSON file repeats it under "snippet".
// Regenerate with: /root/.venvs/torchref/bin/python scripts/golden/make_golden.py

/// One golden file: named float32 tensors plus integer parameters.
struct Golden: Decodable {
    struct Entry: Decodable { let shape: [Int]; let data: [Float] }
    let op: String
    let snippet: String
    let params: [String: Double]
    let tensors: [String: Entry]

    static func load(_ name: String) throws -> Golden {
        let folder = try #require(Bundle.module.url(forResource: "Golden", withExtension: nil), "Golden resources missing from the test bundle")
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: folder.appendingPathComponent("\(name).json")))
    }

    /// The tensor stored under `name` (a new tensor on every call).
    func tensor(_ name: String, requiresGrad: Bool = false) throws -> Tensor {
        let e = try #require(tensors[name], "golden file \(op) has no tensor '\(name)'")
        return Tensor(shape: e.shape, scalars: e.data, requiresGrad: requiresGrad)
    }

    func int(_ key: String) throws -> Int { Int(try #require(params[key], "golden file \(op) has no parameter '\(key)'")) }

    /// Records an issue unless `actual` has the stored tensor's shape and values within tolerance.
    func expect(_ actual: Tensor?, matches name: String, atol: Double = 1e-5, rtol: Double = 1e-5,
                sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = try tensor(name)
        guard let actual else {
            Issue.record("\(op) \(name): no tensor computed", sourceLocation: sourceLocation)
            return
        }
        // PyTorch's scalar losses are stored as [1]; the engine's are rank 0.
        let scalarLoss = expected.shape == [1] && actual.shape == []
        #expect(actual.shape == expected.shape || scalarLoss, "\(op) \(name): shape \(actual.shape), PyTorch \(expected.shape)",
                sourceLocation: sourceLocation)
        assertClose(actual.scalars, expected.scalars, atol: atol, rtol: rtol, "\(op) \(name)", sourceLocation: sourceLocation)
    }
}

@Suite struct GoldenTests {
    // x = randn(1, 4, 5, scale=2.0); x3 = randn(2, 2, 3, 4, scale=2.0)
    // softmax_last = F.softmax(x, dim=-1); log_softmax_last = F.log_softmax(x, dim=-1)
    // softmax_axis1 = F.softmax(x3, dim=1); log_softmax_axis1 = F.log_softmax(x3, dim=1)
    @Test func softmaxAndLogSoftmax() throws {
        let g = try Golden.load("softmax")
        let x = try g.tensor("x"), x3 = try g.tensor("x3")
        try g.expect(x.softmax(), matches: "softmax_last")
        try g.expect(x.logSoftmax(), matches: "log_softmax_last")
        try g.expect(x3.softmax(axis: 1), matches: "softmax_axis1")
        try g.expect(x3.logSoftmax(axis: 1), matches: "log_softmax_axis1")
    }

    // logits = randn(3, 6, 5, scale=1.5); targets = torch.tensor([0, 4, 2, 2, 1, 3])
    // loss = F.cross_entropy(logits, targets)  # reduction='mean'
    @Test func crossEntropyFromEngineOps() throws {
        let g = try Golden.load("cross_entropy")
        let logits = try g.tensor("logits")
        let targets = try g.tensor("targets").scalars.map { Int($0) }
        let loss = -logits.logSoftmax().gather(classes: targets).mean()
        try g.expect(loss, matches: "loss")
        try g.expect(logits.softmaxCrossEntropy(labels: targets), matches: "loss")  // the fused op
    }

    // s = randn(4, 6, 5, scale=2.0); t = randn(5, 6, 5, scale=3.0); T = 4.0
    // loss = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction='batchmean') * T * T
    @Test func distillationKLFromEngineOps() throws {
        let g = try Golden.load("kl_div")
        let s = try g.tensor("student"), t = try g.tensor("teacher")
        let T = Float(try g.int("temperature")), n = Float(s.shape[0])
        // KL(p_t ‖ p_s) summed over classes, averaged over the batch ('batchmean'), times T².
        let pT = (t / T).softmax(axis: 1)
        let kl = (pT * ((t / T).logSoftmax(axis: 1) - (s / T).logSoftmax(axis: 1))).sum() / n * (T * T)
        try g.expect(kl, matches: "loss")
        // The same with log p_t taken as log(softmax), as the formula is usually written.
        let klLog = (pT * (pT.log() - (s / T).logSoftmax(axis: 1))).sum() / n * (T * T)
        try g.expect(klLog, matches: "loss")
        try g.expect(s.temperedKLDivergence(teacherLogits: t, temperature: T), matches: "loss")  // the fused op
    }

    /// Forward and backward of one golden convolution against PyTorch.
    func checkConv(_ name: String) throws {
        let g = try Golden.load(name)
        let x = try g.tensor("x", requiresGrad: true), weight = try g.tensor("weight", requiresGrad: true)
        let bias = g.tensors["bias"] == nil ? nil : try g.tensor("bias", requiresGrad: true)
        let s = try g.int("stride"), p = try g.int("padding"), d = try g.int("dilation")
        let config = Conv2dConfig(stride: (s, s), padding: (p, p), dilation: (d, d), groups: try g.int("groups"))
        let y = conv2d(x, weight: weight, bias: bias, config: config)
        try g.expect(y, matches: "y")
        y.backward(try g.tensor("grad_y"))
        try g.expect(x.grad, matches: "grad_x")
        try g.expect(weight.grad, matches: "grad_weight")
        if let bias { try g.expect(bias.grad, matches: "grad_bias") }
    }

    // x = randn(10, 2, 2, 5, 5).requires_grad_()
    // weight = randn(20, 3, 2, 3, 3, scale=0.5).requires_grad_()
    // bias = randn(30, 3).requires_grad_()
    // y = F.conv2d(x, weight, bias, stride=1, padding=0, dilation=1, groups=1)
    // grad_y = randn(40, *y.shape); y.backward(grad_y)  # grad_x = x.grad, grad_weight = weight.grad
    @Test func conv2dPlain() throws { try checkConv("conv2d_plain") }

    // x = randn(11, 2, 2, 6, 5).requires_grad_()
    // weight = randn(21, 3, 2, 3, 3, scale=0.5).requires_grad_()
    // bias = randn(31, 3).requires_grad_()
    // y = F.conv2d(x, weight, bias, stride=2, padding=1, dilation=1, groups=1)
    // grad_y = randn(41, *y.shape); y.backward(grad_y)  # grad_x = x.grad, grad_weight = weight.grad
    @Test func conv2dStride2Padding1() throws { try checkConv("conv2d_stride2_pad1") }

    // x = randn(12, 1, 4, 4, 4).requires_grad_()
    // weight = randn(22, 4, 2, 3, 3, scale=0.5).requires_grad_()
    // bias = None
    // y = F.conv2d(x, weight, bias, stride=1, padding=1, dilation=1, groups=2)
    // grad_y = randn(42, *y.shape); y.backward(grad_y)  # grad_x = x.grad, grad_weight = weight.grad
    @Test func conv2dGroups2() throws { try checkConv("conv2d_groups2") }

    // x = randn(13, 1, 3, 7, 7).requires_grad_()
    // weight = randn(23, 2, 3, 3, 3, scale=0.5).requires_grad_()
    // bias = randn(33, 2).requires_grad_()
    // y = F.conv2d(x, weight, bias, stride=1, padding=1, dilation=2, groups=1)
    // grad_y = randn(43, *y.shape); y.backward(grad_y)  # grad_x = x.grad, grad_weight = weight.grad
    @Test func conv2dDilation2() throws { try checkConv("conv2d_dilation2") }

    // x = randn(50, 2, 2, 6, 6)
    // max_k2 = F.max_pool2d(x, kernel_size=2)
    // max_k3_s2_p1 = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    // avg_k2 = F.avg_pool2d(x, kernel_size=2)
    // avg_k3_s2_p1 = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)  # count_include_pad=True
    // avg_k3_s1 = F.avg_pool2d(x, kernel_size=3, stride=1)
    @Test func pooling() throws {
        let g = try Golden.load("pool2d")
        let x = try g.tensor("x")
        try g.expect(x.maxPool2d(.init(kernel: (2, 2))), matches: "max_k2")
        try g.expect(x.maxPool2d(.init(kernel: (3, 3), stride: (2, 2), padding: (1, 1))), matches: "max_k3_s2_p1")
        try g.expect(x.avgPool2d(.init(kernel: (2, 2))), matches: "avg_k2")
        try g.expect(x.avgPool2d(.init(kernel: (3, 3), stride: (2, 2), padding: (1, 1))), matches: "avg_k3_s2_p1")
        try g.expect(x.avgPool2d(.init(kernel: (3, 3), stride: (1, 1))), matches: "avg_k3_s1")
    }

    /// Training and evaluation batch norm (outputs, running statistics, gradients) against PyTorch.
    func checkBatchNorm(_ name: String) throws {
        let g = try Golden.load(name)
        let momentum = Float(try g.int("momentum_percent")) / 100
        let x = try g.tensor("x", requiresGrad: true)
        let weight = try g.tensor("weight", requiresGrad: true), bias = try g.tensor("bias", requiresGrad: true)
        let runningMean = try g.tensor("running_mean"), runningVar = try g.tensor("running_var")

        let yTrain = batchNorm(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                               training: true, momentum: momentum, epsilon: 1e-5)
        try g.expect(yTrain, matches: "y_train")
        try g.expect(runningMean, matches: "running_mean_after")
        try g.expect(runningVar, matches: "running_var_after")
        yTrain.backward(try g.tensor("grad_y"))
        try g.expect(x.grad, matches: "grad_x_train")
        try g.expect(weight.grad, matches: "grad_weight_train")
        try g.expect(bias.grad, matches: "grad_bias_train")

        for t in [x, weight, bias] { t.zeroGrad() }
        let yEval = batchNorm(x, weight: weight, bias: bias, runningMean: try g.tensor("running_mean"),
                              runningVar: try g.tensor("running_var"), training: false, epsilon: 1e-5)
        try g.expect(yEval, matches: "y_eval")
        yEval.backward(try g.tensor("grad_y"))
        try g.expect(x.grad, matches: "grad_x_eval")
        try g.expect(weight.grad, matches: "grad_weight_eval")
        try g.expect(bias.grad, matches: "grad_bias_eval")
    }

    // x = (randn(60, *(4, 3, 2, 2), scale=2.0) + 0.5).requires_grad_()
    // weight = uniform(61, 0.5, 1.5, 3).requires_grad_(); bias = randn(62, 3).requires_grad_()
    // running_mean = randn(63, 3, scale=0.1); running_var = uniform(64, 0.5, 2.0, 3)
    // grad_y = randn(65, *(4, 3, 2, 2))
    // rm, rv = running_mean.clone(), running_var.clone()
    // y_train = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=1e-5)
    // y_train.backward(grad_y)  # running_mean_after = rm, running_var_after = rv, grad_*_train = .grad
    // y_eval = F.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=1e-5)
    // y_eval.backward(grad_y)   # grads zeroed in between; grad_*_eval = .grad
    @Test func batchNorm4d() throws { try checkBatchNorm("batch_norm_4d") }

    // x = (randn(70, *(6, 4), scale=2.0) + 0.5).requires_grad_()
    // weight = uniform(71, 0.5, 1.5, 4).requires_grad_(); bias = randn(72, 4).requires_grad_()
    // running_mean = randn(73, 4, scale=0.1); running_var = uniform(74, 0.5, 2.0, 4)
    // grad_y = randn(75, *(6, 4))
    // rm, rv = running_mean.clone(), running_var.clone()
    // y_train = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=1e-5)
    // y_train.backward(grad_y)  # running_mean_after = rm, running_var_after = rv, grad_*_train = .grad
    // y_eval = F.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=1e-5)
    // y_eval.backward(grad_y)   # grads zeroed in between; grad_*_eval = .grad
    @Test func batchNorm2d() throws { try checkBatchNorm("batch_norm_2d") }

    @Test func everyGoldenFileIsUsedAndCarriesItsSnippet() throws {
        let folder = try #require(Bundle.module.url(forResource: "Golden", withExtension: nil))
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(names == ["batch_norm_2d.json", "batch_norm_4d.json", "conv2d_dilation2.json", "conv2d_groups2.json",
                          "conv2d_plain.json", "conv2d_stride2_pad1.json", "cross_entropy.json", "kl_div.json",
                          "pool2d.json", "softmax.json"])
        for name in names {
            let g = try Golden.load(String(name.dropLast(5)))
            #expect(g.snippet.contains("F."), "\(name) lacks its PyTorch snippet")
        }
    }
}
