import FlowgateCore

/// A servable model: the manifest plus the networks built from a validated model directory.
///
/// Weights are shared read-only; `makeSelector()` gives each worker thread its own replicas and
/// workspaces.
public final class PolicyBundle: @unchecked Sendable {
    public let manifest: Manifest
    public let transform: PolicyTransform
    public let policy: PolicyNetwork
    /// Optional: baselines (behaviour cloning) have none; then one candidate is drawn and q is NaN.
    public let critic: TwinCritic?
    /// Builds a per-thread energy checker, when the model has an energy network.
    public let makeChecker: (@Sendable () -> TransitionChecker)?

    public init(manifest: Manifest, policy: PolicyNetwork, critic: TwinCritic?, makeChecker: (@Sendable () -> TransitionChecker)?) {
        self.manifest = manifest
        self.policy = policy
        self.critic = critic
        self.makeChecker = makeChecker
        if let probe = makeChecker?() {
            let one = probe.flopsPerPair(samples: 1), two = probe.flopsPerPair(samples: 2)
            checkFlops = (one - (two - one), two - one)
        } else {
            checkFlops = nil
        }
        transform = PolicyTransform(
            observationMean: manifest.normalization.observationMean, observationStd: manifest.normalization.observationStd,
            actionLow: manifest.actionLow, actionHigh: manifest.actionHigh)
    }

    /// Builds the networks of a loaded model directory. `checkerFactory` turns the model into a
    /// checker factory when it has an energy network (the energy model registers itself there).
    public convenience init(model: LoadedModel, checkerFactory: ((LoadedModel) throws -> (@Sendable () -> TransitionChecker)?)? = nil) throws {
        let m = model.manifest
        guard let pn = m.networks[FlowPolicySpec.role], let pt = model.networks[FlowPolicySpec.role] else {
            throw ModelFileError(path: Manifest.fileName, .invalidManifest("model has no '\(FlowPolicySpec.role)' network"))
        }
        let policy: PolicyNetwork
        if pn.kind == DeterministicPolicy.kind {
            guard let spec = pn.mlps["actor"], spec.inputDim == m.observationDim, spec.outputDim == m.actionDim else {
                throw ModelFileError(path: pn.file, .invalidManifest("mlp-policy needs an 'actor' MLP from observation dim \(m.observationDim) to action dim \(m.actionDim)"))
            }
            policy = .deterministic(try DeterministicPolicy(spec: spec, tensors: pt))
        } else {
            policy = .flow(try FlowPolicy(spec: FlowPolicySpec(network: pn, observationDim: m.observationDim, actionDim: m.actionDim), tensors: pt))
        }
        var critic: TwinCritic? = nil
        if let cn = m.networks[CriticSpec.role], let ct = model.networks[CriticSpec.role] {
            critic = try TwinCritic(spec: CriticSpec(network: cn, observationDim: m.observationDim, actionDim: m.actionDim), tensors: ct)
        }
        self.init(manifest: m, policy: policy, critic: critic, makeChecker: try checkerFactory?(model))
    }

    /// Loads, validates and builds a model directory: the one validation `flowgate serve` and
    /// `flowgate inspect` share (files, manifest, tensors, network shapes against the manifest's
    /// dimensions, energy model and calibration). Errors name the file that is wrong.
    public static func load(directory: String) throws -> PolicyBundle {
        let model = try ModelDirectory.load(atPath: directory)
        return try PolicyBundle(model: model, checkerFactory: EnergyTransitionModel.checkerFactory)
    }

    /// Default sampling settings from the manifest.
    public var defaultSettings: SamplingSettings {
        let s = manifest.sampling
        return SamplingSettings(
            steps: s.steps, candidates: s.candidates, samples: s.samples, check: makeChecker != nil, solver: FlowSolver(s.solver),
            selection: CandidateSelection(s.selection), temperature: s.softmaxTemperature)
    }

    /// Floating-point operations for one observation (the server's work budgets): K flow steps of M
    /// candidates through the velocity and time networks, the twin critic on M candidates, and the
    /// energy check of the chosen action with N samples when `check` is set.
    public func flopsPerObservation(steps: Int, candidates: Int, samples: Int, check: Bool) -> Double {
        let m = Double(candidates)
        var total: Double
        switch policy {
        case .flow(let p):
            total = Double(steps) * m * (p.velocityNet.forwardFlopsPerRow + p.timeNet.forwardFlopsPerRow)
        case .deterministic(let p):
            total = p.net.forwardFlopsPerRow
        }
        if let critic { total += m * (critic.q1.forwardFlopsPerRow + critic.q2.forwardFlopsPerRow) }
        if check, let c = checkFlops { total += c.base + c.perSample * Double(max(samples, 1)) }
        return total
    }

    /// The check's cost per pair, affine in the sample count: `base + perSample × N`.
    private let checkFlops: (base: Double, perSample: Double)?

    /// A selector with its own replicas and workspaces, for one thread.
    public func makeSelector() -> ActionSelector {
        let sampler: CandidateSampler
        switch policy {
        case .flow(let p): sampler = FlowSampler(policy: p.replica())
        case .deterministic(let p): sampler = DeterministicSampler(policy: p.replica())
        }
        return ActionSelector(transform: transform, sampler: sampler, critic: critic?.replica(), checker: makeChecker?())
    }
}

/// The policy network of a served model.
public enum PolicyNetwork {
    /// A flow-matching policy (QIPO, or a behaviour-cloning flow).
    case flow(FlowPolicy)
    /// A deterministic regressor (behaviour-cloning baseline).
    case deterministic(DeterministicPolicy)
}
