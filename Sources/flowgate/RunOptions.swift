import ArgumentParser
import Foundation
import FlowgateTraining

/// The flags `flowgate train` and `flowgate refine` share: where the run's checkpoint and log go,
/// resuming, and the run settings that override the config.
struct RunOptions: ParsableArguments {
    @Option(name: .long, help: "Directory for checkpoints and the training log (default: under runs/, named after the output).")
    var runDir: String?
    @Flag(name: .long, help: "Continue from RUN_DIR/checkpoint.safetensors.")
    var resume = false
    @Option(name: .long, help: "Random seed (overrides the config's).") var seed: UInt64?
    @Option(name: .long, help: "Write a checkpoint every N steps.") var checkpointEvery: Int?
    @Option(name: .long, help: "Log a metrics line every N steps.") var logEvery: Int?

    func validate() throws {
        for (flag, v) in [("--checkpoint-every", checkpointEvery), ("--log-every", logEvery)] {
            if let v, v <= 0 { throw ValidationError("\(flag) must be positive") }
        }
    }

    /// The flags that override the config (seed, checkpoint and log intervals).
    func apply(to config: inout TrainingConfig) {
        if let seed { config.seed = seed }
        if let checkpointEvery { config.checkpointEvery = checkpointEvery }
        if let logEvery { config.logEvery = logEvery }
    }

    /// Creates the run directory (`--run-dir`, else runs/`defaultName`) and returns its checkpoint
    /// and log paths.
    func files(defaultName: String) throws -> (checkpoint: String, log: String) {
        let directory = runDir ?? "runs/\(defaultName)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return (directory + "/checkpoint.safetensors", directory + "/train.jsonl")
    }

    /// With `--resume`, loads the checkpoint into `run` (a missing one is an error naming it);
    /// without, a fresh start removes the old log, and the old checkpoint is overwritten later.
    func resumeOrStart(
        _ run: TrainingRun, files: (checkpoint: String, log: String), restartFrom: String? = nil, progress: ProgressReporter
    ) throws {
        if resume {
            guard FileManager.default.fileExists(atPath: files.checkpoint) else {
                // A failure, not a clean exit: scripts must see a non-zero status.
                FileHandle.standardError.write(Data("Error: --resume: no checkpoint at \(files.checkpoint)\n".utf8))
                throw ExitCode.failure
            }
            try run.loadCheckpoint(from: files.checkpoint, restartFrom: restartFrom)
            progress.message("resumed from \(files.checkpoint) at step \(run.completedSteps)/\(run.totalSteps)")
        } else if FileManager.default.fileExists(atPath: files.checkpoint) {
            progress.message("note: starting fresh; the old checkpoint at \(files.checkpoint) will be overwritten (use --resume to continue it)")
            if FileManager.default.fileExists(atPath: files.log) { try FileManager.default.removeItem(atPath: files.log) }
        }
    }
}
