import FlowgateZMQ
import FlowgateCore
import FlowgateProtocol
import Foundation
import Logging

/// The socket thread: the only code that touches the ROUTER, PUB and wakeup PULL sockets.
///
/// Thread confinement: `init` creates and binds the sockets on the caller's thread; `run()` then
/// uses every member on the socket thread only (the thread start is the happens-before edge). The
/// exceptions are `stopRequested` (guarded by `stopLock`), `context`, `batchQueue` and
/// `completions`, which are thread-safe.
final class SocketLoop: @unchecked Sendable {
    let configuration: ServerConfiguration
    let models: [String: LoadedModel]
    let modelOrder: [String]
    let defaultModel: String
    let logger: Logger
    let context: ZMQContext
    let boundEndpoint: String
    let boundTelemetryEndpoint: String?
    static let wakeupEndpoint = "inproc://flowgate-wakeup"

    private let router: ZMQSocket
    private let pub: ZMQSocket?
    private let wakeup: ZMQSocket
    private let batchQueue: BatchQueue
    private let completions = CompletionQueue()
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
            let loaded = LoadedModel(m, serverMaxBatch: configuration.maxBatch)
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
        self.batchQueue = BatchQueue(
            limit: configuration.queueLimit, maxDelayMicroseconds: configuration.maxDelayMicroseconds)

        context = try ZMQContext()
        let linger = Int32(clamping: configuration.lingerMilliseconds)
        let hwm = Int32(clamping: configuration.sendHighWaterMark)
        router = try ZMQSocket(context, .router)
        try router.setRouterMandatory()
        try router.setLinger(milliseconds: linger)
        try router.setSendHighWaterMark(hwm)
        let cap = Int64(configuration.maxMessageBytes)
        try router.setMaxMessageSize(cap.multipliedReportingOverflow(by: 2).overflow ? -1 : cap * 2 + 65536)
        try router.bind(configuration.endpoint)
        boundEndpoint = try router.lastEndpoint()
        if let endpoint = configuration.telemetryEndpoint {
            let p = try ZMQSocket(context, .pub)
            try p.setLinger(milliseconds: 0)
            try p.setSendHighWaterMark(hwm)
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
    }

    /// Starts the worker threads and the socket thread.
    func start() {
        stopLock.lock()
        let already = started
        started = true
        stopLock.unlock()
        guard !already else { return }
        for i in 0..<configuration.workers {
            let w = WorkerThread(
                index: i, queue: batchQueue, completions: completions, context: context,
                wakeupEndpoint: Self.wakeupEndpoint, logger: logger)
            workers.append(w)
            w.start()
        }
        let thread = Thread { [self] in run() }
        thread.name = "flowgate-socket"
        thread.start()
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
                readable = try ZMQSocket.pollReadable(sockets, timeoutMilliseconds: draining ? 10 : 100)
            } catch {
                logger.critical("\(error); stopping")
                break
            }
            if !draining && readable[0] { receiveRequests() }
            drainWakeups()
            for c in completions.drain() { finish(c) }
            metrics.setQueue(depth: batchQueue.depth, work: 0)
            metrics.setInFlight(inFlight)
            if draining && inFlight == 0 { break }
        }
        batchQueue.close()
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
            let message: (frames: [[UInt8]], sizes: [Int])
            do {
                message = try router.receive(dontWait: true, maxCopyBytes: configuration.maxMessageBytes)
            } catch {
                if !error.wouldBlock { logger.error("\(error)") }
                return
            }
            handle(frames: message.frames, sizes: message.sizes)
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

    private func handle(frames: [[UInt8]], sizes: [Int]) {
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
        let request: Request
        do {
            request = try Request.decode(frames[delimiter + 1])
        } catch {
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
                models: modelOrder.map { models[$0]!.description })
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
        let deadline = p.deadlineMilliseconds.map { arrival &+ UInt64(min($0 * 1e6, 1e18)) }
        let pending = PendingRequest(
            envelope: envelope, id: id, model: model, act: act, options: options,
            seedBase: p.seed ?? UInt64.random(in: .min ... .max), arrival: arrival, deadline: deadline)
        guard batchQueue.enqueue(pending) else {
            send(
                envelope,
                ProtocolError(
                    .overloaded, "request queue is full (\(configuration.queueLimit) requests waiting); retry later",
                    id: id))
            return
        }
        inFlight += 1
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
                try pub.send([Array(event.topic.utf8), MessagePack.encode(event.messagePackValue)], dontWait: true)
            } catch {
                if !error.wouldBlock { logger.warning("telemetry: \(error)") }
            }
        }
    }
}
