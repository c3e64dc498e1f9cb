/// Step sizes and noise of a Langevin run: `T` steps, geometric decay from `initialStepSize` to
/// `finalStepSize`, noise standard deviation decaying in proportion.
///
/// Update per step: `z ← z − η_t · d_t + σ_t · ξ`, `ξ ~ N(0, I)`, where `d_t` is the energy gradient,
/// divided by its norm when `normalizeGradient` (MPDR) or clipped to norm `gradientClip` otherwise
/// (ETM's ambient sampler), and `σ_t = noise · η_t / η_0`.
public struct LangevinSchedule: Codable, Sendable, Equatable {
    public var steps: Int
    public var initialStepSize: Float
    public var finalStepSize: Float
    public var noise: Float
    public var normalizeGradient: Bool
    /// Clip the per-sample gradient norm to this when not normalising (nil: no clipping).
    public var gradientClip: Float?

    public init(
        steps: Int, initialStepSize: Float, finalStepSize: Float? = nil, noise: Float,
        normalizeGradient: Bool = true, gradientClip: Float? = nil
    ) {
        self.steps = steps
        self.initialStepSize = initialStepSize
        self.finalStepSize = finalStepSize ?? initialStepSize
        self.noise = noise
        self.normalizeGradient = normalizeGradient
        self.gradientClip = gradientClip
    }

    /// Step size at step `t` (0-based).
    public func stepSize(_ t: Int) -> Float {
        guard steps > 1, finalStepSize != initialStepSize else { return initialStepSize }
        let f = Float(t) / Float(steps - 1)
        return initialStepSize * powf(finalStepSize / initialStepSize, f)
    }

    /// Noise standard deviation at step `t`.
    public func noiseStd(_ t: Int) -> Float { noise * stepSize(t) / initialStepSize }

    /// Inference default (ETM predicts with 30 steps and a decaying step size).
    public static let inference = LangevinSchedule(steps: 30, initialStepSize: 0.1, finalStepSize: 0.01, noise: 0.01)
    /// Negative mining in latent space (MPDR: 10 steps, step 0.1, noise 0.01, normalised gradient).
    public static let latentNegatives = LangevinSchedule(steps: 10, initialStepSize: 0.1, noise: 0.01)
    /// Ambient negatives (ETM: uniform init in [-1, 1], clipped gradient steps).
    public static let ambientNegatives = LangevinSchedule(
        steps: 50, initialStepSize: 0.05, finalStepSize: 0.005, noise: 0.005, normalizeGradient: false,
        gradientClip: 1)
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
