import FlowgateCore
import FlowgateModelFormat

/// A servable model: the manifest plus the immutable weights of a validated model directory.
///
/// This is the serving side's immutable weights type: specs, tensors of `[Float]`, a `@Sendable`
/// checker factory, and the policy and critic built once (`Prototypes`), which nothing ever runs
/// or writes. Each worker thread gets forward-only replicas of them from `makeSelector()`: they
/// share the weights and their transposed copies (`Parameter.transposed()`) and own their
/// workspaces.
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
    /// The networks every selector replicates.
    private let prototypes: Prototypes

    /// The policy and critic built once from the weights. Never run and never written: replicas
    /// (`makeSelector`) only read their specs and share their `Parameter`s, whose values are
    /// immutable here and whose transposed copies are made under a lock, so sharing them across
    /// threads is safe.
    private final class Prototypes: @unchecked Sendable {
        let policy: PolicyNetwork
        let critic: TwinCritic?
        init(policy: PolicyNetwork, critic: TwinCritic?) {
            self.policy = policy
            self.critic = critic
        }
    }

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
        let policyNetwork = try policy.build(forwardOnly: true)
        switch policyNetwork {
        case .flow(let p): policyFlops = p.velocityNet.forwardFlopsPerRow + p.timeNet.forwardFlopsPerRow
        case .deterministic(let p): policyFlops = p.net.forwardFlopsPerRow
        }
        let criticNetwork = try critic.map { try TwinCritic(spec: $0.spec, tensors: $0.tensors, forwardOnly: true) }
        criticFlops = criticNetwork.map { $0.q1.forwardFlopsPerRow + $0.q2.forwardFlopsPerRow } ?? 0
        prototypes = Prototypes(policy: policyNetwork, critic: criticNetwork)
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

    /// A selector with its own networks and workspaces, for one thread: replicas of the
    /// prototypes, sharing their weights. Its policy and critic are forward-only
    /// (`MLP.forwardOnly`): selection never differentiates them, so their workspaces hold two
    /// layers' outputs, not every layer's.
    public func makeSelector() -> ActionSelector {
        let sampler: CandidateSampler
        switch prototypes.policy {
        case .flow(let p): sampler = FlowSampler(policy: p.replica(forwardOnly: true))
        case .deterministic(let p): sampler = DeterministicSampler(policy: p.replica(forwardOnly: true))
        }
        let critic = prototypes.critic.map { $0.replica(forwardOnly: true) }
        return ActionSelector(transform: transform, sampler: sampler, critic: critic, checker: makeChecker?())
    }
}

/// The weights of a served policy, by kind.
public enum PolicySource: Sendable {
    case flow(FlowPolicySpec, [String: Tensor])
    case deterministic(MLPSpec, [String: Tensor])

    /// Builds the network (throws when a tensor is missing or has the wrong shape).
    /// The network (`forwardOnly`: for sampling only, `MLP.forwardOnly`).
    public func build(forwardOnly: Bool = false) throws -> PolicyNetwork {
        switch self {
        case .flow(let spec, let tensors): return .flow(try FlowPolicy(spec: spec, tensors: tensors, forwardOnly: forwardOnly))
        case .deterministic(let spec, let tensors):
            return .deterministic(try DeterministicPolicy(spec: spec, tensors: tensors, forwardOnly: forwardOnly))
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
