import Histogram

/// Latencies in an HdrHistogram (hdrhistogram-swift): microsecond resolution, 3 significant
/// digits (a value is reported within 0.1 %), from 1 µs to one hour, in fixed memory whatever
/// the number of requests.
public struct LatencyHistogram: Sendable {
    private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)

    public init() {}

    /// Records one latency in microseconds (clamped to the histogram's range, so nothing is dropped).
    public mutating func record(microseconds: UInt64) {
        _ = histogram.record(min(max(microseconds, 1), histogram.highestTrackableValue))
    }

    /// Records one latency in nanoseconds (rounded to the nearest microsecond).
    public mutating func record(nanoseconds: UInt64) { record(microseconds: (nanoseconds + 500) / 1000) }

    /// Adds another histogram's counts (e.g. one per client thread).
    public mutating func add(_ other: LatencyHistogram) { histogram.add(other.histogram) }

    public var count: Int { Int(histogram.totalCount) }

    /// The value at `percentile` (0...100) in microseconds; 0 when empty.
    public func microseconds(atPercentile percentile: Double) -> Double {
        count == 0 ? 0 : Double(histogram.valueAtPercentile(percentile))
    }

    /// p50/p90/p99/p99.9/max/mean in milliseconds.
    public var summary: LatencySummary {
        guard count > 0 else { return LatencySummary(count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0) }
        func ms(_ p: Double) -> Double { Double(histogram.valueAtPercentile(p)) / 1000 }
        return LatencySummary(
            count: count, p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9), max: Double(histogram.max) / 1000,
            mean: histogram.mean / 1000)
    }
}

/// Latency percentiles of one measurement, in milliseconds (JSON: `latency_ms`).
public struct LatencySummary: Codable, Sendable, Equatable {
    /// Latencies recorded (successful replies).
    public var count: Int
    public var p50, p90, p99: Double
    /// The 99.9th percentile (JSON key `p99_9`).
    public var p999: Double
    public var max, mean: Double

    public init(count: Int, p50: Double, p90: Double, p99: Double, p999: Double, max: Double, mean: Double) {
        self.count = count
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.max = max
        self.mean = mean
    }

    enum CodingKeys: String, CodingKey {
        case count, p50, p90, p99, p999 = "p99_9", max, mean
    }
}
