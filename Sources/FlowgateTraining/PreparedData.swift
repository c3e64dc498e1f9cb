import FlowgateCore

/// The dataset in the space the networks see: z-scored observations, actions scaled to [-1, 1]
/// by the action bounds, rewards scaled the IQL/CEP way, and `notDone = 1 − terminal`.
///
/// The transform (mean, std, bounds, reward scale) is stored in the model manifest so the server
/// applies exactly the same one.
public final class PreparedData: @unchecked Sendable {
    public let count: Int
    public let observationDim: Int
    public let actionDim: Int
    public let observations: [Float]
    public let nextObservations: [Float]
    public let actions: [Float]
    public let rewards: [Float]
    public let notDone: [Float]
    /// Rows after which the episode does not continue in the next row: terminal, timeout (time
    /// limit), or the dataset's last row.
    public let episodeEnds: [Bool]
    public let observationMean: [Float]
    public let observationStd: [Float]
    public let actionLow: [Float]
    public let actionHigh: [Float]
    public let rewardScale: Float

    /// - Parameters:
    ///   - actionLow/actionHigh: the environment's action bounds (the dataset's actions must lie inside).
    public init(
        dataset d: OfflineDataset, observationMean: [Float], observationStd: [Float], actionLow: [Float],
        actionHigh: [Float], rewardScale: Float
    ) {
        count = d.count
        observationDim = d.observationDim
        actionDim = d.actionDim
        self.observationMean = observationMean
        self.observationStd = observationStd
        self.actionLow = actionLow
        self.actionHigh = actionHigh
        self.rewardScale = rewardScale
        func norm(_ m: [Float]) -> [Float] {
            var out = m
            let obsDim = d.observationDim
            for i in 0..<(out.count) { out[i] = (out[i] - observationMean[i % obsDim]) / observationStd[i % obsDim] }
            return out
        }
        observations = norm(d.observations)
        nextObservations = norm(d.nextObservations)
        var a = d.actions
        let actDim = d.actionDim
        for i in 0..<a.count {
            let j = i % actDim
            a[i] = 2 * (a[i] - actionLow[j]) / (actionHigh[j] - actionLow[j]) - 1
        }
        actions = a
        rewards = d.rewards.map { $0 * rewardScale }
        notDone = d.terminals.map { $0 ? 0 : 1 }
        episodeEnds = (0..<d.count).map { d.terminals[$0] || d.timeouts[$0] || $0 == d.count - 1 }
    }

    /// The discounted return-to-go of every row, `G_i = r_i + gamma · G_{i+1}` within an episode
    /// (scaled rewards): the Monte Carlo value of the data's own actions. Episodes cut by a time
    /// limit or by the end of the file stop there, so their last rows' returns are too low.
    public func returnsToGo(gamma: Float) -> [Float] {
        var g = [Float](repeating: 0, count: count)
        var next: Double = 0
        for i in stride(from: count - 1, through: 0, by: -1) {
            if episodeEnds[i] { next = 0 }
            next = Double(rewards[i]) + Double(gamma) * next
            g[i] = Float(next)
        }
        return g
    }

    /// Copies the rows `indices` of a `count × width` matrix into `out`.
    @inline(__always)
    public static func gather(_ m: [Float], width: Int, indices: [Int], into out: UnsafeMutablePointer<Float>) {
        m.withUnsafeBufferPointer { src in
            for (k, i) in indices.enumerated() {
                (out + k * width).update(from: src.baseAddress! + i * width, count: width)
            }
        }
    }
}
