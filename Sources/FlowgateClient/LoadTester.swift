import FlowgateCommon
import FlowgateZMQ
import FlowgateProtocol
import Foundation

/// What one closed-loop load test does: its target, and how many clients send how much.
public struct LoadTestConfiguration: LoadTargeting, Sendable {
    public var target: LoadTarget
    /// Concurrent REQ clients, each on its own thread with one request in flight.
    public var concurrency: Int
    /// Stop after this many timed requests in total…
    public var requests: Int
    /// …or after this many seconds, whichever comes first.
    public var durationSeconds: Double
    /// Untimed requests each client sends first (connection set-up, server warm-up).
    public var warmupRequests: Int = 5

    public init(target: LoadTarget, concurrency: Int, requests: Int, durationSeconds: Double) {
        self.target = target
        self.concurrency = concurrency
        self.requests = requests
        self.durationSeconds = durationSeconds
    }
}

/// The measurements of one load test.
public struct LoadTestResult: Sendable {
    public var concurrency: Int
    /// Successful timed requests.
    public var completed: Int
    /// Failed timed requests, by code: the server's error codes, `timeout`, `transport`,
    /// `malformed_reply`.
    public var errors: [String: Int]
    /// Seconds from the start signal until the last client finished.
    public var wallSeconds: Double
    /// Client-side round-trip latency of every successful request, in microseconds, ascending.
    public var latenciesMicroseconds: [Double]
    /// Means over successful requests of the server's own timing in the reply.
    public var meanQueueMicroseconds: Double
    public var meanComputeMicroseconds: Double
    /// Mean number of observations computed together with a request (the reply's `timing.batch`).
    public var meanBatch: Double

    /// The latencies in an HdrHistogram (percentiles p50…p99.9 and max as `flowgate bench serve`
    /// reports them).
    public var histogram: LatencyHistogram {
        var h = LatencyHistogram()
        for l in latenciesMicroseconds { h.record(microseconds: UInt64(l.rounded())) }
        return h
    }

    /// Successful requests per second.
    public var throughput: Double { wallSeconds > 0 ? Double(completed) / wallSeconds : 0 }
    public var errorCount: Int { errors.values.reduce(0, +) }

    /// The `p`-th percentile (0...100) of the latencies in microseconds (linear interpolation
    /// between closest ranks, as NumPy's default); 0 when nothing succeeded.
    public func percentileMicroseconds(_ p: Double) -> Double {
        SampleStatistics.percentile(sorted: latenciesMicroseconds, p) ?? 0
    }

}

/// Drives a server with `concurrency` closed-loop clients sending `act` requests with random
/// observations as fast as replies come back, bounded in count and time.
///
/// Each client is its own connection (a DEALER socket, so the server sees `concurrency` peers, as
/// with as many REQ callers) with exactly one request in flight: its next request leaves when its
/// reply arrives. One I/O thread drives all of them with `zmq_poll`, the way wrk drives its
/// connections, instead of one blocked thread per client: on the 2-core machines this project runs
/// on, 64 client threads cost the load generator about 0.4 of a core (mostly the kernel's
/// wake-ups), taken from the server it measures (docs/benchmarks.md, "A load generator that
/// leaves the cores to the server").
public enum LoadTester {
    /// Runs one load test; throws if a client cannot connect or its warm-up fails.
    public static func run(_ config: LoadTestConfiguration) throws -> LoadTestResult {
        do {
            return try drive(config)
        } catch {
            // A plain catch (pattern catches of typed errors have crashed Swift 6.3.1).
            if let e = error as? ZMQError { throw FlowgateClientError.transport("load test set-up failed: \(e)") }
            throw error
        }
    }

    private static func drive(_ config: LoadTestConfiguration) throws -> LoadTestResult {
        let n = max(config.concurrency, 1)
        let context = try config.sharedContext.map { ZMQContext(borrowing: $0.handle) } ?? ZMQContext()
        var clients: [Client] = []
        clients.reserveCapacity(n)
        for i in 0..<n {
            let s = try ZMQSocket(context, .dealer)
            try s.setLinger(milliseconds: 0)
            try config.curve?.apply(to: s)
            try s.connect(config.endpoint)
            clients.append(Client(socket: s, seed: config.seed &+ UInt64(i) &* SplitMix64.goldenGamma))
        }
        let sockets = clients.map(\.socket)
        let timeout = UInt64(max(config.timeoutMilliseconds, 1)) * 1_000_000
        var nextID: UInt64 = 0

        func send(_ c: Int) throws(ZMQError) {
            let obs = clients[c].observation(config.observationDim)
            nextID &+= 1
            let body = Request.act(FloatArray(obs), parameters: config.parameters, id: .uint(nextID), model: config.model)
                .encode()
            try sockets[c].send([[], body], dontWait: true)
            clients[c].inFlight = nextID
            clients[c].sentAt = monotonicNanoseconds()
        }

        // Warm-up: every client sends `warmupRequests` requests, all clients at once, round by
        // round (so the server forms its batches as it will under the load); any failure aborts.
        for _ in 0..<config.warmupRequests {
            for c in 0..<n { try send(c) }
            var waiting = n
            let deadline = monotonicNanoseconds() + timeout
            while waiting > 0 {
                let now = monotonicNanoseconds()
                guard now < deadline else {
                    throw FlowgateClientError.transport(
                        "load test set-up failed: \(waiting) of \(n) warm-up replies missing after \(config.timeoutMilliseconds) ms")
                }
                let ready = try ZMQSocket.pollReadable(sockets, timeoutMilliseconds: Int((deadline - now) / 1_000_000) + 1)
                for c in 0..<n where ready[c] {
                    while let frames = try? sockets[c].receive(dontWait: true).frames {
                        let reply = try decodeReply(frames)
                        guard reply.id == clients[c].inFlight else { continue }
                        clients[c].inFlight = nil
                        waiting -= 1
                        do {
                            _ = try ActReply(reply.value)
                        } catch {
                            throw FlowgateClientError.transport("load test set-up failed: warm-up request: \(error)")
                        }
                    }
                }
            }
        }

        var remaining = config.requests
        var latencies: [Double] = []
        latencies.reserveCapacity(min(max(config.requests, 0), 1 << 22))
        var errors: [String: Int] = [:]
        var queue = 0.0, compute = 0.0, batch = 0.0
        let start = monotonicNanoseconds()
        let deadline = start + UInt64(max(config.durationSeconds, 0) * 1e9)
        var last = start

        /// Takes one request from the budget and sends it on client `c`; false when the budget is
        /// spent or the deadline has passed (the client then stops).
        func next(_ c: Int) {
            while remaining > 0, monotonicNanoseconds() < deadline {
                remaining -= 1
                do {
                    try send(c)
                    return
                } catch {
                    errors["transport", default: 0] += 1
                }
            }
        }

        for c in 0..<n { next(c) }
        var inFlight = clients.reduce(0) { $0 + ($1.inFlight == nil ? 0 : 1) }
        /// Client `c`'s request is over at `t` (answered, unreadable or timed out): it sends its next.
        func moveOn(_ c: Int, at t: UInt64) {
            clients[c].inFlight = nil
            inFlight -= 1
            last = max(last, t)
            next(c)
            if clients[c].inFlight != nil { inFlight += 1 }
        }
        while inFlight > 0 {
            let now = monotonicNanoseconds()
            let oldest = clients.compactMap { $0.inFlight == nil ? nil : $0.sentAt }.min() ?? now
            let expiry = oldest + timeout
            let wait = expiry > now ? min(Int((expiry - now + 999_999) / 1_000_000), 50) : 0
            let ready = try ZMQSocket.pollReadable(sockets, timeoutMilliseconds: wait)
            for c in 0..<n where ready[c] {
                while let frames = try? sockets[c].receive(dontWait: true).frames {
                    let t = monotonicNanoseconds()
                    guard let expected = clients[c].inFlight else { continue }  // late reply after a timeout
                    guard let reply = try? decodeReply(frames) else {
                        // The client's one request is answered, if unreadably.
                        errors["malformed_reply", default: 0] += 1
                        moveOn(c, at: t)
                        continue
                    }
                    guard reply.id == expected else { continue }  // late reply after a timeout
                    do {
                        let r = try ActReply(reply.value)
                        latencies.append(Double(t - clients[c].sentAt) / 1e3)
                        queue += Double(r.timing.queueMicroseconds)
                        compute += Double(r.timing.computeMicroseconds)
                        batch += Double(r.timing.batch)
                    } catch {
                        errors[error.code.rawValue, default: 0] += 1
                    }
                    moveOn(c, at: t)
                }
            }
            let now2 = monotonicNanoseconds()
            for c in 0..<n where clients[c].inFlight != nil && now2 - clients[c].sentAt >= timeout {
                // No reply in time: counted, and the client moves on (its late reply is dropped by id).
                errors["timeout", default: 0] += 1
                moveOn(c, at: now2)
            }
        }
        let wall = Double(last - start) / 1e9
        latencies.sort()
        let ok = Double(max(latencies.count, 1))
        return LoadTestResult(
            concurrency: n, completed: latencies.count, errors: errors, wallSeconds: wall,
            latenciesMicroseconds: latencies, meanQueueMicroseconds: queue / ok, meanComputeMicroseconds: compute / ok,
            meanBatch: batch / ok)
    }

    /// A reply's map and id from a DEALER's frames (`[empty, body]`).
    private static func decodeReply(_ frames: [[UInt8]]) throws -> (value: MessagePackValue, id: UInt64?) {
        guard frames.count == 2, frames[0].isEmpty else {
            throw FlowgateClientError.malformedReply("expected [empty, body], got \(frames.count) frames")
        }
        let value: MessagePackValue
        do {
            value = try MessagePack.decode(frames[1])
        } catch {
            throw FlowgateClientError.malformedReply("\(error)")
        }
        let id = value["id"].flatMap(RequestID.init).flatMap(OpenLoopTester.index).map(UInt64.init)
        return (value, id)
    }

    /// One closed-loop client: its connection, its observations' generator and its request in flight.
    private struct Client {
        let socket: ZMQSocket
        var rng: SplitMix64
        var inFlight: UInt64? = nil
        var sentAt: UInt64 = 0

        init(socket: ZMQSocket, seed: UInt64) {
            self.socket = socket
            rng = SplitMix64(seed: seed)
        }

        mutating func observation(_ dim: Int) -> [Float] { (0..<dim).map { _ in rng.normalFloat() } }
    }
}
