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
        /// Staged proposals: the first stage (0: every row scores all P). See
        /// `EnergySamplingConfig.firstProposals`.
        public var firstProposals: Int
        /// Staged: rows stop at this quantile of held-out `E_min` (nil: at the threshold).
        public var exitQuantile: Double?
        /// Nearest-source proposals (`EnergySamplingConfig.nearest`).
        public var nearest: Bool

        public init(
            samples: Int, langevinSteps: Int, proposals: Int, firstProposals: Int = 0, exitQuantile: Double? = nil,
            nearest: Bool = false
        ) {
            self.samples = samples
            self.langevinSteps = langevinSteps
            self.proposals = proposals
            self.firstProposals = firstProposals
            self.exitQuantile = exitQuantile
            self.nearest = nearest
        }

        private enum CodingKeys: String, CodingKey { case samples, langevinSteps, proposals, firstProposals, exitQuantile, nearest }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            samples = try c.decode(Int.self, forKey: .samples)
            langevinSteps = try c.decode(Int.self, forKey: .langevinSteps)
            proposals = try c.decode(Int.self, forKey: .proposals)
            firstProposals = try c.decodeIfPresent(Int.self, forKey: .firstProposals) ?? 0
            exitQuantile = try c.decodeIfPresent(Double.self, forKey: .exitQuantile)
            nearest = try c.decodeIfPresent(Bool.self, forKey: .nearest) ?? false
        }

        /// Whether rows stop after the first stage (bank proposals, no Langevin step).
        public var isStaged: Bool { langevinSteps == 0 && firstProposals > 0 && firstProposals < proposals }

        public var description: String {
            let exit = isStaged ? exitQuantile.map { " exit q\($0)" } ?? "" : ""
            return
                "N=\(samples) T=\(langevinSteps) P=\(isStaged ? "\(firstProposals)→\(proposals)" : "\(proposals)")\(nearest ? " nearest" : "")\(exit)"
        }

        /// `base` with this setting's N, T and P; the schedule keeps its first and last step sizes
        /// and its noise, spread over `langevinSteps`.
        public func sampling(base: EnergySamplingConfig) -> EnergySamplingConfig {
            var s = base
            s.samples = samples
            s.schedule.steps = langevinSteps
            s.proposals = proposals
            s.firstProposals = isStaged ? firstProposals : 0
            s.nearest = nearest
            return s
        }
    }

    /// What one setting measured.
    public struct Row: Codable, Sendable {
        public var setting: Setting
        /// On held-out real transitions (with staged proposals, the proposals they did score).
        public var mflopPerObservation: Double
        /// Every proposal scored (what a row costs at most; equal to the above when not staged).
        public var mflopMaxPerObservation: Double
        /// Proposals scored per row, on held-out real transitions and on random actions.
        public var proposalsPerRowReal: Double
        public var proposalsPerRowRandomActions: Double
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
            let cal = EnergyScoring.calibration(
                model: model, sampling: sampling, normalization: normalizer, observations: calibration.observations,
                actions: calibration.actions, seedBase: 0xCA1B, quantile: quantile,
                exitQuantile: setting.isStaged ? setting.exitQuantile : nil)
            let report = EnergyEvaluation.evaluate(
                model: model, normalizer: normalizer, sampling: sampling, calibration: cal, heldOut: inliers,
                fresh: fresh, other: other, stateNoise: stateNoise, maxRows: nEval)
            let sampler = EnergySampler(model: model, config: sampling, frozenEnergy: true)
            sampler.exitEnergy = setting.isStaged ? cal.stageExit : nil
            var rng = RNG(seed: 0x5EED_C057)
            let randomActions = inliers.actions.map { _ in rng.uniform(-1, 1) }
            let perRowReal = proposalsPerRow(sampler: sampler, data: inliers, actions: inliers.actions, normalizer: normalizer)
            let perRowRandom = proposalsPerRow(sampler: sampler, data: inliers, actions: randomActions, normalizer: normalizer)
            let us = time(sampler: sampler, data: inliers, normalizer: normalizer, batch: timingBatch, repeats: timingRepeats, clock: clock)
            let row = Row(
                setting: setting,
                mflopPerObservation: sampler.flopsPerRow(samples: setting.samples, proposalsPerRow: perRowReal) / 1e6,
                mflopMaxPerObservation: sampler.flopsPerRow(samples: setting.samples) / 1e6,
                proposalsPerRowReal: perRowReal, proposalsPerRowRandomActions: perRowRandom,
                microsecondsPerObservation: us, aurocRandomActions: report.aurocRandomActions,
                aurocNoisyStates: report.aurocNoisyStates, aurocOtherDataset: report.aurocOtherDataset,
                reliableRateFresh: report.reliableRateFresh, reliableRateRandomActions: report.reliableRateRandomActions,
                threshold: cal.threshold)
            progress(row)
            rows.append(row)
        }
        return rows
    }

    /// Proposals `sampler` scores per row of `data`'s observations with `actions`, in batches of 64.
    static func proposalsPerRow(sampler: EnergySampler, data: OfflineDataset, actions: [Float], normalizer: ObservationNormalizer) -> Double {
        let d = data.observationDim, k = data.actionDim
        let s = normalizer.applied(to: data.observations)
        let before = sampler.proposalsScored
        var start = 0
        while start < data.count {
            let end = min(start + 64, data.count)
            _ = sampler.evaluate(
                observations: Array(s[(start * d)..<(end * d)]), actions: Array(actions[(start * k)..<(end * k)]),
                seeds: (start..<end).map { 0xC057 &+ UInt64($0) })
            start = end
        }
        return Double(sampler.proposalsScored - before) / Double(max(data.count, 1))
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
