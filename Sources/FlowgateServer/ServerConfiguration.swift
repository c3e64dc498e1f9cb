import Foundation

/// Settings of an `InferenceServer`. Decodable from JSON with snake_case keys (`flowgate serve
/// --config`); every key is optional.
public struct ServerConfiguration: Sendable, Equatable, Codable {
    /// ZeroMQ endpoint the ROUTER binds (tcp, ipc or inproc; `tcp://127.0.0.1:*` picks a free port).
    public var endpoint: String = "tcp://127.0.0.1:5555"
    /// Endpoint of the PUB telemetry socket; `nil` disables telemetry.
    public var telemetryEndpoint: String? = nil
    /// Most observations computed together (also capped by each model's `limits.maxBatch`).
    public var maxBatch: Int = 64
    /// How long a batch waits for more requests, counted from its first request, in microseconds.
    public var maxDelayMicroseconds: Int = 500
    /// Worker threads running forward passes.
    public var workers: Int = ProcessInfo.processInfo.activeProcessorCount
    /// Most `act` requests waiting for a worker; beyond it requests get `overloaded` at once.
    public var queueLimit: Int = 1024
    /// Largest request frame in bytes; larger frames get `too_large`. Peers sending more than twice
    /// this (plus 64 KiB) in one message are disconnected by ZeroMQ (`ZMQ_MAXMSGSIZE`).
    public var maxMessageBytes: Int = 16 << 20
    /// ZeroMQ send high-water mark per peer (ROUTER and PUB); replies beyond it are dropped and counted.
    public var sendHighWaterMark: Int = 1000
    /// How long closing sockets may wait to flush replies on shutdown, in milliseconds.
    public var lingerMilliseconds: Int = 1000
    /// Model used when a request names none; `nil`: the first model.
    public var defaultModel: String? = nil
    /// `host:port` of the HTTP listener for Prometheus `/metrics` and the `/healthz` and `/readyz`
    /// probes (e.g. `127.0.0.1:9464`; port 0 picks a free port; `[::1]:9464` for IPv6); `nil`: off.
    public var metricsAddress: String? = nil

    public init() {}

    enum CodingKeys: String, CodingKey {
        case endpoint
        case telemetryEndpoint = "pub"
        case maxBatch = "max_batch"
        case maxDelayMicroseconds = "max_delay_us"
        case workers
        case queueLimit = "queue_limit"
        case maxMessageBytes = "max_message_bytes"
        case sendHighWaterMark = "send_hwm"
        case lingerMilliseconds = "linger_ms"
        case defaultModel = "default_model"
        case metricsAddress = "metrics_address"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var s = ServerConfiguration()
        s.endpoint = try c.decodeIfPresent(String.self, forKey: .endpoint) ?? s.endpoint
        s.telemetryEndpoint = try c.decodeIfPresent(String.self, forKey: .telemetryEndpoint)
        s.maxBatch = try c.decodeIfPresent(Int.self, forKey: .maxBatch) ?? s.maxBatch
        s.maxDelayMicroseconds = try c.decodeIfPresent(Int.self, forKey: .maxDelayMicroseconds) ?? s.maxDelayMicroseconds
        s.workers = try c.decodeIfPresent(Int.self, forKey: .workers) ?? s.workers
        s.queueLimit = try c.decodeIfPresent(Int.self, forKey: .queueLimit) ?? s.queueLimit
        s.maxMessageBytes = try c.decodeIfPresent(Int.self, forKey: .maxMessageBytes) ?? s.maxMessageBytes
        s.sendHighWaterMark = try c.decodeIfPresent(Int.self, forKey: .sendHighWaterMark) ?? s.sendHighWaterMark
        s.lingerMilliseconds = try c.decodeIfPresent(Int.self, forKey: .lingerMilliseconds) ?? s.lingerMilliseconds
        s.defaultModel = try c.decodeIfPresent(String.self, forKey: .defaultModel)
        s.metricsAddress = try c.decodeIfPresent(String.self, forKey: .metricsAddress)
        self = s
    }

    /// Problems with the settings, in words; empty when valid.
    public var problems: [String] {
        var p: [String] = []
        if maxBatch < 1 { p.append("max_batch must be >= 1 (got \(maxBatch))") }
        if maxDelayMicroseconds < 0 { p.append("max_delay_us must be >= 0 (got \(maxDelayMicroseconds))") }
        if workers < 1 { p.append("workers must be >= 1 (got \(workers))") }
        if queueLimit < 1 { p.append("queue_limit must be >= 1 (got \(queueLimit))") }
        if maxMessageBytes < 64 { p.append("max_message_bytes must be >= 64 (got \(maxMessageBytes))") }
        if sendHighWaterMark < 0 { p.append("send_hwm must be >= 0 (got \(sendHighWaterMark))") }
        if lingerMilliseconds < -1 { p.append("linger_ms must be >= -1 (got \(lingerMilliseconds))") }
        if let metricsAddress, case .failure(let problem) = MetricsAddress.parse(metricsAddress) { p.append(problem.description) }
        return p
    }
}
