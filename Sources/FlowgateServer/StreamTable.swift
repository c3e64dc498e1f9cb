/// Per-stream alarm state (requests with `stream`), bounded: at most `capacity` streams, each
/// forgotten `ttlSeconds` after its last observation; when the table is full the least recently
/// used stream is evicted. Memory is bounded by the server's settings, never by what clients send
/// (a stream name is at most `ActParameters.maxStreamBytes` bytes).
///
/// Thread-safe (one `Locked` value): workers update it as they finish batches. Times are passed in, in
/// seconds on any monotonic clock, so that tests need no clock.
final class StreamTable: Sendable {
    struct Key: Hashable, Sendable {
        let model: String
        let stream: String
    }

    private struct Entry {
        var state: RiskModel.StreamState
        var lastSeen: Double
    }

    private struct Storage {
        var entries: [Key: Entry] = [:]
        var evicted = 0
        var expired = 0
    }

    let capacity: Int
    let ttlSeconds: Double
    private let storage = Locked(Storage())

    init(capacity: Int, ttlSeconds: Double) {
        self.capacity = max(1, capacity)
        self.ttlSeconds = ttlSeconds > 0 ? ttlSeconds : 300
    }

    /// Runs one observation of stream `key` through `model`: the stream's risk, its alarm
    /// transition, and the alarm state after it. A stream unseen for `ttlSeconds` starts afresh.
    func step(_ key: Key, model: RiskModel, q: Float, energy: Float, now: Double)
        -> (risk: Float, transition: RiskModel.Transition, alarm: Bool)
    {
        storage.withLock { s in
            var entry: Entry
            if let e = s.entries[key], now - e.lastSeen <= ttlSeconds {
                entry = e
            } else {
                if s.entries.removeValue(forKey: key) != nil { s.expired += 1 }
                if s.entries.count >= capacity { Self.makeRoom(&s, now: now, ttl: ttlSeconds) }
                entry = Entry(state: RiskModel.StreamState(), lastSeen: now)
            }
            let (risk, transition) = model.step(&entry.state, q: q, energy: energy)
            entry.lastSeen = max(entry.lastSeen, now)
            s.entries[key] = entry
            return (risk, transition, entry.state.alarm)
        }
    }

    /// Drops expired streams; if none expired, the least recently used one. O(count), and only
    /// when a new stream arrives at a full table.
    private static func makeRoom(_ s: inout Storage, now: Double, ttl: Double) {
        let before = s.entries.count
        s.entries = s.entries.filter { now - $0.value.lastSeen <= ttl }
        s.expired += before - s.entries.count
        if s.entries.count < before { return }
        if let oldest = s.entries.min(by: { $0.value.lastSeen < $1.value.lastSeen })?.key {
            s.entries.removeValue(forKey: oldest)
            s.evicted += 1
        }
    }

    /// Streams held now, and how many were evicted (table full) or expired so far.
    var counts: (streams: Int, evicted: Int, expired: Int) {
        storage.withLock { ($0.entries.count, $0.evicted, $0.expired) }
    }

    /// The alarm state of a stream, if the table holds it.
    func alarm(_ key: Key) -> Bool? {
        storage.withLock { $0.entries[key]?.state.alarm }
    }
}
