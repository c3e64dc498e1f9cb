import FlowgateCore
public import FlowgateAlgorithms

/// Deterministic behaviour cloning: `L = mean ||tanh(MLP(s)) − a||²` on the [-1, 1]-scaled
/// dataset actions. The baseline a flow policy has to beat.
public typealias RegressionPhase = BehaviourCloningPhase<RegressionObjective>

/// The squared error of a `DeterministicPolicy`'s actions.
public final class RegressionObjective: CloningObjective {
    let policy: DeterministicPolicy
    private let grad = FloatBuffer()

    public static let phaseName = "bc-regressor"

    public init(_ policy: DeterministicPolicy) { self.policy = policy }

    public var parameters: [Parameter] { policy.parameters }

    public func lossAndBackward(observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, rows b: Int, rng: inout RNG) -> Float {
        let actDim = policy.net.spec.outputDim
        grad.reserve(b * actDim)
        let out = policy.net.forward(observations, batch: b)
        let loss = Loss.weightedSquaredError(out, actions, weights: nil, rows: b, width: actDim, grad: grad.pointer)
        policy.net.backward(grad.pointer, computeInputGradient: false)
        return loss
    }

    /// `val_mse`: the squared error of the policy's actions (no noise to draw).
    public func validation(observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, rows b: Int, seed: UInt64) -> [String: Double] {
        let actDim = policy.net.spec.outputDim
        grad.reserve(b * actDim)
        let out = policy.net.forward(observations, batch: b)
        return ["val_mse": Double(Loss.weightedSquaredError(out, actions, weights: nil, rows: b, width: actDim, grad: grad.pointer))]
    }
}
