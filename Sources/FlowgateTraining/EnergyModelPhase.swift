import FlowgateAlgorithms
import FlowgateCore

/// Phase 2 of energy training: the conditional energy `E(s, a, x)` learns to rank each real
/// transition below K hard negatives (InfoNCE with logits −E).
///
/// Negatives per positive `(s, a, x)`, all detached:
/// - latent-manifold (MPDR): `z = enc(x)`, `z~ = normalise(z + σ ε)`, `σ ~ U[σmin, σmax]`, then a few
///   latent Langevin steps under the current energy (`EnergySampler.refineLatents`), decoded;
/// - ambient (ETM, share `ambientFraction`): uniform in [-range, range], clipped-gradient Langevin in x;
/// - optional action negatives (`actionNegatives`): `(s, a~, x~)` with `a~` uniform in [-1, 1] and
///   `x~` refined by latent Langevin under `(s, a~)`, started from the perturbed positive latent or,
///   with `actionNegativeProposals > 0`, from the lowest-energy of that many latent-bank proposals
///   (where the inference sampler starts, so the negatives sit where `E_min` will be found).
/// Loss: InfoNCE + `energyL2Weight · mean(E²)` + `gradientPenaltyWeight · P` (see
/// `EnergyGradientPenalty`). The autoencoder is frozen.
public final class EnergyModelPhase: TrainingPhase {
    public let name = "energy"
    public var totalSteps: Int { skeleton.totalSteps }
    public var completedSteps: Int { skeleton.completedSteps }
    let model: EnergyTransitionModel
    let config: EnergyTrainingConfig
    let observations: [Float], actions: [Float], manifold: [Float]
    /// Positives are drawn from the manifold rows; the same stream seeds the negatives.
    var skeleton: PhaseSkeleton
    private(set) var sampler: EnergySampler
    let penalty: EnergyGradientPenalty
    let latentCount: Int, ambientCount: Int, actionCount: Int
    let bankSeed: UInt64

    private let sB = FloatBuffer(), aB = FloatBuffer(), xB = FloatBuffer()
    private let z0 = FloatBuffer(), zNeg = FloatBuffer()
    private let xLatent = FloatBuffer(), xAmbient = FloatBuffer(), xAction = FloatBuffer()
    private let sRep = FloatBuffer(), aRand = FloatBuffer(), zAct = FloatBuffer()
    private let input = FloatBuffer(), logits = FloatBuffer(), grad = FloatBuffer()
    private var rowRNGs: [RNG] = []
    private var actionRNGs: [RNG] = []

    init(
        model: EnergyTransitionModel, observations: [Float], actions: [Float], manifold: [Float],
        config: EnergyTrainingConfig, rng: RNG, bankSeed: UInt64
    ) {
        self.bankSeed = bankSeed
        self.model = model
        self.config = config
        self.observations = observations
        self.actions = actions
        self.manifold = manifold
        ambientCount = Int((Double(config.negatives) * config.ambientFraction).rounded())
        latentCount = config.negatives - ambientCount
        actionCount = config.actionNegatives
        let optimizer = Adam(
            parameters: model.energyParameters, learningRate: config.learningRate, weightDecay: config.weightDecay,
            maxGradNorm: config.maxGradNorm)
        skeleton = PhaseSkeleton(
            steps: config.energySteps, optimizer: optimizer,
            sampler: MinibatchSampler(rng: rng, population: manifold.count / model.spec.obsDim, batchSize: config.batchSize),
            keys: .suffixed("energy"))
        sampler = EnergySampler(model: model)
        penalty = EnergyGradientPenalty(margin: config.gradientPenaltyMargin, epsilon: config.gradientPenaltyEpsilon)
    }

    /// Columns of the InfoNCE matrix: the positive, then latent, ambient and action negatives.
    var columns: Int { 1 + latentCount + ambientCount + actionCount }

    public func step() throws -> [String: Double] {
        if model.latentBank.isEmpty {
            EnergyLatentBank.fill(
                model: model, observations: observations, actions: actions, manifold: manifold, size: config.latentBankSize,
                seed: bankSeed)
            sampler = EnergySampler(model: model)  // a sampler copies the bank when it is made
        }
        let spec = model.spec
        let d = spec.obsDim, k = spec.actDim, l = spec.latentDim, w = spec.energyInputDim
        let b = skeleton.sampler.batchSize
        // 1. Positives.
        skeleton.sampler.draw()
        sB.reserve(b * d); aB.reserve(b * k); xB.reserve(b * d)
        PreparedData.gather(observations, width: d, indices: skeleton.sampler.indices, into: sB.pointer)
        PreparedData.gather(actions, width: k, indices: skeleton.sampler.indices, into: aB.pointer)
        PreparedData.gather(manifold, width: d, indices: skeleton.sampler.indices, into: xB.pointer)
        let base = RNG(seed: skeleton.sampler.rng.next())
        if rowRNGs.count < b { rowRNGs = (0..<b).map { _ in RNG(seed: 0) } }
        for r in 0..<b { rowRNGs[r] = base.derived(UInt64(r)) }
        // Positive latents (needed by latent and action negatives).
        if latentCount > 0 || actionCount > 0 {
            let u = model.encoder.forward(xB.pointer, batch: b)
            z0.reserve(b * l)
            z0.pointer.update(from: u, count: b * l)
            if spec.sphericalLatent { for r in 0..<b { normalise(z0.pointer + r * l, l) } }
        }
        // 2. Latent-manifold negatives.
        if latentCount > 0 {
            perturb(into: zNeg, groups: b, perGroup: latentCount, rngs: &rowRNGs)
            let res = rowRNGs.withUnsafeMutableBufferPointer { rp in
                sampler.refineLatents(
                    observations: sB.pointer, actions: aB.pointer, batch: b, samplesPerRow: latentCount,
                    latents: zNeg.pointer, schedule: config.negativeSchedule, rngs: rp.baseAddress!)
            }
            xLatent.reserve(b * latentCount * d)
            xLatent.pointer.update(from: res.manifold, count: b * latentCount * d)
        }
        // 3. Ambient negatives.
        if ambientCount > 0 {
            xAmbient.reserve(b * ambientCount * d)
            let range = config.ambientRange
            for r in 0..<b {
                for i in 0..<(ambientCount * d) { xAmbient.pointer[r * ambientCount * d + i] = rowRNGs[r].uniform(-range, range) }
            }
            let res = rowRNGs.withUnsafeMutableBufferPointer { rp in
                sampler.refineAmbient(
                    observations: sB.pointer, actions: aB.pointer, batch: b, samplesPerRow: ambientCount,
                    manifold: xAmbient.pointer, schedule: config.ambientSchedule, clamp: range, rngs: rp.baseAddress!)
            }
            xAmbient.pointer.update(from: res.manifold, count: b * ambientCount * d)
        }
        // 4. Action negatives: one group per (positive, random action).
        if actionCount > 0 {
            let g = b * actionCount
            if actionRNGs.count < g { actionRNGs = (0..<g).map { _ in RNG(seed: 0) } }
            sRep.reserve(g * d); aRand.reserve(g * k)
            for r in 0..<b {
                for c in 0..<actionCount {
                    let row = r * actionCount + c
                    actionRNGs[row] = rowRNGs[r].derived(UInt64(c))
                    (sRep.pointer + row * d).update(from: sB.pointer + r * d, count: d)
                    for j in 0..<k { aRand.pointer[row * k + j] = rowRNGs[r].uniform(-1, 1) }
                }
            }
            if config.actionNegativeProposals > 0 && sampler.hasLatentBank {
                zAct.reserve(g * l)
                actionRNGs.withUnsafeMutableBufferPointer { rp in
                    sampler.proposeLatents(
                        observations: sRep.pointer, actions: aRand.pointer, batch: g, samplesPerRow: 1,
                        proposals: config.actionNegativeProposals, rngs: rp.baseAddress!, into: zAct.pointer)
                }
            } else {
                perturb(into: zAct, groups: b, perGroup: actionCount, rngs: &rowRNGs)
            }
            let res = actionRNGs.withUnsafeMutableBufferPointer { rp in
                sampler.refineLatents(
                    observations: sRep.pointer, actions: aRand.pointer, batch: g, samplesPerRow: 1,
                    latents: zAct.pointer, schedule: config.negativeSchedule, rngs: rp.baseAddress!)
            }
            xAction.reserve(g * d)
            xAction.pointer.update(from: res.manifold, count: g * d)
        }
        // 5. Energy inputs, row r * columns + c.
        let cols = columns, rows = b * cols
        input.reserve(rows * w)
        for r in 0..<b {
            for c in 0..<cols {
                let dst = input.pointer + (r * cols + c) * w
                dst.update(from: sB.pointer + r * d, count: d)
                var act = aB.pointer + r * k
                let x: UnsafePointer<Float>
                if c == 0 {
                    x = UnsafePointer(xB.pointer + r * d)
                } else if c <= latentCount {
                    x = UnsafePointer(xLatent.pointer + (r * latentCount + c - 1) * d)
                } else if c <= latentCount + ambientCount {
                    x = UnsafePointer(xAmbient.pointer + (r * ambientCount + c - 1 - latentCount) * d)
                } else {
                    let i = r * actionCount + c - 1 - latentCount - ambientCount
                    x = UnsafePointer(xAction.pointer + i * d)
                    act = aRand.pointer + i * k
                }
                (dst + d).update(from: act, count: k)
                (dst + d + k).update(from: x, count: d)
            }
        }
        // 6. Gradient-norm penalty (its own passes), then InfoNCE + energy L2.
        let pen = penalty.accumulate(
            energy: model.energy, inputs: input.pointer, rows: rows, xWidth: d, weight: config.gradientPenaltyWeight)
        let e = model.energy.forward(input.pointer, batch: rows)
        logits.reserve(rows); grad.reserve(rows)
        var ePos: Double = 0, eNeg: Double = 0, eSq: Double = 0, correct = 0
        for r in 0..<b {
            var best = true
            for c in 0..<cols {
                let v = e[r * cols + c]
                logits.pointer[r * cols + c] = -v
                eSq += Double(v * v)
                if c == 0 { ePos += Double(v) } else { eNeg += Double(v); if v <= e[r * cols] { best = false } }
            }
            if best { correct += 1 }
        }
        let nce = Loss.infoNCE(logits: logits.pointer, rows: b, columns: cols, positive: 0, grad: grad.pointer)
        let l2 = config.energyL2Weight
        for i in 0..<rows { grad.pointer[i] = -grad.pointer[i] + 2 * l2 * e[i] / Float(rows) }
        model.energy.backward(grad.pointer, accumulateParameterGradients: true, computeInputGradient: false)
        let gradNorm = skeleton.finishStep()
        return [
            "infonce": Double(nce), "gradient_penalty": Double(pen.penalty), "grad_x_norm": Double(pen.meanNorm),
            "energy_pos": ePos / Double(b), "energy_neg": eNeg / Double(b * (cols - 1)),
            "energy_sq": eSq / Double(rows), "ranking_accuracy": Double(correct) / Double(b),
            "grad_norm": gradNorm,
        ]
    }

    /// `dst[g * perGroup + j] = normalise(z0[g] + σ ε)` with σ ~ U[σmin, σmax] per row.
    private func perturb(into dst: FloatBuffer, groups: Int, perGroup: Int, rngs: inout [RNG]) {
        let l = model.spec.latentDim
        dst.reserve(groups * perGroup * l)
        for g in 0..<groups {
            for j in 0..<perGroup {
                let row = dst.pointer + (g * perGroup + j) * l
                let sigma = rngs[g].uniform(config.sigmaMin, config.sigmaMax)
                for i in 0..<l { row[i] = z0.pointer[g * l + i] + sigma * rngs[g].normal() }
                if model.spec.sphericalLatent { normalise(row, l) }
            }
        }
    }

    public func stateTensors() -> [String: Tensor] {
        var t = skeleton.state()
        t.merge(model.namedTensors()) { a, _ in a }
        return t
    }

    public func loadState(_ tensors: [String: Tensor]) throws {
        try model.parameters.load(from: tensors)
        model.latentBank = []  // recomputed from the restored autoencoder
        try skeleton.load(tensors)
    }
}
