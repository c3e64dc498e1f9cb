import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Testing

@Suite struct BatchingTests {
    @Test func requestsWithinTheWindowShareABatch() throws {
        // A long window (200 ms from the first request) so requests sent together surely meet.
        try withServer(configure: { $0.maxDelayMicroseconds = 200_000 }) { server in
            let clients = try (0..<6).map { _ in try FlowgateClient(server, kind: .dealer) }
            for (i, c) in clients.enumerated() {
                try c.send(Request.act(FloatArray([Float(i), 0, 0]), parameters: ActParameters(seed: UInt64(i)), id: .int(Int64(i))))
            }
            var batches: [Int] = []
            for (i, c) in clients.enumerated() {
                let reply = try ActReply(#require(try c.receive(timeoutMilliseconds: 10_000)))
                #expect(reply.id == .int(Int64(i)))
                #expect(isClose(reply.energy, [Float(i * i)]))
                batches.append(reply.timing.batch)
            }
            #expect(batches.contains { $0 > 1 }, "batch sizes \(batches)")
            let stats = try FlowgateClient(server).stats()
            #expect((stats["batches"]?.intValue ?? 0) < 6)
        }
    }

    @Test func batchedResultsEqualUnbatchedOnes() throws {
        let rows: [[Float]] = (0..<5).map { [Float($0) * 0.3, -0.2, 1] }
        let unbatched: [[Float]] = try withServer(configure: { $0.maxDelayMicroseconds = 0 }) { server in
            let c = try FlowgateClient(server)
            return try rows.enumerated().map { try c.act(observation: $1, parameters: ActParameters(seed: UInt64(40 + $0))).actions.values }
        }
        try withServer(configure: { $0.maxDelayMicroseconds = 1_000_000 }) { server in
            let dealer = try FlowgateClient(server, kind: .dealer)
            for (i, row) in rows.enumerated() {
                try dealer.send(Request.act(FloatArray(row), parameters: ActParameters(seed: UInt64(40 + i)), id: .int(Int64(i))))
            }
            for _ in rows {
                let reply = try ActReply(#require(try dealer.receive(timeoutMilliseconds: 10_000)))
                guard case .int(let i) = reply.id else { Issue.record("no id"); continue }
                #expect(reply.timing.batch > 1)
                #expect(isClose(reply.actions.values, unbatched[Int(i)]))
            }
        }
    }

    @Test func aDeadlineClosesTheBatchEarly() throws {
        // A 60 s window, but the request allows only 200 ms: the batch must close in time for it.
        try withServer(configure: { $0.maxDelayMicroseconds = 60_000_000 }) { server in
            let client = try FlowgateClient(server)
            let reply = try client.act(observation: [0, 0, 0], parameters: ActParameters(deadlineMilliseconds: 200))
            #expect(reply.timing.batch == 1)
        }
    }

    @Test func incompatibleSettingsDoNotShareABatch() throws {
        try withServer(configure: { $0.maxDelayMicroseconds = 100_000 }) { server in
            let dealer = try FlowgateClient(server, kind: .dealer)
            try dealer.send(Request.act(FloatArray([0, 0, 0]), parameters: ActParameters(steps: 2), id: .int(0)))
            try dealer.send(Request.act(FloatArray([0, 0, 0]), parameters: ActParameters(steps: 3), id: .int(1)))
            for _ in 0..<2 {
                let reply = try ActReply(#require(try dealer.receive(timeoutMilliseconds: 10_000)))
                #expect(reply.timing.batch == 1)
            }
        }
    }

    @Test func aFullBatchDoesNotWaitForTheWindow() throws {
        // max_batch 4 and a 60 s window: only reaching the cap can release these batches.
        try withServer(configure: {
            $0.maxBatch = 4
            $0.maxDelayMicroseconds = 60_000_000
        }) { server in
            let dealer = try FlowgateClient(server, kind: .dealer)
            for i in 0..<8 { try dealer.send(Request.act(FloatArray([0, 0, Float(i)]), id: .int(Int64(i)))) }
            for _ in 0..<8 {
                let reply = try ActReply(#require(try dealer.receive(timeoutMilliseconds: 20_000)))
                #expect(reply.timing.batch == 4)
            }
        }
    }
}
