import Foundation
import FlowgateCore
import FlowgateAlgorithms
import FlowgateModelFormat

/// `flowgate refine`: runs only the reflow phase on an existing model's flow policy and writes a
/// new model directory with the straightened policy, everything else (critic, energy model,
/// reliability and risk sections, sampling defaults) unchanged, and the provenance updated.
///
/// The executable parses flags and calls, in order: `init(modelPath:)`, `config(reflow:)`, `makeRun`,
/// `TrainingRun.run`, then `write(from:to:trainingLog:gitCommit:)`.
public struct ReflowRefinement {
    public let modelPath: String
    public let source: ModelFiles
    /// The config the model was trained with (its provenance), merged over today's defaults.
    public let trainedConfig: TrainingConfig

    /// Loads (and validates) the model; it must hold a flow policy.
    public init(modelPath: String) throws {
        self.modelPath = modelPath
        source = try ModelDirectory.load(atPath: modelPath)
        guard let spec = source.manifest.networks[FlowPolicySpec.role], spec.kind == "flow-velocity" else {
            throw TrainingError.invalidConfig("\(modelPath): refine needs a flow policy; this model's kind is '\(source.manifest.kind)'")
        }
        var c = TrainingConfig()
        var dropped: [String] = []
        if let json = source.manifest.provenance.config {
            do {
                let known = try JSONSerialization.jsonObject(with: JSONEncoder().encode(TrainingConfig())) as! [String: Any]
                guard let saved = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
                    throw TrainingError.invalidConfig("not a JSON object")
                }
                let kept = Self.keepingKnownKeys(saved, known: known, path: "", dropped: &dropped)
                c = try TrainingConfig.recorded(json: JSONSerialization.data(withJSONObject: kept))
            } catch {
                throw TrainingError.invalidConfig("\(modelPath): the manifest's provenance config cannot be read: \(error)")
            }
        }
        trainedConfig = c
        droppedConfigKeys = dropped.sorted()
    }

    /// Keys of the model's recorded config that this version's config no longer has (e.g. a
    /// serving field that moved into the manifest); they are ignored.
    public let droppedConfigKeys: [String]

    static func keepingKnownKeys(_ saved: [String: Any], known: [String: Any], path: String, dropped: inout [String]) -> [String: Any] {
        var r: [String: Any] = [:]
        for (k, v) in saved {
            guard let kv = known[k] else { dropped.append(path + k); continue }
            if let sub = v as? [String: Any], let ksub = kv as? [String: Any] {
                r[k] = keepingKnownKeys(sub, known: ksub, path: path + k + ".", dropped: &dropped)
            } else {
                r[k] = v
            }
        }
        return r
    }

    /// The run's config: the model's own config with only `reflow` training (every other phase at 0 steps).
    public func config(reflow: TrainingConfig.Reflow, overrides: TrainingConfig? = nil) throws -> TrainingConfig {
        var c = overrides ?? trainedConfig
        guard reflow.steps > 0 else { throw TrainingError.invalidConfig("reflow.steps must be positive for refine (got \(reflow.steps))") }
        c.reflow = reflow
        c.distil.steps = 0
        c.straighten.steps = 0
        return Self.policyPhasesSkipped(c)
    }

    /// `c` with the phases before the refined ones (behaviour, critic, QIPO) at 0 steps.
    static func policyPhasesSkipped(_ c: TrainingConfig) -> TrainingConfig {
        var c = c
        c.behaviour.steps = 0
        c.criticTraining.steps = 0
        c.qipo.steps = 0
        return c
    }

    /// The config `refine --distil` starts from, before any `--config` overrides: the model's own,
    /// with today's default `distil` and `straighten` sections when it ran neither (a model trained
    /// before they were the default). Overrides go on top of this, so that a `--config` setting one
    /// field of `distil` keeps the default's other fields, steps included.
    public var distilBase: TrainingConfig {
        var c = trainedConfig
        if c.distil.steps == 0 && c.straighten.steps == 0 {
            c.distil = TrainingConfig.Reflow.distilDefault
            c.straighten = TrainingConfig.Reflow.straightenDefault
        }
        return c
    }

    /// The run's config for `refine --distil`: only the `distil` and `straighten` phases train, with
    /// the settings of `overrides` (default: `distilBase`). Throws when both are at 0 steps.
    public func distilConfig(overrides: TrainingConfig? = nil) throws -> TrainingConfig {
        var c = overrides ?? distilBase
        guard c.distil.steps > 0 || c.straighten.steps > 0 else {
            throw TrainingError.invalidConfig("distil.steps and straighten.steps are both 0: refine --distil has nothing to train")
        }
        c.reflow.steps = 0
        return Self.policyPhasesSkipped(c)
    }

    /// A run that starts from the model's policy weights. The dataset must be the one the model was
    /// trained on (same dimensions and normaliser).
    public func makeRun(dataset: OfflineDataset, config: TrainingConfig, name: String? = nil) throws -> TrainingRun {
        let m = source.manifest
        func notTheDataset() -> TrainingError {
            .invalidData(
                "\(dataset.source) is not the dataset \(modelPath) was trained on (dimensions or normalisation differ; the model records \(m.provenance.dataset))")
        }
        guard m.observationDim == dataset.observationDim, m.actionDim == dataset.actionDim else { throw notTheDataset() }
        let run = try TrainingRun(
            name: name ?? m.name, dataset: dataset, config: config, actionLow: m.actionLow, actionHigh: m.actionHigh,
            policyTensors: source.networks[FlowPolicySpec.role], criticTensors: source.networks[CriticSpec.role])
        let data = run.data
        let same = zip(m.normalization.observationMean + m.normalization.observationStd, data.observationMean + data.observationStd)
            .allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($0)) }
        guard same else { throw notTheDataset() }
        return run
    }

    /// The refined model: the run's policy in place of the source's, provenance updated.
    public func refinedModel(from run: TrainingRun, gitCommit: String, name: String? = nil) throws -> ModelFiles {
        var model = source
        if let name { model.manifest.name = name }
        model.networks[FlowPolicySpec.role] = run.policy.namedTensors()
        var p = model.manifest.provenance
        for phase in run.phases where phase.completedSteps > 0 { p.trainingSteps[phase.name] = phase.completedSteps }
        var recorded = trainedConfig
        for phase in run.phases where phase.completedSteps > 0 {
            switch phase.name {
            case "distil": recorded.distil = run.config.distil
            case "straighten": recorded.straighten = run.config.straighten
            case "reflow": recorded.reflow = run.config.reflow
            default: break
            }
        }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        p.config = String(decoding: try e.encode(recorded), as: UTF8.self)
        p.gitCommit = gitCommit
        p.date = ISO8601DateFormatter().string(from: Date())
        p.flowgateVersion = flowgateVersion
        model.manifest.provenance = p
        try model.validate()
        return model
    }

    /// Writes `model` as a new directory `out`, atomically: assembled in a hidden temporary sibling
    /// (networks, the manifest with the source manifest's extra sections such as `risk`, the source's
    /// training log followed by this run's, `config.json`), then renamed into place.
    /// - Throws: when `out` already exists (nothing is replaced).
    public func write(_ model: ModelFiles, to out: String, trainingLog: String) throws {
        let url = URL(fileURLWithPath: out, isDirectory: true)
        guard !FileManager.default.fileExists(atPath: url.path) else {
            throw TrainingError.io("\(out) already exists; refine writes a new model directory (choose another --out or remove it)")
        }
        let parent = url.deletingLastPathComponent()
        let temp = parent.appendingPathComponent(AtomicFile.temporaryPrefix(for: url) + String(UInt64.random(in: 0...UInt64.max), radix: 36))
        defer { try? FileManager.default.removeItem(at: temp) }
        try ModelDirectory.save(model, to: temp)
        // Sections the Manifest type does not model (the failure-risk model) carry over verbatim.
        let srcURL = URL(fileURLWithPath: modelPath, isDirectory: true)
        let manifestURL = temp.appendingPathComponent(Manifest.fileName)
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: srcURL.appendingPathComponent(Manifest.fileName))) as? [String: Any] ?? [:]
        var written = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as? [String: Any] ?? [:]
        var extra = false
        for (k, v) in original where written[k] == nil { written[k] = v; extra = true }
        if extra {
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: written, options: [.prettyPrinted, .sortedKeys]), to: manifestURL)
        }
        var log = (try? Data(contentsOf: srcURL.appendingPathComponent("training-log.jsonl"))) ?? Data()
        log.append(try Data(contentsOf: URL(fileURLWithPath: trainingLog)))
        try AtomicFile.write(log, to: temp.appendingPathComponent("training-log.jsonl"))
        if let energyLog = try? Data(contentsOf: srcURL.appendingPathComponent(EnergyOnlyTraining.logFileName)) {
            try AtomicFile.write(energyLog, to: temp.appendingPathComponent(EnergyOnlyTraining.logFileName))
        }
        var recorded = trainedConfig
        if let json = model.manifest.provenance.config { recorded = try TrainingConfig.recorded(json: Data(json.utf8)) }
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try e.encode(recorded), to: temp.appendingPathComponent("config.json"))
        try AtomicFile.syncDirectory(temp)
        guard rename(temp.path, url.path) == 0 else {
            throw TrainingError.io("cannot rename \(temp.path) to \(out): \(String(cString: strerror(errno)))")
        }
        try AtomicFile.syncDirectory(parent)
    }
}
