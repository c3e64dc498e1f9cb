import FlowgateClient
import FlowgateProtocol
@testable import FlowgateServer
import Foundation
import Testing

/// Work budgets and deadlines over the socket (LinearTestModel costs 1 MFLOP per step × candidate
/// plus 1 MFLOP per check sample: 36 MFLOP per observation at its defaults).
@Suite struct BudgetTests {
    /// Waits until the worker has taken everything queued (no timing assumption: polls stats).
    func waitUntilQueueIsEmpty(_ server: InferenceServer, inFlight: Int) throws {
        let client = try FlowgateClient(server)
        for _ in 0..<500 {
            let s = try client.stats()
            if s["queue_depth"]?.intValue == 0 && s["in_flight"]?.intValue == inFlight { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
        Issue.record("queue never emptied")
    }

    @Test func requestOverTheWorkBudgetIsTooLargeNamingIt() throws {
        try withServer(configure: { $0.maxRequestGflop = 0.1 }) { server in
            let client = try FlowgateClient(server)
            // 2 observations × 36 MFLOP fit; 3 × 36 do not; neither do 2 at 32 steps (2 × 260 MFLOP).
            #expect(try client.act(batch: [[0, 0, 0], [1, 1, 1]]).actions.shape == [2, 2])
            for (batch, steps) in [(3, 4), (2, 32)] {
                let request = Request.act(
                    FloatArray(rows: Array(repeating: [0, 0, 0], count: batch)), parameters: ActParameters(steps: steps),
                    id: .int(1))
                let r = try MessagePack.decode(client.roundTrip(request.encode()))
                #expect(errorCode(r) == .tooLarge)
                let message = r["error"]?["message"]?.stringValue ?? ""
                #expect(message.contains("max_request_gflop"), "\(message)")
                #expect(message.contains("over the per-request work budget of 0.1 GFLOP"), "\(message)")
                #expect(r["id"] == .int(1))
            }
        }
    }

    @Test func queueIsBoundedByWork() throws {
        // One request computes (1 s), one 36-MFLOP request waits; a second waiting one would make
        // 72 MFLOP, over the 50-MFLOP queue budget.
        try withServer(
            models: [LinearTestModel(maxBatch: 1, delay: 1)],
            configure: {
                $0.workers = 1
                $0.maxQueuedGflop = 0.05
            }
        ) { server in
            let dealer = try FlowgateClient(server, kind: .dealer)
            try dealer.send(Request.act(FloatArray([0, 0, 0]), id: .int(0)))
            try waitUntilQueueIsEmpty(server, inFlight: 1)
            try dealer.send(Request.act(FloatArray([0, 0, 0]), id: .int(1)))
            try dealer.send(Request.act(FloatArray([0, 0, 0]), id: .int(2)))
            var byID: [RequestID: MessagePackValue] = [:]
            for _ in 0..<3 {
                let r = try #require(try dealer.receive(timeoutMilliseconds: 10_000))
                byID[RequestID(r["id"]!)!] = r
            }
            #expect(errorCode(byID[.int(0)]) == nil)
            #expect(errorCode(byID[.int(1)]) == nil)
            #expect(errorCode(byID[.int(2)]) == .overloaded)
            #expect(byID[.int(2)]?["error"]?["message"]?.stringValue?.contains("max_queued_gflop") == true)
        }
    }

    @Test func aQueuedRequestIsAnsweredWhenItsDeadlinePasses() throws {
        // The worker is busy for 3 s; the 100 ms deadline must be answered long before that batch
        // ends (the receive timeout, 2 s, is far above 100 ms and far below 3 s).
        try withServer(models: [LinearTestModel(maxBatch: 1, delay: 3)], configure: { $0.workers = 1 }) { server in
            let dealer = try FlowgateClient(server, kind: .dealer)
            try dealer.send(Request.act(FloatArray([0, 0, 0]), id: .string("slow")))
            try waitUntilQueueIsEmpty(server, inFlight: 1)
            try dealer.send(
                Request.act(FloatArray([0, 0, 0]), parameters: ActParameters(deadlineMilliseconds: 100), id: .string("late")))
            let r = try #require(try dealer.receive(timeoutMilliseconds: 2_000), "no reply before the busy batch ended")
            #expect(r["id"] == .string("late"))
            #expect(errorCode(r) == .deadlineExceeded)
            #expect(r["error"]?["message"]?.stringValue?.contains("waited in the queue") == true)
            let slow = try #require(try dealer.receive(timeoutMilliseconds: 10_000))
            #expect(errorCode(slow) == nil)
        }
    }

    @Test func aDeadlineOfZeroIsRefusedAtAdmission() throws {
        try withServer { server in
            let client = try FlowgateClient(server)
            let request = Request.act(FloatArray([0, 0, 0]), parameters: ActParameters(deadlineMilliseconds: 0), id: .int(3))
            let r = try MessagePack.decode(client.roundTrip(request.encode()))
            #expect(errorCode(r) == .deadlineExceeded)
            #expect(r["error"]?["message"]?.stringValue?.contains("before the request could be queued") == true)
        }
    }
}

/// `BatchQueue` on its own: no sockets, no threads, no clocks beyond the `now` it is given.
@Suite struct BatchQueueTests {
    let model = LoadedModel(LinearTestModel(maxBatch: 4), serverMaxBatch: 64)
    let options = ActOptions(steps: 4, candidates: 8, samples: 4, check: true)

    func request(_ i: Int, rows: Int = 1, work: Double = 10, arrival: UInt64 = 0, deadline: UInt64? = nil) -> PendingRequest {
        var r = PendingRequest(
            envelope: [], id: .int(Int64(i)), model: model,
            act: ActRequest(observations: FloatArray(rows: Array(repeating: [0, 0, 0], count: rows))),
            options: options, seedBase: 0, arrival: arrival, deadline: deadline)
        r.work = work
        return r
    }

    func ids(_ b: Batch?) -> [Int] { b?.requests.map { if case .int(let i) = $0.id { Int(i) } else { -1 } } ?? [] }

    @Test func aFreeWorkerTakesTheOldestGroupAtOnce() {
        let q = BatchQueue(limit: 10, maxDelayMicroseconds: 0)
        #expect(q.enqueue(request(0)) == nil)
        #expect(q.enqueue(request(1)) == nil)
        // No window: next() returns without waiting, with both requests (they arrived together).
        #expect(ids(q.next()) == [0, 1])
        #expect(q.depth == 0)
    }

    @Test func batchesCloseAtTheModelCapAndTheWorkBudget() {
        let q = BatchQueue(limit: 10, batchWorkLimit: 25, maxDelayMicroseconds: 0)
        for i in 0..<5 { #expect(q.enqueue(request(i)) == nil) }  // 10 FLOPs each: 2 fit under 25
        #expect(ids(q.next()) == [0, 1])
        #expect(ids(q.next()) == [2, 3])
        #expect(ids(q.next()) == [4])
        let capped = BatchQueue(limit: 10, maxDelayMicroseconds: 0)
        for i in 0..<3 { #expect(capped.enqueue(request(i, rows: 2)) == nil) }  // cap 4 rows
        #expect(ids(capped.next()) == [0, 1])
        #expect(ids(capped.next()) == [2])
    }

    @Test func theQueueIsBoundedByCountAndWork() {
        let q = BatchQueue(limit: 3, workLimit: 25, maxDelayMicroseconds: 0)
        #expect(q.enqueue(request(0)) == nil)
        #expect(q.enqueue(request(1)) == nil)
        #expect(q.enqueue(request(2)) == .workFull(queued: 20, limit: 25))
        #expect(q.work == 20)
        let big = BatchQueue(limit: 3, workLimit: 25, maxDelayMicroseconds: 0)
        #expect(big.enqueue(request(0, work: 100)) == nil, "one request alone is admitted into an empty queue")
        let counted = BatchQueue(limit: 2, maxDelayMicroseconds: 0)
        #expect(counted.enqueue(request(0)) == nil)
        #expect(counted.enqueue(request(1)) == nil)
        #expect(counted.enqueue(request(2)) == .full(limit: 2))
        counted.close()
        #expect(counted.enqueue(request(3)) == .closed)
    }

    @Test func expireTakesOutExactlyTheExpiredRequests() {
        let q = BatchQueue(limit: 10, maxDelayMicroseconds: 0)
        #expect(q.enqueue(request(0, deadline: 100)) == nil)
        #expect(q.enqueue(request(1)) == nil)
        #expect(q.enqueue(request(2, deadline: 300)) == nil)
        let early = q.expire(now: 50)
        #expect(early.expired.isEmpty)
        #expect(early.nextDeadline == 100)
        let first = q.expire(now: 100)
        #expect(first.expired.map { $0.id } == [.int(0)])
        #expect(first.nextDeadline == 300)
        #expect(q.depth == 2)
        #expect(q.work == 20)
        #expect(ids(q.next()) == [1, 2])
        #expect(q.expire(now: 1000).expired.isEmpty)
    }
}

/// Hot reload through `InferenceServer.replaceModel`.
@Suite struct ReloadTests {
    @Test func aReplacedModelServesItsNewVersion() throws {
        try withServer(models: [LinearTestModel(version: "v1")]) { server in
            let client = try FlowgateClient(server)
            #expect(try client.act(observation: [0, 0, 0]).version == "v1")
            try server.replaceModel(LinearTestModel(version: "v2"))
            var version = ""
            for _ in 0..<200 where version != "v2" {
                version = try client.act(observation: [0, 0, 0]).version
                if version != "v2" { Thread.sleep(forTimeInterval: 0.01) }
            }
            #expect(version == "v2")
            #expect(try client.info().models.first?.version == "v2")
            #expect(throws: ServerError.self) { try server.replaceModel(LinearTestModel(name: "other")) }
        }
    }
}

/// Warm-up: each worker computes the largest passes its limits admit before serving.
@Suite struct WarmupTests {
    /// Counts the rows each worker was asked to compute.
    final class Counting: ServableModel, @unchecked Sendable {
        let inner = LinearTestModel(maxBatch: 8)
        let lock = NSLock()
        var batches: [Int] = []
        var modelDescription: ModelDescription { inner.modelDescription }
        func flopsPerObservation(_ options: ActOptions) -> Double { inner.flopsPerObservation(options) }
        func makeWorker() -> any ModelWorker { Worker(self) }
        final class Worker: ModelWorker {
            let owner: Counting
            let inner: any ModelWorker
            init(_ owner: Counting) { self.owner = owner; inner = owner.inner.makeWorker() }
            func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult {
                owner.lock.withLock { owner.batches.append(count) }
                return try inner.act(observations: observations, count: count, seeds: seeds, options: options)
            }
        }
    }

    @Test func everyWorkerComputesAFullBatchBeforeServing() throws {
        let model = Counting()
        try withServer(
            models: [model],
            configure: {
                $0.warmup = true; $0.workers = 2
            }
        ) { server in
            let client = try FlowgateClient(server)
            _ = try client.act(observation: [0, 0, 0])
            // Each worker warms up (among others a batch of the model's cap, 8, at one candidate)
            // before its loop takes requests, so a warm-up batch precedes the request's batch of 1;
            // both workers warm up.
            var batches: [Int] = []
            for _ in 0..<1000 {
                batches = model.lock.withLock { model.batches }
                if batches.filter({ $0 == 8 }).count == 2 { break }
                Thread.sleep(forTimeInterval: 0.01)
            }
            #expect(batches.filter { $0 == 8 }.count == 2, "\(batches)")
            let firstRequest = try #require(batches.firstIndex(of: 1))
            #expect(batches[..<firstRequest].contains(8), "\(batches)")
        }
    }
}
