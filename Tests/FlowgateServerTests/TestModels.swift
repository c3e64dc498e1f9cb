import FlowgateCommon
import FlowgateProtocol
import FlowgateServer
import Foundation

/// TEST DOUBLE, not a policy: a tiny deterministic stand-in for the flow policy + critic + energy
/// model, so server behaviour can be tested without the numerical side.
///
/// - action_j = tanh(Σ_k W_jk · obs_k + noise_j / steps), noise from SplitMix64(seed) in [-0.5, 0.5]
/// - energy = |obs|², reliable = energy ≤ threshold (4), confidence = exp(-energy / threshold)
/// - q = -|action|² - 0.01 · candidates
/// - an observation containing `poison` (12345) makes `act` throw (to produce `internal` errors)
/// - a batch containing `hold` (777) waits in `gate` until the test opens it
final class LinearTestModel: ServableModel {
    static let poison: Float = 12345
    static let hold: Float = 777
    let modelDescription: ModelDescription
    let delay: TimeInterval
    let gate: Gate?

    init(
        name: String = "test", version: String = "test-1", observationDim: Int = 3, actionDim: Int = 2, maxBatch: Int = 256,
        delay: TimeInterval = 0, gate: Gate? = nil
    ) {
        self.delay = delay
        self.gate = gate
        modelDescription = ModelDescription(
            name: name, version: version, observationDim: observationDim, actionDim: actionDim,
            actionLow: Array(repeating: -1, count: actionDim), actionHigh: Array(repeating: 1, count: actionDim),
            defaults: SamplingSettings(steps: 4, candidates: 8, samples: 4),
            limits: SamplingLimits(maxSteps: 32, maxCandidates: 64, maxSamples: 16, maxBatch: maxBatch),
            threshold: 4, calibrationQuantile: 0.95, provenance: ["kind": "test double"])
    }

    func makeWorker() -> any ModelWorker { Worker(modelDescription, delay: delay, gate: gate) }

    /// 1 MFLOP per step and candidate, plus 1 MFLOP per check sample: round numbers for budget tests.
    func flopsPerObservation(_ options: ActOptions) -> Double {
        1e6 * Double(options.steps * options.candidates + (options.check ? options.samples : 0))
    }

    final class Worker: ModelWorker {
        let d: ModelDescription
        let delay: TimeInterval
        let gate: Gate?
        init(_ d: ModelDescription, delay: TimeInterval, gate: Gate?) {
            self.d = d
            self.delay = delay
            self.gate = gate
        }

        func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult {
            struct Poisoned: Error {}
            if delay > 0 { Thread.sleep(forTimeInterval: delay) }
            if let gate, observations.contains(LinearTestModel.hold) { gate.pass() }
            if observations.contains(LinearTestModel.poison) { throw Poisoned() }
            let n = d.observationDim, m = d.actionDim
            var result = ActResult(actions: [], confidence: [], energy: [], q: [], reliable: [])
            for b in 0..<count {
                var rng = SplitMix64(seed: seeds[b])
                let obs = observations[(b * n)..<((b + 1) * n)]
                var q: Float = -0.01 * Float(options.candidates)
                for j in 0..<m {
                    var z: Float = 0
                    for (k, x) in obs.enumerated() { z += Float((j + 1) * (k % 3 + 1)) * 0.1 * x }
                    let noise = Float(rng.nextUnitInterval()) - 0.5
                    let a = tanh(z + noise / Float(options.steps))
                    result.actions.append(a)
                    q -= a * a
                }
                let energy = obs.reduce(0) { $0 + $1 * $1 }
                result.energy.append(energy)
                result.reliable.append(energy <= d.threshold)
                result.confidence.append(exp(-energy / d.threshold))
                result.q.append(q)
            }
            return result
        }
    }
}

/// Holds a worker inside `act` until the test opens it, so a test can fill the queue behind a busy
/// worker without relying on timing. Its state is guarded by `condition`'s lock.
final class Gate: @unchecked Sendable {
    private let condition = NSCondition()
    private var isOpen = false
    private var waiting = 0

    /// Called by a worker: blocks until `open()`.
    func pass() {
        condition.lock()
        defer { condition.unlock() }
        waiting += 1
        condition.broadcast()
        while !isOpen { condition.wait() }
    }

    /// Waits (at most `timeout` seconds, a generous bound) until a worker is held; false on timeout.
    func waitForWorker(timeout: TimeInterval = 20) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let limit = Date(timeIntervalSinceNow: timeout)
        while waiting == 0 {
            if !condition.wait(until: limit) { return waiting > 0 }
        }
        return true
    }

    /// Holds workers again from now on (and forgets the ones held before), for a test that uses
    /// the gate more than once.
    func close() {
        condition.lock()
        isOpen = false
        waiting = 0
        condition.unlock()
    }

    /// Lets every held and future worker through.
    func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }
}
