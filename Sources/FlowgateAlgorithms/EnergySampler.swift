import FlowgateCore

/// Settings of next-state sampling at inference.
public struct EnergySamplingConfig: Codable, Sendable, Equatable {
    /// Next-state samples per (s, a) row.
    public var samples: Int
    /// Latent Langevin schedule.
    public var schedule: LangevinSchedule
    /// When the model has a latent bank (encodings of training next states): score this many bank
    /// entries per row and start Langevin from the `samples` lowest-energy ones. 0 (or no bank):
    /// start from random latents.
    public var proposals: Int
    /// Staged proposals (bank proposals, no Langevin step, a sampler with an `exitEnergy`): score
    /// the first `firstProposals` of a row's `proposals` and stop there when their lowest energy is
    /// already at or below `exitEnergy`; only the other rows score the rest. 0 (or ≥ `proposals`):
    /// every row scores every proposal. With `exitEnergy` the reliability threshold, a row's flag is
    /// exactly the one scoring all proposals gives (`E_min` only falls with more proposals, so a row
    /// below the threshold stays below it); an early row's `E_min` is the first stage's.
    public var firstProposals: Int
    /// Nearest-source proposals: a row's `proposals` bank entries are the ones whose source
    /// transitions `(s, a)` (`EnergyTransitionModel.bankSources`) are nearest to the row's `(s, a)`
    /// (Euclidean, in the z-scored state and [-1, 1] action coordinates; nearest first, ties to the
    /// lower index) instead of a random draw. `E_min` then asks whether the energy accepts a next
    /// state that was actually seen after a similar `(s, a)`: measured on the shipped models it
    /// separates random actions, noisy states and other data at least as well as 384 random
    /// proposals with 16 (docs/reliability.md). Needs a bank with sources; ignored without one.
    public var nearest: Bool

    public init(
        samples: Int = 16, schedule: LangevinSchedule = .inference, proposals: Int = 128, firstProposals: Int = 0,
        nearest: Bool = false
    ) {
        self.samples = samples
        self.schedule = schedule
        self.proposals = proposals
        self.firstProposals = firstProposals
        self.nearest = nearest
    }

    private enum CodingKeys: String, CodingKey { case samples, schedule, proposals, firstProposals, nearest }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        samples = try c.decodeIfPresent(Int.self, forKey: .samples) ?? 16
        schedule = try c.decodeIfPresent(LangevinSchedule.self, forKey: .schedule) ?? .inference
        proposals = try c.decodeIfPresent(Int.self, forKey: .proposals) ?? 128
        firstProposals = try c.decodeIfPresent(Int.self, forKey: .firstProposals) ?? 0
        nearest = try c.decodeIfPresent(Bool.self, forKey: .nearest) ?? false
    }
}

/// Batched latent-Langevin sampling of next states under an `EnergyTransitionModel`: the one
/// implementation the trainer (negative mining), the tests, the evaluation and the server use.
///
/// For each row `b` of a batch of `(s, a)` it picks `N` starting latents — the lowest-energy of
/// `proposals` entries of the model's latent bank (encodings of training next states) or, without
/// a bank, random latents (uniform on the unit sphere for a spherical latent, N(0, I) otherwise) —
/// runs `T` Langevin steps on `E(s, a, dec(z))` with the
/// gradient taken through the decoder by the MLPs' input gradients, decodes, and reports
/// `E_min = min_n E(s, a, dec(z_n))`, the lowest-energy next state and the spread of the samples.
/// Row `b` draws every random number from `RNG(seed: seeds[b])`, so its result does not depend on
/// what else is in the batch (up to BLAS rounding of the shared matrix products).
///
/// With bank proposals and `T = 0` Langevin steps, `E_min` is the lowest energy among the
/// proposals and the check costs `proposals` energy passes per row (the bank is decoded once, when
/// the sampler is made: make a new sampler after the decoder or the bank changes).
///
/// Thread confinement: an instance owns replicas of the decoder and energy networks and all
/// workspaces; use one per thread. Workspaces grow to the largest batch seen, after which calls
/// allocate nothing. With `frozenEnergy` (serving, evaluation) the replicas that score proposals
/// and final samples are forward-only (`MLP.forwardOnly`); the ones Langevin differentiates are
/// made on its first step, so a check without Langevin steps never holds them.
public final class EnergySampler {
    public let spec: EnergyModelSpec
    public var config: EnergySamplingConfig
    /// The networks of forward passes (proposals, final samples).
    private let decoder: MLP
    private let energy: MLP
    /// The model's networks, replicated for `differentiable()`.
    private let decoderSource: MLP
    private let energySource: MLP
    private var gradientNetworks: (decoder: MLP, energy: MLP)?

    // Workspaces (rows = batch × samples unless noted).
    private let latents = FloatBuffer()
    private let manifold = FloatBuffer()
    private let input = FloatBuffer()
    private let ones = FloatBuffer()
    private let gradX = FloatBuffer()
    private let sampleEnergies = FloatBuffer()
    private let candidate = FloatBuffer()
    private let proposalIndex = FloatBuffer()
    private let proposalBankIndex = FloatBuffer()
    private let conditioningTerms = FloatBuffer()
    private let conditioningRows = FloatBuffer()
    private let startEnergies = FloatBuffer()
    private let startManifold = FloatBuffer()
    private let bank: [Float]
    /// The bank's latents decoded once (`bankCount × obsDim` manifold coordinates): the decoder
    /// does not depend on `(s, a)`, so scoring a proposal costs one energy pass, not a decoder pass too.
    private let decodedBank: [Float]
    /// With `frozenEnergy`: the decoded bank through the manifold columns of the energy's first
    /// layer (`bankCount × hidden₁`), so that with the `(s, a)` columns' term computed once per row
    /// a proposal's first layer is one vector add. Empty otherwise (the trainer updates the energy).
    private let bankFirstLayer: [Float]
    private let proposalManifold = FloatBuffer()
    private let bankCount: Int
    /// `BankTables.sourcesByCoordinate` and `.sourceNorms` (empty: the bank has no sources).
    private let sourcesByCoordinate: [Float]
    private let sourceNorms: [Float]
    /// Nearest-source proposals: one row's distances to every entry, and the running best.
    private let sourceDistances = FloatBuffer()
    private var nearestDistances: [Float] = []
    private var nearestIndices: [Int] = []
    private var rngs: UnsafeMutablePointer<RNG>
    private var rngCapacity: Int
    /// Staged proposals: the energy at or below which a row stops after `config.firstProposals`
    /// (the checker sets the reliability threshold); nil scores every proposal of every row.
    public var exitEnergy: Float?
    /// Proposal energies counted since the sampler was made (every row's, both stages): divided by
    /// the rows evaluated, the proposals a row actually cost.
    public private(set) var proposalsScored = 0
    private let stagedEnergies = FloatBuffer()
    private let stagedIndex = FloatBuffer()
    private let stagedObservations = FloatBuffer()
    private let stagedActions = FloatBuffer()
    private var pendingRows: [Int] = []

    /// A sampler sharing `model`'s weights. `frozenEnergy`: the energy network's weights will not
    /// change for this sampler's lifetime (serving, evaluation), which lets proposals reuse a
    /// precomputed part of its first layer; leave it false while the energy trains.
    ///
    /// `bankTables`: the result of `EnergySampler.bankTables(model:frozenEnergy:)` for this model,
    /// computed once and shared by several samplers (the server's workers), so each holds no copy
    /// of its own; nil computes them here.
    public init(
        model: EnergyTransitionModel, config: EnergySamplingConfig = EnergySamplingConfig(), frozenEnergy: Bool = false,
        bankTables: BankTables? = nil
    ) {
        spec = model.spec
        self.config = config
        decoder = model.decoder.replica(forwardOnly: frozenEnergy)
        energy = model.energy.replica(forwardOnly: frozenEnergy)
        decoderSource = model.decoder
        energySource = model.energy
        bank = model.latentBank
        bankCount = model.latentBank.count / model.spec.latentDim
        let tables = bankTables ?? Self.bankTables(model: model, frozenEnergy: frozenEnergy)
        decodedBank = tables.decoded
        bankFirstLayer = tables.firstLayer
        sourcesByCoordinate = tables.sourcesByCoordinate
        sourceNorms = tables.sourceNorms
        rngCapacity = 64
        rngs = .allocate(capacity: rngCapacity)
        rngs.initialize(repeating: RNG(seed: 0), count: rngCapacity)
    }

    /// What a sampler precomputes from the latent bank: its latents decoded, and with
    /// `frozenEnergy` their share of the energy's first layer. Immutable, so samplers may share it.
    public struct BankTables: Sendable {
        public let decoded: [Float]
        public let firstLayer: [Float]
        /// The bank's sources by coordinate (`(obsDim + actDim) × count`: coordinate `c` of entry
        /// `j` at `c · count + j`), so a query's distances run along contiguous rows; empty without
        /// sources.
        public let sourcesByCoordinate: [Float]
        /// `|source_j|²` per entry; empty without sources.
        public let sourceNorms: [Float]

        public init(decoded: [Float], firstLayer: [Float], sourcesByCoordinate: [Float] = [], sourceNorms: [Float] = []) {
            self.decoded = decoded
            self.firstLayer = firstLayer
            self.sourcesByCoordinate = sourcesByCoordinate
            self.sourceNorms = sourceNorms
        }
    }

    /// Computes the bank tables of `model` (see `BankTables`).
    public static func bankTables(model: EnergyTransitionModel, frozenEnergy: Bool) -> BankTables {
        // A throwaway replica, so no sampler's decoder workspaces are sized by the whole bank.
        let count = model.latentBank.count / model.spec.latentDim
        let decoded = count > 0 ? model.decoder.replica().forward(model.latentBank, batch: count) : []
        let h1 = model.energy.spec.dims[1], w = model.spec.energyInputDim, d = model.spec.obsDim
        var firstLayer = [Float](repeating: 0, count: frozenEnergy ? count * h1 : 0)
        if count > 0 && frozenEnergy {
            model.energy.weights[0].value.withUnsafeBufferPointer { w0 in
                decoded.withUnsafeBufferPointer { x in
                    firstLayer.withUnsafeMutableBufferPointer { out in
                        BLAS.sgemm(
                            transA: false, transB: true, m: count, n: h1, k: d, x.baseAddress!, lda: d,
                            w0.baseAddress! + (w - d), ldb: w, beta: 0, out.baseAddress!, ldc: h1)
                    }
                }
            }
        }
        var byCoordinate: [Float] = [], norms: [Float] = []
        if model.hasBankSources {
            let width = model.spec.obsDim + model.spec.actDim
            byCoordinate = [Float](repeating: 0, count: width * count)
            norms = [Float](repeating: 0, count: count)
            for j in 0..<count {
                for c in 0..<width {
                    let v = model.bankSources[j * width + c]
                    byCoordinate[c * count + j] = v
                    norms[j] += v * v
                }
            }
        }
        return BankTables(decoded: decoded, firstLayer: firstLayer, sourcesByCoordinate: byCoordinate, sourceNorms: norms)
    }

    deinit {
        rngs.deinitialize(count: rngCapacity)
        rngs.deallocate()
    }

    private func reserveRNGs(_ n: Int) {
        guard n > rngCapacity else { return }
        rngs.deinitialize(count: rngCapacity)
        rngs.deallocate()
        rngCapacity = max(n, 2 * rngCapacity)
        rngs = .allocate(capacity: rngCapacity)
        rngs.initialize(repeating: RNG(seed: 0), count: rngCapacity)
    }

    // MARK: Inference

    /// Samples next states for `batch` rows and writes, per row: `eMin[b]`; the lowest-energy
    /// sample as a normalised next state into `predictedNext` (`batch × obsDim`, optional); the
    /// spread (mean over dimensions of the standard deviation across the N samples, in normalised
    /// observation units) into `spread` (optional).
    ///
    /// `observations` is `batch × obsDim` (z-scores), `actions` `batch × actDim`, `seeds` one per row.
    public func evaluate(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, seeds: UnsafePointer<UInt64>,
        batch: Int, eMin: UnsafeMutablePointer<Float>, predictedNext: UnsafeMutablePointer<Float>?,
        spread: UnsafeMutablePointer<Float>?
    ) {
        guard batch > 0 else { return }
        let n = config.samples, l = spec.latentDim
        let rows = batch * n
        reserveRNGs(batch)
        latents.reserve(rows * l)
        let z = latents.pointer
        for b in 0..<batch { rngs[b] = RNG(seed: seeds[b]) }
        let fromBank = config.proposals > 0 && bankCount > 0
        if fromBank {
            proposeFromBank(
                observations: observations, actions: actions, batch: batch, samplesPerRow: n,
                proposals: config.proposals, rngs: rngs, into: z)
        } else {
            for b in 0..<batch {
                let zb = UnsafeMutableBufferPointer(start: z + b * n * l, count: n * l)
                rngs[b].fillNormal(zb)
                if spec.sphericalLatent { for r in 0..<n { normalise(zb.baseAddress! + r * l, l) } }
            }
        }
        finishEvaluation(
            observations: observations, actions: actions, batch: batch, fromBank: fromBank, eMin: eMin,
            predictedNext: predictedNext, spread: spread)
    }

    /// The rest of `evaluate` once the starting latents are in `latents` (and, from the bank, their
    /// energies and manifold coordinates in `startEnergies` / `startManifold`) and `rngs` holds each
    /// row's generator after the proposals' draws: Langevin, then `E_min` and the optional outputs.
    private func finishEvaluation(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, fromBank: Bool,
        eMin: UnsafeMutablePointer<Float>, predictedNext: UnsafeMutablePointer<Float>?,
        spread: UnsafeMutablePointer<Float>?
    ) {
        let n = config.samples, d = spec.obsDim
        let x: UnsafePointer<Float>, e: UnsafePointer<Float>
        if fromBank && config.schedule.steps == 0 {
            // The starts are the answer: their energies were computed when they were proposed.
            x = UnsafePointer(startManifold.pointer)
            e = UnsafePointer(startEnergies.pointer)
        } else {
            let result = refineLatents(
                observations: observations, actions: actions, batch: batch, samplesPerRow: n, latents: latents.pointer,
                schedule: config.schedule, rngs: rngs)
            x = result.manifold
            e = result.energies
        }
        candidate.reserve(d)
        for b in 0..<batch {
            var best = 0
            var bestE = e[b * n]
            for s in 1..<max(n, 1) where e[b * n + s] < bestE { bestE = e[b * n + s]; best = s }
            eMin[b] = bestE
            if let out = predictedNext {
                spec.fromManifold(observations: observations + b * d, manifold: x + (b * n + best) * d, rows: 1, into: out + b * d)
            }
            if let sp = spread {
                // The spread of next states equals the spread of manifold coordinates times the scale.
                var total: Float = 0
                for j in 0..<d {
                    var mean: Float = 0
                    for s in 0..<n { mean += x[(b * n + s) * d + j] }
                    mean /= Float(n)
                    var v: Float = 0
                    for s in 0..<n { let dv = x[(b * n + s) * d + j] - mean; v += dv * dv }
                    total += (v / Float(n)).squareRoot() * spec.deltaScale[j]
                }
                sp[b] = total / Float(d)
            }
        }
    }

    /// Result of `evaluate(observations:actions:seeds:)`.
    public struct Result: Sendable, Equatable {
        public var eMin: [Float]
        /// `batch × obsDim`, normalised.
        public var predictedNext: [Float]
        public var spread: [Float]

        public init(eMin: [Float], predictedNext: [Float], spread: [Float]) {
            self.eMin = eMin
            self.predictedNext = predictedNext
            self.spread = spread
        }
    }

    /// Array convenience for `evaluate` (allocates; tests and evaluation).
    public func evaluate(observations: [Float], actions: [Float], seeds: [UInt64]) -> Result {
        let batch = seeds.count
        precondition(observations.count == batch * spec.obsDim && actions.count == batch * spec.actDim)
        var r = Result(
            eMin: [Float](repeating: 0, count: batch),
            predictedNext: [Float](repeating: 0, count: batch * spec.obsDim),
            spread: [Float](repeating: 0, count: batch))
        observations.withUnsafeBufferPointer { s in
            actions.withUnsafeBufferPointer { a in
                seeds.withUnsafeBufferPointer { sd in
                    r.eMin.withUnsafeMutableBufferPointer { e in
                        r.predictedNext.withUnsafeMutableBufferPointer { p in
                            r.spread.withUnsafeMutableBufferPointer { sp in
                                evaluate(
                                    observations: s.baseAddress!, actions: a.baseAddress!, seeds: sd.baseAddress!,
                                    batch: batch, eMin: e.baseAddress!, predictedNext: p.baseAddress!,
                                    spread: sp.baseAddress!)
                            }
                        }
                    }
                }
            }
        }
        return r
    }

    // MARK: Langevin (shared with the trainer)

    /// Runs latent Langevin from the given latents. Rows are ordered `b * samplesPerRow + k`; row
    /// group `b` is conditioned on `(observations[b], actions[b])` and draws its noise from
    /// `rngs[b]` (advanced in place). `latents` (`batch·samplesPerRow × latentDim`) is updated in
    /// place (projected onto the sphere after each step when the latent is spherical).
    ///
    /// Returns the decoded manifold coordinates and the energies of the final latents, valid until
    /// the next call on this sampler.
    public func refineLatents(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, samplesPerRow: Int,
        latents z: UnsafeMutablePointer<Float>, schedule: LangevinSchedule, rngs: UnsafeMutablePointer<RNG>
    ) -> (manifold: UnsafePointer<Float>, energies: UnsafePointer<Float>) {
        let rows = batch * samplesPerRow
        let l = spec.latentDim
        prepareConditioning(observations: observations, actions: actions, batch: batch, samplesPerRow: samplesPerRow)
        for t in 0..<schedule.steps {
            let gz = latentGradient(z, rows: rows).gradient
            step(z, gradient: gz, width: l, batch: batch, samplesPerRow: samplesPerRow, schedule: schedule, t: t, rngs: rngs)
            if spec.sphericalLatent { for r in 0..<rows { normalise(z + r * l, l) } }
        }
        let x = decoder.forward(z, batch: rows)
        placeManifold(x, rows: rows)
        let e = energy.forward(input.pointer, batch: rows)
        return finish(energies: e, rows: rows)
    }

    /// Runs Langevin directly on manifold coordinates `x` (ETM's ambient negatives), clamping them
    /// to [-clamp, clamp] after each step. Same row layout and RNG use as `refineLatents`.
    public func refineAmbient(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, samplesPerRow: Int,
        manifold x: UnsafeMutablePointer<Float>, schedule: LangevinSchedule, clamp: Float,
        rngs: UnsafeMutablePointer<RNG>
    ) -> (manifold: UnsafePointer<Float>, energies: UnsafePointer<Float>) {
        let rows = batch * samplesPerRow
        let d = spec.obsDim
        prepareConditioning(observations: observations, actions: actions, batch: batch, samplesPerRow: samplesPerRow)
        for t in 0..<schedule.steps {
            placeManifold(x, rows: rows)
            let net = differentiable().energy
            _ = net.forward(input.pointer, batch: rows)
            let gx = energyGradientX(net, rows: rows)
            step(x, gradient: gx, width: d, batch: batch, samplesPerRow: samplesPerRow, schedule: schedule, t: t, rngs: rngs)
            for i in 0..<(rows * d) { x[i] = min(max(x[i], -clamp), clamp) }
        }
        placeManifold(x, rows: rows)
        let e = energy.forward(input.pointer, batch: rows)
        return finish(energies: e, rows: rows)
    }

    /// Energies `E(s_b, a_b, dec(z_r))` and their gradients with respect to the latents, for rows
    /// laid out as in `refineLatents` (the Langevin drift; exposed so tests can check it against
    /// finite differences). Pointers are valid until the next call on this sampler.
    public func latentEnergyGradient(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, samplesPerRow: Int,
        latents z: UnsafePointer<Float>
    ) -> (energies: UnsafePointer<Float>, gradient: UnsafePointer<Float>) {
        prepareConditioning(observations: observations, actions: actions, batch: batch, samplesPerRow: samplesPerRow)
        let r = latentGradient(z, rows: batch * samplesPerRow)
        return (r.energies, UnsafePointer(r.gradient))
    }

    /// Floating-point operations of `evaluate` for one row with `samples` samples: each bank
    /// proposal is scored once by the energy (the bank was decoded when the sampler was made); each
    /// Langevin step costs a forward and an input-gradient pass (about twice the forward) through
    /// decoder and energy, and the final latents are decoded and scored once more. With bank
    /// proposals and no Langevin step, the proposals are all there is.
    ///
    /// With staged proposals this is the most a row costs (every proposal scored); pass
    /// `proposalsPerRow` (e.g. `proposalsScored` / rows evaluated) for what rows did cost.
    public func flopsPerRow(samples: Int, proposalsPerRow: Double? = nil) -> Double {
        let pass = decoder.forwardFlopsPerRow + energy.forwardFlopsPerRow
        let fromBank = config.proposals > 0 && bankCount > 0
        // A proposal: the energy pass minus its first layer's products, plus one vector add; per
        // row, the first layer's (s, a) columns once.
        // (Without `frozenEnergy`, a proposal is a full energy pass.)
        let h1 = Double(energy.spec.dims[1]), w = Double(spec.energyInputDim), sa = Double(spec.obsDim + spec.actDim)
        let frozen = !bankFirstLayer.isEmpty
        let perProposal = frozen ? energy.forwardFlopsPerRow - 2 * w * h1 + h1 : energy.forwardFlopsPerRow
        let scored = proposalsPerRow ?? Double(min(config.proposals, bankCount))
        // Nearest-source proposals add one distance per bank entry: a multiply-add per coordinate.
        let search = fromBank && usesNearestProposals ? 2 * sa * Double(bankCount) : 0
        let proposals = fromBank ? scored * perProposal + (frozen ? 2 * sa * h1 : 0) + search : 0
        if fromBank && config.schedule.steps == 0 { return proposals }
        return proposals + Double(samples) * (Double(config.schedule.steps) * 3 + 1) * pass
    }

    /// Whether the sampler has a latent bank to draw proposals from.
    public var hasLatentBank: Bool { bankCount > 0 }

    /// Starting latents as inference picks them: per row group `b`, `proposals` bank latents drawn
    /// with `rngs[b]` (the whole bank when it is smaller), scored under `(observations[b],
    /// actions[b])` by one forward pass, the `samplesPerRow` lowest-energy ones written to `z`
    /// (`batch·samplesPerRow × latentDim`). The trainer uses it to mine negatives where the
    /// inference sampler will look. Requires a bank (`hasLatentBank`).
    public func proposeLatents(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, samplesPerRow: Int,
        proposals: Int, rngs: UnsafeMutablePointer<RNG>, into z: UnsafeMutablePointer<Float>
    ) {
        precondition(bankCount > 0, "proposeLatents needs a latent bank")
        proposeFromBank(
            observations: observations, actions: actions, batch: batch, samplesPerRow: samplesPerRow,
            proposals: proposals, rngs: rngs, into: z)
    }

    // MARK: Proposals scored by two samplers

    /// Bank proposals per row that `beginSplit` draws and two samplers can score in ranges; 0 when
    /// this sampler starts from random latents (nothing to split).
    /// With staged proposals, the first stage's: the rows that go on score the rest in `finishSplit`.
    public var splitProposals: Int { splitStageProposals.first ?? 0 }

    /// Bank proposals per row in each stage that two samplers can share, in order: none (nothing to
    /// split), `[P]`, or with staged proposals `[P1, P − P1]`: the second stage's only for the rows
    /// whose first stage stayed above `exitEnergy` (`endFirstStage` picks them).
    public var splitStageProposals: [Int] {
        let p = config.proposals > 0 && bankCount > 0 ? min(config.proposals, bankCount) : 0
        guard p > 0 else { return [] }
        if let p1 = firstStage(proposals: p) { return [p1, p - p1] }
        return [p]
    }

    /// The first stage's proposals when rows of `p` proposals are staged (see
    /// `EnergySamplingConfig.firstProposals`), nil when every row scores all `p`.
    private func firstStage(proposals p: Int) -> Int? {
        let p1 = config.firstProposals
        guard exitEnergy != nil, config.schedule.steps == 0, p1 > 0, p1 < p, config.samples <= p1 else { return nil }
        return p1
    }

    /// Starts `evaluate` for `batch` rows as a `ProposalSplit`: draws every row's bank indices
    /// exactly as `evaluate` would (row `b` from `RNG(seed: seeds[b])`, in order) and keeps each
    /// row's generator for the Langevin steps. `observations` and `actions` must stay valid and
    /// unchanged until `finishSplit`. Requires `splitProposals > 0`.
    public func beginSplit(
        _ job: ProposalSplit, observations: UnsafePointer<Float>, actions: UnsafePointer<Float>,
        seeds: UnsafePointer<UInt64>, batch: Int
    ) {
        precondition(splitProposals > 0, "beginSplit needs bank proposals")
        let p = min(config.proposals, bankCount)
        job.batch = batch
        job.proposals = p
        job.observations = observations
        job.actions = actions
        job.bankIndex.reserve(batch * p)
        job.energies.reserve(batch * p)
        job.pending.removeAll(keepingCapacity: true)
        job.secondStagePlanned = false
        job.rngs.removeAll(keepingCapacity: true)
        for b in 0..<batch { job.rngs.append(RNG(seed: seeds[b])) }
        job.rngs.withUnsafeMutableBufferPointer {
            drawBankIndices(
                batch: batch, proposals: p, observations: observations, actions: actions, rngs: $0.baseAddress!,
                into: job.bankIndex.pointer)
        }
    }

    /// Scores proposals `range` of every row of `job` (begun by a sampler of the same model, maybe
    /// on another thread) into the job's energies, in passes of at most `proposalRowsPerPass` rows.
    public func scoreSplit(_ job: ProposalSplit, proposals range: Range<Int>) {
        guard !range.isEmpty, let observations = job.observations, let actions = job.actions else { return }
        let p = job.proposals, width = range.count
        let chunk = max(1, proposalRowsPerPass / width)
        proposalBankIndex.reserve(min(chunk, job.batch) * width)
        var b0 = 0
        while b0 < job.batch {
            let count = min(chunk, job.batch - b0)
            for b in 0..<count {
                (proposalBankIndex.pointer + b * width).update(
                    from: job.bankIndex.pointer + (b0 + b) * p + range.lowerBound, count: width)
            }
            let e = scoreProposals(
                observations: observations + b0 * spec.obsDim, actions: actions + b0 * spec.actDim, batch: count,
                proposals: width, bankIndex: proposalBankIndex.pointer)
            for b in 0..<count {
                (job.energies.pointer + (b0 + b) * p + range.lowerBound).update(from: e + b * width, count: width)
            }
            b0 += count
        }
    }

    /// Scores proposals `range` of stage `stage` of `job` (`splitStageProposals`; ranges count from the
    /// stage's first proposal): stage 0 as `scoreSplit(_:proposals:)`, stage 1 for the rows
    /// `endFirstStage` kept going only.
    public func scoreSplit(_ job: ProposalSplit, stage: Int, proposals range: Range<Int>) {
        guard stage > 0 else { return scoreSplit(job, proposals: range) }
        guard stage == 1, job.secondStagePlanned, !range.isEmpty, let p1 = firstStage(proposals: job.proposals),
            let observations = job.observations, let actions = job.actions
        else { return }
        scoreRows(
            job.pending, observations: observations, actions: actions, proposals: job.proposals,
            range: (p1 + range.lowerBound)..<(p1 + range.upperBound), bankIndex: job.bankIndex.pointer,
            energies: job.energies.pointer)
    }

    /// Ends the first stage of a staged job once its first-stage proposals are all scored (on the
    /// sampler that began it): rows whose lowest energy so far is at or below `exitEnergy` stop
    /// there (their other proposals +∞), the others go on to the second stage, which samplers then
    /// score in ranges (`scoreSplit(_:stage:proposals:)` with stage 1). Without it `finishSplit`
    /// scores the second stage itself. Nothing to do for an unstaged job.
    public func endFirstStage(_ job: ProposalSplit) {
        guard let p1 = firstStage(proposals: job.proposals) else { return }
        selectPending(energies: job.energies.pointer, batch: job.batch, proposals: job.proposals, first: p1, into: &job.pending)
        job.secondStagePlanned = true
    }

    /// Finishes a job this sampler began once every proposal is scored: the `samples` lowest-energy
    /// proposals per row start the Langevin steps (none by default), and `eMin` gets each row's
    /// `E_min` (`job.batch` values), as `evaluate` would.
    public func finishSplit(_ job: ProposalSplit, eMin: UnsafeMutablePointer<Float>) {
        guard let observations = job.observations, let actions = job.actions else { return }
        let batch = job.batch, n = config.samples
        reserveRNGs(batch)
        for b in 0..<batch { rngs[b] = job.rngs[b] }
        latents.reserve(batch * n * spec.latentDim)
        startEnergies.reserve(batch * n)
        startManifold.reserve(batch * n * spec.obsDim)
        if let p1 = firstStage(proposals: job.proposals), !job.secondStagePlanned {
            // The scoring samplers covered the first stage (`splitProposals`) only; the rest is here.
            scoreSecondStage(
                observations: observations, actions: actions, batch: batch, proposals: job.proposals, first: p1,
                bankIndex: job.bankIndex.pointer, energies: job.energies.pointer)
        }
        selectStarts(
            energies: job.energies.pointer, bankIndex: job.bankIndex.pointer, batch: batch, samplesPerRow: n,
            proposals: job.proposals, into: latents.pointer, energies: startEnergies.pointer,
            manifold: startManifold.pointer)
        finishEvaluation(
            observations: observations, actions: actions, batch: batch, fromBank: true, eMin: eMin, predictedNext: nil,
            spread: nil)
        job.observations = nil
        job.actions = nil
    }

    // MARK: Internals

    /// Default of `proposalRowsPerPass`.
    public static let defaultProposalRowsPerPass = 1024

    /// Most proposal rows scored in one forward pass. Proposals are scored in chunks of whole
    /// observations up to this many rows, so the workspaces stay bounded whatever the batch
    /// (64 observations × 128 proposals would otherwise hold 8192-row activations per layer).
    /// The server sets it from `pass_rows`; it changes no result, only how rows are grouped.
    public var proposalRowsPerPass = EnergySampler.defaultProposalRowsPerPass

    /// Per row: `proposals` bank latents (drawn with the row's RNG; the whole bank when it is
    /// smaller), scored by forward passes of at most `proposalRowsPerPass` rows, the
    /// `samplesPerRow` lowest-energy ones copied to `z`.
    private func proposeFromBank(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, samplesPerRow n: Int,
        proposals: Int, rngs: UnsafeMutablePointer<RNG>, into z: UnsafeMutablePointer<Float>
    ) {
        let p = max(min(proposals, bankCount), 1)
        let chunk = max(1, proposalRowsPerPass / p)
        startEnergies.reserve(batch * n)
        startManifold.reserve(batch * n * spec.obsDim)
        var b0 = 0
        while b0 < batch {
            let count = min(chunk, batch - b0)
            proposeChunk(
                observations: observations + b0 * spec.obsDim, actions: actions + b0 * spec.actDim, batch: count,
                samplesPerRow: n, proposals: p, rngs: rngs + b0, into: z + b0 * n * spec.latentDim,
                energies: startEnergies.pointer + b0 * n, manifold: startManifold.pointer + b0 * n * spec.obsDim)
            b0 += count
        }
    }

    private func proposeChunk(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, samplesPerRow n: Int,
        proposals p: Int, rngs: UnsafeMutablePointer<RNG>, into z: UnsafeMutablePointer<Float>,
        energies startE: UnsafeMutablePointer<Float>, manifold startX: UnsafeMutablePointer<Float>
    ) {
        proposalBankIndex.reserve(batch * p)
        drawBankIndices(
            batch: batch, proposals: p, observations: observations, actions: actions, rngs: rngs, into: proposalBankIndex.pointer)
        let e: UnsafePointer<Float>
        if let p1 = firstStage(proposals: p) {
            // First stage: the first p1 of every row's draws, then the rest for rows still above.
            stagedIndex.reserve(batch * p1)
            stagedEnergies.reserve(batch * p)
            let index = stagedIndex.pointer, out = stagedEnergies.pointer
            for b in 0..<batch { (index + b * p1).update(from: proposalBankIndex.pointer + b * p, count: p1) }
            let e1 = scoreProposals(observations: observations, actions: actions, batch: batch, proposals: p1, bankIndex: index)
            for b in 0..<batch { (out + b * p).update(from: e1 + b * p1, count: p1) }
            scoreSecondStage(
                observations: observations, actions: actions, batch: batch, proposals: p, first: p1,
                bankIndex: proposalBankIndex.pointer, energies: out)
            e = UnsafePointer(out)
        } else {
            e = UnsafePointer(
                scoreProposals(
                    observations: observations, actions: actions, batch: batch, proposals: p, bankIndex: proposalBankIndex.pointer))
        }
        selectStarts(
            energies: e, bankIndex: proposalBankIndex.pointer, batch: batch, samplesPerRow: n, proposals: p, into: z,
            energies: startE, manifold: startX)
    }

    /// Staged proposals, second stage: `energies` (`batch × p`) holds every row's first `p1`
    /// energies; rows whose lowest is above `exitEnergy` get proposals `p1..<p` scored (in passes of
    /// at most `proposalRowsPerPass` rows), the others +∞ there (never selected, as `samples ≤ p1`).
    private func scoreSecondStage(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, proposals p: Int, first p1: Int,
        bankIndex: UnsafePointer<Float>, energies: UnsafeMutablePointer<Float>
    ) {
        selectPending(energies: energies, batch: batch, proposals: p, first: p1, into: &pendingRows)
        scoreRows(
            pendingRows, observations: observations, actions: actions, proposals: p, range: p1..<p, bankIndex: bankIndex,
            energies: energies)
    }

    /// The rows of `energies` (`batch × p`, the first `p1` of each row scored) whose lowest is above
    /// `exitEnergy`, in order, into `rows`; the others get +∞ for proposals `p1..<p`.
    private func selectPending(
        energies: UnsafeMutablePointer<Float>, batch: Int, proposals p: Int, first p1: Int, into rows: inout [Int]
    ) {
        let exit = exitEnergy ?? .infinity
        rows.removeAll(keepingCapacity: true)
        for b in 0..<batch {
            var lowest = Float.infinity
            for j in 0..<p1 { lowest = min(lowest, energies[b * p + j]) }
            // `!(lowest <= exit)`: a NaN energy goes on, as it would with every proposal scored.
            if !(lowest <= exit) {
                rows.append(b)
            } else {
                for j in p1..<p { energies[b * p + j] = .infinity }
            }
        }
    }

    /// Scores proposals `range` of each of `rows` (row `b`'s bank indices and energies at `b * p`),
    /// in passes of at most `proposalRowsPerPass` proposal rows.
    private func scoreRows(
        _ rows: [Int], observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, proposals p: Int, range: Range<Int>,
        bankIndex: UnsafePointer<Float>, energies: UnsafeMutablePointer<Float>
    ) {
        let d = spec.obsDim, k = spec.actDim, width = range.count
        guard width > 0 else { return }
        let chunk = max(1, proposalRowsPerPass / width)
        var r0 = 0
        while r0 < rows.count {
            let count = min(chunk, rows.count - r0)
            stagedObservations.reserve(count * d)
            stagedActions.reserve(count * k)
            stagedIndex.reserve(count * width)
            for r in 0..<count {
                let b = rows[r0 + r]
                (stagedObservations.pointer + r * d).update(from: observations + b * d, count: d)
                (stagedActions.pointer + r * k).update(from: actions + b * k, count: k)
                (stagedIndex.pointer + r * width).update(from: bankIndex + b * p + range.lowerBound, count: width)
            }
            let e2 = scoreProposals(
                observations: stagedObservations.pointer, actions: stagedActions.pointer, batch: count, proposals: width,
                bankIndex: stagedIndex.pointer)
            for r in 0..<count {
                (energies + rows[r0 + r] * p + range.lowerBound).update(from: e2 + r * width, count: width)
            }
            r0 += count
        }
    }

    /// Whether proposals are the nearest-source entries (`config.nearest` and a bank with sources).
    public var usesNearestProposals: Bool { config.nearest && !sourceNorms.isEmpty }

    /// Each row's `p` bank indices, stored as floats at `into[b * p + j]`: its nearest-source entries
    /// (`usesNearestProposals`), else `p` uniform draws from `rngs[b]` in order (every entry, in
    /// order, when `p` is the bank's size).
    private func drawBankIndices(
        batch: Int, proposals p: Int, observations: UnsafePointer<Float>, actions: UnsafePointer<Float>,
        rngs: UnsafeMutablePointer<RNG>, into bankIndex: UnsafeMutablePointer<Float>
    ) {
        if usesNearestProposals {
            for b in 0..<batch {
                nearestSources(
                    observation: observations + b * spec.obsDim, action: actions + b * spec.actDim, count: p,
                    into: bankIndex + b * p)
            }
            return
        }
        for b in 0..<batch {
            for j in 0..<p { bankIndex[b * p + j] = Float(p == bankCount ? j : rngs[b].int(below: bankCount)) }
        }
    }

    /// The `count` bank entries whose sources are nearest to `(observation, action)`, nearest first
    /// (ties to the lower index), as indices into `out`. One row at a time, so a row's choice does not
    /// depend on the rest of its batch: `|src_j|² − 2 q·src_j` (the query's own `|q|²` is the same for
    /// every entry) over the coordinate-major sources, then one pass keeping the best `count`.
    private func nearestSources(
        observation: UnsafePointer<Float>, action: UnsafePointer<Float>, count k: Int, into out: UnsafeMutablePointer<Float>
    ) {
        let n = bankCount, d = spec.obsDim, width = d + spec.actDim
        sourceDistances.reserve(n)
        let dist = sourceDistances.pointer
        sourceNorms.withUnsafeBufferPointer { norms in dist.update(from: norms.baseAddress!, count: n) }
        sourcesByCoordinate.withUnsafeBufferPointer { src in
            for c in 0..<width {
                let q = -2 * (c < d ? observation[c] : action[c - d])
                let column = src.baseAddress! + c * n
                for j in 0..<n { dist[j] += q * column[j] }
            }
        }
        if nearestDistances.count < k {
            nearestDistances = [Float](repeating: 0, count: k)
            nearestIndices = [Int](repeating: 0, count: k)
        }
        var kept = 0
        nearestDistances.withUnsafeMutableBufferPointer { bd in
            nearestIndices.withUnsafeMutableBufferPointer { bi in
                for j in 0..<n {
                    let v = dist[j]
                    // NaN (a non-finite query) compares false everywhere: such a row keeps the first k.
                    if kept == k && !(v < bd[k - 1]) { continue }
                    var pos = kept == k ? k - 1 : kept
                    while pos > 0 && v < bd[pos - 1] {
                        bd[pos] = bd[pos - 1]
                        bi[pos] = bi[pos - 1]
                        pos -= 1
                    }
                    bd[pos] = v
                    bi[pos] = j
                    if kept < k { kept += 1 }
                }
                for i in 0..<k { out[i] = Float(bi[i]) }
            }
        }
    }

    /// Energies of `batch × p` proposals whose bank indices are in `bankIndex` (row `b`'s under
    /// `(observations[b], actions[b])`), valid until the next pass of the energy network.
    private func scoreProposals(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, proposals p: Int,
        bankIndex: UnsafePointer<Float>
    ) -> UnsafeMutablePointer<Float> {
        let d = spec.obsDim
        let rows = batch * p
        proposalsScored += rows
        guard bankFirstLayer.isEmpty else {
            return scoreWithBankFirstLayer(
                observations: observations, actions: actions, batch: batch, proposals: p, bankIndex: bankIndex)
        }
        // Energy weights may change between calls: full passes on assembled input rows.
        proposalManifold.reserve(rows * d)
        let px = proposalManifold.pointer
        decodedBank.withUnsafeBufferPointer { dx in
            for r in 0..<rows { (px + r * d).update(from: dx.baseAddress! + Int(bankIndex[r]) * d, count: d) }
        }
        prepareConditioning(observations: observations, actions: actions, batch: batch, samplesPerRow: p)
        placeManifold(px, rows: rows)
        return energy.forward(input.pointer, batch: rows)
    }

    /// Energies of the proposals whose bank indices are in `bankIndex`, with the first layer's
    /// manifold term taken from `bankFirstLayer`.
    private func scoreWithBankFirstLayer(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, proposals p: Int,
        bankIndex: UnsafePointer<Float>
    ) -> UnsafeMutablePointer<Float> {
        let d = spec.obsDim, k = spec.actDim, w = spec.energyInputDim
        let h1 = energy.spec.dims[1]
        let rows = batch * p
        // Per row, the first layer's (s, a) columns plus its bias, once.
        conditioningRows.reserve(batch * (d + k))
        conditioningTerms.reserve(batch * h1)
        let cond = conditioningRows.pointer, terms = conditioningTerms.pointer
        for b in 0..<batch {
            (cond + b * (d + k)).update(from: observations + b * d, count: d)
            (cond + b * (d + k) + d).update(from: actions + b * k, count: k)
        }
        energy.biases[0].value.withUnsafeBufferPointer { bias in
            for b in 0..<batch { (terms + b * h1).update(from: bias.baseAddress!, count: h1) }
        }
        energy.weights[0].value.withUnsafeBufferPointer { w0 in
            BLAS.sgemm(
                transA: false, transB: true, m: batch, n: h1, k: d + k, cond, lda: d + k, w0.baseAddress!, ldb: w,
                beta: 1, terms, ldc: h1)
        }
        return bankFirstLayer.withUnsafeBufferPointer { hx in
            energy.forward(batch: rows) { z0 in
                for b in 0..<batch {
                    let t = terms + b * h1
                    for j in 0..<p {
                        let dst = z0 + (b * p + j) * h1, src = hx.baseAddress! + Int(bankIndex[b * p + j]) * h1
                        for c in 0..<h1 { dst[c] = t[c] + src[c] }
                    }
                }
            }
        }
    }

    /// Per row group: the `n` lowest-energy proposals' latents, energies and manifold coordinates.
    private func selectStarts(
        energies e: UnsafePointer<Float>, bankIndex: UnsafePointer<Float>, batch: Int, samplesPerRow n: Int,
        proposals p: Int, into z: UnsafeMutablePointer<Float>, energies startE: UnsafeMutablePointer<Float>,
        manifold startX: UnsafeMutablePointer<Float>
    ) {
        let l = spec.latentDim, d = spec.obsDim
        proposalIndex.reserve(batch * p)
        bank.withUnsafeBufferPointer { bk in
            decodedBank.withUnsafeBufferPointer { dx in
                for b in 0..<batch {
                    // Partial selection sort of the n lowest energies (n and p are small).
                    let order = proposalIndex.pointer + b * p
                    for j in 0..<p { order[j] = Float(j) }
                    for k in 0..<min(n, p) {
                        var best = k
                        for j in (k + 1)..<max(p, k + 1) where e[b * p + Int(order[j])] < e[b * p + Int(order[best])] { best = j }
                        let tmp = order[k]; order[k] = order[best]; order[best] = tmp
                    }
                    for k in 0..<n {
                        let src = Int(order[k % p])
                        let idx = Int(bankIndex[b * p + src])
                        (z + (b * n + k) * l).update(from: bk.baseAddress! + idx * l, count: l)
                        startE[b * n + k] = e[b * p + src]
                        (startX + (b * n + k) * d).update(from: dx.baseAddress! + idx * d, count: d)
                    }
                }
            }
        }
    }

    /// One decoder + energy forward and backward pass (conditioning already in place).
    private func latentGradient(_ z: UnsafePointer<Float>, rows: Int) -> (energies: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Float>) {
        let nets = differentiable()
        let x = nets.decoder.forward(z, batch: rows)
        placeManifold(x, rows: rows)
        let e = nets.energy.forward(input.pointer, batch: rows)
        let gx = energyGradientX(nets.energy, rows: rows)
        let gz = nets.decoder.backward(gx, accumulateParameterGradients: false, computeInputGradient: true)!
        return (UnsafePointer(e), gz)
    }

    /// The decoder and energy replicas Langevin runs backward through: the forward ones unless
    /// those are forward-only, else replicas made on the first call.
    private func differentiable() -> (decoder: MLP, energy: MLP) {
        if let nets = gradientNetworks { return nets }
        let nets = decoder.forwardOnly ? (decoderSource.replica(), energySource.replica()) : (decoder, energy)
        gradientNetworks = nets
        return nets
    }

    private func prepareConditioning(observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int, samplesPerRow: Int) {
        let rows = batch * samplesPerRow
        let d = spec.obsDim, k = spec.actDim, w = spec.energyInputDim
        input.reserve(rows * w)
        ones.reserve(rows)
        for r in 0..<rows { ones.pointer[r] = 1 }
        let p = input.pointer
        for b in 0..<batch {
            for s in 0..<samplesPerRow {
                let row = p + (b * samplesPerRow + s) * w
                row.update(from: observations + b * d, count: d)
                (row + d).update(from: actions + b * k, count: k)
            }
        }
    }

    /// Writes manifold coordinates into the last `obsDim` columns of the energy input.
    private func placeManifold(_ x: UnsafePointer<Float>, rows: Int) {
        let d = spec.obsDim, w = spec.energyInputDim, off = w - d
        let p = input.pointer
        for r in 0..<rows { (p + r * w + off).update(from: x + r * d, count: d) }
    }

    /// ∂E/∂x for each row after an energy forward pass (no parameter gradients).
    private func energyGradientX(_ energy: MLP, rows: Int) -> UnsafeMutablePointer<Float> {
        let d = spec.obsDim, w = spec.energyInputDim
        let gIn = energy.backward(ones.pointer, accumulateParameterGradients: false, computeInputGradient: true)!
        gradX.reserve(rows * d)
        Columns.slice(gIn, rows: rows, total: w, start: w - d, width: d, into: gradX.pointer)
        return gradX.pointer
    }

    private func step(
        _ v: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>, width: Int, batch: Int, samplesPerRow: Int,
        schedule: LangevinSchedule, t: Int, rngs: UnsafeMutablePointer<RNG>
    ) {
        let eta = schedule.stepSize(t), sigma = schedule.noiseStd(t)
        for b in 0..<batch {
            for s in 0..<samplesPerRow {
                let r = b * samplesPerRow + s
                let vr = v + r * width, gr = g + r * width
                var norm: Float = 0
                for j in 0..<width { norm += gr[j] * gr[j] }
                norm = norm.squareRoot()
                var scale: Float = 1
                if schedule.normalizeGradient {
                    scale = 1 / (norm + 1e-8)
                } else if let clip = schedule.gradientClip, norm > clip {
                    scale = clip / norm
                }
                for j in 0..<width { vr[j] -= eta * scale * gr[j] }
                if sigma > 0 {
                    var j = 0
                    while j < width {
                        let (n0, n1) = rngs[b].normalPair()
                        vr[j] += sigma * n0
                        if j + 1 < width { vr[j + 1] += sigma * n1 }
                        j += 2
                    }
                }
            }
        }
    }

    private func finish(energies e: UnsafeMutablePointer<Float>, rows: Int) -> (manifold: UnsafePointer<Float>, energies: UnsafePointer<Float>) {
        let d = spec.obsDim, w = spec.energyInputDim
        sampleEnergies.reserve(rows)
        sampleEnergies.pointer.update(from: e, count: rows)
        manifold.reserve(rows * d)
        Columns.slice(input.pointer, rows: rows, total: w, start: w - d, width: d, into: manifold.pointer)
        return (UnsafePointer(manifold.pointer), UnsafePointer(sampleEnergies.pointer))
    }
}

/// One energy check of a few rows whose bank proposals two `EnergySampler`s of the same model
/// score, each a range of every row's proposals (the server's two workers on one request): the
/// beginning sampler draws every bank index (`beginSplit`), any sampler scores a range
/// (`scoreSplit`), and the beginning sampler picks the starts and finishes (`finishSplit`). The
/// draws do not depend on the split, so `E_min` equals `evaluate`'s up to the float32 rounding of
/// differently sized products. Its buffers grow to the largest job begun and are then reused.
///
/// Thread safety: the scoring samplers write disjoint ranges of the energies; whoever hands the job
/// between threads must order those writes before `finishSplit` reads them (the server's queue
/// lock and semaphores do).
public final class ProposalSplit: @unchecked Sendable {
    /// Rows of the job begun last.
    public fileprivate(set) var batch = 0
    /// Proposals per row.
    public fileprivate(set) var proposals = 0
    fileprivate var observations: UnsafePointer<Float>?
    fileprivate var actions: UnsafePointer<Float>?
    /// `batch × proposals` bank indices (as floats, like the sampler's own).
    fileprivate let bankIndex = FloatBuffer()
    /// `batch × proposals` energies, written by the scoring samplers.
    fileprivate let energies = FloatBuffer()
    /// Per row: its generator after the bank draws.
    fileprivate var rngs: [RNG] = []
    /// Staged proposals: the rows that go on to the second stage, once `endFirstStage` chose them.
    fileprivate var pending: [Int] = []
    fileprivate var secondStagePlanned = false

    /// Rows the second stage scores (0 until `EnergySampler.endFirstStage`, and for unstaged jobs).
    public var secondStageRows: Int { secondStagePlanned ? pending.count : 0 }

    public init() {}
}
