import Foundation
import Testing
@testable import FlowgateCore
import FlowgateAlgorithms
@testable import FlowgateTraining
import FlowgateModelFormat

/// The train driver end to end: phases → checkpoint → resume → model directory → served actions.
@Suite("TrainingRun")
struct TrainingRunTests {
    /// A tiny 2-D-observation problem: the expert action is tanh-bounded 0.5·s, reward = −|a − 0.5 s|.
    static func dataset(count: Int = 400) -> OfflineDataset {
        var rng = RNG(seed: 1)
        var obs: [Float] = [], next: [Float] = [], act: [Float] = [], rew: [Float] = [], term: [Bool] = [], tout: [Bool] = []
        for i in 0..<count {
            let s = [rng.normal(), rng.normal()]
            let a = s.map { max(-1, min(1, 0.5 * $0 + 0.3 * rng.normal())) }
            obs += s; act += a
            next += s.map { $0 * 0.9 }
            rew.append(-abs(a[0] - 0.5 * s[0]) - abs(a[1] - 0.5 * s[1]))
            term.append(false); tout.append(i % 50 == 49)
        }
        return OfflineDataset(
            source: "toy.npz", observationDim: 2, actionDim: 2, observations: obs, actions: act, rewards: rew,
            nextObservations: next, terminals: term, timeouts: tout)
    }

    static func tinyConfig(_ algorithm: TrainingConfig.Algorithm = .qipo) -> TrainingConfig {
        var c = TrainingConfig()
        c.algorithm = algorithm
        c.batchSize = 32
        c.policy.hiddenDims = [16]
        c.critic.hiddenDims = [16]
        c.behaviour.steps = 30
        c.criticTraining.steps = 20
        c.criticTraining.supportSize = 2
        c.criticTraining.supportFlowSteps = 2
        c.qipo.steps = 20
        c.qipo.supportSize = 3
        c.qipo.renewEvery = 10
        // Distil and straighten have their own tests (ReflowTests); here they would dominate.
        c.distil.steps = 0
        c.straighten.steps = 0
        c.checkpointEvery = 7
        c.logEvery = 5
        return c
    }

    static func tempDir() -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("flowgate-run-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }

    @Test("two compute threads: the same weights every run, bit for bit, and the split is used")
    func computeThreadsDoNotChangeResults() throws {
        // Sizes at which the products are large enough to be split across the two cores.
        var c = Self.tinyConfig()
        c.batchSize = 256
        c.policy.hiddenDims = [128, 128]
        c.critic.hiddenDims = [128, 128]
        c.behaviour.steps = 4
        c.criticTraining.steps = 3
        c.criticTraining.supportSize = 4
        c.qipo.steps = 3
        c.qipo.renewEvery = 2
        func train(threads: Int) throws -> (weights: [[UInt32]], splits: Int) {
            try BLAS.withComputeThreads(threads) {
                let before = SplitGEMM.shared.splits
                let run = try TrainingRun(name: "toy", dataset: Self.dataset(), config: c)
                #expect(try run.run(progress: nil, log: nil, checkpointPath: nil) == .finished)
                let weights = (run.policy.parameters + run.critic.parameters).map { $0.value.map(\.bitPattern) }
                return (weights, SplitGEMM.shared.splits - before)
            }
        }
        let one = try train(threads: 1), two = try train(threads: 2), again = try train(threads: 2)
        #expect(one.splits == 0)
        #expect(two.splits > 0)
        // Which tensors differ (not `==` on the arrays: a failure's diff of them takes minutes).
        let differing = zip(two.weights, again.weights).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        #expect(two.weights.count == again.weights.count && differing.isEmpty, "parameters differing between 2-thread runs: \(differing)")
    }

    @Test("interrupt, checkpoint and resume give the same model as an uninterrupted run")
    func resumeThroughCheckpointFile() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let full = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig())
        #expect(try full.run(progress: nil, log: nil, checkpointPath: nil) == .finished)

        let ckpt = dir.appendingPathComponent("checkpoint.safetensors").path
        let first = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig())
        var polls = 0
        #expect(
            try first.run(progress: nil, log: nil, checkpointPath: ckpt) {
                polls += 1; return polls > 45
            } == .interrupted)
        let resumed = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig())
        try resumed.loadCheckpoint(from: ckpt)
        #expect(resumed.completedSteps == 45)
        let log = try TrainingLog(path: dir.appendingPathComponent("log.jsonl").path)
        #expect(try resumed.run(progress: nil, log: log, checkpointPath: ckpt) == .finished)
        #expect(resumed.policy.parameters.map(\.value) == full.policy.parameters.map(\.value))
        #expect(resumed.critic.parameters.map(\.value) == full.critic.parameters.map(\.value))
        // Leftover temporary files would mean a non-atomic write.
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(names.sorted() == ["checkpoint.safetensors", "log.jsonl"])
        let lines = try String(contentsOfFile: dir.appendingPathComponent("log.jsonl").path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count > 3 && lines.allSatisfy { $0.hasPrefix("{\"phase\":") })
    }

    @Test("a checkpoint from another config is refused with a clear message")
    func checkpointConfigMismatch() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("c.safetensors").path
        let a = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig())
        try a.saveCheckpoint(to: ckpt)
        var other = Self.tinyConfig()
        other.qipo.beta = 7
        let b = try TrainingRun(name: "toy", dataset: Self.dataset(), config: other)
        #expect { try b.loadCheckpoint(from: ckpt) } throws: { "\($0)".contains("different config") }
    }

    @Test("a checkpoint written before a setting existed resumes when everything it records matches")
    func checkpointFromBeforeANewSetting() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("c.safetensors")
        let a = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig())
        try a.saveCheckpoint(to: url.path)
        // Rewrite the checkpoint as an older build wrote it: no `reflow` section in its config.
        func writeWithoutReflow(_ config: TrainingConfig) throws {
            var file = try Safetensors.read(contentsOf: url)
            let run = try TrainingRun(name: "toy", dataset: Self.dataset(), config: config)
            var json = try #require(try JSONSerialization.jsonObject(with: Data(run.configJSON.utf8)) as? [String: Any])
            #expect(json.removeValue(forKey: "reflow") != nil)
            let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
            file.metadata["config"] = String(decoding: data, as: UTF8.self)
            try Safetensors.write(file.tensors, metadata: file.metadata, to: url)
        }
        try writeWithoutReflow(Self.tinyConfig())
        let b = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig())
        try b.loadCheckpoint(from: url.path)
        // A setting the old checkpoint does record must still match.
        var other = Self.tinyConfig()
        other.qipo.beta = 7
        try writeWithoutReflow(other)
        let c = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig())
        #expect { try c.loadCheckpoint(from: url.path) } throws: { "\($0)".contains("qipo.beta") }
    }

    @Test("--restart-from qipo keeps behaviour and critic, accepts a new QIPO config, refuses a new critic config")
    func restartFromPhase() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("c.safetensors").path
        let first = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig())
        var polls = 0
        _ = try first.run(progress: nil, log: nil, checkpointPath: ckpt) {
            polls += 1; return polls > 60
        }
        let criticAfter = first.critic.parameters.map(\.value)
        let behaviourEnd = first.phases.first { $0.name == "behaviour" }!.stateTensors()
        var retuned = Self.tinyConfig()
        retuned.qipo.beta = 10
        let second = try TrainingRun(name: "toy", dataset: Self.dataset(), config: retuned)
        try second.loadCheckpoint(from: ckpt, restartFrom: "qipo")
        let qipo = second.phases.first { $0.name == "qipo" }!
        #expect(qipo.completedSteps == 0)
        #expect(second.critic.parameters.map(\.value) == criticAfter)
        // QIPO restarts from the behaviour flow as the behaviour phase left it, not from the
        // partly improved policy the interrupted run was training.
        for p in second.policy.parameters {
            #expect(p.value == behaviourEnd["policy." + p.name]?.scalars, "\(p.name)")
        }
        #expect(second.policy.parameters.map(\.value) != first.policy.parameters.map(\.value))
        #expect(try second.run(progress: nil, log: nil, checkpointPath: nil) == .finished)
        var otherCritic = Self.tinyConfig()
        otherCritic.criticTraining.gamma = 0.5
        let third = try TrainingRun(name: "toy", dataset: Self.dataset(), config: otherCritic)
        #expect { try third.loadCheckpoint(from: ckpt, restartFrom: "qipo") } throws: { "\($0)".contains("different config") }
    }

    @Test("actions outside the bounds are rejected naming the row")
    func actionBounds() throws {
        var d = Self.dataset()
        d.actions[7] = 1.5
        #expect { _ = try TrainingRun(name: "toy", dataset: d, config: Self.tinyConfig()) } throws: { "\($0)".contains("actions[3][1]") }
    }

    @Test("trained models of every algorithm save, load and serve actions inside the bounds", arguments: TrainingConfig.Algorithm.allCases)
    func exportAndServe(_ algorithm: TrainingConfig.Algorithm) throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig(algorithm))
        _ = try run.run(progress: nil, log: nil, checkpointPath: nil)
        let out = dir.appendingPathComponent("model")
        try ModelDirectory.save(try run.makeModel(gitCommit: "test", datasetSHA256: nil), to: out)
        let loaded = try ModelDirectory.load(at: out)
        #expect(loaded.manifest.kind == ["qipo": "qipo-flow-policy", "bc-flow": "bc-flow", "bc-regressor": "bc-regressor"][algorithm.rawValue])
        #expect((loaded.networks["critic"] != nil) == (algorithm == .qipo))
        let bundle = try PolicyBundle(model: loaded)
        let selector = bundle.makeSelector()
        let obs: [Float] = [0.1, -0.2, 2, 1, -3, 0.5]
        let r = selector.act(observations: obs, count: 3, seeds: [1, 2, 3], settings: bundle.defaultSettings)
        #expect(r.actions.count == 6 && r.actions.allSatisfy { $0 >= -1 && $0 <= 1 })
        #expect(r.q.allSatisfy { $0.isFinite } == (algorithm == .qipo))
        // Same seed, same action; a batch equals its rows served one by one.
        let again = selector.act(observations: Array(obs[2..<4]), count: 1, seeds: [2], settings: bundle.defaultSettings)
        for j in 0..<2 { #expect(abs(again.actions[j] - r.actions[2 + j]) < 1e-5) }
    }

    @Test("a batch larger than one pass is selected in passes: each row equals that row served alone")
    func batchInPasses() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try TrainingRun(name: "toy", dataset: Self.dataset(), config: Self.tinyConfig(.qipo))
        _ = try run.run(progress: nil, log: nil, checkpointPath: nil)
        let out = dir.appendingPathComponent("model")
        try ModelDirectory.save(try run.makeModel(gitCommit: "test", datasetSHA256: nil), to: out)
        let bundle = try PolicyBundle(model: try ModelDirectory.load(at: out))
        var settings = bundle.defaultSettings
        settings.candidates = 16
        let perPass = ActionSelector.candidateRowsPerPass / settings.candidates
        let count = 2 * perPass + 3  // three passes, the last one partial
        var rng = RNG(seed: 4)
        let obs = (0..<(count * 2)).map { _ in rng.normal() }
        let seeds = (0..<count).map { UInt64(100 + $0) }
        let big = bundle.makeSelector().act(observations: obs, count: count, seeds: seeds, settings: settings)
        #expect(big.actions.count == count * 2 && big.q.count == count)
        let alone = bundle.makeSelector()
        for i in [0, perPass - 1, perPass, 2 * perPass + 2] {
            let r = alone.act(observations: Array(obs[(2 * i)..<(2 * i + 2)]), count: 1, seeds: [seeds[i]], settings: settings)
            for j in 0..<2 { #expect(abs(r.actions[j] - big.actions[2 * i + j]) < 1e-5, "row \(i)") }
            #expect(abs(r.q[0] - big.q[i]) < 1e-4 * max(1, abs(r.q[0])), "row \(i)")
        }
    }

    @Test("a LayerNorm critic (the inverted-double-pendulum fix) exports, loads and scores exactly as trained")
    func layerNormCriticRoundTrip() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = Self.tinyConfig(.qipo)
        config.critic.layerNorm = true
        let run = try TrainingRun(name: "toy", dataset: Self.dataset(), config: config)
        _ = try run.run(progress: nil, log: nil, checkpointPath: nil)
        let out = dir.appendingPathComponent("model")
        try ModelDirectory.save(try run.makeModel(gitCommit: "test", datasetSHA256: nil), to: out)
        let bundle = try PolicyBundle(model: try ModelDirectory.load(at: out))
        let loaded = try #require(bundle.critic)
        #expect(loaded.q1.spec.layerNorm && loaded.q2.spec.layerNorm)
        let obs: [Float] = [0.3, -1, 0.2, 0.7, 1.5, -0.4]  // 3 rows of the 2-D toy observation
        let act: [Float] = [0.5, -0.5, -0.9, 0.1, 0.0, 1.0]
        let trained = Array(UnsafeBufferPointer(start: run.critic.minQ(obs: obs, actions: act, batch: 3), count: 3))
        let served = Array(UnsafeBufferPointer(start: loaded.minQ(obs: obs, actions: act, batch: 3), count: 3))
        #expect(trained == served)
        // LayerNorm parameters were trained, not left at their initial values.
        #expect(run.critic.parameters.namedTensors().contains { $0.key.contains("ln") && $0.value.scalars.contains { $0 != 1 && $0 != 0 } })
    }
}
