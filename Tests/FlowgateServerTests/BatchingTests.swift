import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Testing

/// Runs `body` against a one-worker server (no batching window) whose worker is held busy by a
/// request in `gate` while `send` queues requests behind it. Waits (bounded) until the server's
/// `stats` shows `queued` requests waiting, then opens the gate: whatever batches form, they form
/// from requests that were all waiting at once, independent of timing.
func withHeldWorker<T>(
    queued: Int, configure: (inout ServerConfiguration) -> Void = { _ in },
    send: (InferenceServer) throws -> Void, _ body: (InferenceServer) throws -> T
) throws -> T {
    let gate = Gate()
    return try withServer(
        models: [LinearTestModel(gate: gate)],
        configure: {
            $0.workers = 1
            $0.maxDelayMicroseconds = 0
            configure(&$0)
        }
    ) { server in
        defer { gate.open() }  // never leave the worker held, even when a check fails
        let blocker = try FlowgateClient(server, kind: .dealer)
        try blocker.send(Request.act(FloatArray([LinearTestModel.hold, 0, 0]), id: .string("blocker")))
        try #require(gate.waitForWorker(), "the worker never took the blocking request")
        try send(server)
        let observer = try FlowgateClient(server)
        var depth = -1
        for _ in 0..<2000 where depth != queued {  // at most ~20 s: a bound, not a timing assumption
            depth = try observer.stats()["queue_depth"]?.intValue ?? -1
            if depth != queued { Thread.sleep(forTimeInterval: 0.01) }
        }
        try #require(depth == queued, "queue depth \(depth), expected \(queued)")
        gate.open()
        let reply = try ActReply(#require(try blocker.receive(timeoutMilliseconds: 10_000)))
        #expect(reply.id == .string("blocker") && reply.timing.batch == 1)
        return try body(server)
    }
}

@Suite struct BatchingTests {
    @Test func requestsWaitingForABusyWorkerShareOneBatch() throws {
        var clients: [FlowgateClient] = []
        try withHeldWorker(
            queued: 6,
            send: { server in
                clients = try (0..<6).map { _ in try FlowgateClient(server, kind: .dealer) }
                for (i, c) in clients.enumerated() {
                    try c.send(Request.act(FloatArray([Float(i), 0, 0]), parameters: ActParameters(seed: UInt64(i)), id: .int(Int64(i))))
                }
            }
        ) { server in
            for (i, c) in clients.enumerated() {
                let reply = try ActReply(#require(try c.receive(timeoutMilliseconds: 10_000)))
                #expect(reply.id == .int(Int64(i)))
                #expect(isClose(reply.energy, [Float(i * i)]))
                #expect(reply.timing.batch == 6)
            }
            let stats = try FlowgateClient(server).stats()
            #expect(stats["batches"]?.intValue == 2, "the blocker's batch and one batch of six")
        }
    }

    @Test func batchedResultsEqualUnbatchedOnes() throws {
        let rows: [[Float]] = (0..<5).map { [Float($0) * 0.3, -0.2, 1] }
        let unbatched: [[Float]] = try withServer(configure: { $0.maxDelayMicroseconds = 0 }) { server in
            let c = try FlowgateClient(server)
            return try rows.enumerated().map {
                let reply = try c.act(observation: $1, parameters: ActParameters(seed: UInt64(40 + $0)))
                #expect(reply.timing.batch == 1)
                return reply.actions.values
            }
        }
        var dealer: FlowgateClient?
        try withHeldWorker(
            queued: rows.count,
            send: { server in
                let d = try FlowgateClient(server, kind: .dealer)
                for (i, row) in rows.enumerated() {
                    try d.send(Request.act(FloatArray(row), parameters: ActParameters(seed: UInt64(40 + i)), id: .int(Int64(i))))
                }
                dealer = d
            }
        ) { _ in
            var seen: Set<Int64> = []
            for _ in rows {
                let reply = try ActReply(#require(try dealer?.receive(timeoutMilliseconds: 10_000)))
                guard case .int(let i) = reply.id else { Issue.record("no id"); continue }
                seen.insert(i)
                #expect(reply.timing.batch == rows.count)
                #expect(isClose(reply.actions.values, unbatched[Int(i)]))
            }
            #expect(seen == Set(0..<Int64(rows.count)))
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
        // All four wait together; only the two with equal settings may share a batch.
        let settings = [ActParameters(steps: 2), ActParameters(steps: 3), ActParameters(steps: 2), ActParameters(steps: 2, check: false)]
        var dealer: FlowgateClient?
        try withHeldWorker(
            queued: settings.count,
            send: { server in
                let d = try FlowgateClient(server, kind: .dealer)
                for (i, p) in settings.enumerated() { try d.send(Request.act(FloatArray([0, 0, 0]), parameters: p, id: .int(Int64(i)))) }
                dealer = d
            }
        ) { _ in
            var batchOf: [Int64: Int] = [:]
            for _ in settings {
                let reply = try ActReply(#require(try dealer?.receive(timeoutMilliseconds: 10_000)))
                guard case .int(let i) = reply.id else { Issue.record("no id"); continue }
                batchOf[i] = reply.timing.batch
            }
            #expect(batchOf == [0: 2, 1: 1, 2: 2, 3: 1])
        }
    }

    @Test func aFullBatchDoesNotWaitForTheWindow() throws {
        // max_batch 4, a 60 s window and one worker (with another worker idle, a window is not
        // waited at all): only reaching the cap can release these batches.
        try withServer(configure: {
            $0.workers = 1
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
