internal import CFlowgateKernels
import FlowgateAlgorithms
import FlowgateCommon
import FlowgateCore

/// `flowgate bench kernels`: each library timed side by side at the exact products a model's
/// action selection issues (recorded from real passes of `ActionSelector` on the model), plus the
/// fused layer forms.
///
/// Per product shape it times (this thread's CPU time, so other processes' load does not count),
/// interleaved repeat by repeat:
/// OpenBLAS `cblas_sgemm`, BLIS `bli_sgemm` (typed API; BLIS is loaded privately, so its BLAS
/// symbols never replace OpenBLAS's), libxsmm's JIT kernel for the fixed shape, and the whole layer
/// step before and after `DenseKernels`: forward = product + bias + activation (OpenBLAS with a
/// bias copy and the Swift activation, against libxsmm or OpenBLAS with the fused AVX2 epilogue);
/// input gradient = activation backward + `dx = dy W`.
public enum KernelBenchmark {
    /// Where each library's entry point lives (dladdr), so the report shows what was really called.
    public struct Libraries: Codable, Sendable {
        public var openblas: String
        public var blis: String
        public var libxsmm: String
        public var fusedEpilogues: Bool
    }

    /// One measured shape.
    public struct Row: Codable, Sendable {
        public var shape: ProductShape
        /// Observations per request whose passes issued this shape, and the calls per request.
        public var observations: [Int]
        public var callsPerRequest: [Int]
        /// Median microseconds per product.
        public var openblasMicroseconds: Double
        public var blisMicroseconds: Double?
        public var xsmmMicroseconds: Double?
        /// The layer step (product + epilogue) as before (`FLOWGATE_KERNELS=openblas`) and as now.
        public var layerBeforeMicroseconds: Double
        public var layerAfterMicroseconds: Double
        /// Largest |difference| from OpenBLAS's product.
        public var blisMaxError: Double?
        public var xsmmMaxError: Double?
        /// What `DenseKernels` picks for this shape.
        public var chosen: String

        public var flops: Double { 2 * Double(shape.rows) * Double(shape.inner) * Double(shape.outputs) }
        public var openblasGflops: Double { flops / openblasMicroseconds / 1e3 }
        public var blisGflops: Double? { blisMicroseconds.map { flops / $0 / 1e3 } }
        public var xsmmGflops: Double? { xsmmMicroseconds.map { flops / $0 / 1e3 } }
        public var layerSpeedup: Double { layerBeforeMicroseconds / layerAfterMicroseconds }
    }

    /// The products one request of `observations` observations issues through `selector` at
    /// `settings` (seeded, so the same every run), with counts.
    public static func products(
        selector: ActionSelector, observationDim: Int, observations: Int, settings: SelectionSettings,
        observationSource: (Int) -> [Float]
    ) -> [ProductShape: Int] {
        let obs = observationSource(observations)
        precondition(obs.count == observations * observationDim)
        let seeds = (0..<observations).map { UInt64($0 + 1) }
        _ = selector.act(observations: obs, count: observations, seeds: seeds, settings: settings)  // warm
        return ProductRecorder.record {
            _ = selector.act(observations: obs, count: observations, seeds: seeds, settings: settings)
        }
    }

    /// Loads BLIS and reports where each library's code lives; throws when BLIS is missing.
    public static func libraries() throws -> Libraries {
        var message = [CChar](repeating: 0, count: 512)
        guard fgk_blis_load(&message, message.count) != 0 else {
            throw KernelBenchmarkError(message: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        func path(_ p: UnsafeRawPointer?) -> String { String(cString: fgk_library_of(p)) }
        return Libraries(
            openblas: path(fgk_openblas_entry()), blis: path(fgk_blis_entry()),
            libxsmm: path(fgk_xsmm_entry()) + " (static; kernels JIT-generated)", fusedEpilogues: DenseKernels.hasFusedEpilogues)
    }

    /// Operands of one shape with fixed pseudo-random values, and the timed operations.
    final class Operands {
        let shape: ProductShape
        let activation: Activation
        let a: [Float], w: [Float], wt: [Float], bias: [Float], pre: [Float]
        var c: [Float], z: [Float], h: [Float], g: [Float]
        let kernel: SmallKernel?

        init(_ shape: ProductShape) {
            self.shape = shape
            activation = Activation(rawValue: shape.activation) ?? .identity
            var rng = RNG(seed: 7)
            let r = shape.rows, k = shape.inner, n = shape.outputs
            a = (0..<(r * k)).map { _ in rng.uniform(-1, 1) }
            // Forward: W is [n, k] (row-major, `x Wᵀ`); input gradient: W is [k, n] (`dy W`).
            w = (0..<(n * k)).map { _ in rng.uniform(-0.2, 0.2) }
            var t = [Float](repeating: 0, count: n * k)
            if shape.kind == "forward" { for o in 0..<n { for i in 0..<k { t[i * n + o] = w[o * k + i] } } }
            wt = t
            bias = (0..<n).map { _ in rng.uniform(-0.1, 0.1) }
            pre = (0..<(r * k)).map { _ in rng.uniform(-2, 2) }
            c = [Float](repeating: 0, count: r * n)
            z = c
            h = c
            g = a
            // Column-major `cᵀ (n × r) = B (n × k) · aᵀ (k × r)`: B is Wᵀ's transpose (`wt`) forward
            // and W itself for the input gradient; the same kernel shape either way.
            kernel = DenseKernels.smallKernel(m: n, n: r, k: k, lda: n, ldb: k, ldc: n, beta: 0)
        }

        var forward: Bool { shape.kind == "forward" }

        func openblas() {
            let r = shape.rows, k = shape.inner, n = shape.outputs, fwd = forward
            a.withUnsafeBufferPointer { ap in
                w.withUnsafeBufferPointer { wp in
                    c.withUnsafeMutableBufferPointer { cp in
                        BLAS.sgemm(
                            transA: false, transB: fwd, m: r, n: n, k: k, ap.baseAddress!, lda: k, wp.baseAddress!,
                            ldb: fwd ? k : n, beta: 0, cp.baseAddress!, ldc: n)
                    }
                }
            }
        }

        func blis() {
            let r = shape.rows, k = shape.inner, n = shape.outputs, fwd = forward
            a.withUnsafeBufferPointer { ap in
                w.withUnsafeBufferPointer { wp in
                    c.withUnsafeMutableBufferPointer { cp in
                        fgk_blis_sgemm(
                            0, fwd ? 1 : 0, r, n, k, 1, ap.baseAddress!, k, wp.baseAddress!, fwd ? k : n, 0, cp.baseAddress!, n)
                    }
                }
            }
        }

        func xsmm() {
            guard let kernel else { return }
            a.withUnsafeBufferPointer { ap in
                (forward ? wt : w).withUnsafeBufferPointer { wp in
                    c.withUnsafeMutableBufferPointer { cp in kernel(wp.baseAddress!, ap.baseAddress!, cp.baseAddress!) }
                }
            }
        }

        /// The layer step as `MLP` computes it in `mode`.
        func layer(_ mode: DenseKernels.Mode) {
            let r = shape.rows, k = shape.inner, n = shape.outputs, act = activation
            if forward {
                z.withUnsafeMutableBufferPointer { zp in
                    h.withUnsafeMutableBufferPointer { hp in
                        bias.withUnsafeBufferPointer { bp in
                            if mode == .openblas {
                                // Before: bias copied into z, product accumulated, Swift activation.
                                for row in 0..<r { (zp.baseAddress! + row * n).update(from: bp.baseAddress!, count: n) }
                                a.withUnsafeBufferPointer { ap in
                                    w.withUnsafeBufferPointer { wp in
                                        BLAS.sgemm(
                                            transA: false, transB: true, m: r, n: n, k: k, ap.baseAddress!, lda: k,
                                            wp.baseAddress!, ldb: k, beta: 1, zp.baseAddress!, ldc: n)
                                    }
                                }
                                act.forward(zp.baseAddress!, hp.baseAddress!, count: r * n)
                            } else {
                                a.withUnsafeBufferPointer { ap in
                                    if let kernel, DenseKernels.usesSmallKernel(rows: r, outputs: n, inner: k) {
                                        wt.withUnsafeBufferPointer { kernel($0.baseAddress!, ap.baseAddress!, zp.baseAddress!) }
                                    } else {
                                        w.withUnsafeBufferPointer { wp in
                                            BLAS.sgemm(
                                                transA: false, transB: true, m: r, n: n, k: k, ap.baseAddress!, lda: k,
                                                wp.baseAddress!, ldb: k, beta: 0, zp.baseAddress!, ldc: n)
                                        }
                                    }
                                }
                                DenseKernels.biasAndActivation(
                                    act, z: zp.baseAddress!, bias: bp.baseAddress!, h: hp.baseAddress!, rows: r, width: n,
                                    mode: .auto)
                            }
                        }
                    }
                }
            } else {
                // Input gradient: dy (here `a`) through the activation's backward at `pre`, then dy W.
                g.withUnsafeMutableBufferPointer { gp in
                    pre.withUnsafeBufferPointer { xp in
                        a.withUnsafeBufferPointer { ap in
                            if mode == .openblas {
                                act.backward(x: xp.baseAddress!, y: xp.baseAddress!, dy: ap.baseAddress!, dx: gp.baseAddress!, count: r * k)
                            } else {
                                DenseKernels.activationBackward(
                                    act, x: xp.baseAddress!, y: xp.baseAddress!, dy: ap.baseAddress!, dx: gp.baseAddress!, count: r * k,
                                    mode: .auto)
                            }
                        }
                    }
                    c.withUnsafeMutableBufferPointer { cp in
                        w.withUnsafeBufferPointer { wp in
                            if mode == .auto, let kernel, DenseKernels.usesSmallKernel(rows: r, outputs: n, inner: k) {
                                kernel(wp.baseAddress!, gp.baseAddress!, cp.baseAddress!)
                            } else {
                                BLAS.sgemm(
                                    transA: false, transB: false, m: r, n: n, k: k, gp.baseAddress!, lda: k, wp.baseAddress!,
                                    ldb: n, beta: 0, cp.baseAddress!, ldc: n)
                            }
                        }
                    }
                }
            }
        }

        /// Largest |difference| of `body`'s product from OpenBLAS's.
        func maxError(_ body: () -> Void) -> Double {
            openblas()
            let reference = c
            c = [Float](repeating: .nan, count: c.count)
            body()
            var e: Double = 0
            for i in 0..<c.count { e = max(e, Double(abs(c[i] - reference[i]))) }
            return e.isNaN ? .infinity : e
        }
    }

    /// CPU time of this thread per call, in microseconds: on a shared machine, time the thread was
    /// descheduled is not counted (wall time under a load average of 16 on 2 cores varied 10×).
    static func cpuMicroseconds(iterations: Int, _ body: () -> Void) -> Double {
        let t0 = threadCPUSeconds()
        for _ in 0..<iterations { body() }
        return (threadCPUSeconds() - t0) * 1e6 / Double(iterations)
    }

    /// Times one shape: every operation calibrated to `minimumSeconds`, then `repeats` rounds
    /// running each once, in the same order; medians.
    public static func measure(
        _ shape: ProductShape, observations: [Int], callsPerRequest: [Int], repeats: Int, minimumSeconds: Double,
        fixedIterations: Int? = nil
    ) -> Row {
        let o = Operands(shape)
        let hasKernel = o.kernel != nil
        var ops: [() -> Void] = [o.openblas, o.blis, { o.layer(.openblas) }, { o.layer(.auto) }]
        if hasKernel { ops.append(o.xsmm) }
        let iterations = ops.map { op in fixedIterations.map { max($0, 1) } ?? DenseBenchmark.calibrate(seconds: minimumSeconds, op) }
        var samples = [[Double]](repeating: [], count: ops.count)
        for _ in 0..<max(repeats, 1) {
            for (i, op) in ops.enumerated() { samples[i].append(cpuMicroseconds(iterations: iterations[i], op)) }
        }
        let m = samples.map { SampleStatistics.median($0)! }
        let small = DenseKernels.usesSmallKernel(rows: shape.rows, outputs: shape.outputs, inner: shape.inner) && hasKernel
        return Row(
            shape: shape, observations: observations, callsPerRequest: callsPerRequest, openblasMicroseconds: m[0],
            blisMicroseconds: m[1], xsmmMicroseconds: hasKernel ? m[4] : nil, layerBeforeMicroseconds: m[2],
            layerAfterMicroseconds: m[3], blisMaxError: o.maxError(o.blis), xsmmMaxError: hasKernel ? o.maxError(o.xsmm) : nil,
            chosen: (small ? "libxsmm" : "OpenBLAS") + (DenseKernels.hasFusedEpilogues ? " + AVX2 epilogue" : ""))
    }
}

/// BLIS could not be loaded for `bench kernels`.
public struct KernelBenchmarkError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
