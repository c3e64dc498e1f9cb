import FlowgateCommon
import Foundation

/// When an open-loop load test means to send each request: Poisson arrivals (exponential gaps) at a
/// target rate, drawn from a seed so that two runs offer exactly the same load.
///
/// Offsets are nanoseconds from the start of the test, strictly increasing. The load tester measures
/// every latency from these *intended* times, not from when the request actually left: a sender that
/// fell behind (or a server that stalled it) cannot hide the wait (no coordinated omission).
public enum PoissonSchedule {
    /// Up to `count` arrival offsets at `rate` per second, stopping at the first one past
    /// `durationSeconds` (nil: no time limit).
    public static func offsets(rate: Double, count: Int, durationSeconds: Double? = nil, seed: UInt64) -> [UInt64] {
        precondition(rate > 0 && rate.isFinite, "rate must be positive")
        var rng = SplitMix64(seed: seed)
        let limit = durationSeconds.map { $0 * 1e9 } ?? .infinity
        var t = 0.0
        var out: [UInt64] = []
        out.reserveCapacity(min(max(count, 0), 1 << 22))
        while out.count < count {
            // Exponential gap with mean 1/rate: -ln(1 - U) / rate, U in [0, 1).
            t += -Foundation.log1p(-rng.nextUnitInterval()) / rate * 1e9
            if t > limit { break }
            let ns = UInt64(t.rounded())
            // Two arrivals within the same nanosecond keep their order (strictly increasing).
            out.append(out.last.map { max($0 + 1, ns) } ?? ns)
        }
        return out
    }
}

/// The requests of an open-loop test that are on their way, with the bookkeeping that decides what
/// each reply's latency is: reply time minus the request's *intended* send time. Pure (no clock, no
/// sockets), so the rules are testable without timing.
public struct OutstandingRequests {
    /// What a reply resolved to.
    public struct Completion: Equatable, Sendable {
        /// From the intended send time to the reply: what the caller of an open-loop client waits.
        public var latencyNanoseconds: UInt64
        /// From the actual send to the reply (the server's service time plus the network).
        public var serviceNanoseconds: UInt64

        public init(latencyNanoseconds: UInt64, serviceNanoseconds: UInt64) {
            self.latencyNanoseconds = latencyNanoseconds
            self.serviceNanoseconds = serviceNanoseconds
        }
    }

    /// Absolute intended send time of request i (monotonic nanoseconds).
    public let intended: [UInt64]
    /// A request with no reply this long after its intended time is counted as timed out.
    public let timeoutNanoseconds: UInt64
    private var sentAt: [Int: UInt64] = [:]
    /// Lowest index that may still be outstanding (requests expire in index order).
    private var oldest = 0
    /// Requests handed to `sent` so far (indices below this were sent or expired).
    public private(set) var sentCount = 0
    /// Replies that came after their request had already been counted as timed out, or that named
    /// no request of this test.
    public private(set) var lateReplies = 0
    /// Requests counted as timed out so far.
    public private(set) var timedOut = 0
    /// The latest a request was sent after its intended time (how far the sender fell behind).
    public private(set) var maxSendLagNanoseconds: UInt64 = 0

    public init(intended: [UInt64], timeoutNanoseconds: UInt64) {
        self.intended = intended
        self.timeoutNanoseconds = timeoutNanoseconds
    }

    /// Requests sent and not yet answered or expired.
    public var outstanding: Int { sentAt.count }

    /// Records that request `index` left at `time`.
    public mutating func sent(_ index: Int, at time: UInt64) {
        precondition(index >= 0 && index < intended.count, "request \(index) is not in the schedule")
        sentAt[index] = time
        sentCount = max(sentCount, index + 1)
        if time > intended[index] { maxSendLagNanoseconds = max(maxSendLagNanoseconds, time - intended[index]) }
    }

    /// Resolves the reply to request `index` arriving at `time`; nil (and a late reply counted) when
    /// that request is not outstanding (already timed out, answered, or never sent).
    public mutating func completed(_ index: Int, at time: UInt64) -> Completion? {
        guard index >= 0, index < intended.count, let sent = sentAt.removeValue(forKey: index) else {
            lateReplies += 1
            return nil
        }
        return Completion(
            latencyNanoseconds: time > intended[index] ? time - intended[index] : 0,
            serviceNanoseconds: time > sent ? time - sent : 0)
    }

    /// Counts as timed out (and forgets) every outstanding request whose intended time is at least
    /// the timeout before `now`; returns how many.
    public mutating func expire(now: UInt64) -> Int {
        var n = 0
        while oldest < sentCount {
            if sentAt[oldest] == nil {
                oldest += 1
                continue
            }
            guard intended[oldest] &+ timeoutNanoseconds <= now else { break }
            sentAt[oldest] = nil
            oldest += 1
            n += 1
        }
        timedOut += n
        return n
    }

    /// When the oldest outstanding request times out (nil when none is outstanding).
    public mutating func nextExpiry() -> UInt64? {
        while oldest < sentCount && sentAt[oldest] == nil { oldest += 1 }
        return oldest < sentCount ? intended[oldest] &+ timeoutNanoseconds : nil
    }
}
