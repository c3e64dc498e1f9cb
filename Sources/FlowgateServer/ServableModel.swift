public import FlowgateProtocol

/// What a servable model tells the server and its clients about itself (the `info` op's model entry).
public typealias ModelDescription = ModelInfo

/// Sampling settings a batch is computed with; only requests with equal options share a batch.
public struct ActOptions: Sendable, Hashable {
    /// Flow steps K.
    public var steps: Int
    /// Candidate actions M per observation.
    public var candidates: Int
    /// Next-state samples N for the energy check.
    public var samples: Int
    /// Whether to run the energy check.
    public var check: Bool

    public init(steps: Int, candidates: Int, samples: Int, check: Bool) {
        self.steps = steps
        self.candidates = candidates
        self.samples = samples
        self.check = check
    }
}

/// The result of one forward pass over B observations.
public struct ActResult: Sendable {
    /// B × actDim chosen actions, row-major.
    public var actions: [Float]
    /// B values in [0, 1].
    public var confidence: [Float]
    /// B minimum energies E_min of the chosen actions.
    public var energy: [Float]
    /// B critic values of the chosen actions.
    public var q: [Float]
    /// B flags: energy at or below the model's threshold.
    public var reliable: [Bool]

    public init(actions: [Float], confidence: [Float], energy: [Float], q: [Float], reliable: [Bool]) {
        self.actions = actions
        self.confidence = confidence
        self.energy = energy
        self.q = q
        self.reliable = reliable
    }
}

/// A model the server can serve. Shared by all worker threads, so it holds only immutable state
/// (weights); per-thread scratch memory lives in the `ModelWorker`s it makes.
public protocol ServableModel: AnyObject, Sendable {
    /// Name, dimensions, bounds, sampling defaults and limits, threshold, provenance.
    var modelDescription: ModelDescription { get }
    /// Returns an object owning preallocated workspaces. Called once per worker thread, on that
    /// thread; the worker is only ever used from it.
    func makeWorker() -> any ModelWorker
    /// Like `makeWorker()`, with every forward pass holding at most `rowsPerPass` rows (candidate
    /// rows of the policy and critic, proposal rows of the check): the server's bound on worker
    /// memory (`pass_rows`). Results must not depend on it. Default: `makeWorker()`.
    func makeWorker(rowsPerPass: Int) -> any ModelWorker
    /// Estimated floating-point operations for one observation computed with `options`; the
    /// server's work budgets (`max_request_gflop`, `max_queued_gflop`) count these. It must grow with
    /// every setting that makes the computation longer.
    func flopsPerObservation(_ options: ActOptions) -> Double
    /// The calibrated failure-risk model (`risk` in replies, stream alarms); `nil`: none.
    var riskModel: RiskModel? { get }
}

extension ServableModel {
    public var riskModel: RiskModel? { nil }
    public func makeWorker(rowsPerPass: Int) -> any ModelWorker { makeWorker() }
}

/// Per-thread compute state of a `ServableModel`. Never shared between threads.
public protocol ModelWorker: AnyObject {
    /// Computes actions for `count` observations.
    ///
    /// - Parameters:
    ///   - observations: `count × observationDim` values, row-major, all finite.
    ///   - seeds: one seed per observation. The result for observation i must depend only on
    ///     observation i, `seeds[i]` and `options` — not on the other rows — so that a batch equals
    ///     the same observations sent one by one.
    ///   - options: sampling settings, already within the model's limits.
    /// - Throws: anything; the server answers the batch's requests with `internal`.
    func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult
}

/// The state of one computation two workers share (`SplittableWorker`), made by the worker that
/// took the batch and written by both.
public protocol SplitJob: AnyObject, Sendable {}

/// A `ModelWorker` that can share the computation of a few observations with a worker of the same
/// model on another thread, so that one request uses two cores when the machine is otherwise idle
/// (the server decides when: `BatchPolicy.plan`). The computation runs in phases; each phase is cut
/// into two halves, half 0 computed by the worker that began the job and half 1 by whichever worker
/// takes it (or the beginning worker itself, when nobody took it in time); after both halves the
/// beginning worker joins the phase. The result must equal `act`'s for the same observations,
/// seeds and options, up to float32 rounding.
public protocol SplittableWorker: ModelWorker {
    /// Phases of a shared computation of `count` observations with `options`; 0: not shareable.
    func splitPhases(count: Int, options: ActOptions) -> Int
    /// Begins a shared computation (on the worker that took the batch; it reuses one job).
    func beginSplit(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) -> any SplitJob
    /// Computes `half` (0 or 1) of `phase` of `job`, which a worker of the same model began, on this
    /// worker's own networks and workspaces.
    func computeHalf(_ half: Int, phase: Int, of job: any SplitJob) throws
    /// Joins `phase` once both halves are computed (on the beginning worker).
    func join(phase: Int, of job: any SplitJob) throws
    /// Whether `phase` has work, asked after the phase before it is joined (on the beginning
    /// worker); a phase without is skipped, not offered to another worker.
    func needsPhase(_ phase: Int, of job: any SplitJob) -> Bool
    /// The result, after the last phase's join (on the beginning worker).
    func finishSplit(_ job: any SplitJob) throws -> ActResult
}

extension SplittableWorker {
    public func needsPhase(_ phase: Int, of job: any SplitJob) -> Bool { true }
}
