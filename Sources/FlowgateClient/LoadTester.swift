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

/// Drives a server with `concurrency` REQ clients, one thread each, sending `act` requests with
/// random observations as fast as replies come back (closed loop), bounded in count and time.
public enum LoadTester {
    /// Runs one load test; throws if a client cannot connect or its warm-up fails.
    public static func run(_ config: LoadTestConfiguration) throws -> LoadTestResult {
        let n = max(config.concurrency, 1)
        let shared = SharedState(budget: config.requests)
        let ready = DispatchGroup()
        let finished = DispatchGroup()
        let go = DispatchSemaphore(value: 0)
        let samples = (0..<n).map { _ in ClientSamples() }
        for i in 0..<n {
            ready.enter()
            finished.enter()
            let mine = samples[i]
            let thread = Thread {
                defer { finished.leave() }
                runClient(index: i, config: config, shared: shared, samples: mine, ready: ready, go: go)
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        ready.wait()
        if let failure = shared.setupFailure {
            for _ in 0..<n { go.signal() }
            finished.wait()
            throw FlowgateClientError.transport("load test set-up failed: \(failure)")
        }
        let start = monotonicNanoseconds()
        shared.deadline = start + UInt64(max(config.durationSeconds, 0) * 1e9)
        for _ in 0..<n { go.signal() }
        finished.wait()
        let wall = Double(monotonicNanoseconds() - start) / 1e9

        var latencies: [Double] = [], errors: [String: Int] = [:]
        var queue = 0.0, compute = 0.0, batch = 0.0
        for s in samples {
            latencies += s.latencies
            queue += s.queue; compute += s.compute; batch += s.batch
            for (k, v) in s.errors { errors[k, default: 0] += v }
        }
        latencies.sort()
        let ok = Double(max(latencies.count, 1))
        return LoadTestResult(
            concurrency: n, completed: latencies.count, errors: errors, wallSeconds: wall,
            latenciesMicroseconds: latencies, meanQueueMicroseconds: queue / ok, meanComputeMicroseconds: compute / ok,
            meanBatch: batch / ok)
    }

    private static func runClient(
        index: Int, config: LoadTestConfiguration, shared: SharedState, samples: ClientSamples, ready: DispatchGroup,
        go: DispatchSemaphore
    ) {
        let client: FlowgateClient
        var rng = SplitMix64(seed: config.seed &+ UInt64(index) &* SplitMix64.goldenGamma)
        func observation() -> [Float] { (0..<config.observationDim).map { _ in rng.normalFloat() } }
        do {
            client = try FlowgateClient(
                endpoint: config.endpoint, kind: .req, timeoutMilliseconds: config.timeoutMilliseconds, retries: 0,
                sharedContext: config.sharedContext?.handle, curve: config.curve)
            for _ in 0..<config.warmupRequests {
                _ = try client.act(observation: observation(), parameters: config.parameters, model: config.model)
            }
        } catch {
            shared.fail("\(error)")
            ready.leave()
            go.wait()
            return
        }
        ready.leave()
        go.wait()
        if shared.setupFailure != nil { return }
        while shared.claim() {
            let obs = observation()
            let t0 = monotonicNanoseconds()
            do {
                let reply = try client.act(observation: obs, parameters: config.parameters, model: config.model)
                let t1 = monotonicNanoseconds()
                samples.latencies.append(Double(t1 - t0) / 1e3)
                samples.queue += Double(reply.timing.queueMicroseconds)
                samples.compute += Double(reply.timing.computeMicroseconds)
                samples.batch += Double(reply.timing.batch)
            } catch {
                // A plain catch (pattern catches of typed errors have crashed Swift 6.3.1).
                switch error as? FlowgateClientError {
                case .server(let e)?: samples.errors[e.code.rawValue, default: 0] += 1
                // retries: 0 has already reopened the REQ socket; carry on.
                case .timeout?: samples.errors["timeout", default: 0] += 1
                case .transport?: samples.errors["transport", default: 0] += 1
                case .malformedReply?: samples.errors["malformed_reply", default: 0] += 1
                case nil: samples.errors["client", default: 0] += 1
                }
            }
        }
    }

    /// What one client thread measured (written by that thread only; read after it finished).
    private final class ClientSamples: @unchecked Sendable {
        var latencies: [Double] = []
        var errors: [String: Int] = [:]
        var queue = 0.0, compute = 0.0, batch = 0.0
    }

    /// The request budget, deadline and set-up failure shared by the client threads (locked).
    private final class SharedState: @unchecked Sendable {
        private let lock = NSLock()
        private var remaining: Int
        private var _deadline: UInt64 = .max
        private var _failure: String?

        init(budget: Int) { remaining = budget }

        var deadline: UInt64 {
            get { lock.withLock { _deadline } }
            set { lock.withLock { _deadline = newValue } }
        }
        var setupFailure: String? { lock.withLock { _failure } }
        func fail(_ message: String) { lock.withLock { if _failure == nil { _failure = message } } }

        /// Takes one request from the budget; false when it is spent or the deadline has passed.
        func claim() -> Bool {
            let now = monotonicNanoseconds()
            return lock.withLock {
                guard remaining > 0, now < _deadline else { return false }
                remaining -= 1
                return true
            }
        }
    }
}
