import ArgumentParser
import FlowgateAlgorithms
import FlowgateCommon
import FlowgateCore
import FlowgateModelFormat
import FlowgateTraining
import Foundation

/// Where the energy model of a model directory was trained and which of its rows it never saw.
struct EnergyDataOptions: ParsableArguments {
    @Option(help: "Model directory with an energy network.")
    var model: String
    @Option(help: "The dataset the model was trained on (its held-out split is rebuilt from it).")
    var dataset: String
    @Option(help: "Seed of the energy model's train/held-out split (default: the manifest's training seed, as `flowgate train --energy` derives it).")
    var energySeed: UInt64?
    @Option(help: "Held-out fraction the energy model was trained with.")
    var heldOutFraction = EnergyTrainingConfig().heldOutFraction
    @Option(help: "Held-out rows used to calibrate the threshold: at most this many, drawn at random from the held-out split (a larger split is capped; the rest are not scored).")
    var calibrationRows = EnergyTrainingConfig().calibrationRows

    func validateOptions() throws {
        if !(heldOutFraction > 0 && heldOutFraction < 1) { throw ValidationError("--held-out-fraction must be in (0, 1)") }
        if calibrationRows < 2 { throw ValidationError("--calibration-rows must be at least 2") }
    }

    struct Loaded {
        var directory: ModelFiles
        var energy: EnergyTransitionModel
        var sampling: EnergySamplingConfig
        var calibration: ReliabilityCalibration?
        var normalizer: ObservationNormalizer
        var heldOut: OfflineDataset
    }

    /// Loads the model and the held-out split, with actions scaled to [-1, 1] as in training.
    func load() throws -> Loaded {
        let directory = try ModelDirectory.load(atPath: model)
        guard let e = try EnergyTransitionModel.load(from: directory) else {
            throw ValidationError("\(model) has no energy network (train one with `flowgate train --energy-only`)")
        }
        let m = directory.manifest
        let data = try OfflineDataset.load(path: dataset)
        guard data.observationDim == m.observationDim, data.actionDim == m.actionDim else {
            throw ValidationError("\(dataset): observation/action dims \(data.observationDim)/\(data.actionDim) differ from the model's \(m.observationDim)/\(m.actionDim)")
        }
        var config = EnergyTrainingConfig()
        config.heldOutFraction = heldOutFraction
        // `flowgate train --energy` seeds the energy trainer with the run's seed + 0xE7.
        let seed = energySeed ?? (m.provenance.seed &+ 0xE7)
        var heldOut = EnergyCheckSweep.heldOutSplit(dataset: data, config: config, seed: seed)
        heldOut.actions = Self.scaled(heldOut.actions, low: m.actionLow, high: m.actionHigh)
        let normalizer = ObservationNormalizer(mean: m.normalization.observationMean, std: m.normalization.observationStd)
        return Loaded(directory: directory, energy: e.model, sampling: e.sampling, calibration: e.calibration, normalizer: normalizer, heldOut: heldOut)
    }

    /// Gives `loaded.energy` its bank's sources: the trainer's seeded draw from the training split,
    /// replayed. When re-encoding those rows gives the stored latents, only the sources are added;
    /// otherwise (another seed, another dataset) the bank is replaced by the rebuilt one, and the
    /// recalibration that follows is for that bank.
    func addBankSources(_ loaded: EnergyDataOptions.Loaded) throws {
        let energy = loaded.energy, m = loaded.directory.manifest
        let stored = energy.latentBank.count / energy.spec.latentDim
        guard stored > 0 else { throw ValidationError("--nearest needs a latent bank; \(model) has none") }
        var full = try OfflineDataset.load(path: dataset)
        full.actions = EnergyDataOptions.scaled(full.actions, low: m.actionLow, high: m.actionHigh)
        let seed = energySeed ?? (m.provenance.seed &+ 0xE7)
        let rebuilt = EnergyLatentBank.rebuilt(
            model: energy, dataset: full, normalizer: loaded.normalizer, heldOutFraction: heldOutFraction, size: stored,
            seed: seed)
        guard rebuilt.latents.count == energy.latentBank.count else {
            throw ValidationError("\(dataset): its training split has fewer rows than the \(stored)-entry bank")
        }
        var largest: Float = 0
        for (a, b) in zip(rebuilt.latents, energy.latentBank) { largest = max(largest, abs(a - b)) }
        if largest <= 1e-4 {
            note("bank sources: the trainer's draw recovered (largest latent difference \(largest)); latents kept")
        } else {
            energy.latentBank = rebuilt.latents
            note("warning: the stored bank is not the draw from \(dataset) with seed \(seed) (largest latent difference \(largest)); replaced by the rebuilt bank")
        }
        energy.bankSources = rebuilt.sources
    }

    /// Loads another dataset of the same environment, actions scaled like the model's.
    func loadOther(_ path: String, like m: Manifest) throws -> OfflineDataset {
        var o = try OfflineDataset.load(path: path)
        guard o.observationDim == m.observationDim, o.actionDim == m.actionDim else {
            throw ValidationError("\(path): observation/action dims \(o.observationDim)/\(o.actionDim) differ from the model's")
        }
        o.actions = Self.scaled(o.actions, low: m.actionLow, high: m.actionHigh)
        return o
    }

    static func scaled(_ a: [Float], low: [Float], high: [Float]) -> [Float] {
        let k = low.count
        var out = a
        for i in out.indices {
            let j = i % k
            out[i] = min(max(2 * (a[i] - low[j]) / (high[j] - low[j]) - 1, -1), 1)
        }
        return out
    }
}

/// `flowgate bench check`: the energy check's cost against what it detects, per sampler setting.
struct BenchCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Sweep the energy check's settings (samples N, Langevin steps T, bank proposals P): AUROCs, calibration, MFLOP and µs per observation.",
        discussion: """
            Every setting is recalibrated on the energy model's held-out split (rows it never trained \
            on) and evaluated on other held-out rows: random actions, noisy states (the state plus \
            --state-noise standard deviations) and, with --other, transitions of another dataset. \
            Times are medians of sampler calls on --timing-batch observations on one core.
            """)

    @OptionGroup var data: EnergyDataOptions
    @Option(help: "Another dataset of the same environment (e.g. random-policy data) to detect.")
    var other: String?
    @Option(help: "Next-state samples N, comma-separated (crossed with the other lists).")
    var samples = IntList(argument: "1,2,4,8")!
    @Option(help: "Langevin steps T, comma-separated.")
    var langevinSteps = CountList(argument: "0,5,10,20")!
    @Option(help: "Latent-bank proposals P, comma-separated.")
    var proposals = CountList(argument: "32,128")!
    @Option(help: "Staged proposals: first-stage sizes P1, comma-separated (0: every proposal for every row; only with T = 0 and P1 < P).")
    var firstProposals = CountList(argument: "0")!
    @Option(
        help:
            "Explicit settings N:T:P, N:T:P:P1 (staged) or N:T:P:P1:Q (staged, rows stop at the held-out quantile Q of E_min), comma-separated (replaces the grid); P written as Pn (e.g. 1:0:16n) proposes the P nearest-source bank entries (needs bank sources)."
    )
    var settings: String?
    @Option(help: "Held-out rows per evaluation set.")
    var evaluationRows = 2000
    @Option(help: "State noise in standard deviations for the noisy-state AUROC.")
    var stateNoise: Float = 1
    @Option(help: "Observations per timed sampler call.")
    var timingBatch = 64
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        try data.validateOptions()
        _ = try parsedSettings()
        if evaluationRows < 2 { throw ValidationError("--evaluation-rows must be at least 2") }
        if timingBatch < 1 { throw ValidationError("--timing-batch must be positive") }
    }

    func parsedSettings() throws -> [EnergyCheckSweep.Setting] {
        if let settings {
            return try settings.split(separator: ",").map { part in
                let fields = part.split(separator: ":", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                // "16n": the 16 nearest-source proposals.
                let nearest = fields.count >= 3 && fields[2].hasSuffix("n")
                let v = fields.prefix(4).enumerated().map { i, f in Int(i == 2 && nearest ? String(f.dropLast()) : f) }
                let q = fields.count == 5 ? Double(fields[4]) : nil
                guard (3...5).contains(fields.count), let n = v[0], let t = v[1], let p = v[2], n >= 1, t >= 0, p >= 0,
                    fields.count == 3 || (v[3] ?? -1) >= 0, fields.count < 5 || (q.map { $0 > 0 && $0 < 1 } ?? false)
                else {
                    throw ValidationError(
                        "--settings: '\(part)' is not N:T:P, N:T:P:P1 or N:T:P:P1:Q with N ≥ 1, T ≥ 0, P ≥ 0 (or Pn), P1 ≥ 0, 0 < Q < 1")
                }
                if nearest && (t != 0 || p < 1) {
                    throw ValidationError("--settings: '\(part)': nearest-source proposals need T = 0 and P ≥ 1")
                }
                return EnergyCheckSweep.Setting(
                    samples: n, langevinSteps: t, proposals: p, firstProposals: fields.count >= 4 ? v[3]! : 0, exitQuantile: q,
                    nearest: nearest)
            }
        }
        return proposals.values.flatMap { p in
            langevinSteps.values.flatMap { t in
                samples.values.flatMap { n in
                    // Staging applies to T = 0 and P1 < P only; elsewhere the list collapses to unstaged.
                    Set(firstProposals.values.map { t == 0 && $0 < p ? $0 : 0 }).sorted().map {
                        EnergyCheckSweep.Setting(samples: n, langevinSteps: t, proposals: p, firstProposals: $0)
                    }
                }
            }
        }
    }

    struct Report: Codable {
        var benchmark = "check"
        var machine: MachineInfo
        var model: String
        var shipped: EnergyCheckSweep.Setting
        var policyMflopPerObservation: Double
        var heldOutRows: Int
        var stateNoise: Float
        var rows: [EnergyCheckSweep.Row]
    }

    func run() throws {
        BLAS.setThreads(1)
        let loaded = try data.load()
        let m = loaded.directory.manifest
        let otherData = try other.map { try data.loadOther($0, like: m) }
        if try parsedSettings().contains(where: \.nearest) && !loaded.energy.hasBankSources {
            try data.addBankSources(loaded)  // in memory only: bench check writes nothing into the model
        }
        let bundle = try PolicyBundle.load(directory: data.model)
        let policyFlops = bundle.flopsPerObservation(steps: m.sampling.steps, candidates: m.sampling.candidates, samples: 1, check: false)
        let shipped = EnergyCheckSweep.Setting(
            samples: loaded.sampling.samples, langevinSteps: loaded.sampling.schedule.steps, proposals: loaded.sampling.proposals,
            firstProposals: loaded.sampling.firstProposals, nearest: loaded.sampling.nearest)
        let machine = MachineInfo.current(blasThreads: 1)
        note("\(machine.summary)")
        note("\(m.name): policy + critic \(fmt(policyFlops / 1e6, 1)) MFLOP per observation; shipped check \(shipped); \(loaded.heldOut.count) held-out rows")
        var table = TextTable([
            "N", "T", "P", "P1", "exit q", "MFLOP real", "MFLOP max", "prop/row real", "prop/row rand", "µs/obs", "check/policy", "AUROC rand",
            "AUROC noisy", "AUROC other", "fresh rel.", "rand rel.",
        ])
        let rows = EnergyCheckSweep.run(
            model: loaded.energy, base: loaded.sampling, normalizer: loaded.normalizer, heldOut: loaded.heldOut,
            other: otherData, settings: try parsedSettings(), calibrationRows: data.calibrationRows,
            evaluationRows: evaluationRows, stateNoise: stateNoise, timingBatch: timingBatch, clock: monotonicSeconds
        ) { r in
            note(
                "\(r.setting): \(fmt(r.mflopPerObservation, 1)) MFLOP, \(fmt(r.microsecondsPerObservation, 0)) µs, AUROC random \(fmt(r.aurocRandomActions, 3)) noisy \(fmt(r.aurocNoisyStates, 3)) other \(r.aurocOtherDataset.map { fmt($0, 3) } ?? "-"), fresh reliable \(fmt(r.reliableRateFresh, 3))"
            )
        }
        for r in rows {
            table.add([
                "\(r.setting.samples)", "\(r.setting.langevinSteps)", "\(r.setting.proposals)\(r.setting.nearest ? "n" : "")",
                r.setting.isStaged ? "\(r.setting.firstProposals)" : "-",
                r.setting.isStaged ? r.setting.exitQuantile.map { "\($0)" } ?? "thr" : "-", fmt(r.mflopPerObservation, 1),
                fmt(r.mflopMaxPerObservation, 1), fmt(r.proposalsPerRowReal, 1), fmt(r.proposalsPerRowRandomActions, 1),
                fmt(r.microsecondsPerObservation, 0), fmt(r.mflopPerObservation * 1e6 / policyFlops, 2), fmt(r.aurocRandomActions, 3),
                fmt(r.aurocNoisyStates, 3), r.aurocOtherDataset.map { fmt($0, 3) } ?? "-", fmt(r.reliableRateFresh, 3),
                fmt(r.reliableRateRandomActions, 3),
            ])
        }
        try output.emit(
            table,
            report: Report(
                machine: machine, model: m.name, shipped: shipped, policyMflopPerObservation: policyFlops / 1e6,
                heldOutRows: loaded.heldOut.count, stateNoise: stateNoise, rows: rows))
    }
}

/// `flowgate calibrate`: sets the energy check's default sampler settings of a model directory and
/// recalibrates its threshold for them on the held-out split.
struct CalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Set a model's energy-check settings (N, T, P) and recalibrate its reliability threshold on held-out data.",
        discussion: """
            The threshold and confidence table are the --quantile of E_min over the energy model's \
            held-out split (rows it never trained on) with the new settings. The manifest is \
            rewritten atomically; weights are not touched (with --nearest, a bank without sources gets them: energy.safetensors is rewritten atomically first). `flowgate bench check` measures what \
            each setting costs and detects.
            """)

    @OptionGroup var data: EnergyDataOptions
    @Option(help: "Next-state samples N (the model's default `samples`).")
    var samples: Int
    @Option(help: "Langevin steps T.")
    var langevinSteps: Int
    @Option(help: "Latent-bank proposals P.")
    var proposals: Int
    @Option(help: "Staged proposals: score the first P1 and stop a row there when it is already below the threshold (0: all P for every row; needs T = 0 and P1 < P).")
    var firstProposals = 0
    @Option(help: "Staged proposals: rows stop after the first stage when E_min is at or below this held-out quantile (default: the threshold's, --quantile).")
    var exitQuantile: Double?
    @Option(help: "Share of real transitions judged reliable.")
    var quantile = 0.95
    @Flag(
        help:
            "Nearest-source proposals: each row scores the --proposals bank entries whose source (s, a) is nearest its own, instead of a random draw (needs --langevin-steps 0). A bank without sources gets them, rebuilt from --dataset (energy.safetensors gains 'bank_sources')."
    )
    var nearest = false

    func validate() throws {
        try data.validateOptions()
        if samples < 1 { throw ValidationError("--samples must be at least 1") }
        if nearest && (langevinSteps != 0 || proposals < 1) {
            throw ValidationError("--nearest needs --langevin-steps 0 and --proposals of at least 1")
        }
        if langevinSteps < 0 { throw ValidationError("--langevin-steps must not be negative") }
        if proposals < 0 { throw ValidationError("--proposals must not be negative") }
        if firstProposals < 0 { throw ValidationError("--first-proposals must not be negative") }
        if firstProposals > 0 && (langevinSteps != 0 || firstProposals >= proposals) {
            throw ValidationError("--first-proposals needs --langevin-steps 0 and fewer than --proposals (\(proposals))")
        }
        if firstProposals > 0 && firstProposals < samples {
            throw ValidationError("--first-proposals must be at least --samples (\(samples))")
        }
        if !(quantile > 0 && quantile < 1) { throw ValidationError("--quantile must be in (0, 1)") }
        if let q = exitQuantile {
            if firstProposals == 0 { throw ValidationError("--exit-quantile needs --first-proposals") }
            if !(q > 0 && q <= quantile) { throw ValidationError("--exit-quantile must be in (0, --quantile]") }
        }
    }

    func run() throws {
        let loaded = try data.load()
        var directory = loaded.directory
        let setting = EnergyCheckSweep.Setting(
            samples: samples, langevinSteps: langevinSteps, proposals: proposals, firstProposals: firstProposals,
            exitQuantile: exitQuantile, nearest: nearest)
        let sampling = setting.sampling(base: loaded.sampling)
        let addsSources = nearest && !loaded.energy.hasBankSources
        if addsSources {
            try data.addBankSources(loaded)
            directory.networks[EnergyModelSpec.role] = loaded.energy.fileTensors()
        }
        let rows = min(data.calibrationRows, loaded.heldOut.count)
        let part = EnergyTrainer.shuffled(loaded.heldOut).subset(Array(0..<rows))
        let calibration = EnergyScoring.calibration(
            model: loaded.energy, sampling: sampling, normalization: loaded.normalizer, observations: part.observations,
            actions: part.actions, seedBase: 0xCA1B, quantile: quantile, exitQuantile: exitQuantile)
        directory.manifest.networks[EnergyModelSpec.role] = loaded.energy.networkSpec(sampling: sampling)
        directory.manifest.sampling.samples = samples
        directory.manifest.reliability = calibration.manifestValue
        // Validate the whole directory, then replace the energy file (only when it gained the bank's
        // sources) and manifest.json last, each atomically (ModelDirectory's order for an existing
        // directory). Sections the Manifest type does not model (the risk calibration) are carried over.
        try directory.validate()
        if addsSources, let file = directory.manifest.networks[EnergyModelSpec.role]?.file {
            let bytes = try ModelDirectory.networkFile(directory, role: EnergyModelSpec.role)
            try AtomicFile.write(bytes, to: URL(fileURLWithPath: data.model).appendingPathComponent(file))
        }
        let url = URL(fileURLWithPath: data.model).appendingPathComponent(Manifest.fileName)
        var merged = try JSONSerialization.jsonObject(with: try directory.manifest.encoded()) as! [String: Any]
        let original = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] ?? [:]
        for (key, value) in original where merged[key] == nil { merged[key] = value }
        let riskFeatures = ["stateless", "stream"].flatMap {
            ((original["risk"] as? [String: Any])?[$0] as? [String: Any])?["features"] as? [String] ?? []
        }
        if riskFeatures.contains(where: { $0.hasPrefix("energy") }) {
            note("warning: \(data.model)'s risk model uses E_min features fitted with the previous check; refit it (python -m flowgate_client.risk fit)")
        }
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: merged, options: [.prettyPrinted, .sortedKeys]), to: url)
        let old = loaded.calibration.map { "\($0.threshold)" } ?? "none"
        note("\(data.model): check \(setting), threshold \(calibration.threshold) (was \(old)) at the \(quantile) quantile of \(rows) held-out transitions")
    }
}
