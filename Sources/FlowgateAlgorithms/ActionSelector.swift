import FlowgateCore

/// Best-of-M action selection with an energy reliability check, for one thread.
///
/// For B observations: normalise, draw M candidates each by K-step flow sampling from seeded noise
/// (every observation × candidate is one row of each matrix product), score them with the twin-min
/// critic, pick the argmax (or a softmax sample), map back to action units, clip to the bounds,
/// then run the energy check on the chosen actions. Every random draw for observation i comes
/// from generators derived from `seeds[i]`, so a row's result does not depend on its batch.
public final class ActionSelector {
    public let transform: PolicyTransform
    public let sampler: CandidateSampler
    /// Scores the candidates; without a critic the first candidate is taken and `q` is NaN.
    public let critic: TwinCritic?
    public let checker: TransitionChecker?
    private let normObs = FloatBuffer()
    private let rowObs = FloatBuffer()
    private let chosen = FloatBuffer()
    private let nanQ = FloatBuffer()

    /// The sampler and critic should own replicas for this selector's thread.
    public init(transform: PolicyTransform, sampler: CandidateSampler, critic: TwinCritic?, checker: TransitionChecker?) {
        self.transform = transform
        self.sampler = sampler
        self.critic = critic
        self.checker = checker
    }

    public var observationDim: Int { sampler.observationDim }
    public var actionDim: Int { sampler.actionDim }

    /// Default of `rowsPerPass`.
    public static let candidateRowsPerPass = 1024

    /// Most candidate rows (observations × candidates) one pass computes, and most proposal rows
    /// one pass of the energy check scores. A larger batch is selected in passes of whole
    /// observations, so the networks' workspaces stay bounded by this whatever the batch, and
    /// every row's result depends only on its seed. The server sets it from `pass_rows`.
    public var rowsPerPass = ActionSelector.candidateRowsPerPass {
        didSet { checker?.limitRowsPerPass(rowsPerPass) }
    }

    /// Selects actions for `count` raw observations (count × observationDim, row-major).
    public func act(observations: [Float], count: Int, seeds: [UInt64], settings: SelectionSettings) -> ActionBatch {
        let obsDim = observationDim
        precondition(observations.count == count * obsDim, "act: \(observations.count) values for \(count)×\(obsDim) observations")
        precondition(seeds.count == count, "act: one seed per observation")
        // Without a critic there is nothing to choose between: one candidate per observation.
        let m = critic == nil ? 1 : settings.candidates
        let chunk = max(1, rowsPerPass / max(m, 1))
        if count <= chunk { return actPass(observations: observations, count: count, seeds: seeds, settings: settings) }
        var out = ActionBatch(actions: [], q: [], energy: [], confidence: [], reliable: [])
        var start = 0
        while start < count {
            let end = min(start + chunk, count)
            let part = actPass(
                observations: Array(observations[(start * obsDim)..<(end * obsDim)]), count: end - start,
                seeds: Array(seeds[start..<end]), settings: settings)
            out.actions += part.actions
            out.q += part.q
            out.energy += part.energy
            out.confidence += part.confidence
            out.reliable += part.reliable
            start = end
        }
        return out
    }

    private func actPass(observations: [Float], count: Int, seeds: [UInt64], settings: SelectionSettings) -> ActionBatch {
        let obsDim = observationDim
        let m = critic == nil ? 1 : settings.candidates
        normObs.reserve(count * obsDim)
        for i in 0..<(count * obsDim) {
            let j = i % obsDim
            normObs.pointer[i] = (observations[i] - transform.observationMean[j]) / transform.observationStd[j]
        }
        var rngs: [RNG] = []
        rngs.reserveCapacity(count * m)
        for i in 0..<count {
            let base = RNG(seed: seeds[i])
            for j in 0..<m { rngs.append(base.derived(UInt64(j))) }
        }
        let candidates = sampler.sample(
            observations: normObs.pointer, count: count, perObservation: m, steps: settings.steps,
            rngs: &rngs)
        rowObs.reserve(count * m * observationDim)
        for i in 0..<count {
            for j in 0..<m { (rowObs.pointer + (i * m + j) * observationDim).update(from: normObs.pointer + i * observationDim, count: observationDim) }
        }
        let q: UnsafeMutablePointer<Float>
        if let critic {
            q = critic.minQ(obs: rowObs.pointer, actions: candidates, batch: count * m)
        } else {
            chosen.reserve(count * actionDim)
            nanQ.reserve(count)
            for i in 0..<count { nanQ.pointer[i] = .nan }
            q = nanQ.pointer
        }
        chosen.reserve(count * actionDim)
        var qChosen = [Float](repeating: 0, count: count)
        for i in 0..<count {
            var best = 0
            for j in 1..<max(m, 1) where q[i * m + j] > q[i * m + best] { best = j }
            qChosen[i] = q[i * m + best]
            (chosen.pointer + i * actionDim).update(from: candidates + (i * m + best) * actionDim, count: actionDim)
        }
        var energy = [Float](repeating: .nan, count: count)
        var confidence = [Float](repeating: 0, count: count)
        var reliable = [Bool](repeating: false, count: count)
        if settings.check, let checker {
            var erngs = (0..<count).map { RNG(seed: seeds[$0]).derived(1 << 41) }
            energy = checker.minimumEnergy(observations: normObs.pointer, actions: chosen.pointer, count: count, samples: settings.samples, rngs: &erngs)
            for i in 0..<count {
                confidence[i] = checker.confidence(energy: energy[i])
                reliable[i] = energy[i] <= checker.threshold
            }
        }
        var actions = [Float](repeating: 0, count: count * actionDim)
        for i in 0..<(count * actionDim) {
            let j = i % actionDim
            let lo = transform.actionLow[j], hi = transform.actionHigh[j]
            actions[i] = min(max(lo + (chosen.pointer[i] + 1) * 0.5 * (hi - lo), lo), hi)
        }
        return ActionBatch(actions: actions, q: qChosen, energy: energy, confidence: confidence, reliable: reliable)
    }
}
