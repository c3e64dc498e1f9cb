/// One episode of a dataset: rows `start..<end`.
public struct Episode: Sendable, Equatable {
    public enum Ending: String, Sendable, Equatable {
        /// The last row is terminal.
        case terminal
        /// The last row is a timeout.
        case timeout
        /// The last row's next observation is not the following row's observation (an episode
        /// boundary whose flag was lost, e.g. a dropped timeout row).
        case discontinuity
        /// The data ends without a flag: the episode may continue beyond the file.
        case endOfData
    }

    public var start: Int
    /// Exclusive.
    public var end: Int
    /// Undiscounted sum of rewards.
    public var totalReward: Double
    public var ending: Ending

    public var length: Int { end - start }
    /// Ended by a terminal, a timeout or a discontinuity (not cut off by the end of the data).
    public var isComplete: Bool { ending != .endOfData }
}

/// IQL/CEP reward scaling: `scale = targetRange / (maxReturn − minReturn)` over complete episodes.
public struct RewardScaling: Codable, Sendable, Equatable {
    /// Multiply rewards by this.
    public var scale: Float
    public var completeEpisodes: Int
    public var minEpisodeReturn: Double?
    public var maxEpisodeReturn: Double?
    /// True when the range could not be measured (fewer than two complete episodes, or all
    /// complete episodes have the same return); `scale` is then 1 (rewards left as they are).
    public var isFallback: Bool
}

extension OfflineDataset {
    /// Episodes in row order, split D4RL/IQL-style: after a terminal, after a timeout, and where
    /// `nextObservations[i]` differs from `observations[i+1]` (Euclidean distance > 1e-6).
    public var episodes: [Episode] {
        var out: [Episode] = []
        var start = 0
        var total = 0.0
        let d = observationDim
        for i in 0..<count {
            total += Double(rewards[i])
            var ending: Episode.Ending? = nil
            if terminals[i] {
                ending = .terminal
            } else if timeouts[i] {
                ending = .timeout
            } else if i == count - 1 {
                ending = .endOfData
            } else {
                var sq: Float = 0
                for k in 0..<d {
                    let diff = nextObservations[i * d + k] - observations[(i + 1) * d + k]
                    sq += diff * diff
                }
                if sq > 1e-12 { ending = .discontinuity }
            }
            if let ending {
                out.append(Episode(start: start, end: i + 1, totalReward: total, ending: ending))
                start = i + 1
                total = 0
            }
        }
        return out
    }

    /// The IQL/CEP scale `targetRange / (max − min)` of complete-episode returns. With fewer than
    /// two complete episodes (or identical returns) there is no range: the result is a fallback
    /// with `scale == 1` and `isFallback == true` — the trainer decides whether that is acceptable.
    public func rewardScaling(targetRange: Float = 1000) -> RewardScaling {
        let returns = episodes.filter(\.isComplete).map(\.totalReward)
        guard let lo = returns.min(), let hi = returns.max() else {
            return RewardScaling(scale: 1, completeEpisodes: 0, minEpisodeReturn: nil, maxEpisodeReturn: nil, isFallback: true)
        }
        let range = hi - lo
        guard returns.count >= 2, range > 0, range.isFinite else {
            return RewardScaling(scale: 1, completeEpisodes: returns.count, minEpisodeReturn: lo, maxEpisodeReturn: hi, isFallback: true)
        }
        return RewardScaling(
            scale: Float(Double(targetRange) / range), completeEpisodes: returns.count,
            minEpisodeReturn: lo, maxEpisodeReturn: hi, isFallback: false)
    }

    /// Multiplies every reward by `scale`.
    public mutating func scaleRewards(by scale: Float) {
        for i in rewards.indices { rewards[i] *= scale }
    }

    /// Normalises `observations` and `nextObservations` in place.
    public mutating func normalizeObservations(with normalizer: ObservationNormalizer) {
        normalizer.apply(inPlace: &observations)
        normalizer.apply(inPlace: &nextObservations)
    }
}

/// Per-dimension observation standardisation `(x − mean) / std`. A dimension whose std is below
/// `minStd` (constant in the data, like Hopper's four always-zero or always-one features) keeps
/// std 1: flooring it at `minStd` instead scaled any sensor noise there by 1/minStd = 1000 and sent
/// the served policy far off its data at noise 0.005. Codable so it is saved next to a trained model and applied again at
/// inference time.
public struct ObservationNormalizer: Codable, Sendable, Equatable {
    public static let defaultMinStd: Float = 1e-3

    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count, "mean and std must have the same length")
        self.mean = mean
        self.std = std
    }

    /// Mean and population standard deviation (ddof 0, like `np.std`) of the dataset's
    /// observations, accumulated in Double; a std below `minStd` becomes 1 (see the type's note).
    public init(dataset: OfflineDataset, minStd: Float = ObservationNormalizer.defaultMinStd) {
        let d = dataset.observationDim, n = dataset.count
        var sum = [Double](repeating: 0, count: d)
        var sq = [Double](repeating: 0, count: d)
        dataset.observations.withUnsafeBufferPointer { o in
            for i in 0..<n { for k in 0..<d { sum[k] += Double(o[i * d + k]) } }
            let m = sum.map { $0 / Double(max(n, 1)) }
            for i in 0..<n { for k in 0..<d { let x = Double(o[i * d + k]) - m[k]; sq[k] += x * x } }
            sum = m
        }
        self.mean = sum.map { Float($0) }
        self.std = sq.map { v in
            let s = Float((v / Double(max(n, 1))).squareRoot())
            return s < minStd ? 1 : s
        }
    }

    public var dimension: Int { mean.count }

    /// Normalises row-major rows of width `dimension` in place.
    public func apply(inPlace values: inout [Float]) {
        let d = dimension
        precondition(d > 0 && values.count % d == 0, "values (\(values.count)) are not rows of width \(d)")
        values.withUnsafeMutableBufferPointer { v in
            for i in 0..<(v.count / d) { for k in 0..<d { v[i * d + k] = (v[i * d + k] - mean[k]) / std[k] } }
        }
    }

    /// Normalised copy.
    public func applied(to values: [Float]) -> [Float] {
        var v = values
        apply(inPlace: &v)
        return v
    }

    /// Undoes `apply`.
    public func denormalize(inPlace values: inout [Float]) {
        let d = dimension
        precondition(d > 0 && values.count % d == 0, "values (\(values.count)) are not rows of width \(d)")
        for i in 0..<(values.count / d) { for k in 0..<d { values[i * d + k] = values[i * d + k] * std[k] + mean[k] } }
    }
}
