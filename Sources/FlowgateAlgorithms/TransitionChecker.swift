import FlowgateCore

/// The energy check on chosen actions, as the action selector sees it (implemented by the MC-ETM
/// energy model's per-thread sampler).
public protocol TransitionChecker: AnyObject {
    /// `E_min` for each of `count` (normalised observation, scaled action) pairs using `samples`
    /// next-state samples; `rngs` has one generator per pair.
    func minimumEnergy(observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, count: Int, samples: Int, rngs: inout [RNG]) -> [Float]
    /// Calibrated tail probability of an `E_min` under held-out real transitions, in [0, 1].
    func confidence(energy: Float) -> Float
    /// The reliability threshold on `E_min`.
    var threshold: Float { get }
    /// Floating-point operations of the check for one (observation, action) pair with `samples`
    /// next-state samples (what the server's work budgets count).
    func flopsPerPair(samples: Int) -> Double
    /// Most rows one forward pass of the check may hold (bounds its workspaces; no result changes).
    func limitRowsPerPass(_ rows: Int)
    /// Proposals per pair in each stage that two checkers of the same model can score in ranges
    /// (`beginSplit`, then per stage `scoreSplit` and `endSplitStage`, then `finishSplit`), in
    /// order; empty when the check cannot be cut that way. A later stage may score only some pairs
    /// (staged proposals: those still above the exit energy).
    var splitStageProposals: [Int] { get }
    /// Starts the check of `count` pairs as `job`, taking the same draws from `rngs` as
    /// `minimumEnergy`; the pointers must stay valid until `finishSplit`.
    func beginSplit(
        _ job: ProposalSplit, observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, count: Int,
        samples: Int, rngs: inout [RNG])
    /// Scores proposals `range` (counted from the stage's first) of stage `stage` of `job`'s pairs
    /// (begun by any checker of the same model).
    func scoreSplit(_ job: ProposalSplit, stage: Int, proposals range: Range<Int>)
    /// Ends stage `stage` once both ranges are scored (on the checker that began `job`).
    func endSplitStage(_ job: ProposalSplit, stage: Int)
    /// `E_min` per pair once all proposals are scored (on the checker that began `job`): what
    /// `minimumEnergy` returns for the same draws.
    func finishSplit(_ job: ProposalSplit) -> [Float]
}

extension TransitionChecker {
    /// Proposals per pair of the first stage; 0 when the check cannot be cut.
    public var splitProposals: Int { splitStageProposals.first ?? 0 }
    public func flopsPerPair(samples: Int) -> Double { 0 }
    public func limitRowsPerPass(_ rows: Int) {}
}
