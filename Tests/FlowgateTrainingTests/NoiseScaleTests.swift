import FlowgateAlgorithms
import FlowgateCore
import FlowgateModelFormat
import Foundation
import Testing

@testable import FlowgateTraining

/// `sampling.noiseScale`: the flow integrates from `noiseScale · N(0, I)` instead of N(0, I).
struct NoiseScaleTests {
    @Test("one Euler step from scaled noise is x0 · s + v(s, x0 · s, 0), with the generator's own draws")
    func oneStepIsExact() {
        var rng = RNG(seed: 11)
        let policy = FlowPolicy(spec: FlowPolicySpec(observationDim: 3, actionDim: 2, hiddenDims: [16, 16]), rng: &rng)
        let obs: [Float] = [0.3, -1.2, 0.8]
        let scale: Float = 0.4
        let sampler = FlowSampler(policy: policy.replica())
        var rngs = (0..<4).map { RNG(seed: 100 + UInt64($0)) }
        let got = Array(
            UnsafeBufferPointer(
                start: sampler.sample(observations: obs, count: 1, perObservation: 4, steps: 1, rngs: &rngs, clip: false, noiseScale: scale),
                count: 8))
        // The same draws, scaled by hand, through the velocity network directly.
        var x0 = [Float](repeating: 0, count: 8)
        for r in 0..<4 {
            var g = RNG(seed: 100 + UInt64(r))
            x0.withUnsafeMutableBufferPointer { g.fillNormal(UnsafeMutableBufferPointer(rebasing: $0[(2 * r)..<(2 * r + 2)])) }
        }
        x0 = x0.map { $0 * scale }
        let rows: [Float] = (0..<4).flatMap { _ in obs }
        let t = [Float](repeating: 0, count: 4)
        let reference = policy.replica()
        let v = Array(UnsafeBufferPointer(start: reference.velocity(obs: rows, x: x0, t: t, batch: 4), count: 8))
        for i in 0..<8 { #expect(abs(got[i] - (x0[i] + v[i])) < 1e-5, "element \(i)") }
        // Scale 1 is the unscaled sampler, bit for bit.
        var a = (0..<4).map { RNG(seed: 100 + UInt64($0)) }
        var b = a
        let one = Array(UnsafeBufferPointer(start: sampler.sample(observations: obs, count: 1, perObservation: 4, steps: 3, rngs: &a), count: 8))
        let scaledOne = Array(
            UnsafeBufferPointer(start: sampler.sample(observations: obs, count: 1, perObservation: 4, steps: 3, rngs: &b, noiseScale: 1), count: 8))
        #expect(one == scaledOne)
    }

    @Test("the training config's sampling.noiseScale reaches the manifest and the served selector; at 0 every candidate is one action")
    func configToSelector() throws {
        let dir = TrainingRunTests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = TrainingRunTests.tinyConfig(.qipo)
        config.sampling.noiseScale = 0
        let run = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: config)
        _ = try run.run(progress: nil, log: nil, checkpointPath: nil)
        let out = dir.appendingPathComponent("model")
        try ModelDirectory.save(try run.makeModel(gitCommit: "test", datasetSHA256: nil), to: out)
        let loaded = try ModelDirectory.load(at: out)
        #expect(loaded.manifest.sampling.noiseScale == 0)
        let bundle = try PolicyBundle(model: loaded)
        #expect(bundle.defaultSettings.noiseScale == 0)
        let obs: [Float] = [0.1, -0.2, 2, 1, -3, 0.5]
        var settings = bundle.defaultSettings
        settings.steps = 4
        settings.candidates = 8
        let selector = bundle.makeSelector()
        // From noise 0 the 8 candidates are one action, so the choice is the one candidate's.
        let many = selector.act(observations: obs, count: 3, seeds: [1, 2, 3], settings: settings)
        var single = settings
        single.candidates = 1
        let one = selector.act(observations: obs, count: 3, seeds: [7, 8, 9], settings: single)
        for i in 0..<6 { #expect(abs(many.actions[i] - one.actions[i]) < 1e-6, "action element \(i)") }
        // At scale 1 the seeds matter again.
        settings.noiseScale = 1
        let unscaled = selector.act(observations: obs, count: 3, seeds: [1, 2, 3], settings: settings)
        let otherSeeds = selector.act(observations: obs, count: 3, seeds: [7, 8, 9], settings: settings)
        #expect(zip(unscaled.actions, otherSeeds.actions).contains { abs($0 - $1) > 1e-4 })
    }
}
