import FlowgateZMQ
import FlowgateProtocol
import Foundation
import Logging
import FlowgateCommon
import FlowgateCore

/// One compute thread: takes batches from the `BatchQueue`, runs the model, encodes replies and
/// hands them to the socket thread (through `CompletionQueue` plus a message on an inproc PUSH
/// socket that wakes the socket thread's poll).
///
/// Thread confinement: after `start()`, `modelWorkers` and the PUSH socket are used only on this
/// worker's own thread; the other members are immutable or thread-safe.
final class WorkerThread: @unchecked Sendable {
    private let index: Int
    private let queue: BatchQueue
    private let completions: CompletionQueue
    private let context: ZMQContext
    private let wakeupEndpoint: String
    private let logger: Logger
    /// Per model name: the loaded version the worker state belongs to, and the state. A hot reload
    /// replaces the entry (and frees the old workspaces) the first time the new version computes.
    private var modelWorkers: [String: (generation: ObjectIdentifier, worker: any ModelWorker)] = [:]
    private let finished = DispatchSemaphore(value: 0)
    private let warmup: [LoadedModel]
    /// Per-stream alarm state, shared by the workers.
    private let streams: StreamTable
    /// Whether a batch may be shared with idle workers (`ServerConfiguration.splitBatches`).
    private let split: Bool

    init(
        index: Int, queue: BatchQueue, completions: CompletionQueue, context: ZMQContext,
        wakeupEndpoint: String, logger: Logger, warmup: [LoadedModel] = [], streams: StreamTable, split: Bool = true
    ) {
        self.split = split
        self.warmup = warmup
        self.streams = streams
        self.index = index
        self.queue = queue
        self.completions = completions
        self.context = context
        self.wakeupEndpoint = wakeupEndpoint
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "flowgate-worker-\(index)"
        thread.stackSize = 16 << 20
        thread.start()
    }

    /// Waits until the thread has exited (after the queue was closed and emptied).
    func join() { finished.wait() }

    private func run() {
        defer { finished.signal() }
        let wakeup: ZMQSocket
        do {
            wakeup = try ZMQSocket(context, .push)
            try wakeup.setLinger(milliseconds: 0)
            try wakeup.connect(wakeupEndpoint)
        } catch {
            logger.critical("worker \(index) cannot create its wakeup socket: \(error)")
            return
        }
        defer { wakeup.close() }
        warmUp()
        while let work = queue.nextWork() {
            guard case .batch(let batch) = work else {
                if case .part(let part) = work { computeShare(part) }
                continue
            }
            completions.push(process(batch))
            do {
                try wakeup.send([[]], dontWait: true)
            } catch {
                // A full wakeup pipe means the socket thread has wakeups pending anyway.
                if !error.wouldBlock { logger.error("worker \(index) wakeup failed: \(error)") }
            }
        }
    }

    /// The largest pass any admissible batch needs (`LoadedModel.warmupShapes`) for each model, so
    /// the workspaces have their final size before the first request.
    private func warmUp() {
        for model in warmup {
            let before = FloatBuffer.bytesOnThisThread
            let worker = model.makeWorker()
            do {
                try model.warmUp(worker)
            } catch {
                logger.warning("worker \(index): warm-up of model '\(model.name)' failed: \(error)")
            }
            let mb = Double(FloatBuffer.bytesOnThisThread - before) / 1e6
            logger.info("worker \(index): workspaces of model '\(model.name)' sized at \(String(format: "%.1f", mb)) MB (pass_rows \(model.passRows))")
            modelWorkers[model.name] = (ObjectIdentifier(model), worker)
        }
        // Hand the warm-up's temporaries (the bank decode, result arrays) back to the kernel: glibc
        // keeps freed memory in the thread's arena otherwise, and it would count in RSS for good.
        #if os(Linux)
            _ = glibcMallocTrim(0)
        #endif
    }

    private func errorCompletion(_ r: PendingRequest, _ code: ErrorCode, _ message: String, queueMicroseconds: Int?)
        -> Completion
    {
        Completion(
            envelope: r.envelope, reply: ProtocolError(code, message, id: r.id).encode(), error: code,
            arrival: r.arrival, queueMicroseconds: queueMicroseconds, computeMicroseconds: nil,
            batchSize: nil, observations: 0, telemetry: [])
    }

    /// This worker's compute state for `model` (made on first use, and again after a hot reload).
    private func modelWorker(for model: LoadedModel) -> any ModelWorker {
        if let w = modelWorkers[model.name], w.generation == ObjectIdentifier(model) { return w.worker }
        modelWorkers[model.name] = nil
        let worker = model.makeWorker()
        modelWorkers[model.name] = (ObjectIdentifier(model), worker)
        return worker
    }

    /// Computes a batch, sharing it with a worker idle now when no other request waits
    /// (`BatchQueue.plan`): a batch of enough observations in row shares (the other shares are
    /// offered to idle workers, this worker computes the first, then computes any share nobody
    /// started itself and waits for the rest; rows are merged in order, and each row's result depends
    /// only on its observation, seed and options); a smaller one, when the model can, in halves of
    /// each phase (`computeInHalves`).
    private func compute(
        model: LoadedModel, worker: any ModelWorker, observations: [Float], count: Int, seeds: [UInt64],
        options: ActOptions
    ) throws -> ActResult {
        let splittable = worker as? any SplittableWorker
        let phases = split ? splittable?.splitPhases(count: count, options: options) ?? 0 : 0
        let plan = split ? queue.plan(count: count, canHalve: phases > 0) : .whole
        let ranges: [Range<Int>]
        switch plan {
        case .whole:
            return try worker.act(observations: observations, count: count, seeds: seeds, options: options)
        case .halves:
            return try computeInHalves(
                model: model, worker: splittable!, phases: phases, observations: observations, count: count, seeds: seeds,
                options: options)
        case .rows(let r):
            ranges = r
        }
        let obsDim = model.description.observationDim
        func rows(_ r: Range<Int>) -> [Float] { Array(observations[(r.lowerBound * obsDim)..<(r.upperBound * obsDim)]) }
        let others = ranges.dropFirst().map {
            SplitPart(model: model, observations: rows($0), seeds: Array(seeds[$0]), options: options)
        }
        queue.offer(others)
        let first = ranges[0]
        let mine = Result { try worker.act(observations: rows(first), count: first.count, seeds: Array(seeds[first]), options: options) }
        var results = [mine]
        for part in others {
            if queue.reclaim(part) {
                results.append(Result { try computeRows(part, on: worker) })
            } else {
                results.append(queue.result(of: part))
            }
        }
        var merged = ActResult(actions: [], confidence: [], energy: [], q: [], reliable: [])
        for r in results {
            let part = try r.get()
            merged.actions += part.actions
            merged.confidence += part.confidence
            merged.energy += part.energy
            merged.q += part.q
            merged.reliable += part.reliable
        }
        return merged
    }

    /// The part this worker offers the second halves of its shared computations in (reused).
    private var halfPart: SplitPart?

    /// Computes a few observations with another worker: in every phase, offers half 1 to an idle
    /// worker (unless a request now waits), computes half 0, then takes half 1 back if nobody
    /// started it (so a worker that is slow to wake never stalls the request) or waits for it, and
    /// joins the phase.
    private func computeInHalves(
        model: LoadedModel, worker: any SplittableWorker, phases: Int, observations: [Float], count: Int,
        seeds: [UInt64], options: ActOptions
    ) throws -> ActResult {
        let job = worker.beginSplit(observations: observations, count: count, seeds: seeds, options: options)
        let part = halfPart ?? SplitPart(model: model, job: job)
        halfPart = part
        for phase in 0..<phases where worker.needsPhase(phase, of: job) {
            let offered = queue.offer(half: part, of: job, phase: phase, model: model)
            // Half 0's error is thrown only once half 1 is no longer being written by another worker.
            let mine = Result { try worker.computeHalf(0, phase: phase, of: job) }
            if !offered || queue.reclaim(part) {
                try worker.computeHalf(1, phase: phase, of: job)
            } else {
                _ = try queue.result(of: part).get()
            }
            try mine.get()
            try worker.join(phase: phase, of: job)
        }
        return try worker.finishSplit(job)
    }

    /// Computes a `rows` share on `worker`.
    private func computeRows(_ part: SplitPart, on worker: any ModelWorker) throws -> ActResult {
        guard case .rows(let observations, let seeds, let options) = part.share else { return .none }
        return try worker.act(observations: observations, count: seeds.count, seeds: seeds, options: options)
    }

    /// Computes a share of a batch another worker split, on this worker's own compute state.
    private func computeShare(_ part: SplitPart) {
        let worker = modelWorker(for: part.model)
        let result = Result { () throws -> ActResult in
            switch part.share {
            case .rows: return try computeRows(part, on: worker)
            case .half(let job, let phase):
                guard let splittable = worker as? any SplittableWorker else {
                    throw SplitJobMismatch(type: "\(type(of: worker))")
                }
                try splittable.computeHalf(1, phase: phase, of: job)
                return .none
            }
        }
        queue.finish(part, result)
    }

    /// Computes one batch; returns one completion per request.
    func process(_ batch: Batch) -> [Completion] {
        let start = monotonicNanoseconds()
        var out: [Completion] = []
        var live: [PendingRequest] = []
        for r in batch.requests {
            if let deadline = r.deadline, start > deadline {
                let waited = microseconds(from: r.arrival, to: start)
                let ms = Double(deadline - r.arrival) / 1e6
                out.append(
                    errorCompletion(
                        r, .deadlineExceeded,
                        "deadline_ms \(ms) passed before the request started (waited \(waited) us in the queue)",
                        queueMicroseconds: waited))
            } else {
                live.append(r)
            }
        }
        guard let first = live.first else { return out }
        let model = first.model
        let description = model.description
        let count = live.reduce(0) { $0 + $1.count }
        var observations: [Float] = []
        var seeds: [UInt64] = []
        if live.count == 1 {
            observations = first.act.observations.values
        } else {
            observations.reserveCapacity(count * description.observationDim)
            for r in live { observations.append(contentsOf: r.act.observations.values) }
        }
        seeds.reserveCapacity(count)
        for r in live {
            for i in 0..<r.count { seeds.append(r.seedBase &+ UInt64(i)) }
        }
        let worker = modelWorker(for: model)
        let options = batch.key.options
        let computeStart = monotonicNanoseconds()
        var result: ActResult
        do {
            result = try compute(
                model: model, worker: worker, observations: observations, count: count, seeds: seeds, options: options)
        } catch {
            logger.error("model '\(model.name)' failed on a batch of \(count): \(error)")
            return out
                + live.map {
                    errorCompletion(
                        $0, .internal, "model '\(model.name)' failed: \(error)",
                        queueMicroseconds: microseconds(from: $0.arrival, to: start))
                }
        }
        let computeEnd = monotonicNanoseconds()
        let actDim = description.actionDim
        guard result.actions.count == count * actDim, result.confidence.count == count,
            result.energy.count == count, result.q.count == count, result.reliable.count == count
        else {
            let message = "model '\(model.name)' returned results of the wrong size for \(count) observations"
            logger.error("\(message)")
            return out
                + live.map {
                    errorCompletion($0, .internal, message, queueMicroseconds: microseconds(from: $0.arrival, to: start))
                }
        }
        if !options.check {
            // Unchecked actions are never reported reliable (docs/protocol.md, "check").
            result.energy = Array(repeating: .nan, count: count)
            result.confidence = Array(repeating: 0, count: count)
            result.reliable = Array(repeating: false, count: count)
        }
        let computeMicros = microseconds(from: computeStart, to: computeEnd)
        let now = Date().timeIntervalSince1970
        let risk = model.model.riskModel
        let monotonicSeconds = Double(computeEnd) / 1e9
        var row = 0
        for (n, r) in live.enumerated() {
            let range = row..<(row + r.count)
            let actions = Array(result.actions[(row * actDim)..<((row + r.count) * actDim)])
            let queueMicros = microseconds(from: r.arrival, to: start)
            var telemetry: [TelemetryEvent] = []
            telemetry.reserveCapacity(r.count)
            var risks: [Float]? = nil
            var alarms: [Bool]? = nil
            var streamEvents: [TelemetryEvent] = []
            if let risk {
                var values = [Float](repeating: 0, count: r.count)
                if let stream = r.act.parameters.stream {
                    // A batch on a stream is that stream's next observations, in order.
                    var states = [Bool](repeating: false, count: r.count)
                    for (j, i) in range.enumerated() {
                        let s = streams.step(
                            StreamTable.Key(model: model.name, stream: stream), model: risk, q: result.q[i],
                            energy: result.energy[i], now: monotonicSeconds)
                        values[j] = s.risk
                        states[j] = s.alarm
                        let kind: TelemetryEvent.Kind?
                        let reason: String?
                        switch s.transition {
                        case .none: (kind, reason) = (nil, nil)
                        case .raised(let why): (kind, reason) = (.alarm, why)
                        case .cleared(let why): (kind, reason) = (.clear, why)
                        }
                        if let kind {
                            streamEvents.append(
                                TelemetryEvent(
                                    kind: kind, id: r.id, model: model.name, time: now, reliable: result.reliable[i],
                                    confidence: result.confidence[i], energy: result.energy[i],
                                    threshold: description.threshold, stream: stream, risk: s.risk, reason: reason))
                        }
                    }
                    alarms = states
                } else {
                    for (j, i) in range.enumerated() { values[j] = risk.risk(q: result.q[i], energy: result.energy[i]) }
                }
                risks = values
            }
            let reply = ActReply(
                id: r.id, model: model.name, version: description.version,
                actions: FloatArray(shape: r.act.isBatch ? [r.count, actDim] : [actDim], values: actions),
                confidence: Array(result.confidence[range]), reliable: Array(result.reliable[range]),
                energy: Array(result.energy[range]), q: Array(result.q[range]),
                threshold: description.threshold,
                timing: Timing(queueMicroseconds: queueMicros, computeMicroseconds: computeMicros, batch: count),
                encoding: r.act.encoding, risk: risks, alarm: alarms)
            for (j, i) in range.enumerated() {
                telemetry.append(
                    TelemetryEvent(
                        kind: result.reliable[i] ? .reliable : .unreliable, id: r.id, model: model.name, time: now,
                        reliable: result.reliable[i], confidence: result.confidence[i], energy: result.energy[i],
                        threshold: description.threshold, stream: r.act.parameters.stream, risk: risks?[j]))
            }
            telemetry += streamEvents
            out.append(
                Completion(
                    envelope: r.envelope, reply: reply.encode(), error: nil, arrival: r.arrival,
                    queueMicroseconds: queueMicros, computeMicroseconds: computeMicros,
                    batchSize: n == 0 ? count : nil, observations: r.count, telemetry: telemetry))
            row += r.count
        }
        return out
    }
}

#if os(Linux)
    /// glibc's `malloc_trim` (declared in <malloc.h>, which the Glibc module does not export).
    @_silgen_name("malloc_trim")
    private func glibcMallocTrim(_ pad: Int) -> Int32
#endif
