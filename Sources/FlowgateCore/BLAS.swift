internal import COpenBLAS
import Foundation

/// Thin, typed access to the BLAS routines the layers use, and control of OpenBLAS threading.
///
/// OpenBLAS's own thread pool is switched to **one thread by default**: on the project's 2-core
/// machines its default threading made the small and medium products a policy server runs 2–5×
/// slower (docs/benchmarks.md has the measurement). flowgate parallelises across requests and
/// batches instead. Override with `BLAS.setThreads(_:)` or the `FLOWGATE_BLAS_THREADS`
/// environment variable (read by the executable).
public enum BLAS {
    /// Sets the number of threads OpenBLAS may use for one call.
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
    }

    /// Threads per BLAS call for a server: `FLOWGATE_BLAS_THREADS` when set to a positive integer,
    /// else 1 (the server parallelises across batches). Call once at start, before any thread runs
    /// a BLAS call: OpenBLAS's thread count is process-wide and not safe to change mid-call.
    public static func configureForServing(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        let n = environment["FLOWGATE_BLAS_THREADS"].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil } ?? 1
        if threads != n { setThreads(n) }  // unchanged: no write at all (several servers per test process)
        return n
    }

    /// Cores one matrix product may use: 1 (default), or 2 to cut each large product in two halves
    /// computed on the calling thread and a helper thread (`SplitGEMM`). For the trainer: results
    /// are deterministic for a given count but differ from 1 in the last bits. Process-wide; safe
    /// to change at any time.
    public static func setComputeThreads(_ count: Int) {
        precondition(count == 1 || count == 2, "compute threads must be 1 or 2, got \(count)")
        if count == 2 { _ = SplitGEMM.shared }  // starts the helper thread
        SplitGEMM.enabled.store(count == 2, ordering: .relaxed)
    }

    private static let computeThreadsLock = NSLock()

    /// Runs `body` with `count` compute threads and restores the previous count afterwards. Calls
    /// are serialised process-wide, so concurrent tests comparing 1 and 2 threads do not mix.
    public static func withComputeThreads<R>(_ count: Int, _ body: () throws -> R) rethrows -> R {
        computeThreadsLock.lock()
        defer { computeThreadsLock.unlock() }
        let previous = computeThreads
        setComputeThreads(count)
        defer { setComputeThreads(previous) }
        return try body()
    }

    /// Runs `first` on the calling thread and `second` on the compute helper when two compute
    /// threads are on (one after the other when they are not, or when the helper is busy), and
    /// returns when both are done. For independent work, such as the two networks of a twin
    /// critic: one hand-off for the whole of each instead of one per product and layer. A product
    /// issued inside still runs in its two halves, one after the other on its own thread, so the
    /// result is bit for bit that of running `first` and then `second` with the same thread count.
    public static func concurrently(_ first: () -> Void, _ second: () -> Void) {
        SplitGEMM.both { part in part == 0 ? first() : second() }
    }

    /// Cores one matrix product uses (see `setComputeThreads`).
    public static var computeThreads: Int { SplitGEMM.enabled.load(ordering: .relaxed) ? 2 : 1 }

    /// The number of threads OpenBLAS currently uses for one call.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Row-major single-precision GEMM: `C = alpha · op(A) · op(B) + beta · C`, with `op(A)` m×k,
    /// `op(B)` k×n and `C` m×n.
    @inline(__always)
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if SplitGEMM.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc) {
            return
        }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
