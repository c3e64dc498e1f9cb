/// Order statistics of a sample (benchmark repeats, latencies, held-out energies).
///
/// Percentiles and quantiles use linear interpolation between closest ranks (NumPy's default,
/// "type 7"): the p-th percentile of sorted values `x[0...n-1]` is `x[h]` interpolated at
/// `h = (n-1)·p/100`; the q-quantile is the same at `h = q·(n-1)`.
public enum SampleStatistics {
    /// The `p`-th percentile (0...100) of `values`; `nil` for an empty sample.
    public static func percentile(_ values: [Double], _ p: Double) -> Double? {
        percentile(sorted: values.sorted(), p)
    }

    /// Like `percentile(_:_:)` for values already sorted ascending (no copy, no sort).
    public static func percentile(sorted values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        return interpolate(sorted: values, at: Double(values.count - 1) * min(max(p, 0), 100) / 100)
    }

    /// The `q`-quantile (0...1) of `sorted` (ascending, not empty), in the values' own precision:
    /// the reliability calibration's thresholds and tables.
    @inlinable
    public static func quantile<Value: BinaryFloatingPoint>(sorted values: [Value], _ q: Double) -> Value {
        interpolate(sorted: values, at: q * Double(values.count - 1))
    }

    /// The value at fractional rank `h` of `sorted`: `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`.
    @inlinable
    static func interpolate<Value: BinaryFloatingPoint>(sorted values: [Value], at h: Double) -> Value {
        let lo = Int(h.rounded(.down))
        let hi = min(lo + 1, values.count - 1)
        return values[lo] + Value(h - Double(lo)) * (values[hi] - values[lo])
    }

    /// The median of `values` (mean of the two middle values for an even count); `nil` when empty.
    public static func median(_ values: [Double]) -> Double? { percentile(values, 50) }

    /// The arithmetic mean; `nil` when empty.
    public static func mean(_ values: [Double]) -> Double? {
        values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
    }
}
