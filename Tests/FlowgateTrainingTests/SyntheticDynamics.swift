import FlowgateCore
import FlowgateTraining
import RealModule

/// A small linear system with known dynamics for tests and for exercising the energy model before
/// real data is at hand: observation 4-D, action 2-D,
/// `s' = A s + B a + noise · ε`, `s ~ N(0, I)`, behaviour `a = clip(0.5 · tanh(K s) + 0.1 ε, −1, 1)`,
/// so uniform-random actions in [-1, 1]² are mostly off the data.
public enum SyntheticDynamics {
    public static let observationDim = 4
    public static let actionDim = 2

    /// Row-major `A` (4×4), `B` (4×2), `K` (2×4), fixed.
    public static let a: [Float] = [
        0.95, 0.10, 0.00, -0.05,
        -0.10, 0.95, 0.05, 0.00,
        0.00, -0.05, 0.90, 0.10,
        0.05, 0.00, -0.10, 0.90,
    ]
    public static let b: [Float] = [0.5, 0.0, 0.0, 0.5, 0.3, -0.3, -0.2, 0.4]
    public static let k: [Float] = [1.0, -0.5, 0.3, 0.0, 0.0, 0.8, -0.4, 0.6]

    /// The noiseless next state for one (s, a).
    public static func nextState(_ s: ArraySlice<Float>, _ act: ArraySlice<Float>) -> [Float] {
        let s = Array(s), act = Array(act)
        return (0..<4).map { i in
            var v: Float = 0
            for j in 0..<4 { v += a[i * 4 + j] * s[j] }
            for j in 0..<2 { v += b[i * 2 + j] * act[j] }
            return v
        }
    }

    /// `count` transitions of the behaviour policy.
    public static func dataset(count: Int, seed: UInt64, noise: Float = 0.01) -> OfflineDataset {
        var rng = RNG(seed: seed)
        var obs = [Float](), acts = [Float](), next = [Float]()
        obs.reserveCapacity(count * 4); acts.reserveCapacity(count * 2); next.reserveCapacity(count * 4)
        for _ in 0..<count {
            let s = (0..<4).map { _ in rng.normal() }
            let act = (0..<2).map { i -> Float in
                var v: Float = 0
                for j in 0..<4 { v += k[i * 4 + j] * s[j] }
                return min(max(0.5 * Float.tanh(v) + 0.1 * rng.normal(), -1), 1)
            }
            let sn = nextState(s[...], act[...]).map { $0 + noise * rng.normal() }
            obs += s; acts += act; next += sn
        }
        return OfflineDataset(
            source: "synthetic-linear", observationDim: 4, actionDim: 2, observations: obs, actions: acts,
            rewards: [Float](repeating: 0, count: count), nextObservations: next,
            terminals: [Bool](repeating: false, count: count), timeouts: [Bool](repeating: false, count: count))
    }
}
