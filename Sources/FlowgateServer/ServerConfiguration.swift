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
    /// Keypair file of the server (`flowgate keygen`, mode 0600). With `curveAllow` it turns on
    /// CURVE encryption and authentication on the ROUTER and the PUB socket.
    public var curveSecretKeyFile: String? = nil
    /// Allowlisted client public keys: a directory of `*.pub` files or one file of keys. Reloaded
    /// when it changes (checked about once a second) and by `InferenceServer.reloadAllowlist()`.
    public var curveAllow: String? = nil
    /// Whether `info` includes each model's provenance (dataset, seed, git commit, ...); off by
    /// default so that clients do not learn how a model was made.
    public var exposeProvenance: Bool = false

    public init() {}

    /// True when CURVE is configured.
    public var curveEnabled: Bool { curveSecretKeyFile != nil }

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
        case curveSecretKeyFile = "curve_secret_key"
        case curveAllow = "curve_allow"
        case exposeProvenance = "expose_provenance"
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
        s.curveSecretKeyFile = try c.decodeIfPresent(String.self, forKey: .curveSecretKeyFile)
        s.curveAllow = try c.decodeIfPresent(String.self, forKey: .curveAllow)
        s.exposeProvenance = try c.decodeIfPresent(Bool.self, forKey: .exposeProvenance) ?? s.exposeProvenance
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
        if (curveSecretKeyFile == nil) != (curveAllow == nil) {
            p.append(
                "curve_secret_key and curve_allow go together (a CURVE server without an allowlist would admit any client that knows its public key)")
        }
        return p
    }
}
