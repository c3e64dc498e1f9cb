import Testing
import FlowgateCommon

@Suite("sample statistics")
struct SampleStatisticsTests {
    @Test("median of odd and even counts, unsorted input")
    func median() {
        #expect(SampleStatistics.median([3, 1, 2]) == 2)
        #expect(SampleStatistics.median([4, 1, 3, 2]) == 2.5)
        #expect(SampleStatistics.median([7]) == 7)
        #expect(SampleStatistics.median([]) == nil)
    }

    @Test("percentiles interpolate linearly between closest ranks (NumPy's default)")
    func percentiles() {
        let v: [Double] = [10, 20, 30, 40, 50]
        #expect(SampleStatistics.percentile(v, 0) == 10)
        #expect(SampleStatistics.percentile(v, 100) == 50)
        #expect(SampleStatistics.percentile(v, 25) == 20)
        // numpy.percentile([10, 20, 30, 40, 50], 90) == 46.0
        #expect(abs(SampleStatistics.percentile(v, 90)! - 46) < 1e-9)
        // numpy.percentile(range(1, 101), 99) == 99.01
        #expect(abs(SampleStatistics.percentile((1...100).map(Double.init), 99)! - 99.01) < 1e-9)
        // Out-of-range p is clamped.
        #expect(SampleStatistics.percentile(v, 150) == 50)
        #expect(SampleStatistics.mean(v) == 30)
        #expect(SampleStatistics.percentile(sorted: [], 50) == nil)
    }

    @Test("quantiles interpolate in the values' own precision")
    func quantiles() {
        let v: [Float] = [1, 2, 4, 8]
        #expect(SampleStatistics.quantile(sorted: v, 0) == 1)
        #expect(SampleStatistics.quantile(sorted: v, 1) == 8)
        // h = 0.5 · 3 = 1.5: halfway between 2 and 4.
        #expect(SampleStatistics.quantile(sorted: v, 0.5) == 3)
        // The fraction is rounded to Float before interpolating, as the calibration always did.
        let q = 0.95, sorted: [Float] = (0..<1000).map { Float($0) * 0.37 }
        let h = q * 999, lo = Int(h.rounded(.down))
        #expect(SampleStatistics.quantile(sorted: sorted, q) == sorted[lo] + Float(h - Double(lo)) * (sorted[lo + 1] - sorted[lo]))
        #expect(SampleStatistics.quantile(sorted: [2.5], 0.3) == 2.5)
    }
}
