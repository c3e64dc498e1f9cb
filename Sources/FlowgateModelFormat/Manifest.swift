/// The `manifest.json` of a model directory: what the model is, how to normalise its inputs, which
/// networks it has (and so which tensors each file must hold), how to sample from it, how to judge
/// its reliability, and where it came from.
///
/// See `docs/model-format.md` for the field-by-field description. Load and save it through
/// `Manifest.decode(_:path:)` / `Manifest.encoded()` (or `ModelDirectory`), which validate it.
public struct Manifest: Codable, Sendable, Equatable {
    /// The schema version this build writes and the highest it reads.
    public static let currentSchemaVersion = 1
    /// The manifest's file name inside a model directory.
    public static let fileName = "manifest.json"

    /// Version of the manifest schema (currently 1).
    public var schemaVersion: Int
    /// Human-readable model name, e.g. `"hopper-medium-qipo"`.
    public var name: String
    /// Version of this model (free-form, e.g. `"2025.06.1"`).
    public var modelVersion: String
    /// What kind of model this is, e.g. `"qipo-flow-policy"`.
    public var kind: String
    /// Length of an observation vector.
    public var observationDim: Int
    /// Length of an action vector.
    public var actionDim: Int
    /// Lower action bounds, `actionDim` values.
    public var actionLow: [Float]
    /// Upper action bounds, `actionDim` values, each above the matching lower bound.
    public var actionHigh: [Float]
    /// Input normalisation used during training.
    public var normalization: Normalization
    /// The networks by role name (e.g. `"policy"`, `"critic"`), each stored in its own file.
    public var networks: [String: NetworkSpec]
    /// Sampling defaults and limits.
    public var sampling: Sampling
    /// Reliability check of the energy model, when the model has one.
    public var reliability: Reliability?
    /// Where the model came from.
    public var provenance: Provenance

    /// Creates a manifest with the current schema version.
    public init(
        name: String, modelVersion: String, kind: String, observationDim: Int, actionDim: Int,
        actionLow: [Float], actionHigh: [Float], normalization: Normalization,
        networks: [String: NetworkSpec], sampling: Sampling, reliability: Reliability? = nil,
        provenance: Provenance
    ) {
        self.schemaVersion = Manifest.currentSchemaVersion
        self.name = name
        self.modelVersion = modelVersion
        self.kind = kind
        self.observationDim = observationDim
        self.actionDim = actionDim
        self.actionLow = actionLow
        self.actionHigh = actionHigh
        self.normalization = normalization
        self.networks = networks
        self.sampling = sampling
        self.reliability = reliability
        self.provenance = provenance
    }

    /// Observation normalisation (`(obs - mean) / std`) and reward scaling used in training.
    public struct Normalization: Codable, Sendable, Equatable {
        /// Per-dimension observation mean, `observationDim` values.
        public var observationMean: [Float]
        /// Per-dimension observation standard deviation, `observationDim` positive values.
        public var observationStd: [Float]
        /// Factor applied to rewards during training.
        public var rewardScale: Float

        /// Creates a normalisation.
        public init(observationMean: [Float], observationStd: [Float], rewardScale: Float = 1) {
            self.observationMean = observationMean
            self.observationStd = observationStd
            self.rewardScale = rewardScale
        }
    }

    /// Sampling defaults (what a request gets when it does not say) and the limits a request may ask for.
    public struct Sampling: Codable, Sendable, Equatable {
        /// ODE solver for the flow: only `euler` is served (`midpoint` is read, then refused by `validate`).
        public enum Solver: String, Codable, Sendable, CaseIterable { case euler, midpoint }
        /// How the action is picked among candidates.
        public enum Selection: String, Codable, Sendable, CaseIterable { case argmax, softmax }

        /// Default number of flow integration steps (K).
        public var steps: Int
        /// Default number of candidate actions (M).
        public var candidates: Int
        /// Default number of next-state samples for the energy check (N).
        public var samples: Int
        /// Default solver.
        public var solver: Solver
        /// Default selection rule.
        public var selection: Selection
        /// Temperature of softmax selection (positive).
        public var softmaxTemperature: Float
        /// Largest `steps` a request may ask for.
        public var maxSteps: Int
        /// Largest `candidates` a request may ask for.
        public var maxCandidates: Int
        /// Largest `samples` a request may ask for.
        public var maxSamples: Int
        /// Largest batch of observations in one request.
        public var maxBatch: Int

        /// Creates sampling settings.
        public init(
            steps: Int, candidates: Int, samples: Int, solver: Solver = .euler, selection: Selection = .argmax,
            softmaxTemperature: Float = 1, maxSteps: Int, maxCandidates: Int, maxSamples: Int, maxBatch: Int
        ) {
            self.steps = steps
            self.candidates = candidates
            self.samples = samples
            self.solver = solver
            self.selection = selection
            self.softmaxTemperature = softmaxTemperature
            self.maxSteps = maxSteps
            self.maxCandidates = maxCandidates
            self.maxSamples = maxSamples
            self.maxBatch = maxBatch
        }
    }

    /// Energy-model reliability calibration.
    public struct Reliability: Codable, Sendable, Equatable {
        /// E_min above which a transition is flagged unreliable.
        public var threshold: Float
        /// The held-out quantile the threshold was set at, in (0, 1), e.g. 0.95.
        public var quantile: Float
        /// Sorted (non-decreasing) held-out E_min values or a quantile table, used to turn an E_min
        /// into a tail probability.
        public var calibration: [Float]
        /// Number of held-out transitions the calibration was computed from.
        public var heldOutCount: Int
        /// Staged proposals only: the E_min (at most `threshold`) at or below which a row stops
        /// after the first stage; absent, rows stop at `threshold`.
        public var exitEnergy: Float?

        /// Creates a reliability calibration.
        public init(threshold: Float, quantile: Float, calibration: [Float], heldOutCount: Int, exitEnergy: Float? = nil) {
            self.threshold = threshold
            self.quantile = quantile
            self.calibration = calibration
            self.heldOutCount = heldOutCount
            self.exitEnergy = exitEnergy
        }
    }

    /// Where the model came from.
    public struct Provenance: Codable, Sendable, Equatable {
        /// Dataset name or path.
        public var dataset: String
        /// SHA-256 of the dataset file, hex, when known.
        public var datasetSHA256: String?
        /// Training steps per trainer (e.g. `["behavior": 100000, "critic": 200000]`).
        public var trainingSteps: [String: Int]
        /// The training seed.
        public var seed: UInt64
        /// Git commit of the code that trained the model.
        public var gitCommit: String
        /// Training date, ISO 8601.
        public var date: String
        /// flowgate version that trained the model.
        public var flowgateVersion: String
        /// The full training configuration, as a free-form JSON string.
        public var config: String?

        /// Creates a provenance record.
        public init(
            dataset: String, datasetSHA256: String? = nil, trainingSteps: [String: Int], seed: UInt64,
            gitCommit: String, date: String, flowgateVersion: String, config: String? = nil
        ) {
            self.dataset = dataset
            self.datasetSHA256 = datasetSHA256
            self.trainingSteps = trainingSteps
            self.seed = seed
            self.gitCommit = gitCommit
            self.date = date
            self.flowgateVersion = flowgateVersion
            self.config = config
        }
    }
}
