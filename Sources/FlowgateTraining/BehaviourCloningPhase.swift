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
    /// The loss on fixed rows without minibatch noise, by metric name (`val_…`), no gradients.
    /// Flow noise and times come from `seed`, so every call draws the same ones.
    func validation(observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, rows: Int, seed: UInt64) -> [String: Double]
}

/// Behaviour cloning on the dataset: each step draws a minibatch of rows, and `objective` computes
/// the loss and gradients of the policy on them. `BehaviourFlowPhase` and `RegressionPhase` are
/// this phase with the flow-matching and the regression objective.
///
/// Validation signal: every `ValidationRows.every` steps and at the last, the objective's loss on
/// `ValidationRows.count` fixed dataset rows with fixed flow noise and times (`val_fm` for the
/// flow, `val_mse` for the regressor): the training loss without minibatch noise, so its curve
/// shows whether the phase is still learning. The rows stay in training (see `ValidationRows`).
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
    /// The validation rows' observations and actions (gathered once), and the last measurement.
    private let validationObs = FloatBuffer(), validationAct = FloatBuffer()
    private let validationCount: Int
    private let validationSeed: UInt64
    private var validation: [String: Double] = [:]

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
        let rows = steps > 0 ? ValidationRows.draw(population: data.count, seed: seed, salt: 0xB0B0_1DA7_E5A1_0002) : []
        validationCount = rows.count
        validationSeed = seed ^ 0xB0B0_1DA7_E5A1_0003
        ValidationRows.gather(rows, from: data, observations: validationObs, actions: validationAct)
    }

    public func step() throws -> [String: Double] {
        skeleton.sampler.draw(from: data, observations: obs, actions: act)
        let loss = objective.lossAndBackward(
            observations: obs.pointer, actions: act.pointer, rows: skeleton.sampler.batchSize, rng: &skeleton.sampler.rng)
        let gradNorm = skeleton.finishStep()
        if ValidationRows.due(step: completedSteps, of: totalSteps) { validation = validate() }
        if skeleton.isFinished { finalState = liveState() }
        var metrics = validation
        metrics["loss"] = Double(loss)
        metrics["grad_norm"] = gradNorm
        return metrics
    }

    /// The validation signal on the fixed rows (see the type's documentation).
    public func validate() -> [String: Double] {
        guard validationCount > 0 else { return [:] }
        return objective.validation(
            observations: validationObs.pointer, actions: validationAct.pointer, rows: validationCount, seed: validationSeed)
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
        validation = try ValidationCheckpoint.values(in: s)
        finalState = skeleton.isFinished ? liveState() : nil
    }

    private func liveState() -> [String: Tensor] {
        var s = skeleton.state(objective.parameters, prefix: "policy.")
        s.merge(ValidationCheckpoint.tensors(validation)) { a, _ in a }
        return s
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
