import FlowgateCommon
import FlowgateCore
import FlowgateTraining

/// Throughput of each training phase (`flowgate bench train`).
///
/// Builds a `TrainingRun` with the given config and steps each of its phases in order (behaviour
/// flow → critic support → critic → QIPO), so every phase starts from the state the one before
/// left, as in a real run. A phase's first `warmup` steps are not timed; the timed steps are split
/// into `repeats` equal windows and the result is the median window rate.
public enum TrainingBenchmark {
    /// One phase's measurement.
    public struct PhaseResult: Sendable, Codable, Equatable {
        public var phase: String
        /// Steps timed (after warm-up).
        public var steps: Int
        public var warmupSteps: Int
        /// Median over windows of steps per second.
        public var stepsPerSecond: Double
        /// Median over windows of steps per CPU second of the stepping thread: what the rate would
        /// be if that thread never waited for the machine (with two cores, also not for the
        /// helper). Unlike `stepsPerSecond` it hardly moves with the machine's load.
        public var stepsPerThreadCPUSecond: Double
        /// Rows (batch size, or states for the support generation) per second at that rate.
        public var rowsPerStep: Int
        public var rowsPerSecond: Double { stepsPerSecond * Double(rowsPerStep) }
    }

    /// Steps every phase of `run`. `steps` caps the timed steps of each phase (a phase with fewer
    /// remaining steps, such as the support generation over a small dataset, runs them all).
    public static func measure(
        run: TrainingRun, steps: Int, warmup: Int, repeats: Int, supportChunk: Int = 512
    ) throws -> [PhaseResult] {
        var results: [PhaseResult] = []
        for phase in run.phases {
            let available = phase.totalSteps - phase.completedSteps
            let w = min(warmup, max(available - repeats, 0))
            for _ in 0..<w { _ = try phase.step() }
            let timed = min(steps, phase.totalSteps - phase.completedSteps)
            guard timed > 0 else { continue }
            let windows = max(1, min(repeats, timed))
            var rates: [Double] = [], cpuRates: [Double] = []
            var done = 0
            for k in 0..<windows {
                let n = timed * (k + 1) / windows - done
                guard n > 0 else { continue }
                let t0 = monotonicSeconds(), c0 = threadCPUSeconds()
                for _ in 0..<n { _ = try phase.step() }
                rates.append(Double(n) / (monotonicSeconds() - t0))
                cpuRates.append(Double(n) / max(threadCPUSeconds() - c0, 1e-9))
                done += n
            }
            let rows = phase is SupportGenerationPhase ? supportChunk : run.config.batchSize
            results.append(
                PhaseResult(
                    phase: phase.name, steps: timed, warmupSteps: w,
                    stepsPerSecond: SampleStatistics.median(rates) ?? 0,
                    stepsPerThreadCPUSecond: SampleStatistics.median(cpuRates) ?? 0, rowsPerStep: rows))
        }
        return results
    }

    /// A config with the shipped network sizes whose phases are short enough to benchmark or to
    /// produce a servable model in seconds (weights are barely trained: for timing only).
    public static func shortConfig(task: String, steps: Int) -> TrainingConfig {
        var c = TrainingConfig.defaults(task: task)
        c.behaviour.steps = steps
        c.criticTraining.steps = steps
        c.qipo.steps = steps
        // Distil and straighten (minutes of couplings to generate first) are not what is timed.
        c.distil.steps = 0
        c.straighten.steps = 0
        c.checkpointEvery = .max
        return c
    }

    /// The first `count` transitions of `dataset` (all of it when it is smaller).
    public static func head(_ dataset: OfflineDataset, count: Int) -> OfflineDataset {
        count >= dataset.count ? dataset : dataset.subset(Array(0..<count))
    }
}
