import FlowgateCore
import FlowgateModelFormat

/// A deterministic policy `a = tanh(MLP(s))` in the [-1, 1]-scaled action space: the
/// behaviour-cloning regressor used as a baseline (trained with MSE on the dataset actions).
public final class DeterministicPolicy {
    public static let kind = "mlp-policy"
    public let net: MLP

    public init(spec: MLPSpec, rng: inout RNG) { net = MLP(spec: spec, prefix: "actor", rng: &rng) }
    /// `forwardOnly`: for inference only (`MLP.forwardOnly`).
    public init(spec: MLPSpec, tensors: [String: Tensor], forwardOnly: Bool = false) throws {
        net = try MLP(spec: spec, prefix: "actor", tensors: tensors, forwardOnly: forwardOnly)
    }
    private init(sharing other: DeterministicPolicy, forwardOnly: Bool) { net = other.net.replica(forwardOnly: forwardOnly) }

    /// The regressor for `obs → act` with `hidden` layers.
    public static func spec(observationDim: Int, actionDim: Int, hiddenDims: [Int], activation: Activation = .relu) -> MLPSpec {
        MLPSpec(inputDim: observationDim, hiddenDims: hiddenDims, outputDim: actionDim, activation: activation, outputActivation: .tanh)
    }

    /// Shares weights, owns workspaces; `forwardOnly`: for inference only (`MLP.forwardOnly`).
    public func replica(forwardOnly: Bool = false) -> DeterministicPolicy { DeterministicPolicy(sharing: self, forwardOnly: forwardOnly) }
    public var parameters: [Parameter] { net.parameters }

    public var networkSpec: NetworkSpec {
        NetworkSpec(file: "policy.safetensors", kind: DeterministicPolicy.kind, mlps: ["actor": net.spec])
    }
}

/// Where the M candidates per observation come from.
public protocol CandidateSampler: AnyObject {
    var observationDim: Int { get }
    var actionDim: Int { get }
    /// `(count · perObservation) × actionDim` scaled actions, row `i · perObservation + j`.
    func sample(
        observations: UnsafePointer<Float>, count: Int, perObservation: Int, steps: Int, rngs: inout [RNG]
    ) -> UnsafeMutablePointer<Float>
}

extension FlowSampler: CandidateSampler {
    public var observationDim: Int { policy.spec.observationDim }
    public var actionDim: Int { policy.spec.actionDim }
    public func sample(
        observations: UnsafePointer<Float>, count: Int, perObservation: Int, steps: Int, rngs: inout [RNG]
    ) -> UnsafeMutablePointer<Float> {
        sample(observations: observations, count: count, perObservation: perObservation, steps: steps, rngs: &rngs, clip: true)
    }
}

/// Candidates from a deterministic policy: every candidate of an observation is the same action.
public final class DeterministicSampler: CandidateSampler {
    public let policy: DeterministicPolicy
    private let out = FloatBuffer()
    public init(policy: DeterministicPolicy) { self.policy = policy }
    public var observationDim: Int { policy.net.inputDim }
    public var actionDim: Int { policy.net.outputDim }

    public func sample(
        observations: UnsafePointer<Float>, count: Int, perObservation: Int, steps: Int, rngs: inout [RNG]
    ) -> UnsafeMutablePointer<Float> {
        let actDim = actionDim
        let a = policy.net.forward(observations, batch: count)
        out.reserve(count * perObservation * actDim)
        for i in 0..<count {
            for j in 0..<perObservation { (out.pointer + (i * perObservation + j) * actDim).update(from: a + i * actDim, count: actDim) }
        }
        return out.pointer
    }
}
