import FlowgateCore
import FlowgateAlgorithms

/// Deterministic behaviour cloning: `L = mean ||tanh(MLP(s)) − a||²` on the [-1, 1]-scaled
/// dataset actions. The baseline a flow policy has to beat.
public final class RegressionPhase: TrainingPhase {
    public let name: String
    public let totalSteps: Int
    public private(set) var completedSteps = 0
    let policy: DeterministicPolicy
    let data: PreparedData
    let batchSize: Int
    let optimizer: Adam
    var rng: RNG
    private var indices: [Int]
    private let obs = FloatBuffer(), act = FloatBuffer(), grad = FloatBuffer()

    public init(name: String = "bc-regressor", policy: DeterministicPolicy, data: PreparedData, steps: Int, batchSize: Int, learningRate: Float, seed: UInt64) {
        self.name = name
        self.policy = policy
        self.data = data
        totalSteps = steps
        self.batchSize = batchSize
        optimizer = Adam(parameters: policy.parameters, learningRate: learningRate)
        rng = RNG(seed: seed)
        indices = [Int](repeating: 0, count: batchSize)
    }

    public func step() throws -> [String: Double] {
        let b = batchSize, obsDim = data.observationDim, actDim = data.actionDim
        for k in 0..<b { indices[k] = rng.int(below: data.count) }
        obs.reserve(b * obsDim); act.reserve(b * actDim); grad.reserve(b * actDim)
        PreparedData.gather(data.observations, width: obsDim, indices: indices, into: obs.pointer)
        PreparedData.gather(data.actions, width: actDim, indices: indices, into: act.pointer)
        let out = policy.net.forward(obs.pointer, batch: b)
        let loss = Loss.weightedSquaredError(out, act.pointer, weights: nil, rows: b, width: actDim, grad: grad.pointer)
        policy.net.backward(grad.pointer, computeInputGradient: false)
        optimizer.step()
        completedSteps += 1
        return ["loss": Double(loss), "grad_norm": Double(optimizer.lastGradNorm)]
    }

    public func stateTensors() -> [String: Tensor] {
        OptimizedState.save(policy.parameters, prefix: "policy.", optimizer: optimizer, rng: rng, step: completedSteps)
    }

    public func loadState(_ s: [String: Tensor]) throws {
        (rng, completedSteps) = try OptimizedState.load(s, into: policy.parameters, prefix: "policy.", optimizer: optimizer)
    }
}
