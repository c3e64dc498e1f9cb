import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Logging

/// Runs `body` against a started server on an ephemeral TCP loopback port, then drains it.
func withServer<T>(
    models: [any ServableModel] = [LinearTestModel()], telemetry: Bool = false,
    configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: (InferenceServer) throws -> T
) throws -> T {
    var config = ServerConfiguration()
    config.endpoint = "tcp://127.0.0.1:*"
    config.telemetryEndpoint = telemetry ? "tcp://127.0.0.1:*" : nil
    config.workers = 2
    config.maxDelayMicroseconds = 200
    config.warmup = false  // test doubles with delays would hold each worker at start
    configure(&config)
    var logger = Logger(label: "flowgate.test")
    logger.logLevel = .warning
    let server = try InferenceServer(models: models, configuration: config, logger: logger)
    server.start()
    defer { server.shutdown() }
    return try body(server)
}

/// Sends `request` to an idle two-worker server with no batching window until `shared()` says the
/// work was shared between the workers (at most 50 tries, 50 ms apart: the second worker thread
/// may not have reached its wait yet, or may have been slow to wake and had its share taken back),
/// and returns the reply that was shared, else the last one. `reset` runs before each try. Not a
/// timing assumption on the result: the caller checks what `shared()` records.
func actOnIdleTwoWorkerServer<T>(
    _ model: any ServableModel, reset: () -> Void, shared: () -> Bool, _ request: (FlowgateClient) throws -> T
) throws -> T {
    try withServer(
        models: [model],
        configure: {
            $0.workers = 2; $0.maxDelayMicroseconds = 0
        }
    ) { server in
        let client = try FlowgateClient(server)
        for _ in 0..<50 {
            reset()
            let reply = try request(client)
            if shared() { return reply }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return try request(client)
    }
}

extension FlowgateClient {
    /// A client with a short timeout and no retries, so a broken test fails fast.
    convenience init(_ server: InferenceServer, kind: SocketKind = .req) throws {
        try self.init(endpoint: server.endpoint, kind: kind, timeoutMilliseconds: 10_000, retries: 0)
    }
}

/// The error of a reply map, if it is one.
func errorCode(_ reply: MessagePackValue?) -> ErrorCode? {
    guard let reply, reply["ok"]?.boolValue == false else { return nil }
    return ProtocolError(errorReply: reply).code
}

func isClose(_ a: [Float], _ b: [Float], tolerance: Float = 1e-6) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($0), abs($1)) }
}
