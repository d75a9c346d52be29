import CKernels
@testable import DistillONNX
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

// MobileNet v2's inverted residual block run as one step (Sources/CKernels/conv_block.c): the
// fused run against the same plan's layers one by one (`ONNXModel.blockFusion` off) and against
// the graph as written on BLAS, over shapes that cross band boundaries, strides, paddings,
// batch 1 (rows split across workers), chunked batches, and blocks the kernel does not take.

/// Deterministic values in [-1, 1).
private func values(_ count: Int, seed: UInt64) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1..<1, using: &g) }
}

private let hasAVX2 = dk_linear_packed_level() >= 1

/// One block: [expand 1×1 + Clip →] depthwise k×k (stride, pads) + Clip → project 1×1 [+ Add x].
private struct Block {
    var channels = 8, expanded = 48, outputs = 8, height = 9, width = 11
    var kernel = 3, stride = 1, pads = [1, 1, 1, 1]
    var expand = true, residual = true
    /// false: the block ends at the depthwise layer (EfficientNet's, whose output squeeze-excitation reads).
    var project = true
    /// SiLU (x·Sigmoid(x), applied after the tiles) instead of Clip (in registers).
    var silu = false

    var outChannels: Int { project ? outputs : (expand ? expanded : channels) }
    var outHeight: Int { (height + pads[0] + pads[2] - kernel) / stride + 1 }
    var outWidth: Int { (width + pads[1] + pads[3] - kernel) / stride + 1 }

    func model() throws -> ONNXModel {
        let e = expand ? expanded : channels
        var nodes: [Onnx_NodeProto] = []
        var inits = [floatTensor("lo", [], [0]), floatTensor("hi", [], [6])]
        var current = "x"
        func activation(_ input: String, _ output: String) -> [Onnx_NodeProto] {
            silu ? [makeNode("Sigmoid", [input], [output + "s"]), makeNode("Mul", [input, output + "s"], [output])]
                 : [makeNode("Clip", [input, "lo", "hi"], [output])]
        }
        if expand {
            nodes += [makeNode("Conv", ["x", "wexp", "bexp"], ["c1"], name: "expand")] + activation("c1", "a1")
            inits += [floatTensor("wexp", [e, channels, 1, 1], values(e * channels, seed: 1)), floatTensor("bexp", [e], values(e, seed: 2))]
            current = "a1"
        }
        nodes += [makeNode("Conv", [current, "wdw", "bdw"], ["c2"], name: "depthwise",
                           [intAttribute("group", e), intsAttribute("pads", pads), intsAttribute("strides", [stride, stride])])]
        nodes += activation("c2", project ? "a2" : "y")
        if project { nodes.append(makeNode("Conv", ["a2", "wproj", "bproj"], [residual ? "c3" : "y"], name: "project")) }
        if project && residual { nodes.append(makeNode("Add", ["x", "c3"], ["y"])) }
        inits += [floatTensor("wdw", [e, 1, kernel, kernel], values(e * kernel * kernel, seed: 3)), floatTensor("bdw", [e], values(e, seed: 4)),
                  floatTensor("wproj", [outputs, e, 1, 1], values(outputs * e, seed: 5)), floatTensor("bproj", [outputs], values(outputs, seed: 6))]
        return try load(makeModel(nodes: nodes, inputs: [tensorInfo("x", [nil, channels, height, width])],
                                  outputs: [tensorInfo("y", [nil, outChannels, outHeight, outWidth])], initializers: inits, opset: 17))
    }

    func input(_ n: Int, seed: UInt64 = 9) -> [String: ONNXValue] {
        ["x": .float(Tensor(shape: [n, channels, height, width], scalars: values(n * channels * height * width, seed: seed)))]
    }
}

private func output(_ model: ONNXModel, _ feeds: [String: ONNXValue], fused: Bool, optimized: Bool = true, chunk: Int = 0) throws -> Tensor {
    try ONNXModel.$blockFusion.withValue(fused) {
        try ONNXModel.$chunkImages.withValue(chunk) {
            try model.run(feeds, extra: [], observe: nil, optimized: optimized)["y"]!.floatTensor!
        }
    }
}

@Suite("ONNX inverted residual blocks run fused")
struct InvertedResidualTests {
    @Test("The optimiser makes expand → depthwise → project (with their Clips and the Add) one step")
    func planHasOneStep() throws {
        let model = try Block().model()
        #expect(model.optimizedPlan.steps.map(\.label) == ["[Conv+Clip → Conv[grouped]+Clip → Conv+Add]"])
        let noExpand = try Block(expand: false, residual: false).model()
        #expect(noExpand.optimizedPlan.steps.map(\.label) == ["[Conv[grouped]+Clip → Conv]"])
        let noProject = try Block(project: false, silu: true).model()
        #expect(noProject.optimizedPlan.steps.map(\.label) == ["[Conv+SiLU → Conv[grouped]+SiLU]"])
        // A depthwise Conv alone stays as it is.
        let alone = try Block(expand: false, project: false).model()
        #expect(alone.optimizedPlan.steps.map(\.label) == ["Conv[grouped]+Clip"])
    }

    @Test("Fused equals the layers one by one and the written graph: bands, strides, pads, kernels, batch 1",
          .enabled(if: hasAVX2, "the fused kernel needs AVX2 + FMA"))
    func matchesLayers() throws {
        // Bands: 64 channels of 64 columns is about 17 KiB a padded row, so 48 rows take several
        // bands of the 256 KiB budget (kept rows between bands, at stride 1 and 2).
        let blocks = [
            Block(),
            Block(stride: 2, residual: false),
            Block(channels: 16, expanded: 64, outputs: 16, height: 48, width: 64),
            Block(channels: 16, expanded: 64, outputs: 24, height: 48, width: 63, stride: 2, residual: false),
            Block(channels: 8, expanded: 32, outputs: 8, height: 13, width: 13, kernel: 5, pads: [2, 2, 2, 2]),
            Block(channels: 8, expanded: 40, outputs: 16, height: 14, width: 14, stride: 2, pads: [0, 0, 1, 1], residual: false),
            Block(channels: 8, expanded: 24, outputs: 16, height: 7, width: 7, pads: [0, 0, 0, 0], residual: false),
            Block(channels: 16, outputs: 8, height: 20, width: 17, expand: false, residual: false),
            Block(channels: 32, outputs: 16, height: 112, width: 30, stride: 2, expand: false, residual: false),
            // EfficientNet's: SiLU, 5×5, no projection; a 7×7 image with many channels (one band
            // of the budget would be under a row: the band's floor of pixels applies).
            Block(channels: 8, expanded: 48, height: 14, width: 14, kernel: 5, stride: 2, pads: [2, 2, 2, 2], project: false, silu: true),
            Block(channels: 16, expanded: 1152, height: 7, width: 7, kernel: 5, pads: [2, 2, 2, 2], project: false, silu: true),
            Block(channels: 8, expanded: 32, outputs: 8, height: 9, width: 9, silu: true),
            // Padding wider than the image: bands of nothing but padding rows, stride 3.
            Block(channels: 8, expanded: 16, outputs: 8, height: 5, width: 6, stride: 3, pads: [7, 9, 4, 2], residual: false),
        ]
        for (i, block) in blocks.enumerated() {
            let model = try block.model()
            #expect(model.optimizedPlan.steps.count == 1, "block \(i)")
            for n in [1, 3] {
                let feeds = block.input(n, seed: UInt64(i + 10))
                let fused = try output(model, feeds, fused: true)
                let layers = try output(model, feeds, fused: false)
                let written = try ONNXModel.$pointwiseKernel.withValue(0) { try output(model, feeds, fused: false, optimized: false) }
                #expect(fused.shape == [n, block.outChannels, block.outHeight, block.outWidth], "block \(i)")
                // The same kernels sum in the same order on AVX2 hosts; AVX-512 ones run the
                // layers on their own 1×1 kernel, which rounds differently.
                if dk_linear_packed_level() == 1 { #expect(fused.scalars == layers.scalars, "block \(i), batch \(n)") }
                assertClose(fused.scalars, layers.scalars, atol: 1e-5, rtol: 1e-5, "block \(i), batch \(n): layers")
                assertClose(fused.scalars, written.scalars, atol: 1e-4, rtol: 1e-4, "block \(i), batch \(n): written")
            }
        }
    }

    @Test("A batch run in chunks gives the same as the batch run whole", .enabled(if: hasAVX2, "the fused kernel needs AVX2 + FMA"))
    func chunks() throws {
        let block = Block(channels: 8, expanded: 32, outputs: 8, height: 10, width: 12)
        let model = try block.model()
        #expect(model.chunkable)
        let feeds = block.input(19)
        let whole = try output(model, feeds, fused: true, chunk: 0)
        let chunked = try output(model, feeds, fused: true, chunk: 4)
        #expect(whole.scalars == chunked.scalars)
    }

    @Test("A block the kernel does not take (expanded channels not a multiple of 8) runs its layers one by one")
    func fallsBack() throws {
        // 19 expanded channels: the fused step runs its layers one by one.
        let odd = Block(channels: 5, expanded: 19, outputs: 5, height: 7, width: 9)
        let model = try odd.model()
        #expect(model.optimizedPlan.steps.count == 1)
        let feeds = odd.input(2)
        let written = try ONNXModel.$pointwiseKernel.withValue(0) { try output(model, feeds, fused: false, optimized: false) }
        assertClose(try output(model, feeds, fused: true).scalars, written.scalars, atol: 1e-5, rtol: 1e-5)
    }

    @Test("A wrong input is refused with an error, not run")
    func errors() throws {
        let model = try Block().model()
        let feeds = ["x": ONNXValue.float(Tensor(shape: [1, 3, 9, 11], scalars: values(3 * 99, seed: 1)))]
        #expect(throws: ONNXError.self) { try output(model, feeds, fused: true) }
    }
}
