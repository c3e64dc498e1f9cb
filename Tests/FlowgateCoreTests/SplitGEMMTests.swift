import FlowgateTestSupport
import Testing
@testable import FlowgateCore

/// The trainer's two-core products (`BLAS.setComputeThreads(2)`) must compute the same product as
/// one single-threaded call (to rounding: OpenBLAS's blocking depends on the sub-product's shape)
/// and give the same bits every time.
@Suite("Two-core matrix products", .serialized)
struct SplitGEMMTests {
    /// (transA, transB, m, n, k): the shapes an MLP's forward (x Wᵀ), weight gradient (dyᵀ x) and
    /// input gradient (dy W) take in the trainer, with odd sizes, row and column splits.
    static let shapes: [(Bool, Bool, Int, Int, Int)] = [
        (false, true, 4096, 256, 256), (false, true, 256, 256, 46), (true, false, 256, 46, 256),
        (false, false, 256, 46, 256), (true, false, 256, 256, 4096), (false, true, 1000, 255, 77),
        (true, false, 3, 256, 4096), (false, false, 16, 300, 1024), (false, true, 999, 129, 33),
    ]

    @Test("split products equal one call to rounding, and repeat bit for bit", arguments: 0..<9)
    func bitIdentical(_ index: Int) {
        let (ta, tb, m, n, k) = Self.shapes[index]
        let a = randomArray(m * k, seed: 1 + UInt64(index)), b = randomArray(k * n, seed: 100 + UInt64(index))
        let c0 = randomArray(m * n, seed: 200 + UInt64(index))
        let lda = ta ? m : k, ldb = tb ? k : n
        func product(threads: Int, beta: Float) -> [Float] {
            BLAS.withComputeThreads(threads) {
                let before = SplitGEMM.shared.splits
                var c = c0
                a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cp in
                            BLAS.sgemm(
                                transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, ap.baseAddress!, lda: lda, bp.baseAddress!,
                                ldb: ldb, beta: beta, cp.baseAddress!, ldc: n)
                        }
                    }
                }
                // Every shape here is large enough to split; with one thread nothing is split. (≥: tests
                // running in parallel may split their own products while two threads are on.)
                #expect(SplitGEMM.isLarge(m: m, n: n, k: k))
                if threads == 2 { #expect(SplitGEMM.shared.splits - before >= 1) } else { #expect(SplitGEMM.shared.splits == before) }
                return c
            }
        }
        for beta: Float in [0, 1] {
            let whole = product(threads: 1, beta: beta)
            let split = product(threads: 2, beta: beta)
            let again = product(threads: 2, beta: beta)
            // Count mismatches (not `==` on the arrays: a failure's diff of a million elements takes minutes).
            #expect(zip(split, again).filter { $0.bitPattern != $1.bitPattern }.count == 0, "shape \(Self.shapes[index]), beta \(beta)")
            // Sums of k products of N(0, 1) values: rounding differences are ~1e-7·√k·|terms|.
            let worst = zip(whole, split).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? 0
            #expect(worst < 1e-4, "shape \(Self.shapes[index]), beta \(beta): relative difference \(worst)")
            #expect(whole.contains { $0 != 0 })
        }
    }

    @Test("a small product is not split, and is computed right")
    func smallRunsWhole() {
        BLAS.withComputeThreads(2) {
            let before = SplitGEMM.shared.splits
            let a = randomArray(64 * 32, seed: 5), b = randomArray(32 * 32, seed: 6)
            var c = [Float](repeating: 0, count: 64 * 32)
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        BLAS.sgemm(transA: false, transB: true, m: 64, n: 32, k: 32, ap.baseAddress!, lda: 32, bp.baseAddress!, ldb: 32, beta: 0, cp.baseAddress!, ldc: 32)
                    }
                }
            }
            _ = before
            #expect(!SplitGEMM.isLarge(m: 64, n: 32, k: 32))
            // Spot check one element against the definition.
            var expected: Float = 0
            for j in 0..<32 { expected += a[5 * 32 + j] * b[7 * 32 + j] }
            #expect(abs(c[5 * 32 + 7] - expected) < 1e-4)
        }
    }
}
