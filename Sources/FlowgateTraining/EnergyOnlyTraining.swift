import FlowgateModelFormat
import Foundation

/// `flowgate train --energy-only`: trains only the MC-ETM energy model and adds it (network and
/// reliability calibration) to a model directory that already holds a policy trained on the same
/// dataset.
///
/// The executable only parses flags and calls, in order: `policyPhasesSkipped(_:)` on the config,
/// `init` (before the dataset loads), `checkExistingModel(against:)` once the run has prepared the
/// data, `TrainingRun.run`, then `addEnergyModel(from:trainingLog:)`.
public struct EnergyOnlyTraining {
    /// The model directory the energy model is added to, as the user named it (`--out`).
    public let directory: String
    /// The dataset, as the user named it (`--dataset`).
    public let dataset: String
    /// The model as it was when training started; nil while the policy may still be training into
    /// the directory (it is then loaded, and checked, at the end).
    public let existing: ModelFiles?

    /// The file the training log is copied to, beside the model.
    public static let logFileName = "energy-training-log.jsonl"

    /// Loads (and so validates) the model directory when it already holds a manifest.
    /// - Throws: `ModelFileError` when the directory holds an invalid model.
    public init(directory: String, dataset: String) throws {
        self.directory = directory
        self.dataset = dataset
        let url = URL(fileURLWithPath: directory)
        existing =
            FileManager.default.fileExists(atPath: url.appendingPathComponent(Manifest.fileName).path)
            ? try ModelDirectory.load(at: url) : nil
    }

    /// `config` with no behaviour-flow, critic or QIPO steps: only the energy phases train.
    public static func policyPhasesSkipped(_ config: TrainingConfig) -> TrainingConfig {
        var config = config
        config.behaviour.steps = 0
        config.criticTraining.steps = 0
        config.qipo.steps = 0
        config.distil.steps = 0
        config.straighten.steps = 0
        config.reflow.steps = 0
        return config
    }

    /// Checks the model found at the start, if any, against the run's data.
    public func checkExistingModel(against run: TrainingRun) throws {
        if let manifest = existing?.manifest { try checkSameData(manifest, as: run) }
    }

    /// The energy model sees observations normalised exactly as the served policy does, so the
    /// model must have been trained on the same dataset: same dimensions and normaliser.
    /// - Throws: `TrainingError.invalidData` naming both when they differ.
    public func checkSameData(_ manifest: Manifest, as run: TrainingRun) throws {
        let data = run.data
        let same =
            manifest.observationDim == data.observationDim && manifest.actionDim == data.actionDim
            && zip(
                manifest.normalization.observationMean + manifest.normalization.observationStd,
                data.observationMean + data.observationStd
            ).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($0)) }
        guard same else {
            throw TrainingError.invalidData(
                "--energy-only: \(dataset) is not the dataset \(directory) was trained on (dimensions or normalisation differ; the model records \(manifest.provenance.dataset))")
        }
    }

    /// After `run` finished: adds what its exporters produce (the energy network and calibration) and
    /// each phase's step count to the model directory, saves it atomically, and copies the training
    /// log at `logPath` beside it.
    /// - Throws: `TrainingError.checkpoint` when the directory still holds no model (the trained
    ///   energy model is in the checkpoint), `TrainingError.invalidData` when it is another dataset's.
    public func addEnergyModel(from run: TrainingRun, trainingLog logPath: String) throws {
        let url = URL(fileURLWithPath: directory)
        var model: ModelFiles
        do { model = try existing ?? ModelDirectory.load(at: url) } catch {
            throw TrainingError.checkpoint(
                "--energy-only: \(error); the trained energy model is in the checkpoint: rerun with --resume once \(directory) exists")
        }
        try checkSameData(model.manifest, as: run)
        for export in run.exporters { try export(&model) }
        for phase in run.phases { model.manifest.provenance.trainingSteps[phase.name] = phase.completedSteps }
        try ModelDirectory.save(model, to: url)
        try AtomicFile.write(
            try Data(contentsOf: URL(fileURLWithPath: logPath)), to: url.appendingPathComponent(Self.logFileName))
    }
}
