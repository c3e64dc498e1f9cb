internal import CFlowgateKernels
import Foundation
import Synchronization

/// Which code computes an `MLP` layer's products and its bias + activation epilogue.
///
/// Measured at the exact shapes the server issues (`flowgate bench kernels`, docs/benchmarks.md):
/// libxsmm's JIT kernels beat OpenBLAS on the small products (few rows, or narrow layers), and
/// OpenBLAS keeps the rest (narrow outputs such as a critic's single Q column, and large products).
/// The bias add and activation run as one AVX2 + FMA pass after the product when the CPU has them
/// (checked at run time; the Swift code otherwise). Both choices are fixed for a given shape and
/// CPU, so results are deterministic, and they agree with the OpenBLAS path to float rounding
/// (`DenseKernelsTests`).
///
/// `FLOWGATE_KERNELS=openblas` (read by the executable through `configure(environment:)`) turns
/// both off, for A/B measurements with one binary.
public enum DenseKernels {
    /// What computes the products and epilogues.
    public enum Mode: Int, Sendable, CaseIterable {
        /// libxsmm for the shapes where it wins, OpenBLAS elsewhere; fused AVX2 epilogues.
        case auto = 0
        /// Everything on OpenBLAS and the Swift elementwise code (before issue 12's kernels).
        case openblas = 1
    }

    private static let storedMode = Atomic<Int>(Mode.auto.rawValue)

    /// The process-wide mode. Set it before networks run (a change takes effect at the next product).
    public static var mode: Mode {
        get { Mode(rawValue: storedMode.load(ordering: .relaxed)) ?? .auto }
        set { storedMode.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// The mode `FLOWGATE_KERNELS` asks for (`auto` or `openblas`, any case), nil when unset;
    /// throws naming the variable on anything else.
    public static func requestedMode(environment: [String: String]) throws -> Mode? {
        guard let text = environment["FLOWGATE_KERNELS"] else { return nil }
        switch text.lowercased() {
        case "auto": return .auto
        case "openblas": return .openblas
        default: throw KernelModeError(value: text)
        }
    }

    /// Sets `mode` from `FLOWGATE_KERNELS` (unset leaves it) and returns it.
    @discardableResult
    public static func configure(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Mode {
        if let m = try requestedMode(environment: environment) { mode = m }
        return mode
    }

    /// Initialises libxsmm now (in `auto` mode; nothing otherwise) and gives back the memory its
    /// fixed-size tables hold only as zeros: the dispatch registry and its descriptor keys are
    /// sized for 131072 kernels when the library is built (about 10 MB, cleared at start), and a
    /// server dispatches a few dozen. Returns the bytes released. Call it once at start-up, before
    /// other threads compute (`fgk_xsmm_init_compact`); later calls do nothing.
    @discardableResult
    public static func prepareForServing() -> Int {
        guard mode == .auto else { return 0 }
        return max(0, fgk_xsmm_init_compact())
    }

    /// Releases the resident pages of `[start, start + length)` that hold only zeros (private
    /// anonymous, page-aligned memory; `fgk_release_zero_pages`): returns the bytes released, or
    /// nil for a misaligned start.
    public static func releaseZeroPages(_ start: UnsafeMutableRawPointer, length: Int) -> Int? {
        let r = fgk_release_zero_pages(start, length)
        return r < 0 ? nil : r
    }

    /// Most rows a libxsmm kernel is used for; larger products go to OpenBLAS.
    public static let maximumSmallRows = 256

    /// Whether a product with `rows` rows (the batch), `outputs` columns and inner dimension
    /// `inner` runs on libxsmm in `auto` mode. Measured at the products the server issues on an
    /// idle machine (`flowgate bench kernels`, docs/benchmarks.md, thread CPU time, one core):
    /// libxsmm runs 106–116 GFLOP/s wherever the output is 32 or more wide, against OpenBLAS's
    /// 54–102 (1.1–2.0×, the most at 16–64 rows); narrow outputs (1 or 3 columns: Q heads, actions)
    /// run 3–10× faster on OpenBLAS. (An earlier rule kept inner widths above 64 on OpenBLAS, from
    /// measurements taken under a load average of 16, where the two were level.)
    @inline(__always)
    public static func usesSmallKernel(rows: Int, outputs: Int, inner: Int) -> Bool {
        rows >= 1 && rows <= maximumSmallRows && outputs >= 16 && inner >= 1
    }

    /// Whether the fused AVX2 + FMA epilogues run on this CPU.
    public static var hasFusedEpilogues: Bool { fgk_has_avx2_fma() != 0 }

    /// The C code of an activation the fused epilogue handles, else nil.
    @inline(__always)
    static func code(_ activation: Activation) -> Int32? {
        switch activation {
        case .identity: return Int32(FGK_IDENTITY)
        case .relu: return Int32(FGK_RELU)
        case .silu: return Int32(FGK_SILU)
        case .tanh: return nil
        }
    }

    /// Per row of `z` (`rows × width`): `z += bias`, then `h = act(z)` (h may be z), in one pass
    /// when the CPU has AVX2 + FMA and `mode` is `auto`, else as a bias loop and `Activation.forward`.
    @inline(__always)
    public static func biasAndActivation(
        _ activation: Activation, z: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>,
        h: UnsafeMutablePointer<Float>, rows: Int, width: Int, mode: Mode = DenseKernels.mode
    ) {
        // Narrow rows (a Q head, an action: 1–3 wide) are faster in the plain loop (bench kernels).
        if mode == .auto, width >= 8, let c = code(activation), fgk_bias_act(c, z, bias, h, rows, width) != 0 { return }
        for r in 0..<rows {
            let row = z + r * width
            for j in 0..<width { row[j] += bias[j] }
        }
        activation.forward(z, h, count: rows * width)
    }

    /// `dx[i] = dy[i] · act'(x[i])` (dx may be dy), given the pre-activation `x` and output `y`:
    /// one AVX2 + FMA pass for ReLU and SiLU when available and `mode` is `auto`, else
    /// `Activation.backward`.
    @inline(__always)
    public static func activationBackward(
        _ activation: Activation, x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>, count: Int, mode: Mode = DenseKernels.mode
    ) {
        if mode == .auto, activation == .relu || activation == .silu,
            fgk_act_backward(code(activation)!, x, dy, dx, count) != 0
        {
            return
        }
        activation.backward(x: x, y: y, dy: dy, dx: dx, count: count)
    }

    /// Column-major `C (m × n) = A (m × k) · B (k × n) + beta · C` with libxsmm's kernel for exactly
    /// this shape (JIT-generated on first request; libxsmm keeps its registry thread-safe), or nil
    /// when it cannot make one.
    public static func smallKernel(m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int, beta: Float) -> SmallKernel? {
        guard
            let p = fgk_xsmm_dispatch(
                Int32(m), Int32(n), Int32(k), Int32(lda), Int32(ldb), Int32(ldc), beta)
        else { return nil }
        return SmallKernel(entry: p)
    }
}

/// `FLOWGATE_KERNELS` holds something other than `auto` or `openblas`.
public struct KernelModeError: Error, CustomStringConvertible {
    public let value: String
    public var description: String { "FLOWGATE_KERNELS must be 'auto' or 'openblas', got '\(value)'" }
}

/// One JIT-generated libxsmm kernel (a fixed shape, leading dimensions and beta).
public struct SmallKernel: @unchecked Sendable {
    let entry: UnsafeRawPointer

    /// Runs the kernel: column-major `C = A · B + beta · C`.
    @inline(__always)
    public func callAsFunction(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        fgk_xsmm_run(entry, a, b, c)
    }
}

/// The kernels of one product shape by row count, filled on first use and kept (one `MLP` layer's
/// forward or input-gradient product). Owned by one network instance, so by one thread at a time.
final class SmallKernelTable {
    /// Column-major `C (m × rows) = A (m × k) · B (k × rows)`, beta 0, with `lda`, `ldb`, `ldc`.
    let m: Int, k: Int, lda: Int, ldb: Int, ldc: Int
    private let slots: UnsafeMutablePointer<UnsafeRawPointer?>
    private let tried: UnsafeMutablePointer<Bool>

    init(m: Int, k: Int, lda: Int, ldb: Int, ldc: Int) {
        self.m = m
        self.k = k
        self.lda = lda
        self.ldb = ldb
        self.ldc = ldc
        let n = DenseKernels.maximumSmallRows + 1
        slots = .allocate(capacity: n)
        slots.initialize(repeating: nil, count: n)
        tried = .allocate(capacity: n)
        tried.initialize(repeating: false, count: n)
    }

    deinit {
        slots.deallocate()
        tried.deallocate()
    }

    /// The kernel for `rows` rows, or nil when this shape stays on OpenBLAS (mode, size or a
    /// libxsmm refusal).
    @inline(__always)
    func kernel(rows: Int, mode: DenseKernels.Mode) -> SmallKernel? {
        guard mode == .auto, DenseKernels.usesSmallKernel(rows: rows, outputs: m, inner: k) else { return nil }
        if !tried[rows] {
            tried[rows] = true
            slots[rows] = DenseKernels.smallKernel(m: m, n: rows, k: k, lda: lda, ldb: ldb, ldc: ldc, beta: 0)?.entry
        }
        return slots[rows].map { SmallKernel(entry: $0) }
    }
}

/// One matrix product an `MLP` issued (for `flowgate bench kernels`, which times each library at
/// exactly the shapes a real pass produced).
public struct ProductShape: Hashable, Sendable, Codable, Comparable {
    /// `forward` (`z = x Wᵀ`, then bias and activation) or `inputGradient` (`dx = dy W` after the
    /// activation's backward).
    public var kind: String
    public var rows: Int
    /// Inner dimension of the product (the layer's input width for `forward`, output width for
    /// `inputGradient`).
    public var inner: Int
    /// Columns of the result.
    public var outputs: Int
    /// The layer's activation (fused into the epilogue, or its backward before the product).
    public var activation: String

    public init(kind: String, rows: Int, inner: Int, outputs: Int, activation: String) {
        self.kind = kind
        self.rows = rows
        self.inner = inner
        self.outputs = outputs
        self.activation = activation
    }

    public static func < (a: ProductShape, b: ProductShape) -> Bool {
        (a.kind, a.rows, a.inner, a.outputs, a.activation) < (b.kind, b.rows, b.inner, b.outputs, b.activation)
    }
}

/// Counts the products every `MLP` issues while recording is on (process-wide; off by default,
/// when it costs one relaxed atomic load per product).
public enum ProductRecorder {
    static let active = Atomic<Bool>(false)
    private static let lock = NSLock()
    nonisolated(unsafe) private static var counts: [ProductShape: Int] = [:]

    /// Runs `body` with recording on and returns the products issued (by any thread) with counts.
    public static func record(_ body: () throws -> Void) rethrows -> [ProductShape: Int] {
        lock.lock()
        counts = [:]
        lock.unlock()
        active.store(true, ordering: .relaxed)
        defer { active.store(false, ordering: .relaxed) }
        try body()
        lock.lock()
        defer { lock.unlock() }
        return counts
    }

    @inline(__always)
    static func note(_ kind: String, rows: Int, inner: Int, outputs: Int, activation: Activation) {
        guard active.load(ordering: .relaxed) else { return }
        lock.lock()
        counts[ProductShape(kind: kind, rows: rows, inner: inner, outputs: outputs, activation: activation.rawValue), default: 0] += 1
        lock.unlock()
    }
}
