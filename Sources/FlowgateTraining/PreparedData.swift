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
