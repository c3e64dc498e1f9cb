import FlowgateTestSupport
import FlowgateAlgorithms
import FlowgateCore
import Testing

@testable import FlowgateTraining

@Suite("energy training")
struct EnergyTrainingTests {
    /// A tiny configuration that runs in a debug build in a fraction of a second per step.
    static func tinyConfig() -> EnergyTrainingConfig {
        var c = EnergyTrainingConfig()
        c.latentDim = 3
        c.autoencoderHidden = [16]
        c.energyHidden = [16, 16]
        c.autoencoderSteps = 5
        c.autoencoderBatch = 16
        c.energySteps = 6
        c.batchSize = 8
        c.negatives = 4
        c.ambientFraction = 0.5
        c.actionNegatives = 1
        c.gradientPenaltyMargin = 0.05  // small so the penalty (and its HVP) is active
        c.negativeSchedule = LangevinSchedule(steps: 3, initialStepSize: 0.1, noise: 0.01)
        c.ambientSchedule = LangevinSchedule(steps: 3, initialStepSize: 0.05, noise: 0.005, normalizeGradient: false, gradientClip: 1)
        return c
    }

    // The finite-difference Hessian-vector product (ε = 1e-3 in input space) against central
    // differences of the penalty itself in every parameter (ε = 1e-2), smooth SiLU network:
    // measured relative error 2e-4–4e-4; asserted < 1e-2.
    @Test("gradient-penalty parameter gradient (finite-difference Pearlmutter) matches finite differences")
    func penaltyGradient() {
        var rng = RNG(seed: 21)
        let spec = MLPSpec(inputDim: 7, hiddenDims: [12, 12], outputDim: 1, activation: .silu)
        let energy = MLP(spec: spec, prefix: "energy", rng: &rng)
        let rows = 6, xWidth = 3
        let inputs = randomArray(rows * 7, seed: 22, std: 1.5)
        // Margin at half the mean gradient norm, so most rows are active and a few may not be.
        let penalty = EnergyGradientPenalty(margin: 0, epsilon: 1e-3)
        penalty.margin = 0.5 * penalty.accumulate(energy: energy, inputs: inputs, rows: rows, xWidth: xWidth, weight: 0).meanNorm
        func p() -> Double { Double(penalty.accumulate(energy: energy, inputs: inputs, rows: rows, xWidth: xWidth, weight: 0).penalty) }
        energy.parameters.zeroGrad()
        let measured = penalty.accumulate(energy: energy, inputs: inputs, rows: rows, xWidth: xWidth, weight: 1)
        #expect(measured.penalty > 0)
        for param in energy.parameters {
            let analytic = param.grad
            if param.name == "energy.2.bias" {
                // ∇_x E does not depend on the output bias: its penalty gradient is exactly zero.
                #expect(analytic.allSatisfy { abs($0) < 1e-6 })
                continue
            }
            var values = param.value
            let err = relativeGradientError(values: &values, analytic: analytic, epsilon: 1e-2) { v in
                let keep = param.value
                param.value = v
                defer { param.value = keep }
                return p()
            }
            print("penalty HVP gradient \(param.name): relative error \(err)")
            #expect(err < 1e-2, "\(param.name): relative error \(err)")
        }
    }

    @Test("AUROC helper: perfect, reversed, chance and ties")
    func aurocKnownCases() {
        #expect(EnergyEvaluation.auroc(inliers: [1, 2, 3], outliers: [4, 5]) == 1)
        #expect(EnergyEvaluation.auroc(inliers: [4, 5], outliers: [1, 2, 3]) == 0)
        #expect(EnergyEvaluation.auroc(inliers: [1, 1], outliers: [1, 1]) == 0.5)
        // 1 of 4 pairs misordered, one tie: (3 + 0.5) / 6.
        #expect(abs(EnergyEvaluation.auroc(inliers: [1, 3, 2], outliers: [2, 4]) - 4.5 / 6) < 1e-12)
        let roc = EnergyEvaluation.rocCurve(inliers: [1, 2, 3], outliers: [4, 5])
        #expect(roc.first == [0, 0] && roc.last == [1, 1])
    }

    @Test("resuming from stateTensors gives the same weights as an uninterrupted run")
    func resume() throws {
        let data = SyntheticDynamics.dataset(count: 300, seed: 4)
        let config = Self.tinyConfig()
        let straight = EnergyTrainer(config: config, dataset: data, seed: 9)
        try straight.run()
        // Interrupt in the middle of each phase.
        for cut in [(3, 0), (5, 2)] {
            let first = EnergyTrainer(config: config, dataset: data, seed: 9)
            for _ in 0..<cut.0 { _ = try first.autoencoderPhase.step() }
            for _ in 0..<cut.1 { _ = try first.energyPhase.step() }
            let saved = first.phases.map { $0.stateTensors() }
            let second = EnergyTrainer(config: config, dataset: data, seed: 9)
            for (phase, state) in zip(second.phases, saved) { try phase.loadState(state) }
            #expect(second.autoencoderPhase.completedSteps == cut.0 && second.energyPhase.completedSteps == cut.1)
            try second.run()
            #expect(second.model.namedTensors() == straight.model.namedTensors())
            #expect(second.energyPhase.stateTensors() == straight.energyPhase.stateTensors())
        }
    }

    @Test("the latent bank records each entry's source (s, a), and the draw can be rebuilt from the dataset alone")
    func bankSources() throws {
        let data = SyntheticDynamics.dataset(count: 300, seed: 4)
        let trainer = EnergyTrainer(config: Self.tinyConfig(), dataset: data, seed: 9)
        try trainer.run()
        let model = trainer.model
        let d = model.spec.obsDim, k = model.spec.actDim, count = model.latentBank.count / model.spec.latentDim
        #expect(count > 0 && model.hasBankSources)
        // Every source is a training row's normalised state and action, and its latent is that
        // row's next state encoded.
        let trainRows = trainer.observations.count / d
        for j in 0..<count {
            let src = Array(model.bankSources[(j * (d + k))..<((j + 1) * (d + k))])
            let row = (0..<trainRows).first { i in
                Array(trainer.observations[(i * d)..<(i * d + d)]) == Array(src[0..<d])
                    && Array(trainer.actions[(i * k)..<(i * k + k)]) == Array(src[d...])
            }
            #expect(row != nil, "bank entry \(j) has no training source")
        }
        // `flowgate calibrate --nearest` rebuilds the draw from the dataset: the same latents and sources.
        let rebuilt = EnergyLatentBank.rebuilt(
            model: model, dataset: data, normalizer: trainer.normalization, heldOutFraction: trainer.config.heldOutFraction,
            size: count, seed: 9)
        #expect(rebuilt.latents == model.latentBank && rebuilt.sources == model.bankSources)
        // Another seed draws other rows.
        let other = EnergyLatentBank.rebuilt(
            model: model, dataset: data, normalizer: trainer.normalization, heldOutFraction: trainer.config.heldOutFraction,
            size: count, seed: 10)
        #expect(other.sources != model.bankSources)
        #expect(model.latentBank == rebuilt.latents, "rebuilt() puts the model's bank back")
    }
}
