import ArgumentParser
import FlowgateAlgorithms
import FlowgateBenchmarks
import FlowgateClient
import FlowgateCommon
import FlowgateCore
import FlowgateDemo
import FlowgateProtocol
import FlowgateServer
import FlowgateTraining
import Foundation
import Logging

/// `flowgate bench serve`: load tests of `act` against an in-process server (default), an external
/// loopback server (`--endpoint`) or a remote one (`--remote`), closed loop (N clients) or open loop
/// (Poisson arrivals at a rate, latency from the intended send time), swept over K, M, N, check
/// on/off, concurrency or rate and the batching window, with the compute bound of the machine.
struct BenchServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Latency percentiles and throughput of act requests, closed or open loop, swept over K, M, N, check, load and window.",
        discussion: """
            Target: by default an in-process server on a model, in order: --model DIR; --demo; the \
            shipped models/hopper-medium if found; a model trained for a few seconds on --dataset \
            (for timing only); else the built-in demo model. --endpoint drives an external server on \
            this host (loopback tcp, ipc, inproc only); --remote tcp://HOST:PORT is required for any \
            other host. With --endpoint/--remote, --model DIR is not served: its manifest gives the \
            FLOPs per observation.
            Load: closed loop with --concurrency (N connections, one request in flight each, driven by one I/O thread) or open \
            loop with --rate (Poisson arrivals per second over --connections DEALER sockets; latency \
            counts from each request's intended send time, so queueing is never hidden). Every \
            combination of --steps, --candidates, --samples, --check-modes, --concurrency/--rate and \
            (in-process) --max-delay-us is one row. Percentiles come from an HdrHistogram (3 \
            significant digits). The machine's peak is measured first (sgemm probe) and each row \
            reports the fraction of the all-core FLOP bound reached. docs/benchmarks.md has the JSON schema.
            """)

    // Target
    @Option(help: "Model directory (served in-process; with --endpoint/--remote only read for its FLOP count).")
    var model: String?
    @Flag(help: "Serve the built-in demo model (no neural network: measures the serving overhead only).")
    var demo = false
    @Option(help: "Dataset for a quickly trained model when no model directory is available.")
    var dataset: String?
    @Option(help: "Drive an external server on this host (loopback tcp, ipc:// or inproc://).")
    var endpoint: String?
    @Option(help: "Drive a server on another host: tcp://HOST:PORT (never implied).")
    var remote: String?
    @Option(name: .customLong("curve-server-key"), help: "CURVE: the server's public key file (flowgate keygen NAME.pub).")
    var curveServerKey: String?
    @Option(name: .customLong("curve-client-key"), help: "CURVE: this client's keypair file (NAME.secret).")
    var curveClientKey: String?
    @Option(help: "Endpoint the in-process server binds.")
    var bind = "tcp://127.0.0.1:*"

    // Load
    @Option(help: "Closed loop: concurrent clients, comma-separated (default 1,8 when --rate is not given).")
    var concurrency: IntList?
    @Option(help: "Open loop: target Poisson arrival rates in requests/s, comma-separated.")
    var rate: IntList?
    @Option(help: "Open loop: DEALER connections the arrivals are spread over.")
    var connections = 4
    @Option(help: "Timed requests per cell (closed loop: budget; open loop: most arrivals offered).")
    var requests = 2000
    @Option(help: "Most seconds per cell (open loop: the schedule's length).")
    var duration = 10.0
    @Option(name: .customLong("timeout-ms"), help: "A request without reply after this long counts as a timeout error.")
    var timeoutMilliseconds = 10_000
    @Option(help: "Seed of the random observations and of the arrival schedule.")
    var seed: UInt64 = 1

    // Sweeps of the request settings
    @Option(parsing: .upToNextOption, help: "Flow steps K per request (e.g. --steps 1 2 4 8 or 1,2,4,8).")
    var steps: [IntList] = [IntList(argument: "1,2,4,8")!]
    @Option(help: "Candidates M per request, comma-separated (default: the model's).")
    var candidates: IntList?
    @Option(help: "Energy-check samples N per request, comma-separated (default: the model's).")
    var samples: IntList?
    @Option(name: .customLong("check-modes"), help: "Energy check per request: on, off or on,off (overrides --check/--no-check).")
    var checkModes: CheckList?
    @Flag(inversion: .prefixedNo, help: "Run the energy check (--no-check sends check: false).")
    var check = true

    // In-process server
    @Option(help: "In-process server workers (default: number of cores).")
    var workers: Int?
    @Option(name: .customLong("max-batch"), help: "In-process server max batch.")
    var maxBatch: Int?
    @Option(name: .customLong("max-delay-us"), help: "In-process server batching windows in µs, comma-separated (a server per value).")
    var maxDelayMicroseconds: CountList?

    // Compute bound
    @Flag(inversion: .prefixedNo, help: "Measure the machine's sgemm peak first and report the fraction of the FLOP bound.")
    var peakProbe = true
    @Option(help: "Cores the bound counts (default: this machine's).")
    var cores: Int?
    @OptionGroup var output: BenchOutputOptions

    var stepValues: [Int] { steps.flatMap(\.values) }
    var checkValues: [Bool] { checkModes?.values ?? [check] }
    var isOpenLoop: Bool { rate != nil }

    func validate() throws {
        if requests < 1 || duration <= 0 { throw ValidationError("--requests and --duration must be positive") }
        if timeoutMilliseconds < 1 { throw ValidationError("--timeout-ms must be positive") }
        if connections < 1 { throw ValidationError("--connections must be positive") }
        if let cores, cores < 1 { throw ValidationError("--cores must be positive") }
        if rate != nil && concurrency != nil {
            throw ValidationError("give --concurrency (closed loop) or --rate (open loop), not both")
        }
        do {
            _ = try BenchTarget.resolve(endpoint: endpoint, remote: remote)
        } catch {
            throw ValidationError(error.description)
        }
        if !BenchTarget.isLocal(bind) {
            throw ValidationError("--bind \(bind): the in-process server binds loopback tcp, ipc:// or inproc:// only")
        }
        let external = endpoint != nil || remote != nil
        if external && (demo || dataset != nil) {
            throw ValidationError("--endpoint/--remote drive an external server: --demo and --dataset do not apply")
        }
        if external && (workers != nil || maxBatch != nil || maxDelayMicroseconds != nil) {
            throw ValidationError("--workers, --max-batch and --max-delay-us configure the in-process server: they do not apply to --endpoint/--remote")
        }
        if (curveServerKey == nil) != (curveClientKey == nil) {
            throw ValidationError("CURVE needs both --curve-server-key and --curve-client-key")
        }
        if curveServerKey != nil && !external {
            throw ValidationError("--curve-server-key/--curve-client-key apply to an external server (--endpoint or --remote)")
        }
        if checkModes != nil && !check {
            throw ValidationError("--check-modes and --no-check both set the check: give one")
        }
    }

    func run() throws {
        configureBLASFromEnvironment()
        try configureKernelsFromEnvironment()
        let machine = MachineInfo.current(blasThreads: BLAS.threads)
        note("machine: \(machine.summary)")
        let external = try BenchTarget.resolve(endpoint: endpoint, remote: remote)
        let curve = try curveServerKey.map { try CurveClientKeys.load(serverKeyFile: $0, clientKeyFile: curveClientKey!) }

        // The peak first, before any server thread runs.
        var bound: ComputeBound?
        if peakProbe && remote == nil {
            bound = Self.measurePeak(cores: cores ?? machine.cores)
            note(String(format: "peak: %.1f GFLOP/s per core (%@); bound %.0f GFLOP/s on %d cores", bound!.peakGflopsPerCore, bound!.probe, bound!.boundGflops, bound!.cores))
        } else if peakProbe {
            note("peak: not measured (--remote: this machine's peak says nothing about the server's)")
        }

        // The model: served here, or only read for its FLOP count.
        var servable: (any ServableModel)?
        var source = "external server"
        if external == nil {
            let (s, how) = try loadModel()
            servable = s
            source = how
        } else if let model {
            servable = try PolicyServable(directory: model)
            source = "external server; FLOPs from \(model)"
        }

        let windows: [Int?] = external == nil ? (maxDelayMicroseconds?.values.map { Optional($0) } ?? [nil]) : [nil]
        let loads = isOpenLoop ? rate!.values : (concurrency ?? IntList(argument: "1,8")!).values
        var rows: [ServeBenchRow] = []
        var modelName = "?", targetDescription = ""
        for window in windows {
            var server: InferenceServer?
            var shared: SharedZMQContext?
            var target = external ?? ""
            var windowUs: Int?
            if external == nil, let servable {
                var c = ServerConfiguration()
                c.endpoint = bind
                c.queueLimit = 1 << 16
                if let workers { c.workers = workers }
                if let maxBatch { c.maxBatch = maxBatch }
                if let window { c.maxDelayMicroseconds = window }
                var logger = Logger(label: "flowgate.bench")
                logger.logLevel = .warning
                let s = try InferenceServer(models: [servable], configuration: c, logger: logger)
                s.start()
                server = s
                target = s.endpoint
                windowUs = c.maxDelayMicroseconds
                if bind.hasPrefix("inproc://") { shared = SharedZMQContext(s.sharedContext) }
                note("in-process server on \(target): \(c.workers) workers, max batch \(c.maxBatch), window \(c.maxDelayMicroseconds) µs")
            }
            defer { server?.shutdown() }
            targetDescription = target
            let info = try FlowgateClient(
                endpoint: target, timeoutMilliseconds: max(timeoutMilliseconds, 10_000), retries: 0,
                sharedContext: shared?.handle, curve: curve
            ).info()
            guard let m = info.models.first(where: { $0.name == info.defaultModel }) ?? info.models.first else {
                throw ValidationError("the server at \(target) serves no model")
            }
            if external != nil, let servable, servable.modelDescription.observationDim != m.observationDim {
                throw ValidationError(
                    "--model \(model ?? ""): obs_dim \(servable.modelDescription.observationDim), but the server's model \(m.name) has \(m.observationDim): not the served model")
            }
            modelName = "\(m.name) v\(m.version)"
            note("model: \(m.name) v\(m.version) (\(source)); obs_dim \(m.observationDim), default K \(m.defaults.steps), M \(m.defaults.candidates), N \(m.defaults.samples)")
            let hasCheck = m.defaults.samples > 0

            for load in loads {
                for k in stepValues {
                    for mValue in candidates?.values.map({ Optional($0) }) ?? [nil] {
                        for nValue in samples?.values.map({ Optional($0) }) ?? [nil] {
                            for checkOn in checkValues {
                                let parameters = ActParameters(
                                    steps: k, candidates: mValue, samples: nValue, check: checkOn ? nil : false)
                                let settings = ActOptions(
                                    steps: k, candidates: mValue ?? m.defaults.candidates, samples: nValue ?? m.defaults.samples,
                                    check: checkOn && hasCheck)
                                var row = try measure(
                                    load: load, parameters: parameters, settings: settings, window: windowUs, target: target,
                                    shared: shared, curve: curve, model: m)
                                if let servable { row.account(flopsPerObservation: servable.flopsPerObservation(settings), bound: bound) }
                                rows.append(row)
                                if !row.errorsByCode.isEmpty || row.lateReplies > 0 {
                                    note("\(isOpenLoop ? "rate" : "clients") \(load), K \(k): errors \(row.errorsByCode), late replies \(row.lateReplies)")
                                }
                            }
                        }
                    }
                }
            }
        }
        if let first = bound {
            // Probed again after the load (servers stopped): the higher of the two is the peak.
            let again = Self.measurePeak(cores: first.cores)
            if again.peakGflopsPerCore > first.peakGflopsPerCore {
                bound = ComputeBound(
                    probe: first.probe + "; the higher of a probe before and one after the load",
                    peakGflopsPerCore: again.peakGflopsPerCore, cores: first.cores)
                for i in rows.indices { if let f = rows[i].mflopPerObservation { rows[i].account(flopsPerObservation: f * 1e6, bound: bound) } }
            } else {
                bound!.probe += "; the higher of a probe before and one after the load"
            }
            note(String(format: "peak after the load: %.1f GFLOP/s per core; bound used %.0f GFLOP/s", again.peakGflopsPerCore, bound!.boundGflops))
            if rows.contains(where: { ($0.fractionOfBound ?? 0) > 1 }) {
                note("warning: a row exceeds the bound: the peak probe was starved by other processes; re-run on a quieter machine")
            }
        }
        var table = TextTable([
            isOpenLoop ? "rate" : "clients", "K", "M", "N", "check", "window", "ok", "err", "req/s", "p50_ms", "p90_ms",
            "p99_ms", "p99.9_ms", "max_ms", "batch", "MFLOP", "GFLOP/s", "bound%",
        ])
        for row in rows {
            let l = row.latencyMs
            table.add([
                row.targetRateRps.map { fmt($0, 0) } ?? "\(row.concurrency)", "\(row.steps)", "\(row.candidates)", "\(row.samples)",
                row.check ? "on" : "off", row.maxDelayUs.map { "\($0)" } ?? "-", "\(row.requests)", "\(row.errors)",
                fmt(row.throughputRps, 0), fmt(l.p50, 3), fmt(l.p90, 3), fmt(l.p99, 3), fmt(l.p999, 3), fmt(l.max, 3),
                fmt(row.meanBatch, 2), row.mflopPerObservation.map { fmt($0, 2) } ?? "-", row.achievedGflops.map { fmt($0, 1) } ?? "-",
                row.fractionOfBound.map { fmt(100 * $0, 1) } ?? "-",
            ])
        }
        let report = ServeBenchReport(
            machine: machine, model: modelName, modelSource: source, endpoint: targetDescription,
            target: remote != nil ? "remote" : (endpoint != nil ? "loopback" : "in-process"), mode: isOpenLoop ? "open" : "closed",
            requestsPerCell: requests, durationLimitS: duration, timeoutMs: timeoutMilliseconds, seed: seed, computeBound: bound,
            results: rows)
        try output.emit(table, json: report.jsonData())
    }

    /// One cell: a closed-loop run of `load` clients or an open-loop run at `load` requests/s.
    func measure(
        load: Int, parameters: ActParameters, settings: ActOptions, window: Int?, target: String, shared: SharedZMQContext?,
        curve: CurveClientKeys?, model m: ModelInfo
    ) throws -> ServeBenchRow {
        var loadTarget = LoadTarget(endpoint: target, parameters: parameters, observationDim: m.observationDim)
        loadTarget.model = m.name
        loadTarget.seed = seed
        loadTarget.timeoutMilliseconds = timeoutMilliseconds
        loadTarget.sharedContext = shared
        loadTarget.curve = curve
        if isOpenLoop {
            var cfg = OpenLoopConfiguration(target: loadTarget, rate: Double(load), durationSeconds: duration, maxRequests: requests)
            cfg.connections = connections
            let r = try OpenLoopTester.run(cfg)
            return ServeBenchRow(
                mode: "open", concurrency: connections, targetRateRps: Double(load), offeredRateRps: r.offeredRate,
                steps: settings.steps, candidates: settings.candidates, samples: settings.samples, check: settings.check,
                maxDelayUs: window, sent: r.offered, requests: r.completed, errorsByCode: r.errors, lateReplies: r.lateReplies,
                seconds: r.wallSeconds, throughputRps: r.throughput, latencyMs: r.latency.summary, serviceMs: r.serviceTime.summary,
                maxSendLagMs: r.maxSendLagMicroseconds / 1000, serverQueueUsMean: r.meanQueueMicroseconds,
                serverComputeUsMean: r.meanComputeMicroseconds, meanBatch: r.meanBatch)
        }
        let r = try LoadTester.run(LoadTestConfiguration(target: loadTarget, concurrency: load, requests: requests, durationSeconds: duration))
        return ServeBenchRow(
            mode: "closed", concurrency: load, steps: settings.steps, candidates: settings.candidates, samples: settings.samples,
            check: settings.check, maxDelayUs: window, sent: r.completed + r.errorCount, requests: r.completed,
            errorsByCode: r.errors, seconds: r.wallSeconds, throughputRps: r.throughput, latencyMs: r.histogram.summary,
            serverQueueUsMean: r.meanQueueMicroseconds, serverComputeUsMean: r.meanComputeMicroseconds, meanBatch: r.meanBatch)
    }

    /// The peak of one core: OpenBLAS sgemm on 256×256·256×256 with one thread (the shape class
    /// the server's batched layers reach), the best of 7 repeats of ≥ 50 ms (best, not median: on a
    /// shared machine every repeat loses time to other processes, and the peak is what the core can
    /// do when it gets the time).
    static func measurePeak(cores: Int) -> ComputeBound {
        let before = BLAS.threads
        BLAS.setThreads(1)
        defer { BLAS.setThreads(before) }
        let best = (0..<7).map { _ in DenseBenchmark.measure(width: 256, batch: 256, repeats: 1, minimumSeconds: 0.05).sgemmGflops }.max()!
        return ComputeBound(
            probe: "sgemm 256x256x256, 1 BLAS thread, best of 7 repeats of >= 50 ms", peakGflopsPerCore: best, cores: cores)
    }

    /// The model to serve and a sentence saying where it came from.
    func loadModel() throws -> (any ServableModel, String) {
        if demo { return (DemoModel(), "built-in demo model (no network; serving overhead only)") }
        if let dir = model ?? defaultModelDirectory() {
            return (try PolicyServable(directory: dir), "model directory \(dir)")
        }
        if let dataset {
            let t0 = monotonicSeconds()
            let data = TrainingBenchmark.head(try OfflineDataset.load(path: dataset), count: 2048)
            let task = URL(fileURLWithPath: dataset).deletingPathExtension().lastPathComponent
            var c = TrainingBenchmark.shortConfig(task: task, steps: 100)
            c.criticTraining.supportSize = 4
            c.criticTraining.supportFlowSteps = 2
            c.qipo.supportFlowSteps = 2
            let run = try TrainingRun(name: "bench-quick", dataset: data, config: c)
            _ = try run.run(progress: nil, log: nil, checkpointPath: nil)
            let loaded = try run.makeModel(gitCommit: gitCommit(), datasetSHA256: nil)
            let how = String(
                format: "quick model: shipped network sizes, trained 100 steps per phase on %d transitions of %@ in %.1f s (for timing only)",
                data.count, (dataset as NSString).lastPathComponent, monotonicSeconds() - t0)
            return (PolicyServable(bundle: try PolicyBundle(model: loaded)), how)
        }
        return (DemoModel(), "built-in demo model: no model directory found and no --dataset given (no network; serving overhead only)")
    }
}

/// `on`, `off` or `on,off`: the energy-check settings to sweep.
struct CheckList: ExpressibleByArgument, CustomStringConvertible {
    var values: [Bool]
    var description: String { values.map { $0 ? "on" : "off" }.joined(separator: ",") }
    init?(argument: String) {
        var v: [Bool] = []
        for part in argument.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) {
            switch part {
            case "on", "true": v.append(true)
            case "off", "false": v.append(false)
            default: return nil
            }
        }
        guard !v.isEmpty else { return nil }
        values = v
    }
}
