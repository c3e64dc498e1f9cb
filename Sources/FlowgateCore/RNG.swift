import FlowgateCommon
import RealModule

/// A seeded, fast pseudo-random generator (xoshiro256**) whose whole state can be saved and
/// restored, so that training runs and served samples can be reproduced bit for bit.
///
/// Seeding goes through SplitMix64, so nearby seeds (0, 1, 2, …) give unrelated streams.
public struct RNG: Sendable, Equatable {
    /// The four 64-bit words of xoshiro256** state.
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    public static func == (lhs: RNG, rhs: RNG) -> Bool {
        lhs.state.0 == rhs.state.0 && lhs.state.1 == rhs.state.1 && lhs.state.2 == rhs.state.2
            && lhs.state.3 == rhs.state.3
    }

    /// Creates a generator from a 64-bit seed.
    public init(seed: UInt64) {
        var seeder = SplitMix64(seed: seed)
        state = (seeder.next(), seeder.next(), seeder.next(), seeder.next())
    }

    /// Restores a generator from words previously read from `stateWords`.
    public init(stateWords w: [UInt64]) {
        precondition(w.count == 4, "RNG state has 4 words")
        state = (w[0], w[1], w[2], w[3])
    }

    /// The state as four words (for checkpoints).
    public var stateWords: [UInt64] { [state.0, state.1, state.2, state.3] }

    /// Derives an independent generator for stream `index` (e.g. one per observation in a batch).
    public func derived(_ index: UInt64) -> RNG {
        RNG(seed: state.0 ^ (index &* 0xD1B5_4A32_D192_ED03) ^ (state.2 &+ index))
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// The next 64 random bits.
    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = RNG.rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = RNG.rotl(state.3, 45)
        return result
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    @inline(__always)
    public mutating func uniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [low, high).
    @inline(__always)
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * uniform()
    }

    /// Uniform integer in 0..<bound (bound > 0), without modulo bias worth measuring (Lemire).
    @inline(__always)
    public mutating func int(below bound: Int) -> Int {
        precondition(bound > 0)
        let product = next().multipliedFullWidth(by: UInt64(bound))
        return Int(product.high)
    }

    /// Two independent standard normal samples (Box–Muller in Double precision).
    @inline(__always)
    public mutating func normalPair() -> (Float, Float) {
        // u1 in (0, 1] so that log is finite.
        let u1 = (Double(next() >> 11) + 1.0) * (1.0 / 9_007_199_254_740_992.0)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        let r = (-2.0 * Double.log(u1)).squareRoot()
        let theta = 2.0 * Double.pi * u2
        return (Float(r * Double.cos(theta)), Float(r * Double.sin(theta)))
    }

    /// One standard normal sample.
    @inline(__always)
    public mutating func normal() -> Float { normalPair().0 }

    /// Fills `buffer` with independent N(mean, std²) samples.
    public mutating func fillNormal(_ buffer: UnsafeMutableBufferPointer<Float>, mean: Float = 0, std: Float = 1) {
        var i = 0
        let n = buffer.count
        while i + 1 < n {
            let (a, b) = normalPair()
            buffer[i] = mean + std * a
            buffer[i + 1] = mean + std * b
            i += 2
        }
        if i < n { buffer[i] = mean + std * normalPair().0 }
    }

    /// Fills an array with independent N(mean, std²) samples.
    public mutating func fillNormal(_ array: inout [Float], mean: Float = 0, std: Float = 1) {
        array.withUnsafeMutableBufferPointer { fillNormal($0, mean: mean, std: std) }
    }

    /// Fills `buffer` with uniform samples in [low, high).
    public mutating func fillUniform(_ buffer: UnsafeMutableBufferPointer<Float>, low: Float = 0, high: Float = 1) {
        for i in 0..<buffer.count { buffer[i] = uniform(low, high) }
    }

    /// Fisher–Yates shuffle of `array`.
    public mutating func shuffle<T>(_ array: inout [T]) {
        guard array.count > 1 else { return }
        for i in stride(from: array.count - 1, to: 0, by: -1) {
            array.swapAt(i, int(below: i + 1))
        }
    }
}
