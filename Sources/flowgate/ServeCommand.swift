import ArgumentParser
import FlowgateCommon
import FlowgateServer
import FlowgateCore
import FlowgateAlgorithms
import Foundation
import Logging
import FlowgateDemo
import FlowgateLifecycle

/// `flowgate serve`: runs the inference server until SIGTERM/SIGINT, then drains and exits 0.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve models over ZeroMQ + MessagePack (protocol v1, docs/protocol.md).",
        discussion: """
            Binds a ROUTER socket (REQ and DEALER clients) and, with --pub, a PUB socket for \
            reliability telemetry. Settings come from defaults, then --config FILE.json (snake_case \
            keys: endpoint, pub, max_batch, max_delay_us, workers, queue_limit, max_streams, stream_ttl_s, max_message_bytes, \
            send_hwm, recv_hwm, max_request_gflop, max_queued_gflop, inline_decode_bytes, linger_ms, \
            default_model, curve_secret_key, curve_allow, expose_provenance, metrics_address, warmup, connect; unknown keys \
            are an error), then flags. SIGTERM/SIGINT stop accepting requests, answer every queued one and \
            exit 0. SIGHUP reloads every model directory (through its symlinks) and swaps each valid \
            one in without dropping a request; an invalid one is refused with its reason logged and \
            the loaded version keeps serving. With --curve-secret-key and --curve-allow, both sockets \
            use CURVE and admit only allowlisted client keys; the allowlist is re-read when it changes \
            and on SIGHUP (docs/operations.md).
            With --metrics-address HOST:PORT an HTTP listener serves /metrics (Prometheus), /healthz \
            and /readyz.
            """)

    @Option(help: "ZeroMQ endpoint to bind (tcp, ipc or inproc), or to connect with --connect. Default: tcp://127.0.0.1:5555")
    var endpoint: String?

    @Flag(help: "Connect to --endpoint instead of binding it: a replica behind `flowgate broker` (endpoint: the broker's --backend).")
    var connect = false

    @Option(help: "Endpoint of the PUB telemetry socket, e.g. tcp://127.0.0.1:5556. Default: off")
    var pub: String?

    @Option(name: .customLong("max-batch"), help: "Most observations computed together. Default: 64")
    var maxBatch: Int?

    @Option(
        name: .customLong("max-delay-us"),
        help: "How long a free worker waits for more requests before starting a batch, in microseconds. Default: 0 (start at once; batches form while workers are busy)")
    var maxDelayMicroseconds: Int?

    @Option(help: "Worker threads running forward passes. Default: number of cores")
    var workers: Int?

    @Option(name: .customLong("pass-rows"), help: "Most rows one forward pass of a worker holds; bounds each worker's memory, changes no result. Default: 256")
    var passRows: Int?

    @Option(
        name: .customLong("split-batches"),
        help: "Share a batch with an idle worker when no other request waits: its observations, or for fewer than 8 the halves of its candidates and check proposals (true/false). Default: true")
    var splitBatches: Bool?

    @Option(name: .customLong("queue-limit"), help: "Most queued act requests before 'overloaded'. Default: 1024")
    var queueLimit: Int?

    @Option(name: .customLong("max-streams"), help: "Most streams (request key 'stream') whose alarm state is kept; the least recently used is evicted. Default: 4096")
    var maxStreams: Int?

    @Option(name: .customLong("stream-ttl-s"), help: "Seconds after its last observation a stream's alarm state is forgotten. Default: 300")
    var streamTTLSeconds: Double?

    @Option(name: .customLong("max-message-bytes"), help: "Largest request frame before 'too_large'. Default: 16777216")
    var maxMessageBytes: Int?

    @Option(name: .customLong("max-request-gflop"), help: "Work budget of one act request in GFLOP before 'too_large'. Default: 16")
    var maxRequestGflop: Double?

    @Option(name: .customLong("max-queued-gflop"), help: "Work budget of the whole queue in GFLOP before 'overloaded'. Default: 64")
    var maxQueuedGflop: Double?

    @Option(name: .customLong("default-model"), help: "Model used when a request names none. Default: the first")
    var defaultModel: String?

    @OptionGroup var service: ServiceOptions

    @Flag(
        name: .customLong("expose-provenance"),
        help: "Include each model's provenance (dataset, seed, git commit) in 'info' replies. Default: off")
    var exposeProvenance = false

    @Option(
        name: .customLong("metrics-address"),
        help: "HOST:PORT of the HTTP listener for /metrics, /healthz and /readyz, e.g. 127.0.0.1:9464. Default: off")
    var metricsAddress: String?

    @Option(help: "JSON file with server settings (flags override it).")
    var config: String?

    @Flag(help: "Serve the built-in 'demo' toy model (obs_dim 4, act_dim 2; not a policy) for smoke and interop tests: alone (and so the default) when no MODEL_DIR is given, else after the given models, which keep the default.")
    var demo = false

    @Argument(help: "Model directories to serve (default: the shipped models/hopper-medium).")
    var modelDirectories: [String] = []

    func validate() throws {
        try service.validate()
        let problems = try resolvedConfiguration().problems
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
    }

    /// Defaults, then the --config file, then flags.
    func resolvedConfiguration() throws -> ServerConfiguration {
        var c = ServerConfiguration()
        if let config {
            do {
                c = try JSONDecoder().decode(ServerConfiguration.self, from: Data(contentsOf: URL(fileURLWithPath: config)))
            } catch {
                throw ValidationError("cannot read --config \(config): \(readableError(error))")
            }
        }
        if let endpoint { c.endpoint = endpoint }
        if let pub { c.telemetryEndpoint = pub }
        if let maxBatch { c.maxBatch = maxBatch }
        if let maxDelayMicroseconds { c.maxDelayMicroseconds = maxDelayMicroseconds }
        if let workers { c.workers = workers }
        if let passRows { c.passRows = passRows }
        if let splitBatches { c.splitBatches = splitBatches }
        if let queueLimit { c.queueLimit = queueLimit }
        if let maxStreams { c.maxStreams = maxStreams }
        if let streamTTLSeconds { c.streamTTLSeconds = streamTTLSeconds }
        if let maxMessageBytes { c.maxMessageBytes = maxMessageBytes }
        if let maxRequestGflop { c.maxRequestGflop = maxRequestGflop }
        if let maxQueuedGflop { c.maxQueuedGflop = maxQueuedGflop }
        if let defaultModel { c.defaultModel = defaultModel }
        if let key = service.curveSecretKey { c.curveSecretKeyFile = key }
        if let allow = service.curveAllow { c.curveAllow = allow }
        if exposeProvenance { c.exposeProvenance = true }
        if let metricsAddress { c.metricsAddress = metricsAddress }
        if connect { c.connect = true }
        return c
    }

    func run() async throws {
        LogLevel.bootstrap(service.logLevel, fallback: .info)
        let logger = Logger(label: "flowgate.serve")
        try configureKernelsFromEnvironment()
        // Before any other thread computes (docs/benchmarks.md, "Memory at the limit").
        let released = DenseKernels.prepareForServing()
        logger.debug("libxsmm initialised; \(released / 1024) KiB of its zero-filled tables released")
        let configuration = try resolvedConfiguration()
        var directories = modelDirectories
        if directories.isEmpty && !demo {
            guard let d = defaultModelDirectory() else {
                throw ValidationError("no MODEL_DIR given and the default model models/hopper-medium was not found (run from the repository root, or set FLOWGATE_MODELS)")
            }
            directories = [d]
        }
        var models = try loadServableModels(from: directories, logger: logger)
        if demo { models.append(DemoModel()) }  // never displaces the default (first) model
        let server = try InferenceServer(models: models, configuration: configuration, logger: logger)

        // SIGTERM/SIGINT: a graceful shutdown of the service group, which drains the server
        // (stop accepting, answer every queued request) and exits 0.
        let serving = ThreadService(
            "flowgate.serve",
            body: {
                server.start()
                server.wait()
            },
            stop: {
                logger.info("shutdown requested; draining")
                server.requestShutdown()
            })
        // SIGHUP: hot reload of the model directories and of the CURVE allowlist. Each model
        // directory is loaded and validated again, off the serving path; a valid one is swapped in
        // between two requests, an invalid one is refused with its reason logged while the loaded
        // version keeps serving. SIGHUP never kills the server (`systemctl reload`).
        let reloading = SignalService("flowgate.reload", signals: [.sighup]) { [directories] _ in
            if configuration.curveEnabled {
                logger.info("received SIGHUP; reloading the CURVE allowlist")
                _ = try? server.reloadAllowlist()  // failures are logged; the old keys stay
            }
            logger.notice("received SIGHUP; reloading \(directories.count) model director\(directories.count == 1 ? "y" : "ies")")
            for dir in directories {
                reloadModel(directory: dir, into: server, logger: logger)
            }
        }
        try await ProcessLifecycle.run(serving, with: [reloading], ignoring: [.sighup], logger: logger)
    }
}

/// Loads `directory` again (through its symlinks as they are now, so a directory swapped by an
/// atomic rename or symlink flip is read whole from one version) and swaps it into `server`; on any
/// error logs the reason and leaves the loaded version serving.
func reloadModel(directory: String, into server: InferenceServer, logger: Logger) {
    let resolved = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
    do {
        let model = try PolicyServable(directory: resolved)
        try server.replaceModel(model)
        logger.notice("reload of \(directory) accepted: \(model.modelDescription.name) version \(model.modelDescription.version) (from \(resolved))")
    } catch {
        logger.error("reload of \(directory) refused, the loaded version keeps serving: \(error)")
    }
}

/// Loads every model directory into a `ServableModel` (all-or-nothing: any invalid directory
/// stops the server from starting, with the file and problem named).
func loadServableModels(from directories: [String], logger: Logger) throws -> [any ServableModel] {
    try directories.map { dir in
        let model = try PolicyServable(directory: dir)
        let d = model.modelDescription
        logger.info("loaded model \(d.name) v\(d.version) from \(dir): obs_dim \(d.observationDim), act_dim \(d.actionDim), energy check \(model.bundle.makeChecker == nil ? "absent" : "on")")
        return model
    }
}

/// The default shipped model: `models/hopper-medium` under the current directory, or next to
/// the source tree the executable was built in (`.build/<config>/flowgate` → `../../models`).
func defaultModelDirectory() -> String? {
    let name = "hopper-medium"
    var candidates = ["models/\(name)"]
    if let env = ProcessInfo.processInfo.environment["FLOWGATE_MODELS"] { candidates.insert("\(env)/\(name)", at: 0) }
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    candidates.append(exe.deletingLastPathComponent().appendingPathComponent("../../../models/\(name)").standardizedFileURL.path)
    return candidates.first { FileManager.default.fileExists(atPath: $0 + "/manifest.json") }
}
