import FlowgateZMQ
import Foundation
import Logging

/// Settings of a `Broker` (`flowgate broker`).
public struct BrokerConfiguration: Sendable, Equatable {
    /// Endpoint the client-facing ROUTER binds (REQ and DEALER clients connect here).
    public var frontend: String = "tcp://127.0.0.1:5555"
    /// Endpoint the DEALER binds; replicas (`flowgate serve --connect`) connect their ROUTER here.
    public var backend: String = "tcp://127.0.0.1:5556"
    /// ZeroMQ high-water mark per peer, in messages, on both sockets (send and receive). A request
    /// queued towards a replica that dies is lost; the smaller this is, the fewer such requests.
    public var highWaterMark: Int = 1000
    /// Largest request the replicas accept (their `max_message_bytes`): clients sending more than
    /// twice this plus 64 KiB in one message are disconnected at the broker, as at a replica.
    public var maxMessageBytes: Int = 16 << 20
    /// ZMTP heartbeat interval towards the replicas in milliseconds; a replica silent for three
    /// intervals is dropped (so a dead host stops receiving requests). 0 turns heartbeats off.
    public var heartbeatMilliseconds: Int = 1000
    /// Keypair file of the broker (`flowgate keygen`, mode 0600). With `curveAllow` the frontend
    /// uses CURVE and admits only allowlisted client keys, exactly as `flowgate serve` does.
    public var curveSecretKeyFile: String? = nil
    /// Allowlisted client public keys: a directory of `*.pub` files or one file of keys; re-read
    /// when it changes and by `reloadAllowlist()`.
    public var curveAllow: String? = nil

    public init() {}

    /// Problems with the settings, in words; empty when valid.
    public var problems: [String] {
        var p: [String] = []
        for (name, endpoint) in [("frontend", frontend), ("backend", backend)] where !endpoint.contains("://") {
            p.append("\(name) endpoint '\(endpoint)' is not a ZeroMQ endpoint (expected e.g. tcp://127.0.0.1:5555)")
        }
        if frontend == backend && !frontend.hasSuffix(":*") {
            p.append("frontend and backend are the same endpoint '\(frontend)'")
        }
        if highWaterMark < 0 { p.append("hwm must be >= 0 (got \(highWaterMark))") }
        if maxMessageBytes < 64 { p.append("max_message_bytes must be >= 64 (got \(maxMessageBytes))") }
        if heartbeatMilliseconds < 0 { p.append("heartbeat_ms must be >= 0 (got \(heartbeatMilliseconds))") }
        if (curveSecretKeyFile == nil) != (curveAllow == nil) {
            p.append(
                "curve_secret_key and curve_allow go together (a CURVE server without an allowlist would admit any client that knows its public key)")
        }
        return p
    }
}

/// A request broker before N server replicas: libzmq's own proxy between a ROUTER frontend
/// (clients) and a DEALER backend (replicas that connect with `ServerConfiguration.connect`).
///
/// The DEALER deals requests round-robin over the connected replicas and the ROUTER routes each
/// reply back by the client identity frame the proxy kept in the envelope: a replica receives
/// `[broker, client, "", body]` and its SocketLoop answers `[broker, client, "", reply]` unchanged.
/// There is no per-request state here, so a request dealt to a replica that dies (or that was
/// queued towards it) is lost: clients must time out and retry (Lazy Pirate, docs/operations.md).
///
/// Thread confinement: `init` creates and binds the sockets on the caller's thread; `run()` then
/// hands them to `zmq_proxy_steerable` on the thread that calls it (the only thread that touches
/// them until it returns). `stop()` uses only the thread-safe context and a socket of its own, so
/// it is safe from any thread, e.g. a signal handler's dispatch queue.
public final class Broker: @unchecked Sendable {
    public let configuration: BrokerConfiguration
    /// The endpoint the frontend is bound to (the real port when bound to `tcp://host:*`).
    public let frontendEndpoint: String
    /// The endpoint the backend is bound to (the real port when bound to `tcp://host:*`).
    public let backendEndpoint: String

    private let logger: Logger
    private let context: ZMQContext
    private let frontend: ZMQSocket
    private let backend: ZMQSocket
    private let control: ZMQSocket
    private let controlEndpoint = "inproc://flowgate-broker-control-\(UUID().uuidString)"
    /// Decides the frontend's CURVE handshakes; nil when CURVE is off.
    private let zap: ZAPHandler?

    /// Creates the sockets and binds both endpoints (so bind errors surface here).
    ///
    /// - Throws: `ServerError.invalidConfiguration` for bad settings, or a ZeroMQ error naming the
    ///   call and endpoint (e.g. address in use).
    public init(configuration: BrokerConfiguration, logger: Logger = Logger(label: "flowgate.broker")) throws {
        let problems = configuration.problems
        guard problems.isEmpty else { throw ServerError.invalidConfiguration(problems) }
        self.configuration = configuration
        self.logger = logger
        context = try ZMQContext()
        // The ZAP handler binds before the CURVE socket, so no handshake happens without it.
        if let secret = configuration.curveSecretKeyFile, let allow = configuration.curveAllow {
            zap = try ZAPHandler(secretKeyFile: secret, allowlistPath: allow, context: context, logger: logger)
        } else {
            zap = nil
        }
        let hwm = Int32(clamping: configuration.highWaterMark)

        // No ROUTER_MANDATORY here: the proxy treats any send error as fatal, so a reply to a
        // client that has gone must be dropped silently, not fail.
        frontend = try ZMQSocket(context, .router)
        try frontend.setLinger(milliseconds: 0)
        try frontend.setSendHighWaterMark(hwm)
        try frontend.setReceiveHighWaterMark(hwm)
        let cap = Int64(configuration.maxMessageBytes)
        try frontend.setMaxMessageSize(cap.multipliedReportingOverflow(by: 2).overflow ? -1 : cap * 2 + 65536)
        try zap?.secure(frontend, name: "frontend")
        try frontend.bind(configuration.frontend)

        backend = try ZMQSocket(context, .dealer)
        try backend.setLinger(milliseconds: 0)
        try backend.setSendHighWaterMark(hwm)
        try backend.setReceiveHighWaterMark(hwm)
        if configuration.heartbeatMilliseconds > 0 {
            let ivl = Int32(clamping: configuration.heartbeatMilliseconds)
            try backend.setHeartbeat(intervalMilliseconds: ivl, timeoutMilliseconds: ivl.multipliedReportingOverflow(by: 3).partialValue)
        }
        try backend.bind(configuration.backend)

        control = try ZMQSocket(context, .pull)
        try control.setLinger(milliseconds: 0)
        try control.bind(controlEndpoint)

        frontendEndpoint = try frontend.lastEndpoint()
        backendEndpoint = try backend.lastEndpoint()
        zap?.start()
        warnAboutExposedEndpoints([configuration.frontend], curve: zap != nil, logger: logger)
        if !isLocalOnly(endpoint: configuration.backend) {
            logger.warning(
                "backend \(configuration.backend) is reachable from other machines: anything that connects to it receives client requests and can answer them (CURVE covers the frontend only); allow only the replicas to reach it (firewall, NetworkPolicy)"
            )
        }
    }

    /// The frontend's CURVE public key (Z85), for clients; nil when CURVE is off.
    public var curvePublicKey: String? { zap?.keyPair.publicKey }

    /// Re-reads the CURVE allowlist now (it is also re-read when it changes); returns the number of
    /// keys, or nil when CURVE is off. On error the previous keys stay in force.
    @discardableResult
    public func reloadAllowlist() throws -> Int? {
        guard let zap else { return nil }
        return try zap.allowlist.reload()
    }

    /// Forwards requests and replies until `stop()`; then closes the sockets and returns. Call it
    /// once, from one thread.
    ///
    /// - Throws: a ZeroMQ error if the proxy fails (it then stops forwarding).
    public func run() throws {
        logger.info(
            "broker: clients on \(frontendEndpoint)\(zap == nil ? "" : " (CURVE)"), replicas on \(backendEndpoint)")
        defer {
            frontend.close()
            backend.close()
            control.close()
            zap?.stop()
        }
        do {
            try ZMQSocket.proxy(frontend: frontend, backend: backend, control: control)
        } catch {
            if !error.isTerminated { throw error }
        }
        logger.info("broker stopped")
    }

    /// Asks `run()` to stop forwarding and return; returns at once. Safe from any thread, more
    /// than once, before or during `run()`. Requests and replies in flight are dropped: clients
    /// retry them against a new broker.
    public func stop() {
        guard let poke = try? ZMQSocket(context, .push) else { return }
        try? poke.setLinger(milliseconds: 1000)
        try? poke.connect(controlEndpoint)
        try? poke.send([Array("TERMINATE".utf8)], dontWait: true)
        poke.close()
    }
}
