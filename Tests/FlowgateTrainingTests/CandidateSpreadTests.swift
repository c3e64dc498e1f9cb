import FlowgateAlgorithms
import FlowgateCore
import FlowgateModelFormat
import Foundation
import Testing

@testable import FlowgateTraining

/// `sampling.candidateSpread`: candidates 1…M−1 are the flow's samples plus N(0, σ²) per action
/// dimension; candidate 0 is the flow's sample.
struct CandidateSpreadTests {
    /// A tiny trained QIPO model with `candidateSpread` in its config, loaded as the server loads it.
    static func bundle(spread: Float) throws -> PolicyBundle {
        let dir = TrainingRunTests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = TrainingRunTests.tinyConfig(.qipo)
        config.sampling.candidateSpread = spread
        let run = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: config)
        _ = try run.run(progress: nil, log: nil, checkpointPath: nil)
        let out = dir.appendingPathComponent("model")
        try ModelDirectory.save(try run.makeModel(gitCommit: "test", datasetSHA256: nil), to: out)
        let loaded = try ModelDirectory.load(at: out)
        #expect(loaded.manifest.sampling.candidateSpread == spread)
        return try PolicyBundle(model: loaded)
    }

    static let obs: [Float] = [0.1, -0.2, 2, 1, -3, 0.5, 0.7, 0.7]
    static let seeds: [UInt64] = [1, 2, 3, 4]

    @Test("the config's candidateSpread reaches the served selector; candidate 0 stays the flow's sample, so the choice is never worse than it")
    func spreadReachesSelectorAndKeepsCandidateZero() throws {
        let bundle = try Self.bundle(spread: 0.2)
        #expect(bundle.defaultSettings.candidateSpread == 0.2)
        let selector = bundle.makeSelector()
        var settings = bundle.defaultSettings
        settings.steps = 4
        settings.candidates = 8
        let chosen = selector.act(observations: Self.obs, count: 4, seeds: Self.seeds, settings: settings)
        var alone = settings
        alone.candidates = 1
        let sample = selector.act(observations: Self.obs, count: 4, seeds: Self.seeds, settings: alone)
        // One candidate: no perturbation at all, whatever the spread.
        var unspread = alone
        unspread.candidateSpread = 0
        #expect(selector.act(observations: Self.obs, count: 4, seeds: Self.seeds, settings: unspread).actions == sample.actions)
        for i in 0..<4 { #expect(chosen.q[i] >= sample.q[i], "row \(i): the argmax includes candidate 0") }
        // Another candidate wins somewhere.
        #expect(zip(chosen.actions, sample.actions).contains { abs($0 - $1) > 1e-4 })
        #expect(chosen.actions.allSatisfy { $0 >= -1 && $0 <= 1 })
        // Without the spread the 8 candidates are the flow's samples only.
        settings.candidateSpread = 0
        let plain = selector.act(observations: Self.obs, count: 4, seeds: Self.seeds, settings: settings)
        #expect(zip(plain.actions, chosen.actions).contains { abs($0 - $1) > 1e-4 })
    }

    @Test("perturbations depend only on the row's seed: a batch equals its rows alone, and two selectors sharing the candidates equal one")
    func perturbationIsPerRow() throws {
        let bundle = try Self.bundle(spread: 0.2)
        let selector = bundle.makeSelector()
        var settings = bundle.defaultSettings
        settings.candidates = 8
        let batch = selector.act(observations: Self.obs, count: 4, seeds: Self.seeds, settings: settings)
        for i in 0..<4 {
            let r = selector.act(observations: Array(Self.obs[(2 * i)..<(2 * i + 2)]) as [Float], count: 1, seeds: [Self.seeds[i]], settings: settings)
            for j in 0..<2 { #expect(abs(r.actions[j] - batch.actions[2 * i + j]) < 1e-5, "row \(i)") }
        }
        // The server's split: one selector computes candidates 0..<3, another 3..<8.
        let other = bundle.makeSelector()
        let job = selector.newJob()
        selector.beginSplit(job, observations: Self.obs, count: 4, seeds: Self.seeds, settings: settings)
        selector.computeCandidates(job, range: 0..<3)
        other.computeCandidates(job, range: 3..<8)
        selector.joinCandidates(job)
        let split = selector.finishSplit(job)
        for i in 0..<8 { #expect(abs(split.actions[i] - batch.actions[i]) < 1e-5, "element \(i)") }
    }
}
