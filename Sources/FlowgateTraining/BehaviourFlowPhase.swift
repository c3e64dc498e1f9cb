import FlowgateCore
import FlowgateAlgorithms

/// Behaviour-cloning flow matching: `L = mean_i ||v(s_i, x_t, t) − (a_i − x0)||²` with
/// `x_t = (1 − t)·x0 + t·a_i`, `x0 ~ N(0, I)`, `t ~ U[0, 1]`.
public final class BehaviourFlowPhase: TrainingPhase {
    public let name: String
    public let totalSteps: Int
    public private(set) var completedSteps = 0
    let policy: FlowPolicy
    let data: PreparedData
    let batchSize: Int
    let optimizer: Adam
    var rng: RNG
    private let obs = FloatBuffer(), act = FloatBuffer(), x0 = FloatBuffer(), xt = FloatBuffer()
    private let t = FloatBuffer(), target = FloatBuffer(), grad = FloatBuffer()
    private var indices: [Int]
    /// The phase's state as it was when its last step ran. Later phases (QIPO) keep training the
    /// same policy object, so without this copy a checkpoint's `behaviour/` tensors would hold the
    /// improved policy and `--restart-from qipo` would restart from it instead of from the
    /// behaviour flow.
    private var finalState: [String: Tensor]?

    public init(name: String = "behaviour", policy: FlowPolicy, data: PreparedData, steps: Int, batchSize: Int, learningRate: Float, seed: UInt64) {
        self.name = name
        self.policy = policy
        self.data = data
        self.totalSteps = steps
        self.batchSize = batchSize
        optimizer = Adam(parameters: policy.parameters, learningRate: learningRate)
        rng = RNG(seed: seed)
        indices = [Int](repeating: 0, count: batchSize)
    }

    public func step() throws -> [String: Double] {
        let b = batchSize, obsDim = data.observationDim, actDim = data.actionDim
        for k in 0..<b { indices[k] = rng.int(below: data.count) }
        obs.reserve(b * obsDim); act.reserve(b * actDim); x0.reserve(b * actDim); xt.reserve(b * actDim)
        t.reserve(b); target.reserve(b * actDim); grad.reserve(b * actDim)
        PreparedData.gather(data.observations, width: obsDim, indices: indices, into: obs.pointer)
        PreparedData.gather(data.actions, width: actDim, indices: indices, into: act.pointer)
        FlowPolicy.drawPathPoints(
            actions: act.pointer, rows: b, actionDim: actDim, rng: &rng, x0: x0.pointer, t: t.pointer, xt: xt.pointer,
            target: target.pointer)
        let v = policy.velocity(obs: obs.pointer, x: xt.pointer, t: t.pointer, batch: b)
        let loss = Loss.weightedSquaredError(v, target.pointer, weights: nil, rows: b, width: actDim, grad: grad.pointer)
        policy.backward(grad.pointer)
        optimizer.step()
        completedSteps += 1
        if completedSteps == totalSteps { finalState = liveState() }
        return ["loss": Double(loss), "grad_norm": Double(optimizer.lastGradNorm)]
    }

    /// The behaviour flow's weights at the end of this phase once it has finished (not the policy's
    /// current weights), with optimiser, RNG and step.
    public func stateTensors() -> [String: Tensor] {
        finalState ?? liveState()
    }

    /// Restores the policy to the state `stateTensors` saved; a later phase that shares the policy
    /// (QIPO) loads its own weights after this one.
    public func loadState(_ s: [String: Tensor]) throws {
        (rng, completedSteps) = try OptimizedState.load(s, into: policy.parameters, prefix: "policy.", optimizer: optimizer)
        finalState = completedSteps == totalSteps ? liveState() : nil
    }

    private func liveState() -> [String: Tensor] {
        OptimizedState.save(policy.parameters, prefix: "policy.", optimizer: optimizer, rng: rng, step: completedSteps)
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
