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
    private let rowObs = FloatBuffer()

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
        let job = ownJob
        beginSplit(job, observations: observations, count: count, seeds: seeds, settings: settings, splitCheck: false)
        computeCandidates(job, range: 0..<job.candidatesPerObservation)
        joinCandidates(job)
        return finishSplit(job)
    }

    // MARK: One selection computed by two selectors

    /// The job `act` computes through, and the one this selector begins when it shares a selection.
    private let ownJob = SelectionJob()
    /// Candidate generators of one `computeCandidates` call (capacity kept).
    private var candidateRNGs: [RNG] = []

    /// How many phases a selection of `count` observations with `settings` has when two selectors
    /// share it: 1 (candidates), then one per stage of the check's bank proposals
    /// (`TransitionChecker.splitStageProposals`: 2 phases in all, or 3 with staged proposals), or 0
    /// when it cannot be shared (one candidate per observation, or a half that would not fit one
    /// pass of `rowsPerPass` rows).
    public func splitPhases(count: Int, settings: SelectionSettings) -> Int {
        let m = critic == nil ? 1 : settings.candidates
        guard count > 0, m >= 2, count * ((m + 1) / 2) <= rowsPerPass else { return 0 }
        let stages = settings.check ? checker?.splitStageProposals ?? [] : []
        return (stages.first ?? 0) >= 2 ? 1 + stages.count : 1
    }

    /// Begins a selection of `count` observations in `job` (this selector's `newJob()` or its own):
    /// normalises them and keeps the seeds and settings. Then any selector of the same model computes
    /// ranges of the candidates (`computeCandidates`), this one picks each observation's best
    /// (`joinCandidates`), any selector scores ranges of the check's proposals (`computeProposals`,
    /// stage by stage, each ended by this one's `joinProposals`, when `splitCheck` and `splitPhases`
    /// is 2 or more), and this one finishes (`finishSplit`). Every
    /// candidate and proposal draws from generators derived from its observation's seed alone, so
    /// the result is `act`'s whatever the ranges (up to float32 rounding of differently sized
    /// products).
    public func beginSplit(
        _ job: SelectionJob, observations: [Float], count: Int, seeds: [UInt64], settings: SelectionSettings,
        splitCheck: Bool = true
    ) {
        let obsDim = observationDim
        precondition(observations.count == count * obsDim && seeds.count == count, "beginSplit: \(count) observations")
        let m = critic == nil ? 1 : settings.candidates
        job.count = count
        job.settings = settings
        job.candidatesPerObservation = m
        job.seeds.removeAll(keepingCapacity: true)
        job.seeds.append(contentsOf: seeds)
        job.splitCheck = splitCheck && settings.check && (checker?.splitProposals ?? 0) >= 2
        job.stageProposals = job.splitCheck ? checker!.splitStageProposals : []
        job.normObs.reserve(count * obsDim)
        job.candidates.reserve(count * m * actionDim)
        job.q.reserve(count * m)
        job.chosen.reserve(count * actionDim)
        let normObs = job.normObs.pointer
        for i in 0..<(count * obsDim) {
            let j = i % obsDim
            normObs[i] = (observations[i] - transform.observationMean[j]) / transform.observationStd[j]
        }
    }

    /// K-step flow samples and twin-min values of candidates `range` of every observation of `job`,
    /// written into the job (row `i · M + j` for candidate j of observation i).
    public func computeCandidates(_ job: SelectionJob, range: Range<Int>) {
        guard !range.isEmpty else { return }
        let count = job.count, m = job.candidatesPerObservation, width = range.count
        let obsDim = observationDim, actDim = actionDim
        candidateRNGs.removeAll(keepingCapacity: true)
        for i in 0..<count {
            let base = RNG(seed: job.seeds[i])
            for j in range { candidateRNGs.append(base.derived(UInt64(j))) }
        }
        let normObs = job.normObs.pointer
        let candidates = sampler.sample(
            observations: normObs, count: count, perObservation: width, steps: job.settings.steps, rngs: &candidateRNGs)
        for i in 0..<count {
            (job.candidates.pointer + (i * m + range.lowerBound) * actDim).update(
                from: candidates + i * width * actDim, count: width * actDim)
        }
        guard let critic else {
            for i in 0..<count { for j in range { job.q.pointer[i * m + j] = .nan } }
            return
        }
        rowObs.reserve(count * width * obsDim)
        for i in 0..<count {
            for j in 0..<width { (rowObs.pointer + (i * width + j) * obsDim).update(from: normObs + i * obsDim, count: obsDim) }
        }
        let q = critic.minQ(obs: rowObs.pointer, actions: candidates, batch: count * width)
        for i in 0..<count {
            (job.q.pointer + i * m + range.lowerBound).update(from: q + i * width, count: width)
        }
    }

    /// Picks each observation's best candidate of `job` (the argmax of the twin-min values, the first
    /// on ties) once all candidates are computed, and with a shared check draws its proposals.
    public func joinCandidates(_ job: SelectionJob) {
        let count = job.count, m = job.candidatesPerObservation, actDim = actionDim
        let q = job.q.pointer
        job.qChosen.removeAll(keepingCapacity: true)
        for i in 0..<count {
            var best = 0
            for j in 1..<max(m, 1) where q[i * m + j] > q[i * m + best] { best = j }
            job.qChosen.append(q[i * m + best])
            (job.chosen.pointer + i * actDim).update(from: job.candidates.pointer + (i * m + best) * actDim, count: actDim)
        }
        guard job.splitCheck, let checker else { return }
        var rngs = checkRNGs(job)
        checker.beginSplit(
            job.check, observations: job.normObs.pointer, actions: job.chosen.pointer, count: count,
            samples: job.settings.samples, rngs: &rngs)
    }

    /// Scores proposals `range` of stage `stage` of every observation's check in `job` (after
    /// `joinCandidates`, and after `joinProposals` of the stages before).
    public func computeProposals(_ job: SelectionJob, stage: Int = 0, range: Range<Int>) {
        guard job.splitCheck, let checker else { return }
        checker.scoreSplit(job.check, stage: stage, proposals: range)
    }

    /// Ends stage `stage` of the check's proposals once both ranges are scored (on the selector
    /// that began `job`): with staged proposals, the observations that stop after the first.
    public func joinProposals(_ job: SelectionJob, stage: Int) {
        guard job.splitCheck, let checker else { return }
        checker.endSplitStage(job.check, stage: stage)
    }

    /// Whether stage `stage` of `job`'s proposals has anything to score (the second of staged
    /// proposals has nothing when every observation stopped at the first).
    public func proposalStageHasWork(_ job: SelectionJob, stage: Int) -> Bool {
        guard job.splitCheck, stage < job.stageProposals.count else { return false }
        return stage == 0 || job.check.secondStageRows > 0
    }

    /// The check's generators: one per observation, derived from its seed apart from the candidates'.
    private func checkRNGs(_ job: SelectionJob) -> [RNG] {
        (0..<job.count).map { RNG(seed: job.seeds[$0]).derived(1 << 41) }
    }

    /// The energy check (finished from the shared proposals, or computed here), confidence,
    /// reliability and the actions in environment units, for a job this selector began.
    public func finishSplit(_ job: SelectionJob) -> ActionBatch {
        let count = job.count, actDim = actionDim
        var energy = [Float](repeating: .nan, count: count)
        var confidence = [Float](repeating: 0, count: count)
        var reliable = [Bool](repeating: false, count: count)
        if job.settings.check, let checker {
            if job.splitCheck {
                energy = checker.finishSplit(job.check)
            } else {
                var rngs = checkRNGs(job)
                energy = checker.minimumEnergy(
                    observations: job.normObs.pointer, actions: job.chosen.pointer, count: count,
                    samples: job.settings.samples, rngs: &rngs)
            }
            for i in 0..<count {
                confidence[i] = checker.confidence(energy: energy[i])
                reliable[i] = energy[i] <= checker.threshold
            }
        }
        var actions = [Float](repeating: 0, count: count * actDim)
        let chosen = job.chosen.pointer
        for i in 0..<(count * actDim) {
            let j = i % actDim
            let lo = transform.actionLow[j], hi = transform.actionHigh[j]
            actions[i] = min(max(lo + (chosen[i] + 1) * 0.5 * (hi - lo), lo), hi)
        }
        return ActionBatch(actions: actions, q: job.qChosen, energy: energy, confidence: confidence, reliable: reliable)
    }

    /// A job of this selector's model for `beginSplit` (the server's worker keeps one and reuses it).
    public func newJob() -> SelectionJob { SelectionJob() }
}

/// One selection of a few observations that two `ActionSelector`s of the same model share (the
/// server's two workers on one request, issue 12): what `beginSplit` keeps, the candidates and
/// values the selectors write (each its own range), the chosen actions and the check's proposals.
/// Buffers grow to the largest selection begun and are then reused.
///
/// Thread safety: the selectors write disjoint ranges; whoever hands the job between threads must
/// order those writes before the joining selector reads them (the server's queue lock and
/// semaphores do).
public final class SelectionJob: @unchecked Sendable {
    /// Observations of the selection begun last.
    public fileprivate(set) var count = 0
    /// Candidates M per observation.
    public fileprivate(set) var candidatesPerObservation = 1
    /// Bank proposals per observation the check shares in each stage (none: the check is not shared).
    public fileprivate(set) var stageProposals: [Int] = []
    /// Bank proposals per observation the check shares in its first stage (0: the check is not shared).
    public var proposals: Int { stageProposals.first ?? 0 }
    fileprivate var settings = SelectionSettings(steps: 1, candidates: 1, samples: 1, check: false)
    fileprivate var seeds: [UInt64] = []
    fileprivate var splitCheck = false
    fileprivate let normObs = FloatBuffer()
    fileprivate let candidates = FloatBuffer()
    fileprivate let q = FloatBuffer()
    fileprivate let chosen = FloatBuffer()
    fileprivate var qChosen: [Float] = []
    fileprivate let check = ProposalSplit()

    public init() {}
}
