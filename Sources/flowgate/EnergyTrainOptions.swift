import ArgumentParser
import Foundation
import FlowgateCommon
import FlowgateCore
import FlowgateTraining

/// `flowgate train` flags for the MC-ETM energy model (docs/energy-model.md).
struct EnergyTrainOptions: ParsableArguments {
    @Flag(name: .long, help: "Also train the MC-ETM energy transition model and export it with its reliability calibration (from at most 5000 held-out rows drawn at random: calibrationRows in --energy-config).")
    var energy = false

    @Flag(name: .long, help: "Train only the energy model and add it (network + calibration) to the existing model directory --out, trained on the same dataset.")
    var energyOnly = false

    @Option(name: .long, help: "JSON file overriding fields of the energy training config (EnergyTrainingConfig).")
    var energyConfig: String?

    @Option(name: .long, help: "Energy-model InfoNCE steps.") var energySteps: Int?
    @Option(name: .long, help: "Energy-model autoencoder steps.") var energyAutoencoderSteps: Int?

    func validate() throws {
        for (flag, v) in [("--energy-steps", energySteps), ("--energy-autoencoder-steps", energyAutoencoderSteps)] {
            if let v, v < 0 { throw ValidationError("\(flag) must not be negative") }
        }
        if !energy && !energyOnly && (energyConfig != nil || energySteps != nil || energyAutoencoderSteps != nil) {
            throw ValidationError("--energy-config/--energy-steps/--energy-autoencoder-steps need --energy")
        }
    }

    /// The resolved energy config, or nil without `--energy`.
    func resolvedConfig() throws -> EnergyTrainingConfig? {
        guard energy || energyOnly else { return nil }
        var c = EnergyTrainingConfig()
        if let energyConfig { c = try mergeJSONOverrides(path: energyConfig, base: c, flag: "--energy-config") }
        if let energySteps { c.energySteps = energySteps }
        if let energyAutoencoderSteps { c.autoencoderSteps = energyAutoencoderSteps }
        return c
    }

    /// Appends the energy phases to `run` and registers the exporter. The energy model uses the
    /// run's observation normaliser and its actions scaled to [-1, 1], so serving applies the same
    /// transform as the policy.
    func attach(to run: TrainingRun, seed: UInt64) throws {
        guard let config = try resolvedConfig() else { return }
        var data = run.dataset
        data.actions = run.data.actions
        let trainer = EnergyTrainer(
            config: config, dataset: data,
            normalization: ObservationNormalizer(mean: run.data.observationMean, std: run.data.observationStd),
            seed: seed &+ 0xE7)
        run.appendPhases(trainer.phases)
        run.exporters.append { model in trainer.export(into: &model) }
    }
}

/// Merges a JSON file of overrides into `base` (unknown keys are errors, nested objects merge).
func mergeJSONOverrides<T: JSONOverridable>(path: String, base: T, flag: String) throws -> T {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(flag): cannot read \(path)") }
    do { return try base.merging(json: data) } catch { throw ValidationError("\(flag): \(path): \(readableError(error))") }
}
