import FlowgateCommon
import FlowgateCore

/// Micro-benchmarks of the dense products every network is built from (`flowgate bench dense`).
///
/// For one `width × width` linear layer and a batch of rows it times, in the same run:
/// the layer's forward pass through `MLP`, its forward + backward pass, and the raw
/// `cblas_sgemm` calls those passes make (one product forward, three forward + backward). Each
/// repeat runs the operation enough times to last at least `minimumSeconds`, and the result is the
/// median over repeats of the time per call.
public enum DenseBenchmark {
    /// One measured shape.
    public struct Result: Sendable, Codable, Equatable {
        public var width: Int
        public var batch: Int
        /// BLAS threads the main measurements ran with.
        public var threads: Int
        public var repeats: Int
        /// Median microseconds per call.
        public var sgemmMicroseconds: Double
        public var mlpForwardMicroseconds: Double
        public var sgemmTrainMicroseconds: Double
        public var mlpForwardBackwardMicroseconds: Double

        /// Floating-point operations of the forward product (2·batch·width²).
        public var forwardFlops: Double { 2 * Double(batch) * Double(width) * Double(width) }
        public var sgemmGflops: Double { forwardFlops / sgemmMicroseconds / 1e3 }
        public var mlpForwardGflops: Double { forwardFlops / mlpForwardMicroseconds / 1e3 }
        public var sgemmTrainGflops: Double { 3 * forwardFlops / sgemmTrainMicroseconds / 1e3 }
        public var mlpForwardBackwardGflops: Double { 3 * forwardFlops / mlpForwardBackwardMicroseconds / 1e3 }
    }

    /// The forward product timed with 1 and with 2 BLAS threads, interleaved repeat by repeat.
    public struct ThreadComparison: Sendable, Codable, Equatable {
        public var width: Int
        public var batch: Int
        public var oneThreadMicroseconds: Double
        public var twoThreadMicroseconds: Double
        /// `twoThreadMicroseconds / oneThreadMicroseconds`: above 1 means 2 threads are slower.
        public var slowdown: Double { twoThreadMicroseconds / oneThreadMicroseconds }
    }

    /// Buffers for one shape, filled with fixed pseudo-random values.
    final class Operands {
        let width: Int, batch: Int
        let x: [Float], w: [Float], dy: [Float]
        var y: [Float], dw: [Float], dx: [Float]
        let mlp: MLP

        init(width: Int, batch: Int) {
            self.width = width
            self.batch = batch
            var rng = RNG(seed: 42)
            x = (0..<(batch * width)).map { _ in rng.uniform(-1, 1) }
            w = (0..<(width * width)).map { _ in rng.uniform(-0.1, 0.1) }
            dy = (0..<(batch * width)).map { _ in rng.uniform(-1, 1) }
            y = [Float](repeating: 0, count: batch * width)
            dw = [Float](repeating: 0, count: width * width)
            dx = [Float](repeating: 0, count: batch * width)
            mlp = MLP(
                spec: MLPSpec(inputDim: width, hiddenDims: [], outputDim: width, outputActivation: .identity),
                prefix: "bench", rng: &rng)
        }

        /// `y = x Wᵀ` (what `MLP.forward` computes before the bias).
        func sgemmForward() {
            x.withUnsafeBufferPointer { xp in
                w.withUnsafeBufferPointer { wp in
                    y.withUnsafeMutableBufferPointer { yp in
                        BLAS.sgemm(
                            transA: false, transB: true, m: batch, n: width, k: width, xp.baseAddress!, lda: width,
                            wp.baseAddress!, ldb: width, beta: 1, yp.baseAddress!, ldc: width)
                    }
                }
            }
        }

        /// The three products of forward + backward: `y = x Wᵀ`, `dW += dyᵀ x`, `dx = dy W`.
        func sgemmTrain() {
            sgemmForward()
            x.withUnsafeBufferPointer { xp in
                w.withUnsafeBufferPointer { wp in
                    dy.withUnsafeBufferPointer { dyp in
                        dw.withUnsafeMutableBufferPointer { dwp in
                            BLAS.sgemm(
                                transA: true, transB: false, m: width, n: width, k: batch, dyp.baseAddress!, lda: width,
                                xp.baseAddress!, ldb: width, beta: 1, dwp.baseAddress!, ldc: width)
                        }
                        dx.withUnsafeMutableBufferPointer { dxp in
                            BLAS.sgemm(
                                transA: false, transB: false, m: batch, n: width, k: width, dyp.baseAddress!, lda: width,
                                wp.baseAddress!, ldb: width, beta: 0, dxp.baseAddress!, ldc: width)
                        }
                    }
                }
            }
        }

        func mlpForward() {
            x.withUnsafeBufferPointer { _ = mlp.forward($0.baseAddress!, batch: batch) }
        }

        func mlpForwardBackward() {
            mlpForward()
            dy.withUnsafeBufferPointer { _ = mlp.backward($0.baseAddress!) }
        }
    }

    /// Microseconds per call of `body`: calls it `iterations` times and divides.
    static func time(iterations: Int, _ body: () -> Void) -> Double {
        let t0 = monotonicSeconds()
        for _ in 0..<iterations { body() }
        return (monotonicSeconds() - t0) * 1e6 / Double(iterations)
    }

    /// How many calls of `body` last at least `seconds` (one untimed warm-up call first).
    static func calibrate(seconds: Double, _ body: () -> Void) -> Int {
        body()
        var n = 1
        while true {
            let t0 = monotonicSeconds()
            for _ in 0..<n { body() }
            let dt = monotonicSeconds() - t0
            if dt >= seconds || n >= 1 << 24 { return n }
            n = dt <= 0 ? n * 10 : max(n + 1, min(n * 10, Int(Double(n) * seconds / dt * 1.2)))
        }
    }

    /// Median microseconds per call of `body` over `repeats` repeats.
    public static func medianMicroseconds(repeats: Int, minimumSeconds: Double, _ body: () -> Void) -> Double {
        let n = calibrate(seconds: minimumSeconds, body)
        let samples = (0..<max(repeats, 1)).map { _ in time(iterations: n, body) }
        return SampleStatistics.median(samples)!
    }

    /// Measures one shape with the current BLAS threading.
    ///
    /// - Parameter fixedIterations: calls per repeat instead of calibrating to `minimumSeconds`
    ///   (gives a repeatable instruction count under `valgrind --tool=callgrind`).
    public static func measure(
        width: Int, batch: Int, repeats: Int, minimumSeconds: Double = 0.05, fixedIterations: Int? = nil
    ) -> Result {
        let o = Operands(width: width, batch: batch)
        // Interleave the four operations inside each repeat so that noise from other processes
        // hits them alike; report the median per operation.
        let ops: [() -> Void] = [o.sgemmForward, o.mlpForward, o.sgemmTrain, o.mlpForwardBackward]
        let iterations = ops.map { op in fixedIterations.map { max($0, 1) } ?? calibrate(seconds: minimumSeconds, op) }
        var samples = [[Double]](repeating: [], count: ops.count)
        for _ in 0..<max(repeats, 1) {
            for (i, op) in ops.enumerated() { samples[i].append(time(iterations: iterations[i], op)) }
        }
        let m = samples.map { SampleStatistics.median($0)! }
        return Result(
            width: width, batch: batch, threads: BLAS.threads, repeats: max(repeats, 1), sgemmMicroseconds: m[0],
            mlpForwardMicroseconds: m[1], sgemmTrainMicroseconds: m[2], mlpForwardBackwardMicroseconds: m[3])
    }

    /// Times the forward product with 1 and 2 BLAS threads, alternating within each repeat; leaves
    /// BLAS at the thread count it found.
    public static func compareThreads(width: Int, batch: Int, repeats: Int, minimumSeconds: Double = 0.05) -> ThreadComparison {
        let before = BLAS.threads
        defer { BLAS.setThreads(before) }
        let o = Operands(width: width, batch: batch)
        BLAS.setThreads(1)
        let n1 = calibrate(seconds: minimumSeconds, o.sgemmForward)
        BLAS.setThreads(2)
        let n2 = calibrate(seconds: minimumSeconds, o.sgemmForward)
        var one: [Double] = [], two: [Double] = []
        for _ in 0..<max(repeats, 1) {
            BLAS.setThreads(1)
            one.append(time(iterations: n1, o.sgemmForward))
            BLAS.setThreads(2)
            two.append(time(iterations: n2, o.sgemmForward))
        }
        return ThreadComparison(
            width: width, batch: batch, oneThreadMicroseconds: SampleStatistics.median(one)!,
            twoThreadMicroseconds: SampleStatistics.median(two)!)
    }
}
