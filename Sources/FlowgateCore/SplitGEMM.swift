internal import COpenBLAS
import FlowgateCommon
import Foundation
import Synchronization

/// The trainer's second core: work on a batch is cut into two halves, a helper thread computes
/// one while the calling thread computes the other (`BLAS.setComputeThreads(2)`).
///
/// Used for large matrix products (`sgemm`, cut along the output's rows or, when it has few rows,
/// its columns) and for an MLP layer's elementwise work (cut by rows). Why not OpenBLAS's own
/// threads: its pool spins while waiting and made the trainer's products 3–7× slower on the
/// shared 2-core machine (docs/benchmarks.md).
///
/// The cut is fixed for a given shape, so results are deterministic for a given thread count
/// (`TrainingRunTests` checks two 2-thread runs bit for bit). They are not bit-identical to one
/// core: OpenBLAS's blocking depends on the sub-product's shape, and cutting rows (or columns)
/// changed the last bits of 3–24 % of the elements (`SplitGEMMTests` bounds the difference).
///
/// One caller at a time uses the helper; work issued while it is busy (from another thread, or
/// from inside a half) runs both halves one after the other on its caller, so the result never
/// depends on which thread got the helper. The server never enables this (it parallelises across
/// requests). The helper thread starts on first use; between jobs it spins briefly
/// (`spinNanoseconds`), then parks.
final class SplitGEMM: @unchecked Sendable {
    /// Whether work is split (`BLAS.setComputeThreads`).
    static let enabled = Atomic<Bool>(false)
    /// The process's helper.
    static let shared = SplitGEMM()
    /// Products with fewer multiply-adds than this run whole: handing off costs a few microseconds.
    static let minimumWork = 1 << 21

    private let condition = NSCondition()
    private let caller = NSLock()
    /// Set by the caller before it posts `state` (release), read by the helper after it sees it
    /// posted (acquire).
    private var job: ((Int) -> Void)?
    /// 0: no job; 1: a job is posted for the helper; 2: the helper has finished it. Changes are
    /// followed by a broadcast under `condition`, and a thread parks only after checking the state
    /// under it, so no wake-up is lost.
    private let state = Atomic<Int>(0)
    /// How long a thread spins on `state` before parking. A training step issues its halves tens
    /// of microseconds apart, and waking a parked thread took longer than the half it was woken for
    /// with the libxsmm kernels (two cores ran the behaviour phase at 0.94× one core); spinning
    /// this briefly costs little when the trainer has gone quiet.
    static let spinNanoseconds: UInt64 = 50_000
    /// Products computed in two halves so far (for tests).
    private(set) var splits = 0

    private init() {
        let thread = Thread { [self] in loop() }
        thread.name = "flowgate-compute"
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func loop() {
        while true {
            waitFor(1)
            var j = job
            j?(1)
            // Drop the reference before reporting done: the caller's closure must not outlive
            // its `withoutActuallyEscaping` block.
            j = nil
            post(2)
        }
    }

    /// Sets `state` and wakes a parked waiter.
    private func post(_ value: Int) {
        state.store(value, ordering: .releasing)
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    /// Returns once `state` is `value`: spinning for up to `spinNanoseconds`, then parked.
    private func waitFor(_ value: Int) {
        let deadline = monotonicNanoseconds() &+ Self.spinNanoseconds
        var spins = 0
        while state.load(ordering: .acquiring) != value {
            spins += 1
            if spins & 63 == 0 && monotonicNanoseconds() > deadline {
                condition.lock()
                while state.load(ordering: .acquiring) != value { condition.wait() }
                condition.unlock()
                return
            }
        }
    }

    /// Runs `body(0)` on the calling thread and `body(1)` on the helper, and returns when both are
    /// done; when splitting is off or the helper is busy, runs both on the caller, 0 first.
    static func both(_ body: (Int) -> Void) {
        if enabled.load(ordering: .relaxed), shared.parallel(body) { return }
        body(0)
        body(1)
    }

    private func parallel(_ body: (Int) -> Void) -> Bool {
        guard caller.try() else { return false }
        defer { caller.unlock() }
        withoutActuallyEscaping(body) { escapable in
            job = escapable
            post(1)
            escapable(0)
            waitFor(2)
            job = nil
            state.store(0, ordering: .releasing)
        }
        return true
    }

    /// Whether a product is large enough to be cut in two.
    @inline(__always)
    static func isLarge(m: Int, n: Int, k: Int) -> Bool { m * n * k >= minimumWork && max(m, n) >= 32 }

    /// Whether a layer over `rows` rows with `work` multiply-adds is worth cutting in two.
    @inline(__always)
    static func worthSplitting(rows: Int, work: Int) -> Bool {
        rows >= 32 && work >= minimumWork && enabled.load(ordering: .relaxed)
    }

    /// Rows `[0, split)` and `[split, count)` of a batch cut in two (a multiple of 16 keeps
    /// OpenBLAS's row tiles whole).
    @inline(__always)
    static func half(_ part: Int, of count: Int) -> Range<Int> {
        let split = min(count, max(16, (count / 2) & ~15))
        return part == 0 ? 0..<split : split..<count
    }

    /// Row-major `C = alpha · op(A) · op(B) + beta · C` in two halves; false (nothing done) when
    /// splitting is off or the product too small to split, and the caller runs it whole.
    static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) -> Bool {
        guard enabled.load(ordering: .relaxed), isLarge(m: m, n: n, k: k) else { return false }
        shared.countSplit()
        both { part in
            if m >= 32 {
                // Rows of C: rows of op(A).
                let r = half(part, of: m)
                call(
                    transA, transB, r.count, n, k, alpha, transA ? a + r.lowerBound : a + r.lowerBound * lda, lda, b, ldb, beta,
                    c + r.lowerBound * ldc, ldc)
            } else {
                // Columns of C: columns of op(B).
                let r = half(part, of: n)
                call(
                    transA, transB, m, r.count, k, alpha, a, lda, transB ? b + r.lowerBound * ldb : b + r.lowerBound, ldb, beta,
                    c + r.lowerBound, ldc)
            }
        }
        return true
    }

    private let counter = NSLock()

    private func countSplit() {
        counter.lock()
        splits += 1
        counter.unlock()
    }

    /// One single-threaded OpenBLAS call, never split (for work already running as a half).
    @inline(__always)
    static func call(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
        _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
