import FlowgateProtocol
import Histogram
import FlowgateCommon

/// Counters and latency histograms. Owned by the socket thread (no locking).
struct ServerStats {
    private(set) var requestsByOp: [Operation: Int] = [:]
    private(set) var replies = 0
    private(set) var ok = 0
    private(set) var errors: [ErrorCode: Int] = [:]
    private(set) var observations = 0
    private(set) var reliable = 0
    private(set) var droppedReplies = 0
    private(set) var batches = 0
    /// CURVE handshake counts (nil when CURVE is off), shared with the ZAP thread.
    var access: CurveAccessCounters? = nil
    private var batchSizes: [Int: Int] = [:]
    private var queueLatency = ServerStats.makeHistogram()
    private var computeLatency = ServerStats.makeHistogram()
    private var totalLatency = ServerStats.makeHistogram()
    private var batchSizeHistogram = Histogram<UInt64>(highestTrackableValue: 1 << 20, numberOfSignificantValueDigits: .three)

    /// Microsecond histograms up to one hour.
    private static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    }

    mutating func received(_ op: Operation) { requestsByOp[op, default: 0] += 1 }

    /// Records a reply handed to ZeroMQ (`error == nil` for success).
    mutating func replied(_ error: ErrorCode?) {
        replies += 1
        if let error { errors[error, default: 0] += 1 } else { ok += 1 }
    }

    mutating func dropped() { droppedReplies += 1 }

    mutating func completed(_ c: Completion, now: UInt64) {
        if let q = c.queueMicroseconds { _ = queueLatency.record(UInt64(min(q, 3_600_000_000))) }
        if c.error == nil {
            if let v = c.computeMicroseconds { _ = computeLatency.record(UInt64(min(v, 3_600_000_000))) }
            _ = totalLatency.record(UInt64(min(microseconds(from: c.arrival, to: now), 3_600_000_000)))
            observations += c.observations
            reliable += c.telemetry.reduce(0) { $0 + ($1.reliable ? 1 : 0) }
        }
        if let b = c.batchSize {
            batches += 1
            batchSizes[b, default: 0] += 1
            _ = batchSizeHistogram.record(UInt64(min(b, 1 << 20)))
        }
    }

    private static func summary(_ h: Histogram<UInt64>) -> MessagePackValue {
        guard h.totalCount > 0 else { return .map(["count": .int(0)]) }
        return .map([
            "count": .int(Int64(h.totalCount)), "mean": .double(h.mean), "min": .int(Int64(h.min)),
            "p50": .int(Int64(h.valueAtPercentile(50))), "p90": .int(Int64(h.valueAtPercentile(90))),
            "p99": .int(Int64(h.valueAtPercentile(99))), "p999": .int(Int64(h.valueAtPercentile(99.9))),
            "max": .int(Int64(h.max)),
        ])
    }

    /// The `stats` reply.
    func reply(id: RequestID?, uptimeSeconds: Double, queueDepth: Int, inFlight: Int) -> MessagePackValue {
        let byOp = Operation.allCases.map { ($0.rawValue, MessagePackValue.int(Int64(requestsByOp[$0] ?? 0))) }
        let errorCounts = ErrorCode.allCases.map { ($0.rawValue, MessagePackValue.int(Int64(errors[$0] ?? 0))) }
        let sizes = batchSizes.keys.sorted().map { (String($0), MessagePackValue.int(Int64(batchSizes[$0]!))) }
        var batch = ServerStats.summary(batchSizeHistogram)
        if case .map(var entries) = batch {
            entries.append(MessagePackEntry(.string("sizes"), .stringMap(sizes)))
            batch = .map(entries)
        }
        return .stringMap([
            ("ok", .bool(true)),
            ("id", id?.messagePackValue ?? .nil),
            ("uptime_s", .double(uptimeSeconds)),
            ("requests", .stringMap(byOp + [("total", .int(Int64(requestsByOp.values.reduce(0, +))))])),
            ("replies", .map(["total": .int(Int64(replies)), "ok": .int(Int64(ok)), "error": .int(Int64(replies - ok))])),
            ("errors", .stringMap(errorCounts)),
            ("dropped_replies", .int(Int64(droppedReplies))),
            ("queue_depth", .int(Int64(queueDepth))),
            ("in_flight", .int(Int64(inFlight))),
            ("observations", .int(Int64(observations))),
            ("reliable", .int(Int64(reliable))),
            ("reliable_rate", .double(observations > 0 ? Double(reliable) / Double(observations) : 0)),
            (
                "latency_us",
                .map([
                    "queue": ServerStats.summary(queueLatency), "compute": ServerStats.summary(computeLatency),
                    "total": ServerStats.summary(totalLatency),
                ])
            ),
            ("batches", .int(Int64(batches))),
            ("batch_size", batch),
            ("auth", authValue),
        ])
    }

    /// `auth`: whether CURVE is on, handshakes admitted and refused by the ZAP handler, allowlist size.
    private var authValue: MessagePackValue {
        let s = access?.snapshot ?? (allowed: 0, refused: 0, handshakeFailures: 0, allowlistKeys: 0, reloads: 0, reloadErrors: 0)
        var entries: [(String, MessagePackValue)] = [("curve", .bool(access != nil))]
        entries.append(("allowed", .int(Int64(s.allowed))))
        entries.append(("refused", .int(Int64(s.refused))))
        entries.append(("handshake_failures", .int(Int64(s.handshakeFailures))))
        entries.append(("allowlist_keys", .int(Int64(s.allowlistKeys))))
        entries.append(("allowlist_reloads", .int(Int64(s.reloads))))
        entries.append(("allowlist_errors", .int(Int64(s.reloadErrors))))
        return .stringMap(entries)
    }
}
