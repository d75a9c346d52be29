import DistillTensor
import Foundation

/// Random image transformations applied when a batch is built, for `[N, C, H, W]` images.
///
/// The operations run in order on each example; each draws its randomness from the generator it
/// is given, example by example, so the same generator state gives the same batch. `BatchLoader`
/// seeds that generator from (seed, epoch, batch index), which makes augmentation reproducible and
/// independent of thread timing. Pixels moved in from outside the image are 0: for standardised
/// data that is the per-pixel mean, for raw `[0, 1]` images it is black.
public struct Augmentation: Sendable, Equatable {
    /// One random transformation.
    public enum Operation: Sendable, Equatable {
        /// Moves the image by a uniform integer offset in `-maxPixels...maxPixels` on each axis,
        /// filling with zeros.
        case shift(maxPixels: Int)
        /// Pads the image with `padding` zeros on every side and crops a random window of the
        /// original size (torchvision's `RandomCrop(size, padding)`): offsets in `0...2·padding`.
        case crop(padding: Int)
        /// Mirrors the image left–right with the given probability (0.5 is the usual choice).
        case horizontalFlip(probability: Double)
    }

    /// Largest shift or padding, in pixels: far beyond any image, and small enough that offset
    /// arithmetic (`2 · padding`, `-shift...shift`) cannot overflow.
    public static let maxPixels = 1 << 16

    /// The operations, applied in order.
    public let operations: [Operation]

    /// Checks that shifts and paddings are non-negative and probabilities in [0, 1].
    public init(_ operations: [Operation]) throws {
        for op in operations {
            switch op {
            case .shift(let k) where k < 0 || k > Self.maxPixels:
                throw DataError("Augmentation: shift(maxPixels: \(k)) must be in 0...\(Self.maxPixels)")
            case .crop(let p) where p < 0 || p > Self.maxPixels:
                throw DataError("Augmentation: crop(padding: \(p)) must be in 0...\(Self.maxPixels)")
            case .horizontalFlip(let p) where !(p >= 0 && p <= 1):
                throw DataError("Augmentation: horizontalFlip probability \(p) is outside [0, 1]")
            default: break
            }
        }
        self.operations = operations
    }

    /// Checks that `shape` is `[N, C, H, W]`.
    func validate(imageShape shape: [Int]) throws {
        guard shape.count == 4 else {
            throw DataError("Augmentation: needs images of shape [N, C, H, W], got \(shape)")
        }
    }

    /// A new tensor with each example of `images` (`[N, C, H, W]`) transformed; random draws come
    /// from `generator`, example by example, operation by operation.
    public func apply(to images: Tensor, using generator: inout SeededGenerator) throws -> Tensor {
        try validate(imageShape: images.shape)
        let (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let size = c * h * w
        let out = images.copy()
        if operations.isEmpty || size == 0 { return out }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: size)
        defer { scratch.deallocate() }
        for i in 0..<n {
            let image = out.data + i * size
            for op in operations {
                switch op {
                case .shift(let k):
                    let dy = generator.nextInt(below: 2 * k + 1) - k
                    let dx = generator.nextInt(below: 2 * k + 1) - k
                    Self.shift(image, scratch, c: c, h: h, w: w, dy: dy, dx: dx)
                case .crop(let p):
                    // Window at (oy, ox) of the padded image = shift by (p - oy, p - ox).
                    let oy = generator.nextInt(below: 2 * p + 1)
                    let ox = generator.nextInt(below: 2 * p + 1)
                    Self.shift(image, scratch, c: c, h: h, w: w, dy: p - oy, dx: p - ox)
                case .horizontalFlip(let p):
                    if generator.nextUnitDouble() < p { Self.flip(image, c: c, h: h, w: w) }
                }
            }
        }
        return out
    }

    /// `image[c, y, x] ← old[c, y - dy, x - dx]`, zero where that falls outside.
    private static func shift(_ image: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>,
                              c: Int, h: Int, w: Int, dy: Int, dx: Int) {
        if dy == 0 && dx == 0 { return }
        scratch.update(from: image, count: c * h * w)
        image.update(repeating: 0, count: c * h * w)
        // A shift of the whole image or more (|dy| ≥ h or |dx| ≥ w) leaves only zeros.
        let x0 = max(0, dx), x1 = min(w, w + dx), y0 = max(0, dy), y1 = min(h, h + dy)
        guard x0 < x1, y0 < y1 else { return }
        for ch in 0..<c {
            for y in y0 ..< y1 {
                let dst = image + (ch * h + y) * w
                let src = scratch + (ch * h + y - dy) * w
                (dst + x0).update(from: src + x0 - dx, count: x1 - x0)
            }
        }
    }

    private static func flip(_ image: UnsafeMutablePointer<Float>, c: Int, h: Int, w: Int) {
        for row in 0 ..< c * h {
            let p = image + row * w
            var a = 0, b = w - 1
            while a < b { swap(&p[a], &p[b]); a += 1; b -= 1 }
        }
    }
}
