import FlowgateAlgorithms
import FlowgateClient
import FlowgateCore
import FlowgateProtocol
@testable import FlowgateServer
import Foundation
import Testing

/// The batch-closing and splitting policy on its own: explicit states and a clock the test passes.
@Suite struct BatchPolicyTests {
    let model = LoadedModel(LinearTestModel(maxBatch: 8), serverMaxBatch: 64)
    let options = ActOptions(steps: 4, candidates: 8, samples: 4, check: true)

    func request(_ i: Int, rows: Int = 1, arrival: UInt64) -> PendingRequest {
        var r = PendingRequest(
            envelope: [], id: .int(Int64(i)), model: model,
            act: ActRequest(observations: FloatArray(rows: Array(repeating: [0, 0, 0], count: rows))),
            options: options, seedBase: 0, arrival: arrival, deadline: nil)
        r.work = 10
        return r
    }

    func ids(_ w: Work?) -> [Int] {
        guard case .batch(let b) = w else { return [] }
        return b.requests.map { if case .int(let i) = $0.id { Int(i) } else { -1 } }
    }

    @Test func aWindowIsWaitedOnlyWhileEveryOtherWorkerIsBusy() {
        let window: UInt64 = 500_000
        // No window: start at once, whatever else is going on.
        #expect(BatchPolicy.mayStart(now: 0, due: 0, window: 0, otherIdleWorkers: 0, closed: false))
        // A window, another worker idle: waiting would idle a core, so start at once.
        #expect(BatchPolicy.mayStart(now: 0, due: window, window: window, otherIdleWorkers: 1, closed: false))
        // A window, every other worker busy: wait until it is over.
        #expect(!BatchPolicy.mayStart(now: window - 1, due: window, window: window, otherIdleWorkers: 0, closed: false))
        #expect(BatchPolicy.mayStart(now: window, due: window, window: window, otherIdleWorkers: 0, closed: false))
        // Draining: never wait.
        #expect(BatchPolicy.mayStart(now: 0, due: window, window: window, otherIdleWorkers: 0, closed: true))
    }

    @Test func theQueueHoldsAGroupForItsWindowOnlyWhenNoOtherWorkerIsIdle() {
        // poll() runs as a worker would with every other worker busy (no thread waits in next()).
        let q = BatchQueue(limit: 10, maxDelayMicroseconds: 500)
        #expect(q.enqueue(request(0, arrival: 1_000)) == nil)
        #expect(q.poll(now: 1_000) == nil)
        #expect(q.enqueue(request(1, arrival: 200_000)) == nil)
        #expect(q.poll(now: 500_999) == nil)
        #expect(ids(q.poll(now: 501_000)) == [0, 1])
        // Without a window the same group starts at once.
        let eager = BatchQueue(limit: 10, maxDelayMicroseconds: 0)
        #expect(eager.enqueue(request(0, arrival: 1_000)) == nil)
        #expect(ids(eager.poll(now: 1_000)) == [0])
    }

    @Test func aBatchIsSharedWithIdleWorkersOnlyWhenNothingElseWaits() {
        // Idle machine: the rows are split as evenly as possible, the first (larger) share for the
        // taker, which starts at once.
        #expect(BatchPolicy.shares(count: 9, idleWorkers: 1, pendingRequests: 0) == [0..<5, 5..<9])
        #expect(BatchPolicy.shares(count: 14, idleWorkers: 2, pendingRequests: 0) == [0..<5, 5..<10, 10..<14])
        // Every share holds at least `minimumShare` (4) observations: small batches stay whole.
        #expect(BatchPolicy.shares(count: 9, idleWorkers: 2, pendingRequests: 0) == [0..<5, 5..<9])
        #expect(BatchPolicy.shares(count: 8, idleWorkers: 5, pendingRequests: 0) == [0..<4, 4..<8])
        #expect(BatchPolicy.shares(count: 7, idleWorkers: 1, pendingRequests: 0) == [0..<7])
        #expect(BatchPolicy.shares(count: 1, idleWorkers: 1, pendingRequests: 0) == [0..<1])
        // Under load (a request waits) or with no idle worker: one core per batch.
        #expect(BatchPolicy.shares(count: 7, idleWorkers: 1, pendingRequests: 1) == [0..<7])
        #expect(BatchPolicy.shares(count: 7, idleWorkers: 0, pendingRequests: 0) == [0..<7])
    }

    @Test func sharesAreTakenFirstAndCanBeTakenBack() throws {
        let q = BatchQueue(limit: 10, maxDelayMicroseconds: 0)
        #expect(q.enqueue(request(0, arrival: 0)) == nil)
        let a = SplitPart(model: model, observations: [0, 0, 0], seeds: [1], options: options)
        let b = SplitPart(model: model, observations: [0, 0, 0], seeds: [2], options: options)
        q.offer([a, b])
        // A share comes before any waiting batch.
        guard case .part(let first) = q.poll(now: 0) else {
            Issue.record("expected a share first")
            return
        }
        #expect(first === a)
        #expect(!q.reclaim(a), "a share another worker started cannot be taken back")
        #expect(q.reclaim(b), "a share nobody started is taken back")
        #expect(ids(q.poll(now: 0)) == [0], "a reclaimed share is not handed out again")
        q.finish(a, .success(ActResult(actions: [1, 2], confidence: [1], energy: [0], q: [0], reliable: [true])))
        #expect(try q.result(of: a).get().actions == [1, 2])
    }
}

/// The shipped default model, for tests of the real computation behind the server.
enum ShippedModel {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("models/hopper-medium").path
}

/// Records the row count of every `act` call of a wrapped model (to see how batches were split).
final class RecordingModel: ServableModel, @unchecked Sendable {
    let inner: any ServableModel
    let lock = NSLock()
    var counts: [Int] = []
    init(_ inner: any ServableModel) { self.inner = inner }
    var modelDescription: ModelDescription { inner.modelDescription }
    func flopsPerObservation(_ options: ActOptions) -> Double { inner.flopsPerObservation(options) }
    func makeWorker() -> any ModelWorker { Worker(self, inner.makeWorker()) }
    func makeWorker(rowsPerPass: Int) -> any ModelWorker { Worker(self, inner.makeWorker(rowsPerPass: rowsPerPass)) }
    final class Worker: ModelWorker {
        let owner: RecordingModel
        let inner: any ModelWorker
        init(_ owner: RecordingModel, _ inner: any ModelWorker) {
            self.owner = owner
            self.inner = inner
        }
        func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult {
            owner.lock.withLock { owner.counts.append(count) }
            return try inner.act(observations: observations, count: count, seeds: seeds, options: options)
        }
    }
}

@Suite struct SplitBatchTests {
    @Test func aBatchSplitAcrossIdleWorkersEqualsTheUnsplitComputation() throws {
        let policy = try PolicyServable(directory: ShippedModel.directory)
        let model = RecordingModel(policy)
        let d = policy.modelDescription
        var rng = RNG(seed: 11)
        let rows = (0..<9).map { _ in (0..<d.observationDim).map { _ in rng.normal() } }
        let seed: UInt64 = 4242
        // The unsplit computation: one worker, all seven rows in one call.
        let options = ActOptions(steps: d.defaults.steps, candidates: d.defaults.candidates, samples: max(d.defaults.samples, 1), check: true)
        let whole = try policy.makeWorker().act(
            observations: rows.flatMap { $0 }, count: 9, seeds: (0..<9).map { seed &+ UInt64($0) }, options: options)
        // Both workers idle and nothing else waiting: the batch goes out as shares of 5 and 4.
        let reply = try actOnIdleTwoWorkerServer(
            model, reset: { model.lock.withLock { model.counts = [] } }, shared: { model.lock.withLock { model.counts.count } > 1 }
        ) { try $0.act(batch: rows, parameters: ActParameters(seed: seed)) }
        #expect(model.lock.withLock { model.counts.sorted() } == [4, 5])
        #expect(reply.timing.batch == 9)
        #expect(reply.actions.values.count == whole.actions.count)
        for (a, b) in zip(reply.actions.values, whole.actions) { #expect(abs(a - b) <= 1e-5, "action \(a) vs \(b)") }
        for i in 0..<9 {
            #expect(abs(reply.q[i] - whole.q[i]) <= 1e-4 * max(1, abs(whole.q[i])), "q row \(i)")
            #expect(abs(reply.energy[i] - whole.energy[i]) <= 1e-4 * max(1, abs(whole.energy[i])), "energy row \(i)")
            #expect(reply.reliable[i] == whole.reliable[i], "reliable row \(i)")
        }
    }

    @Test func withSplittingOffABatchStaysOnOneWorker() throws {
        let model = RecordingModel(LinearTestModel())
        _ = try withServer(
            models: [model],
            configure: {
                $0.workers = 2; $0.maxDelayMicroseconds = 0; $0.splitBatches = false
            }
        ) { server in
            try FlowgateClient(server).act(batch: Array(repeating: [0.5, 0, 1], count: 5))
        }
        #expect(model.lock.withLock { model.counts } == [5])
    }
}

/// Worker memory is sized at start from the admission limits and never grows with traffic.
@Suite struct WorkspaceSizingTests {
    @Test func afterWarmUpNoAdmissibleBatchGrowsAWorkersWorkspaces() throws {
        let policy = try PolicyServable(directory: ShippedModel.directory)
        // Small limits keep the test quick (it runs under the thread sanitizer in CI too); the
        // model's own candidate and sample limits (256, 64) stay as shipped.
        let loaded = LoadedModel(policy, serverMaxBatch: 4, passRows: 16)
        let d = loaded.description
        // Admissible shapes (count ≤ max batch, within the model's candidate and sample limits),
        // including the extremes: (count, candidates, samples, steps, check).
        let traffic: [(Int, Int, Int, Int, Bool)] = [
            (1, d.defaults.candidates, 1, d.defaults.steps, true), (4, d.defaults.candidates, 8, 2, true),
            (4, 1, d.limits.maxSamples, 1, true), (1, d.limits.maxCandidates, d.limits.maxSamples, 1, true),
            (3, 200, 3, 1, true), (4, 3, 17, 1, false), (2, d.limits.maxCandidates, 1, 1, true),
        ]
        func run(_ worker: any ModelWorker) throws {
            var rng = RNG(seed: 3)
            for (count, candidates, samples, steps, check) in traffic {
                let obs = (0..<(count * d.observationDim)).map { _ in rng.normal() }
                let seeds = (0..<count).map { UInt64($0) }
                let options = ActOptions(steps: steps, candidates: candidates, samples: samples, check: check)
                let r = try worker.act(observations: obs, count: count, seeds: seeds, options: options)
                #expect(r.q.count == count)
                // The same shape shared in halves (`SplittableWorker`), both computed here: the job
                // the worker reuses is sized at warm-up too.
                if let splittable = worker as? any SplittableWorker {
                    let phases = splittable.splitPhases(count: count, options: options)
                    guard phases > 0 else { continue }
                    let job = splittable.beginSplit(observations: obs, count: count, seeds: seeds, options: options)
                    for phase in 0..<phases {
                        try splittable.computeHalf(0, phase: phase, of: job)
                        try splittable.computeHalf(1, phase: phase, of: job)
                        try splittable.join(phase: phase, of: job)
                    }
                    #expect(try splittable.finishSplit(job).q.count == count)
                }
            }
        }
        // The measure works: the same traffic on a worker that was not warmed up grows it.
        let fresh = loaded.makeWorker()
        let before = FloatBuffer.bytesOnThisThread
        try withExtendedLifetime(fresh) {
            try run(fresh)
            #expect(FloatBuffer.bytesOnThisThread > before)
        }
        // Warmed up from the limits, the worker does not grow at all.
        let worker = loaded.makeWorker()
        try loaded.warmUp(worker)
        let warmed = FloatBuffer.bytesOnThisThread
        try withExtendedLifetime(worker) {
            try run(worker)
            #expect(FloatBuffer.bytesOnThisThread == warmed, "grew by \(FloatBuffer.bytesOnThisThread - warmed) bytes")
        }
    }
}
