import CKernels
import DistillTensor

/// A compiled model (`InferencePlan`, `QuantizedPlan`) that fills `[rows, outputSize]` outputs
/// from `[rows, inputSize]` inputs without the autograd graph.
public protocol RowPredictor {
    var inputSize: Int { get }
    var outputSize: Int { get }
    func predict(_ input: UnsafePointer<Float>, rows: Int, into output: UnsafeMutablePointer<Float>)
}

extension RowPredictor {
    /// Predictions for the `[N, ...]` batch `x`, as `[N, outputSize]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.rank >= 1 && x.count == x.shape[0] * inputSize,
                     "\(type(of: self)): input \(x.shape) does not hold examples of \(inputSize) values")
        let out = Tensor(uninitializedShape: [x.shape[0], outputSize])
        predict(x.data, rows: x.shape[0], into: out.data)
        return out
    }
}

/// An MLP student compiled for prediction: its chain of `Linear` layers (with any `ReLU` fused
/// into the layer before it) run on buffers sized once per batch size, with no autodiff
/// bookkeeping and no tensor allocated per layer.
///
/// Why: at batch 1 a student's arithmetic takes well under a microsecond, so per-call overhead
/// (a tensor per layer, a BLAS call that packs its operands) is most of the latency. A few rows
/// go through a vectorised dot-product kernel (`dk_linear_small`); larger batches through BLAS
/// with the bias and ReLU applied in the same pass over the output.
///
/// Planned: chains of `Flatten`, `Linear`, `ReLU` and `Dropout` (the identity at inference)
/// inside `Sequential`s, optionally after a convolutional front of `Conv2d` (groups 1),
/// `BatchNorm2d` (folded into the convolution before it), `ReLU`, `MaxPool2d`, `AvgPool2d`,
/// `GlobalAvgPool2d` and `Dropout` layers (a CNN student such as `lenet5` or `cnn-tiny`: see
/// `ConvStack`). `init` returns nil for anything else (residual blocks, grouped convolutions,
/// other activations), and callers fall back to the module itself. Outputs equal the module's
/// in evaluation mode up to float rounding (sums run in another order). The plan keeps its own
/// packed copy of the weights (and batch-norm statistics): make a new plan after training
/// further. One plan must not run on two threads at once.
public final class InferencePlan: RowPredictor, @unchecked Sendable {
    struct Layer {
        let weight: Tensor, bias: Tensor?
        let inputs: Int, outputs: Int, relu: Bool
        /// The weight transposed to [inputs][padded] and the bias padded to `padded` (a multiple
        /// of 16) for `dk_linear_packed`; empty on CPUs without it.
        var packedWeight: [Float] = [], packedBias: [Float]? = nil, padded = 0

        mutating func pack() {
            padded = (outputs + 15) / 16 * 16
            packedWeight = [Float](repeating: 0, count: inputs * padded)
            let w = weight.data
            for o in 0..<outputs { for k in 0..<inputs { packedWeight[k * padded + o] = w[o * inputs + k] } }
            packedBias = bias.map { b in (0..<padded).map { $0 < outputs ? b.data[$0] : 0 } }
        }
    }

    let layers: [Layer]
    /// `(x - inputShift) * inputScale` per input value before the first layer, or none.
    let inputShift: [Float]?, inputScale: [Float]?
    /// Values per example going in and coming out.
    public let inputSize: Int, outputSize: Int
    private var buffers: [UnsafeMutablePointer<Float>] = []
    private var bufferRows = 0
    private let widest: Int
    /// A CNN's convolutional layers, run image by image before `layers` (whose first weight's
    /// columns are permuted to read the stack's [H, W, C] output); nil for an MLP.
    let convolutions: ConvStack?
    /// One image's scratch for `convolutions` per chunk of rows (zero borders written once).
    private var convScratch: [UnsafeMutablePointer<Float>] = []

    /// Rows below which the dot-product kernel beats a BLAS call (`distill bench infer`: at batch
    /// 1 the MLP 784-64-10 took 3.1 µs through `linear` and BLAS).
    static let smallBatchRows = 8

    /// Plans `model` for examples of `exampleShape`, or returns nil when it holds a layer the plan
    /// does not cover or the shapes do not chain. `standardize` (mean, scale per input value, as
    /// a tabular student keeps them) is applied to each input first, in a buffer of the plan.
    public init?(_ model: Module, exampleShape: [Int], standardize: (shift: [Float], scale: [Float])? = nil) {
        var convolutions: ConvStack? = nil
        var chain = LinearChain(model)
        if chain == nil, let (stack, rest) = ConvStack.split(model, imageShape: exampleShape) {
            convolutions = stack
            chain = LinearChain(Sequential(rest))
        }
        guard let chain else { return nil }
        var layers = chain.layers.map { Layer(weight: $0.weight, bias: $0.bias, inputs: $0.inputs, outputs: $0.outputs, relu: $0.relu) }
        guard let first = layers.first, let last = layers.last,
              first.inputs == convolutions?.outputSize ?? exampleShape.reduce(1, *) else { return nil }
        let inputSize = exampleShape.reduce(1, *)
        if let standardize, standardize.shift.count != inputSize || standardize.scale.count != inputSize { return nil }
        if let convolutions {
            // The stack writes [H, W, C]; the module flattens [C, H, W]: the first layer reads
            // through the permutation instead of a transpose per image.
            let permutation = convolutions.flattenPermutation, w = first.weight.data
            let permuted = (0..<(first.outputs * first.inputs)).map { j in
                w[(j / first.inputs) * first.inputs + permutation[j % first.inputs]]
            }
            layers[0] = Layer(weight: Tensor(shape: first.weight.shape, scalars: permuted), bias: first.bias,
                              inputs: first.inputs, outputs: first.outputs, relu: first.relu)
        }
        if Self.packedKernel { for k in layers.indices { layers[k].pack() } }
        self.layers = layers
        self.convolutions = convolutions
        inputShift = standardize?.shift
        inputScale = standardize?.scale
        self.inputSize = inputSize
        outputSize = last.outputs
        // The first buffer also holds the standardised rows of an MLP, or a CNN's features.
        widest = max(layers.map(\.outputs).max()!, standardize == nil && convolutions == nil ? 0 : first.inputs)
    }

    deinit {
        buffers.forEach { $0.deallocate() }
        convScratch.forEach { $0.deallocate() }
    }

    /// Predictions for `rows` examples at `input` (`rows × inputSize` values) written to `output`
    /// (`rows × outputSize`).
    public func predict(_ input: UnsafePointer<Float>, rows: Int, into output: UnsafeMutablePointer<Float>) {
        if rows > bufferRows {
            buffers.forEach { $0.deallocate() }
            // Two for the layers' activations, and a CNN's features (`featureBuffer`).
            buffers = (0..<(convolutions == nil ? 2 : 3)).map { _ in .allocate(capacity: rows * widest) }
            bufferRows = rows
        }
        if let convolutions, convScratch.isEmpty {
            convScratch = (0..<max(1, Parallel.workers)).map { _ in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: convolutions.scratchSize)
                scratch.initialize(repeating: 0, count: convolutions.scratchSize)  // the borders stay zero
                return scratch
            }
        }
        // A CNN's image is microseconds of convolutions (LeNet-5: ~9 µs on one core), more than a
        // job's start (~1-2 µs): its rows split from two on. An MLP's few rows go through the
        // small-batch kernel on one thread.
        let splits = convolutions == nil ? Self.packedKernel && rows >= Self.smallBatchRows : rows >= 2
        guard splits else {
            predict(input, rows: 0..<rows, chunk: 0, into: output)  // few rows, or BLAS (which splits large products itself)
            return
        }
        // Many rows: each thread takes one block of rows through every layer: one job per call,
        // and a block's activations never leave the core that made them (the same block on the
        // same thread at each call). Batch 256 of the 784-64-10 MLP: 2.16M samples/s, against
        // 1.77M with each layer split on its own and 1.09M on one thread.
        let chunks: Int
        if convolutions != nil {
            chunks = min(rows, convScratch.count)
        } else {
            let work = rows * layers.reduce(0) { $0 + $1.inputs * $1.outputs }
            chunks = work >= Self.minimumSplitWork ? min(rows / 4, Parallel.workers) : 1
        }
        let X = SharedPointer(UnsafeMutablePointer(mutating: input)), Y = SharedPointer(output)
        if convolutions != nil {
            // The images first, a few at a time to whichever core is free (their features do
            // not depend on the core): cnn-tiny at batch 256 spent 13% of its time with one
            // core waiting for the other's fixed half.
            Parallel.forEachShared(rows, group: Self.imagesPerTake, threads: convScratch.count) { thread, images in
                self.convolve(X.p, images: images, scratch: thread)
            }
        }
        Parallel.forEachChunk(rows, chunks: chunks) { chunk, range in
            self.predict(X.p, rows: range, chunk: chunk, convolved: true, into: Y.p)
        }
    }

    /// Images a thread takes at a time (`Parallel.forEachShared`): a few of ~10 µs each.
    static let imagesPerTake = 4

    /// Where the convolutions write each image's features (row `r` at `r * outputSize`).
    private var featureBuffer: UnsafeMutablePointer<Float> { buffers[2] }

    /// The `images` of `input` through `convolutions`, into their rows of `featureBuffer`.
    private func convolve(_ input: UnsafePointer<Float>, images: Range<Int>, scratch: Int) {
        guard let convolutions else { return }
        let width = convolutions.outputSize
        for r in images {
            convolutions.run(input + r * inputSize, scratch: convScratch[scratch], into: featureBuffer + r * width,
                             shift: inputShift, scale: inputScale)
        }
    }

    /// The rows `range` of `input` through every layer, into the same rows of `output`; the block
    /// uses its own stripe (`range.lowerBound * widest`) of the plan's buffers, and the
    /// convolutions' scratch of `chunk` unless the images are already `convolved`.
    private func predict(_ input: UnsafePointer<Float>, rows range: Range<Int>, chunk: Int, convolved: Bool = false,
                         into output: UnsafeMutablePointer<Float>) {
        let rows = range.count, stripe = range.lowerBound * widest
        var x = input + range.lowerBound * inputSize
        var next = 0
        if let convolutions {
            if !convolved { convolve(input, images: range, scratch: chunk) }
            x = UnsafePointer(featureBuffer + range.lowerBound * convolutions.outputSize)
        } else if let inputShift, let inputScale {
            let f = inputSize, standardized = buffers[0] + stripe
            for r in 0..<rows {
                for j in 0..<f { standardized[r * f + j] = (x[r * f + j] - inputShift[j]) * inputScale[j] }
            }
            x = UnsafePointer(standardized)
            next = 1
        }
        for (k, layer) in layers.enumerated() {
            let y = k == layers.count - 1 ? output + range.lowerBound * outputSize : buffers[(k + next) % 2] + stripe
            run(layer, x, rows: rows, into: y)
            x = UnsafePointer(y)
        }
    }

    private func run(_ layer: Layer, _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        if rows < Self.smallBatchRows {
            dk_linear_small(x, layer.weight.data, layer.bias?.data, y, rows, layer.inputs, layer.outputs, layer.relu ? 1 : 0)
            return
        }
        // Many rows: the packed AVX-512 kernel (on this thread: `predict` splits the rows); BLAS on
        // other CPUs (with AVX2, BLAS is faster at these row counts: see `dk_linear_packed_level`).
        if Self.packedKernel {
            layer.packedWeight.withUnsafeBufferPointer { w in
                (layer.packedBias ?? []).withUnsafeBufferPointer { b in
                    // Cannot fail: the CPU was checked once and `pack` pads to whole vectors.
                    _ = dk_linear_packed(x, w.baseAddress!, layer.packedBias == nil ? nil : b.baseAddress!, y,
                                         rows, layer.inputs, layer.outputs, layer.padded, layer.relu ? 1 : 0)
                }
            }
            return
        }
        let n = layer.outputs
        if let bias = layer.bias {
            for r in 0..<rows { (y + r * n).update(from: bias.data, count: n) }
        }
        BLAS.sgemm(transposeB: true, m: rows, n: n, k: layer.inputs, a: x, lda: layer.inputs, b: layer.weight.data,
                   ldb: layer.inputs, beta: layer.bias == nil ? 0 : 1, c: y, ldc: n)
        if layer.relu {
            for j in 0..<(rows * n) where !(y[j] > 0) { y[j] = 0 }
        }
    }

    /// Whether this CPU runs the packed many-row kernel (AVX-512); the weights are packed only then.
    static let packedKernel = dk_linear_packed_level() == 2

    /// Multiply-adds (all layers) from which the rows are split across the workers.
    static let minimumSplitWork = 1 << 22
}

/// A model that is a chain of `Linear` layers, each optionally followed by a `ReLU` (with
/// `Flatten` and `Dropout` allowed between them, inside `Sequential`s): what `InferencePlan` and
/// `TrainingPlan` run. nil for anything else, for a model with a feature tap, or when the
/// layers' sizes do not chain.
struct LinearChain {
    struct Layer {
        let weight: Tensor, bias: Tensor?
        let inputs: Int, outputs: Int
        var relu: Bool
    }
    private(set) var layers: [Layer] = []
    /// Whether a `Dropout` with a non-zero probability sits in the chain (the identity at inference).
    private(set) var hasDropout = false

    init?(_ model: Module) {
        func collect(_ module: Module) -> Bool {
            guard module.tap == nil else { return false }
            switch module {
            case let sequential as Sequential: return sequential.layers.allSatisfy(collect)
            case let linear as Linear:
                layers.append(Layer(weight: linear.weight, bias: linear.bias, inputs: linear.weight.shape[1],
                                    outputs: linear.weight.shape[0], relu: false))
                return true
            case is ReLU:
                guard !layers.isEmpty, !layers[layers.count - 1].relu else { return false }
                layers[layers.count - 1].relu = true
                return true
            case let dropout as Dropout:
                hasDropout = hasDropout || dropout.probability > 0
                return true
            case is Flatten: return true
            default: return false
            }
        }
        guard collect(model), !layers.isEmpty, zip(layers, layers.dropFirst()).allSatisfy({ $0.outputs == $1.inputs }) else { return nil }
    }
}
