import FlowgateProtocol
import Foundation
import FlowgateCommon

/// A model as loaded into the server.
final class LoadedModel: Sendable {
    let model: any ServableModel
    let description: ModelDescription
    /// Most observations computed together for this model.
    let batchCap: Int

    init(_ model: any ServableModel, serverMaxBatch: Int) {
        self.model = model
        self.description = model.modelDescription
        self.batchCap = max(1, min(serverMaxBatch, description.limits.maxBatch))
    }

    var name: String { description.name }
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
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let batch = take(now: monotonicNanoseconds()) {
                if !ready.isEmpty || !open.isEmpty { condition.signal() }
                return batch
            }
            if let soonest = open.values.map(\.due).min() {
                _ = condition.wait(until: wallClockDate(atMonotonic: soonest))
                continue
            }
            if closed { return nil }
            condition.wait()
        }
    }

    /// The batch a free worker should run now, if any (lock held): full batches first, oldest first;
    /// then the open group with the oldest request, if its window is over (or there is no window, or
    /// the queue is closed).
    private func take(now: UInt64) -> Batch? {
        if !ready.isEmpty {
            let i = ready.indices.min { ready[$0].firstArrival < ready[$1].firstArrival }!
            return removeCounted(ready.remove(at: i))
        }
        let startable = maxDelay == 0 || closed ? Array(open.values) : open.values.filter { now >= $0.due }
        guard let batch = startable.min(by: { $0.firstArrival < $1.firstArrival }) else { return nil }
        open[batch.key] = nil
        return removeCounted(batch)
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
