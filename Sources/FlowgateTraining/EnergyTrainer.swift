import FlowgateAlgorithms
import FlowgateCore
import FlowgateModelFormat

/// Trains an MC-ETM energy transition model on an offline dataset, in two `TrainingPhase`s:
/// 1. `"energy-autoencoder"`: L2 reconstruction of manifold coordinates (normalised deltas or next
///    states) through a (spherical) latent;
/// 2. `"energy"`: InfoNCE of each real transition against K hard negatives made by perturbing its
///    latent code and running latent Langevin under the current energy (optionally mixed with
///    ambient Langevin negatives), plus ETM's gradient-norm penalty with an exact-in-the-limit
///    Hessian-vector product (`EnergyGradientPenalty`) and a small energy-magnitude term.
///
/// The dataset is split once (`heldOutFraction`, seeded); `heldOut` is used by `calibrate`.
/// Deterministic given the seed; each phase's `stateTensors` covers what resuming needs.
public final class EnergyTrainer {
    public let config: EnergyTrainingConfig
    public let normalization: ObservationNormalizer
    public let model: EnergyTransitionModel
    /// Training and held-out parts of the dataset (raw, unnormalised).
    public let train: OfflineDataset
    public let heldOut: OfflineDataset
    public let seed: UInt64
    public let autoencoderPhase: EnergyAutoencoderPhase
    public let energyPhase: EnergyModelPhase
    /// Mixed into the seed of the train/held-out split, so it differs from the other phases' draws.
    public static let splitSeedSalt: UInt64 = 0x5EED_0E7A

    /// Normalised training matrices shared by the phases.
    let observations: [Float]
    let actions: [Float]
    let manifold: [Float]

    /// Splits `dataset`, fits the normalisation (unless given; pass the policy's so train and serve
    /// share it) and the delta scale on the training part, and builds the model and both phases.
    /// Actions must already be in the policy's [-1, 1] range (they are used as they are).
    public init(
        config: EnergyTrainingConfig, dataset: OfflineDataset, normalization: ObservationNormalizer? = nil,
        seed: UInt64
    ) {
        self.config = config
        self.seed = seed
        let parts = dataset.split(heldOutFraction: config.heldOutFraction, seed: seed ^ Self.splitSeedSalt)
        train = parts.train
        heldOut = parts.heldOut
        let norm = normalization ?? ObservationNormalizer(dataset: parts.train)
        self.normalization = norm
        let d = dataset.observationDim, n = train.count
        let s = norm.applied(to: train.observations), sn = norm.applied(to: train.nextObservations)
        // Delta scale per dimension: std or max |·| of Δ (or of s' for the next-state manifold).
        var scale = [Float](repeating: 1, count: d)
        for j in 0..<d {
            let column = (0..<n).map { i in config.target == .delta ? sn[i * d + j] - s[i * d + j] : sn[i * d + j] }
            switch config.deltaScaling {
            case .maxAbs:
                scale[j] = column.reduce(0) { max($0, abs($1)) }
            case .std:
                let mean = column.reduce(0.0) { $0 + Double($1) } / Double(max(n, 1))
                let v = column.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(max(n, 1))
                scale[j] = Float(v.squareRoot())
            }
            scale[j] = max(scale[j], 1e-6)
        }
        let spec = config.spec(obsDim: d, actDim: dataset.actionDim, deltaScale: scale)
        var x = [Float](repeating: 0, count: n * d)
        spec.toManifold(observations: s, nextObservations: sn, rows: n, into: &x)
        observations = s
        actions = train.actions
        manifold = x
        var rng = RNG(seed: seed)
        model = EnergyTransitionModel(spec: spec, rng: &rng)
        autoencoderPhase = EnergyAutoencoderPhase(model: model, manifold: x, config: config, rng: rng.derived(1))
        energyPhase = EnergyModelPhase(
            model: model, observations: s, actions: train.actions, manifold: x, config: config, rng: rng.derived(2),
            bankSeed: seed)
    }

    /// The phases in the order `flowgate train` runs them.
    public var phases: [any TrainingPhase] { [autoencoderPhase, energyPhase] }

    /// Entry point for `flowgate train`: the phases for `dataset` (use `EnergyTrainer.init` to keep a
    /// handle on the model, the normalisation and `calibrate`).
    public static func phases(
        config: EnergyTrainingConfig, dataset: OfflineDataset, normalizer: ObservationNormalizer?, seed: UInt64
    ) -> [any TrainingPhase] {
        EnergyTrainer(config: config, dataset: dataset, normalization: normalizer, seed: seed).phases
    }

    /// Runs every remaining step of both phases, calling `progress` with each step's metrics.
    public func run(progress: ((String, Int, [String: Double]) -> Void)? = nil) throws {
        for phase in phases {
            while phase.completedSteps < phase.totalSteps {
                let m = try phase.step()
                progress?(phase.name, phase.completedSteps, m)
            }
        }
    }

    /// Fills `model.latentBank` from the final autoencoder (see `EnergyLatentBank`); the energy
    /// phase does this on its first step, calibration does it if still missing.
    public func computeLatentBank() {
        EnergyLatentBank.fill(
            model: model, observations: observations, actions: actions, manifold: manifold, size: config.latentBankSize, seed: seed)
    }

    /// Adds the energy network (`energy.safetensors`) and the reliability calibration (computed now
    /// on the held-out split) to a model directory being exported by `TrainingRun`.
    public func export(into loaded: inout ModelFiles) {
        let calibration = calibrate()
        loaded.manifest.networks[EnergyModelSpec.role] = model.networkSpec(sampling: config.sampling)
        loaded.networks[EnergyModelSpec.role] = model.fileTensors()
        loaded.manifest.reliability = calibration.manifestValue
        loaded.manifest.sampling.samples = config.sampling.samples
    }

    /// The rows of `data` in a fixed pseudo-random order. Datasets are often ordered in time (a
    /// replay buffer runs from a random policy to a trained one), and a split keeps that order, so
    /// "the first n held-out rows" would be the oldest data: calibration takes its rows from this
    /// order instead (on hopper-medium-replay the first 5000 held-out rows calibrated a threshold
    /// that passed 98.7 % of the later ones instead of 95 %).
    public static func shuffled(_ data: OfflineDataset) -> OfflineDataset {
        var idx = Array(0..<data.count)
        var rng = RNG(seed: 0xCA1B_5EED)
        rng.shuffle(&idx)
        return data.subset(idx)
    }

    /// `E_min` of held-out real transitions (at most `config.calibrationRows` of them, drawn at
    /// random: `shuffled`) → reliability threshold and confidence table.
    public func calibrate(heldOut data: OfflineDataset? = nil, seedBase: UInt64 = 0xCA1B) -> ReliabilityCalibration {
        if model.latentBank.isEmpty { computeLatentBank() }
        var d = Self.shuffled(data ?? heldOut)
        if d.count > config.calibrationRows { d = d.subset(Array(0..<config.calibrationRows)) }
        return EnergyScoring.calibration(
            model: model, sampling: config.sampling, normalization: normalization, observations: d.observations,
            actions: d.actions, seedBase: seedBase, quantile: config.calibrationQuantile)
    }
}

/// Scoring helpers shared by calibration, evaluation and tests.
public enum EnergyScoring {
    /// `E_min` for each row of raw (unnormalised) observations and actions, in chunks of `chunk`
    /// rows; row `i` uses seed `seedBase + i`.
    ///
    /// `exitEnergy`: with staged proposals (`sampling.firstProposals`), the energy at which a row
    /// stops after the first stage, as the server's check does with its threshold; nil scores
    /// every proposal.
    public static func eMin(
        model: EnergyTransitionModel, sampling: EnergySamplingConfig, normalization: ObservationNormalizer,
        observations: [Float], actions: [Float], seedBase: UInt64, chunk: Int = 256, exitEnergy: Float? = nil
    ) -> [Float] {
        score(
            model: model, sampling: sampling, normalization: normalization, observations: observations, actions: actions,
            seedBase: seedBase, chunk: chunk, exitEnergy: exitEnergy
        ).eMin
    }

    /// The reliability calibration of `sampling` on held-out real transitions. Unstaged: the
    /// `quantile` of their `E_min`. Staged (`sampling.firstProposals`): the threshold is that of
    /// every proposal scored (rows stop at it, which changes no flag), and the confidence table
    /// comes from the `E_min` the staged check reports with that threshold, so a row's confidence
    /// is calibrated against what the server computes. Rows stop at the `exitQuantile` (at most
    /// `quantile`; nil: `quantile`) of the held-out `E_min` with every proposal scored: a lower
    /// one sends rows near the threshold on to the rest of the proposals, so their `E_min` (and
    /// confidence) rank as finely as the full check's.
    public static func calibration(
        model: EnergyTransitionModel, sampling: EnergySamplingConfig, normalization: ObservationNormalizer,
        observations: [Float], actions: [Float], seedBase: UInt64, quantile: Double, exitQuantile: Double? = nil
    ) -> ReliabilityCalibration {
        let full = eMin(
            model: model, sampling: sampling, normalization: normalization, observations: observations, actions: actions,
            seedBase: seedBase)
        let unstaged = ReliabilityCalibration(heldOutEMin: full, quantile: quantile)
        guard sampling.firstProposals > 0, sampling.firstProposals < sampling.proposals else { return unstaged }
        let exit = exitQuantile.map { ReliabilityCalibration.quantile(full.sorted(), min($0, quantile)) }
        let stageExit = min(exit ?? unstaged.threshold, unstaged.threshold)
        let staged = eMin(
            model: model, sampling: sampling, normalization: normalization, observations: observations, actions: actions,
            seedBase: seedBase, exitEnergy: stageExit)
        let table = ReliabilityCalibration(heldOutEMin: staged, quantile: quantile, tableSize: unstaged.table.count).table
        return ReliabilityCalibration(
            quantile: quantile, threshold: unstaged.threshold, table: table, heldOutCount: staged.count,
            exitEnergy: exit.map { _ in stageExit })
    }

    /// Like `eMin`, also returning the lowest-energy next state per row (raw units) and the spread
    /// (normalised units).
    public static func score(
        model: EnergyTransitionModel, sampling: EnergySamplingConfig, normalization: ObservationNormalizer,
        observations: [Float], actions: [Float], seedBase: UInt64, chunk: Int = 256, exitEnergy: Float? = nil
    ) -> EnergySampler.Result {
        let d = model.spec.obsDim, k = model.spec.actDim
        let n = observations.count / d
        let s = normalization.applied(to: observations)
        let sampler = EnergySampler(model: model, config: sampling, frozenEnergy: true)
        sampler.exitEnergy = exitEnergy
        var out = EnergySampler.Result(eMin: [], predictedNext: [], spread: [])
        var start = 0
        while start < n {
            let end = min(start + chunk, n)
            let r = sampler.evaluate(
                observations: Array(s[(start * d)..<(end * d)]), actions: Array(actions[(start * k)..<(end * k)]),
                seeds: (start..<end).map { seedBase &+ UInt64($0) })
            out.eMin += r.eMin
            out.predictedNext += r.predictedNext
            out.spread += r.spread
            start = end
        }
        normalization.denormalize(inPlace: &out.predictedNext)
        return out
    }

    /// Energies at the recorded next states (raw units in, normalised inside).
    public static func energyAtData(
        model: EnergyTransitionModel, normalization: ObservationNormalizer, dataset: OfflineDataset
    ) -> [Float] {
        model.energies(
            observations: normalization.applied(to: dataset.observations), actions: dataset.actions,
            nextObservations: normalization.applied(to: dataset.nextObservations), rows: dataset.count)
    }
}

/// Step counter ↔ tensor (two exact 24-bit halves).
func stepTensor(_ n: Int) -> Tensor { Tensor(shape: [2], scalars: [Float(n & 0xFFFFFF), Float(n >> 24)]) }
func stepValue(_ t: Tensor?, name: String) throws -> Int {
    guard let t, t.count == 2 else { throw ParameterLoadError.missing(name) }
    return Int(t.scalars[0]) | (Int(t.scalars[1]) << 24)
}

/// The latent bank: (normalised, if spherical) encodings of `size` training next states chosen by
/// a seeded draw, and each entry's source `(s, a)` (for nearest-source proposals). It depends only
/// on the autoencoder, which is frozen once the energy phase starts.
public enum EnergyLatentBank {
    /// Fills `model.latentBank` and `model.bankSources` from the training rows: `observations`
    /// (z-scored, `n × obsDim`), `actions` (`n × actDim`, in [-1, 1]) and their `manifold`
    /// coordinates (`n × obsDim`).
    static func fill(
        model: EnergyTransitionModel, observations: [Float], actions: [Float], manifold: [Float], size: Int, seed: UInt64
    ) {
        let d = model.spec.obsDim, k = model.spec.actDim, l = model.spec.latentDim
        let n = manifold.count / d
        precondition(observations.count == n * d && actions.count == n * k, "bank rows: observations, actions and manifold disagree")
        let m = min(size, n)
        guard m > 0 else {
            model.latentBank = []
            model.bankSources = []
            return
        }
        var rng = RNG(seed: seed ^ 0xBA4C)
        var rows = [Float](repeating: 0, count: m * d)
        var sources = [Float](repeating: 0, count: m * (d + k))
        for r in 0..<m {
            let i = rng.int(below: n)
            for j in 0..<d { rows[r * d + j] = manifold[i * d + j] }
            for j in 0..<d { sources[r * (d + k) + j] = observations[i * d + j] }
            for j in 0..<k { sources[r * (d + k) + d + j] = actions[i * k + j] }
        }
        var z = model.encoder.replica().forward(rows, batch: m)
        if model.spec.sphericalLatent {
            z.withUnsafeMutableBufferPointer { zp in for r in 0..<m { normalise(zp.baseAddress! + r * l, l) } }
        }
        model.latentBank = z
        model.bankSources = sources
    }

    /// What the bank of an energy model trained by `flowgate train --energy` holds, rebuilt from its
    /// dataset: the same seeded draw from the same training split (`heldOutFraction`, `seed` as
    /// `EnergyTrainer` used them; `dataset`'s actions already in [-1, 1]) through `model`'s
    /// encoder. Returns the latents and their sources; compare the latents with the stored bank to
    /// know the draw was recovered.
    public static func rebuilt(
        model: EnergyTransitionModel, dataset: OfflineDataset, normalizer: ObservationNormalizer, heldOutFraction: Double,
        size: Int, seed: UInt64
    ) -> (latents: [Float], sources: [Float]) {
        let train = dataset.split(heldOutFraction: heldOutFraction, seed: seed ^ EnergyTrainer.splitSeedSalt).train
        let s = normalizer.applied(to: train.observations), sn = normalizer.applied(to: train.nextObservations)
        var x = [Float](repeating: 0, count: s.count)
        s.withUnsafeBufferPointer { sp in
            sn.withUnsafeBufferPointer { snp in
                x.withUnsafeMutableBufferPointer {
                    model.spec.toManifold(observations: sp.baseAddress!, nextObservations: snp.baseAddress!, rows: train.count, into: $0.baseAddress!)
                }
            }
        }
        // `fill` writes into the model; the caller's bank is put back unchanged.
        let (savedBank, savedSources) = (model.latentBank, model.bankSources)
        defer { (model.latentBank, model.bankSources) = (savedBank, savedSources) }
        fill(model: model, observations: s, actions: train.actions, manifold: x, size: size, seed: seed)
        return (model.latentBank, model.bankSources)
    }
}
