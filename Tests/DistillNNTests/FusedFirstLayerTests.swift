import DistillNN
import DistillTensor
import DistillTestSupport
import Testing

// `Sequential` runs Conv2d → ReLU → MaxPool2d as one `conv2dReLUMaxPool2d` call (fused where the
// input is data and has few channels: DistillTensor's `FusedConvolutionPool`).
@Suite struct FusedFirstLayerTests {
    /// cnn-small's output and weight gradients are those of its layers chained by hand with the
    /// first three as one `conv2dReLUMaxPool2d`, bit for bit.
    @Test func sequentialUsesTheFusedLayer() throws {
        let net = try ModelZoo.build("cnn-small", seed: 3)
        let x = Tensor.testNormal([5, 1, 28, 28], seed: 601, requiresGrad: false)
        let y = net(x)
        y.backward(Tensor.testNormal(y.shape, seed: 602, requiresGrad: false))
        let conv = try #require(net.layers[0] as? Conv2d), pool = try #require(net.layers[2] as? MaxPool2d)
        let grads = [conv.weight.grad!.scalars, conv.bias!.grad!.scalars]
        conv.weight.grad = nil
        conv.bias!.grad = nil
        var z = conv2dReLUMaxPool2d(x, weight: conv.weight, bias: conv.bias, config: conv.config, pool: pool.config)
        z = net.layers[3...].reduce(z) { Sequential([$1])($0) }
        #expect(z.scalars == y.scalars)
        z.backward(Tensor.testNormal(z.shape, seed: 602, requiresGrad: false))
        #expect(conv.weight.grad!.scalars == grads[0] && conv.bias!.grad!.scalars == grads[1])
    }

    /// An input that needs its gradient (a layer inside a network, or an input being optimised)
    /// takes the unfused path and gets one.
    @Test func anInputThatNeedsAGradientGetsOne() throws {
        let net = try ModelZoo.build("cnn-tiny", seed: 4)
        let x = Tensor.testNormal([2, 1, 28, 28], seed: 603, requiresGrad: true)
        net(x).sum().backward()
        let grad = try #require(x.grad)
        #expect(grad.scalars.contains { $0 != 0 })
    }
}
