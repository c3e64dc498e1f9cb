import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Logging
import Testing

@Suite struct ShutdownTests {
    @Test func shutdownAnswersEveryQueuedRequest() throws {
        var config = ServerConfiguration()
        config.endpoint = "tcp://127.0.0.1:*"
        config.workers = 1
        config.maxDelayMicroseconds = 0
        config.warmup = false  // the test model blocks or sleeps
        var logger = Logger(label: "flowgate.test")
        logger.logLevel = .warning
        let server = try InferenceServer(models: [LinearTestModel(maxBatch: 1, delay: 0.05)], configuration: config, logger: logger)
        server.start()
        let dealer = try FlowgateClient(server, kind: .dealer)
        let n = 8
        for i in 0..<n { try dealer.send(Request.act(FloatArray([0, 0, Float(i)]), id: .int(Int64(i)))) }
        // Wait (bounded) until the server has read all of them.
        let observer = try FlowgateClient(server)
        var received = 0
        for _ in 0..<200 where received < n {
            received = try observer.stats()["requests"]?["act"]?.intValue ?? 0
            if received < n { Thread.sleep(forTimeInterval: 0.01) }
        }
        #expect(received == n)
        server.shutdown()
        var ids: Set<RequestID> = []
        for _ in 0..<n {
            let reply = try ActReply(#require(try dealer.receive(timeoutMilliseconds: 5000)))
            if let id = reply.id { ids.insert(id) }
        }
        #expect(ids.count == n)
        // The server is gone: a new request goes unanswered.
        let late = try FlowgateClient(endpoint: server.endpoint, timeoutMilliseconds: 200, retries: 0)
        #expect(throws: FlowgateClientError.self) { try late.health() }
    }

    @Test func ipcEndpointWorks() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("flowgate-\(UUID().uuidString).sock").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try withServer(configure: { $0.endpoint = "ipc://\(path)" }) { server in
            #expect(server.endpoint == "ipc://\(path)")
            let client = try FlowgateClient(server)
            #expect(try client.act(observation: [0, 0, 0]).actions.values.count == 2)
        }
    }

    @Test func inprocEndpointWorksWithTheSharedContext() throws {
        let endpoint = "inproc://flowgate-test-\(UUID().uuidString)"
        try withServer(configure: { $0.endpoint = endpoint }) { server in
            let client = try FlowgateClient(endpoint: endpoint, kind: .dealer, timeoutMilliseconds: 10_000, retries: 0, sharedContext: server.sharedContext)
            #expect(try client.act(observation: [0, 0, 0]).actions.values.count == 2)
        }
    }

    @Test func invalidConfigurationIsRejected() {
        var config = ServerConfiguration()
        config.maxBatch = 0
        config.workers = 0
        #expect(throws: ServerError.self) { try InferenceServer(models: [LinearTestModel()], configuration: config) }
        #expect(throws: ServerError.self) { try InferenceServer(models: [], configuration: ServerConfiguration()) }
    }

    @Test func configurationDecodesFromJSON() throws {
        let json = #"{"endpoint": "tcp://0.0.0.0:7000", "max_batch": 16, "max_delay_us": 250, "pub": "tcp://0.0.0.0:7001"}"#
        let c = try JSONDecoder().decode(ServerConfiguration.self, from: Data(json.utf8))
        #expect(c.endpoint == "tcp://0.0.0.0:7000")
        #expect(c.maxBatch == 16)
        #expect(c.maxDelayMicroseconds == 250)
        #expect(c.telemetryEndpoint == "tcp://0.0.0.0:7001")
        #expect(c.queueLimit == ServerConfiguration().queueLimit)
    }
}
