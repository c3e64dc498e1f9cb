import ArgumentParser
import Foundation
import FlowgateCore
import FlowgateTraining
import FlowgateModelFormat

/// Set by the SIGINT/SIGTERM handler; polled between refine steps.
nonisolated(unsafe) private var refineStopRequested: sig_atomic_t = 0

struct RefineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refine",
        abstract: "Straighten an existing model's flow policy (reflow) so that 1-2 flow steps act like many, into a new model directory.",
        discussion: """
            Runs only the reflow phase (docs/training.md): a frozen copy of the policy integrates \
            noise to actions with --teacher-steps Euler steps and the policy is retrained on those \
            straight couplings (--candidates M: the model's critic picks the endpoint from M \
            teacher samples instead; measured weaker on hopper-medium, off by default). The critic, energy model, reliability and risk sections are kept; the \
            provenance records the reflow steps and config. The dataset must be the one the model was \
            trained on. Progress, log, checkpoints, --resume and Ctrl-C work as in `flowgate train`.
            """)

    @Option(name: .long, help: "Model directory to refine (read only).") var model: String
    @Option(name: .long, help: "Dataset the model was trained on (.npz or .hdf5).") var dataset: String
    @Option(name: .long, help: "New model directory (must not exist; written atomically).") var out: String
    @Option(name: .long, help: "JSON file overriding fields of the training config; only 'reflow' and the run settings (seed, batchSize, logEvery, checkpointEvery) matter.")
    var config: String?
    @Option(name: .long, help: "Model name in the manifest (default: the source model's name).") var name: String?
    @Option(name: .long, help: "Reflow steps (default 10000, or the config's).") var steps: Int?
    @Option(name: .long, help: "Teacher Euler steps per coupling.") var teacherSteps: Int?
    @Option(name: .long, help: "Teacher samples per state the critic chooses the target from (0: the teacher's own sample).")
    var candidates: Int?
    @Option(name: .long, help: "Reflow learning rate.") var learningRate: Float?
    @Option(name: .long, help: "Cores for the matrix products: 1 or 2 (default: 2 on a machine with 2 or more).")
    var threads: Int?
    /// `--run-dir` (default: runs/<out's name>), `--resume`, `--seed` (default: the model's), intervals.
    @OptionGroup var runOptions: RunOptions

    func validate() throws {
        try runOptions.validate()
        try validateComputeThreads(threads)
        for (flag, v) in [("--steps", steps), ("--teacher-steps", teacherSteps)] {
            if let v, v <= 0 { throw ValidationError("\(flag) must be positive") }
        }
        if let learningRate, !(learningRate > 0) { throw ValidationError("--learning-rate must be positive") }
        if let candidates, candidates == 1 || candidates < 0 {
            throw ValidationError("--candidates must be 0 (the teacher's own sample) or at least 2, not \(candidates)")
        }
        try validateComputeThreads(threads)
    }

    func run() throws {
        configureBLASFromEnvironment()
        try configureKernelsFromEnvironment()
        configureComputeThreads(threads)
        let refinement = try ReflowRefinement(modelPath: model)
        let progress = ProgressReporter()
        if !refinement.droppedConfigKeys.isEmpty {
            progress.message("note: ignoring fields of \(model)'s recorded config that this version no longer has: \(refinement.droppedConfigKeys.joined(separator: ", "))")
        }
        var base = refinement.trainedConfig
        if base.reflow.steps == 0 { base.reflow.steps = 10_000 }
        if let config { base = try loadConfig(path: config, base: base) }
        var reflow = base.reflow
        if let steps { reflow.steps = steps }
        if let teacherSteps { reflow.teacherSteps = teacherSteps }
        if let candidates { reflow.candidates = candidates }
        if let learningRate { reflow.learningRate = learningRate }
        runOptions.apply(to: &base)
        let cfg = try refinement.config(reflow: reflow, overrides: base)
        if FileManager.default.fileExists(atPath: out) {
            throw ValidationError("--out \(out) already exists; refine writes a new model directory")
        }

        let files = try runOptions.files(defaultName: URL(fileURLWithPath: out).lastPathComponent)
        let (checkpoint, logPath) = files
        progress.message("loading \(dataset)")
        let data = try OfflineDataset.load(path: dataset)
        let run = try refinement.makeRun(dataset: data, config: cfg, name: name)
        try runOptions.resumeOrStart(run, files: files, progress: progress)
        let log = try TrainingLog(path: logPath)
        signal(SIGINT) { _ in refineStopRequested = 1 }
        signal(SIGTERM) { _ in refineStopRequested = 1 }
        let outcome = try run.run(progress: progress, log: log, checkpointPath: checkpoint) { refineStopRequested != 0 }
        if outcome == .interrupted {
            progress.message("stopped; continue with the same command and --resume")
            throw ExitCode(130)
        }
        let refined = try refinement.refinedModel(from: run, gitCommit: gitCommit(), name: name)
        try refinement.write(refined, to: out, trainingLog: logPath)
        progress.message("wrote \(out) (reflow \(run.completedSteps) steps from \(model))")
    }
}
