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
        subcommands: [BenchDenseCommand.self, BenchKernelsCommand.self, BenchTrainCommand.self, BenchServeCommand.self, BenchDecodeCommand.self, BenchCheckCommand.self])
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
        abstract: "Steps per second of each training phase with the shipped network sizes (default TrainingConfig).",
        discussion: """
            Measures each phase on 1 and 2 cores (--threads), each in a fresh run from the same seed. \
            --compare-torch PYTHON also runs scripts/torch_train_bench.py (the same networks, batch \
            and step in PyTorch on the CPU, at 1 and 2 torch threads) in the same invocation and prints \
            flowgate's best rate over torch's best rate per phase.
            """)

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
    @Option(help: "Core counts to measure, comma-separated (each 1 or 2).")
    var threads = "1,2"
    @Option(name: .customLong("compare-torch"), help: "Python interpreter with torch and numpy: also run the PyTorch script and compare.")
    var compareTorch: String?
    @Option(name: .customLong("torch-script"), help: "The PyTorch benchmark script.")
    var torchScript = "scripts/torch_train_bench.py"
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if steps < 1 || repeats < 1 || subset < 1 || batchSize < 1 || warmup < 0 {
            throw ValidationError("--steps, --repeats, --subset and --batch-size must be positive, --warmup not negative")
        }
        let counts = try threadCounts()
        for n in counts { try validateComputeThreads(n) }
        if compareTorch != nil && !FileManager.default.fileExists(atPath: torchScript) {
            throw ValidationError("--torch-script \(torchScript) does not exist (run from the repository root or pass its path)")
        }
    }

    func threadCounts() throws -> [Int] {
        let parts = threads.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
            throw ValidationError("--threads must be a comma-separated list of core counts (1 or 2), not '\(threads)'")
        }
        return parts.map { $0! }
    }

    struct Row: Codable {
        var phase: String
        var threads: Int
        var steps, warmupSteps, rowsPerStep: Int
        var stepsPerSecond, msPerStep, rowsPerSecond: Double
        /// Steps per CPU second of the stepping thread (see `TrainingBenchmark.PhaseResult`).
        var stepsPerThreadCPUSecond: Double
    }
    struct TorchReport: Codable {
        var torch: String
        /// Torch thread count → phase → steps per wall second.
        var threads: [String: [String: Double]]
        /// Torch thread count → phase → steps per CPU second of the main thread.
        var cpuThreads: [String: [String: Double]]
        enum CodingKeys: String, CodingKey { case torch, threads, cpuThreads = "cpu_threads" }
    }
    struct Report: Codable {
        var benchmark = "train"
        var machine: MachineInfo
        var dataset: String
        var transitions: Int
        var batchSize: Int
        var phases: [Row]
        var torch: TorchReport?
    }

    func run() throws {
        configureBLASFromEnvironment()
        try configureKernelsFromEnvironment()
        let counts = try threadCounts()
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
        // The phases the PyTorch script mirrors; distil and straighten reuse the QIPO policy's step.
        config.distil.steps = 0
        config.straighten.steps = 0
        note("\(data.count) transitions, obs \(data.observationDim), act \(data.actionDim); policy \(config.policy.hiddenDims), critic \(config.critic.hiddenDims), batch \(batchSize)")
        var rows: [Row] = []
        for n in counts {
            BLAS.setComputeThreads(n)
            let run = try TrainingRun(name: "bench", dataset: data, config: config)
            for r in try TrainingBenchmark.measure(run: run, steps: steps, warmup: warmup, repeats: repeats) {
                rows.append(
                    Row(
                        phase: r.phase, threads: n, steps: r.steps, warmupSteps: r.warmupSteps, rowsPerStep: r.rowsPerStep,
                        stepsPerSecond: r.stepsPerSecond, msPerStep: 1000 / r.stepsPerSecond, rowsPerSecond: r.rowsPerSecond,
                        stepsPerThreadCPUSecond: r.stepsPerThreadCPUSecond))
            }
        }
        BLAS.setComputeThreads(1)
        let torch = try compareTorch.map { try runTorch(python: $0) }
        let torchCounts = torch.map { $0.threads.keys.compactMap(Int.init).sorted() } ?? []
        // Each cell: steps per wall second (steps per CPU second of the stepping thread).
        func cell(_ wall: Double?, _ cpu: Double?) -> String {
            guard let wall, let cpu else { return "-" }
            return "\(fmt(wall, 2)) (\(fmt(cpu, 2)))"
        }
        var headers = ["phase", "steps", "rows/step"] + counts.map { "\($0) core\($0 == 1 ? "" : "s")" }
        if counts.contains(1) && counts.contains(2) { headers.append("2/1") }
        headers += torchCounts.map { "torch \($0) thr" }
        if torch != nil { headers.append("flowgate/torch") }
        var table = TextTable(headers)
        var phaseOrder: [String] = []
        for r in rows where !phaseOrder.contains(r.phase) { phaseOrder.append(r.phase) }
        for phase in phaseOrder {
            let mine = rows.filter { $0.phase == phase }
            func row(_ n: Int) -> Row? { mine.first { $0.threads == n } }
            var cells = [phase, "\(mine[0].steps)", "\(mine[0].rowsPerStep)"]
            cells += counts.map { cell(row($0)?.stepsPerSecond, row($0)?.stepsPerThreadCPUSecond) }
            if let one = row(1), let two = row(2) {
                cells.append(cell(two.stepsPerSecond / one.stepsPerSecond, two.stepsPerThreadCPUSecond / one.stepsPerThreadCPUSecond))
            }
            if let torch {
                let wall = torchCounts.map { torch.threads["\($0)"]?[phase] }
                let cpu = torchCounts.map { torch.cpuThreads["\($0)"]?[phase] }
                cells += zip(wall, cpu).map { cell($0, $1) }
                let bestWall = wall.compactMap { $0 }.max(), bestCPU = cpu.compactMap { $0 }.max()
                cells.append(
                    cell(
                        bestWall.map { (mine.map(\.stepsPerSecond).max() ?? 0) / $0 },
                        bestCPU.map { (mine.map(\.stepsPerThreadCPUSecond).max() ?? 0) / $0 }))
            }
            table.add(cells)
        }
        note("cells: steps per wall second (steps per CPU second of the stepping thread; load-independent, leaves out waits)")
        try output.emit(
            table,
            report: Report(machine: machine, dataset: dataset, transitions: data.count, batchSize: batchSize, phases: rows, torch: torch))
    }

    /// Runs the PyTorch script with the same dataset, subset, batch, steps and windows.
    func runTorch(python: String) throws -> TorchReport {
        note("running \(torchScript) with \(python) (torch threads 1 and 2)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [
            torchScript, "--dataset", dataset, "--steps", "\(steps)", "--warmup", "\(warmup)", "--repeats", "\(repeats)",
            "--subset", "\(subset)", "--batch-size", "\(batchSize)", "--threads", "1,2", "--json",
        ]
        let out = Pipe()
        p.standardOutput = out
        do { try p.run() } catch {
            throw ValidationError("--compare-torch: cannot run \(python): \(error.localizedDescription)")
        }
        let bytes = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ValidationError("--compare-torch: \(python) \(torchScript) exited with status \(p.terminationStatus) (its error is above)")
        }
        do { return try JSONDecoder().decode(TorchReport.self, from: bytes) } catch {
            throw ValidationError("--compare-torch: \(torchScript) did not print the expected JSON: \(error)")
        }
    }
}
