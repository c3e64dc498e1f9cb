import FlowgateProtocol
import Foundation

/// A finished `act` request, handed from a worker to the socket thread.
struct Completion: Sendable {
    let envelope: [[UInt8]]
    let reply: [UInt8]
    /// `nil` for success.
    let error: ErrorCode?
    let arrival: UInt64
    let queueMicroseconds: Int?
    let computeMicroseconds: Int?
    /// Set on one completion per computed batch: the batch's observation count.
    let batchSize: Int?
    let observations: Int
    let telemetry: [TelemetryEvent]
}

/// Completions waiting for the socket thread; thread-safe by construction (one `Locked` value).
final class CompletionQueue: Sendable {
    private let items = Locked<[Completion]>([])

    func push(_ completions: [Completion]) {
        items.withLock { $0.append(contentsOf: completions) }
    }

    func drain() -> [Completion] {
        items.withLock { items in
            let out = items
            items.removeAll(keepingCapacity: true)
            return out
        }
    }
}
