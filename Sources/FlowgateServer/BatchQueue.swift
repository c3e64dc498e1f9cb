import FlowgateProtocol
import Foundation

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
    let options: ActOptions
}

/// Requests computed together.
struct Batch: Sendable {
    let key: BatchKey
    var requests: [PendingRequest]
    var observationCount: Int
    let firstArrival: UInt64
    /// When the batch must close: `maxDelay` after its first request, or earlier if a request's
    /// deadline comes first (waiting longer would only turn it into `deadline_exceeded`).
    var due: UInt64
}

/// The bounded request queue and dynamic batcher, shared by the socket thread (producer) and the
/// worker threads (consumers). All state is guarded by `condition`'s lock.
///
/// A group of compatible requests becomes a batch when it reaches the model's batch cap, when
/// `maxDelay` has passed since its first request, or at once while draining. Workers take batches
/// only when idle, so under load batches grow beyond what the delay alone would collect.
final class BatchQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var ready: [Batch] = []
    private var open: [BatchKey: Batch] = [:]
    private var queued = 0
    private var closed = false
    private let limit: Int
    private let maxDelay: UInt64

    init(limit: Int, maxDelayMicroseconds: Int) {
        self.limit = limit
        self.maxDelay = UInt64(max(0, maxDelayMicroseconds)) * 1000
    }

    /// Requests accepted and not yet taken by a worker.
    var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queued
    }

    /// Adds a request; returns false (and does not queue it) when the queue is full or closed.
    func enqueue(_ request: PendingRequest) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !closed, queued < limit else { return false }
        queued += 1
        let key = BatchKey(model: request.model.name, options: request.options)
        let cap = request.model.batchCap
        if var group = open[key] {
            if group.observationCount + request.count > cap {
                ready.append(group)
                open[key] = nil
            } else {
                group.requests.append(request)
                group.observationCount += request.count
                group.due = min(group.due, request.closeBy)
                if group.observationCount >= cap {
                    ready.append(group)
                    open[key] = nil
                } else {
                    open[key] = group
                }
                condition.signal()
                return true
            }
        }
        let group = Batch(
            key: key, requests: [request], observationCount: request.count, firstArrival: request.arrival,
            due: min(request.arrival &+ maxDelay, request.closeBy))
        if group.observationCount >= cap || maxDelay == 0 {
            ready.append(group)
        } else {
            open[key] = group
        }
        condition.signal()
        return true
    }

    /// Blocks until a batch is due and returns it; `nil` once closed and empty.
    func next() -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if !ready.isEmpty {
                let batch = ready.removeFirst()
                queued -= batch.requests.count
                if !ready.isEmpty || !open.isEmpty { condition.signal() }
                return batch
            }
            if let (key, soonest) = open.min(by: { $0.value.due < $1.value.due }) {
                if closed || monotonicNanoseconds() >= soonest.due {
                    open[key] = nil
                    ready.append(soonest)
                    continue
                }
                _ = condition.wait(until: wallClockDate(atMonotonic: soonest.due))
                continue
            }
            if closed { return nil }
            condition.wait()
        }
    }

    /// Stops accepting; queued requests are still handed out (without waiting for their delay).
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
