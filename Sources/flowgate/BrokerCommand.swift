import ArgumentParser
import FlowgateServer
import Foundation
import FlowgateLifecycle
import Logging

/// `flowgate broker`: libzmq's proxy before N `flowgate serve --connect` replicas, until
/// SIGTERM/SIGINT.
struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Spread requests over replicas: a ROUTER for clients, a DEALER for `serve --connect` replicas.",
        discussion: """
            Runs libzmq's own proxy (zmq_proxy_steerable): clients connect to --frontend exactly as \
            to one server; replicas run `flowgate serve --connect --endpoint <backend>` and get \
            requests round-robin. Requests dealt to a replica that dies are lost, so clients must \
            retry on timeout (docs/operations.md). With --curve-secret-key and --curve-allow the \
            frontend uses CURVE and admits only allowlisted client keys (re-read when they change \
            and on SIGHUP); the backend stays plaintext, so keep it on a private network. \
            SIGTERM/SIGINT stop the proxy and exit 0.
            """)

    @Option(help: "Endpoint clients connect to (bound).")
    var frontend: String = "tcp://127.0.0.1:5555"

    @Option(help: "Endpoint replicas connect to (bound).")
    var backend: String = "tcp://127.0.0.1:5556"

    @Option(help: "High-water mark per peer in messages (send and receive, both sockets).")
    var hwm: Int = 1000

    @Option(
        name: .customLong("max-message-bytes"),
        help: "The replicas' max_message_bytes: clients sending more than twice this are dropped.")
    var maxMessageBytes: Int = 16 << 20

    @Option(
        name: .customLong("heartbeat-ms"),
        help: "Heartbeat interval towards replicas; a replica silent 3 intervals is dropped. 0: off.")
    var heartbeatMilliseconds: Int = 1000

    @OptionGroup var service: ServiceOptions

    var brokerConfiguration: BrokerConfiguration {
        var c = BrokerConfiguration()
        c.frontend = frontend
        c.backend = backend
        c.highWaterMark = hwm
        c.maxMessageBytes = maxMessageBytes
        c.heartbeatMilliseconds = heartbeatMilliseconds
        c.curveSecretKeyFile = service.curveSecretKey
        c.curveAllow = service.curveAllow
        return c
    }

    func validate() throws {
        try service.validate()
        let problems = brokerConfiguration.problems
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
    }

    func run() async throws {
        LogLevel.bootstrap(service.logLevel, fallback: .info)
        let logger = Logger(label: "flowgate.broker")
        let broker = try Broker(configuration: brokerConfiguration, logger: logger)
        // SIGTERM/SIGINT: a graceful shutdown of the service group stops the proxy; exit 0.
        let proxying = ThreadService(
            "flowgate.broker",
            body: { try broker.run() },
            stop: {
                logger.info("shutdown requested; stopping")
                broker.stop()
            })
        let reloading = SignalService("flowgate.reload", signals: [.sighup]) { _ in
            do {
                if let n = try broker.reloadAllowlist() { logger.notice("SIGHUP: CURVE allowlist reloaded, \(n) keys") }
            } catch {
                logger.error("SIGHUP: CURVE allowlist not reloaded, the previous keys stay: \(error)")
            }
        }
        try await ProcessLifecycle.run(proxying, with: [reloading], ignoring: [.sighup], logger: logger)
    }
}
