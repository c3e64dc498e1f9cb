public import Logging
import FlowgateCore

/// Why a server could not be created.
public enum ServerError: Error, CustomStringConvertible {
    case noModels
    case duplicateModel(String)
    case unknownDefaultModel(String, loaded: [String])
    case invalidConfiguration([String])
    case unknownModel(String, loaded: [String])

    public var description: String {
        switch self {
        case .noModels: return "no models to serve"
        case .unknownModel(let n, let loaded):
            return "no model named '\(n)' is loaded, so there is nothing to replace (loaded: \(loaded.joined(separator: ", ")))"
        case .duplicateModel(let n): return "two models are named '\(n)'"
        case .unknownDefaultModel(let n, let loaded):
            return "default model '\(n)' is not loaded (loaded: \(loaded.joined(separator: ", ")))"
        case .invalidConfiguration(let problems): return "invalid configuration: " + problems.joined(separator: "; ")
        }
    }
}

/// The flowgate inference server (protocol v1, docs/protocol.md).
///
/// ```swift
/// let server = try InferenceServer(models: [policy], configuration: config)
/// try server.start()          // binds; returns at once
/// ...
/// server.shutdown()           // stops accepting, answers every queued request, closes
/// ```
public final class InferenceServer: Sendable {
    private let loop: SocketLoop
    private let http: MetricsHTTPServer?

    /// Creates the server and binds its sockets (so bind errors surface here).
    ///
    /// - Throws: `ServerError` for bad settings or models, or a ZeroMQ error (e.g. address in use).
    public init(
        models: [any ServableModel], configuration: ServerConfiguration = ServerConfiguration(),
        logger: Logger = Logger(label: "flowgate.server")
    ) throws {
        let problems = configuration.problems
        guard problems.isEmpty else { throw ServerError.invalidConfiguration(problems) }
        _ = BLAS.configureForServing()
        loop = try SocketLoop(models: models, configuration: configuration, logger: logger)
        loop.metrics.register(models: loop.modelOrder)
        if let text = configuration.metricsAddress {
            let address = try MetricsAddress.parse(text).get()
            let server = try MetricsHTTPServer(address: address, metrics: loop.metrics, logger: logger)
            logger.info("metrics on http://\(server.boundAddress)/metrics, probes /healthz and /readyz")
            if !address.isLoopback {
                logger.warning("metrics_address \(address) is not loopback: /metrics is open to the network without authentication")
            }
            http = server
        } else {
            http = nil
        }
    }

    deinit { http?.stop() }

    /// The `host:port` the metrics and probe listener is bound to (the real port when configured
    /// with port 0), or nil when `metricsAddress` is off.
    public var metricsAddress: String? { http?.boundAddress }

    /// The Prometheus text exposition that `/metrics` serves (available with metrics off too).
    public var metricsExposition: String { String(decoding: loop.metrics.exposition(), as: UTF8.self) }

    /// The endpoint the ROUTER is bound to, with the real port when bound to `tcp://host:*`.
    public var endpoint: String { loop.boundEndpoint }

    /// The endpoint of the telemetry PUB socket, if enabled.
    public var telemetryEndpoint: String? { loop.boundTelemetryEndpoint }

    /// The server's ZeroMQ context, for clients in the same process that connect to an `inproc://`
    /// endpoint (inproc only connects sockets of one context): pass it to
    /// `FlowgateClient(endpoint:kind:timeoutMilliseconds:retries:sharedContext:)`. Valid while the
    /// server object lives; close such clients before releasing the server.
    public var sharedContext: UnsafeMutableRawPointer { loop.context.handle }

    /// Starts the worker threads and the socket thread (later calls do nothing).
    public func start() { loop.start() }

    /// Stops accepting requests, computes and answers every request already queued, closes the
    /// sockets and returns. Safe to call from any thread, more than once.
    public func shutdown() {
        loop.requestStop()
        wait()
    }

    /// The server's CURVE public key (Z85) when CURVE is on; clients need it to connect.
    public var curvePublicKey: String? { loop.zap?.keyPair.publicKey }

    /// Re-reads the CURVE allowlist now (e.g. on SIGHUP; it is also re-read within about a second
    /// of a change). Returns the number of allowlisted keys; throws and keeps the previous keys
    /// when the new allowlist is invalid; returns nil when CURVE is off. Keys added are admitted at
    /// their next handshake; removing a key refuses new connections only, not ones already open.
    @discardableResult
    public func reloadAllowlist() throws -> Int? {
        guard let zap = loop.zap else { return nil }
        return try zap.allowlist.reload()
    }

    /// Hot reload: replaces the loaded model of the same name with `model`, which the caller has
    /// already loaded and validated (`PolicyServable(directory:)`). Requests admitted before the swap
    /// finish on the old version; later ones use the new one; none fails. Returns at once (the socket
    /// thread swaps it between two requests). Throws when no model of that name is loaded.
    public func replaceModel(_ model: any ServableModel) throws {
        try loop.replaceModel(model)
    }

    /// Asks the server to drain and stop without waiting (e.g. from a signal handler's queue).
    public func requestShutdown() { loop.requestStop() }

    /// Blocks until the server has stopped (the metrics listener stops last, so `/readyz` answers
    /// 503 during the whole drain).
    public func wait() {
        loop.wait()
        loop.zap?.stop()
        http?.stop()
    }
}
