import FlowgateCore
import FlowgateModelFormat

extension EnergyModelSpec {
    /// Role of the energy network in a model directory's manifest.
    public static let role = "energy"
    /// Fixed tensor holding `deltaScale` (`[obsDim]`).
    public static let deltaScaleTensor = "delta_scale"
    /// Optional fixed tensor holding the latent bank (`[count, latentDim]`).
    public static let latentBankTensor = "latent_bank"
    /// Optional fixed tensor holding each bank entry's source `(s, a)` (`[count, obsDim + actDim]`).
    public static let bankSourcesTensor = "bank_sources"

    /// The manifest entry: MLPs `enc`, `dec`, `energy`; fixed tensor `delta_scale`; options
    /// `latentDim`, `spherical` (0/1), `target` (0 = delta, 1 = next state) and the inference
    /// Langevin schedule (`langevinSteps`, `stepSize`, `finalStepSize`, `noise`).
    public func networkSpec(
        sampling: EnergySamplingConfig = EnergySamplingConfig(), latentBankCount: Int = 0, bankSources: Bool = false
    ) -> NetworkSpec {
        let s = sampling.schedule
        var fixed = [EnergyModelSpec.deltaScaleTensor: [obsDim]]
        if latentBankCount > 0 { fixed[EnergyModelSpec.latentBankTensor] = [latentBankCount, latentDim] }
        if latentBankCount > 0 && bankSources { fixed[EnergyModelSpec.bankSourcesTensor] = [latentBankCount, obsDim + actDim] }
        var options: [String: Double] = [
            "latentDim": Double(latentDim), "spherical": sphericalLatent ? 1 : 0, "target": target == .delta ? 0 : 1,
            "langevinSteps": Double(s.steps), "stepSize": Double(s.initialStepSize),
            "finalStepSize": Double(s.finalStepSize), "noise": Double(s.noise), "proposals": Double(sampling.proposals),
        ]
        // Written only when staged, so manifests without it stay as they were.
        if sampling.firstProposals > 0 { options["firstProposals"] = Double(sampling.firstProposals) }
        // Only with sources to search: a model without them keeps random proposals (the sampler
        // ignores `nearest` then), and its manifest says so.
        if sampling.nearest && latentBankCount > 0 && bankSources { options["nearestProposals"] = 1 }
        return NetworkSpec(
            file: "energy.safetensors", kind: "mc-etm-energy",
            mlps: ["enc": encoderSpec, "dec": decoderSpec, "energy": energySpec],
            fixedTensors: fixed, options: options)
    }

    /// Rebuilds the spec (and the inference schedule) from a manifest entry and its tensors.
    public static func decode(
        network n: NetworkSpec, tensors: [String: Tensor], observationDim: Int, actionDim: Int
    ) throws -> (spec: EnergyModelSpec, sampling: EnergySamplingConfig) {
        func bad(_ why: String) -> ModelFileError { ModelFileError(path: n.file, .invalidManifest(why)) }
        guard n.kind == "mc-etm-energy" else { throw bad("network kind '\(n.kind)' is not an MC-ETM energy model") }
        guard let enc = n.mlps["enc"], let dec = n.mlps["dec"], let en = n.mlps["energy"] else {
            throw bad("energy model needs MLPs 'enc', 'dec' and 'energy'")
        }
        guard let scale = tensors[deltaScaleTensor], scale.count == observationDim, scale.scalars.allSatisfy({ $0 > 0 }) else {
            throw bad("energy model needs a positive '\(deltaScaleTensor)' of \(observationDim) values")
        }
        let o = n.options ?? [:]
        let spec = EnergyModelSpec(
            obsDim: observationDim, actDim: actionDim, latentDim: enc.outputDim, encoderHidden: enc.hiddenDims,
            decoderHidden: dec.hiddenDims, autoencoderActivation: dec.activation, energyHidden: en.hiddenDims,
            energyActivation: en.activation, target: (o["target"] ?? 0) == 0 ? .delta : .nextState,
            sphericalLatent: (o["spherical"] ?? 1) != 0, deltaScale: scale.scalars)
        guard spec.encoderSpec == enc, spec.decoderSpec == dec, spec.energySpec == en else {
            throw ModelFileError(
                path: Manifest.fileName,
                .invalidManifest("network '\(EnergyModelSpec.role)' (\(n.file)): encoder, decoder or energy MLP sizes do not fit observationDim \(observationDim) / actionDim \(actionDim)"))
        }
        /// A count option: a whole number in 0...1_000_000 (converting a larger double would trap).
        func count(_ name: String, default value: Int) throws -> Int {
            guard let x = o[name] else { return value }
            guard x >= 0, x <= 1_000_000, x == x.rounded() else {
                throw bad("option '\(name)' must be a whole number from 0 to 1000000, not \(x)")
            }
            return Int(x)
        }
        let d = LangevinSchedule.inference
        let schedule = LangevinSchedule(
            steps: try count("langevinSteps", default: d.steps), initialStepSize: Float(o["stepSize"] ?? Double(d.initialStepSize)),
            finalStepSize: Float(o["finalStepSize"] ?? Double(d.finalStepSize)), noise: Float(o["noise"] ?? Double(d.noise)))
        let proposals = try count("proposals", default: EnergySamplingConfig().proposals)
        let first = try count("firstProposals", default: 0)
        let nearest = try count("nearestProposals", default: 0)
        guard nearest <= 1 else { throw bad("option 'nearestProposals' must be 0 or 1, not \(nearest)") }
        if nearest == 1 {
            guard proposals > 0, tensors[bankSourcesTensor] != nil, tensors[latentBankTensor] != nil else {
                throw bad("option 'nearestProposals' needs proposals > 0, a '\(latentBankTensor)' and its '\(bankSourcesTensor)'")
            }
        }
        return (
            spec,
            EnergySamplingConfig(
                samples: EnergySamplingConfig().samples, schedule: schedule, proposals: proposals, firstProposals: first,
                nearest: nearest == 1)
        )
    }
}

extension EnergyTransitionModel {
    /// The model's tensors for its model-directory file (networks plus `delta_scale`).
    public func fileTensors() -> [String: Tensor] {
        var t = namedTensors()
        t[EnergyModelSpec.deltaScaleTensor] = Tensor(shape: [spec.obsDim], scalars: spec.deltaScale)
        if !latentBank.isEmpty {
            let count = latentBank.count / spec.latentDim
            t[EnergyModelSpec.latentBankTensor] = Tensor(shape: [count, spec.latentDim], scalars: latentBank)
            if hasBankSources {
                t[EnergyModelSpec.bankSourcesTensor] = Tensor(shape: [count, spec.obsDim + spec.actDim], scalars: bankSources)
            }
        }
        return t
    }

    /// Whether every bank entry has its source `(s, a)`.
    public var hasBankSources: Bool {
        !latentBank.isEmpty && bankSources.count == latentBank.count / spec.latentDim * (spec.obsDim + spec.actDim)
    }

    /// The manifest entry for this model (with its latent bank and the bank's sources, if any).
    public func networkSpec(sampling: EnergySamplingConfig) -> NetworkSpec {
        spec.networkSpec(sampling: sampling, latentBankCount: latentBank.count / spec.latentDim, bankSources: hasBankSources)
    }

    /// The energy model of a model directory (with its latent bank), the inference sampling its
    /// manifest records (`samples` from the manifest's sampling defaults) and its calibration; nil
    /// when the directory has no `energy` network.
    public static func load(
        from model: ModelFiles
    ) throws -> (model: EnergyTransitionModel, sampling: EnergySamplingConfig, calibration: ReliabilityCalibration?)? {
        let m = model.manifest
        guard let n = m.networks[EnergyModelSpec.role], let tensors = model.networks[EnergyModelSpec.role] else { return nil }
        var (spec, sampling) = try EnergyModelSpec.decode(
            network: n, tensors: tensors, observationDim: m.observationDim, actionDim: m.actionDim)
        let energyModel = try EnergyTransitionModel(spec: spec, tensors: tensors)  // validates every tensor
        if let b = tensors[EnergyModelSpec.latentBankTensor] {
            guard b.shape.count == 2, b.shape[1] == spec.latentDim else {
                throw ModelFileError(path: n.file, .invalidManifest("'\(EnergyModelSpec.latentBankTensor)' must be [count, \(spec.latentDim)]"))
            }
            energyModel.latentBank = b.scalars
            if let src = tensors[EnergyModelSpec.bankSourcesTensor] {
                let w = spec.obsDim + spec.actDim
                guard src.shape == [b.shape[0], w], src.scalars.allSatisfy({ $0.isFinite }) else {
                    throw ModelFileError(
                        path: n.file,
                        .invalidManifest("'\(EnergyModelSpec.bankSourcesTensor)' must be [\(b.shape[0]), \(w)] finite values (one (s, a) per bank entry)"))
                }
                energyModel.bankSources = src.scalars
            }
        } else if tensors[EnergyModelSpec.bankSourcesTensor] != nil {
            throw ModelFileError(path: n.file, .invalidManifest("'\(EnergyModelSpec.bankSourcesTensor)' without a '\(EnergyModelSpec.latentBankTensor)'"))
        }
        if m.sampling.samples > 0 { sampling.samples = m.sampling.samples }
        return (energyModel, sampling, m.reliability.map(ReliabilityCalibration.init(manifest:)))
    }

    /// For `PolicyBundle(model:checkerFactory:)` / `flowgate serve`: a factory of per-thread
    /// checkers when the model directory has an `energy` network, nil otherwise. Without a
    /// `reliability` section every transition is reliable and confidence is NaN.
    public static func checkerFactory(_ model: ModelFiles) throws -> (@Sendable () -> TransitionChecker)? {
        guard let loaded = try load(from: model) else { return nil }
        let spec = loaded.model.spec, sampling = loaded.sampling, calibration = loaded.calibration
        let bank = loaded.model.latentBank, sources = loaded.model.bankSources
        let tensors = model.networks[EnergyModelSpec.role]!
        // The closure captures only values (spec, tensors, bank, the bank's tables): each worker's
        // checker builds its own networks on the shared, never-written weight storage, and shares
        // the bank tables instead of computing a copy of its own.
        let tables = EnergySampler.bankTables(model: loaded.model, frozenEnergy: true)
        return { [bank, sources] in
            let model = try! EnergyTransitionModel(spec: spec, tensors: tensors)
            model.latentBank = bank
            model.bankSources = sources
            return EnergyTransitionChecker(model: model, sampling: sampling, calibration: calibration, bankTables: tables)
        }
    }
}

extension ReliabilityCalibration {
    /// From a manifest's `reliability` section (its `calibration` is the sorted quantile table).
    public init(manifest r: Manifest.Reliability) {
        self.init(
            quantile: Double(r.quantile), threshold: r.threshold, table: r.calibration, heldOutCount: r.heldOutCount,
            exitEnergy: r.exitEnergy)
    }

    /// The manifest's `reliability` section.
    public var manifestValue: Manifest.Reliability {
        Manifest.Reliability(
            threshold: threshold, quantile: Float(quantile), calibration: table, heldOutCount: heldOutCount, exitEnergy: exitEnergy)
    }
}

/// The server's energy check (`TransitionChecker`) on an `EnergySampler`: one per worker thread.
public final class EnergyTransitionChecker: TransitionChecker {
    public let sampler: EnergySampler
    public let calibration: ReliabilityCalibration?
    private var seeds: [UInt64] = []

    public init(
        model: EnergyTransitionModel, sampling: EnergySamplingConfig, calibration: ReliabilityCalibration?,
        bankTables: EnergySampler.BankTables? = nil
    ) {
        sampler = EnergySampler(model: model, config: sampling, frozenEnergy: true, bankTables: bankTables)
        // Staged proposals stop a row once it is below the threshold: its flag cannot change after.
        if sampling.firstProposals > 0 { sampler.exitEnergy = calibration?.stageExit }
        self.calibration = calibration
    }

    public func minimumEnergy(
        observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, count: Int, samples: Int, rngs: inout [RNG]
    ) -> [Float] {
        drawSeeds(count: count, samples: samples, rngs: &rngs)
        var out = [Float](repeating: 0, count: count)
        seeds.withUnsafeBufferPointer { sd in
            out.withUnsafeMutableBufferPointer { o in
                sampler.evaluate(
                    observations: observations, actions: actions, seeds: sd.baseAddress!, batch: count,
                    eMin: o.baseAddress!, predictedNext: nil, spread: nil)
            }
        }
        return out
    }

    /// Each pair's sampler seed, one draw from its generator (what `minimumEnergy` and `beginSplit` share).
    private func drawSeeds(count: Int, samples: Int, rngs: inout [RNG]) {
        if seeds.count < count { seeds = [UInt64](repeating: 0, count: count) }
        for i in 0..<count { seeds[i] = rngs[i].next() }
        sampler.config.samples = max(samples, 1)
    }

    public var splitStageProposals: [Int] { sampler.splitStageProposals }

    public func beginSplit(
        _ job: ProposalSplit, observations: UnsafePointer<Float>, actions: UnsafePointer<Float>, count: Int,
        samples: Int, rngs: inout [RNG]
    ) {
        drawSeeds(count: count, samples: samples, rngs: &rngs)
        seeds.withUnsafeBufferPointer {
            sampler.beginSplit(job, observations: observations, actions: actions, seeds: $0.baseAddress!, batch: count)
        }
    }

    public func scoreSplit(_ job: ProposalSplit, stage: Int, proposals range: Range<Int>) {
        sampler.scoreSplit(job, stage: stage, proposals: range)
    }

    public func endSplitStage(_ job: ProposalSplit, stage: Int) {
        if stage == 0 { sampler.endFirstStage(job) }
    }

    public func finishSplit(_ job: ProposalSplit) -> [Float] {
        var out = [Float](repeating: 0, count: job.batch)
        out.withUnsafeMutableBufferPointer { sampler.finishSplit(job, eMin: $0.baseAddress!) }
        return out
    }

    public func confidence(energy: Float) -> Float { calibration?.confidence(energy) ?? .nan }
    public func flopsPerPair(samples: Int) -> Double { sampler.flopsPerRow(samples: max(samples, 1)) }
    public var threshold: Float { calibration?.threshold ?? .infinity }
    public func limitRowsPerPass(_ rows: Int) { sampler.proposalRowsPerPass = max(1, rows) }
}
