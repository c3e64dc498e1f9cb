import ArgumentParser
import FlowgateAlgorithms
import FlowgateClient
import FlowgateCommon
import FlowgateCore
import FlowgateProtocol
import FlowgateServer
import FlowgateTraining
import Foundation
import Logging
import FlowgateBenchmarks
import FlowgateDemo

/// `flowgate bench serve`: closed-loop load from N concurrent REQ clients against an in-process
/// (or external, loopback) server, for each concurrency level and flow-step count K.
struct BenchServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Throughput and client latency (p50/p90/p99) of act requests at several concurrencies and flow steps K.",
        discussion: """
            Model, in order: --model DIR; --demo; the shipped models/hopper-medium if found; a model \
            trained for a few seconds on --dataset (shipped network sizes, barely trained: for timing \
            only); else the built-in demo model. The report says which. Only loopback tcp, ipc and \
            inproc endpoints are accepted.
            """)

    @Option(help: "Model directory to serve in-process.")
    var model: String?
    @Flag(help: "Serve the built-in demo model (no neural network: measures the serving overhead only).")
    var demo = false
    @Option(help: "Dataset for a quickly trained model when no model directory is available.")
    var dataset: String?
    @Option(help: "Drive an external server at this endpoint instead of starting one.")
    var endpoint: String?
    @Option(help: "Endpoint the in-process server binds.")
    var bind = "tcp://127.0.0.1:*"
    @Option(help: "Concurrent clients, comma-separated.")
    var concurrency = IntList(argument: "1,8")!
    @Option(parsing: .upToNextOption, help: "Flow steps K per request (e.g. --steps 1 2 4 8 or 1,2,4,8).")
    var steps: [IntList] = [IntList(argument: "1,2,4,8")!]
    @Option(help: "Timed requests per (concurrency, K) cell.")
    var requests = 2000
    @Option(help: "Most seconds per cell.")
    var duration = 10.0
    @Option(help: "Candidates M per request (default: the model's).")
    var candidates: Int?
    @Flag(inversion: .prefixedNo, help: "Run the energy check (--no-check sends check: false).")
    var check = true
    @Option(help: "In-process server workers (default: number of cores).")
    var workers: Int?
    @Option(name: .customLong("max-batch"), help: "In-process server max batch.")
    var maxBatch: Int?
    @Option(name: .customLong("max-delay-us"), help: "In-process server batching window.")
    var maxDelayMicroseconds: Int?
    @OptionGroup var output: BenchOutputOptions

    var stepValues: [Int] { steps.flatMap(\.values) }

    func validate() throws {
        if requests < 1 || duration <= 0 { throw ValidationError("--requests and --duration must be positive") }
        for e in [endpoint, bind].compactMap({ $0 }) where !Self.isLocal(e) {
            throw ValidationError("\(e): only loopback tcp (127.0.0.1, localhost, [::1]), ipc:// and inproc:// endpoints are allowed")
        }
        if endpoint != nil && (model != nil || demo || dataset != nil) {
            throw ValidationError("--endpoint drives an external server: --model, --demo and --dataset do not apply")
        }
    }

    static func isLocal(_ e: String) -> Bool {
        e.hasPrefix("ipc://") || e.hasPrefix("inproc://") || e.hasPrefix("tcp://127.") || e.hasPrefix("tcp://localhost:")
            || e.hasPrefix("tcp://[::1]:")
    }

    struct Row: Codable {
        var concurrency, steps, requests, errors: Int
        var seconds, throughputRps: Double
        var latencyMs: [String: Double]
        var serverQueueUsMean, serverComputeUsMean, meanBatch: Double
    }
    struct Report: Codable {
        var benchmark = "serve"
        var machine: MachineInfo
        var model: String
        var modelSource: String
        var endpoint: String
        var candidates: Int?
        var requestsPerCell: Int
        var durationLimitS: Double
        var results: [Row]
    }

    func run() throws {
        configureBLASFromEnvironment()
        let machine = MachineInfo.current(blasThreads: BLAS.threads)
        note("machine: \(machine.summary)")
        var server: InferenceServer?
        var source = "external server"
        var target = endpoint ?? ""
        var shared: SharedZMQContext?
        if endpoint == nil {
            let (servable, how) = try loadModel()
            source = how
            var c = ServerConfiguration()
            c.endpoint = bind
            c.queueLimit = 1 << 16
            if let workers { c.workers = workers }
            if let maxBatch { c.maxBatch = maxBatch }
            if let maxDelayMicroseconds { c.maxDelayMicroseconds = maxDelayMicroseconds }
            var logger = Logger(label: "flowgate.bench")
            logger.logLevel = .warning
            let s = try InferenceServer(models: [servable], configuration: c, logger: logger)
            s.start()
            server = s
            target = s.endpoint
            if bind.hasPrefix("inproc://") { shared = SharedZMQContext(s.sharedContext) }
            note("in-process server on \(target): \(c.workers) workers, max batch \(c.maxBatch), window \(c.maxDelayMicroseconds) µs")
        }
        defer { server?.shutdown() }
        let info = try FlowgateClient(endpoint: target, timeoutMilliseconds: 10_000, retries: 0, sharedContext: shared?.handle).info()
        guard let m = info.models.first(where: { $0.name == info.defaultModel }) ?? info.models.first else {
            throw ValidationError("the server at \(target) serves no model")
        }
        note("model: \(m.name) v\(m.version) (\(source)); obs_dim \(m.observationDim), default K \(m.defaults.steps), M \(m.defaults.candidates)")

        var table = TextTable([
            "clients", "K", "ok", "err", "req/s", "p50_ms", "p90_ms", "p99_ms", "queue_us", "compute_us", "batch",
        ])
        var rows: [Row] = []
        for n in concurrency.values {
            for k in stepValues {
                var cfg = LoadTestConfiguration(
                    endpoint: target, concurrency: n, requests: requests, durationSeconds: duration,
                    parameters: ActParameters(steps: k, candidates: candidates, check: check ? nil : false), observationDim: m.observationDim)
                cfg.model = m.name
                cfg.sharedContext = shared
                let r = try LoadTester.run(cfg)
                let ms = { (p: Double) in r.percentileMicroseconds(p) / 1000 }
                let row = Row(
                    concurrency: n, steps: k, requests: r.completed, errors: r.errorCount, seconds: r.wallSeconds,
                    throughputRps: r.throughput,
                    latencyMs: ["p50": ms(50), "p90": ms(90), "p99": ms(99), "mean": (SampleStatistics.mean(r.latenciesMicroseconds) ?? 0) / 1000],
                    serverQueueUsMean: r.meanQueueMicroseconds, serverComputeUsMean: r.meanComputeMicroseconds, meanBatch: r.meanBatch)
                rows.append(row)
                table.add([
                    "\(n)", "\(k)", "\(r.completed)", "\(r.errorCount)", fmt(r.throughput, 0), fmt(ms(50), 3), fmt(ms(90), 3),
                    fmt(ms(99), 3), fmt(r.meanQueueMicroseconds, 0), fmt(r.meanComputeMicroseconds, 0), fmt(r.meanBatch, 2),
                ])
                if !r.errors.isEmpty { note("clients \(n), K \(k): errors \(r.errors)") }
            }
        }
        try output.emit(
            table,
            report: Report(
                machine: machine, model: "\(m.name) v\(m.version)", modelSource: source, endpoint: target, candidates: candidates,
                requestsPerCell: requests, durationLimitS: duration, results: rows))
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
