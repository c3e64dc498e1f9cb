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

/// One worker thread's action selector.
final class PolicyWorker: ModelWorker {
    let selector: ActionSelector
    let defaults: SelectionSettings

    init(selector: ActionSelector, defaults: SelectionSettings) {
        self.selector = selector
        self.defaults = defaults
    }

    func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult {
        var s = defaults
        s.steps = options.steps
        s.candidates = options.candidates
        s.samples = options.samples
        s.check = options.check && selector.checker != nil
        let r = selector.act(observations: observations, count: count, seeds: seeds, settings: s)
        return ActResult(actions: r.actions, confidence: r.confidence, energy: r.energy, q: r.q, reliable: r.reliable)
    }
}
