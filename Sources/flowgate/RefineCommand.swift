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
        abstract: "Retrain an existing model's flow policy after QIPO (distil and straighten, or a reflow) into a new model directory.",
        discussion: """
            With --distil: runs the default recipe's last two phases (docs/training.md, "Few-step \
            quality: distil and straighten"), which a model trained before they were the default \
            lacks: the critic's best of 16 one-step samples is distilled into the policy, then the \
            flow is straightened so that K = 1 lands where K = 8 does. Without it: runs only the \
            reflow phase: a frozen copy of the policy integrates \
            noise to actions with --teacher-steps Euler steps and the policy is retrained on those \
            straight couplings (--candidates M: the model's critic picks the endpoint from M \
            teacher samples instead). The critic, energy model, reliability and risk sections are kept; the \
            provenance records the phases' steps and config. The dataset must be the one the model was \
            trained on. Progress, log, checkpoints, --resume and Ctrl-C work as in `flowgate train`.
            """)

    @Option(name: .long, help: "Model directory to refine (read only).") var model: String
    @Option(name: .long, help: "Dataset the model was trained on (.npz or .hdf5).") var dataset: String
    @Option(name: .long, help: "New model directory (must not exist; written atomically).") var out: String
    @Option(name: .long, help: "JSON file overriding fields of the training config; only 'reflow' (or with --distil 'distil' and 'straighten') and the run settings (seed, batchSize, logEvery, checkpointEvery) matter.")
    var config: String?
    @Option(name: .long, help: "Model name in the manifest (default: the source model's name).") var name: String?
    @Flag(
        name: .long,
        help:
            "Run the default recipe's last two phases instead of a reflow: distil (the critic's best of 16 one-step samples) and straighten, at the config's settings (today's defaults for a model trained before them).")
    var distil = false
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
        if distil, steps != nil || teacherSteps != nil || candidates != nil || learningRate != nil {
            throw ValidationError("--steps, --teacher-steps, --candidates and --learning-rate set the reflow phase; with --distil set the distil and straighten phases in --config")
        }
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
        var base = distil ? refinement.distilBase : refinement.trainedConfig
        let cfg: TrainingConfig
        if distil {
            if let config { base = try loadConfig(path: config, base: base) }
            runOptions.apply(to: &base)
            cfg = try refinement.distilConfig(overrides: base)
        } else {
            if base.reflow.steps == 0 { base.reflow.steps = 10_000 }
            if let config { base = try loadConfig(path: config, base: base) }
            var reflow = base.reflow
            if let steps { reflow.steps = steps }
            if let teacherSteps { reflow.teacherSteps = teacherSteps }
            if let candidates { reflow.candidates = candidates }
            if let learningRate { reflow.learningRate = learningRate }
            runOptions.apply(to: &base)
            cfg = try refinement.config(reflow: reflow, overrides: base)
        }
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
        let done = run.phases.filter { $0.completedSteps > 0 }.map { "\($0.name) \($0.completedSteps)" }.joined(separator: ", ")
        progress.message("wrote \(out) (\(done) steps from \(model))")
    }
}
