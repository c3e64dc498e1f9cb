import FlowgateCore

/// MC-ETM energy transition model: an autoencoder that spans the manifold of next states (in the
/// manifold coordinates of `EnergyModelSpec`) and a conditional energy `E(s, a, x)`.
///
/// Low energy means "this next state is what the data says follows (s, a)". Networks and tensor
/// names: `encoder` under `"enc"`, `decoder` under `"dec"`, `energy` under `"energy"` (see
/// `MLPSpec` for the per-layer names). Parameters are shared with every `EnergySampler` built from
/// this model, so optimiser steps are visible to samplers immediately; do not step the optimiser
/// while a sampler runs on another thread.
public final class EnergyTransitionModel {
    public let spec: EnergyModelSpec
    public let encoder: MLP
    public let decoder: MLP
    public let energy: MLP
    /// Latent codes of training next states (`count × latentDim`, row-major), used by samplers to
    /// start Langevin near the data manifold; empty when not computed. Samplers copy it when built.
    public var latentBank: [Float] = []
    /// Where each bank entry came from: the training transition's `(s, a)` (`count × (obsDim +
    /// actDim)`, z-scored state then the action in [-1, 1]), so that a sampler can propose the entries
    /// whose sources are nearest a queried `(s, a)` (`EnergySamplingConfig.nearest`); empty when
    /// not recorded (models trained before 2026-12-03 until `flowgate calibrate --nearest` adds it).
    public var bankSources: [Float] = []

    /// Fresh networks (PyTorch default initialisation) drawn from `rng`.
    public init(spec: EnergyModelSpec, rng: inout RNG) {
        self.spec = spec
        encoder = MLP(spec: spec.encoderSpec, prefix: "enc", rng: &rng)
        decoder = MLP(spec: spec.decoderSpec, prefix: "dec", rng: &rng)
        energy = MLP(spec: spec.energySpec, prefix: "energy", rng: &rng)
    }

    /// Networks from named tensors (as saved by `namedTensors()`); throws when one is missing or
    /// has the wrong shape.
    public init(spec: EnergyModelSpec, tensors: [String: Tensor]) throws {
        self.spec = spec
        encoder = try MLP(spec: spec.encoderSpec, prefix: "enc", tensors: tensors)
        decoder = try MLP(spec: spec.decoderSpec, prefix: "dec", tensors: tensors)
        energy = try MLP(spec: spec.energySpec, prefix: "energy", tensors: tensors)
    }

    /// Encoder and decoder parameters (trained first, by reconstruction).
    public var autoencoderParameters: [Parameter] { encoder.parameters + decoder.parameters }
    /// Energy parameters (trained by InfoNCE against latent-manifold negatives).
    public var energyParameters: [Parameter] { energy.parameters }
    /// Every parameter, in a stable order.
    public var parameters: [Parameter] { autoencoderParameters + energyParameters }

    /// Name → tensor map of every parameter (for the model directory).
    public func namedTensors() -> [String: Tensor] { parameters.namedTensors() }

    /// Energies of `rows` transitions given in normalised coordinates (allocates; for tests and
    /// evaluation, not the serving hot path). `observations`/`nextObservations` are
    /// `rows × obsDim`, `actions` `rows × actDim`.
    public func energies(observations: [Float], actions: [Float], nextObservations: [Float], rows: Int) -> [Float] {
        let d = spec.obsDim, k = spec.actDim
        precondition(observations.count == rows * d && nextObservations.count == rows * d && actions.count == rows * k)
        var x = [Float](repeating: 0, count: rows * d)
        observations.withUnsafeBufferPointer { s in
            nextObservations.withUnsafeBufferPointer { sn in
                x.withUnsafeMutableBufferPointer { spec.toManifold(observations: s.baseAddress!, nextObservations: sn.baseAddress!, rows: rows, into: $0.baseAddress!) }
            }
        }
        var input = [Float](repeating: 0, count: rows * spec.energyInputDim)
        observations.withUnsafeBufferPointer { s in
            actions.withUnsafeBufferPointer { a in
                x.withUnsafeBufferPointer { xp in
                    input.withUnsafeMutableBufferPointer {
                        Columns.concat([(s.baseAddress!, d), (a.baseAddress!, k), (xp.baseAddress!, d)], rows: rows, into: $0.baseAddress!)
                    }
                }
            }
        }
        return energy.replica().forward(input, batch: rows)
    }
}
