import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Nanoseconds on the monotonic clock (never jumps with wall-clock changes). The one clock for
/// durations and deadlines: the server's queue and compute times, the load tester's latencies and
/// every benchmark's timing loops.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Seconds on the monotonic clock, from an arbitrary origin (for timing loops: only differences mean
/// anything).
@inline(__always)
public func monotonicSeconds() -> Double {
    Double(monotonicNanoseconds()) / 1e9
}

/// CPU seconds the calling thread has used, from an arbitrary origin. On a machine shared with
/// other work this counts only the time the thread actually ran, so a benchmark can report a rate
/// that the machine's load does not change (`bench train`).
@inline(__always)
public func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The wall-clock `Date` at which the monotonic clock will read `nanoseconds`.
public func wallClockDate(atMonotonic nanoseconds: UInt64) -> Date {
    let now = monotonicNanoseconds()
    let delta = nanoseconds > now ? Double(nanoseconds - now) / 1e9 : 0
    return Date(timeIntervalSinceNow: delta)
}

/// Microseconds between two monotonic readings (0 if `end` precedes `start`).
@inline(__always)
public func microseconds(from start: UInt64, to end: UInt64) -> Int {
    end > start ? Int((end - start) / 1000) : 0
}
