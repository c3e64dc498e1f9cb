import Foundation
import FlowgateCore
import FlowgateAlgorithms
import FlowgateModelFormat

/// A complete `flowgate train` run: prepares the data, builds the networks and the phases
/// (behaviour flow → critic support → critic → QIPO → any extra phases such as the energy model),
/// runs them with progress, a JSONL log and atomic checkpoints, and exports a model directory.
public final class TrainingRun {
    public let config: TrainingConfig
    public let dataset: OfflineDataset
    public let data: PreparedData
    public let name: String
    public let policy: FlowPolicy
    public let critic: TwinCritic
    /// The deterministic regressor, when `config.algorithm == .bcRegressor`.
    public let regressor: DeterministicPolicy?
    /// How rewards were scaled (IQL/CEP convention), for the manifest and the log.
    public let rewardScaling: RewardScaling
    public private(set) var phases: [TrainingPhase]
    /// Contributes extra networks, reliability data and manifest fields at export.
    public var exporters: [(inout ModelFiles) throws -> Void] = []

    /// Outcome of `run`.
    public enum Outcome: Equatable { case finished, interrupted }

    /// - Parameter policyTensors: start from these flow-policy weights (an existing model's
    ///   `policy.safetensors`, for `flowgate refine`) instead of a random initialisation.
    public init(
        name: String, dataset: OfflineDataset, config: TrainingConfig, actionLow: [Float]? = nil, actionHigh: [Float]? = nil,
        policyTensors: [String: Tensor]? = nil, criticTensors: [String: Tensor]? = nil
    ) throws {
        self.name = name
        self.config = config
        self.dataset = dataset
        let observationDim = dataset.observationDim, actionDim = dataset.actionDim
        let low = actionLow ?? [Float](repeating: -1, count: actionDim)
        let high = actionHigh ?? [Float](repeating: 1, count: actionDim)
        guard low.count == actionDim, high.count == actionDim, zip(low, high).allSatisfy({ $0 < $1 }) else {
            throw TrainingError.invalidConfig("action bounds must have \(actionDim) entries with low < high")
        }
        for i in 0..<dataset.actions.count {
            let j = i % actionDim
            if dataset.actions[i] < low[j] - 1e-4 || dataset.actions[i] > high[j] + 1e-4 {
                throw TrainingError.invalidData(
                    "\(dataset.source): actions[\(i / actionDim)][\(j)] = \(dataset.actions[i]) is outside the action bounds [\(low[j]), \(high[j])]")
            }
        }
        let normalizer = ObservationNormalizer(dataset: dataset)
        rewardScaling = dataset.rewardScaling()
        data = PreparedData(
            dataset: dataset, observationMean: normalizer.mean, observationStd: normalizer.std, actionLow: low,
            actionHigh: high, rewardScale: rewardScaling.scale)
        var rng = RNG(seed: config.seed)
        let policySpec = FlowPolicySpec(
            observationDim: observationDim, actionDim: actionDim, hiddenDims: config.policy.hiddenDims, activation: config.policy.activation,
            layerNorm: config.policy.layerNorm)
        let randomPolicy = FlowPolicy(spec: policySpec, rng: &rng)
        policy = try policyTensors.map { try FlowPolicy(spec: policySpec, tensors: $0) } ?? randomPolicy
        let criticSpec = CriticSpec(
            observationDim: observationDim, actionDim: actionDim, hiddenDims: config.critic.hiddenDims, activation: config.critic.activation,
            layerNorm: config.critic.layerNorm)
        let randomCritic = TwinCritic(spec: criticSpec, rng: &rng)
        critic = try criticTensors.map { try TwinCritic(spec: criticSpec, tensors: $0) } ?? randomCritic
        let s = config.seed
        if config.algorithm == .bcRegressor {
            var r = RNG(seed: s &+ 5)
            let reg = DeterministicPolicy(
                spec: DeterministicPolicy.spec(observationDim: observationDim, actionDim: actionDim, hiddenDims: config.policy.hiddenDims), rng: &r)
            regressor = reg
            phases = [RegressionPhase(policy: reg, data: data, steps: config.behaviour.steps, batchSize: config.batchSize, learningRate: config.behaviour.learningRate, seed: s &+ 1)]
            return
        }
        regressor = nil
        if config.algorithm == .qipo && config.criticTraining.steps == 0 && config.qipo.steps > 0 {
            throw TrainingError.invalidConfig("QIPO needs a trained critic: criticTraining.steps is 0 but qipo.steps is \(config.qipo.steps)")
        }
        let behaviour = BehaviourFlowPhase(
            policy: policy, data: data, steps: config.behaviour.steps, batchSize: config.batchSize,
            learningRate: config.behaviour.learningRate, seed: s &+ 1)
        let support = SupportGenerationPhase(
            policy: policy, data: data, perState: config.criticTraining.supportSize, flowSteps: config.criticTraining.supportFlowSteps,
            seed: s &+ 2)
        let criticPhase = CriticPhase(critic: critic, data: data, support: support, config: config.criticTraining, batchSize: config.batchSize, seed: s &+ 3)
        let qipo = QIPOPhase(policy: policy, critic: critic, data: data, config: config.qipo, batchSize: config.batchSize, seed: s &+ 4)
        // The reflow teacher's candidates need a trained critic: this run's, or the one loaded with the policy.
        let trainedCritic = config.algorithm != .bcFlow && (config.criticTraining.steps > 0 || criticTensors != nil)
        let reflow = try ReflowPhase(
            policy: policy, critic: trainedCritic ? critic : nil, data: data, config: config.reflow, batchSize: config.batchSize, seed: s &+ 6)
        // Distil and straighten finish the QIPO recipe; a behaviour-cloning baseline has neither.
        var finish: [TrainingPhase] = []
        if config.algorithm == .qipo {
            finish = [
                try ReflowPhase(
                    name: "distil", policy: policy, critic: trainedCritic ? critic : nil, data: data, config: config.distil, batchSize: config.batchSize,
                    seed: s &+ 7),
                try ReflowPhase(
                    name: "straighten", policy: policy, critic: trainedCritic ? critic : nil, data: data, config: config.straighten,
                    batchSize: config.batchSize, seed: s &+ 8),
            ]
        }
        if config.algorithm == .bcFlow || config.criticTraining.steps == 0 {
            phases = ([behaviour] + finish + [reflow]).filter { $0.totalSteps > 0 }
        } else {
            phases = ([behaviour, support, criticPhase, qipo] + finish + [reflow]).filter { $0.totalSteps > 0 }
        }
    }

    /// Appends phases that run after QIPO (e.g. the energy model).
    public func appendPhases(_ extra: [TrainingPhase]) { phases += extra.filter { $0.totalSteps > 0 } }

    /// Steps done across all phases.
    public var completedSteps: Int { phases.reduce(0) { $0 + $1.completedSteps } }
    public var totalSteps: Int { phases.reduce(0) { $0 + $1.totalSteps } }

    // MARK: Checkpoints

    /// The config as canonical JSON (sorted keys), stored in checkpoints and manifests.
    public var configJSON: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: (try? e.encode(config)) ?? Data(), as: UTF8.self)
    }

    /// Writes every phase's state to `path` atomically (temporary file, fsync, rename).
    public func saveCheckpoint(to path: String) throws {
        var all: [String: Tensor] = [:]
        for p in phases { all.merge(p.stateTensors().prefixed(p.name + "/")) { a, _ in a } }
        let meta = [
            "format": "flowgate-checkpoint-1", "config": configJSON, "dataset": dataset.source,
            "phases": phases.map(\.name).joined(separator: ","), "completed_steps": "\(completedSteps)",
        ]
        try Safetensors.write(all, metadata: meta, to: URL(fileURLWithPath: path))
    }

    /// Restores a checkpoint written by `saveCheckpoint`; it must come from the same config and phases.
    ///
    /// - Parameter restartFrom: a phase name: that phase and every later one start afresh with
    ///   this run's config, keeping the earlier phases' results (e.g. retune QIPO without retraining
    ///   the critic). Only the config sections of restarted phases may differ. Networks shared with
    ///   a restarted phase start from the values the checkpoint holds (for QIPO: the policy as it
    ///   was when the checkpoint was written), with fresh optimiser state, caches and step counts.
    public func loadCheckpoint(from path: String, restartFrom: String? = nil) throws {
        let file = try Safetensors.read(contentsOf: URL(fileURLWithPath: path))
        guard file.metadata["format"] == "flowgate-checkpoint-1" else {
            throw TrainingError.checkpoint("\(path): not a flowgate checkpoint")
        }
        var firstRestarted = phases.count
        if let restartFrom {
            guard let i = phases.firstIndex(where: { $0.name == restartFrom }) else {
                throw TrainingError.checkpoint("--restart-from: no phase '\(restartFrom)' in this run (phases: \(phases.map(\.name).joined(separator: ", ")))")
            }
            firstRestarted = i
        }
        if file.metadata["config"] != configJSON {
            // A checkpoint written before a setting existed lacks its key: read onto today's
            // defaults, it is the same run when every setting it does record matches (new settings
            // are added with defaults that keep the old behaviour, e.g. `reflow.steps` 0).
            let saved = file.metadata["config"].flatMap { try? TrainingConfig.recorded(json: Data($0.utf8)) }
            let sameRun = saved == config
            let restartable = restartFrom != nil && saved.map { TrainingRun.sameExceptRestarted($0, config, restarted: Set(phases[firstRestarted...].map(\.name))) } == true
            guard sameRun || restartable else {
                let differences = configDifferences(saved: file.metadata["config"] ?? "", current: configJSON)
                throw TrainingError.checkpoint("\(path): the checkpoint was written with a different config (\(differences.joined(separator: "; "))); resume with the same config and flags, or start a new run")
            }
        }
        // Restarting, only the kept phases must match: a checkpoint written before a later phase
        // existed (e.g. `distil`) can restart from that phase.
        let savedPhases = (file.metadata["phases"] ?? "").split(separator: ",").map(String.init)
        let kept = phases[..<firstRestarted].map(\.name)
        let phasesMatch = restartFrom == nil ? savedPhases == phases.map(\.name) : Array(savedPhases.prefix(kept.count)) == kept
        guard phasesMatch else {
            throw TrainingError.checkpoint("\(path): the checkpoint's phases (\(file.metadata["phases"] ?? "?")) differ from this run's (\(phases.map(\.name).joined(separator: ",")))")
        }
        for p in phases[..<firstRestarted] {
            do { try p.loadState(file.tensors.unprefixed(p.name + "/")) } catch {
                throw TrainingError.checkpoint("\(path): phase \(p.name): \(error)")
            }
        }
    }

    /// Whether two configs agree on everything the kept (not restarted) phases depend on.
    static func sameExceptRestarted(_ a: TrainingConfig, _ b: TrainingConfig, restarted: Set<String>) -> Bool {
        var x = a, y = b
        for c in [\TrainingConfig.logEvery, \TrainingConfig.checkpointEvery] { x[keyPath: c] = 0; y[keyPath: c] = 0 }
        x.sampling = y.sampling
        if restarted.contains("qipo") { x.qipo = y.qipo }
        if restarted.contains("reflow") { x.reflow = y.reflow }
        if restarted.contains("distil") { x.distil = y.distil }
        if restarted.contains("straighten") { x.straighten = y.straighten }
        if restarted.contains("critic") { x.criticTraining = y.criticTraining }
        if restarted.contains("behaviour") { return true }
        return x == y
    }

    // MARK: Running

    /// Runs the remaining steps of every phase.
    ///
    /// - Parameters:
    ///   - checkpointPath: written every `config.checkpointEvery` steps, at each phase end and on interruption.
    ///   - stopRequested: polled between steps (Ctrl-C); when it returns true the run checkpoints and returns `.interrupted`.
    public func run(progress: ProgressReporter?, log: TrainingLog?, checkpointPath: String?, stopRequested: () -> Bool = { false }) throws -> Outcome {
        var sinceCheckpoint = 0
        for p in phases where p.completedSteps < p.totalSteps {
            progress?.begin(phase: p.name, step: p.completedSteps, total: p.totalSteps)
            var window = MetricWindow()
            while p.completedSteps < p.totalSteps {
                if stopRequested() {
                    if let checkpointPath { try saveCheckpoint(to: checkpointPath) }
                    progress?.message("interrupted at \(p.name) step \(p.completedSteps): checkpoint saved")
                    return .interrupted
                }
                let metrics = try p.step()
                for (k, v) in metrics where !v.isFinite {
                    throw TrainingError.invalidData("\(p.name) step \(p.completedSteps): \(k) is \(v); training diverged (lower the learning rate or check the data)")
                }
                window.add(metrics)
                if p.completedSteps % max(config.logEvery, 1) == 0 || p.completedSteps == p.totalSteps {
                    let mean = window.take()
                    log?.record(phase: p.name, step: p.completedSteps, globalStep: completedSteps, metrics: mean)
                    progress?.update(step: p.completedSteps, total: p.totalSteps, metrics: mean)
                }
                sinceCheckpoint += 1
                if let checkpointPath, sinceCheckpoint >= config.checkpointEvery {
                    try saveCheckpoint(to: checkpointPath)
                    sinceCheckpoint = 0
                }
            }
            if let checkpointPath { try saveCheckpoint(to: checkpointPath); sinceCheckpoint = 0 }
        }
        return .finished
    }

    // MARK: Export

    /// The trained model as a validated model directory description.
    public func makeModel(gitCommit: String, datasetSHA256: String?) throws -> ModelFiles {
        let observationDim = data.observationDim, actionDim = data.actionDim
        let s = config.sampling
        let manifest = Manifest(
            name: name, modelVersion: "1", kind: "qipo-flow-policy", observationDim: observationDim, actionDim: actionDim,
            actionLow: data.actionLow, actionHigh: data.actionHigh,
            normalization: .init(observationMean: data.observationMean, observationStd: data.observationStd, rewardScale: data.rewardScale),
            networks: [FlowPolicySpec.role: policy.spec.networkSpec, CriticSpec.role: critic.spec.networkSpec],
            sampling: .init(
                steps: s.steps, candidates: s.candidates, samples: s.samples, solver: .euler, selection: .argmax,
                softmaxTemperature: 1, maxSteps: 64, maxCandidates: 256, maxSamples: 64, maxBatch: 1024),
            reliability: nil,
            provenance: .init(
                dataset: (dataset.source as NSString).lastPathComponent, datasetSHA256: datasetSHA256,
                trainingSteps: Dictionary(uniqueKeysWithValues: phases.map { ($0.name, $0.completedSteps) }), seed: config.seed,
                gitCommit: gitCommit, date: ISO8601DateFormatter().string(from: Date()), flowgateVersion: flowgateVersion,
                config: configJSON))
        var model = ModelFiles(
            manifest: manifest, networks: [FlowPolicySpec.role: policy.namedTensors(), CriticSpec.role: critic.parameters.namedTensors()])
        if let regressor {
            model.manifest.kind = "bc-regressor"
            model.manifest.networks = [FlowPolicySpec.role: regressor.networkSpec]
            model.networks = [FlowPolicySpec.role: regressor.parameters.namedTensors()]
            model.manifest.sampling.candidates = 1
            model.manifest.sampling.steps = 1
        } else if !phases.contains(where: { $0 is CriticPhase }) {
            // A behaviour-cloning flow: no trained critic to ship, one candidate per observation.
            model.manifest.kind = "bc-flow"
            model.manifest.networks.removeValue(forKey: CriticSpec.role)
            model.networks.removeValue(forKey: CriticSpec.role)
            model.manifest.sampling.candidates = 1
        }
        for e in exporters { try e(&model) }
        try model.validate()
        return model
    }
}

/// The metrics of the steps since the last log line. Each training metric is averaged over the
/// steps that reported it; a validation metric (`val_…`) keeps its latest value, because a phase
/// measures it every few hundred steps and repeats it until the next measurement. (Averaging it
/// over the window divided the first measurement of each phase by the steps before it.)
struct MetricWindow {
    private var sums: [String: Double] = [:]
    private var counts: [String: Int] = [:]
    private var latest: [String: Double] = [:]

    mutating func add(_ metrics: [String: Double]) {
        for (k, v) in metrics {
            if k.hasPrefix("val_") {
                latest[k] = v
            } else {
                sums[k, default: 0] += v
                counts[k, default: 0] += 1
            }
        }
    }

    /// The window's values; starts a new window.
    mutating func take() -> [String: Double] {
        var out = latest
        for (k, s) in sums { out[k] = s / Double(counts[k] ?? 1) }
        self = MetricWindow()
        return out
    }
}
