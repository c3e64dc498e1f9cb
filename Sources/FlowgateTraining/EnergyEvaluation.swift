import FlowgateAlgorithms
import FlowgateCore

/// Out-of-distribution detection and calibration measurements of a trained energy model.
public enum EnergyEvaluation {
    /// Area under the ROC curve of `score` separating `outliers` (expected higher) from `inliers`:
    /// `P(score_out > score_in) + ½ P(equal)` (Mann–Whitney U with average ranks for ties).
    public static func auroc(inliers: [Float], outliers: [Float]) -> Double {
        precondition(!inliers.isEmpty && !outliers.isEmpty)
        let all = (inliers.map { ($0, false) } + outliers.map { ($0, true) }).sorted { $0.0 < $1.0 }
        var rankSumOut = 0.0
        var i = 0
        while i < all.count {
            var j = i
            while j + 1 < all.count && all[j + 1].0 == all[i].0 { j += 1 }
            let avgRank = Double(i + j) / 2 + 1
            for t in i...j where all[t].1 { rankSumOut += avgRank }
            i = j + 1
        }
        let nOut = Double(outliers.count), nIn = Double(inliers.count)
        return (rankSumOut - nOut * (nOut + 1) / 2) / (nOut * nIn)
    }

    /// ROC curve points `(falsePositiveRate, truePositiveRate)` for thresholds at every distinct
    /// score (outliers positive), from (0, 0) to (1, 1), thinned to at most `maxPoints`.
    public static func rocCurve(inliers: [Float], outliers: [Float], maxPoints: Int = 201) -> [[Double]] {
        let all = (inliers.map { ($0, false) } + outliers.map { ($0, true) }).sorted { $0.0 > $1.0 }
        var tp = 0.0, fp = 0.0
        var pts: [[Double]] = [[0, 0]]
        var i = 0
        while i < all.count {
            var j = i
            while j < all.count && all[j].0 == all[i].0 { if all[j].1 { tp += 1 } else { fp += 1 }; j += 1 }
            pts.append([fp / Double(inliers.count), tp / Double(outliers.count)])
            i = j
        }
        guard pts.count > maxPoints else { return pts }
        let stride = Double(pts.count - 1) / Double(maxPoints - 1)
        return (0..<maxPoints).map { pts[min(Int((Double($0) * stride).rounded()), pts.count - 1)] }
    }

    /// Histogram of `values` over `[low, high]` in `bins` bins (values outside are clamped in).
    public static func histogram(_ values: [Float], low: Float, high: Float, bins: Int = 60) -> [Int] {
        var h = [Int](repeating: 0, count: bins)
        let w = (high - low) / Float(bins)
        for v in values { h[min(max(Int((v - low) / max(w, 1e-12)), 0), bins - 1)] += 1 }
        return h
    }

    /// What `evaluate` measures.
    public struct Report: Codable, Sendable {
        /// Held-out real transitions vs the same states with uniform-random actions in [-1, 1].
        public var aurocRandomActions: Double
        /// Held-out real transitions vs the same (s, a) with `stateNoise` · N(0, 1) added to the
        /// normalised state.
        public var aurocNoisyStates: Double
        public var stateNoise: Float
        /// Held-out real transitions vs transitions of another dataset (when given).
        public var aurocOtherDataset: Double?
        /// Share of a fresh held-out set judged reliable (target: `calibration.quantile`).
        public var reliableRateFresh: Double
        public var reliableRateRandomActions: Double
        public var calibration: ReliabilityCalibration
        public var rows: Int
        /// Seconds spent sampling (all E_min computations).
        public var scoringSeconds: Double
        /// Sampler diagnostics on held-out real transitions: mean energy at the recorded next
        /// state, mean `E_min`, share of rows where sampling found no state as low as the recorded
        /// one, and the mean absolute error (normalised units) of the lowest-energy sample.
        public var meanEnergyAtData: Double
        public var meanEMin: Double
        public var samplerMissRate: Double
        public var predictionError: Double
        /// Same error for a baseline that predicts "no change" (s' = s), for scale.
        public var noChangeError: Double
        /// ROC curves by comparison name: `[[fpr, tpr], …]`.
        public var roc: [String: [[Double]]]
        /// E_min histograms by set name over `histogramRange`.
        public var histograms: [String: [Int]]
        public var histogramRange: [Float]
    }

    /// Scores held-out real transitions and their perturbations with `E_min` and measures AUROC and
    /// the reliable rate. At most `maxRows` rows of each set are used. Actions must be in [-1, 1]
    /// like the training data.
    public static func evaluate(
        model: EnergyTransitionModel, normalizer: ObservationNormalizer, sampling: EnergySamplingConfig,
        calibration: ReliabilityCalibration, heldOut: OfflineDataset, fresh: OfflineDataset,
        other: OfflineDataset? = nil, stateNoise: Float = 1, maxRows: Int = 2000, seed: UInt64 = 7,
        clock: () -> Double = { 0 }
    ) -> Report {
        let d = heldOut.observationDim, k = heldOut.actionDim
        func take(_ ds: OfflineDataset) -> OfflineDataset {
            ds.count <= maxRows ? ds : ds.subset(Array(0..<maxRows))
        }
        let real = take(heldOut), freshPart = take(fresh)
        var rng = RNG(seed: seed)
        let t0 = clock()
        // Staged proposals stop at the threshold, as the server's check does.
        let exit: Float? = sampling.firstProposals > 0 ? calibration.stageExit : nil
        func score(_ obs: [Float], _ act: [Float], _ base: UInt64) -> [Float] {
            EnergyScoring.eMin(
                model: model, sampling: sampling, normalization: normalizer, observations: obs, actions: act, seedBase: base,
                exitEnergy: exit)
        }
        let realScore = EnergyScoring.score(
            model: model, sampling: sampling, normalization: normalizer, observations: real.observations,
            actions: real.actions, seedBase: 1 << 32, exitEnergy: exit)
        let eReal = realScore.eMin
        let eData = EnergyScoring.energyAtData(model: model, normalization: normalizer, dataset: real)
        var predErr = 0.0, stayErr = 0.0
        for i in 0..<real.nextObservations.count {
            let sd = Double(normalizer.std[i % d])
            predErr += abs(Double(realScore.predictedNext[i] - real.nextObservations[i])) / sd
            stayErr += abs(Double(real.observations[i] - real.nextObservations[i])) / sd
        }
        predErr /= Double(real.nextObservations.count)
        stayErr /= Double(real.nextObservations.count)
        var randomActions = real.actions
        for i in randomActions.indices { randomActions[i] = rng.uniform(-1, 1) }
        let eRandom = score(real.observations, randomActions, 2 << 32)
        var noisy = real.observations
        for i in noisy.indices { noisy[i] += stateNoise * normalizer.std[i % d] * rng.normal() }
        let eNoisy = score(noisy, real.actions, 3 << 32)
        let eFresh = score(freshPart.observations, freshPart.actions, 4 << 32)
        var eOther: [Float]? = nil
        if let other {
            let o = take(other)
            precondition(o.observationDim == d && o.actionDim == k, "other dataset has different dimensions")
            eOther = score(o.observations, o.actions, 5 << 32)
        }
        let seconds = clock() - t0
        var roc: [String: [[Double]]] = [
            "random_actions": rocCurve(inliers: eReal, outliers: eRandom),
            "noisy_states": rocCurve(inliers: eReal, outliers: eNoisy),
        ]
        if let eOther { roc["other_dataset"] = rocCurve(inliers: eReal, outliers: eOther) }
        let everything = eReal + eRandom + eNoisy + (eOther ?? [])
        let sorted = everything.sorted()
        let lo = ReliabilityCalibration.quantile(sorted, 0.005), hi = ReliabilityCalibration.quantile(sorted, 0.995)
        var hist: [String: [Int]] = [
            "held_out": histogram(eReal, low: lo, high: hi), "random_actions": histogram(eRandom, low: lo, high: hi),
            "noisy_states": histogram(eNoisy, low: lo, high: hi), "fresh": histogram(eFresh, low: lo, high: hi),
        ]
        if let eOther { hist["other_dataset"] = histogram(eOther, low: lo, high: hi) }
        func rate(_ e: [Float]) -> Double { Double(e.filter(calibration.isReliable).count) / Double(e.count) }
        return Report(
            aurocRandomActions: auroc(inliers: eReal, outliers: eRandom),
            aurocNoisyStates: auroc(inliers: eReal, outliers: eNoisy), stateNoise: stateNoise,
            aurocOtherDataset: eOther.map { auroc(inliers: eReal, outliers: $0) }, reliableRateFresh: rate(eFresh),
            reliableRateRandomActions: rate(eRandom), calibration: calibration, rows: real.count,
            scoringSeconds: seconds,
            meanEnergyAtData: eData.reduce(0.0) { $0 + Double($1) } / Double(eData.count),
            meanEMin: eReal.reduce(0.0) { $0 + Double($1) } / Double(eReal.count),
            samplerMissRate: Double(zip(eReal, eData).filter { $0 > $1 }.count) / Double(eReal.count),
            predictionError: predErr, noChangeError: stayErr, roc: roc, histograms: hist, histogramRange: [lo, hi])
    }
}
