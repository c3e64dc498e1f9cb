import FlowgateCore
public import FlowgateAlgorithms

/// Behaviour-cloning flow matching: `L = mean_i ||v(s_i, x_t, t) − (a_i − x0)||²` with
/// `x_t = (1 − t)·x0 + t·a_i`, `x0 ~ N(0, I)`, `t ~ U[0, 1]`.
public typealias BehaviourFlowPhase = BehaviourCloningPhase<FlowMatchingObjective>

/// The flow-matching loss of a `FlowPolicy` (fresh `x0`, `t` per row from the phase's stream).
public final class FlowMatchingObjective: CloningObjective {
    let policy: FlowPolicy
    private let x0 = FloatBuffer(), xt = FloatBuffer(), t = FloatBuffer(), target = FloatBuffer(), grad = FloatBuffer()

    public static let phaseName = "behaviour"

    public init(_ policy: FlowPolicy) { self.policy = policy }

    public var parameters: [Parameter] { policy.parameters }

    public func lossAndBackward(observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, rows b: Int, rng: inout RNG) -> Float {
        let actDim = policy.spec.actionDim
        x0.reserve(b * actDim); xt.reserve(b * actDim); t.reserve(b); target.reserve(b * actDim); grad.reserve(b * actDim)
        FlowPolicy.drawPathPoints(
            actions: actions, rows: b, actionDim: actDim, rng: &rng, x0: x0.pointer, t: t.pointer, xt: xt.pointer,
            target: target.pointer)
        let v = policy.velocity(obs: observations, x: xt.pointer, t: t.pointer, batch: b)
        let loss = Loss.weightedSquaredError(v, target.pointer, weights: nil, rows: b, width: actDim, grad: grad.pointer)
        policy.backward(grad.pointer)
        return loss
    }

    /// `val_fm`: the flow-matching loss at path points drawn from `seed`.
    public func validation(observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, rows b: Int, seed: UInt64) -> [String: Double] {
        let actDim = policy.spec.actionDim
        x0.reserve(b * actDim); xt.reserve(b * actDim); t.reserve(b); target.reserve(b * actDim); grad.reserve(b * actDim)
        var rng = RNG(seed: seed)
        FlowPolicy.drawPathPoints(
            actions: actions, rows: b, actionDim: actDim, rng: &rng, x0: x0.pointer, t: t.pointer, xt: xt.pointer, target: target.pointer)
        let v = policy.velocity(obs: observations, x: xt.pointer, t: t.pointer, batch: b)
        return ["val_fm": Double(Loss.weightedSquaredError(v, target.pointer, weights: nil, rows: b, width: actDim, grad: grad.pointer))]
    }
}
