import FlowgateAlgorithms
import FlowgateCore

/// Everything `flowgate train` needs to train an MC-ETM energy transition model; every field has a
/// default (algorithms.md §5, sizes chosen by the Hopper measurements in docs/energy-model.md:
/// K = 8 latent negatives with 5 Langevin steps instead of MPDR's 16 × 10, which trains at ~4–6
/// steps/s on one core, plus 4 action negatives started from latent-bank proposals).
public struct EnergyTrainingConfig: Codable, Sendable, Equatable {
    // Architecture.
    public var latentDim: Int = 12
    public var autoencoderHidden: [Int] = [128, 128]
    public var energyHidden: [Int] = [200, 200, 200, 200]
    public var energyActivation: Activation = .relu
    public var target: EnergyModelSpec.ManifoldTarget = .delta
    public var sphericalLatent: Bool = true
    /// How the per-dimension delta scale is measured on the training set.
    public enum DeltaScaling: String, Codable, Sendable {
        /// Standard deviation of Δ (manifold coordinates have unit variance).
        case std
        /// Max |Δ| (ETM: coordinates in [-1, 1]; sensitive to outliers).
        case maxAbs
    }
    public var deltaScaling: DeltaScaling = .std

    // Autoencoder phase.
    public var autoencoderSteps: Int = 2000
    public var autoencoderBatch: Int = 256
    public var autoencoderLearningRate: Float = 1e-3

    // Energy phase.
    public var energySteps: Int = 2000
    public var batchSize: Int = 128
    /// Negatives per positive (K).
    public var negatives: Int = 8
    /// Latent perturbation σ ~ U[min, max] per negative.
    public var sigmaMin: Float = 0.05
    public var sigmaMax: Float = 0.3
    /// Latent Langevin refinement of the negatives (MPDR: 10 steps, step 0.1, noise 0.01).
    public var negativeSchedule: LangevinSchedule = LangevinSchedule(steps: 5, initialStepSize: 0.1, noise: 0.01)
    /// Share of the K negatives drawn instead by ambient Langevin from uniform [-1, 1] (ETM); 0 = none,
    /// 1 = ambient only (the ablation).
    public var ambientFraction: Double = 0
    public var ambientSchedule: LangevinSchedule = .ambientNegatives
    /// Ambient negatives start uniform in [-range, range] and stay clamped there (manifold units:
    /// 1 for `.maxAbs` scaling as in ETM, about 3 for `.std`).
    public var ambientRange: Float = 3
    /// Extra negatives per positive that pair the state with a uniform-random action in [-1, 1] and
    /// a next state found by latent Langevin under that action (not in the MC-ETM recipe: it teaches
    /// the energy that off-data actions have no low-energy next state; 0 disables).
    public var actionNegatives: Int = 4
    /// Where the Langevin refinement of an action negative starts: 0 = the perturbed latent of the
    /// positive's next state; P > 0 = the lowest-energy of P latent-bank proposals under `(s, a~)`,
    /// as the inference sampler does, so training pushes up the wells `E_min` would find.
    public var actionNegativeProposals: Int = 16
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 1e-4
    public var maxGradNorm: Float? = 10
    /// Weight of ETM's gradient-norm penalty `mean(max(0, ||∇_x E|| − margin)²)`; 0 disables.
    public var gradientPenaltyWeight: Float = 1
    public var gradientPenaltyMargin: Float = 5
    /// Finite-difference step of the Hessian-vector product.
    public var gradientPenaltyEpsilon: Float = 1e-2
    /// Weight of `mean(E²)` over positives and negatives (keeps the energy's offset anchored, which
    /// InfoNCE alone leaves free per (s, a)).
    public var energyL2Weight: Float = 0.01

    // Data, calibration and sampling.
    public var heldOutFraction: Double = 0.1
    public var calibrationQuantile: Double = 0.95
    /// At most this many held-out transitions are scored for the calibration.
    public var calibrationRows: Int = 5000
    /// Training next states encoded into the model's latent bank (sampler proposals).
    public var latentBankSize: Int = 2048
    /// The serving check: E_min over the 16 bank entries whose source (s, a) is nearest the row's,
    /// no Langevin step. `flowgate bench check` on the three shipped models (docs/reliability.md,
    /// 2026-12-03): better than 384 random proposals on random actions, noisy states and other data
    /// at 3.9 instead of 92.4 MFLOP (hopper-medium: AUROC 0.981 / 0.975 / 0.994). The schedule
    /// stays for settings with T > 0 (`flowgate calibrate --langevin-steps`).
    public var sampling: EnergySamplingConfig = EnergySamplingConfig(
        samples: 1, schedule: LangevinSchedule(steps: 0, initialStepSize: 0.1, finalStepSize: 0.01, noise: 0.01), proposals: 16,
        nearest: true)

    public init() {}

    /// The model architecture for a dataset's dimensions and delta scale.
    public func spec(obsDim: Int, actDim: Int, deltaScale: [Float]) -> EnergyModelSpec {
        EnergyModelSpec(
            obsDim: obsDim, actDim: actDim, latentDim: latentDim, encoderHidden: autoencoderHidden,
            decoderHidden: autoencoderHidden, autoencoderActivation: .silu, energyHidden: energyHidden,
            energyActivation: energyActivation, target: target, sphericalLatent: sphericalLatent,
            deltaScale: deltaScale)
    }
}
