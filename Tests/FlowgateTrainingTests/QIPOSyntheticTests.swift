import Testing
#if canImport(Glibc)
    import Glibc
#endif
import FlowgateCore
import FlowgateAlgorithms
@testable import FlowgateTraining

/// Small offline problems with known answers (fixed seeds, small networks, seconds in debug builds).
@Suite("QIPO and critic on synthetic problems")
struct QIPOSyntheticTests {
    /// A one-step 2-D bandit like the QIPO paper's Figure 1: 70 % of the data sits on a low-reward
    /// mode at (−0.6, −0.6) (reward 0), 30 % on a high-reward mode at (0.6, 0.6) (reward 1).
    static func bandit(count: Int, seed: UInt64) -> OfflineDataset {
        var rng = RNG(seed: seed)
        var actions: [Float] = [], rewards: [Float] = []
        for _ in 0..<count {
            let high = rng.uniform() < 0.3
            let c: Float = high ? 0.6 : -0.6
            actions.append(c + 0.1 * rng.normal()); actions.append(c + 0.1 * rng.normal())
            rewards.append(high ? 1 : 0)
        }
        let obs = [Float](repeating: 0, count: count)
        return OfflineDataset(
            source: "bandit", observationDim: 1, actionDim: 2, observations: obs, actions: actions, rewards: rewards,
            nextObservations: obs, terminals: [Bool](repeating: true, count: count), timeouts: [Bool](repeating: false, count: count))
    }

    static func prepare(_ d: OfflineDataset) -> PreparedData {
        PreparedData(
            dataset: d, observationMean: [Float](repeating: 0, count: d.observationDim),
            observationStd: [Float](repeating: 1, count: d.observationDim), actionLow: [Float](repeating: -1, count: d.actionDim),
            actionHigh: [Float](repeating: 1, count: d.actionDim), rewardScale: 1)
    }

    /// Share of sampled actions on the high-reward mode (x + y > 0).
    static func highModeShare(_ policy: FlowPolicy, samples: Int, seed: UInt64) -> Double {
        let sampler = FlowSampler(policy: policy.replica())
        var rngs = (0..<samples).map { RNG(seed: seed &+ UInt64($0)) }
        let a = sampler.sample(observations: [0], count: 1, perObservation: samples, steps: 8, rngs: &rngs)
        var high = 0
        for i in 0..<samples where a[2 * i] + a[2 * i + 1] > 0 { high += 1 }
        return Double(high) / Double(samples)
    }

    @Test("QIPO puts clearly more samples on the high-reward mode than behaviour cloning")
    func banditImprovement() throws {
        let data = Self.prepare(Self.bandit(count: 2000, seed: 1))
        var rng = RNG(seed: 2)
        let spec = FlowPolicySpec(observationDim: 1, actionDim: 2, hiddenDims: [64, 64])
        let policy = FlowPolicy(spec: spec, rng: &rng)
        let critic = TwinCritic(spec: CriticSpec(observationDim: 1, actionDim: 2, hiddenDims: [64, 64]), rng: &rng)
        let behaviour = BehaviourFlowPhase(policy: policy, data: data, steps: 1500, batchSize: 128, learningRate: 1e-3, seed: 3)
        // Validation signal: the flow-matching loss on fixed rows and noise falls as the flow learns.
        let fmBefore = try #require(behaviour.validate()["val_fm"])
        #expect(behaviour.validate()["val_fm"] == fmBefore, "the same rows and noise every call")
        var behaviourLast: [String: Double] = [:]
        while behaviour.completedSteps < behaviour.totalSteps { behaviourLast = try behaviour.step() }
        let fmAfter = try #require(behaviourLast["val_fm"])
        #expect(fmAfter < 0.6 * fmBefore, "val_fm \(fmBefore) → \(fmAfter)")
        let bcShare = Self.highModeShare(policy, samples: 1000, seed: 100)

        var cc = TrainingConfig.CriticTraining()
        cc.steps = 600; cc.supportSize = 4; cc.supportFlowSteps = 4; cc.learningRate = 1e-3
        let support = SupportGenerationPhase(policy: policy, data: data, perState: cc.supportSize, flowSteps: cc.supportFlowSteps, seed: 4)
        while support.completedSteps < support.totalSteps { _ = try support.step() }
        let criticPhase = CriticPhase(critic: critic, data: data, support: support, config: cc, batchSize: 128, seed: 5)
        while criticPhase.completedSteps < criticPhase.totalSteps { _ = try criticPhase.step() }
        let qHigh = critic.minQ(obs: [0], actions: [0.6, 0.6], batch: 1)[0]
        let qLow = critic.minQ(obs: [0], actions: [-0.6, -0.6], batch: 1)[0]
        #expect(abs(qHigh - 1) < 0.15 && abs(qLow) < 0.15, "critic: Q(high) = \(qHigh), Q(low) = \(qLow)")

        var qc = TrainingConfig.QIPO()
        qc.steps = 1200; qc.supportSize = 8; qc.renewEvery = 400; qc.supportFlowSteps = 4; qc.learningRate = 1e-3; qc.beta = 3
        let qipo = QIPOPhase(policy: policy, critic: critic, data: data, config: qc, batchSize: 64, seed: 6)
        // Validation signal: the critic's value of the policy's actions over the data's. The
        // behaviour flow's actions are worth what the data's are (gain near 0); improvement moves
        // most of them to the mode worth 1 where 70 % of the data sits at 0.
        let gainBefore = try #require(qipo.validate()["val_q_gain"])
        var qipoLast: [String: Double] = [:]
        while qipo.completedSteps < qipo.totalSteps { qipoLast = try qipo.step() }
        let gainAfter = try #require(qipoLast["val_q_gain"]), qAfter = try #require(qipoLast["val_q_policy"])
        #expect(abs(gainBefore) < 0.1, "val_q_gain before improvement: \(gainBefore)")
        #expect(gainAfter > gainBefore + 0.3 && qAfter > 0.6, "val_q_gain \(gainBefore) → \(gainAfter), val_q_policy \(qAfter)")
        let qipoShare = Self.highModeShare(policy, samples: 1000, seed: 100)
        // Behaviour cloning reproduces the data (about 30 % high); QIPO must shift most mass.
        #expect(abs(bcShare - 0.3) < 0.1, "behaviour flow high-mode share \(bcShare)")
        #expect(qipoShare > bcShare + 0.4, "QIPO high-mode share \(qipoShare) vs behaviour \(bcShare)")
    }

    @Test("the in-support critic converges to the true values of a chain MDP")
    func chainCritic() throws {
        // States 0…4 (one-hot), one action (+0.5); reward 1 on leaving state 4, which terminates.
        let n = 5, gamma: Float = 0.9
        var obs: [Float] = [], next: [Float] = [], actions: [Float] = [], rewards: [Float] = [], terms: [Bool] = []
        for rep in 0..<200 {
            _ = rep
            for s in 0..<n {
                var o = [Float](repeating: 0, count: n); o[s] = 1
                var o2 = [Float](repeating: 0, count: n); if s + 1 < n { o2[s + 1] = 1 }
                obs += o; next += o2; actions.append(0.5); rewards.append(s == n - 1 ? 1 : 0); terms.append(s == n - 1)
            }
        }
        let d = OfflineDataset(
            source: "chain", observationDim: n, actionDim: 1, observations: obs, actions: actions, rewards: rewards,
            nextObservations: next, terminals: terms, timeouts: [Bool](repeating: false, count: terms.count))
        let data = Self.prepare(d)
        var rng = RNG(seed: 11)
        let policy = FlowPolicy(spec: FlowPolicySpec(observationDim: n, actionDim: 1, hiddenDims: [32, 32]), rng: &rng)
        let behaviour = BehaviourFlowPhase(policy: policy, data: data, steps: 300, batchSize: 64, learningRate: 1e-3, seed: 12)
        while behaviour.completedSteps < behaviour.totalSteps { _ = try behaviour.step() }
        var cc = TrainingConfig.CriticTraining()
        cc.steps = 2500; cc.supportSize = 4; cc.supportFlowSteps = 4; cc.gamma = gamma; cc.learningRate = 1e-3; cc.tau = 0.02
        let critic = TwinCritic(spec: CriticSpec(observationDim: n, actionDim: 1, hiddenDims: [64, 64]), rng: &rng)
        let support = SupportGenerationPhase(policy: policy, data: data, perState: 4, flowSteps: 4, seed: 13)
        while support.completedSteps < support.totalSteps { _ = try support.step() }
        let phase = CriticPhase(critic: critic, data: data, support: support, config: cc, batchSize: 64, seed: 14)
        // The validation signal: data's Monte Carlo returns here are the true values, so Q minus
        // return starts far below 0 (untrained Q) and ends near 0; the TD error ends near 0.
        let before = phase.validate()
        var last: [String: Double] = [:]
        while phase.completedSteps < phase.totalSteps { last = try phase.step() }
        #expect(phase.validationIndices.count == 1000, "every row of a 1000-row dataset is a validation row")
        #expect((before["val_q_minus_return"] ?? 0) < -0.5, "before training: \(before)")
        let gap = last["val_q_minus_return"] ?? .nan, td = last["val_td"] ?? .nan
        #expect(abs(gap) < 0.05 && td < 0.005, "after training: \(last)")
        #expect(abs((last["val_q"] ?? 0) - 0.8190) < 0.05, "mean true value of the chain's rows is 0.8190: \(last)")
        for s in 0..<n {
            var o = [Float](repeating: 0, count: n); o[s] = 1
            let q = critic.minQ(obs: o, actions: [0.5], batch: 1)[0]
            let truth = powf(gamma, Float(n - 1 - s))
            #expect(abs(q - truth) < 0.06, "Q(s\(s)) = \(q), true value \(truth)")
        }
    }

    @Test("returns-to-go restart at terminals, time limits and the end of the file")
    func returnsToGo() {
        let n = 6
        let d = OfflineDataset(
            source: "episodes", observationDim: 1, actionDim: 1, observations: [Float](repeating: 0, count: n),
            actions: [Float](repeating: 0, count: n), rewards: [1, 1, 1, 1, 1, 2], nextObservations: [Float](repeating: 0, count: n),
            terminals: [false, false, false, false, true, false], timeouts: [false, false, true, false, false, false])
        let g = Self.prepare(d).returnsToGo(gamma: 0.5)
        #expect(g == [1.75, 1.5, 1, 1.5, 1, 2], "\(g)")
    }

    @Test("a log line keeps a validation metric's latest value and averages the others over the steps that reported them")
    func logWindow() {
        var w = MetricWindow()
        for step in 1...100 {
            var m: [String: Double] = ["loss": Double(step)]
            if step == 100 { m["val_td"] = 0.5 }
            if step > 50 { m["v_next"] = 2 }
            w.add(m)
        }
        let line = w.take()
        #expect(line == ["loss": 50.5, "val_td": 0.5, "v_next": 2], "\(line)")
        w.add(["val_td": 0.25, "loss": 1])
        w.add(["val_td": 0.125, "loss": 3])
        #expect(w.take() == ["loss": 2, "val_td": 0.125], "a new window, the latest measurement")
    }

    @Test("progress lines show the validation signal first")
    func progressShowsValidationFirst() {
        let line = ProgressReporter.shown(["grad_norm": 1, "loss": 2, "q_mean": 3, "v_next": 4, "val_td": 5, "val_q": 6, "val_q_minus_return": 7])
        #expect(line.hasPrefix("val_q=6 val_q_minus_return=7 val_td=5 grad_norm=1"), "\(line)")
    }

    @Test("a phase restored from its state continues bit for bit")
    func resumeEqualsUninterrupted() throws {
        let data = Self.prepare(Self.bandit(count: 300, seed: 21))
        func build() -> (FlowPolicy, TwinCritic, [TrainingPhase]) {
            var rng = RNG(seed: 22)
            let policy = FlowPolicy(spec: FlowPolicySpec(observationDim: 1, actionDim: 2, hiddenDims: [16]), rng: &rng)
            let critic = TwinCritic(spec: CriticSpec(observationDim: 1, actionDim: 2, hiddenDims: [16]), rng: &rng)
            var cc = TrainingConfig.CriticTraining(); cc.steps = 20; cc.supportSize = 2; cc.supportFlowSteps = 2
            var qc = TrainingConfig.QIPO(); qc.steps = 30; qc.supportSize = 3; qc.renewEvery = 10; qc.supportFlowSteps = 2
            let b = BehaviourFlowPhase(policy: policy, data: data, steps: 20, batchSize: 16, learningRate: 1e-3, seed: 1)
            let sup = SupportGenerationPhase(policy: policy, data: data, perState: 2, flowSteps: 2, chunk: 100, seed: 2)
            let c = CriticPhase(critic: critic, data: data, support: sup, config: cc, batchSize: 16, seed: 3)
            let q = QIPOPhase(policy: policy, critic: critic, data: data, config: qc, batchSize: 8, seed: 4)
            return (policy, critic, [b, sup, c, q])
        }
        func run(_ phases: [TrainingPhase], until total: Int) throws {
            var done = phases.reduce(0) { $0 + $1.completedSteps }
            for p in phases {
                while p.completedSteps < p.totalSteps && done < total { _ = try p.step(); done += 1 }
            }
        }
        let (p1, c1, full) = build()
        try run(full, until: .max)
        let (p2, c2, first) = build()
        try run(first, until: 60)  // stops in the middle of QIPO (20 + 3 + 20 + 17)
        let saved = first.map { $0.stateTensors() }
        let (p3, c3, resumed) = build()
        for (phase, state) in zip(resumed, saved) { try phase.loadState(state) }
        try run(resumed, until: .max)
        _ = p2; _ = c2
        #expect(p3.parameters.map(\.value) == p1.parameters.map(\.value))
        #expect(c3.parameters.map(\.value) == c1.parameters.map(\.value))
    }
}
