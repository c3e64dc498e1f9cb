import FlowgateProtocol
import Foundation
import FlowgateCommon

/// A model as loaded into the server.
final class LoadedModel: Sendable {
    let model: any ServableModel
    let description: ModelDescription
    /// Most observations computed together for this model.
    let batchCap: Int
    /// Most rows one forward pass of a worker holds (`ServerConfiguration.passRows`).
    let passRows: Int

    init(_ model: any ServableModel, serverMaxBatch: Int, passRows: Int = ServerConfiguration().passRows) {
        self.model = model
        self.description = model.modelDescription
        self.batchCap = max(1, min(serverMaxBatch, description.limits.maxBatch))
        self.passRows = max(1, passRows)
    }

    var name: String { description.name }

    /// A worker's compute state for this model, its passes bounded by `passRows`.
    func makeWorker() -> any ModelWorker { model.makeWorker(rowsPerPass: passRows) }

    /// The requests a worker computes at start so that its workspaces reach the largest size any
    /// admissible batch needs, and traffic never grows them: every batch is computed in passes of at
    /// most `passRows` candidate rows (or one observation's candidates, when more), so the largest
    /// pass has either the most candidates the model admits, or one candidate for each of as many
    /// observations as a pass holds (the energy check's buffers grow with observations × samples);
    /// both with the most samples the model admits and the check on. One flow step: the workspaces
    /// do not grow with steps (each step reuses the same buffers), so more would only cost time.
    var warmupShapes: [(count: Int, options: ActOptions)] {
        let d = description
        let samples = max(d.limits.maxSamples, d.defaults.samples, 1)
        let maxCandidates = max(d.limits.maxCandidates, 1)
        return [
            (
                min(batchCap, max(1, passRows / maxCandidates)),
                ActOptions(steps: 1, candidates: maxCandidates, samples: samples, check: true)
            ),
            (min(batchCap, passRows), ActOptions(steps: 1, candidates: 1, samples: samples, check: true)),
        ]
    }

    /// The shared computations (`SplittableWorker`) a worker computes at start, both halves itself,
    /// so that the job it reuses has its final size too: the most observations a batch is shared in
    /// halves with (`BatchPolicy.minimumShare` × 2 − 1) and the most candidates one pass holds for
    /// them, and one observation with the most candidates; the most samples, check on.
    var splitWarmupShapes: [(count: Int, options: ActOptions)] {
        let d = description
        let samples = max(d.limits.maxSamples, d.defaults.samples, 1)
        let maxCandidates = max(d.limits.maxCandidates, 1)
        let most = min(batchCap, 2 * BatchPolicy.minimumShare - 1)
        return [(most, min(maxCandidates, 2 * max(1, passRows / most))), (1, min(maxCandidates, 2 * passRows))].map {
            ($0.0, ActOptions(steps: 1, candidates: $0.1, samples: samples, check: true))
        }
    }

    /// Computes `warmupShapes`, and `splitWarmupShapes` when the worker shares computations, on
    /// `worker` (zero observations; errors are the caller's to log).
    func warmUp(_ worker: any ModelWorker) throws {
        func zeros(_ count: Int) -> (observations: [Float], seeds: [UInt64]) {
            ([Float](repeating: 0, count: count * description.observationDim), (0..<count).map { UInt64($0) })
        }
        for (count, options) in warmupShapes {
            let (observations, seeds) = zeros(count)
            _ = try worker.act(observations: observations, count: count, seeds: seeds, options: options)
        }
        guard let splittable = worker as? any SplittableWorker else { return }
        for (count, options) in splitWarmupShapes {
            let phases = splittable.splitPhases(count: count, options: options)
            guard phases > 0 else { continue }
            let (observations, seeds) = zeros(count)
            let job = splittable.beginSplit(observations: observations, count: count, seeds: seeds, options: options)
            for phase in 0..<phases {
                try splittable.computeHalf(0, phase: phase, of: job)
                try splittable.computeHalf(1, phase: phase, of: job)
                try splittable.join(phase: phase, of: job)
            }
            _ = try splittable.finishSplit(job)
        }
    }
}

/// An accepted `act` request waiting for its batch.
struct PendingRequest: Sendable {
    /// Routing frames + empty delimiter, to send the reply back.
    let envelope: [[UInt8]]
    let id: RequestID?
    let model: LoadedModel
    let act: ActRequest
    let options: ActOptions
    /// Seed of the first observation; observation i uses `seedBase &+ i`.
    let seedBase: UInt64
    let arrival: UInt64
    /// Monotonic time after which the request must not start.
    let deadline: UInt64?
    /// Estimated floating-point operations of the whole request (`ServableModel.flopsPerObservation`
    /// × observations): what the work budgets count.
    var work: Double = 0

    var count: Int { act.count }

    /// Latest time its batch should close so that it still starts before its deadline: the deadline
    /// minus a margin for waking a worker and thread-scheduling jitter (a tenth of the time allowed,
    /// at least 1 ms, at most half of it).
    var closeBy: UInt64 {
        guard let deadline else { return .max }
        let allowed = deadline > arrival ? deadline - arrival : 0
        return deadline - min(allowed / 2, max(1_000_000, allowed / 10))
    }
}

/// Requests that can share a forward pass.
struct BatchKey: Hashable {
    let model: String
    /// The loaded version: requests admitted before and after a hot reload never share a batch.
    let generation: ObjectIdentifier
    let options: ActOptions
}

/// Requests computed together.
struct Batch: Sendable {
    let key: BatchKey
    var requests: [PendingRequest]
    var observationCount: Int
    var work: Double
    let firstArrival: UInt64
    /// When a free worker may take the batch at the latest: `maxDelay` after its first request, or
    /// earlier if a request's deadline comes first. With no window (`maxDelay` 0) a free worker takes
    /// it at once.
    var due: UInt64
}

/// Work of one batch handed to an idle worker, so that both cores compute one batch when the
/// machine has nothing else to do: either rows of the batch (`rows`), or the second half of a
/// phase of a few observations' computation (`half`, `SplittableWorker`). The worker that split the
/// batch computes its own part, then takes this part back if no worker has started it yet, else
/// waits for its result. Every row's result depends only on its observation, seed and options
/// (`ModelWorker.act`), and a half only writes its own range of the job, so the merged result
/// equals the unsplit one up to float32 rounding of differently sized products.
final class SplitPart: @unchecked Sendable {
    enum Share {
        case rows(observations: [Float], seeds: [UInt64], options: ActOptions)
        /// Half 1 of `phase` of `job`.
        case half(job: any SplitJob, phase: Int)
    }

    /// Guarded by the queue's lock while offered (a half part is re-armed for every phase).
    fileprivate(set) var model: LoadedModel
    fileprivate(set) var share: Share
    fileprivate(set) var taken = false
    fileprivate(set) var result: Result<ActResult, any Error>?
    /// Signalled once `result` is set (a semaphore of its own, so waiting for a share never takes a
    /// wake-up meant for an idle worker).
    fileprivate let done = DispatchSemaphore(value: 0)

    init(model: LoadedModel, observations: [Float], seeds: [UInt64], options: ActOptions) {
        self.model = model
        self.share = .rows(observations: observations, seeds: seeds, options: options)
    }

    /// A part for the halves of shared computations, armed by `BatchQueue.offer(half:of:phase:model:)`.
    init(model: LoadedModel, job: any SplitJob) {
        self.model = model
        self.share = .half(job: job, phase: 0)
    }

    var isHalf: Bool {
        if case .half = share { return true }
        return false
    }

    /// Observations of a `rows` share (0 for a half).
    var count: Int {
        if case .rows(_, let seeds, _) = share { return seeds.count }
        return 0
    }
}

extension ActResult {
    /// What a computed half reports: its results are in the job.
    static let none = ActResult(actions: [], confidence: [], energy: [], q: [], reliable: [])
}

/// How a worker computes a batch it just took (`BatchPolicy.plan`).
enum SplitPlan: Equatable {
    /// On its own core.
    case whole
    /// In row ranges, the first for itself, the others offered to idle workers.
    case rows([Range<Int>])
    /// Each phase in two halves, the second offered to an idle worker (`SplittableWorker`).
    case halves
}

/// What a free worker computes next.
enum Work: Sendable {
    case batch(Batch)
    case part(SplitPart)
}

/// The batch-closing and splitting decisions, as pure functions of the queue's state (tested
/// without threads or clocks).
enum BatchPolicy {
    /// Whether a free worker may start an open group now. Without a window it starts at once. With a
    /// window it also starts at once when another worker is idle (waiting would idle a core for
    /// nothing: the other worker can take the next request, or a share of this batch), when the
    /// queue is draining, or once the window (or a deadline's margin) is over; it waits only while
    /// every other worker is busy, to gather the requests that arrive meanwhile.
    /// Fewest observations worth handing to another worker. Closed-loop single-observation clients
    /// (2–16 of them) form batches of 1–7 while a worker is momentarily idle; splitting those made
    /// every reply wait for the slower share and cost throughput (docs/benchmarks.md), while a share
    /// of 4 or more observations halves a large request's time.
    static let minimumShare = 4

    static func mayStart(now: UInt64, due: UInt64, window: UInt64, otherIdleWorkers: Int, closed: Bool) -> Bool {
        window == 0 || closed || otherIdleWorkers > 0 || now >= due
    }

    /// How a worker shares a batch of `count` observations with `idleWorkers` idle workers when no
    /// other request waits: contiguous row ranges, the first for itself, as equal as possible
    /// (each of at least `minimumShare` observations; the first is the larger when they cannot be
    /// equal, since the taker starts at once and the others only once woken). Under load (`pendingRequests` > 0) or with no idle worker:
    /// one range, one core per batch.
    /// How a worker computes a batch of `count` observations: in row shares when it has enough
    /// observations for two (`shares`); otherwise, when the model can share the computation of a
    /// few observations (`canHalve`), another worker is idle and no other request waits, in
    /// halves, so that one observation uses both cores; otherwise whole, one core per batch (always
    /// under load).
    static func plan(count: Int, idleWorkers: Int, pendingRequests: Int, canHalve: Bool) -> SplitPlan {
        let ranges = shares(count: count, idleWorkers: idleWorkers, pendingRequests: pendingRequests)
        if ranges.count > 1 { return .rows(ranges) }
        return canHalve && count > 0 && idleWorkers > 0 && pendingRequests == 0 ? .halves : .whole
    }

    static func shares(count: Int, idleWorkers: Int, pendingRequests: Int) -> [Range<Int>] {
        guard count > 0 else { return [] }
        let parts = pendingRequests > 0 ? 1 : max(1, min(count / minimumShare, 1 + max(0, idleWorkers)))
        var ranges: [Range<Int>] = []
        var start = 0
        for p in 0..<parts {
            let end = start + (count - start + parts - p - 1) / (parts - p)
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }
}

/// Why `BatchQueue.enqueue` refused a request.
enum EnqueueRefusal: Equatable {
    /// The queue holds `limit` requests already.
    case full(limit: Int)
    /// Admitting the request would put more than `limit` FLOPs in the queue.
    case workFull(queued: Double, limit: Double)
    /// The queue is closed (draining).
    case closed
}

/// The bounded request queue and dynamic batcher, shared by the socket thread (producer) and the
/// worker threads (consumers). All state is guarded by `condition`'s lock.
///
/// Batching never idles a core: a free worker takes the oldest waiting group at once (unless a
/// window `maxDelay` > 0 was asked for, then it waits at most that long from the group's first
/// request), so batches form from the requests that arrive while every worker is busy. A group also
/// closes when it reaches the model's batch cap or the per-batch work budget. The queue is bounded
/// both by request count and by queued work (FLOPs); expired requests are taken out by `expire`.
final class BatchQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var ready: [Batch] = []
    private var open: [BatchKey: Batch] = [:]
    private var queued = 0
    private var queuedWork = 0.0
    private var withDeadline = 0
    private var closed = false
    /// Shares of batches waiting for an idle worker; taken before anything else.
    private var parts: [SplitPart] = []
    /// Workers blocked in `next()` with nothing to do.
    private var idle = 0
    private let limit: Int
    private let workLimit: Double
    private let batchWorkLimit: Double
    private let maxDelay: UInt64

    /// - Parameters:
    ///   - limit: most requests waiting.
    ///   - workLimit: most FLOPs waiting (a request larger than this alone is still admitted into an
    ///     empty queue; the per-request budget is checked at admission, before this).
    ///   - batchWorkLimit: a group closes once its work reaches this.
    ///   - maxDelayMicroseconds: 0 (default) lets a free worker take a group at once.
    init(limit: Int, workLimit: Double = .infinity, batchWorkLimit: Double = .infinity, maxDelayMicroseconds: Int) {
        self.limit = limit
        self.workLimit = workLimit
        self.batchWorkLimit = batchWorkLimit
        self.maxDelay = UInt64(max(0, maxDelayMicroseconds)) * 1000
    }

    /// Requests accepted and not yet taken by a worker.
    var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queued
    }

    /// FLOPs accepted and not yet taken by a worker.
    var work: Double {
        condition.lock()
        defer { condition.unlock() }
        return queuedWork
    }

    /// Adds a request; returns why not when it was refused (and then does not queue it).
    func enqueue(_ request: PendingRequest) -> EnqueueRefusal? {
        condition.lock()
        defer { condition.unlock() }
        if closed { return .closed }
        guard queued < limit else { return .full(limit: limit) }
        guard queued == 0 || queuedWork + request.work <= workLimit else {
            return .workFull(queued: queuedWork, limit: workLimit)
        }
        queued += 1
        queuedWork += request.work
        if request.deadline != nil { withDeadline += 1 }
        let key = BatchKey(model: request.model.name, generation: ObjectIdentifier(request.model), options: request.options)
        let cap = request.model.batchCap
        if var group = open[key] {
            if group.observationCount + request.count > cap || group.work + request.work > batchWorkLimit {
                ready.append(group)
                open[key] = nil
            } else {
                group.requests.append(request)
                group.observationCount += request.count
                group.work += request.work
                group.due = min(group.due, request.closeBy)
                if group.observationCount >= cap || group.work >= batchWorkLimit {
                    ready.append(group)
                    open[key] = nil
                } else {
                    open[key] = group
                }
                condition.signal()
                return nil
            }
        }
        let group = Batch(
            key: key, requests: [request], observationCount: request.count, work: request.work,
            firstArrival: request.arrival, due: min(request.arrival &+ maxDelay, request.closeBy))
        if group.observationCount >= cap || group.work >= batchWorkLimit {
            ready.append(group)
        } else {
            open[key] = group
        }
        condition.signal()
        return nil
    }

    /// Blocks until a batch may start and returns it; `nil` once closed and empty.
    func next() -> Batch? {
        while let work = nextWork() {
            if case .batch(let batch) = work { return batch }
        }
        return nil
    }

    /// Blocks until a share of a split batch or a batch may start and returns it; `nil` once closed
    /// and empty.
    func nextWork() -> Work? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let work = take(now: monotonicNanoseconds()) {
                if !parts.isEmpty || !ready.isEmpty || !open.isEmpty { condition.signal() }
                return work
            }
            idle += 1
            defer { idle -= 1 }
            if let soonest = open.values.map(\.due).min() {
                _ = condition.wait(until: wallClockDate(atMonotonic: soonest))
                continue
            }
            if closed { return nil }
            condition.wait()
        }
    }

    /// What a free worker should run at monotonic time `now`, if anything, without waiting (for
    /// tests, which pass their own clock).
    func poll(now: UInt64) -> Work? {
        condition.lock()
        defer { condition.unlock() }
        return take(now: now)
    }

    /// The work a free worker should run now, if any (lock held): shares of split batches first
    /// (halves only while no request waits);
    /// then full batches, oldest first; then the open group with the oldest request, when
    /// `BatchPolicy.mayStart` allows.
    private func take(now: UInt64) -> Work? {
        // A half of one request's work waits while a request is queued: the free worker takes the
        // request, and the half's owner takes the half back (one core per request under load).
        if let i = parts.firstIndex(where: { queued == 0 || !$0.isHalf }) {
            let part = parts.remove(at: i)
            part.taken = true
            return .part(part)
        }
        if !ready.isEmpty {
            let i = ready.indices.min { ready[$0].firstArrival < ready[$1].firstArrival }!
            return .batch(removeCounted(ready.remove(at: i)))
        }
        let startable = open.values.filter {
            BatchPolicy.mayStart(now: now, due: $0.due, window: maxDelay, otherIdleWorkers: idle, closed: closed)
        }
        guard let batch = startable.min(by: { $0.firstArrival < $1.firstArrival }) else { return nil }
        open[batch.key] = nil
        return .batch(removeCounted(batch))
    }

    /// The row ranges a worker that just took a batch of `count` observations should compute it in
    /// (`BatchPolicy.shares` over the workers idle now and the requests waiting).
    func shares(count: Int) -> [Range<Int>] {
        condition.lock()
        defer { condition.unlock() }
        return BatchPolicy.shares(count: count, idleWorkers: idle - parts.count, pendingRequests: queued)
    }

    /// How a worker that just took a batch of `count` observations should compute it
    /// (`BatchPolicy.plan` over the workers idle now and the requests waiting).
    func plan(count: Int, canHalve: Bool) -> SplitPlan {
        condition.lock()
        defer { condition.unlock() }
        return BatchPolicy.plan(count: count, idleWorkers: idle - parts.count, pendingRequests: queued, canHalve: canHalve)
    }

    /// Offers half 1 of `phase` of `job` to an idle worker in `part` (re-armed: not taken, no
    /// result), unless a request waits: then it returns false and offers nothing (under load the
    /// worker computes both halves itself).
    func offer(half part: SplitPart, of job: any SplitJob, phase: Int, model: LoadedModel) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard queued == 0 else { return false }
        part.model = model
        part.share = .half(job: job, phase: phase)
        part.taken = false
        part.result = nil
        parts.append(part)
        condition.broadcast()
        return true
    }

    /// Hands shares of a batch to idle workers (they take them before any batch).
    func offer(_ shares: [SplitPart]) {
        guard !shares.isEmpty else { return }
        condition.lock()
        parts += shares
        condition.broadcast()
        condition.unlock()
    }

    /// Takes a share back if no worker has started it (true: the caller computes it itself).
    func reclaim(_ part: SplitPart) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !part.taken else { return false }
        parts.removeAll { $0 === part }
        part.taken = true
        return true
    }

    /// Stores the result of a share a worker computed and wakes the worker waiting for it.
    func finish(_ part: SplitPart, _ result: Result<ActResult, any Error>) {
        condition.lock()
        part.result = result
        condition.unlock()
        part.done.signal()
    }

    /// Blocks until `part` (taken by another worker) has a result.
    func result(of part: SplitPart) -> Result<ActResult, any Error> {
        part.done.wait()
        condition.lock()
        defer { condition.unlock() }
        return part.result!
    }

    private func removeCounted(_ batch: Batch) -> Batch {
        queued -= batch.requests.count
        queuedWork -= batch.work
        withDeadline -= batch.requests.reduce(0) { $0 + ($1.deadline == nil ? 0 : 1) }
        if queued == 0 { queuedWork = 0 }  // no drift from floating-point sums
        return batch
    }

    /// Takes out every waiting request whose deadline is at or before `now` and returns them (the
    /// caller answers them `deadline_exceeded` at once), plus the soonest deadline still waiting.
    func expire(now: UInt64) -> (expired: [PendingRequest], nextDeadline: UInt64?) {
        condition.lock()
        defer { condition.unlock() }
        guard withDeadline > 0 else { return ([], nil) }
        var expired: [PendingRequest] = []
        var soonest: UInt64?
        func sweep(_ batch: inout Batch) {
            var kept: [PendingRequest] = []
            for r in batch.requests {
                if let d = r.deadline, d <= now {
                    expired.append(r)
                } else {
                    kept.append(r)
                    if let d = r.deadline { soonest = min(soonest ?? d, d) }
                }
            }
            guard kept.count != batch.requests.count else { return }
            batch.requests = kept
            batch.observationCount = kept.reduce(0) { $0 + $1.count }
            batch.work = kept.reduce(0) { $0 + $1.work }
        }
        for i in ready.indices { sweep(&ready[i]) }
        ready.removeAll { $0.requests.isEmpty }
        for key in Array(open.keys) {
            var group = open[key]!
            sweep(&group)
            open[key] = group.requests.isEmpty ? nil : group
        }
        queued -= expired.count
        queuedWork -= expired.reduce(0) { $0 + $1.work }
        withDeadline -= expired.count
        if queued == 0 { queuedWork = 0 }
        return (expired, soonest)
    }

    /// Stops accepting; queued requests are still handed out (without waiting for their window).
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
