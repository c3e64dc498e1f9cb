import FlowgateAlgorithms
import FlowgateCore

/// Cost against signal of the serving-time energy check: for each sampler setting (next-state
/// samples N, Langevin steps T, bank proposals P) it recalibrates the reliability threshold on
/// held-out real transitions with that setting and measures what the check detects (random actions,
/// noisy states, another dataset), how well the calibration holds on fresh held-out rows, and what
/// it costs (FLOPs per observation from the networks, and measured time per observation at a
/// serving batch).
///
/// The held-out rows are the ones the energy model never trained on: the split `EnergyTrainer`
/// made (`heldOutSplit`), cut into a calibration part and an evaluation part that do not overlap.
public enum EnergyCheckSweep {
    /// One sampler setting.
    public struct Setting: Codable, Sendable, Hashable, CustomStringConvertible {
        public var samples: Int
        public var langevinSteps: Int
        public var proposals: Int

        public init(samples: Int, langevinSteps: Int, proposals: Int) {
            self.samples = samples
            self.langevinSteps = langevinSteps
            self.proposals = proposals
        }

        public var description: String { "N=\(samples) T=\(langevinSteps) P=\(proposals)" }

        /// `base` with this setting's N, T and P; the schedule keeps its first and last step sizes
        /// and its noise, spread over `langevinSteps`.
        public func sampling(base: EnergySamplingConfig) -> EnergySamplingConfig {
            var s = base
            s.samples = samples
            s.schedule.steps = langevinSteps
            s.proposals = proposals
            return s
        }
    }

    /// What one setting measured.
    public struct Row: Codable, Sendable {
        public var setting: Setting
        public var mflopPerObservation: Double
        /// Median over repeats of the sampler's time for `timingBatch` observations, per observation.
        public var microsecondsPerObservation: Double
        public var aurocRandomActions: Double
        public var aurocNoisyStates: Double
        public var aurocOtherDataset: Double?
        /// Share of fresh held-out rows judged reliable under the recalibrated threshold (target:
        /// the calibration quantile).
        public var reliableRateFresh: Double
        public var reliableRateRandomActions: Double
        public var threshold: Float
    }

    /// The held-out part of `dataset` exactly as `EnergyTrainer(config:dataset:seed:)` split it.
    public static func heldOutSplit(dataset: OfflineDataset, config: EnergyTrainingConfig, seed: UInt64) -> OfflineDataset {
        dataset.split(heldOutFraction: config.heldOutFraction, seed: seed ^ EnergyTrainer.splitSeedSalt).heldOut
    }

    /// Measures every setting. `heldOut`, in `EnergyTrainer.shuffled` order, is cut into
    /// calibration rows (the first `calibrationRows`, at most half) and evaluation rows (the rest, at most `evaluationRows` for
    /// the AUROC inliers and as many again, when present, for the fresh calibration check).
    /// `clock` returns seconds; `progress` gets each row as it is measured.
    public static func run(
        model: EnergyTransitionModel, base: EnergySamplingConfig, normalizer: ObservationNormalizer,
        heldOut: OfflineDataset, other: OfflineDataset?, settings: [Setting], calibrationRows: Int = 5000,
        evaluationRows: Int = 2000, quantile: Double = 0.95, stateNoise: Float = 1, timingBatch: Int = 64,
        timingRepeats: Int = 5, clock: () -> Double, progress: (Row) -> Void = { _ in }
    ) -> [Row] {
        precondition(heldOut.count >= 4, "the held-out split is too small to calibrate and evaluate")
        // Calibration rows as the trainer draws them; evaluation rows from the rest, in the same
        // random order (held-out rows keep the dataset's time order).
        let heldOut = EnergyTrainer.shuffled(heldOut)
        let nCal = min(calibrationRows, heldOut.count / 2)
        let rest = heldOut.count - nCal
        let nEval = min(evaluationRows, max(rest / 2, 1))
        let calibration = heldOut.subset(Array(0..<nCal))
        let inliers = heldOut.subset(Array(nCal..<(nCal + nEval)))
        let freshEnd = min(nCal + 2 * nEval, heldOut.count)
        let fresh = freshEnd > nCal + nEval ? heldOut.subset(Array((nCal + nEval)..<freshEnd)) : inliers
        var rows: [Row] = []
        for setting in settings {
            let sampling = setting.sampling(base: base)
            let eCal = EnergyScoring.eMin(
                model: model, sampling: sampling, normalization: normalizer, observations: calibration.observations,
                actions: calibration.actions, seedBase: 0xCA1B)
            let cal = ReliabilityCalibration(heldOutEMin: eCal, quantile: quantile)
            let report = EnergyEvaluation.evaluate(
                model: model, normalizer: normalizer, sampling: sampling, calibration: cal, heldOut: inliers,
                fresh: fresh, other: other, stateNoise: stateNoise, maxRows: nEval)
            let sampler = EnergySampler(model: model, config: sampling, frozenEnergy: true)
            let us = time(sampler: sampler, data: inliers, normalizer: normalizer, batch: timingBatch, repeats: timingRepeats, clock: clock)
            let row = Row(
                setting: setting, mflopPerObservation: sampler.flopsPerRow(samples: setting.samples) / 1e6,
                microsecondsPerObservation: us, aurocRandomActions: report.aurocRandomActions,
                aurocNoisyStates: report.aurocNoisyStates, aurocOtherDataset: report.aurocOtherDataset,
                reliableRateFresh: report.reliableRateFresh, reliableRateRandomActions: report.reliableRateRandomActions,
                threshold: cal.threshold)
            progress(row)
            rows.append(row)
        }
        return rows
    }

    /// Median time per observation of `sampler.evaluate` on the first `batch` rows of `data`.
    static func time(
        sampler: EnergySampler, data: OfflineDataset, normalizer: ObservationNormalizer, batch: Int, repeats: Int,
        clock: () -> Double
    ) -> Double {
        let b = min(batch, data.count)
        let part = data.subset(Array(0..<b))
        let s = normalizer.applied(to: part.observations)
        let seeds = (0..<b).map { UInt64($0) }
        _ = sampler.evaluate(observations: s, actions: part.actions, seeds: seeds)  // warm the workspaces
        var times: [Double] = []
        for _ in 0..<max(repeats, 1) {
            let t0 = clock()
            _ = sampler.evaluate(observations: s, actions: part.actions, seeds: seeds)
            times.append((clock() - t0) / Double(b) * 1e6)
        }
        return times.sorted()[times.count / 2]
    }
}
