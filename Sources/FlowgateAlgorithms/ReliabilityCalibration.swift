import FlowgateCommon

/// Turns `E_min` into a reliability decision and a calibrated confidence, from the `E_min` values of
/// held-out real transitions.
///
/// - `threshold`: the `quantile` (default 0.95) of held-out `E_min`; a transition is reliable when
///   `eMin <= threshold`, so about `quantile` of real transitions pass.
/// - `confidence(eMin)`: the share of held-out real transitions whose `E_min` is at least `eMin`
///   (an empirical tail probability, like a p-value: 1 for very low energy, 0 beyond every held-out
///   value), interpolated linearly in a sorted quantile table.
public struct ReliabilityCalibration: Codable, Sendable, Equatable {
    /// Target share of real transitions judged reliable.
    public var quantile: Double
    /// `E_min` above which a transition is unreliable.
    public var threshold: Float
    /// Sorted `E_min` quantiles of the held-out set at probabilities `i / (table.count − 1)`.
    public var table: [Float]
    /// How many held-out transitions the table summarises.
    public var heldOutCount: Int
    /// Staged proposals: the `E_min` at or below which a row stops after the first stage (at most
    /// `threshold`, so no flag changes); nil stops rows at `threshold`.
    public var exitEnergy: Float?

    /// The energy staged proposals stop a row at: `exitEnergy`, never above the threshold.
    public var stageExit: Float { min(exitEnergy ?? threshold, threshold) }

    /// Builds the calibration from held-out `E_min` values, keeping a table of `tableSize` quantiles.
    public init(heldOutEMin values: [Float], quantile: Double = 0.95, tableSize: Int = 1001) {
        precondition(!values.isEmpty, "calibration needs held-out values")
        precondition(quantile > 0 && quantile < 1 && tableSize >= 2)
        let sorted = values.sorted()
        self.quantile = quantile
        self.heldOutCount = sorted.count
        self.threshold = ReliabilityCalibration.quantile(sorted, quantile)
        self.table = (0..<tableSize).map { ReliabilityCalibration.quantile(sorted, Double($0) / Double(tableSize - 1)) }
    }

    /// From stored fields (a manifest's reliability section); `table` must be sorted.
    public init(quantile: Double, threshold: Float, table: [Float], heldOutCount: Int, exitEnergy: Float? = nil) {
        self.quantile = quantile
        self.threshold = threshold
        self.exitEnergy = exitEnergy
        // A one-point (or empty) table becomes a step at that point (or at the threshold).
        self.table = table.count >= 2 ? table : [Float](repeating: table.first ?? threshold, count: 2)
        self.heldOutCount = heldOutCount
    }

    /// Linear-interpolation quantile (NumPy's default) of sorted values.
    public static func quantile(_ sorted: [Float], _ q: Double) -> Float {
        SampleStatistics.quantile(sorted: sorted, q)
    }

    /// True when `eMin` is within the threshold.
    public func isReliable(_ eMin: Float) -> Bool { eMin <= threshold }

    /// Share of held-out real transitions with `E_min ≥ eMin`, in [0, 1], non-increasing in `eMin`.
    public func confidence(_ eMin: Float) -> Float {
        guard eMin.isFinite else { return eMin < 0 ? 1 : 0 }
        let n = table.count
        if eMin <= table[0] { return 1 }
        if eMin >= table[n - 1] { return 0 }
        // Largest i with table[i] <= eMin.
        var lo = 0, hi = n - 1
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if table[mid] <= eMin { lo = mid } else { hi = mid }
        }
        let width = table[hi] - table[lo]
        let f: Float = width > 0 ? (eMin - table[lo]) / width : 0
        let cdf = (Float(lo) + f) / Float(n - 1)
        return min(max(1 - cdf, 0), 1)
    }
}
