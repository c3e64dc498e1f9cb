import FlowgateCore
public import FlowgateAlgorithms
public import FlowgateProtocol

/// Serves a trained model directory: a `PolicyBundle` (flow policy, critic, optional energy model)
/// behind the server's `ServableModel` interface. Weights are shared; each worker gets its own
/// replicas and workspaces.
public final class PolicyServable: ServableModel, Sendable {
    public let bundle: PolicyBundle
    public let modelDescription: ModelDescription
    /// The manifest's optional `risk` section (`RiskModel.load(directory:)`).
    public let riskModel: RiskModel?

    public init(bundle: PolicyBundle, risk: RiskModel? = nil) {
        self.bundle = bundle
        self.riskModel = risk
        let m = bundle.manifest
        var provenance: [String: String] = [
            "dataset": m.provenance.dataset, "seed": "\(m.provenance.seed)", "git_commit": m.provenance.gitCommit,
            "date": m.provenance.date, "flowgate_version": m.provenance.flowgateVersion, "kind": m.kind,
        ]
        for (phase, steps) in m.provenance.trainingSteps { provenance["steps.\(phase)"] = "\(steps)" }
        modelDescription = ModelDescription(
            name: m.name, version: m.modelVersion, observationDim: m.observationDim, actionDim: m.actionDim,
            actionLow: m.actionLow, actionHigh: m.actionHigh,
            defaults: SamplingSettings(steps: m.sampling.steps, candidates: m.sampling.candidates, samples: bundle.makeChecker == nil ? 0 : m.sampling.samples),
            limits: SamplingLimits(maxSteps: m.sampling.maxSteps, maxCandidates: m.sampling.maxCandidates, maxSamples: m.sampling.maxSamples, maxBatch: m.sampling.maxBatch),
            threshold: m.reliability?.threshold ?? .infinity, calibrationQuantile: m.reliability?.quantile ?? .nan,
            provenance: provenance)
    }

    /// Loads and validates a model directory (`PolicyBundle.load(directory:)`, the validation
    /// `flowgate inspect` runs too), with its energy check when it ships an energy model and its
    /// risk model when the manifest has a `risk` section.
    public convenience init(directory: String) throws {
        self.init(bundle: try PolicyBundle.load(directory: directory), risk: try RiskModel.load(directory: directory))
    }

    public func flopsPerObservation(_ options: ActOptions) -> Double {
        bundle.flopsPerObservation(
            steps: options.steps, candidates: options.candidates, samples: options.samples,
            check: options.check && bundle.makeChecker != nil)
    }

    public func makeWorker() -> any ModelWorker {
        // BLAS threading is set once by InferenceServer.init, before any worker starts.
        return PolicyWorker(selector: bundle.makeSelector(), defaults: bundle.defaultSettings)
    }

    public func makeWorker(rowsPerPass: Int) -> any ModelWorker {
        let selector = bundle.makeSelector()
        selector.rowsPerPass = max(1, rowsPerPass)
        return PolicyWorker(selector: selector, defaults: bundle.defaultSettings)
    }
}

extension SelectionJob: SplitJob {}

/// One worker thread's action selector. Shared computations (`SplittableWorker`) cut the M
/// candidates (flow sampling and critic) in two halves, then each stage of the check's bank
/// proposals: the
/// argmax and `E_min` are taken over both halves, from the same draws as unshared.
final class PolicyWorker: SplittableWorker {
    let selector: ActionSelector
    let defaults: SelectionSettings
    /// The job this worker begins when it shares a computation (reused).
    private let job: SelectionJob

    init(selector: ActionSelector, defaults: SelectionSettings) {
        self.selector = selector
        self.defaults = defaults
        self.job = selector.newJob()
    }

    private func settings(_ options: ActOptions) -> SelectionSettings {
        var s = defaults
        s.steps = options.steps
        s.candidates = options.candidates
        s.samples = options.samples
        s.check = options.check && selector.checker != nil
        return s
    }

    func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult {
        result(selector.act(observations: observations, count: count, seeds: seeds, settings: settings(options)))
    }

    private func result(_ r: ActionBatch) -> ActResult {
        ActResult(actions: r.actions, confidence: r.confidence, energy: r.energy, q: r.q, reliable: r.reliable)
    }

    func splitPhases(count: Int, options: ActOptions) -> Int {
        selector.splitPhases(count: count, settings: settings(options))
    }

    func beginSplit(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) -> any SplitJob {
        selector.beginSplit(job, observations: observations, count: count, seeds: seeds, settings: settings(options))
        return job
    }

    /// Half 0 is the first ceil(n / 2) of n candidates (or proposals), half 1 the rest.
    private static func half(_ half: Int, of n: Int) -> Range<Int> {
        let cut = (n + 1) / 2
        return half == 0 ? 0..<cut : cut..<n
    }

    private func selectionJob(_ job: any SplitJob) throws -> SelectionJob {
        guard let job = job as? SelectionJob else { throw SplitJobMismatch(type: "\(type(of: job))") }
        return job
    }

    func computeHalf(_ half: Int, phase: Int, of job: any SplitJob) throws {
        let job = try selectionJob(job)
        if phase == 0 {
            selector.computeCandidates(job, range: Self.half(half, of: job.candidatesPerObservation))
        } else {
            let stage = phase - 1
            let proposals = stage < job.stageProposals.count ? job.stageProposals[stage] : 0
            selector.computeProposals(job, stage: stage, range: Self.half(half, of: proposals))
        }
    }

    func join(phase: Int, of job: any SplitJob) throws {
        let job = try selectionJob(job)
        if phase == 0 {
            selector.joinCandidates(job)
        } else {
            selector.joinProposals(job, stage: phase - 1)
        }
    }

    func needsPhase(_ phase: Int, of job: any SplitJob) -> Bool {
        guard phase > 0, let job = job as? SelectionJob else { return true }
        return selector.proposalStageHasWork(job, stage: phase - 1)
    }

    func finishSplit(_ job: any SplitJob) throws -> ActResult { result(selector.finishSplit(try selectionJob(job))) }
}

/// A shared computation's half reached a worker that cannot compute it (a server bug).
struct SplitJobMismatch: Error, CustomStringConvertible {
    let type: String
    var description: String { "a shared computation's half reached a worker or job of the wrong kind (\(type))" }
}
