import CKernels
import DistillTensor
import Foundation

/// MobileNet v2's inverted residual block as one step: a 1×1 Conv expanding the channels (absent
/// in the first block), a depthwise Conv, a 1×1 Conv projecting back (absent in EfficientNet's
/// blocks, where squeeze-excitation reads the depthwise output), with their activations and the
/// residual Add the graph optimiser folded into each (`GraphOptimizer.fuseInvertedResiduals`).
///
/// The step's node reads, by position: 0 the block's input, 1-2 the expansion's weight and bias,
/// 3-4 the depthwise weight and bias, 5-6 the projection's weight and bias, 7 the residual ("" for
/// each one absent).
struct InvertedResidualBlock {
    static let opType = "InvertedResidual"
    static let residualInput = 7

    /// The steps the block replaces, in order (an array: a `PlannedStep` holds its block).
    let layers: [PlannedStep]
    private let hasExpansion: Bool

    init(expand: PlannedStep?, depthwise: PlannedStep, project: PlannedStep?) {
        layers = [expand, depthwise, project].compactMap { $0 }
        hasExpansion = expand != nil
    }

    var expand: PlannedStep? { hasExpansion ? layers[0] : nil }
    var depthwise: PlannedStep { layers[hasExpansion ? 1 : 0] }
    var project: PlannedStep? { layers.count == (hasExpansion ? 3 : 2) ? layers[layers.count - 1] : nil }
}

extension ONNXOps {
    /// The block band by band on `dk_inverted_residual` (Sources/CKernels/conv_block.c), the
    /// images (or, for fewer images than workers, parts of their rows) taken by the workers one
    /// at a time; the expanded tensor (6× the block's input) is never written whole. When the
    /// shapes or the CPU do not allow it, the layers run one by one as the optimiser left them,
    /// with the same results and errors as before the fusion.
    static func invertedResidual(_ c: OpContext, block: InvertedResidualBlock) throws -> [ONNXValue] {
        if ONNXModel.blockFusion, let y = try fusedInvertedResidual(c, block: block) { return [.float(y)] }
        var values: [String: ONNXValue] = [:]
        for (name, value) in zip(c.node.inputs, c.inputs) where !name.isEmpty { values[name] = value }
        var results: [ONNXValue] = []
        for layer in block.layers {
            let node = layer.node
            let inputs = node.inputs.map { $0.isEmpty ? nil : values[$0] }
            let context = OpContext(node: node, inputs: inputs)
            do {
                results = layer.isFused ? try fusedConvolution(context, step: layer) : try Conv(context)
            } catch let e as ONNXError {
                throw e.prefixed(node.label)
            }
            for (name, value) in zip(node.outputs, results) where !name.isEmpty { values[name] = value }
        }
        return results
    }

    /// The fused run, or nil when the block's tensors do not have the shapes it needs (the caller
    /// then runs the layers one by one).
    private static func fusedInvertedResidual(_ c: OpContext, block: InvertedResidualBlock) throws -> Tensor? {
        let (expand, depthwise, project) = (block.expand, block.depthwise, block.project)
        guard case .float(let x)? = c.inputs[0], x.rank == 4, let wd = floatInput(c, 3), wd.rank == 4, wd.shape[1] == 1 else { return nil }
        let (n, channels, e) = (x.shape[0], x.shape[1], wd.shape[0])
        guard e % 8 == 0, (try? depthwise.node.attributes.int("group", 1)) == e, let bd = optionalFloatInput(c, 4, count: e) else { return nil }
        var wp: Tensor?, bp: Tensor??
        if project != nil {
            guard let w = floatInput(c, 5), w.rank == 4, w.shape[1] == e, w.shape[2] == 1, w.shape[3] == 1 else { return nil }
            wp = w; bp = optionalFloatInput(c, 6, count: w.shape[0])
            guard bp != nil else { return nil }
        }
        let m = wp?.shape[0] ?? e
        var we: Tensor?, be: Tensor??
        if let expand {
            guard let w = floatInput(c, 1), w.shape == [e, channels, 1, 1], isPointwise(expand, input: [x.shape[2], x.shape[3]]) else { return nil }
            we = w; be = optionalFloatInput(c, 2, count: e)
            guard be != nil else { return nil }
        } else {
            guard channels == e else { return nil }
        }
        let kernel = Array(wd.shape[2...])
        guard let dwGeometry = try? WindowGeometry(OpContext(node: depthwise.node, inputs: []), input: Array(x.shape[2...]), kernel: kernel),
              dwGeometry.output.allSatisfy({ $0 > 0 }), let window = windowShape(Tensor(uninitializedShape: [1, e, x.shape[2], x.shape[3]]), dwGeometry, kernel),
              project.map({ isPointwise($0, input: dwGeometry.output) }) ?? true else { return nil }
        let outShape = [n, m] + dwGeometry.output
        var residual: Tensor?
        if !c.node.inputs[InvertedResidualBlock.residualInput].isEmpty {
            guard case .float(let r)? = c.inputs[InvertedResidualBlock.residualInput], r.shape == outShape else { return nil }
            residual = r
        }
        try checkedShape(outShape, elementBytes: 4)
        let (area, outArea) = (x.shape[2] * x.shape[3], dwGeometry.output.reduce(1, *))
        let perImage = [CheckedSize.product([e, channels, area]), CheckedSize.product([e, kernel[0], kernel[1], outArea]),
                        CheckedSize.product([project == nil ? 0 : m, e, outArea])]
        try checkWork(perImage.reduce(Optional(0)) { sum, part in sum.flatMap { s in part.flatMap { CheckedSize.add(s, $0) } } }
                          .flatMap { CheckedSize.multiply($0, n) }, "the inverted residual block", limit: Limits.maxMultiplyAdds)
        if n == 0 { return Tensor(uninitializedShape: outShape) }

        let y = Tensor(uninitializedShape: outShape)
        let shape = window.shape, outRows = shape.out_h
        // Images across the workers; with fewer images than workers, each image's rows in parts.
        let parts = n >= Parallel.workers ? 1 : Swift.min(outRows, (Parallel.workers + n - 1) / n)
        let tasks = n * parts
        let xs = SharedPointer(x.data), ys = SharedPointer(y.data), rs = residual.map { SharedPointer($0.data) }
        let weights = [we, wd, wp].map { $0.map { SharedPointer($0.data) } }
        let biases = [be ?? nil, bd, bp ?? nil].map { $0.map { SharedPointer($0.data) } }
        let activations = [expand?.activation, depthwise.activation, project?.activation]
        let status = UnsafeMutablePointer<Int32>.allocate(capacity: tasks)
        status.initialize(repeating: 0, count: tasks)
        defer { status.deallocate() }
        let statuses = SharedPointer(status)
        // One task a chunk: with more chunks than threads, each thread takes the next task when
        // done with its last (a core slowed by another tenant no longer holds the other back at
        // every block's end).
        Parallel.forEachChunk(tasks, chunks: Swift.min(tasks, 1024)) { _, range in
            func stage(_ i: Int) -> dk_conv_stage {
                dk_conv_stage(weight: weights[i].map { UnsafePointer($0.p) }, bias: biases[i].map { UnsafePointer($0.p) },
                              activation: activations[i]?.kind ?? 0, lo: activations[i]?.lo ?? 0, hi: activations[i]?.hi ?? 0)
            }
            var window = shape
            for task in range {
                let (image, part) = task.quotientAndRemainder(dividingBy: parts)
                let first = outRows * part / parts, end = outRows * (part + 1) / parts
                statuses.p[task] = dk_inverted_residual(&window, channels, m, xs.p + image * channels * area, stage(0), stage(1), stage(2),
                                                        rs.map { UnsafePointer($0.p + image * m * outArea) }, ys.p + image * m * outArea,
                                                        first, end)
            }
        }
        return (0..<tasks).allSatisfy { status[$0] == 0 } ? y : nil
    }

    private static func floatInput(_ c: OpContext, _ i: Int) -> Tensor? {
        guard i < c.inputs.count, case .float(let t)? = c.inputs[i] else { return nil }
        return t
    }

    /// Input `i` as a bias of `count` floats: .some(nil) when absent, nil when it has another shape.
    private static func optionalFloatInput(_ c: OpContext, _ i: Int, count: Int) -> Tensor?? {
        guard i < c.inputs.count, let value = c.inputs[i] else { return .some(nil) }
        guard case .float(let t) = value, t.shape == [count] else { return nil }
        return .some(t)
    }

    /// Whether `layer` is a 1×1 Conv with stride 1 and no padding over an image of extents `input`.
    private static func isPointwise(_ layer: PlannedStep, input: [Int]) -> Bool {
        guard layer.gate == nil, (try? layer.node.attributes.int("group", 1)) == 1,
              let g = try? WindowGeometry(OpContext(node: layer.node, inputs: []), input: input, kernel: [1, 1]) else { return false }
        return g.strides == [1, 1] && g.padsBegin == [0, 0] && g.padsEnd == [0, 0]
    }
}

extension ONNXModel {
    /// Whether MobileNet v2's inverted residual blocks run fused (`ONNXOps.invertedResidual`),
    /// on AVX2 + FMA kernels: by default on CPUs whose best level is AVX2 (where it was measured
    /// faster: BENCHMARKS.md), off on AVX-512 ones (their own kernels measured faster there:
    /// BENCHMARKS.md, "AVX-512 again") and when `DISTILL_ONNX_POINTWISE=blas` asks for BLAS. `DISTILL_ONNX_BLOCKS=1` or `0` chooses.
    /// A task-local so that tests can compare both ways in one process.
    @TaskLocal static var blockFusion: Bool = {
        let environment = ProcessInfo.processInfo.environment
        if let forced = environment["DISTILL_ONNX_BLOCKS"] { return forced != "0" }
        return environment["DISTILL_ONNX_POINTWISE"] != "blas" && dk_linear_packed_level() == 1
    }()
}
