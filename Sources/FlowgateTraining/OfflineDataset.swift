import FlowgateCore

/// A D4RL-style offline dataset of transitions, held as row-major Float32 matrices.
///
/// Loaders (`.npz`, `.hdf5`) validate shapes, dtypes and finiteness and fill this type; trainers
/// only read it.
public struct OfflineDataset: Sendable {
    /// Where it came from (file path), for provenance and error messages.
    public var source: String
    public var observationDim: Int
    public var actionDim: Int
    /// N × observationDim.
    public var observations: [Float]
    /// N × actionDim.
    public var actions: [Float]
    /// N.
    public var rewards: [Float]
    /// N × observationDim.
    public var nextObservations: [Float]
    /// True termination (no bootstrapping), N.
    public var terminals: [Bool]
    /// Cut by a time limit (bootstrapping continues), N.
    public var timeouts: [Bool]
    /// Free-form metadata found in the file (env name, reference returns, …).
    public var metadata: [String: String]

    public init(
        source: String, observationDim: Int, actionDim: Int, observations: [Float], actions: [Float],
        rewards: [Float], nextObservations: [Float], terminals: [Bool], timeouts: [Bool],
        metadata: [String: String] = [:]
    ) {
        self.source = source
        self.observationDim = observationDim
        self.actionDim = actionDim
        self.observations = observations
        self.actions = actions
        self.rewards = rewards
        self.nextObservations = nextObservations
        self.terminals = terminals
        self.timeouts = timeouts
        self.metadata = metadata
    }

    /// Number of transitions.
    public var count: Int { rewards.count }

    /// Splits off a held-out part: the last `fraction` of a seeded permutation of the rows.
    public func split(heldOutFraction fraction: Double, seed: UInt64) -> (train: OfflineDataset, heldOut: OfflineDataset) {
        var idx = Array(0..<count)
        var rng = RNG(seed: seed)
        rng.shuffle(&idx)
        let nHeld = Int((Double(count) * fraction).rounded())
        return (subset(Array(idx[nHeld...]).sorted()), subset(Array(idx[..<nHeld]).sorted()))
    }

    /// The rows at `indices`, in that order.
    public func subset(_ indices: [Int]) -> OfflineDataset {
        func rows(_ m: [Float], _ w: Int) -> [Float] {
            var out = [Float]()
            out.reserveCapacity(indices.count * w)
            for i in indices { out.append(contentsOf: m[(i * w)..<((i + 1) * w)]) }
            return out
        }
        return OfflineDataset(
            source: source, observationDim: observationDim, actionDim: actionDim,
            observations: rows(observations, observationDim), actions: rows(actions, actionDim),
            rewards: indices.map { rewards[$0] }, nextObservations: rows(nextObservations, observationDim),
            terminals: indices.map { terminals[$0] }, timeouts: indices.map { timeouts[$0] }, metadata: metadata)
    }
}
