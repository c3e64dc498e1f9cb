import ArgumentParser
import FlowgateAlgorithms
import FlowgateClient
import FlowgateCore
import FlowgateProtocol
import FlowgateServer
import FlowgateTraining
import Foundation
import Logging
import FlowgateBenchmarks

/// `flowgate bench`: dense products, training phases and the server under load.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: dense layers vs raw sgemm, training-phase throughput, serving latency.",
        discussion: "Results are medians over repeats; docs/benchmarks.md has the measured numbers and how to read them.",
        subcommands: [BenchDenseCommand.self, BenchTrainCommand.self, BenchServeCommand.self, BenchDecodeCommand.self, BenchCheckCommand.self])
}

// MARK: - dense

struct BenchDenseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dense",
        abstract: "GFLOP/s of one width×width MLP layer (forward, forward+backward) beside raw sgemm, and 1 vs 2 BLAS threads.")

    @Option(help: "BLAS threads for the main table (the thread comparison always runs 1 and 2).")
    var threads = 1
    @Option(help: "Repeats per measurement; the median is reported.")
    var repeats = 7
    @Option(help: "Layer widths, comma-separated.")
    var widths = IntList(argument: "256,512")!
    @Option(help: "Batch sizes (rows), comma-separated.")
    var batches = IntList(argument: "1,32,256,1024")!
    @Option(name: .customLong("min-ms"), help: "Each repeat runs for at least this many milliseconds.")
    var minimumMilliseconds = 50.0
    @Option(help: "Fixed calls per repeat instead of timing-based calibration (for callgrind).")
    var iterations: Int?
    @Flag(name: .customLong("skip-threads"), help: "Skip the 1 vs 2 BLAS threads comparison.")
    var skipThreads = false
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if threads < 1 { throw ValidationError("--threads must be >= 1") }
        if repeats < 1 { throw ValidationError("--repeats must be >= 1") }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be >= 1") }
    }

    struct Row: Codable {
        var width, batch, threads, repeats: Int
        var sgemmUs, sgemmGflops, mlpForwardUs, mlpForwardGflops, forwardVsSgemm: Double
        var sgemm3Us, sgemm3Gflops, mlpForwardBackwardUs, mlpForwardBackwardGflops, forwardBackwardVsSgemm: Double
    }
    struct ThreadRow: Codable {
        var width, batch: Int
        var oneThreadUs, twoThreadsUs, twoOverOne: Double
    }
    struct Report: Codable {
        var benchmark = "dense"
        var machine: MachineInfo
        var layers: [Row]
        var blasThreads: [ThreadRow]
    }

    func run() throws {
        BLAS.setThreads(threads)
        let machine = MachineInfo.current(blasThreads: BLAS.threads)
        note("machine: \(machine.summary)")
        let minSeconds = minimumMilliseconds / 1000
        var table = TextTable([
            "width", "batch", "sgemm_us", "sgemm_GF/s", "fwd_us", "fwd_GF/s", "fwd/sgemm",
            "3sgemm_us", "3sgemm_GF/s", "fwdbwd_us", "fwdbwd_GF/s", "fwdbwd/3sgemm",
        ])
        var rows: [Row] = []
        for w in widths.values {
            for b in batches.values {
                let r = DenseBenchmark.measure(width: w, batch: b, repeats: repeats, minimumSeconds: minSeconds, fixedIterations: iterations)
                let row = Row(
                    width: w, batch: b, threads: r.threads, repeats: r.repeats, sgemmUs: r.sgemmMicroseconds,
                    sgemmGflops: r.sgemmGflops, mlpForwardUs: r.mlpForwardMicroseconds, mlpForwardGflops: r.mlpForwardGflops,
                    forwardVsSgemm: r.mlpForwardGflops / r.sgemmGflops, sgemm3Us: r.sgemmTrainMicroseconds,
                    sgemm3Gflops: r.sgemmTrainGflops, mlpForwardBackwardUs: r.mlpForwardBackwardMicroseconds,
                    mlpForwardBackwardGflops: r.mlpForwardBackwardGflops,
                    forwardBackwardVsSgemm: r.mlpForwardBackwardGflops / r.sgemmTrainGflops)
                rows.append(row)
                table.add([
                    "\(w)", "\(b)", fmt(row.sgemmUs), fmt(row.sgemmGflops), fmt(row.mlpForwardUs), fmt(row.mlpForwardGflops),
                    fmt(100 * row.forwardVsSgemm, 0) + "%", fmt(row.sgemm3Us), fmt(row.sgemm3Gflops), fmt(row.mlpForwardBackwardUs),
                    fmt(row.mlpForwardBackwardGflops), fmt(100 * row.forwardBackwardVsSgemm, 0) + "%",
                ])
            }
        }
        var threadRows: [ThreadRow] = []
        var threadTable = TextTable(["width", "batch", "1thread_us", "2threads_us", "2/1"])
        if !skipThreads {
            for w in widths.values {
                for b in batches.values {
                    let c = DenseBenchmark.compareThreads(width: w, batch: b, repeats: repeats, minimumSeconds: minSeconds)
                    threadRows.append(ThreadRow(width: w, batch: b, oneThreadUs: c.oneThreadMicroseconds, twoThreadsUs: c.twoThreadMicroseconds, twoOverOne: c.slowdown))
                    threadTable.add(["\(w)", "\(b)", fmt(c.oneThreadMicroseconds), fmt(c.twoThreadMicroseconds), fmt(c.slowdown, 2)])
                }
            }
        }
        if !output.csv && !threadRows.isEmpty {
            // Two tables as text; CSV keeps to the main one (the thread rows are in --json).
            print(table.text)
            print("sgemm forward product, OpenBLAS 1 vs 2 threads (2/1 > 1: two threads are slower)")
            try output.emit(threadTable, report: Report(machine: machine, layers: rows, blasThreads: threadRows))
        } else {
            try output.emit(table, report: Report(machine: machine, layers: rows, blasThreads: threadRows))
        }
    }
}

// MARK: - train

struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Steps per second of each training phase with the shipped network sizes (default TrainingConfig).")

    @Option(help: "Dataset file (.npz or .hdf5).")
    var dataset: String
    @Option(help: "Timed steps per phase (the support generation runs all its chunks, at most this many).")
    var steps = 200
    @Option(help: "Untimed steps at the start of each phase.")
    var warmup = 20
    @Option(help: "Timed steps are split into this many windows; the median window rate is reported.")
    var repeats = 5
    @Option(help: "Use the first N transitions (keeps the support generation, 512 states per step, short).")
    var subset = 2048
    @Option(name: .customLong("batch-size"), help: "Minibatch size.")
    var batchSize = 256
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if steps < 1 || repeats < 1 || subset < 1 || batchSize < 1 || warmup < 0 {
            throw ValidationError("--steps, --repeats, --subset and --batch-size must be positive, --warmup not negative")
        }
    }

    struct Row: Codable {
        var phase: String
        var steps, warmupSteps, rowsPerStep: Int
        var stepsPerSecond, msPerStep, rowsPerSecond: Double
    }
    struct Report: Codable {
        var benchmark = "train"
        var machine: MachineInfo
        var dataset: String
        var transitions: Int
        var batchSize: Int
        var phases: [Row]
    }

    func run() throws {
        configureBLASFromEnvironment()
        let machine = MachineInfo.current(blasThreads: BLAS.threads)
        note("machine: \(machine.summary)")
        let data = TrainingBenchmark.head(try OfflineDataset.load(path: dataset), count: subset)
        let task = URL(fileURLWithPath: dataset).deletingPathExtension().lastPathComponent
        var config = TrainingConfig.defaults(task: task)
        config.batchSize = batchSize
        // Enough steps that no phase ends before it is measured.
        let total = warmup + steps
        config.behaviour.steps = total
        config.criticTraining.steps = total
        config.qipo.steps = total
        config.qipo.renewEvery = max(config.qipo.renewEvery, total + 1)
        note("\(data.count) transitions, obs \(data.observationDim), act \(data.actionDim); policy \(config.policy.hiddenDims), critic \(config.critic.hiddenDims), batch \(batchSize)")
        let run = try TrainingRun(name: "bench", dataset: data, config: config)
        let results = try TrainingBenchmark.measure(run: run, steps: steps, warmup: warmup, repeats: repeats)
        var table = TextTable(["phase", "steps", "steps/s", "ms/step", "rows/step", "rows/s"])
        var rows: [Row] = []
        for r in results {
            let row = Row(
                phase: r.phase, steps: r.steps, warmupSteps: r.warmupSteps, rowsPerStep: r.rowsPerStep,
                stepsPerSecond: r.stepsPerSecond, msPerStep: 1000 / r.stepsPerSecond, rowsPerSecond: r.rowsPerSecond)
            rows.append(row)
            table.add([r.phase, "\(r.steps)", fmt(r.stepsPerSecond, 2), fmt(row.msPerStep, 2), "\(r.rowsPerStep)", fmt(r.rowsPerSecond, 0)])
        }
        try output.emit(
            table, report: Report(machine: machine, dataset: dataset, transitions: data.count, batchSize: batchSize, phases: rows))
    }
}
