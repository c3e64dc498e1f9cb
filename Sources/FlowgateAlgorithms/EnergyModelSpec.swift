import FlowgateCore

/// Architecture of an MC-ETM energy transition model (docs/energy-model.md, algorithms.md §5).
///
/// **Coordinates.** Every input the model sees is in the *normalised* space the caller provides:
/// observations are z-scores (`(obs − mean) / std`, the same statistics the policy uses; the trainer
/// returns them as `EnergyInputNormalization`), actions are the environment's bounded actions
/// (usually in [-1, 1]) unchanged. The next state enters the networks in *manifold coordinates*
/// `x`:
/// - `.delta` (recommended): `x = (s'_z − s_z) / deltaScale`, per dimension (ETM scales deltas to
///   about [-1, 1] by the per-dimension max |Δ| over the training data);
/// - `.nextState`: `x = s'_z / deltaScale` (deltaScale usually all ones).
///
/// The autoencoder maps `x → z → x̂`; the energy is an MLP over `concat(s_z, a, x) → scalar`.
public struct EnergyModelSpec: Codable, Sendable, Equatable {
    /// What the learned manifold describes.
    public enum ManifoldTarget: String, Codable, Sendable {
        /// Normalised deltas `(s'_z − s_z) / deltaScale`.
        case delta
        /// Normalised next states `s'_z / deltaScale`.
        case nextState
    }

    public var obsDim: Int
    public var actDim: Int
    /// Latent size of the next-state manifold (8–16 for locomotion).
    public var latentDim: Int
    /// Encoder hidden widths (`x → z`).
    public var encoderHidden: [Int]
    /// Decoder hidden widths (`z → x`).
    public var decoderHidden: [Int]
    /// Activation of both autoencoder networks.
    public var autoencoderActivation: Activation
    /// Energy hidden widths (ETM: 4×200).
    public var energyHidden: [Int]
    /// Energy activation (ETM: ReLU; SiLU gives smoother Langevin gradients).
    public var energyActivation: Activation
    public var target: ManifoldTarget
    /// Project latents onto the unit sphere (MPDR).
    public var sphericalLatent: Bool
    /// Per observation dimension: divisor mapping deltas (or next states) to manifold coordinates.
    public var deltaScale: [Float]

    public init(
        obsDim: Int, actDim: Int, latentDim: Int = 12, encoderHidden: [Int] = [256, 256],
        decoderHidden: [Int] = [256, 256], autoencoderActivation: Activation = .silu,
        energyHidden: [Int] = [200, 200, 200, 200], energyActivation: Activation = .relu,
        target: ManifoldTarget = .delta, sphericalLatent: Bool = true, deltaScale: [Float]? = nil
    ) {
        self.obsDim = obsDim
        self.actDim = actDim
        self.latentDim = latentDim
        self.encoderHidden = encoderHidden
        self.decoderHidden = decoderHidden
        self.autoencoderActivation = autoencoderActivation
        self.energyHidden = energyHidden
        self.energyActivation = energyActivation
        self.target = target
        self.sphericalLatent = sphericalLatent
        self.deltaScale = deltaScale ?? [Float](repeating: 1, count: obsDim)
        precondition(self.deltaScale.count == obsDim, "deltaScale needs \(obsDim) entries")
    }

    /// Encoder `x (obsDim) → z (latentDim)`, stored under `"enc"`.
    public var encoderSpec: MLPSpec {
        MLPSpec(inputDim: obsDim, hiddenDims: encoderHidden, outputDim: latentDim, activation: autoencoderActivation)
    }
    /// Decoder `z (latentDim) → x (obsDim)`, stored under `"dec"`.
    public var decoderSpec: MLPSpec {
        MLPSpec(inputDim: latentDim, hiddenDims: decoderHidden, outputDim: obsDim, activation: autoencoderActivation)
    }
    /// Energy `concat(s, a, x) → E`, stored under `"energy"`.
    public var energySpec: MLPSpec {
        MLPSpec(inputDim: 2 * obsDim + actDim, hiddenDims: energyHidden, outputDim: 1, activation: energyActivation)
    }

    /// Width of the energy input.
    public var energyInputDim: Int { 2 * obsDim + actDim }

    /// Manifold coordinates of `rows` next states: `x = (s' − s) / scale` or `s' / scale`
    /// (all normalised). `s`, `sNext`, `x` are `rows × obsDim`; `x` may alias `sNext`.
    public func toManifold(
        observations s: UnsafePointer<Float>, nextObservations sNext: UnsafePointer<Float>, rows: Int,
        into x: UnsafeMutablePointer<Float>
    ) {
        let d = obsDim
        deltaScale.withUnsafeBufferPointer { sc in
            for r in 0..<rows {
                for j in 0..<d {
                    let i = r * d + j
                    x[i] = (target == .delta ? sNext[i] - s[i] : sNext[i]) / sc[j]
                }
            }
        }
    }

    /// Inverse of `toManifold`: normalised next states from manifold coordinates (`out` may alias `x`).
    public func fromManifold(
        observations s: UnsafePointer<Float>, manifold x: UnsafePointer<Float>, rows: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        let d = obsDim
        deltaScale.withUnsafeBufferPointer { sc in
            for r in 0..<rows {
                for j in 0..<d {
                    let i = r * d + j
                    out[i] = target == .delta ? s[i] + x[i] * sc[j] : x[i] * sc[j]
                }
            }
        }
    }
}
