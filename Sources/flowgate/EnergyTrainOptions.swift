import ArgumentParser
import Foundation
import FlowgateCore
import FlowgateTraining

/// `flowgate train` flags for the MC-ETM energy model (docs/energy-model.md).
struct EnergyTrainOptions: ParsableArguments {
    @Flag(name: .long, help: "Also train the MC-ETM energy transition model and export it with its reliability calibration.")
    var energy = false

    @Option(name: .long, help: "JSON file overriding fields of the energy training config (EnergyTrainingConfig).")
    var energyConfig: String?

    @Option(name: .long, help: "Energy-model InfoNCE steps.") var energySteps: Int?
    @Option(name: .long, help: "Energy-model autoencoder steps.") var energyAutoencoderSteps: Int?

    func validate() throws {
        for (flag, v) in [("--energy-steps", energySteps), ("--energy-autoencoder-steps", energyAutoencoderSteps)] {
            if let v, v < 0 { throw ValidationError("\(flag) must not be negative") }
        }
        if !energy && (energyConfig != nil || energySteps != nil || energyAutoencoderSteps != nil) {
            throw ValidationError("--energy-config/--energy-steps/--energy-autoencoder-steps need --energy")
        }
    }

    /// The resolved energy config, or nil without `--energy`.
    func resolvedConfig() throws -> EnergyTrainingConfig? {
        guard energy else { return nil }
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

/// Merges a JSON object of overrides into `base` (unknown keys are errors, nested objects merge).
func mergeJSONOverrides<T: Codable>(path: String, base: T, flag: String) throws -> T {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(flag): cannot read \(path)") }
    guard let overrides = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw ValidationError("\(flag): \(path) is not a JSON object")
    }
    let baseObject = try JSONSerialization.jsonObject(with: JSONEncoder().encode(base)) as! [String: Any]
    func merge(_ b: [String: Any], _ o: [String: Any], at prefix: String) throws -> [String: Any] {
        var r = b
        for (k, v) in o {
            guard let existing = b[k] else { throw ValidationError("\(flag): unknown key '\(prefix)\(k)'") }
            if let eb = existing as? [String: Any], let ov = v as? [String: Any] {
                r[k] = try merge(eb, ov, at: prefix + k + ".")
            } else {
                r[k] = v
            }
        }
        return r
    }
    let merged = try merge(baseObject, overrides, at: "")
    do {
        return try JSONDecoder().decode(T.self, from: JSONSerialization.data(withJSONObject: merged))
    } catch {
        throw ValidationError("\(flag): \(path): \(error)")
    }
}
