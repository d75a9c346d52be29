import CBLASLoader
import Foundation

/// DistillTensor: the engine under everything in DistillKit.
///
/// `Tensor` is a deliberate **reference type** (like `torch.Tensor`), not a copy-on-write value:
/// reverse-mode autodiff needs identity. A parameter used twice in a graph must receive both
/// gradient contributions in one `grad`, graph nodes point at the tensors they were computed from,
/// and an optimizer updates a parameter in place so every module holding it sees the new values.
/// Ops never mutate their inputs: each returns a new tensor. Only optimizers and the explicit
/// in-place helpers (`assign`, `addScaled`) write into existing storage.
///
/// Data is Float32, contiguous, row-major (the last axis varies fastest).
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    /// Extent of each axis, outermost first.
    public let shape: [Int]
    /// The elements, `count` of them, row-major.
    public let storage: TensorStorage
    /// Whether gradients flow to (and accumulate in) this tensor.
    public var requiresGrad: Bool
    /// Accumulated gradient, same shape as the tensor, after `backward()`.
    public var grad: Tensor?
    /// How this tensor was computed, when gradients flow through it.
    var node: GradNode?

    public init(shape: [Int], storage: TensorStorage, requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative extent in shape \(shape)")
        precondition(shape.reduce(1, *) == storage.count,
                     "Tensor: shape \(shape) holds \(shape.reduce(1, *)) elements, storage has \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// A tensor of the given shape with uninitialised contents (fill it before reading).
    public convenience init(uninitializedShape shape: [Int]) {
        self.init(shape: shape, storage: TensorStorage(count: shape.reduce(1, *)))
    }

    /// A tensor holding `scalars` in row-major order.
    public convenience init(shape: [Int], scalars: [Float], requiresGrad: Bool = false) {
        precondition(shape.reduce(1, *) == scalars.count,
                     "Tensor: shape \(shape) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        let storage = TensorStorage(count: scalars.count)
        scalars.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: scalars.count) }
        self.init(shape: shape, storage: storage, requiresGrad: requiresGrad)
    }

    /// A rank-1 tensor.
    public convenience init(_ scalars: [Float], requiresGrad: Bool = false) {
        self.init(shape: [scalars.count], scalars: scalars, requiresGrad: requiresGrad)
    }

    /// A rank-0 tensor.
    public convenience init(scalar: Float) { self.init(shape: [], scalars: [scalar]) }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var data: UnsafeMutablePointer<Float> { storage.pointer }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: storage.pointer, count: count) }

    /// The elements as an array, row-major.
    public var scalars: [Float] { Array(buffer) }

    /// The single element of a one-element tensor.
    public func item() -> Float {
        precondition(count == 1, "item(): tensor of shape \(shape) has \(count) elements, not 1")
        return storage.pointer[0]
    }

    /// True when no element is NaN or ±Inf.
    public var isFinite: Bool { firstNonFiniteIndex == nil }

    /// Index of the first NaN or ±Inf element, if any. The trainer checks every batch and every
    /// gradient, so blocks of 64 are screened with vector arithmetic first (`x · 0` is 0 for a
    /// finite x and NaN otherwise, and a NaN survives the sum); only a block that fails is
    /// searched element by element.
    public var firstNonFiniteIndex: Int? { firstIndex(squaring: false) }

    /// Index of the first element whose square is not finite: NaN, ±Inf, or |x| above about
    /// 1.8e19. Adam squares each gradient into its second moment, so a larger gradient would
    /// leave that moment infinite and the weight frozen; the trainer stops on one instead.
    public var firstIndexWithNonFiniteSquare: Int? { firstIndex(squaring: true) }

    private func firstIndex(squaring: Bool) -> Int? {
        let p = storage.pointer, n = count
        var start = 0
        while start + 64 <= n {
            let block = UnsafeRawPointer(p + start)
            var acc = SIMD16<Float>()
            for k in 0..<4 {
                let v = block.loadUnaligned(fromByteOffset: 64 * k, as: SIMD16<Float>.self)
                acc += (squaring ? v * v : v) * 0
            }
            if any(acc .!= acc) { break }  // something in this block fails
            start += 64
        }
        for i in start..<n where !(squaring ? p[i] * p[i] : p[i]).isFinite { return i }
        return nil
    }

    public var description: String {
        let preview = scalars.prefix(8).map { String(format: "%.4g", Double($0)) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(preview)\(count > 8 ? ", ..." : "")])"
    }

    // MARK: Creation

    public static func full(_ shape: [Int], _ value: Float, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        t.data.update(repeating: value, count: t.count)
        t.requiresGrad = requiresGrad
        return t
    }
    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor { full(shape, 0, requiresGrad: requiresGrad) }
    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor { full(shape, 1, requiresGrad: requiresGrad) }

    /// `[start, start+step, ...)` up to but excluding `end`.
    public static func arange(_ start: Float, _ end: Float, step: Float = 1) -> Tensor {
        precondition(step != 0, "arange: step must not be zero")
        let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
        return Tensor((0..<n).map { start + Float($0) * step })
    }

    /// Samples from N(mean, std²), reproducible from `generator`'s seed on every machine.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1,
                                    using generator: inout SeededGenerator, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        for i in 0..<t.count { t.data[i] = mean + std * Float(generator.nextGaussian()) }
        t.requiresGrad = requiresGrad
        return t
    }

    /// Samples from U[low, high), reproducible from `generator`'s seed on every machine.
    public static func randomUniform(_ shape: [Int], low: Float = 0, high: Float = 1,
                                     using generator: inout SeededGenerator, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        let width = Double(high - low)
        for i in 0..<t.count { t.data[i] = Float(Double(low) + width * generator.nextUnitDouble()) }
        t.requiresGrad = requiresGrad
        return t
    }

    // MARK: Autodiff helpers

    /// The same values, cut off from the graph: no gradient flows back through the result.
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// A copy with its own storage.
    public func copy() -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Overwrites the elements with `other`'s (same count). Not recorded for autodiff.
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// `self += scale * other`, in place. Not recorded for autodiff.
    public func addScaled(_ other: Tensor, _ scale: Float = 1) {
        precondition(other.count == count, "addScaled: \(other.shape) into \(shape)")
        let a = data, b = other.data
        for i in 0..<count { a[i] += scale * b[i] }
    }

    /// Clears `grad` (before a new step).
    public func zeroGrad() { grad = nil }
}

/// The memory behind a tensor: `count` Float32 values, freed with the last tensor that uses it.
public final class TensorStorage: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        _ = TensorStorage.allocatorTuned
        self.count = count
        pointer = .allocate(capacity: Swift.max(count, 1))
    }
    deinit { pointer.deallocate() }

    /// glibc returns large blocks (over 128 KiB) to the OS on every free, so each training step
    /// would page-fault fresh zeroed memory for its activations. Keeping them in the heap lets
    /// the next step reuse them (measured: ~9% of a cnn-small step was page faults).
    static let allocatorTuned: Bool = {
        dk_tune_allocator()
        return true
    }()
}

/// A pointer that may cross into `concurrentPerform` workers; each worker writes a disjoint range.
public struct SharedPointer<T>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<T>
    public init(_ p: UnsafeMutablePointer<T>) { self.p = p }
}
