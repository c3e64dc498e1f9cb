/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny seeded 64-bit generator.
///
/// The one implementation in flowgate: `RNG` seeds its xoshiro256** state with it, the load tester
/// and the demo model draw from it, and tests use it for reproducible data. Statistically good enough
/// for those jobs, and fixed: the same seed gives the same stream on every platform and build.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    /// The golden-ratio increment added to the state before every output (2⁶⁴ / φ, odd).
    public static let goldenGamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// The whole state: the next output is a mix of `state + goldenGamma`.
    public var state: UInt64

    @inlinable
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    @inlinable
    public mutating func next() -> UInt64 {
        state &+= SplitMix64.goldenGamma
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits of precision (the top 53 bits of `next()`).
    @inlinable
    public mutating func nextUnitInterval() -> Double {
        Double(next() >> 11) / Double(1 << 53)
    }
}
