import CoreMetrics
import FlowgateProtocol
import Foundation
import Prometheus

/// The server's Prometheus metrics and its readiness, for `/metrics`, `/healthz` and `/readyz`
/// (docs/operations.md, "Metrics and probes").
///
/// Metrics are made through swift-metrics with a `PrometheusMetricsFactory` over a registry that
/// this object owns, not through the global `MetricsSystem`, so several servers in one process
/// (tests) keep separate numbers. Fed from where `ServerStats` is fed (the socket thread) plus
/// `refusedKey()` from the ZAP handler's thread; every method is thread-safe (swift-prometheus
/// metrics are atomic or locked; the label caches are guarded by `lock`).
final class ServerMetrics: Sendable {
    /// Histogram buckets of the latency metrics, in seconds: 0.1 ms to 10 s.
    static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    /// Histogram buckets of the batch size (observations per computed batch).
    static let batchSizeBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]

    /// `op` label of a request that could not be decoded (no operation known).
    static let undecodedOp = "none"

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    private let queueLatency: CoreMetrics.Timer
    private let computeLatency: CoreMetrics.Timer
    private let totalLatency: CoreMetrics.Timer
    private let batchSize: CoreMetrics.Recorder
    private let queueDepth: CoreMetrics.Gauge
    private let queueWork: CoreMetrics.Gauge
    private let inFlight: CoreMetrics.Gauge
    private let ready: CoreMetrics.Gauge
    private let droppedReplies: CoreMetrics.Counter
    private let refusedKeys: CoreMetrics.Counter

    private struct ModelCounters {
        let observations: CoreMetrics.Counter
        let checked: CoreMetrics.Counter
        let unreliable: CoreMetrics.Counter
    }

    private struct RequestKey: Hashable {
        let op: String
        let code: String
    }

    private let lock = NSLock()
    nonisolated(unsafe) private var requestCounters: [RequestKey: CoreMetrics.Counter] = [:]
    nonisolated(unsafe) private var modelCounters: [String: ModelCounters] = [:]
    nonisolated(unsafe) private var isReady = false
    nonisolated(unsafe) private var refusedSeen = 0

    init() {
        var f = PrometheusMetricsFactory(registry: registry)
        f.durationHistogramBuckets = [
            "flowgate_act_queue_seconds": Self.latencyBuckets, "flowgate_act_compute_seconds": Self.latencyBuckets,
            "flowgate_act_latency_seconds": Self.latencyBuckets,
        ]
        f.valueHistogramBuckets = ["flowgate_batch_size": Self.batchSizeBuckets]
        factory = f
        queueLatency = CoreMetrics.Timer(label: "flowgate_act_queue_seconds", factory: f)
        computeLatency = CoreMetrics.Timer(label: "flowgate_act_compute_seconds", factory: f)
        totalLatency = CoreMetrics.Timer(label: "flowgate_act_latency_seconds", factory: f)
        batchSize = CoreMetrics.Recorder(label: "flowgate_batch_size", aggregate: true, factory: f)
        queueDepth = CoreMetrics.Gauge(label: "flowgate_queue_depth", factory: f)
        queueWork = CoreMetrics.Gauge(label: "flowgate_queue_work", factory: f)
        inFlight = CoreMetrics.Gauge(label: "flowgate_in_flight", factory: f)
        ready = CoreMetrics.Gauge(label: "flowgate_ready", factory: f)
        droppedReplies = CoreMetrics.Counter(label: "flowgate_dropped_replies_total", factory: f)
        refusedKeys = CoreMetrics.Counter(label: "flowgate_refused_keys_total", factory: f)
        queueDepth.record(0)
        queueWork.record(0)
        inFlight.record(0)
        ready.record(0)
        for op in FlowgateProtocol.Operation.allCases { _ = counter(op: op.rawValue, code: "ok") }
    }

    // MARK: - Feeding

    /// Creates the per-model series at 0 (so a reliable rate exists before the first request).
    func register(models: [String]) {
        for model in models { _ = counters(model: model) }
    }

    /// A reply handed to ZeroMQ: `op` is `nil` when the request could not be decoded, `error` is
    /// `nil` for success.
    func replied(op: FlowgateProtocol.Operation?, error: ErrorCode?) {
        counter(op: op?.rawValue ?? Self.undecodedOp, code: error?.rawValue ?? "ok").increment()
    }

    /// A reply ZeroMQ could not route or that hit the send high-water mark.
    func droppedReply() { droppedReplies.increment() }

    /// A client whose CURVE key the ZAP handler refused.
    func refusedKey() { refusedKeys.increment() }

    /// Brings `flowgate_refused_keys_total` up to `total`, the ZAP handler's own running count
    /// (`CurveAccessCounters`); called from one thread, the socket thread's loop.
    func syncRefusedKeys(total: Int) {
        lock.lock()
        let delta = total - refusedSeen
        if delta > 0 { refusedSeen = total }
        lock.unlock()
        if delta > 0 { refusedKeys.increment(by: delta) }
    }

    /// A finished `act` request, as `ServerStats.completed` sees it (`now`: monotonic nanoseconds).
    func completed(_ c: Completion, now: UInt64) {
        if let q = c.queueMicroseconds { queueLatency.recordMicroseconds(q) }
        if c.error == nil {
            if let v = c.computeMicroseconds { computeLatency.recordMicroseconds(v) }
            totalLatency.recordNanoseconds(Int64(clamping: now >= c.arrival ? now - c.arrival : 0))
            if let model = c.telemetry.first?.model {
                let m = counters(model: model)
                m.observations.increment(by: c.observations)
                // docs/protocol.md: an observation whose energy check did not run reports energy NaN.
                let checked = c.telemetry.filter { !$0.energy.isNaN }
                m.checked.increment(by: checked.count)
                m.unreliable.increment(by: checked.reduce(0) { $0 + ($1.reliable ? 0 : 1) })
            }
        }
        if let b = c.batchSize { batchSize.record(b) }
    }

    /// Requests waiting for a worker, and the work they add up to (estimated floating-point
    /// operations, `BatchQueue.work`). Call from one place, the socket thread's loop.
    func setQueue(depth: Int, work: Double) {
        queueDepth.record(depth)
        queueWork.record(work)
    }

    /// Accepted `act` requests not yet answered (queued or computing).
    func setInFlight(_ n: Int) { inFlight.record(n) }

    // MARK: - Probes

    /// Ready to serve: models loaded, socket bound and the loop running, not draining.
    var readiness: Bool {
        lock.lock()
        defer { lock.unlock() }
        return isReady
    }

    func setReady(_ value: Bool) {
        lock.lock()
        isReady = value
        lock.unlock()
        ready.record(value ? 1 : 0)
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    func exposition() -> [UInt8] { registry.emitToBuffer() }

    // MARK: - Label caches

    private func counter(op: String, code: String) -> CoreMetrics.Counter {
        let key = RequestKey(op: op, code: code)
        lock.lock()
        defer { lock.unlock() }
        if let c = requestCounters[key] { return c }
        let c = CoreMetrics.Counter(
            label: "flowgate_requests_total", dimensions: [("op", op), ("code", code)], factory: factory)
        requestCounters[key] = c
        return c
    }

    private func counters(model: String) -> ModelCounters {
        lock.lock()
        defer { lock.unlock() }
        if let m = modelCounters[model] { return m }
        let dims = [("model", model)]
        let m = ModelCounters(
            observations: CoreMetrics.Counter(label: "flowgate_observations_total", dimensions: dims, factory: factory),
            checked: CoreMetrics.Counter(label: "flowgate_checked_observations_total", dimensions: dims, factory: factory),
            unreliable: CoreMetrics.Counter(
                label: "flowgate_unreliable_observations_total", dimensions: dims, factory: factory))
        modelCounters[model] = m
        return m
    }
}
