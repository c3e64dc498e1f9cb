import FlowgateCommon
import FlowgateProtocol
import FlowgateServer
import Foundation

/// A deterministic toy model for smoke tests and client interop tests (`flowgate serve --demo`).
/// NOT a policy: its actions mean nothing.
///
/// Name `demo`, obs_dim 4, act_dim 2, actions in [-1, 1]:
/// - action_j = tanh(0.1 · Σ_k (j+1)(k+1) · obs_k + u_j / steps), with u_j uniform in [-0.5, 0.5]
///   from SplitMix64 seeded with the observation's seed (so equal seeds give equal actions);
/// - energy = Σ obs_k², threshold 4, reliable = energy ≤ 4, confidence = exp(-energy / 4);
/// - q = -Σ action_j².
public final class DemoModel: ServableModel {
    public let modelDescription: ModelDescription

    public init() {
        modelDescription = ModelDescription(
            name: "demo", version: "demo-1", observationDim: 4, actionDim: 2, actionLow: [-1, -1],
            actionHigh: [1, 1], defaults: SamplingSettings(steps: 4, candidates: 8, samples: 4),
            limits: SamplingLimits(maxSteps: 64, maxCandidates: 256, maxSamples: 64, maxBatch: 1024),
            threshold: 4, calibrationQuantile: 0.95,
            provenance: ["kind": "demo", "note": "deterministic toy model for smoke tests; not a policy"])
    }

    public func makeWorker() -> any ModelWorker { Worker() }

    /// What its loops cost: 2 × 4 multiply-adds per action value, per step and candidate, plus 4 per
    /// check sample. Nominal, but it grows with every setting as the budgets require.
    public func flopsPerObservation(_ options: ActOptions) -> Double {
        Double(16 * options.steps * options.candidates + (options.check ? 8 * options.samples : 0))
    }

    final class Worker: ModelWorker {
        func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult {
            var r = ActResult(actions: [], confidence: [], energy: [], q: [], reliable: [])
            r.actions.reserveCapacity(count * 2)
            for b in 0..<count {
                var rng = SplitMix64(seed: seeds[b])
                let obs = observations[(b * 4)..<((b + 1) * 4)]
                var q: Float = 0
                for j in 0..<2 {
                    var z: Float = 0
                    for (k, x) in obs.enumerated() { z += 0.1 * Float((j + 1) * (k + 1)) * x }
                    let u = Float(rng.nextUnitInterval()) - 0.5
                    let a = tanh(z + u / Float(options.steps))
                    r.actions.append(a)
                    q -= a * a
                }
                let energy = obs.reduce(0) { $0 + $1 * $1 }
                r.energy.append(energy)
                r.reliable.append(energy <= 4)
                r.confidence.append(exp(-energy / 4))
                r.q.append(q)
            }
            return r
        }
    }
}
