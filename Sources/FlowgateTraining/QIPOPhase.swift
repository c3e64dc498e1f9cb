import FlowgateCore
import FlowgateAlgorithms
import RealModule

/// QIPO policy improvement: energy-weighted flow matching over per-state support sets.
///
/// For each state `s_i` in the minibatch the support set is `{a_i0 = dataset action,
/// a_i1 … a_iM ~ pi_l(·|s_i)}`, sampled from a frozen snapshot `pi_l` of the policy and cached per
/// state; weights `g_ij = softmax_j(beta · Q(s_i, a_ij) / qScale)`; loss
/// `(1/B) Σ_i Σ_j g_ij ||v(s_i, x_t_ij, t_ij) − (a_ij − x0_ij)||²` with a fresh `x0`, `t` per pair.
/// Every `renewEvery` steps the snapshot is replaced by the current policy and the cached support
/// sets are resampled (lazily, the first time each state is drawn afterwards), so after l renewals
/// the policy approximates `mu · exp((l + 1) · beta · Q)`.
///
/// Validation signal: every `ValidationRows.every` steps and at the last, on `ValidationRows.count`
/// fixed dataset states, the policy samples one action each (`supportFlowSteps` Euler steps from
/// noise drawn from a fixed seed, the same every time) and the critic scores it: `val_q_policy` is
/// the mean twin-min Q of those actions, `val_q_gain` that minus the mean Q of the data's own
/// actions in the same states. Improvement should raise it; a gain far beyond the spread of Q
/// within support sets (`q_scale`) is where the critic is trusted outside the data.
public final class QIPOPhase: TrainingPhase {
    public let name: String
    public var totalSteps: Int { skeleton.totalSteps }
    public var completedSteps: Int { skeleton.completedSteps }
    let policy: FlowPolicy
    var snapshot: FlowPolicy
    var snapshotSampler: FlowSampler
    let critic: TwinCritic
    let data: PreparedData
    let config: TrainingConfig.QIPO
    var skeleton: PhaseSkeleton
    /// Renewal generation of the snapshot.
    private(set) var generation = 0
    /// Per state: the generation its cached support was drawn from (−1 = never).
    private var cacheGeneration: [Int32]
    /// Per state: M cached actions and their Q values.
    private var cacheActions: [Float]
    private var cacheQ: [Float]
    /// Q of the dataset action per state (the critic is fixed during improvement).
    private var dataQ: [Float] = []
    private var qScale: Float = 1
    private var initialised = false
    /// The policy as this phase left it, once finished: a later phase (reflow) keeps training the
    /// same policy, and `--restart-from reflow` must restart from QIPO's result, not from its own.
    private var finalPolicy: [String: Tensor]?
    private let obs = FloatBuffer(), rowsObs = FloatBuffer(), rowsAct = FloatBuffer(), x0 = FloatBuffer(), xt = FloatBuffer()
    private let t = FloatBuffer(), target = FloatBuffer(), grad = FloatBuffer(), weights = FloatBuffer(), g = FloatBuffer()
    /// The fixed validation states (indices and observations, gathered once) and the last measurement.
    let validationIndices: [Int]
    private let validationObs = FloatBuffer()
    private let validationSampler: FlowSampler
    private let validationSeed: UInt64
    private var validation: [String: Double] = [:]

    public init(name: String = "qipo", policy: FlowPolicy, critic: TwinCritic, data: PreparedData, config: TrainingConfig.QIPO, batchSize: Int, seed: UInt64) {
        self.name = name
        self.policy = policy
        self.critic = critic
        self.data = data
        self.config = config
        skeleton = PhaseSkeleton(
            steps: config.steps, parameters: policy.parameters, learningRate: config.learningRate, seed: seed,
            population: data.count, batchSize: batchSize)
        snapshot = try! FlowPolicy(spec: policy.spec, tensors: policy.namedTensors())
        snapshotSampler = FlowSampler(policy: snapshot)
        cacheGeneration = [Int32](repeating: -1, count: data.count)
        cacheActions = [Float](repeating: 0, count: data.count * config.supportSize * data.actionDim)
        cacheQ = [Float](repeating: 0, count: data.count * config.supportSize)
        validationIndices = config.steps > 0 ? ValidationRows.draw(population: data.count, seed: seed, salt: 0x0910_1DA7_E5A1_0004) : []
        validationSeed = seed ^ 0x0910_1DA7_E5A1_0005
        validationSampler = FlowSampler(policy: policy)
        ValidationRows.gather(validationIndices, from: data, observations: validationObs)
    }

    /// The validation signal on the fixed states (see the type's documentation). Before the first
    /// step it first does what the first step would (the data's Q and the Q scale).
    public func validate() -> [String: Double] {
        let n = validationIndices.count
        guard n > 0 else { return [:] }
        if !initialised { initialise() }
        var seeds = RNG(seed: validationSeed)
        var rngs = (0..<n).map { _ in RNG(seed: seeds.next()) }
        let acts = validationSampler.sample(observations: validationObs.pointer, count: n, perObservation: 1, steps: config.supportFlowSteps, rngs: &rngs)
        let q = critic.minQ(obs: validationObs.pointer, actions: acts, batch: n)
        var policyQ: Double = 0, dataQTotal: Double = 0
        for (k, i) in validationIndices.enumerated() {
            policyQ += Double(q[k])
            dataQTotal += Double(dataQ[i])
        }
        let c = Double(n)
        return ["val_q_policy": policyQ / c, "val_q_gain": (policyQ - dataQTotal) / c]
    }

    /// Q of every dataset action and the Q scale; the snapshot starts as the current policy.
    private func initialise() {
        let obsDim = data.observationDim, actDim = data.actionDim
        dataQ = [Float](repeating: 0, count: data.count)
        let chunk = 4096
        var start = 0
        data.observations.withUnsafeBufferPointer { o in
            data.actions.withUnsafeBufferPointer { a in
                while start < data.count {
                    let n = min(chunk, data.count - start)
                    let q = critic.minQ(obs: o.baseAddress! + start * obsDim, actions: a.baseAddress! + start * actDim, batch: n)
                    for k in 0..<n { dataQ[start + k] = q[k] }
                    start += n
                }
            }
        }
        takeSnapshot()
        if config.normalizeQ {
            // The spread of Q *within* a state's support set is what the weights compare. (The
            // spread across states — dominated by how good the state is — made the weights almost
            // uniform on Hopper: entropy 2.8309 of a maximum 2.8332 with 17 pairs.)
            let probe = min(data.count, 2048)
            let indices = (0..<probe).map { _ in skeleton.sampler.rng.int(below: data.count) }
            refreshSupport(indices)
            var spread: Double = 0
            let m = config.supportSize
            for i in indices {
                var values = [dataQ[i]]
                for j in 0..<m { values.append(cacheQ[i * m + j]) }
                let mean = values.reduce(0, +) / Float(values.count)
                let v = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(values.count)
                spread += Double(v.squareRoot())
            }
            qScale = max(Float(spread / Double(probe)), 1e-6)
        }
        initialised = true
    }

    private func takeSnapshot() {
        snapshot.parameters.copyValues(from: policy.parameters)
    }

    /// Makes sure the cached support of the states in `indices` comes from the current generation.
    private func refreshSupport(_ indices: [Int]) {
        let obsDim = data.observationDim, actDim = data.actionDim, m = config.supportSize
        let stale = indices.filter { cacheGeneration[$0] < Int32(generation) }
        let unique = Array(Set(stale)).sorted()
        if unique.count > 4096 {
            // Large refreshes (the probe at initialisation) go in chunks to bound the workspace.
            for start in stride(from: 0, to: unique.count, by: 4096) {
                refreshSupport(Array(unique[start..<min(start + 4096, unique.count)]))
            }
            return
        }
        guard !unique.isEmpty else { return }
        obs.reserve(unique.count * obsDim)
        PreparedData.gather(data.observations, width: obsDim, indices: unique, into: obs.pointer)
        var rngs = (0..<(unique.count * m)).map { _ in RNG(seed: skeleton.sampler.rng.next()) }
        let acts = snapshotSampler.sample(observations: obs.pointer, count: unique.count, perObservation: m, steps: config.supportFlowSteps, rngs: &rngs)
        rowsObs.reserve(unique.count * m * obsDim)
        for k in 0..<unique.count {
            for j in 0..<m { (rowsObs.pointer + (k * m + j) * obsDim).update(from: obs.pointer + k * obsDim, count: obsDim) }
        }
        let q = critic.minQ(obs: rowsObs.pointer, actions: acts, batch: unique.count * m)
        for (k, i) in unique.enumerated() {
            cacheActions.withUnsafeMutableBufferPointer { c in
                (c.baseAddress! + i * m * actDim).update(from: acts + k * m * actDim, count: m * actDim)
            }
            for j in 0..<m { cacheQ[i * m + j] = q[k * m + j] }
            cacheGeneration[i] = Int32(generation)
        }
    }

    public func step() throws -> [String: Double] {
        if !initialised { initialise() }
        if completedSteps > 0 && completedSteps % config.renewEvery == 0 && generation < completedSteps / config.renewEvery {
            generation = completedSteps / config.renewEvery
            takeSnapshot()
        }
        let b = skeleton.sampler.batchSize, obsDim = data.observationDim, actDim = data.actionDim, m = config.supportSize
        let s = m + 1
        skeleton.sampler.draw()
        let indices = skeleton.sampler.indices
        refreshSupport(indices)
        // Rows trained this step: all s pairs per state (weighted), or k pairs drawn ∝ g (unweighted).
        let perState = config.pairsPerState > 0 ? config.pairsPerState : s
        let rows = b * perState
        rowsObs.reserve(rows * obsDim); rowsAct.reserve(rows * actDim); x0.reserve(rows * actDim); xt.reserve(rows * actDim)
        t.reserve(rows); target.reserve(rows * actDim); grad.reserve(rows * actDim); weights.reserve(rows)
        g.reserve(s)
        var entropy: Double = 0, datasetWeight: Double = 0, meanQ: Double = 0
        data.observations.withUnsafeBufferPointer { o in
            data.actions.withUnsafeBufferPointer { a in
                cacheActions.withUnsafeBufferPointer { c in
                    for (k, i) in indices.enumerated() {
                        // g_ij = softmax_j(beta · Q_ij / qScale), computed stably.
                        var mx = -Float.infinity
                        for j in 0..<s {
                            let q = j == 0 ? dataQ[i] : cacheQ[i * m + j - 1]
                            let l = config.beta * q / qScale
                            g.pointer[j] = l
                            mx = max(mx, l)
                            meanQ += Double(q)
                        }
                        var z: Float = 0
                        for j in 0..<s { g.pointer[j] = Float.exp(g.pointer[j] - mx); z += g.pointer[j] }
                        for j in 0..<s {
                            g.pointer[j] /= z
                            if g.pointer[j] > 0 { entropy -= Double(g.pointer[j] * Float.log(g.pointer[j])) }
                        }
                        datasetWeight += Double(g.pointer[0])
                        for p in 0..<perState {
                            let r = k * perState + p
                            var j = p
                            if config.pairsPerState > 0 {
                                // Draw a pair with probability g_ij; the row is then unweighted.
                                let u = skeleton.sampler.rng.uniform()
                                var acc: Float = 0
                                j = s - 1
                                for jj in 0..<s { acc += g.pointer[jj]; if u < acc { j = jj; break } }
                                weights.pointer[r] = 1
                            } else {
                                // Mean over b·s rows of (s · g_ij) equals (1/B) Σ_i Σ_j g_ij.
                                weights.pointer[r] = g.pointer[j] * Float(s)
                            }
                            (rowsObs.pointer + r * obsDim).update(from: o.baseAddress! + i * obsDim, count: obsDim)
                            let src = j == 0 ? a.baseAddress! + i * actDim : c.baseAddress! + (i * m + j - 1) * actDim
                            (rowsAct.pointer + r * actDim).update(from: src, count: actDim)
                        }
                    }
                }
            }
        }
        FlowPolicy.drawPathPoints(
            actions: rowsAct.pointer, rows: rows, actionDim: actDim, rng: &skeleton.sampler.rng, x0: x0.pointer, t: t.pointer, xt: xt.pointer,
            target: target.pointer)
        let v = policy.velocity(obs: rowsObs.pointer, x: xt.pointer, t: t.pointer, batch: rows)
        let loss = Loss.weightedSquaredError(v, target.pointer, weights: weights.pointer, rows: rows, width: actDim, grad: grad.pointer)
        policy.backward(grad.pointer)
        let gradNorm = skeleton.finishStep()
        if skeleton.isFinished { finalPolicy = policy.parameters.namedTensors() }
        if ValidationRows.due(step: completedSteps, of: totalSteps) { validation = validate() }
        return validation.merging([
            "loss": Double(loss), "weight_entropy": entropy / Double(b), "dataset_weight": datasetWeight / Double(b),
            "support_q": meanQ / Double(b * s), "q_scale": Double(qScale), "generation": Double(generation), "grad_norm": gradNorm,
        ]) { _, b in b }
    }

    public func stateTensors() -> [String: Tensor] {
        var st = skeleton.state()
        st.merge((finalPolicy ?? policy.parameters.namedTensors()).prefixed("policy.")) { a, _ in a }
        st.merge(snapshot.parameters.namedTensors().prefixed("snapshot.")) { a, _ in a }
        st["generation"] = Tensor(shape: [1], scalars: [Float(generation)])
        st["initialised"] = Tensor(shape: [1], scalars: [initialised ? 1 : 0])
        st.merge(ValidationCheckpoint.tensors(validation)) { a, _ in a }
        if initialised {
            st["cache.generation"] = Tensor(shape: [cacheGeneration.count], scalars: cacheGeneration.map { Float($0) })
            st["cache.actions"] = Tensor(shape: [cacheActions.count], scalars: cacheActions)
            st["cache.q"] = Tensor(shape: [cacheQ.count], scalars: cacheQ)
            st["data.q"] = Tensor(shape: [dataQ.count], scalars: dataQ)
            st["q_scale"] = Tensor(shape: [1], scalars: [qScale])
        }
        return st
    }

    public func loadState(_ st: [String: Tensor]) throws {
        try skeleton.load(st, into: policy.parameters, prefix: "policy.")
        try snapshot.parameters.load(from: st.unprefixed("snapshot."))
        finalPolicy = skeleton.isFinished ? policy.parameters.namedTensors() : nil
        generation = Int(st["generation"]?.scalars.first ?? 0)
        validation = try ValidationCheckpoint.values(in: st)
        initialised = (st["initialised"]?.scalars.first ?? 0) == 1
        if initialised {
            guard let g = st["cache.generation"], g.count == cacheGeneration.count,
                let a = st["cache.actions"], a.count == cacheActions.count,
                let q = st["cache.q"], q.count == cacheQ.count,
                let dq = st["data.q"], dq.count == data.count, let qs = st["q_scale"]
            else { throw ParameterLoadError.missing("qipo cache") }
            cacheGeneration = g.scalars.map { Int32($0) }
            cacheActions = a.scalars
            cacheQ = q.scalars
            dataQ = dq.scalars
            qScale = qs.scalars[0]
        }
    }
}
