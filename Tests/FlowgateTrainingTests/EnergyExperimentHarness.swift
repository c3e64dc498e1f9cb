import Foundation
import FlowgateCore
import FlowgateTraining
import Testing
import FlowgateModelFormat

/// Not a unit test: the energy-model experiment runner, enabled only when FLOWGATE_ENERGY_DATA is
/// set (see docs/energy-model.md for the exact command). Writes the outcome as JSON.
///
///   FLOWGATE_ENERGY_DATA     "synthetic" or a dataset path (.npz / .hdf5)
///   FLOWGATE_ENERGY_OTHER    optional second dataset scored as off-data states
///   FLOWGATE_ENERGY_CONFIG   optional JSON object overriding EnergyTrainingConfig fields
///   FLOWGATE_ENERGY_OUT      output JSON path (default energy-outcome.json)
///   FLOWGATE_ENERGY_SEED     seed (default 0)
///   FLOWGATE_ENERGY_MODEL    save the trained model tensors (safetensors) here
///   FLOWGATE_ENERGY_LOAD     evaluate these saved tensors instead of training
///   FLOWGATE_ENERGY_STATE_NOISE  std (in observation stds) of the noise for "noisy states" (default 1)
@Suite("energy experiment (opt-in)")
struct EnergyExperimentHarness {
    static let env = ProcessInfo.processInfo.environment

    @Test("run the energy experiment", .enabled(if: env["FLOWGATE_ENERGY_DATA"] != nil))
    func run() throws {
        let source = Self.env["FLOWGATE_ENERGY_DATA"]!
        let data =
            source == "synthetic"
            ? SyntheticDynamics.dataset(count: 20_000, seed: 1) : try OfflineDataset.load(path: source)
        let other = try Self.env["FLOWGATE_ENERGY_OTHER"].map { try OfflineDataset.load(path: $0) }
        var config = EnergyTrainingConfig()
        if let path = Self.env["FLOWGATE_ENERGY_CONFIG"] {
            config = try config.merging(json: Data(contentsOf: URL(fileURLWithPath: path)))
        }
        let seed = UInt64(Self.env["FLOWGATE_ENERGY_SEED"] ?? "0") ?? 0
        let modelPath = Self.env["FLOWGATE_ENERGY_MODEL"]
        let trained = try Self.env["FLOWGATE_ENERGY_LOAD"].map { try Safetensors.read(contentsOf: URL(fileURLWithPath: $0)).tensors }
        let stateNoise = Float(Self.env["FLOWGATE_ENERGY_STATE_NOISE"] ?? "1") ?? 1
        let outcome = try EnergyExperiment.run(
            config: config, dataset: data, other: other, seed: seed, stateNoise: stateNoise,
            clock: { Date().timeIntervalSince1970 }, log: { print($0) }, trained: trained,
            onTrained: { trainer in
                if let modelPath, trained == nil {
                    try? Safetensors.write(trainer.model.namedTensors(), to: URL(fileURLWithPath: modelPath))
                }
            })
        let r = outcome.report
        print("steps/s: autoencoder \(outcome.autoencoderStepsPerSecond), energy \(outcome.energyStepsPerSecond)")
        print("AUROC random actions \(r.aurocRandomActions), noisy states \(r.aurocNoisyStates), other \(r.aurocOtherDataset ?? -1)")
        print("sampler: mean E at data \(r.meanEnergyAtData), mean E_min \(r.meanEMin), miss rate \(r.samplerMissRate), prediction error \(r.predictionError) (no-change \(r.noChangeError))")
        print("reliable rate fresh \(r.reliableRateFresh) (target \(r.calibration.quantile)), random actions \(r.reliableRateRandomActions), scoring \(r.scoringSeconds) s for \(r.rows) rows")
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(outcome).write(to: URL(fileURLWithPath: Self.env["FLOWGATE_ENERGY_OUT"] ?? "energy-outcome.json"))
    }
}
