import FlowgateCore

/// Few-step sampling from a `FlowPolicy`: integrates `dx/dt = v(s, x, t)` from noise at t = 0 to
/// an action at t = 1 in K Euler steps (`x += v(x, t) · h`), for many rows at once (every observation × candidate is one row
/// of each matrix product).
///
/// Noise comes from one RNG per row, so a row's sample does not depend on the batch it is computed
/// in. Owns its workspaces; one sampler per thread.
public final class FlowSampler {
    public let policy: FlowPolicy
    private let x = FloatBuffer()
    private let times = FloatBuffer()
    private let obsRows = FloatBuffer()

    /// `policy` should be a replica owned by this sampler's thread.
    public init(policy: FlowPolicy) { self.policy = policy }

    /// Samples `perObservation` actions for each of `count` observations (normalised, count×obsDim).
    ///
    /// - Parameters:
    ///   - rngs: one generator per output row (`count · perObservation` of them), advanced in place.
    ///   - steps: K ≥ 1 integration steps.
    /// - Returns: `(count · perObservation) × actDim` actions in [-1, 1]-scaled space (clipped to
    ///   [-1, 1]), row `i · perObservation + j` for candidate j of observation i; valid until the
    ///   next call.
    public func sample(
        observations: UnsafePointer<Float>, count: Int, perObservation: Int, steps: Int,
        rngs: inout [RNG], clip: Bool = true
    ) -> UnsafeMutablePointer<Float> {
        let obsDim = policy.spec.observationDim, actDim = policy.spec.actionDim
        let rows = count * perObservation
        precondition(rngs.count == rows, "sample: need one RNG per row (\(rows)), got \(rngs.count)")
        precondition(steps >= 1, "sample: steps must be at least 1")
        obsRows.reserve(rows * obsDim)
        for i in 0..<count {
            for j in 0..<perObservation {
                (obsRows.pointer + (i * perObservation + j) * obsDim).update(from: observations + i * obsDim, count: obsDim)
            }
        }
        x.reserve(rows * actDim)
        times.reserve(rows)
        for r in 0..<rows {
            rngs[r].fillNormal(UnsafeMutableBufferPointer(start: x.pointer + r * actDim, count: actDim))
        }
        let h = 1 / Float(steps)
        let obs = UnsafePointer(obsRows.pointer)
        for k in 0..<steps {
            let t0 = Float(k) * h
            for r in 0..<rows { times.pointer[r] = t0 }
            let v = policy.velocity(obs: obs, x: x.pointer, t: times.pointer, batch: rows)
            for i in 0..<(rows * actDim) { x.pointer[i] += h * v[i] }
        }
        if clip { for i in 0..<(rows * actDim) { x.pointer[i] = min(max(x.pointer[i], -1), 1) } }
        return x.pointer
    }
}
