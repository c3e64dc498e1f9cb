import FlowgateCore

/// What a behaviour-cloning phase minimises on one minibatch of dataset rows: the loss of the
/// policy on `(observation, action)` pairs, with its backward pass into the policy's gradients.
/// `FlowMatchingObjective` (the behaviour flow) and `RegressionObjective` (the BC regressor) are
/// the two.
public protocol CloningObjective: AnyObject {
    /// The network the objective trains.
    associatedtype Policy
    /// The phase's name in logs and checkpoints.
    static var phaseName: String { get }
    init(_ policy: Policy)
    /// The parameters the phase's optimiser updates and its checkpoint saves (under `policy.`).
    var parameters: [Parameter] { get }
    /// The minibatch loss; leaves the gradients in `parameters`. Extra draws (flow noise and times)
    /// come from `rng`, the phase's stream, after the minibatch rows.
    func lossAndBackward(observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, rows: Int, rng: inout RNG) -> Float
}

/// Behaviour cloning on the dataset: each step draws a minibatch of rows, and `objective` computes
/// the loss and gradients of the policy on them. `BehaviourFlowPhase` and `RegressionPhase` are
/// this phase with the flow-matching and the regression objective.
public final class BehaviourCloningPhase<Objective: CloningObjective>: TrainingPhase {
    public let name: String
    public var totalSteps: Int { skeleton.totalSteps }
    public var completedSteps: Int { skeleton.completedSteps }
    let objective: Objective
    let data: PreparedData
    var skeleton: PhaseSkeleton
    private let obs = FloatBuffer(), act = FloatBuffer()
    /// The phase's state as it was when its last step ran. Later phases (QIPO) keep training the
    /// same policy object, so without this copy a checkpoint's `behaviour/` tensors would hold the
    /// improved policy and `--restart-from qipo` would restart from it instead of from the
    /// behaviour flow.
    private var finalState: [String: Tensor]?

    public init(
        name: String = Objective.phaseName, policy: Objective.Policy, data: PreparedData, steps: Int, batchSize: Int, learningRate: Float,
        seed: UInt64
    ) {
        self.name = name
        objective = Objective(policy)
        self.data = data
        skeleton = PhaseSkeleton(
            steps: steps, parameters: objective.parameters, learningRate: learningRate, seed: seed, population: data.count,
            batchSize: batchSize)
    }

    public func step() throws -> [String: Double] {
        skeleton.sampler.draw(from: data, observations: obs, actions: act)
        let loss = objective.lossAndBackward(
            observations: obs.pointer, actions: act.pointer, rows: skeleton.sampler.batchSize, rng: &skeleton.sampler.rng)
        let gradNorm = skeleton.finishStep()
        if skeleton.isFinished { finalState = liveState() }
        return ["loss": Double(loss), "grad_norm": gradNorm]
    }

    /// The policy's weights at the end of this phase once it has finished (not the policy's
    /// current weights), with optimiser, RNG and step.
    public func stateTensors() -> [String: Tensor] {
        finalState ?? liveState()
    }

    /// Restores the policy to the state `stateTensors` saved; a later phase that shares the policy
    /// (QIPO) loads its own weights after this one.
    public func loadState(_ s: [String: Tensor]) throws {
        try skeleton.load(s, into: objective.parameters, prefix: "policy.")
        finalState = skeleton.isFinished ? liveState() : nil
    }

    private func liveState() -> [String: Tensor] {
        skeleton.state(objective.parameters, prefix: "policy.")
    }
}

extension Dictionary where Key == String, Value == Tensor {
    /// The same map with `prefix` added to every key.
    public func prefixed(_ prefix: String) -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: map { (prefix + $0.key, $0.value) })
    }

    /// The entries whose key starts with `prefix`, with the prefix removed.
    public func unprefixed(_ prefix: String) -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (k, v) in self where k.hasPrefix(prefix) { d[String(k.dropFirst(prefix.count))] = v }
        return d
    }
}
