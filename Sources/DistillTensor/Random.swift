/// Seeded pseudo-random numbers that are the same on every machine for the same seed:
/// SplitMix64 expands the seed into the state of xoshiro256** (Blackman & Vigna 2018); Gaussian
/// samples use the Box–Muller transform in Double precision.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    /// Hashes `values` into one seed, starting from `start` (SplitMix64's finaliser after each
    /// value). Different `start`s give unrelated seed streams for the same values, so each use
    /// (data order, augmentation, cached views) keeps its own.
    public static func mix(start: UInt64, _ values: [UInt64]) -> UInt64 {
        var h = start
        for v in values {
            h = (h ^ v) &+ 0x9E37_79B9_7F4A_7C15
            h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
            h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 31
        }
        return h
    }

    private var s: (UInt64, UInt64, UInt64, UInt64)
    private var spareGaussian: Double?

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUnitDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform integer in 0..<bound (unbiased).
    public mutating func nextInt(below bound: Int) -> Int { Int.random(in: 0..<bound, using: &self) }

    /// Standard normal sample.
    public mutating func nextGaussian() -> Double {
        if let spare = spareGaussian { spareGaussian = nil; return spare }
        var u1 = nextUnitDouble()
        while u1 <= .leastNormalMagnitude { u1 = nextUnitDouble() }
        let u2 = nextUnitDouble()
        let r = (-2 * _log(u1)).squareRoot()
        spareGaussian = r * _sin(2 * .pi * u2)
        return r * _cos(2 * .pi * u2)
    }

    /// A Fisher–Yates shuffle of 0..<n.
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, nextInt(below: i + 1)) } }
        return p
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Glibc.sin(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Foundation.sin(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
