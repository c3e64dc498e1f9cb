import FlowgateCommon
import FlowgateZMQ
import FlowgateProtocol
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What one open-loop load test does: its target, and the arrival schedule it offers.
public struct OpenLoopConfiguration: LoadTargeting, Sendable {
    public var target: LoadTarget
    /// Target arrival rate, requests per second (Poisson).
    public var rate: Double
    /// Offer requests for this many seconds…
    public var durationSeconds: Double
    /// …or until this many have been offered, whichever comes first.
    public var maxRequests: Int
    /// DEALER connections the requests are spread over, round robin (each may have any number of
    /// requests in flight).
    public var connections: Int = 4
    /// Untimed request-reply pairs on each connection before the schedule starts.
    public var warmupRequests: Int = 3

    public init(target: LoadTarget, rate: Double, durationSeconds: Double, maxRequests: Int) {
        self.target = target
        self.rate = rate
        self.durationSeconds = durationSeconds
        self.maxRequests = maxRequests
    }
}

/// The measurements of one open-loop load test.
public struct OpenLoopResult: Sendable {
    public var targetRate: Double
    /// Requests in the schedule (all of them are sent).
    public var offered: Int
    /// Successful replies.
    public var completed: Int
    /// Failed requests by code: the server's error codes, `timeout` (no reply within the timeout of
    /// the intended send time), `send_failed`, `malformed_reply`.
    public var errors: [String: Int]
    /// Replies that came after their request was already counted as a timeout (not in `completed`).
    public var lateReplies: Int
    /// From the first intended send until the last reply or timeout.
    public var wallSeconds: Double
    /// Seconds the schedule spans (first to last intended send).
    public var scheduleSeconds: Double
    /// Latency from the intended send time to the reply (what a caller on that schedule waits).
    public var latency: LatencyHistogram
    /// From the actual send to the reply (differs from `latency` when the sender fell behind).
    public var serviceTime: LatencyHistogram
    /// How far behind its schedule the sender ever was, in microseconds.
    public var maxSendLagMicroseconds: Double
    public var meanQueueMicroseconds: Double
    public var meanComputeMicroseconds: Double
    public var meanBatch: Double

    public var errorCount: Int { errors.values.reduce(0, +) }
    /// Successful replies per second of wall time.
    public var throughput: Double { wallSeconds > 0 ? Double(completed) / wallSeconds : 0 }
    /// Requests offered per second of the schedule.
    public var offeredRate: Double { scheduleSeconds > 0 ? Double(offered) / scheduleSeconds : 0 }
}

/// Drives a server with Poisson arrivals at a fixed rate, whatever its replies do (open loop).
///
/// Two threads: a timer thread that wakes at each intended send time and hands the request's index
/// to the I/O thread over an `inproc` PUSH/PULL pair with no high-water mark (it never waits for
/// anything the server does), and the I/O thread, which sends each request as soon as its index
/// arrives and takes replies from every connection as they come (one `zmq_poll` over both). Every
/// latency is measured from the intended send time, so a slow server or a late sender shows up in
/// the percentiles instead of lowering the offered load (no coordinated omission).
public enum OpenLoopTester {
    public static func run(_ config: OpenLoopConfiguration) throws -> OpenLoopResult {
        guard config.rate > 0, config.rate.isFinite else {
            throw FlowgateClientError.transport("open loop: rate must be positive, got \(config.rate)")
        }
        let schedule = PoissonSchedule.offsets(
            rate: config.rate, count: max(config.maxRequests, 0), durationSeconds: config.durationSeconds, seed: config.seed)
        do {
            return try drive(config, schedule: schedule)
        } catch {
            // A plain catch (pattern catches of typed errors have crashed Swift 6.3.1).
            if let e = error as? ZMQError { throw FlowgateClientError.transport(e.description) }
            throw error
        }
    }

    private static func drive(_ config: OpenLoopConfiguration, schedule: [UInt64]) throws -> OpenLoopResult {
        let context = try config.sharedContext.map { ZMQContext(borrowing: $0.handle) } ?? ZMQContext()
        let connections = max(config.connections, 1)
        var dealers: [ZMQSocket] = []
        for _ in 0..<connections {
            let s = try ZMQSocket(context, .dealer)
            try s.setLinger(milliseconds: 0)
            try s.setSendHighWaterMark(0)
            try s.setReceiveHighWaterMark(0)
            try config.curve?.apply(to: s)
            try s.connect(config.endpoint)
            dealers.append(s)
        }
        var rng = SplitMix64(seed: config.seed ^ 0x6F70_656E_6C6F_6F70)
        func body(_ id: UInt64) -> [UInt8] {
            let obs = (0..<config.observationDim).map { _ in rng.normalFloat() }
            return Request.act(FloatArray(obs), parameters: config.parameters, id: .uint(id), model: config.model).encode()
        }
        // Warm-up: one request at a time on each connection; any failure aborts the test.
        for (c, s) in dealers.enumerated() {
            for w in 0..<config.warmupRequests {
                let id = UInt64.max - UInt64(c * 1000 + w)
                try s.send([[], body(id)])
                guard try ZMQSocket.pollReadable([s], timeoutMilliseconds: config.timeoutMilliseconds)[0] else {
                    throw FlowgateClientError.timeout(endpoint: config.endpoint, attempts: 1)
                }
                let frames = try s.receive().frames
                guard frames.count == 2, let reply = try? MessagePack.decode(frames[1]) else {
                    throw FlowgateClientError.malformedReply("warm-up reply of \(frames.count) frames")
                }
                do { try Reply.checkOK(reply) } catch { throw FlowgateClientError.server(error) }
            }
        }

        let address = "inproc://flowgate-open-loop-\(UUID().uuidString)"
        let pull = try ZMQSocket(context, .pull)
        try pull.setReceiveHighWaterMark(0)
        try pull.bind(address)
        let push = try ZMQSocket(context, .push)
        try push.setSendHighWaterMark(0)
        try push.setLinger(milliseconds: 0)
        try push.connect(address)

        let start = monotonicNanoseconds() + 2_000_000  // 2 ms for the timer thread to start
        let intended = schedule.map { start + $0 }
        let timer = TimerThread(push: push, intended: intended)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            timer.run()
            done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
        defer { done.wait() }

        var book = OutstandingRequests(
            intended: intended, timeoutNanoseconds: UInt64(max(config.timeoutMilliseconds, 1)) * 1_000_000)
        var latency = LatencyHistogram(), service = LatencyHistogram()
        var errors: [String: Int] = [:]
        var queue = 0.0, compute = 0.0, batch = 0.0
        var commands = 0
        var last = start
        let sockets = [pull] + dealers
        while commands < intended.count || book.outstanding > 0 {
            let now = monotonicNanoseconds()
            var wait = 50  // ms: a bound, so expiry is checked even when nothing arrives
            if let e = book.nextExpiry() { wait = min(wait, e > now ? Int((e - now + 999_999) / 1_000_000) : 0) }
            let ready = try ZMQSocket.pollReadable(sockets, timeoutMilliseconds: wait)
            if ready[0] {
                while let frames = try? pull.receive(dontWait: true).frames {
                    guard let f = frames.first, f.count == 8 else { continue }
                    let i = Int(f.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
                    commands += 1
                    let b = body(UInt64(i))
                    do {
                        try dealers[i % connections].send([[], b], dontWait: true)
                        book.sent(i, at: monotonicNanoseconds())
                    } catch {
                        errors["send_failed", default: 0] += 1
                    }
                }
            }
            for (c, s) in dealers.enumerated() where ready[c + 1] {
                while let frames = try? s.receive(dontWait: true).frames {
                    let t = monotonicNanoseconds()
                    last = max(last, t)
                    // MessagePack has no separate unsigned type on the wire for small values: the id
                    // may come back as int or uint.
                    guard frames.count == 2, let reply = try? MessagePack.decode(frames[1]),
                        let index = reply["id"].flatMap(RequestID.init).flatMap(Self.index)
                    else {
                        errors["malformed_reply", default: 0] += 1
                        continue
                    }
                    guard let done = book.completed(index, at: t) else { continue }  // late: counted by the book
                    do {
                        try Reply.checkOK(reply)
                        latency.record(nanoseconds: done.latencyNanoseconds)
                        service.record(nanoseconds: done.serviceNanoseconds)
                        let timing = reply["timing"]
                        queue += Double(timing?["queue_us"]?.intValue ?? 0)
                        compute += Double(timing?["compute_us"]?.intValue ?? 0)
                        batch += Double(timing?["batch"]?.intValue ?? 0)
                    } catch {
                        errors[error.code.rawValue, default: 0] += 1
                    }
                }
            }
            let now2 = monotonicNanoseconds()
            let expired = book.expire(now: now2)
            if expired > 0 {
                errors["timeout", default: 0] += expired
                last = max(last, now2)
            }
        }
        // Replies still on their way after the last timeout are not waited for; a few more may be
        // in the sockets now: count them as late.
        var late = book.lateReplies
        for s in dealers { while (try? s.receive(dontWait: true)) != nil { late += 1 } }
        let ok = Double(max(latency.count, 1))
        let span = intended.count > 1 ? Double(intended.last! - intended.first!) / 1e9 : 0
        return OpenLoopResult(
            targetRate: config.rate, offered: intended.count, completed: latency.count, errors: errors, lateReplies: late,
            wallSeconds: Double(last - start) / 1e9, scheduleSeconds: span, latency: latency, serviceTime: service,
            maxSendLagMicroseconds: Double(book.maxSendLagNanoseconds) / 1e3, meanQueueMicroseconds: queue / ok,
            meanComputeMicroseconds: compute / ok, meanBatch: batch / ok)
    }

    /// The schedule index a reply's id names (ids are the indices; warm-up ids are near 2⁶⁴ and
    /// resolve to no outstanding request).
    static func index(_ id: RequestID) -> Int? {
        switch id {
        case .int(let i): return i >= 0 && i < Int64(Int.max) ? Int(i) : nil
        case .uint(let u): return u < UInt64(Int.max) ? Int(u) : nil
        default: return nil
        }
    }

    /// Sleeps until each intended time and pushes the request's index (8 bytes) to the I/O thread.
    private final class TimerThread: @unchecked Sendable {
        let push: ZMQSocket
        let intended: [UInt64]
        init(push: ZMQSocket, intended: [UInt64]) {
            self.push = push
            self.intended = intended
        }

        func run() {
            for (i, t) in intended.enumerated() {
                sleep(until: t)
                var v = UInt64(i)
                let frame = withUnsafeBytes(of: &v) { Array($0) }
                // No high-water mark: never blocks; an error here would mean the context is gone.
                do { try push.send([frame], dontWait: true) } catch { return }
            }
        }

        private func sleep(until t: UInt64) {
            var ts = timespec(tv_sec: Int(t / 1_000_000_000), tv_nsec: Int(t % 1_000_000_000))
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
        }
    }
}

extension SplitMix64 {
    /// A Box–Muller normal, for random observations (not for anything statistical).
    mutating func normalFloat() -> Float {
        let u1 = max(nextUnitInterval(), 1e-300)
        let u2 = nextUnitInterval()
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}
