import FlowgateCore
import FlowgateModelFormat

/// A servable model: the manifest plus the immutable weights of a validated model directory.
///
/// This is the serving side's immutable weights type: it holds only values (specs, tensors of
/// `[Float]`) and a `@Sendable` checker factory, so it is `Sendable` by construction. Networks are
/// built per worker thread by `makeSelector()`; they share the weight storage through Swift's
/// copy-on-write arrays (serving never writes weights) and own their workspaces.
public final class PolicyBundle: Sendable {
    public let manifest: Manifest
    public let transform: PolicyTransform
    /// How to build the policy network.
    public let policySource: PolicySource
    /// The critic's spec and tensors. Optional: baselines (behaviour cloning) have none; then one
    /// candidate is drawn and q is NaN.
    public let criticSource: (spec: CriticSpec, tensors: [String: Tensor])?
    /// Builds a per-thread energy checker, when the model has an energy network.
    public let makeChecker: (@Sendable () -> TransitionChecker)?
    /// FLOPs per row of one forward pass: policy velocity (+ time) network, one critic head.
    private let policyFlops: Double
    private let criticFlops: Double
    /// The check's cost per pair, affine in the sample count: `base + perSample × N`.
    private let checkFlops: (base: Double, perSample: Double)?

    /// Builds (and so validates) every network once, then keeps only the weights.
    public init(
        manifest: Manifest, policy: PolicySource, critic: (spec: CriticSpec, tensors: [String: Tensor])?,
        makeChecker: (@Sendable () -> TransitionChecker)?
    ) throws {
        self.manifest = manifest
        self.policySource = policy
        self.criticSource = critic
        self.makeChecker = makeChecker
        transform = PolicyTransform(
            observationMean: manifest.normalization.observationMean, observationStd: manifest.normalization.observationStd,
            actionLow: manifest.actionLow, actionHigh: manifest.actionHigh)
        switch try policy.build() {
        case .flow(let p): policyFlops = p.velocityNet.forwardFlopsPerRow + p.timeNet.forwardFlopsPerRow
        case .deterministic(let p): policyFlops = p.net.forwardFlopsPerRow
        }
        if let critic {
            let c = try TwinCritic(spec: critic.spec, tensors: critic.tensors)
            criticFlops = c.q1.forwardFlopsPerRow + c.q2.forwardFlopsPerRow
        } else {
            criticFlops = 0
        }
        if let probe = makeChecker?() {
            let one = probe.flopsPerPair(samples: 1), two = probe.flopsPerPair(samples: 2)
            checkFlops = (one - (two - one), two - one)
        } else {
            checkFlops = nil
        }
    }

    /// Builds the networks of a loaded model directory. `checkerFactory` turns the model into a
    /// checker factory when it has an energy network (the energy model registers itself there).
    public convenience init(model: ModelFiles, checkerFactory: ((ModelFiles) throws -> (@Sendable () -> TransitionChecker)?)? = nil) throws {
        let m = model.manifest
        guard let pn = m.networks[FlowPolicySpec.role], let pt = model.networks[FlowPolicySpec.role] else {
            throw ModelFileError(path: Manifest.fileName, .invalidManifest("model has no '\(FlowPolicySpec.role)' network"))
        }
        let policy: PolicySource
        if pn.kind == DeterministicPolicy.kind {
            guard let spec = pn.mlps["actor"], spec.inputDim == m.observationDim, spec.outputDim == m.actionDim else {
                throw ModelFileError(path: Manifest.fileName, .invalidManifest("network '\(FlowPolicySpec.role)' (\(pn.file)): mlp-policy needs an 'actor' MLP from observationDim \(m.observationDim) to actionDim \(m.actionDim)"))
            }
            policy = .deterministic(spec, pt)
        } else {
            policy = .flow(try FlowPolicySpec(network: pn, observationDim: m.observationDim, actionDim: m.actionDim), pt)
        }
        var critic: (spec: CriticSpec, tensors: [String: Tensor])? = nil
        if let cn = m.networks[CriticSpec.role], let ct = model.networks[CriticSpec.role] {
            critic = (try CriticSpec(network: cn, observationDim: m.observationDim, actionDim: m.actionDim), ct)
        }
        try self.init(manifest: m, policy: policy, critic: critic, makeChecker: try checkerFactory?(model))
    }

    /// Loads, validates and builds a model directory: the one validation `flowgate serve` and
    /// `flowgate inspect` share (files, manifest, tensors, network shapes against the manifest's
    /// dimensions, energy model and calibration). Errors name the file that is wrong.
    public static func load(directory: String) throws -> PolicyBundle {
        let model = try ModelDirectory.load(atPath: directory)
        return try PolicyBundle(model: model, checkerFactory: EnergyTransitionModel.checkerFactory)
    }

    /// A fresh critic built from the weights (nil when the model has none).
    public var critic: TwinCritic? { criticSource.flatMap { try? TwinCritic(spec: $0.spec, tensors: $0.tensors) } }

    /// Default sampling settings from the manifest.
    public var defaultSettings: SelectionSettings {
        let s = manifest.sampling
        return SelectionSettings(
            steps: s.steps, candidates: s.candidates, samples: s.samples, check: makeChecker != nil)
    }

    /// Floating-point operations for one observation (the server's work budgets): K flow steps of M
    /// candidates through the velocity and time networks (one pass for a deterministic policy), the
    /// twin critic on M candidates, and the energy check of the chosen action with N samples when
    /// `check` is set.
    public func flopsPerObservation(steps: Int, candidates: Int, samples: Int, check: Bool) -> Double {
        let m = Double(candidates)
        var total: Double
        switch policySource {
        case .flow: total = Double(steps) * m * policyFlops
        case .deterministic: total = policyFlops
        }
        total += m * criticFlops
        if check, let c = checkFlops { total += c.base + c.perSample * Double(max(samples, 1)) }
        return total
    }

    /// A selector with its own networks and workspaces, for one thread. The weights were validated
    /// in `init`, so building them again cannot fail.
    public func makeSelector() -> ActionSelector {
        let sampler: CandidateSampler
        switch try! policySource.build() {
        case .flow(let p): sampler = FlowSampler(policy: p)
        case .deterministic(let p): sampler = DeterministicSampler(policy: p)
        }
        let critic = criticSource.map { try! TwinCritic(spec: $0.spec, tensors: $0.tensors) }
        return ActionSelector(transform: transform, sampler: sampler, critic: critic, checker: makeChecker?())
    }
}

/// The weights of a served policy, by kind.
public enum PolicySource: Sendable {
    case flow(FlowPolicySpec, [String: Tensor])
    case deterministic(MLPSpec, [String: Tensor])

    /// Builds the network (throws when a tensor is missing or has the wrong shape).
    public func build() throws -> PolicyNetwork {
        switch self {
        case .flow(let spec, let tensors): return .flow(try FlowPolicy(spec: spec, tensors: tensors))
        case .deterministic(let spec, let tensors): return .deterministic(try DeterministicPolicy(spec: spec, tensors: tensors))
        }
    }
}

/// The policy network of a served model.
public enum PolicyNetwork {
    /// A flow-matching policy (QIPO, or a behaviour-cloning flow).
    case flow(FlowPolicy)
    /// A deterministic regressor (behaviour-cloning baseline).
    case deterministic(DeterministicPolicy)
}
