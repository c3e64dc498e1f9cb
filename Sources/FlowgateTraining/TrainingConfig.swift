import Foundation
import FlowgateCore
import FlowgateAlgorithms

/// Every hyperparameter of a `flowgate train` run. Defaults follow ../shared/algorithms.md (CEP /
/// QGPO critic, QIPO improvement), scaled to what trains in minutes on a 2-core machine; a JSON
/// file can override any field, and the resolved config is saved in the model directory.
public struct TrainingConfig: Codable, Sendable, Equatable {
    /// What to train: "qipo" (behaviour flow → critic → QIPO), or a baseline: "bc-flow" (the
    /// behaviour flow alone, no critic) or "bc-regressor" (deterministic MLP regression). Baselines
    /// train for `behaviour.steps` steps.
    public var algorithm: Algorithm = .qipo
    public enum Algorithm: String, Codable, Sendable, CaseIterable { case qipo, bcFlow = "bc-flow", bcRegressor = "bc-regressor" }
    public var seed: UInt64 = 0
    public var batchSize: Int = 256
    /// Log a metrics line every this many steps.
    public var logEvery: Int = 100
    /// Write a checkpoint every this many steps (across phases).
    public var checkpointEvery: Int = 2000

    public var policy = PolicyNet()
    public var critic = CriticNet()
    public var behaviour = Behaviour()
    public var criticTraining = CriticTraining()
    public var qipo = QIPO()
    /// After QIPO: distil the critic's best of 16 one-step samples into the policy (a `ReflowPhase`
    /// whose endpoints the critic chooses; see `Reflow.distilDefault`). Runs for `algorithm` qipo only.
    public var distil = Reflow.distilDefault
    /// After `distil`: straighten the distilled flow (plain reflow on its own 8-step samples), so that
    /// K = 1 lands where K = 8 does. Runs for `algorithm` qipo only.
    public var straighten = Reflow.straightenDefault
    /// A further, free-form reflow phase after those (see `ReflowPhase`); 0 steps by default, and
    /// the only one a `bc-flow` run can use.
    public var reflow = Reflow()
    public var sampling = Sampling()

    public struct PolicyNet: Codable, Sendable, Equatable {
        public var hiddenDims: [Int] = [256, 256, 256]
        public var activation: Activation = .silu
        public var layerNorm: Bool = false
        public init() {}
    }

    public struct CriticNet: Codable, Sendable, Equatable {
        public var hiddenDims: [Int] = [256, 256, 256]
        public var activation: Activation = .relu
        public var layerNorm: Bool = false
        public init() {}
    }

    /// Behaviour flow warm-up (flow matching on the data).
    /// 30k steps (and 30k critic steps, critic support 8): the shipped hopper-medium's numbers. With
    /// 20k / 20k / support 16 the default run fell in every hopper-medium episode (score 15–23); the
    /// same code with these numbers scored 86–103 at every K (docs/training.md, 2026-12-02).
    public struct Behaviour: Codable, Sendable, Equatable {
        public var steps: Int = 30_000
        public var learningRate: Float = 3e-4
        public init() {}
    }

    /// In-support softmax Q-learning.
    public struct CriticTraining: Codable, Sendable, Equatable {
        public var steps: Int = 30_000
        public var learningRate: Float = 3e-4
        public var gamma: Float = 0.99
        public var tau: Float = 0.005
        /// M actions per next state sampled from the behaviour flow (generated once).
        public var supportSize: Int = 8
        /// Flow steps used to generate the support set.
        public var supportFlowSteps: Int = 8
        /// beta_Q of the soft in-support value.
        public var betaQ: Float = 1
        public init() {}
    }

    /// QIPO policy improvement (energy-weighted flow matching).
    public struct QIPO: Codable, Sendable, Equatable {
        public var steps: Int = 20_000
        public var learningRate: Float = 3e-4
        /// beta of the softmax(beta · Q / qScale) weights.
        public var beta: Float = 3
        /// M policy samples per state in the support set (plus the dataset action).
        public var supportSize: Int = 16
        /// Resample support sets from the current policy every K_renew steps.
        public var renewEvery: Int = 5000
        /// Flow steps used to sample support actions.
        public var supportFlowSteps: Int = 8
        /// Pairs trained per state and step. 0 trains all M + 1 pairs with their softmax weights
        /// (the paper's loss as written); k > 0 draws k pairs per state with probability g_ij and
        /// trains them unweighted — the same expected gradient at (M + 1) / k times less compute.
        public var pairsPerState: Int = 2
        /// Divide Q by the mean within-state standard deviation of Q over support sets (estimated
        /// on 2048 states when the phase starts) before weighting, so beta is measured in units of
        /// how much Q varies between candidate actions, whatever the reward scale.
        public var normalizeQ: Bool = true
        public init() {}
    }

    /// Serving defaults written into the manifest.
    public struct Sampling: Codable, Sendable, Equatable {
        public var steps: Int = 4
        public var candidates: Int = 16
        public var samples: Int = 8
        public init() {}
    }

    public init() {}

    /// A config recorded by an earlier version (a checkpoint's or a model's provenance), read onto
    /// today's defaults except for the phases and fields added since, which keep the behaviour of
    /// the run that wrote it: a recorded config without `distil` or `straighten` ran neither (0
    /// steps), and a reflow-kind section without `annealShare` ran at a constant rate (0).
    public static func recorded(json: Data) throws -> TrainingConfig {
        var base = TrainingConfig()
        base.distil.steps = 0
        base.straighten.steps = 0
        base.distil.annealShare = 0
        base.straighten.annealShare = 0
        base.reflow.annealShare = 0
        return try base.merging(json: json)
    }

    /// Reward preprocessing, optimiser details etc. that do not vary by task live in the phases.
    /// Per-task defaults: the task name is the dataset file's stem (e.g. "hopper-medium").
    public static func defaults(task: String) -> TrainingConfig {
        var c = TrainingConfig()
        if task.contains("pendulum") {
            c.policy.hiddenDims = [128, 128]
            c.critic.hiddenDims = [128, 128]
        }
        return c
    }
}
