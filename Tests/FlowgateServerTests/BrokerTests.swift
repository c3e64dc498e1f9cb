import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Logging
import Testing

/// A broker on ephemeral loopback ports, running on its own thread until the end of `body`.
private func withBroker<T>(_ body: (Broker) throws -> T) throws -> T {
    let broker = try loopbackBroker()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        try? broker.run()
        done.signal()
    }
    thread.start()
    defer {
        broker.stop()
        #expect(done.wait(timeout: .now() + 10) == .success, "broker.run() did not return after stop()")
    }
    return try body(broker)
}

/// A broker on ephemeral loopback ports, not yet running.
private func loopbackBroker() throws -> Broker {
    var config = BrokerConfiguration()
    config.frontend = "tcp://127.0.0.1:*"
    config.backend = "tcp://127.0.0.1:*"
    var logger = Logger(label: "flowgate.test.broker")
    logger.logLevel = .warning
    return try Broker(configuration: config, logger: logger)
}

/// A replica: a server whose ROUTER connects to the broker's backend.
private func replica(_ broker: Broker) throws -> InferenceServer {
    var config = ServerConfiguration()
    config.endpoint = broker.backendEndpoint
    config.connect = true
    config.workers = 1
    var logger = Logger(label: "flowgate.test.replica")
    logger.logLevel = .warning
    let server = try InferenceServer(models: [LinearTestModel(delay: 0.002)], configuration: config, logger: logger)
    server.start()
    return server
}

@Suite struct BrokerTests {
    /// DEALER → ROUTER routing: a replica sees [broker, client, "", body] and its unchanged
    /// SocketLoop answers along the same envelope, so each client gets exactly its own replies.
    @Test func repliesReachTheirClientsThroughTheBroker() throws {
        try withBroker { broker in
            let replicas = try [replica(broker), replica(broker)]
            defer { replicas.forEach { $0.shutdown() } }
            let req = try FlowgateClient(endpoint: broker.frontendEndpoint, timeoutMilliseconds: 10_000, retries: 0)
            #expect(try req.health().ready)
            let dealers = try (0..<2).map { _ in
                try FlowgateClient(endpoint: broker.frontendEndpoint, kind: .dealer, timeoutMilliseconds: 10_000, retries: 0)
            }
            let n = 20
            for (c, dealer) in dealers.enumerated() {
                for i in 0..<n {
                    try dealer.send(Request.act(FloatArray([Float(i), 0, 0]), id: .string("c\(c)-\(i)")))
                }
            }
            for (c, dealer) in dealers.enumerated() {
                var ids: Set<RequestID> = []
                for _ in 0..<n {
                    let reply = try ActReply(#require(try dealer.receive(timeoutMilliseconds: 10_000)))
                    if let id = reply.id { ids.insert(id) }
                }
                #expect(ids == Set((0..<n).map { RequestID.string("c\(c)-\($0)") }))
            }
            #expect(try req.act(observation: [1, 2, 3]).actions.values.count == 2)
        }
    }

    @Test func stopBeforeRunReturnsAtOnce() throws {
        let broker = try loopbackBroker()
        broker.stop()
        let done = DispatchSemaphore(value: 0)
        Thread {
            try? broker.run()  // would block forever if TERMINATE were lost
            done.signal()
        }.start()
        #expect(done.wait(timeout: .now() + 10) == .success, "run() did not return after an earlier stop()")
    }

    @Test func badBrokerSettingsAreNamed() {
        var config = BrokerConfiguration()
        config.frontend = "localhost:5555"
        config.backend = "tcp://127.0.0.1:7000"
        config.heartbeatMilliseconds = -1
        #expect(config.problems.contains { $0.contains("frontend endpoint 'localhost:5555' is not a ZeroMQ endpoint") })
        #expect(config.problems.contains { $0.contains("heartbeat_ms") })
        config.curveAllow = "/nonexistent"
        #expect(config.problems.contains { $0.contains("curve_secret_key and curve_allow go together") })
        config.frontend = config.backend
        #expect(config.problems.contains { $0.contains("frontend and backend are the same endpoint") })
        #expect(throws: ServerError.self) { try Broker(configuration: config) }
    }

    @Test func connectIsAConfigKeyAndRefusesWildcards() throws {
        let c = try JSONDecoder().decode(
            ServerConfiguration.self, from: Data(#"{"endpoint": "tcp://127.0.0.1:5556", "connect": true}"#.utf8))
        #expect(c.connect && c.problems.isEmpty)
        var w = c
        w.endpoint = "tcp://127.0.0.1:*"
        #expect(w.problems.contains { $0.contains("has a wildcard, but with connect") })
        w.connect = false
        #expect(w.problems.isEmpty)
    }
}
