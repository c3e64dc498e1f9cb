import Foundation
import Testing
import FlowgateCore
import FlowgateAlgorithms
@testable import FlowgateTraining
import FlowgateModelFormat

/// The reflow phase (straight couplings of a frozen teacher) and `flowgate refine`.
@Suite("Reflow")
struct ReflowTests {
    /// `c` with a reflow phase: by default a tiny one (25 steps on a pool of 64 couplings) that
    /// refreshes and validates a few times.
    static func withReflow(
        _ c: TrainingConfig, steps: Int = 25, teacherSteps: Int = 4, pool: (size: Int, chunk: Int, refreshEvery: Int) = (64, 16, 5),
        validation: (states: Int, every: Int) = (20, 7)
    ) -> TrainingConfig {
        var c = c
        c.reflow.steps = steps
        c.reflow.teacherSteps = teacherSteps
        (c.reflow.poolSize, c.reflow.chunkSize, c.reflow.refreshEvery) = pool
        (c.reflow.validationStates, c.reflow.validateEvery) = validation
        return c
    }

    /// Log lines of one phase without the wall-clock time.
    static func lines(_ path: String, phase: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
            .filter { $0.contains("\"phase\":\"\(phase)\"") }
            .map { $0.replacingOccurrences(of: #""time":[0-9.]+,"#, with: "", options: .regularExpression) }
    }

    @Test(
        "interrupted inside reflow, checkpoint and resume give the same weights and the same log as an uninterrupted run (teacher's own sample, critic's best of 4)",
        arguments: [0, 4])
    func resumeInsideReflow(candidates: Int) throws {
        let dir = TrainingRunTests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = Self.withReflow(TrainingRunTests.tinyConfig())
        config.reflow.candidates = candidates
        // The interruption (step 15 of 25) falls inside the learning-rate anneal (steps 10–24).
        config.reflow.annealShare = 0.6
        let fullLog = dir.appendingPathComponent("full.jsonl").path
        let full = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: config)
        #expect(full.phases.map(\.name).last == "reflow")
        #expect(try full.run(progress: nil, log: try TrainingLog(path: fullLog), checkpointPath: nil) == .finished)

        let ckpt = dir.appendingPathComponent("checkpoint.safetensors").path
        let partLog = dir.appendingPathComponent("part.jsonl").path
        let first = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: config)
        // Inside reflow (its step 15 of 25), after refreshes and validations, on a log boundary (the
        // driver's log window restarts on resume).
        let stopAt = first.totalSteps - 10
        var polls = 0
        #expect(
            try first.run(progress: nil, log: try TrainingLog(path: partLog), checkpointPath: ckpt) {
                polls += 1; return polls > stopAt
            } == .interrupted)
        let resumed = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: config)
        try resumed.loadCheckpoint(from: ckpt)
        #expect(resumed.completedSteps == stopAt)
        #expect(try resumed.run(progress: nil, log: try TrainingLog(path: partLog), checkpointPath: ckpt) == .finished)
        #expect(resumed.policy.parameters.map(\.value) == full.policy.parameters.map(\.value))
        let expected = try Self.lines(fullLog, phase: "reflow")
        #expect(expected.count >= 4 && expected.allSatisfy { $0.contains("val_gap_k1_k8") && $0.contains("val_mse_k1") })
        #expect(try Self.lines(partLog, phase: "reflow") == expected)
    }

    @Test("--restart-from reflow starts again from the policy QIPO left, with a new reflow config")
    func restartFromReflow() throws {
        let dir = TrainingRunTests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("checkpoint.safetensors").path
        let first = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: Self.withReflow(TrainingRunTests.tinyConfig()))
        #expect(try first.run(progress: nil, log: nil, checkpointPath: ckpt) == .finished)
        let noReflow = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: TrainingRunTests.tinyConfig())
        #expect(try noReflow.run(progress: nil, log: nil, checkpointPath: nil) == .finished)
        #expect(first.policy.parameters.map(\.value) != noReflow.policy.parameters.map(\.value))

        var retuned = Self.withReflow(TrainingRunTests.tinyConfig())
        retuned.reflow.learningRate = 3e-4
        let second = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: retuned)
        try second.loadCheckpoint(from: ckpt, restartFrom: "reflow")
        #expect(second.policy.parameters.map(\.value) == noReflow.policy.parameters.map(\.value))
        #expect(second.phases.last?.completedSteps == 0)
    }

    /// Two-mode behaviour (a = ±0.7 by a coin): the behaviour flow's trajectories bend towards the
    /// modes, so one Euler step lands between them; after reflow one step lands where many did.
    static func bimodal(count: Int = 600) -> OfflineDataset {
        var rng = RNG(seed: 7)
        var obs: [Float] = [], act: [Float] = [], rew: [Float] = [], term: [Bool] = [], tout: [Bool] = []
        for i in 0..<count {
            let s = rng.normal()
            let sign: Float = rng.uniform() < 0.5 ? -1 : 1
            obs.append(s)
            act += [sign * 0.7 + 0.05 * rng.normal(), 0.3 * s]
            rew.append(0); term.append(false); tout.append(i % 50 == 49)
        }
        return OfflineDataset(
            source: "bimodal.npz", observationDim: 1, actionDim: 2, observations: obs, actions: act, rewards: rew,
            nextObservations: obs, terminals: term, timeouts: tout)
    }

    /// K-step samples for the first 256 states, from fixed noise (row i seeded `seed + i`).
    static func samples(_ policy: FlowPolicy, data: PreparedData, steps: Int, seed: UInt64) -> [Float] {
        let n = 256, od = data.observationDim, ad = data.actionDim
        let obs = Array(data.observations[0..<(n * od)])
        var rngs = (0..<n).map { RNG(seed: seed + UInt64($0)) }
        let sampler = FlowSampler(policy: policy)
        // Copied out while the sampler (which owns the buffer) is alive.
        return obs.withUnsafeBufferPointer {
            Array(UnsafeBufferPointer(start: sampler.sample(observations: $0.baseAddress!, count: n, perObservation: 1, steps: steps, rngs: &rngs), count: n * ad))
        }
    }

    /// Mean distance of the first action coordinate's magnitude from the modes (±0.7) at K = 1.
    static func distanceFromModes(_ policy: FlowPolicy, data: PreparedData) -> Double {
        let a = samples(policy, data: data, steps: 1, seed: 900), ad = data.actionDim
        return (0..<256).reduce(0) { $0 + Double(abs(abs(a[$1 * ad]) - 0.7)) } / 256
    }

    /// The bimodal toy: a behaviour flow (1000 steps) and the reflow settings both straightening tests use.
    static func bimodalConfig(reflowSteps: Int) -> TrainingConfig {
        var c = TrainingRunTests.tinyConfig(.bcFlow)
        c.policy.hiddenDims = [64, 64]
        c.batchSize = 128
        c.behaviour.steps = 1000
        c.behaviour.learningRate = 1e-3
        c = Self.withReflow(c, steps: reflowSteps, teacherSteps: 16, pool: (2048, 512, 100), validation: (200, 1000))
        c.reflow.learningRate = 1e-3
        return c
    }

    @Test("reflow makes one Euler step land where many did: the K=1-vs-K=8 gap shrinks 4x and K=1 reaches the modes")
    func reflowStraightens() throws {
        let run = try TrainingRun(name: "bimodal", dataset: Self.bimodal(), config: Self.bimodalConfig(reflowSteps: 1000))
        let behaviour = run.phases[0]
        while behaviour.completedSteps < behaviour.totalSteps { _ = try behaviour.step() }
        let reflow = try #require(run.phases.last as? ReflowPhase)
        let before = reflow.validate(), modesBefore = Self.distanceFromModes(run.policy, data: run.data)
        while reflow.completedSteps < reflow.totalSteps { _ = try reflow.step() }
        let after = reflow.validate(), modesAfter = Self.distanceFromModes(run.policy, data: run.data)
        let gapBefore = try #require(before["val_gap_k1_k8"]), gapAfter = try #require(after["val_gap_k1_k8"])
        // The behaviour flow is curved to begin with, or the test would prove nothing.
        #expect(gapBefore > 0.02)
        #expect(gapAfter < gapBefore / 4)
        // One step now lands near a mode, not between them (a curved flow's one step averages them).
        #expect(modesAfter < modesBefore * 0.6)
    }

    /// A twin critic over (s, a0, a1) with Q1 = Q2 = a0 + 2: it prefers the larger first action coordinate.
    static func preferPositiveFirstAction() throws -> TwinCritic {
        let spec = CriticSpec(observationDim: 1, actionDim: 2, hiddenDims: [4], activation: .relu)
        var tensors: [String: Tensor] = [:]
        for q in ["q1", "q2"] {
            tensors["\(q).0.weight"] = Tensor(shape: [4, 3], scalars: [0, 1, 0] + [Float](repeating: 0, count: 9))
            tensors["\(q).0.bias"] = Tensor(shape: [4], scalars: [2, 0, 0, 0])
            tensors["\(q).1.weight"] = Tensor(shape: [1, 4], scalars: [1, 0, 0, 0])
            tensors["\(q).1.bias"] = Tensor(shape: [1], scalars: [0])
        }
        return try TwinCritic(spec: spec, tensors: tensors)
    }

    /// Share of K-step samples (fixed noise, 256 states) whose first action coordinate is above 0.5.
    static func shareOnPositiveMode(_ policy: FlowPolicy, data: PreparedData, steps: Int) -> Double {
        let a = samples(policy, data: data, steps: steps, seed: 500), ad = data.actionDim
        return Double((0..<256).filter { a[$0 * ad] > 0.5 }.count) / 256
    }

    /// The bimodal config (600 reflow steps) and a run whose behaviour flow has finished training.
    static func bimodalBehaviourTrained() throws -> (TrainingConfig, TrainingRun) {
        let c = bimodalConfig(reflowSteps: 600)
        let run = try TrainingRun(name: "bimodal", dataset: bimodal(), config: c)
        let behaviour = run.phases[0]
        while behaviour.completedSteps < behaviour.totalSteps { _ = try behaviour.step() }
        return (c, run)
    }

    @Test("reflow onto the critic's best of M: one step from any noise lands on the mode the critic prefers")
    func reflowOntoSelected() throws {
        let (c, run) = try Self.bimodalBehaviourTrained()
        // The run's own reflow phase has no critic (a bc-flow run); this one gets a hand-made one.
        var r = c.reflow
        r.candidates = 8
        let reflow = try ReflowPhase(policy: run.policy, critic: try Self.preferPositiveFirstAction(), data: run.data, config: r, batchSize: 128, seed: 11)
        // Most of the behaviour flow's samples are not above 0.5 on the preferred mode, or the test would prove nothing.
        let before = Self.shareOnPositiveMode(run.policy, data: run.data, steps: 8)
        #expect(before < 0.5)
        while reflow.completedSteps < reflow.totalSteps { _ = try reflow.step() }
        #expect(Self.shareOnPositiveMode(run.policy, data: run.data, steps: 1) > 0.97)
        // Fresh noise coupled to a chosen endpoint is an independent coupling, not a straight one:
        // many steps follow a curved flow and land on the preferred mode less often (0.87 measured).
        #expect(Self.shareOnPositiveMode(run.policy, data: run.data, steps: 8) > 0.75)
    }

    /// `c` with small distil and straighten phases (the recipe's order and pool mechanics, at toy size).
    static func withFinish(_ c: TrainingConfig, distil: Int = 6, straighten: Int = 5) -> TrainingConfig {
        var c = c
        for (path, steps) in [(\TrainingConfig.distil, distil), (\TrainingConfig.straighten, straighten)] {
            c[keyPath: path].steps = steps
            (c[keyPath: path].poolSize, c[keyPath: path].chunkSize, c[keyPath: path].refreshEvery) = (64, 16, 3)
            (c[keyPath: path].validationStates, c[keyPath: path].validateEvery) = (20, 4)
        }
        return c
    }

    @Test("the default recipe ends with distil (the critic's best of 16 one-step samples) then straighten; bc-flow has neither; older configs ran neither")
    func defaultRecipeOrder() throws {
        let d = TrainingConfig()
        #expect(d.distil.steps > 0 && d.distil.teacherSteps == 1 && d.distil.candidates == 16)
        #expect(d.straighten.steps > 0 && d.straighten.teacherSteps == 8 && d.straighten.candidates == 0)
        #expect(d.reflow.steps == 0)
        #expect(d.distil.annealShare == 0.5 && d.straighten.annealShare == 0.5 && d.reflow.annealShare == 0)
        var c = TrainingRunTests.tinyConfig()
        (c.distil.steps, c.straighten.steps) = (d.distil.steps, d.straighten.steps)
        let run = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c)
        #expect(run.phases.map(\.name) == ["behaviour", "critic-support", "critic", "qipo", "distil", "straighten"])
        c.algorithm = .bcFlow
        #expect(try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c).phases.map(\.name) == ["behaviour"])
        // A config recorded before the two phases existed (no keys) ran neither; one that has them keeps them.
        let old = try TrainingConfig.recorded(json: Data(#"{"qipo": {"steps": 7}}"#.utf8))
        #expect(old.distil.steps == 0 && old.straighten.steps == 0 && old.qipo.steps == 7)
        // One recorded before the anneal existed ran its phases at a constant rate.
        let constant = try TrainingConfig.recorded(json: Data(#"{"distil": {"steps": 8000}, "straighten": {"steps": 8000}}"#.utf8))
        #expect(constant.distil.steps == 8000 && constant.distil.annealShare == 0 && constant.straighten.annealShare == 0)
        let encoded = try JSONEncoder().encode(TrainingConfig())
        #expect(try TrainingConfig.recorded(json: encoded) == TrainingConfig())
    }

    @Test("a checkpoint written before distil existed restarts from distil, from the policy QIPO left")
    func restartIntoDistil() throws {
        let dir = TrainingRunTests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("checkpoint.safetensors").path
        let first = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: TrainingRunTests.tinyConfig())
        #expect(try first.run(progress: nil, log: nil, checkpointPath: ckpt) == .finished)
        let qipoPolicy = first.policy.parameters.map(\.value)
        let second = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: Self.withFinish(TrainingRunTests.tinyConfig()))
        // Without --restart-from the phases differ and the error says so.
        #expect { try second.loadCheckpoint(from: ckpt) } throws: { "\($0)".contains("distil") }
        try second.loadCheckpoint(from: ckpt, restartFrom: "distil")
        #expect(second.policy.parameters.map(\.value) == qipoPolicy)
        #expect(try second.run(progress: nil, log: nil, checkpointPath: ckpt) == .finished)
        #expect(second.phases.suffix(2).map(\.completedSteps) == [6, 5])
        #expect(second.policy.parameters.map(\.value) != qipoPolicy)

        // Restarting straighten starts from distil's result, not from where straighten left the policy.
        let third = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: Self.withFinish(TrainingRunTests.tinyConfig()))
        try third.loadCheckpoint(from: ckpt, restartFrom: "straighten")
        #expect((third.policy.parameters.map(\.value) != second.policy.parameters.map(\.value)) == true)
        #expect((third.policy.parameters.map(\.value) != qipoPolicy) == true)
        #expect(third.phases.last?.completedSteps == 0)
    }

    @Test("distil then straighten: one step and eight land on the mode the critic prefers")
    func distilThenStraighten() throws {
        let (c, run) = try Self.bimodalBehaviourTrained()
        let critic = try Self.preferPositiveFirstAction()
        var distil = c.reflow
        distil.candidates = 8
        var straighten = c.reflow
        straighten.steps = 400
        let phases = [
            try ReflowPhase(name: "distil", policy: run.policy, critic: critic, data: run.data, config: distil, batchSize: 128, seed: 11),
            try ReflowPhase(name: "straighten", policy: run.policy, critic: critic, data: run.data, config: straighten, batchSize: 128, seed: 12),
        ]
        #expect(Self.shareOnPositiveMode(run.policy, data: run.data, steps: 8) < 0.5)
        func gapK1K8() -> Double {
            let a = Self.samples(run.policy, data: run.data, steps: 1, seed: 900), b = Self.samples(run.policy, data: run.data, steps: 8, seed: 900)
            return zip(a, b).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(a.count)
        }
        while phases[0].completedSteps < phases[0].totalSteps { _ = try phases[0].step() }
        // Distilled onto the chosen endpoints with fresh noise, the flow is curved (see reflowOntoSelected).
        let curved = gapK1K8()
        while phases[1].completedSteps < phases[1].totalSteps { _ = try phases[1].step() }
        #expect(gapK1K8() < curved / 2)
        #expect(Self.shareOnPositiveMode(run.policy, data: run.data, steps: 1) > 0.75)
        #expect(Self.shareOnPositiveMode(run.policy, data: run.data, steps: 8) > 0.75)
    }

    @Test("annealShare: the rate is constant until the last share of the steps, then falls linearly to rate / n; 0 keeps it constant")
    func annealSchedule() {
        var r = TrainingConfig.Reflow()
        r.learningRate = 1
        #expect((0..<10).map { r.learningRate(step: $0, of: 10) } == [Float](repeating: 1, count: 10))
        r.annealShare = 0.5
        #expect((0..<10).map { r.learningRate(step: $0, of: 10) } == [1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
        r.annealShare = 1
        #expect(r.learningRate(step: 0, of: 4) == 1 && r.learningRate(step: 3, of: 4) == 0.25)
    }

    @Test("a reflow phase with annealShare ends at the annealed rate; without it at the configured rate")
    func reflowAnneals() throws {
        for share: Float in [0, 1] {
            var config = Self.withReflow(TrainingRunTests.tinyConfig())
            config.reflow.annealShare = share
            let run = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: config)
            #expect(try run.run(progress: nil, log: nil, checkpointPath: nil) == .finished)
            let reflow = try #require(run.phases.last as? ReflowPhase)
            let expected = share == 0 ? config.reflow.learningRate : config.reflow.learningRate / Float(config.reflow.steps)
            #expect(reflow.skeleton.optimizer.learningRate == expected)
        }
    }

    @Test("reflow config errors name the field")
    func configErrors() throws {
        var c = Self.withReflow(TrainingRunTests.tinyConfig())
        c.reflow.poolSize = 60
        #expect { try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c) } throws: { "\($0)".contains("reflow.poolSize") }
        c = Self.withReflow(TrainingRunTests.tinyConfig())
        c.reflow.validationStates = -1
        #expect { try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c) } throws: { "\($0)".contains("reflow.validationStates") }
        // The distil phase's errors name its own section.
        c = TrainingRunTests.tinyConfig()
        c.distil.steps = 5
        c.distil.candidates = 1
        #expect { try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c) } throws: { "\($0)".contains("distil.candidates") }
        c = TrainingRunTests.tinyConfig()
        c.straighten.steps = 5
        c.straighten.annealShare = 1.5
        #expect { try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c) } throws: { "\($0)".contains("straighten.annealShare") }
        c = Self.withReflow(TrainingRunTests.tinyConfig())
        c.reflow.teacherSteps = 0
        #expect { try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c) } throws: { "\($0)".contains("reflow.teacherSteps") }
        c = Self.withReflow(TrainingRunTests.tinyConfig())
        c.reflow.candidates = 1
        #expect { try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c) } throws: { "\($0)".contains("reflow.candidates") }
        // Choosing between the teacher's samples needs a critic; a behaviour-cloning run has none.
        c = Self.withReflow(TrainingRunTests.tinyConfig(.bcFlow))
        c.reflow.candidates = 4
        #expect { try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: c) } throws: {
            "\($0)".contains("reflow.candidates") && "\($0)".contains("critic")
        }
    }

    @Test("refine --distil on a model trained without distil: today's default phases, and a config that sets one field keeps the others")
    func refineDistilOverrides() throws {
        let dir = TrainingRunTests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let trained = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: TrainingRunTests.tinyConfig())
        _ = try trained.run(progress: nil, log: nil, checkpointPath: nil)
        let src = dir.appendingPathComponent("src")
        try ModelDirectory.save(try trained.makeModel(gitCommit: "test", datasetSHA256: nil), to: src)
        let refinement = try ReflowRefinement(modelPath: src.path)
        #expect(refinement.trainedConfig.distil.steps == 0 && refinement.trainedConfig.straighten.steps == 0)
        let plain = try refinement.distilConfig()
        #expect(plain.distil == .distilDefault && plain.straighten == .straightenDefault)
        #expect(plain.qipo.steps == 0 && plain.criticTraining.steps == 0 && plain.reflow.steps == 0)
        // What `refine --distil --config F` does with F = {"distil": {"learningRate": 0.0001}}.
        let overridden = try refinement.distilBase.merging(json: Data(#"{"distil": {"learningRate": 0.0001}}"#.utf8))
        let cfg = try refinement.distilConfig(overrides: overridden)
        var expected = TrainingConfig.Reflow.distilDefault
        expected.learningRate = 0.0001
        #expect(cfg.distil == expected && cfg.straighten == .straightenDefault)
        var none = refinement.distilBase
        none.distil.steps = 0
        none.straighten.steps = 0
        #expect { try refinement.distilConfig(overrides: none) } throws: { "\($0)".contains("nothing to train") }
    }

    @Test("refine writes a new model directory: new policy, same critic and extra manifest sections, provenance with reflow")
    func refineExistingModel() throws {
        let dir = TrainingRunTests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = dir.appendingPathComponent("src")
        let trained = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: TrainingRunTests.tinyConfig())
        _ = try trained.run(progress: nil, log: nil, checkpointPath: nil)
        try ModelDirectory.save(try trained.makeModel(gitCommit: "test", datasetSHA256: nil), to: src)
        // A section the Manifest type does not model (as the failure-risk model is) must survive.
        let manifestURL = src.appendingPathComponent(Manifest.fileName)
        var m = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        m["risk"] = ["horizon": 20, "note": "kept"]
        try JSONSerialization.data(withJSONObject: m).write(to: manifestURL)
        try Data("{\"phase\":\"qipo\"}\n".utf8).write(to: src.appendingPathComponent("training-log.jsonl"))

        let refinement = try ReflowRefinement(modelPath: src.path)
        #expect(refinement.trainedConfig.policy.hiddenDims == [16])
        let config = try refinement.config(reflow: Self.withReflow(TrainingConfig()).reflow)
        let run = try refinement.makeRun(dataset: TrainingRunTests.dataset(), config: config)
        #expect(run.phases.map(\.name) == ["reflow"])
        #expect(run.policy.parameters.map(\.value) == trained.policy.parameters.map(\.value))
        // The model's critic, which chooses the teacher's best candidate when reflow.candidates ≥ 2.
        #expect(run.critic.parameters.map(\.value) == trained.critic.parameters.map(\.value))
        let log = dir.appendingPathComponent("refine.jsonl").path
        #expect(try run.run(progress: nil, log: try TrainingLog(path: log), checkpointPath: nil) == .finished)
        let out = dir.appendingPathComponent("refined")
        try refinement.write(try refinement.refinedModel(from: run, gitCommit: "abc"), to: out.path, trainingLog: log)

        let loaded = try ModelDirectory.load(at: out)
        let original = try ModelDirectory.load(at: src)
        #expect(loaded.networks[CriticSpec.role] == original.networks[CriticSpec.role])
        #expect(loaded.networks[FlowPolicySpec.role] != original.networks[FlowPolicySpec.role])
        #expect(loaded.networks[FlowPolicySpec.role] == run.policy.namedTensors())
        #expect(loaded.manifest.provenance.trainingSteps["reflow"] == 25)
        #expect(loaded.manifest.provenance.trainingSteps["qipo"] == 20)
        let recorded = try TrainingConfig().merging(json: Data((loaded.manifest.provenance.config ?? "").utf8))
        #expect(recorded.reflow.steps == 25 && recorded.qipo.steps == 20 && recorded.behaviour.steps == 30)
        let outManifest = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(Manifest.fileName))) as! [String: Any]
        #expect((outManifest["risk"] as? [String: Any])?["note"] as? String == "kept")
        let outLog = try String(contentsOfFile: out.appendingPathComponent("training-log.jsonl").path, encoding: .utf8)
        #expect(outLog.hasPrefix("{\"phase\":\"qipo\"}\n") && outLog.contains("\"phase\":\"reflow\""))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).allSatisfy { !AtomicFile.isTemporaryName($0) })

        // An existing directory is never replaced; another dataset is refused.
        #expect { try refinement.write(try refinement.refinedModel(from: run, gitCommit: "abc"), to: out.path, trainingLog: log) } throws: {
            "\($0)".contains("already exists")
        }
        #expect { try refinement.makeRun(dataset: TrainingRunTests.dataset(count: 200), config: config) } throws: {
            "\($0)".contains("is not the dataset")
        }
        #expect { try refinement.makeRun(dataset: Self.bimodal(), config: config) } throws: { "\($0)".contains("is not the dataset") }
    }
}
