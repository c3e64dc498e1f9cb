import FlowgateAlgorithms
import FlowgateCore
import FlowgateTraining

/// Train → calibrate → evaluate in one call: the Hopper evaluation (docs/energy-model.md) and the
/// synthetic checks use it.
public enum EnergyExperiment {
    /// Result of `run`.
    public struct Outcome: Codable, Sendable {
        public var config: EnergyTrainingConfig
        public var seed: UInt64
        public var trainRows: Int
        public var autoencoderStepsPerSecond: Double
        public var energyStepsPerSecond: Double
        /// Last logged metrics of each phase (means over the final `logEvery` steps).
        public var finalMetrics: [String: [String: Double]]
        public var report: EnergyEvaluation.Report
    }

    /// Splits `dataset` three ways (train, held-out for calibration, fresh held-out for checking
    /// calibration), trains, calibrates on held-out and evaluates.
    ///
    /// - Parameters:
    ///   - other: transitions of another dataset scored as "off-data states" (e.g. hopper-random).
    ///   - clock: seconds from any origin (inject `Date().timeIntervalSince1970` from Foundation code).
    ///   - log: called with a line every `logEvery` steps.
    ///   - trained: model tensors to evaluate instead of training (same config, data and seed).
    ///   - onTrained: called with the trainer after training (e.g. to save the model).
    public static func run(
        config: EnergyTrainingConfig, dataset: OfflineDataset, other: OfflineDataset? = nil, seed: UInt64,
        evaluationRows: Int = 2000, stateNoise: Float = 1, logEvery: Int = 100, clock: @escaping () -> Double = { 0 },
        log: (String) -> Void = { _ in }, trained: [String: Tensor]? = nil, onTrained: (EnergyTrainer) -> Void = { _ in }
    ) throws -> Outcome {
        let parts = dataset.split(heldOutFraction: 0.05, seed: seed &+ 99)
        let trainer = EnergyTrainer(config: config, dataset: parts.train, seed: seed)
        var rates: [String: Double] = [:]
        var finals: [String: [String: Double]] = [:]
        if let trained { try trainer.model.parameters.load(from: trained) }
        for phase in trainer.phases where trained == nil {
            let t0 = clock()
            var window: [String: Double] = [:]
            var count = 0
            while phase.completedSteps < phase.totalSteps {
                for (k, v) in try phase.step() { window[k, default: 0] += v }
                count += 1
                if phase.completedSteps % logEvery == 0 || phase.completedSteps == phase.totalSteps {
                    let mean = window.mapValues { $0 / Double(count) }
                    finals[phase.name] = mean
                    let text = mean.keys.sorted().map { "\($0)=\(String(format4(mean[$0]!)))" }.joined(separator: " ")
                    log("\(phase.name) \(phase.completedSteps)/\(phase.totalSteps) \(text)")
                    window = [:]
                    count = 0
                }
            }
            let dt = clock() - t0
            rates[phase.name] = dt > 0 ? Double(phase.totalSteps) / dt : 0
        }
        onTrained(trainer)
        let calibration = trainer.calibrate()
        log("calibrated on \(trainer.heldOut.count) held-out transitions: threshold \(calibration.threshold)")
        let report = EnergyEvaluation.evaluate(
            model: trainer.model, normalizer: trainer.normalization, sampling: config.sampling, calibration: calibration,
            heldOut: trainer.heldOut, fresh: parts.heldOut, other: other, stateNoise: stateNoise, maxRows: evaluationRows,
            seed: seed &+ 7, clock: clock)
        return Outcome(
            config: config, seed: seed, trainRows: trainer.train.count,
            autoencoderStepsPerSecond: rates["energy-autoencoder"] ?? 0, energyStepsPerSecond: rates["energy"] ?? 0,
            finalMetrics: finals, report: report)
    }
}

/// Four significant decimals without Foundation.
func format4(_ v: Double) -> String {
    guard v.isFinite else { return "\(v)" }
    let scaled = (v * 10_000).rounded() / 10_000
    return "\(scaled)"
}
