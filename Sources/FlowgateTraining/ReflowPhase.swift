import FlowgateCore
import FlowgateAlgorithms

extension TrainingConfig {
    /// Reflow (straightening) after QIPO: the policy is retrained with flow matching on the
    /// couplings `(x0, x1 = ODE_teacher(s, x0))` of a frozen copy of itself, so that its trajectories
    /// become straight and 1–2 Euler steps land where many steps did. Off (0 steps) unless set.
    public struct Reflow: Codable, Sendable, Equatable {
        public var steps: Int = 0
        public var learningRate: Float = 3e-4
        /// Euler steps the frozen teacher integrates to make each coupling's endpoint.
        public var teacherSteps: Int = 32
        /// 0: each coupling's endpoint is the teacher's own sample from its noise (plain reflow).
        /// M ≥ 2: the teacher draws M samples per state, the critic (twin-min Q) picks the best, and
        /// fresh noise is coupled to that one endpoint: the student learns the best-of-M policy's
        /// action, which it reaches in one step from any noise. Needs a trained critic.
        public var candidates: Int = 0
        /// Couplings held in the cache the student trains on.
        public var poolSize: Int = 65_536
        /// Couplings generated per teacher call; the pool is filled and refreshed in chunks of this size.
        public var chunkSize: Int = 4096
        /// Every this many steps one chunk of the pool is replaced by fresh couplings (0 = never).
        public var refreshEvery: Int = 250
        /// Held-out dataset states for the validation signal (excluded from the couplings).
        public var validationStates: Int = 1024
        /// Steps between validation measurements (also measured at the start and the end).
        public var validateEvery: Int = 500
        /// Share of the phase's steps, at its end, over which the learning rate falls linearly
        /// towards zero (0: constant; `distil` and `straighten` default to 0.5, `reflow` to 0). The
        /// policy a phase leaves is its last iterate, which a constant rate leaves as noisy as any
        /// other step's; annealing lets it settle.
        public var annealShare: Float = 0
        public init() {}

        /// The learning rate of step `step` (0-based) of `steps`: `learningRate` until the last
        /// `annealShare` of the steps, then falling linearly to `learningRate / n` at the last step
        /// of an `n`-step anneal.
        public func learningRate(step: Int, of steps: Int) -> Float {
            let n = Int((Float(steps) * annealShare).rounded())
            let start = steps - n
            guard n > 0, step >= start else { return learningRate }
            return learningRate * Float(steps - step) / Float(n)
        }

        /// The default `distil` phase (measured on hopper-, walker2d- and halfcheetah-medium,
        /// docs/training.md "Few-step quality: distil and straighten"): the teacher draws 16
        /// one-step samples per state, the critic picks the best, and the policy learns that action.
        /// One Euler step leaves the QIPO policy's samples spread enough for the choice to matter;
        /// at K >= 2 they collapse and the choice adds little.
        public static let distilDefault: Reflow = {
            var r = Reflow()
            r.steps = 8000
            r.teacherSteps = 1
            r.candidates = 16
            r.annealShare = 0.5
            return r
        }()

        /// The default `straighten` phase: plain reflow of the distilled policy on its own 8-step
        /// samples, so that one step lands where eight do. Both defaults anneal the learning rate over
        /// their second half (docs/training.md "Annealed distil and straighten": on hopper-medium it
        /// removed the run-to-run drops of the constant-rate phases).
        public static let straightenDefault: Reflow = {
            var r = Reflow()
            r.steps = 8000
            r.teacherSteps = 8
            r.annealShare = 0.5
            return r
        }()

        /// Held-out validation states for a dataset of `count` rows: `validationStates`, or half
        /// the dataset when that is fewer.
        public func validationStates(datasetCount count: Int) -> Int { min(validationStates, count / 2) }

        /// Throws `TrainingError.invalidConfig` naming the first field out of range (as
        /// `section.field`, e.g. `distil.candidates`).
        public func validate(datasetCount: Int, section: String = "reflow") throws {
            func fail(_ s: String) -> TrainingError { .invalidConfig("\(section).\(s)") }
            guard steps >= 0 else { throw fail("steps must not be negative (got \(steps))") }
            guard steps > 0 else { return }
            guard learningRate > 0, learningRate.isFinite else { throw fail("learningRate must be positive (got \(learningRate))") }
            guard teacherSteps >= 1 else { throw fail("teacherSteps must be at least 1 (got \(teacherSteps))") }
            guard candidates == 0 || candidates >= 2 else {
                throw fail("candidates must be 0 (the teacher's own sample) or at least 2 (the critic's best of that many), got \(candidates)")
            }
            guard chunkSize >= 1 else { throw fail("chunkSize must be at least 1 (got \(chunkSize))") }
            guard poolSize >= chunkSize, poolSize % chunkSize == 0 else {
                throw fail("poolSize (\(poolSize)) must be a positive multiple of chunkSize (\(chunkSize))")
            }
            guard refreshEvery >= 0 else { throw fail("refreshEvery must not be negative (got \(refreshEvery))") }
            guard validateEvery >= 1 else { throw fail("validateEvery must be at least 1 (got \(validateEvery))") }
            guard validationStates >= 0 else {
                throw fail("validationStates must not be negative (got \(validationStates))")
            }
            guard annealShare >= 0, annealShare <= 1 else {
                throw fail("annealShare must be between 0 and 1 (got \(annealShare))")
            }
        }
    }
}

/// Reflow: flow matching on the straight couplings of a frozen teacher (the policy as QIPO left it).
///
/// For dataset states `s` and noise `x0 ~ N(0, I)` the teacher integrates `x1 = ODE(s, x0)` with
/// `teacherSteps` Euler steps through `FlowSampler` — the server's sampler, *without* the final clip,
/// so that clipping the student's endpoint gives what clipping the teacher's gave. The student
/// (the policy itself, starting from the teacher's weights) is trained on
/// `||v(s, x_t, t) − (x1 − x0)||²` with `x_t = (1 − t)·x0 + t·x1`, `t ~ U[0, 1]`. Straight
/// trajectories make K = 1 and K = 2 land where many steps do, and the map x0 → action keeps the
/// candidates' diversity, so best-of-M selection works as before.
///
/// Couplings live in a pool of `poolSize`, filled in chunks when the phase starts and refreshed one
/// chunk every `refreshEvery` steps, which amortises the teacher's cost. A held-out split of
/// `validationStates` dataset states never enters the pool; on it the phase measures, with fixed
/// noise, the K = 1 and K = 8 action MSE against the dataset actions and the K = 1-vs-K = 8 gap
/// (mean squared difference per action dimension), reported as `val_*` metrics.
///
/// With `candidates` M ≥ 2 the endpoint is the critic's choice instead: the teacher draws M samples
/// per state, the twin-min critic scores them (clipped, as the server scores its candidates) and
/// the best one's unclipped endpoint is the state's target; each training row couples fresh noise
/// to it. That distils the best-of-M policy (what the server serves at K = `teacherSteps`) into a
/// flow whose every trajectory is straight and ends at the chosen action, so K = 1 serves what the
/// teacher's best of M does.
public final class ReflowPhase: TrainingPhase {
    public let name: String
    public var totalSteps: Int { skeleton.totalSteps }
    public var completedSteps: Int { skeleton.completedSteps }
    let policy: FlowPolicy
    let teacher: FlowPolicy
    let data: PreparedData
    /// Scores the teacher's candidates when `config.candidates` ≥ 2 (frozen; not trained here).
    let critic: TwinCritic?
    let config: TrainingConfig.Reflow
    /// Minibatches are drawn from the coupling pool (`poolSize` entries).
    var skeleton: PhaseSkeleton
    private let seed: UInt64
    private let teacherSampler: FlowSampler
    private let studentSampler: FlowSampler
    private var initialised = false
    /// Pool of couplings: dataset row, noise and teacher endpoint (with `candidates` ≥ 2 the noise
    /// is drawn afresh per step and `poolX0` stays zero).
    private var poolState: [Int32]
    private var poolX0: [Float]
    private var poolX1: [Float]
    private var nextChunk = 0
    /// Dataset rows held out for validation, and a mask of them.
    public let heldOut: [Int]
    private var isHeldOut: [Bool]
    private var validation: [String: Double] = [:]
    /// The policy as this phase left it, once finished: a later phase (`straighten` after `distil`)
    /// keeps training the same policy, and restarting that later phase must start from this result.
    private var finalPolicy: [String: Tensor]?
    private let obs = FloatBuffer(), x0 = FloatBuffer(), xt = FloatBuffer(), t = FloatBuffer()
    private let target = FloatBuffer(), grad = FloatBuffer()

    public init(
        name: String = "reflow", policy: FlowPolicy, critic: TwinCritic? = nil, data: PreparedData, config: TrainingConfig.Reflow, batchSize: Int,
        seed: UInt64
    ) throws {
        try config.validate(datasetCount: data.count, section: name)
        if config.steps > 0 && config.candidates > 0 && critic == nil {
            throw TrainingError.invalidConfig(
                "\(name).candidates = \(config.candidates) needs a trained critic to choose between the teacher's samples; this run has none (set \(name).candidates or \(name).steps to 0)"
            )
        }
        self.name = name
        self.policy = policy
        self.critic = critic?.replica()
        self.data = data
        self.config = config
        self.seed = seed
        skeleton = PhaseSkeleton(
            steps: config.steps, parameters: policy.parameters, learningRate: config.learningRate, seed: seed,
            population: config.poolSize, batchSize: batchSize)
        teacher = try FlowPolicy(spec: policy.spec, tensors: policy.namedTensors())
        teacherSampler = FlowSampler(policy: teacher)
        studentSampler = FlowSampler(policy: policy)
        let pool = config.steps > 0 ? config.poolSize : 0
        poolState = [Int32](repeating: 0, count: pool)
        poolX0 = [Float](repeating: 0, count: pool * data.actionDim)
        poolX1 = [Float](repeating: 0, count: pool * data.actionDim)
        // The held-out split depends only on the seed and the dataset size.
        var splitRNG = RNG(seed: seed ^ 0x5EF1_0A11)
        isHeldOut = [Bool](repeating: false, count: data.count)
        var held: [Int] = []
        let wanted = config.steps > 0 ? config.validationStates(datasetCount: data.count) : 0
        while held.count < wanted {
            let i = splitRNG.int(below: data.count)
            if !isHeldOut[i] { isHeldOut[i] = true; held.append(i) }
        }
        heldOut = held.sorted()
    }

    /// Freezes the teacher (the policy as the previous phase left it), fills the pool and measures
    /// the starting point.
    private func initialise() {
        teacher.parameters.copyValues(from: policy.parameters)
        for c in 0..<(config.poolSize / config.chunkSize) { generateChunk(c) }
        nextChunk = 0
        validation = validate()
        initialised = true
    }

    /// Replaces chunk `c` of the pool with fresh couplings from the teacher.
    private func generateChunk(_ c: Int) {
        let n = config.chunkSize, obsDim = data.observationDim, actDim = data.actionDim
        var states = [Int](repeating: 0, count: n)
        for k in 0..<n {
            var i = skeleton.sampler.rng.int(below: data.count)
            while isHeldOut[i] { i = skeleton.sampler.rng.int(below: data.count) }
            states[k] = i
        }
        if config.candidates > 0, let critic {
            generateSelectedChunk(c, states: states, critic: critic)
            return
        }
        obs.reserve(n * obsDim)
        PreparedData.gather(data.observations, width: obsDim, indices: states, into: obs.pointer)
        var rngs = (0..<n).map { _ in RNG(seed: skeleton.sampler.rng.next()) }
        var noise = rngs
        // Unclipped: the sampler clips after integrating, so the student must learn the raw endpoint.
        let x1 = teacherSampler.sample(observations: obs.pointer, count: n, perObservation: 1, steps: config.teacherSteps, rngs: &rngs, clip: false)
        let base = c * n
        poolX1.withUnsafeMutableBufferPointer { p in (p.baseAddress! + base * actDim).update(from: x1, count: n * actDim) }
        poolX0.withUnsafeMutableBufferPointer { p in
            // The same draws the sampler started from (one generator per row, `ad` normals each).
            for k in 0..<n { noise[k].fillNormal(UnsafeMutableBufferPointer(start: p.baseAddress! + (base + k) * actDim, count: actDim)) }
        }
        for k in 0..<n { poolState[base + k] = Int32(states[k]) }
    }

    /// Chunk `c` with the critic's best of `candidates` teacher samples as each state's endpoint,
    /// computed in slices of states so that the workspaces stay near `chunkSize` rows.
    private func generateSelectedChunk(_ c: Int, states: [Int], critic: TwinCritic) {
        let n = states.count, m = config.candidates, obsDim = data.observationDim, actDim = data.actionDim
        let slice = max(1, min(n, config.chunkSize / m))
        var start = 0
        while start < n {
            let count = min(slice, n - start), rows = count * m
            obs.reserve(count * obsDim)
            PreparedData.gather(data.observations, width: obsDim, indices: Array(states[start..<(start + count)]), into: obs.pointer)
            var rngs = (0..<rows).map { _ in RNG(seed: skeleton.sampler.rng.next()) }
            let x1 = teacherSampler.sample(observations: obs.pointer, count: count, perObservation: m, steps: config.teacherSteps, rngs: &rngs, clip: false)
            target.reserve(rows * actDim)
            xt.reserve(rows * obsDim)
            for i in 0..<(rows * actDim) { target.pointer[i] = min(max(x1[i], -1), 1) }
            for r in 0..<rows { (xt.pointer + r * obsDim).update(from: obs.pointer + (r / m) * obsDim, count: obsDim) }
            let q = critic.minQ(obs: xt.pointer, actions: target.pointer, batch: rows)
            for k in 0..<count {
                var best = 0
                for j in 1..<m where q[k * m + j] > q[k * m + best] { best = j }
                let slot = c * n + start + k
                poolState[slot] = Int32(states[start + k])
                for d in 0..<actDim { poolX1[slot * actDim + d] = x1[(k * m + best) * actDim + d] }
            }
            start += count
        }
    }

    /// The validation signal on the held-out states, with fixed noise (the same every time).
    public func validate() -> [String: Double] {
        let m = heldOut.count, obsDim = data.observationDim, actDim = data.actionDim
        guard m > 0 else { return [:] }
        let o = FloatBuffer(), a = FloatBuffer()
        o.reserve(m * obsDim); a.reserve(m * actDim)
        PreparedData.gather(data.observations, width: obsDim, indices: heldOut, into: o.pointer)
        PreparedData.gather(data.actions, width: actDim, indices: heldOut, into: a.pointer)
        func sample(_ k: Int) -> [Float] {
            var rngs = (0..<m).map { RNG(seed: seed &+ 0x7A11 &+ UInt64($0)) }
            let p = studentSampler.sample(observations: o.pointer, count: m, perObservation: 1, steps: k, rngs: &rngs)
            return Array(UnsafeBufferPointer(start: p, count: m * actDim))
        }
        let one = sample(1), eight = sample(8)
        var mse1: Double = 0, mse8: Double = 0, gap: Double = 0
        for i in 0..<(m * actDim) {
            let d1 = Double(one[i] - a.pointer[i]), d8 = Double(eight[i] - a.pointer[i]), g = Double(one[i] - eight[i])
            mse1 += d1 * d1; mse8 += d8 * d8; gap += g * g
        }
        let n = Double(m * actDim)
        return ["val_mse_k1": mse1 / n, "val_mse_k8": mse8 / n, "val_gap_k1_k8": gap / n]
    }

    public func step() throws -> [String: Double] {
        if !initialised { initialise() }
        let b = skeleton.sampler.batchSize, obsDim = data.observationDim, actDim = data.actionDim
        skeleton.sampler.draw()
        let indices = skeleton.sampler.indices
        obs.reserve(b * obsDim); x0.reserve(b * actDim); xt.reserve(b * actDim); t.reserve(b); target.reserve(b * actDim); grad.reserve(b * actDim)
        let freshNoise = config.candidates > 0
        data.observations.withUnsafeBufferPointer { o in
            for (r, k) in indices.enumerated() {
                (obs.pointer + r * obsDim).update(from: o.baseAddress! + Int(poolState[k]) * obsDim, count: obsDim)
                let tr = skeleton.sampler.rng.uniform()
                t.pointer[r] = tr
                let noise = x0.pointer + r * actDim
                if freshNoise {
                    skeleton.sampler.rng.fillNormal(UnsafeMutableBufferPointer(start: noise, count: actDim))
                } else {
                    for j in 0..<actDim { noise[j] = poolX0[k * actDim + j] }
                }
                for j in 0..<actDim {
                    let a0 = noise[j], a1 = poolX1[k * actDim + j]
                    xt.pointer[r * actDim + j] = (1 - tr) * a0 + tr * a1
                    target.pointer[r * actDim + j] = a1 - a0
                }
            }
        }
        let v = policy.velocity(obs: obs.pointer, x: xt.pointer, t: t.pointer, batch: b)
        let loss = Loss.weightedSquaredError(v, target.pointer, weights: nil, rows: b, width: actDim, grad: grad.pointer)
        policy.backward(grad.pointer)
        skeleton.optimizer.learningRate = config.learningRate(step: completedSteps, of: totalSteps)
        _ = skeleton.finishStep()
        if skeleton.isFinished { finalPolicy = policy.parameters.namedTensors() }
        if config.refreshEvery > 0 && completedSteps % config.refreshEvery == 0 && completedSteps < totalSteps {
            generateChunk(nextChunk)
            nextChunk = (nextChunk + 1) % (config.poolSize / config.chunkSize)
        }
        if completedSteps % config.validateEvery == 0 || completedSteps == totalSteps { validation = validate() }
        var metrics = validation
        metrics["loss"] = Double(loss)
        return metrics
    }

    public func stateTensors() -> [String: Tensor] {
        var st = skeleton.state()
        st.merge((finalPolicy ?? policy.parameters.namedTensors()).prefixed("policy.")) { a, _ in a }
        st["initialised"] = Tensor(shape: [1], scalars: [initialised ? 1 : 0])
        if initialised {
            st.merge(teacher.parameters.namedTensors().prefixed("teacher.")) { a, _ in a }
            st["pool.state"] = Tensor(shape: [poolState.count], scalars: poolState.map { Float($0) })
            st["pool.x0"] = Tensor(shape: [poolX0.count], scalars: poolX0)
            st["pool.x1"] = Tensor(shape: [poolX1.count], scalars: poolX1)
            st["pool.next_chunk"] = Tensor(shape: [1], scalars: [Float(nextChunk)])
            st.merge(ValidationCheckpoint.tensors(validation)) { a, _ in a }
        }
        return st
    }

    public func loadState(_ st: [String: Tensor]) throws {
        try skeleton.load(st, into: policy.parameters, prefix: "policy.")
        finalPolicy = skeleton.isFinished ? policy.parameters.namedTensors() : nil
        initialised = (st["initialised"]?.scalars.first ?? 0) == 1
        guard initialised else { return }
        try teacher.parameters.load(from: st.unprefixed("teacher."))
        guard let s = st["pool.state"], s.count == poolState.count, let a = st["pool.x0"], a.count == poolX0.count,
            let b = st["pool.x1"], b.count == poolX1.count, let c = st["pool.next_chunk"]
        else { throw ParameterLoadError.missing("reflow coupling pool") }
        poolState = s.scalars.map { Int32($0) }
        poolX0 = a.scalars
        poolX1 = b.scalars
        nextChunk = Int(c.scalars[0])
        validation = try ValidationCheckpoint.values(in: st)
    }
}
