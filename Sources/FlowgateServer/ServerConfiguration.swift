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
    /// How long a free worker may wait for more requests before it starts a batch, counted from the
    /// batch's first request, in microseconds. 0 (the default): a free worker starts at once, and
    /// batches form from the requests that arrive while every worker is busy, so no core idles.
    public var maxDelayMicroseconds: Int = 0
    /// Worker threads running forward passes.
    public var workers: Int = ProcessInfo.processInfo.activeProcessorCount
    /// Most `act` requests waiting for a worker; beyond it requests get `overloaded` at once.
    public var queueLimit: Int = 1024
    /// Most streams (requests' `stream` key) whose alarm state is kept; a new stream at a full
    /// table evicts the least recently used one.
    public var maxStreams: Int = 4096
    /// A stream's state is forgotten this many seconds after its last observation.
    public var streamTTLSeconds: Double = 300
    /// Largest request frame in bytes; larger frames get `too_large`. Peers sending more than twice
    /// this (plus 64 KiB) in one message are disconnected by ZeroMQ (`ZMQ_MAXMSGSIZE`).
    public var maxMessageBytes: Int = 16 << 20
    /// ZeroMQ send high-water mark per peer (ROUTER and PUB); replies beyond it are dropped and counted.
    public var sendHighWaterMark: Int = 1000
    /// ZeroMQ receive high-water mark per peer, in messages: a peer that sends faster than the server
    /// reads is held back by TCP instead of filling memory (100 × 16 MiB at most per peer).
    public var receiveHighWaterMark: Int = 100
    /// Work budget of one request in GFLOP (observations × the model's FLOPs per observation at the
    /// request's steps, candidates and samples); larger requests get `too_large` naming it. The
    /// default admits a full batch of 64 at the shipped models' defaults (about 10 GFLOP for
    /// hopper-medium) and holds a worker for well under a second.
    public var maxRequestGflop: Double = 16
    /// Work budget of the whole queue in GFLOP; beyond it requests get `overloaded`. Also bounds how
    /// long a drain on shutdown can take.
    public var maxQueuedGflop: Double = 64
    /// Frames larger than this many bytes are decoded on the decode thread, not the socket thread, so
    /// a large body never delays small requests (health checks) behind it.
    public var inlineDecodeBytes: Int = 64 << 10
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
    /// `host:port` of the HTTP listener for Prometheus `/metrics` and the `/healthz` and `/readyz`
    /// probes (e.g. `127.0.0.1:9464`; port 0 picks a free port; `[::1]:9464` for IPv6); `nil`: off.
    public var metricsAddress: String? = nil
    /// Most rows one forward pass of a worker holds: a batch is computed in passes of whole
    /// observations of at most this many candidate rows (observations × candidates), and the energy
    /// check scores at most this many proposal rows at once. It bounds each worker's workspaces
    /// (about 30 KB per row beyond a floor of about 6 MB for hopper-medium) without changing any
    /// result; products of 256 rows already run at the kernel's full speed.
    public var passRows: Int = 256
    /// When a worker takes a batch of 8 or more observations while another worker is idle and no
    /// other request waits, it hands the idle worker a share of the rows (`BatchPolicy.shares`); a
    /// smaller batch, one observation included, it computes with the idle worker in halves of its
    /// candidates and then of its check's proposals (`BatchPolicy.plan`, `SplittableWorker`). So
    /// both cores compute one request; under load every batch stays on one core. Results are the
    /// same either way (up to float32 rounding).
    public var splitBatches: Bool = true
    /// Each worker computes, before taking requests, the largest pass any admissible batch needs
    /// (`max_batch`, the model's candidate and sample limits, `pass_rows`), so its workspaces reach
    /// their final size at start and traffic never grows them (RSS flat from the first request).
    public var warmup: Bool = true
    /// Connect the ROUTER to `endpoint` instead of binding it: a replica behind `flowgate broker`,
    /// whose `endpoint` is the broker's backend (e.g. `tcp://127.0.0.1:5556`). libzmq reconnects by
    /// itself when the broker restarts; heartbeats drop a broker that stops answering.
    public var connect: Bool = false

    public init() {}

    /// True when CURVE is configured.
    public var curveEnabled: Bool { curveSecretKeyFile != nil }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case endpoint
        case telemetryEndpoint = "pub"
        case maxBatch = "max_batch"
        case maxDelayMicroseconds = "max_delay_us"
        case workers
        case queueLimit = "queue_limit"
        case maxStreams = "max_streams"
        case streamTTLSeconds = "stream_ttl_s"
        case maxMessageBytes = "max_message_bytes"
        case sendHighWaterMark = "send_hwm"
        case receiveHighWaterMark = "recv_hwm"
        case maxRequestGflop = "max_request_gflop"
        case maxQueuedGflop = "max_queued_gflop"
        case inlineDecodeBytes = "inline_decode_bytes"
        case lingerMilliseconds = "linger_ms"
        case defaultModel = "default_model"
        case curveSecretKeyFile = "curve_secret_key"
        case curveAllow = "curve_allow"
        case exposeProvenance = "expose_provenance"
        case metricsAddress = "metrics_address"
        case passRows = "pass_rows"
        case splitBatches = "split_batches"
        case warmup
        case connect
    }

    public init(from decoder: any Decoder) throws {
        // Unknown keys are an error, as in the training config: a misspelt key must not be ignored.
        let all = try decoder.container(keyedBy: AnyCodingKey.self)
        let unknown = all.allKeys.map(\.stringValue).filter { CodingKeys(stringValue: $0) == nil }.sorted()
        if !unknown.isEmpty {
            let known = CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: [],
                    debugDescription: "unknown server config key\(unknown.count == 1 ? "" : "s") \(unknown.map { "'\($0)'" }.joined(separator: ", ")) (known: \(known))"))
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var s = ServerConfiguration()
        s.endpoint = try c.decodeIfPresent(String.self, forKey: .endpoint) ?? s.endpoint
        s.telemetryEndpoint = try c.decodeIfPresent(String.self, forKey: .telemetryEndpoint)
        s.maxBatch = try c.decodeIfPresent(Int.self, forKey: .maxBatch) ?? s.maxBatch
        s.maxDelayMicroseconds = try c.decodeIfPresent(Int.self, forKey: .maxDelayMicroseconds) ?? s.maxDelayMicroseconds
        s.workers = try c.decodeIfPresent(Int.self, forKey: .workers) ?? s.workers
        s.queueLimit = try c.decodeIfPresent(Int.self, forKey: .queueLimit) ?? s.queueLimit
        s.maxStreams = try c.decodeIfPresent(Int.self, forKey: .maxStreams) ?? s.maxStreams
        s.streamTTLSeconds = try c.decodeIfPresent(Double.self, forKey: .streamTTLSeconds) ?? s.streamTTLSeconds
        s.maxMessageBytes = try c.decodeIfPresent(Int.self, forKey: .maxMessageBytes) ?? s.maxMessageBytes
        s.sendHighWaterMark = try c.decodeIfPresent(Int.self, forKey: .sendHighWaterMark) ?? s.sendHighWaterMark
        s.receiveHighWaterMark = try c.decodeIfPresent(Int.self, forKey: .receiveHighWaterMark) ?? s.receiveHighWaterMark
        s.maxRequestGflop = try c.decodeIfPresent(Double.self, forKey: .maxRequestGflop) ?? s.maxRequestGflop
        s.maxQueuedGflop = try c.decodeIfPresent(Double.self, forKey: .maxQueuedGflop) ?? s.maxQueuedGflop
        s.inlineDecodeBytes = try c.decodeIfPresent(Int.self, forKey: .inlineDecodeBytes) ?? s.inlineDecodeBytes
        s.lingerMilliseconds = try c.decodeIfPresent(Int.self, forKey: .lingerMilliseconds) ?? s.lingerMilliseconds
        s.defaultModel = try c.decodeIfPresent(String.self, forKey: .defaultModel)
        s.curveSecretKeyFile = try c.decodeIfPresent(String.self, forKey: .curveSecretKeyFile)
        s.curveAllow = try c.decodeIfPresent(String.self, forKey: .curveAllow)
        s.exposeProvenance = try c.decodeIfPresent(Bool.self, forKey: .exposeProvenance) ?? s.exposeProvenance
        s.metricsAddress = try c.decodeIfPresent(String.self, forKey: .metricsAddress)
        s.passRows = try c.decodeIfPresent(Int.self, forKey: .passRows) ?? s.passRows
        s.splitBatches = try c.decodeIfPresent(Bool.self, forKey: .splitBatches) ?? s.splitBatches
        s.warmup = try c.decodeIfPresent(Bool.self, forKey: .warmup) ?? s.warmup
        s.connect = try c.decodeIfPresent(Bool.self, forKey: .connect) ?? s.connect
        self = s
    }

    /// Problems with the settings, in words; empty when valid.
    public var problems: [String] {
        var p: [String] = []
        if maxBatch < 1 { p.append("max_batch must be >= 1 (got \(maxBatch))") }
        if maxDelayMicroseconds < 0 { p.append("max_delay_us must be >= 0 (got \(maxDelayMicroseconds))") }
        if passRows < 1 { p.append("pass_rows must be >= 1 (got \(passRows))") }
        if workers < 1 { p.append("workers must be >= 1 (got \(workers))") }
        if queueLimit < 1 { p.append("queue_limit must be >= 1 (got \(queueLimit))") }
        if maxStreams < 1 || maxStreams > 1 << 20 { p.append("max_streams must be in 1...1048576 (got \(maxStreams))") }
        if !(streamTTLSeconds > 0 && streamTTLSeconds <= 86400) { p.append("stream_ttl_s must be in (0, 86400] (got \(streamTTLSeconds))") }
        if maxMessageBytes < 64 { p.append("max_message_bytes must be >= 64 (got \(maxMessageBytes))") }
        if sendHighWaterMark < 0 { p.append("send_hwm must be >= 0 (got \(sendHighWaterMark))") }
        if receiveHighWaterMark < 0 { p.append("recv_hwm must be >= 0 (got \(receiveHighWaterMark))") }
        if !(maxRequestGflop > 0) { p.append("max_request_gflop must be > 0 (got \(maxRequestGflop))") }
        if !(maxQueuedGflop > 0) { p.append("max_queued_gflop must be > 0 (got \(maxQueuedGflop))") }
        if inlineDecodeBytes < 0 { p.append("inline_decode_bytes must be >= 0 (got \(inlineDecodeBytes))") }
        if lingerMilliseconds < -1 { p.append("linger_ms must be >= -1 (got \(lingerMilliseconds))") }
        if (curveSecretKeyFile == nil) != (curveAllow == nil) {
            p.append(
                "curve_secret_key and curve_allow go together (a CURVE server without an allowlist would admit any client that knows its public key)")
        }
        if let metricsAddress, case .failure(let problem) = MetricsAddress.parse(metricsAddress) { p.append(problem.description) }
        if connect && (endpoint.hasSuffix(":*") || endpoint.contains("://*")) {
            p.append("endpoint '\(endpoint)' has a wildcard, but with connect it must name the broker's backend (e.g. tcp://127.0.0.1:5556)")
        }
        return p
    }
}

/// Any key of a JSON object, to list the keys a configuration file holds.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
