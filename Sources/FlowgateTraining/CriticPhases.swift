import FlowgateCore
import FlowgateAlgorithms
import RealModule

/// Generates, once, the in-support action sets used by the critic: M actions per next state drawn
/// from the (trained) behaviour flow, `a'_ij ~ mu(·|s'_i)` (CEP does the same after behaviour
/// training). One step processes one chunk of states, so progress and checkpoints work as usual.
public final class SupportGenerationPhase: TrainingPhase {
    public let name: String
    public let totalSteps: Int
    public private(set) var completedSteps = 0
    let sampler: FlowSampler
    let data: PreparedData
    let perState: Int
    let flowSteps: Int
    let chunk: Int
    let seed: UInt64
    /// count × M × actionDim support actions, filled chunk by chunk.
    public private(set) var support: [Float]

    public init(name: String = "critic-support", policy: FlowPolicy, data: PreparedData, perState: Int, flowSteps: Int, chunk: Int = 512, seed: UInt64) {
        self.name = name
        self.sampler = FlowSampler(policy: policy.replica())
        self.data = data
        self.perState = perState
        self.flowSteps = flowSteps
        self.chunk = chunk
        self.seed = seed
        totalSteps = (data.count + chunk - 1) / chunk
        support = [Float](repeating: 0, count: data.count * perState * data.actionDim)
    }

    public func step() throws -> [String: Double] {
        let start = completedSteps * chunk
        let n = min(chunk, data.count - start)
        let obsDim = data.observationDim, actDim = data.actionDim
        var rngs = (0..<(n * perState)).map { RNG(seed: seed &+ UInt64(start * perState + $0) &* 0x9E37_79B9) }
        let out = data.nextObservations.withUnsafeBufferPointer { src in
            sampler.sample(observations: src.baseAddress! + start * obsDim, count: n, perObservation: perState, steps: flowSteps, rngs: &rngs)
        }
        support.withUnsafeMutableBufferPointer { dst in
            (dst.baseAddress! + start * perState * actDim).update(from: out, count: n * perState * actDim)
        }
        completedSteps += 1
        return ["states": Double(start + n)]
    }

    public func stateTensors() -> [String: Tensor] {
        ["support": Tensor(shape: [support.count], scalars: support), "step": Tensor(shape: [1], scalars: [Float(completedSteps)])]
    }

    public func loadState(_ s: [String: Tensor]) throws {
        guard let t = s["support"], t.count == support.count else { throw ParameterLoadError.missing("support") }
        support = t.scalars
        completedSteps = Int(s["step"]?.scalars.first ?? 0)
    }
}

/// In-support softmax Q-learning of a twin critic with Polyak-averaged targets:
/// `V(s') = Σ_j softmax_j(beta_Q · Qtarg(s', a'_j)) · Qtarg(s', a'_j)`,
/// `y = r + gamma · (1 − d) · V(s')`, loss `½ (MSE(Q1, y) + MSE(Q2, y))`.
///
/// Validation signal: every `validateEvery` steps (and at the last) the phase measures, on
/// `validationRows` fixed dataset rows (drawn once from the seed, always the same rows, still used
/// for training: holding them out would change every recorded model's minibatch stream), the TD
/// error against the current target (`val_td`, the training loss without minibatch noise), the mean
/// twin-min Q of the data's actions (`val_q`), and that Q minus the rows' discounted Monte Carlo
/// return-to-go (`val_q_minus_return`, Q calibration: the in-support softmax value should sit at or
/// somewhat above the behaviour's own return; a gap that keeps growing means the critic diverges,
/// one that keeps moving means it has not converged).
public final class CriticPhase: TrainingPhase {
    /// Steps between validation measurements.
    public static let validateEvery = ValidationRows.every
    /// Most fixed rows the validation signal measures.
    public static let validationRows = ValidationRows.count

    public let name: String
    public var totalSteps: Int { skeleton.totalSteps }
    public var completedSteps: Int { skeleton.completedSteps }
    let critic: TwinCritic
    let target: TwinCritic
    let data: PreparedData
    let supportSource: SupportGenerationPhase
    let config: TrainingConfig.CriticTraining
    var skeleton: PhaseSkeleton
    /// The fixed validation rows and their discounted returns-to-go.
    let validationIndices: [Int]
    private let validationReturns: [Float]
    /// The rows' observations and actions, gathered once.
    private let validationObs = FloatBuffer(), validationAct = FloatBuffer()
    private var validation: [String: Double] = [:]
    private let obs = FloatBuffer(), act = FloatBuffer(), nobsRep = FloatBuffer(), supAct = FloatBuffer()
    private let y = FloatBuffer(), g1 = FloatBuffer(), g2 = FloatBuffer()

    public init(name: String = "critic", critic: TwinCritic, data: PreparedData, support: SupportGenerationPhase, config: TrainingConfig.CriticTraining, batchSize: Int, seed: UInt64) {
        self.name = name
        self.critic = critic
        self.target = critic.copy()
        self.data = data
        self.supportSource = support
        self.config = config
        skeleton = PhaseSkeleton(
            steps: config.steps, parameters: critic.parameters, learningRate: config.learningRate, seed: seed,
            population: data.count, batchSize: batchSize)
        validationIndices = config.steps > 0 ? ValidationRows.draw(population: data.count, seed: seed, salt: 0xC0A1_1DA7_E5A1_0001) : []
        let returns = validationIndices.isEmpty ? [] : data.returnsToGo(gamma: config.gamma)
        validationReturns = validationIndices.map { returns[$0] }
        ValidationRows.gather(validationIndices, from: data, observations: validationObs, actions: validationAct)
    }

    /// `y = r + gamma · (1 − d) · V(s')` for dataset rows `indices` into `y`; returns the mean V(s').
    private func targets(_ indices: [Int]) -> Double {
        let b = indices.count, obsDim = data.observationDim, actDim = data.actionDim, m = supportSource.perState
        nobsRep.reserve(b * m * obsDim); supAct.reserve(b * m * actDim); y.reserve(b)
        data.nextObservations.withUnsafeBufferPointer { nobs in
            supportSource.support.withUnsafeBufferPointer { sup in
                for (k, i) in indices.enumerated() {
                    for j in 0..<m {
                        (nobsRep.pointer + (k * m + j) * obsDim).update(from: nobs.baseAddress! + i * obsDim, count: obsDim)
                    }
                    (supAct.pointer + k * m * actDim).update(from: sup.baseAddress! + i * m * actDim, count: m * actDim)
                }
            }
        }
        // Soft in-support value of the next state under the target critic.
        let qt = target.minQ(obs: nobsRep.pointer, actions: supAct.pointer, batch: b * m)
        var meanV: Double = 0
        for (k, i) in indices.enumerated() {
            let row = qt + k * m
            var mx = -Float.infinity
            for j in 0..<m { mx = max(mx, config.betaQ * row[j]) }
            var z: Float = 0, s: Float = 0
            for j in 0..<m {
                let w = Float.exp(config.betaQ * row[j] - mx)
                z += w
                s += w * row[j]
            }
            let v = s / z
            meanV += Double(v)
            y.pointer[k] = data.rewards[i] + config.gamma * data.notDone[i] * v
        }
        return meanV / Double(max(b, 1))
    }

    public func step() throws -> [String: Double] {
        let b = skeleton.sampler.batchSize
        skeleton.sampler.draw(from: data, observations: obs, actions: act)
        let meanV = targets(skeleton.sampler.indices)
        g1.reserve(b); g2.reserve(b)
        let (q1, q2) = critic.evaluate(obs: obs.pointer, actions: act.pointer, batch: b)
        var l1: Double = 0, l2: Double = 0, meanQ: Double = 0
        for k in 0..<b {
            let d1 = q1[k] - y.pointer[k], d2 = q2[k] - y.pointer[k]
            l1 += Double(d1 * d1); l2 += Double(d2 * d2)
            meanQ += Double(min(q1[k], q2[k]))
            // ½ (MSE1 + MSE2): ∂/∂q = d / b.
            g1.pointer[k] = d1 / Float(b)
            g2.pointer[k] = d2 / Float(b)
        }
        critic.backward(dq1: g1.pointer, dq2: g2.pointer)
        let gradNorm = skeleton.finishStep()
        polyakUpdate(target: target.parameters, source: critic.parameters, tau: config.tau)
        if ValidationRows.due(step: completedSteps, of: totalSteps) { validation = validate() }
        var metrics = validation
        metrics["loss"] = 0.5 * (l1 + l2) / Double(b)
        metrics["q_mean"] = meanQ / Double(b)
        metrics["v_next"] = meanV
        metrics["grad_norm"] = gradNorm
        return metrics
    }

    /// The validation signal on the fixed rows (see the type's documentation).
    public func validate() -> [String: Double] {
        let n = validationIndices.count
        guard n > 0 else { return [:] }
        _ = targets(validationIndices)
        let (q1, q2) = critic.evaluate(obs: validationObs.pointer, actions: validationAct.pointer, batch: n)
        var td: Double = 0, q: Double = 0, gap: Double = 0
        for k in 0..<n {
            let d1 = Double(q1[k] - y.pointer[k]), d2 = Double(q2[k] - y.pointer[k])
            td += 0.5 * (d1 * d1 + d2 * d2)
            let qk = Double(min(q1[k], q2[k]))
            q += qk
            gap += qk - Double(validationReturns[k])
        }
        let c = Double(n)
        return ["val_td": td / c, "val_q": q / c, "val_q_minus_return": gap / c]
    }

    public func stateTensors() -> [String: Tensor] {
        var s = skeleton.state(critic.parameters, prefix: "critic.")
        s.merge(target.parameters.namedTensors().prefixed("target.")) { a, _ in a }
        s.merge(ValidationCheckpoint.tensors(validation)) { a, _ in a }
        return s
    }

    /// Restores what `stateTensors()` saved; a checkpoint from before the validation signal has no
    /// values, and the next measurement fills them.
    public func loadState(_ s: [String: Tensor]) throws {
        try skeleton.load(s, into: critic.parameters, prefix: "critic.")
        try target.parameters.load(from: s.unprefixed("target."))
        validation = try ValidationCheckpoint.values(in: s)
    }
}
