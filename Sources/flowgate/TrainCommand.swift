import ArgumentParser
import Foundation
import FlowgateCore
import FlowgateAlgorithms
import FlowgateTraining
import FlowgateModelFormat
import FlowgateLifecycle
import Logging

struct TrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a QIPO flow policy and its critic from an offline dataset into a model directory.",
        discussion: """
            Phases: behaviour flow matching → critic support sets → in-support softmax critic → QIPO \
            policy improvement. Progress goes to stderr (a live bar on a terminal, periodic lines \
            otherwise), metrics to RUN_DIR/train.jsonl, checkpoints (atomic) to RUN_DIR/checkpoint.safetensors. \
            Ctrl-C saves a checkpoint and exits with status 130; --resume continues from it and ends \
            with the same weights as an uninterrupted run.
            """)

    @Option(name: .long, help: "Dataset file (.npz from numpy savez/savez_compressed, or D4RL .hdf5).")
    var dataset: String

    @Option(name: .long, help: "Output model directory (created or replaced at the end).")
    var out: String

    @Option(name: .long, help: "JSON file overriding any field of the training config (see docs/training.md).")
    var config: String?

    @Option(name: .long, help: "Model name in the manifest (default: the output directory's name).")
    var name: String?

    @Option(name: .long, help: "With --resume: restart this phase (and later ones) with the current config, keeping earlier phases (e.g. qipo).")
    var restartFrom: String?

    @Option(name: .long, help: "qipo (default), or a baseline: bc-flow (behaviour flow only) or bc-regressor (deterministic MLP).")
    var algorithm: String?
    @Option(name: .long, help: "Minibatch size (overrides the config).") var batchSize: Int?
    @Option(name: .long, help: "Behaviour flow steps.") var behaviourSteps: Int?
    @Option(name: .long, help: "Critic steps.") var criticSteps: Int?
    @Option(name: .long, help: "QIPO improvement steps.") var qipoSteps: Int?
    @Option(name: .long, help: "QIPO beta.") var beta: Float?
    @Option(name: .long, help: "QIPO support renewal interval K_renew.") var renewEvery: Int?
    @Option(name: .long, help: "Distil steps (the critic's best of 16 one-step samples, after QIPO; 0 skips it).") var distilSteps: Int?
    @Option(name: .long, help: "Straighten steps (after distil; 0 skips it).") var straightenSteps: Int?
    @Option(name: .long, help: "Cores for the matrix products: 1 or 2 (default: 2 on a machine with 2 or more). Results are reproducible for a given count; resume with the same count.")
    var threads: Int?
    @OptionGroup var runOptions: RunOptions
    @OptionGroup(title: "Energy model") var energyOptions: EnergyTrainOptions

    func validate() throws {
        try runOptions.validate()
        if restartFrom != nil && !runOptions.resume { throw ValidationError("--restart-from needs --resume") }
        try validateComputeThreads(threads)
        if let algorithm, TrainingConfig.Algorithm(rawValue: algorithm) == nil {
            throw ValidationError("--algorithm must be one of \(TrainingConfig.Algorithm.allCases.map(\.rawValue).joined(separator: ", ")), not '\(algorithm)'")
        }
        for (flag, v) in [("--batch-size", batchSize), ("--renew-every", renewEvery)] {
            if let v, v <= 0 { throw ValidationError("\(flag) must be positive") }
        }
        for (flag, v) in [
            ("--behaviour-steps", behaviourSteps), ("--critic-steps", criticSteps), ("--qipo-steps", qipoSteps), ("--distil-steps", distilSteps),
            ("--straighten-steps", straightenSteps),
        ] {
            if let v, v < 0 { throw ValidationError("\(flag) must not be negative") }
        }
    }

    func run() async throws {
        configureBLASFromEnvironment()
        try configureKernelsFromEnvironment()
        configureComputeThreads(threads)
        let outURL = URL(fileURLWithPath: out)
        let modelName = name ?? outURL.lastPathComponent
        let task = URL(fileURLWithPath: dataset).deletingPathExtension().lastPathComponent
        var cfg = TrainingConfig.defaults(task: task)
        if let config { cfg = try loadConfig(path: config, base: cfg) }
        if let algorithm { cfg.algorithm = TrainingConfig.Algorithm(rawValue: algorithm)! }
        if let batchSize { cfg.batchSize = batchSize }
        if let behaviourSteps { cfg.behaviour.steps = behaviourSteps }
        if let criticSteps { cfg.criticTraining.steps = criticSteps }
        if let qipoSteps { cfg.qipo.steps = qipoSteps }
        if let beta { cfg.qipo.beta = beta }
        if let renewEvery { cfg.qipo.renewEvery = renewEvery }
        if let distilSteps { cfg.distil.steps = distilSteps }
        if let straightenSteps { cfg.straighten.steps = straightenSteps }
        runOptions.apply(to: &cfg)
        var energyOnly: EnergyOnlyTraining? = nil
        if energyOptions.energyOnly {
            // Only the energy model trains; it is added to the model directory that already exists.
            cfg = EnergyOnlyTraining.policyPhasesSkipped(cfg)
            energyOnly = try EnergyOnlyTraining(directory: out, dataset: dataset)
        }

        let files = try runOptions.files(defaultName: modelName)
        let (checkpoint, logPath) = files

        let progress = ProgressReporter()
        progress.message("loading \(dataset)")
        let data = try OfflineDataset.load(path: dataset)
        progress.message("\(data.count) transitions, observation dim \(data.observationDim), action dim \(data.actionDim)")
        let run = try TrainingRun(name: modelName, dataset: data, config: cfg)
        try energyOnly?.checkExistingModel(against: run)
        try energyOptions.attach(to: run, seed: cfg.seed)
        try runOptions.resumeOrStart(run, files: files, restartFrom: restartFrom, progress: progress)
        let log = try TrainingLog(path: logPath)
        // SIGINT (Ctrl-C) / SIGTERM: a graceful shutdown of the service group sets the flag the
        // run polls between steps; it then writes a checkpoint and returns `.interrupted`.
        let stop = StopFlag()
        let interrupted = StopFlag()
        nonisolated(unsafe) let (training, reporter, trainingLog) = (run, progress, log)
        let service = ThreadService(
            "flowgate.train",
            body: {
                let result = try training.run(progress: reporter, log: trainingLog, checkpointPath: checkpoint) { stop.isSet }
                if result == .interrupted { interrupted.set() }
            },
            stop: { stop.set() })
        var logger = Logger(label: "flowgate.train")
        logger.logLevel = .warning
        try await ProcessLifecycle.run(service, logger: logger)
        if interrupted.isSet {
            progress.message("stopped; continue with: \(ResumeCommandLine.from(arguments: CommandLine.arguments))")
            throw ExitCode(130)
        }
        if let energyOnly {
            try energyOnly.addEnergyModel(from: run, trainingLog: logPath)
            progress.message("added the energy model to \(out) (\(run.completedSteps) steps)")
            return
        }
        let model = try run.makeModel(gitCommit: gitCommit(), datasetSHA256: nil)
        try ModelDirectory.save(model, to: outURL)
        // Keep the training log and resolved config beside the model.
        try AtomicFile.write(try Data(contentsOf: URL(fileURLWithPath: logPath)), to: outURL.appendingPathComponent("training-log.jsonl"))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(cfg), to: outURL.appendingPathComponent("config.json"))
        progress.message("wrote \(out) (\(run.completedSteps) steps)")
    }
}

/// Merges a JSON file of overrides into `base`; unknown keys are errors (typos must not pass silently).
func loadConfig(path: String, base: TrainingConfig) throws -> TrainingConfig {
    try mergeJSONOverrides(path: path, base: base, flag: "--config")
}

/// The current git commit of the working tree, or "unknown".
func gitCommit() -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["git", "rev-parse", "--short=12", "HEAD"]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return "unknown" }
    p.waitUntilExit()
    let s = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return p.terminationStatus == 0 && !s.isEmpty ? s : "unknown"
}

/// `--threads` of `train` and `bench train`: 1 or 2 cores for the matrix products (`BLAS.setComputeThreads`).
func validateComputeThreads(_ threads: Int?) throws {
    if let threads, threads != 1 && threads != 2 {
        throw ValidationError("--threads must be 1 or 2 (cores for the trainer's matrix products), not \(threads)")
    }
}

/// Splits the trainer's large matrix products across two cores unless `--threads 1` or the
/// machine has one core. Results are reproducible for a given count, not across counts (docs/training.md).
func configureComputeThreads(_ threads: Int?) {
    BLAS.setComputeThreads(threads ?? min(2, ProcessInfo.processInfo.activeProcessorCount))
}

/// Applies FLOWGATE_KERNELS (`auto`, the default, or `openblas`: DenseKernels in FlowgateCore);
/// anything else is an error naming the variable.
func configureKernelsFromEnvironment() throws {
    do {
        try DenseKernels.configure()
    } catch let error as KernelModeError {
        throw ValidationError(error.description)
    }
}

/// Applies FLOWGATE_BLAS_THREADS (default 1: see docs/benchmarks.md).
func configureBLASFromEnvironment() {
    let n = ProcessInfo.processInfo.environment["FLOWGATE_BLAS_THREADS"].flatMap(Int.init) ?? 1
    BLAS.setThreads(n)
}
