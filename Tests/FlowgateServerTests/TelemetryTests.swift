import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Testing

@Suite struct TelemetryTests {
    /// Sends acts until the subscriber sees one (PUB/SUB drops events before the subscription is
    /// up), bounded.
    func waitForSubscription(_ monitor: TelemetryMonitor, _ client: FlowgateClient, obs: [Float]) throws -> TelemetryEvent? {
        for _ in 0..<100 {
            _ = try client.act(observation: obs, id: .string("warmup"))
            if let e = try monitor.next(timeoutMilliseconds: 50) { return e }
        }
        return nil
    }

    @Test func eventsArriveOnReliabilityTopics() throws {
        try withServer(telemetry: true) { server in
            let endpoint = try #require(server.telemetryEndpoint)
            let monitor = try TelemetryMonitor(endpoint: endpoint)
            let client = try FlowgateClient(server)
            _ = try #require(try waitForSubscription(monitor, client, obs: [0, 0, 0]))
            while try monitor.next(timeoutMilliseconds: 100) != nil {}

            _ = try client.act(batch: [[0.1, 0, 0], [3, 3, 3]], id: .string("mixed"))
            let first = try #require(try monitor.next(timeoutMilliseconds: 5000))
            let second = try #require(try monitor.next(timeoutMilliseconds: 5000))
            #expect(first.topic == "reliable/test")
            #expect(first.reliable)
            #expect(second.topic == "unreliable/test")
            #expect(!second.reliable)
            #expect(second.id == .string("mixed"))
            #expect(second.model == "test")
            #expect(isClose([second.energy], [27]))
            #expect(second.threshold == 4)
            #expect(second.time > 1_600_000_000)
        }
    }

    @Test func topicPrefixFiltersEvents() throws {
        try withServer(telemetry: true) { server in
            let monitor = try TelemetryMonitor(endpoint: #require(server.telemetryEndpoint), topics: ["unreliable/"])
            let client = try FlowgateClient(server)
            _ = try #require(try waitForSubscription(monitor, client, obs: [9, 9, 9]))
            while try monitor.next(timeoutMilliseconds: 100) != nil {}
            _ = try client.act(observation: [0, 0, 0], id: .string("calm"))
            _ = try client.act(observation: [5, 5, 5], id: .string("wild"))
            let e = try #require(try monitor.next(timeoutMilliseconds: 5000))
            #expect(e.id == .string("wild"))
            #expect(e.topic == "unreliable/test")
        }
    }
}
