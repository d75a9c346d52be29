import DistillTensor

// Deterministic inputs for tests, shaped to keep gradient checks away from kinks.

extension Tensor {
    /// Standard-normal values times `scale`, plus `shift`, from `seed`: the same on every machine.
    public static func testNormal(_ shape: [Int], seed: UInt64, scale: Float = 1, shift: Float = 0,
                                  requiresGrad: Bool = true) -> Tensor {
        var generator = SeededGenerator(seed: seed)
        let t = Tensor.randomNormal(shape, mean: shift, std: scale, using: &generator)
        t.requiresGrad = requiresGrad
        return t
    }

    /// Uniform values in `[low, high)` from `seed`.
    public static func testUniform(_ shape: [Int], seed: UInt64, low: Float, high: Float, requiresGrad: Bool = true) -> Tensor {
        var generator = SeededGenerator(seed: seed)
        let t = Tensor.randomUniform(shape, low: low, high: high, using: &generator)
        t.requiresGrad = requiresGrad
        return t
    }

    /// Values of random sign whose magnitude is at least `margin` (for ReLU, |x|, leaky ReLU:
    /// keeps central differences off the kink at 0).
    public static func testAwayFromZero(_ shape: [Int], seed: UInt64, margin: Float = 0.1, requiresGrad: Bool = true) -> Tensor {
        var generator = SeededGenerator(seed: seed)
        let scalars = (0..<shape.reduce(1, *)).map { _ -> Float in
            let g = Float(generator.nextGaussian())
            return g < 0 ? g - margin : g + margin
        }
        return Tensor(shape: shape, scalars: scalars, requiresGrad: requiresGrad)
    }

    /// A shuffled ladder of distinct values `spacing` apart, centred on 0 (for max and max-pool:
    /// no ties, and no perturbation of ±spacing/2 changes which element wins).
    public static func testDistinct(_ shape: [Int], seed: UInt64, spacing: Float = 0.1, requiresGrad: Bool = true) -> Tensor {
        var generator = SeededGenerator(seed: seed)
        let n = shape.reduce(1, *)
        let order = generator.permutation(n)
        let scalars = order.map { (Float($0) - Float(n - 1) / 2) * spacing }
        return Tensor(shape: shape, scalars: scalars, requiresGrad: requiresGrad)
    }
}
