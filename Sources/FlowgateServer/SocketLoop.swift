import FlowgateZMQ
import FlowgateCore
import FlowgateProtocol
import Foundation
import Logging
import FlowgateCommon

/// The socket thread: the only code that touches the ROUTER, PUB and wakeup PULL sockets.
///
/// Thread confinement: `init` creates and binds the sockets on the caller's thread; `run()` then
/// uses every member on the socket thread only (the thread start is the happens-before edge). The
/// exceptions are `stopRequested` (guarded by `stopLock`), `context`, `batchQueue` and
/// `completions`, which are thread-safe.
final class SocketLoop: @unchecked Sendable {
    let configuration: ServerConfiguration
    /// Loaded models by name; replaced on the socket thread by hot reloads (`replaceModel`).
    private var models: [String: LoadedModel]
    let modelOrder: [String]
    /// Models handed in by `replaceModel`, applied by the socket thread. Guarded by `stopLock`.
    private var pendingReplacements: [any ServableModel] = []
    let defaultModel: String
    let logger: Logger
    let context: ZMQContext
    let boundEndpoint: String
    let boundTelemetryEndpoint: String?
    static let wakeupEndpoint = "inproc://flowgate-wakeup"
    /// The ZAP handler deciding CURVE handshakes; nil when CURVE is off.
    let zap: ZAPHandler?

    private let router: ZMQSocket
    private let pub: ZMQSocket?
    private let wakeup: ZMQSocket
    private let batchQueue: BatchQueue
    private let completions = CompletionQueue()
    /// Per-stream alarm state (requests with `stream`), bounded by `max_streams` and `stream_ttl_s`.
    let streams: StreamTable
    /// Decodes frames larger than `inlineDecodeBytes` off the socket thread.
    private let decoder: DecodeThread
    /// Largest `max_batch` and `obs_dim` of the loaded models: what `obs` may hold at most before
    /// the per-model checks.
    private var observationLimits: ObservationLimits
    private var workers: [WorkerThread] = []
    private var stats = ServerStats()
    /// Prometheus metrics and readiness; thread-safe (served by the metrics HTTP listener).
    let metrics = ServerMetrics()
    /// Operation of the request being answered, for the metrics' `op` label (nil: not decoded).
    private var currentOp: FlowgateProtocol.Operation?
    private var inFlight = 0
    private var draining = false
    private let startTime = monotonicNanoseconds()
    private let stopLock = NSLock()
    private var stopRequested = false
    private var started = false
    private let finished = DispatchSemaphore(value: 0)

    init(models: [any ServableModel], configuration: ServerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        var byName: [String: LoadedModel] = [:]
        var order: [String] = []
        for m in models {
            let loaded = LoadedModel(m, serverMaxBatch: configuration.maxBatch, passRows: configuration.passRows)
            guard byName[loaded.name] == nil else { throw ServerError.duplicateModel(loaded.name) }
            byName[loaded.name] = loaded
            order.append(loaded.name)
        }
        guard let first = order.first else { throw ServerError.noModels }
        let defaultName = configuration.defaultModel ?? first
        guard byName[defaultName] != nil else { throw ServerError.unknownDefaultModel(defaultName, loaded: order) }
        self.models = byName
        self.modelOrder = order
        self.defaultModel = defaultName
        self.streams = StreamTable(capacity: configuration.maxStreams, ttlSeconds: configuration.streamTTLSeconds)
        self.batchQueue = BatchQueue(
            limit: configuration.queueLimit, workLimit: configuration.maxQueuedGflop * 1e9,
            batchWorkLimit: configuration.maxRequestGflop * 1e9,
            maxDelayMicroseconds: configuration.maxDelayMicroseconds)
        observationLimits = Self.limits(of: byName)

        context = try ZMQContext()
        // The ZAP handler binds before any CURVE socket, so no handshake happens without it.
        if let secret = configuration.curveSecretKeyFile, let allow = configuration.curveAllow {
            zap = try ZAPHandler(secretKeyFile: secret, allowlistPath: allow, context: context, logger: logger)
        } else {
            zap = nil
        }
        let linger = Int32(clamping: configuration.lingerMilliseconds)
        let hwm = Int32(clamping: configuration.sendHighWaterMark)
        router = try ZMQSocket(context, .router)
        try router.setRouterMandatory()
        try router.setLinger(milliseconds: linger)
        try router.setSendHighWaterMark(hwm)
        try router.setReceiveHighWaterMark(Int32(clamping: configuration.receiveHighWaterMark))
        let cap = Int64(configuration.maxMessageBytes)
        try router.setMaxMessageSize(cap.multipliedReportingOverflow(by: 2).overflow ? -1 : cap * 2 + 65536)
        try zap?.secure(router, name: "router")
        if configuration.connect {
            // A replica behind `flowgate broker`: one peer (the broker's DEALER) carries every client.
            try router.setHeartbeat(intervalMilliseconds: 1000, timeoutMilliseconds: 3000)
            try router.connect(configuration.endpoint)
            logger.info("connecting to the broker backend \(configuration.endpoint)")
        } else {
            try router.bind(configuration.endpoint)
        }
        boundEndpoint = try router.lastEndpoint()
        if let endpoint = configuration.telemetryEndpoint {
            let p = try ZMQSocket(context, .pub)
            try p.setLinger(milliseconds: 0)
            try p.setSendHighWaterMark(hwm)
            try zap?.secure(p, name: "pub")
            try p.bind(endpoint)
            boundTelemetryEndpoint = try p.lastEndpoint()
            pub = p
        } else {
            pub = nil
            boundTelemetryEndpoint = nil
        }
        wakeup = try ZMQSocket(context, .pull)
        try wakeup.setLinger(milliseconds: 0)
        try wakeup.bind(Self.wakeupEndpoint)
        decoder = DecodeThread(
            context: context, wakeupEndpoint: Self.wakeupEndpoint,
            maxPendingBytes: max(4 * configuration.maxMessageBytes, 64 << 20), logger: logger)
        stats.access = zap?.counters
        zap?.start()
        // A connected endpoint (a replica behind a broker) is not one others can connect to.
        warnAboutExposedEndpoints(
            (configuration.connect ? [] : [configuration.endpoint]) + (configuration.telemetryEndpoint.map { [$0] } ?? []),
            curve: zap != nil,
            logger: logger)
    }

    /// Starts the worker threads and the socket thread.
    func start() {
        stopLock.lock()
        let already = started
        started = true
        stopLock.unlock()
        guard !already else { return }
        decoder.start()
        for i in 0..<configuration.workers {
            let w = WorkerThread(
                index: i, queue: batchQueue, completions: completions, context: context,
                wakeupEndpoint: Self.wakeupEndpoint, logger: logger,
                warmup: configuration.warmup ? modelOrder.map { models[$0]! } : [], streams: streams,
                split: configuration.splitBatches)
            workers.append(w)
            w.start()
        }
        let thread = Thread { [self] in run() }
        thread.name = "flowgate-socket"
        thread.start()
    }

    private static func limits(of models: [String: LoadedModel]) -> ObservationLimits {
        ObservationLimits(
            maxObservations: models.values.map { $0.description.limits.maxBatch }.max() ?? 1,
            maxObservationDim: models.values.map { $0.description.observationDim }.max() ?? 1)
    }

    /// Hands a new version of a loaded model to the socket thread, which swaps it in between two
    /// requests: requests admitted before keep computing on the old version, later ones use the new
    /// one. Safe from any thread; returns at once.
    func replaceModel(_ model: any ServableModel) throws(ServerError) {
        guard modelOrder.contains(model.modelDescription.name) else {
            throw ServerError.unknownModel(model.modelDescription.name, loaded: modelOrder)
        }
        stopLock.lock()
        pendingReplacements.append(model)
        stopLock.unlock()
        poke()
    }

    /// Swaps in pending replacements (socket thread).
    private func applyReplacements() {
        stopLock.lock()
        let replacements = pendingReplacements
        pendingReplacements.removeAll()
        stopLock.unlock()
        for model in replacements {
            let loaded = LoadedModel(model, serverMaxBatch: configuration.maxBatch, passRows: configuration.passRows)
            let old = models[loaded.name]
            models[loaded.name] = loaded
            observationLimits = Self.limits(of: models)
            logger.notice(
                "reloaded model \(loaded.name): version \(old?.description.version ?? "-") → \(loaded.description.version)",
                metadata: ["obs_dim": "\(loaded.description.observationDim)", "act_dim": "\(loaded.description.actionDim)"])
        }
    }

    /// Wakes the socket thread's poll.
    private func poke() {
        if let poke = try? ZMQSocket(context, .push) {
            try? poke.setLinger(milliseconds: 1000)
            try? poke.connect(Self.wakeupEndpoint)
            try? poke.send([[]], dontWait: true)
            poke.close()
        }
    }

    /// Asks the socket thread to drain and stop; returns at once. Safe from any thread.
    func requestStop() {
        stopLock.lock()
        stopRequested = true
        stopLock.unlock()
        if let poke = try? ZMQSocket(context, .push) {
            try? poke.setLinger(milliseconds: 1000)
            try? poke.connect(Self.wakeupEndpoint)
            try? poke.send([[]], dontWait: true)
            poke.close()
        }
    }

    /// Blocks until the socket thread has drained and closed everything.
    func wait() {
        stopLock.lock()
        let running = started
        stopLock.unlock()
        guard running else { return }
        finished.wait()
        finished.signal()  // let later callers through too
    }

    private var shouldStop: Bool {
        stopLock.lock()
        defer { stopLock.unlock() }
        return stopRequested
    }

    // MARK: - Socket thread

    private func run() {
        logger.info(
            "serving \(modelOrder.joined(separator: ", ")) on \(boundEndpoint)",
            metadata: ["telemetry": "\(boundTelemetryEndpoint ?? "off")", "workers": "\(configuration.workers)"])
        metrics.setReady(true)
        while true {
            if !draining && shouldStop {
                draining = true
                metrics.setReady(false)
                batchQueue.close()
                logger.info("draining \(inFlight) requests")
            }
            let sockets = draining ? [wakeup] : [router, wakeup]
            let readable: [Bool]
            do {
                readable = try ZMQSocket.pollReadable(sockets, timeoutMilliseconds: pollTimeoutMilliseconds())
            } catch {
                logger.critical("\(error); stopping")
                break
            }
            if !draining && readable[0] { receiveRequests() }
            drainWakeups()
            applyReplacements()
            for d in decoder.drain() { decoded(d) }
            for c in completions.drain() { finish(c) }
            expireDeadlines()
            metrics.setQueue(depth: batchQueue.depth, work: batchQueue.work)
            metrics.setInFlight(inFlight)
            metrics.syncRefusedKeys(total: zap?.counters.snapshot.refused ?? 0)
            if draining && inFlight == 0 && decoder.pending == 0 { break }
        }
        batchQueue.close()
        decoder.stop()
        for w in workers { w.join() }
        for c in completions.drain() { finish(c) }
        router.close()
        pub?.close()
        wakeup.close()
        logger.info("stopped")
        finished.signal()
    }

    private func drainWakeups() {
        while true {
            do {
                _ = try wakeup.receive(dontWait: true)
            } catch {
                return
            }
        }
    }

    /// Reads up to a bounded number of waiting messages so completions are not starved.
    private func receiveRequests() {
        for _ in 0..<256 {
            let message: (frames: [[UInt8]], sizes: [Int], last: ZMQMessage?)
            do {
                // Bodies above inline_decode_bytes stay in libzmq's message (no copy) and go to the
                // decode thread.
                message = try router.receive(
                    dontWait: true, maxCopyBytes: configuration.maxMessageBytes,
                    keepLastFrameAbove: configuration.inlineDecodeBytes)
            } catch {
                if !error.wouldBlock { logger.error("\(error)") }
                return
            }
            handle(frames: message.frames, sizes: message.sizes, large: message.last)
        }
    }

    private func send(_ envelope: [[UInt8]], _ body: [UInt8], error: ErrorCode?) {
        stats.replied(error)
        metrics.replied(op: currentOp, error: error)
        do {
            try router.send(envelope + [body], dontWait: true)
        } catch {
            stats.dropped()
            metrics.droppedReply()
            if error.isUnroutable || error.wouldBlock {
                logger.debug("dropped a reply to a vanished or slow client: \(error)")
            } else {
                logger.error("sending a reply: \(error)")
            }
        }
    }

    private func send(_ envelope: [[UInt8]], _ error: ProtocolError) {
        logger.debug("\(error)", metadata: ["id": "\(error.id.map(String.init(describing:)) ?? "-")"])
        send(envelope, error.encode(), error: error.code)
    }

    private func handle(frames: [[UInt8]], sizes: [Int], large: ZMQMessage?) {
        guard !frames.isEmpty else { return }
        currentOp = nil
        guard let delimiter = sizes.indices.dropFirst().first(where: { sizes[$0] == 0 }) else {
            send([frames[0]], ProtocolError(.badRequest, "missing the empty delimiter frame before the body"))
            return
        }
        let envelope = Array(frames[...delimiter])
        let bodyCount = frames.count - delimiter - 1
        guard bodyCount == 1 else {
            send(
                envelope,
                ProtocolError(
                    .badRequest,
                    bodyCount == 0
                        ? "no body frame after the empty delimiter"
                        : "expected one body frame after the delimiter, got \(bodyCount)"))
            return
        }
        let size = sizes[delimiter + 1]
        guard size <= configuration.maxMessageBytes else {
            send(
                envelope,
                ProtocolError(
                    .tooLarge, "message of \(size) bytes exceeds the limit of \(configuration.maxMessageBytes) bytes"))
            return
        }
        if let large {
            // Large bodies are decoded on the decode thread; the reply comes back through `decoded`.
            if !decoder.submit(envelope: envelope, body: large, limits: observationLimits) {
                send(
                    envelope,
                    ProtocolError(
                        .overloaded,
                        "\(decoder.pendingBytes) bytes of large requests are waiting to be decoded; retry later"))
            }
            return
        }
        let body = frames[delimiter + 1]
        dispatch(Result { () throws(ProtocolError) in try Request.decode(body, limits: observationLimits) }, envelope: envelope)
    }

    private func decoded(_ d: DecodedFrame) {
        dispatch(d.result, envelope: d.envelope)
    }

    /// Answers or queues one decoded request (socket thread).
    private func dispatch(_ result: Result<Request, ProtocolError>, envelope: [[UInt8]]) {
        currentOp = nil  // until decoded: also for frames that come back from the decode thread
        let request: Request
        switch result {
        case .success(let r): request = r
        case .failure(let error):
            send(envelope, error)
            return
        }
        stats.received(request.op)
        currentOp = request.op
        switch request.op {
        case .act:
            handleAct(request, envelope: envelope)
        case .info:
            let info = InfoReply(
                id: request.id, serverVersion: flowgateVersion, defaultModel: defaultModel,
                models: modelOrder.map { models[$0]!.description.exposingProvenance(configuration.exposeProvenance) })
            send(envelope, MessagePack.encode(info.messagePackValue), error: nil)
        case .health:
            let health = HealthReply(id: request.id, ready: !draining, uptimeSeconds: uptime)
            send(envelope, MessagePack.encode(health.messagePackValue), error: nil)
        case .stats:
            let reply = stats.reply(
                id: request.id, uptimeSeconds: uptime, queueDepth: batchQueue.depth, inFlight: inFlight)
            send(envelope, MessagePack.encode(reply), error: nil)
        }
    }

    private var uptime: Double { Double(monotonicNanoseconds() - startTime) / 1e9 }

    private func handleAct(_ request: Request, envelope: [[UInt8]]) {
        let arrival = monotonicNanoseconds()
        guard let act = request.act else { return }
        let id = request.id
        let name = request.model ?? defaultModel
        guard let model = models[name] else {
            send(
                envelope,
                ProtocolError(
                    .unknownModel, "unknown model '\(name)' (loaded: \(modelOrder.joined(separator: ", ")))", id: id))
            return
        }
        let d = model.description
        guard act.observationDim == d.observationDim else {
            send(
                envelope,
                ProtocolError(
                    .shapeMismatch,
                    "obs has \(act.observationDim) values per observation (shape \(act.observations.shape)), model '\(name)' expects obs_dim \(d.observationDim)",
                    id: id))
            return
        }
        guard act.count <= d.limits.maxBatch else {
            send(
                envelope,
                ProtocolError(
                    .tooLarge, "batch of \(act.count) observations exceeds max_batch \(d.limits.maxBatch) of model '\(name)'",
                    id: id))
            return
        }
        let p = act.parameters
        let steps = p.steps ?? d.defaults.steps
        let candidates = p.candidates ?? d.defaults.candidates
        let samples = p.samples ?? d.defaults.samples
        for (key, value, limit) in [
            ("steps", steps, d.limits.maxSteps), ("candidates", candidates, d.limits.maxCandidates),
            ("samples", samples, d.limits.maxSamples),
        ] where value > limit {
            send(
                envelope,
                ProtocolError(.tooLarge, "\(key) \(value) exceeds max_\(key) \(limit) of model '\(name)'", id: id))
            return
        }
        let options = ActOptions(steps: steps, candidates: candidates, samples: samples, check: p.check ?? true)
        let perObservation = model.model.flopsPerObservation(options)
        let work = perObservation * Double(act.count)
        let budget = configuration.maxRequestGflop * 1e9
        guard work <= budget else {
            send(
                envelope,
                ProtocolError(
                    .tooLarge,
                    "request needs \(gflop(work)) GFLOP (\(act.count) observation\(act.count == 1 ? "" : "s") × \(gflop(perObservation)) GFLOP at steps \(steps), candidates \(candidates), samples \(options.check ? samples : 0)), over the per-request work budget of \(gflop(budget)) GFLOP (max_request_gflop); lower steps, candidates, samples or the batch",
                    id: id))
            return
        }
        let deadline = p.deadlineMilliseconds.map { arrival &+ UInt64(min($0 * 1e6, 1e18)) }
        if let deadline, deadline <= monotonicNanoseconds() {
            send(
                envelope,
                ProtocolError(
                    .deadlineExceeded, "deadline_ms \(p.deadlineMilliseconds!) passed before the request could be queued",
                    id: id))
            return
        }
        var pending = PendingRequest(
            envelope: envelope, id: id, model: model, act: act, options: options,
            seedBase: p.seed ?? UInt64.random(in: .min ... .max), arrival: arrival, deadline: deadline)
        pending.work = work
        if let refusal = batchQueue.enqueue(pending) {
            let message: String
            switch refusal {
            case .full(let limit): message = "request queue is full (\(limit) requests waiting); retry later"
            case .workFull(let queued, let limit):
                message = "request queue holds \(gflop(queued)) GFLOP of work and this request adds \(gflop(work)), over the queue budget of \(gflop(limit)) GFLOP (max_queued_gflop); retry later"
            case .closed: message = "server is shutting down; retry on another replica"
            }
            send(envelope, ProtocolError(.overloaded, message, id: id))
            return
        }
        if let deadline { nextDeadline = min(nextDeadline ?? deadline, deadline) }
        inFlight += 1
    }

    private func gflop(_ flops: Double) -> String {
        let g = flops / 1e9
        return g >= 10 ? String(format: "%.1f", g) : String(format: "%.3g", g)
    }

    /// Poll timeout: at most 100 ms (10 ms while draining), less when a queued deadline comes first.
    private func pollTimeoutMilliseconds() -> Int {
        let base = draining ? 10 : 100
        guard let next = nextDeadline else { return base }
        let now = monotonicNanoseconds()
        guard next > now else { return 0 }
        return min(base, Int((next - now + 999_999) / 1_000_000))
    }

    private var nextDeadline: UInt64?

    /// Answers queued requests whose deadline has passed, at once (socket thread).
    private func expireDeadlines() {
        let now = monotonicNanoseconds()
        guard let due = nextDeadline, now >= due else { return }
        let (expired, next) = batchQueue.expire(now: now)
        nextDeadline = next
        currentOp = .act
        for r in expired {
            inFlight -= 1
            let waited = microseconds(from: r.arrival, to: now)
            let ms = Double(r.deadline! - r.arrival) / 1e6
            send(
                r.envelope,
                ProtocolError(
                    .deadlineExceeded,
                    "deadline_ms \(ms) passed while the request waited in the queue (\(waited) us)", id: r.id))
        }
    }

    private func finish(_ c: Completion) {
        inFlight -= 1
        let now = monotonicNanoseconds()
        stats.completed(c, now: now)
        metrics.completed(c, now: now)
        currentOp = .act
        send(c.envelope, c.reply, error: c.error)
        guard let pub else { return }
        for event in c.telemetry {
            do {
                try pub.send(event.frames, dontWait: true)
            } catch {
                if !error.wouldBlock { logger.warning("telemetry: \(error)") }
            }
        }
    }
}
