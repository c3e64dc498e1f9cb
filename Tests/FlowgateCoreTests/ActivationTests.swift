import FlowgateCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("vectorised activations")
struct ActivationTests {
    @Test("SIMD exp is within 2 ulp of libm's expf over the float32 range, and saturates finitely")
    func expAccuracy() {
        var worst: Float = 0
        var x: Float = -87.3
        while x <= 88.3 {
            let got = SIMDMath.exp(SIMDMath.V(repeating: x))[3]
            let want = expf(x)
            worst = max(worst, abs(got - want) / want)
            x += 0.0173
        }
        #expect(worst <= 2.5e-7, "largest relative error \(worst)")
        let edges = SIMDMath.exp(SIMDMath.V(-200, -87.33654, 0, 1, 88.376, 200, -1, .infinity))
        #expect(edges[0] >= 0 && edges[0] < 1.2e-38)
        #expect(edges[2] == 1 && abs(edges[3] - expf(1)) <= 2.5e-7 * expf(1))
        #expect(abs(edges[4] - expf(88.376)) <= 2.5e-7 * expf(88.376))
        // Clamped: never inf, never NaN, even for +inf.
        #expect(edges[5].isFinite && edges[5] >= edges[4] * 0.999 && edges[7] == edges[5])
    }

    @Test("SiLU forward and backward match the scalar formulas, and an element's value does not depend on its position")
    func siluMatchesScalar() {
        let n = 29  // three blocks of eight and a tail of five
        let x = (0..<n).map { Float($0 - 14) * 0.77 }
        let dy = (0..<n).map { Float(($0 * 7) % 5) - 2 }
        var y = [Float](repeating: 0, count: n), dx = [Float](repeating: 0, count: n)
        Activation.silu.forward(x, &y, count: n)
        Activation.silu.backward(x: x, y: y, dy: dy, dx: &dx, count: n)
        for i in 0..<n {
            let s = 1 / (1 + expf(-x[i]))
            #expect(abs(y[i] - x[i] * s) <= 1e-6 * max(1, abs(y[i])), "forward \(i)")
            #expect(abs(dx[i] - dy[i] * s * (1 + x[i] * (1 - s))) <= 1e-6 * max(1, abs(dx[i])), "backward \(i)")
        }
        // The same values three places later: the tail and the blocks compute alike.
        let shifted = [Float](repeating: 0.5, count: 3) + x
        var y2 = [Float](repeating: 0, count: n + 3)
        Activation.silu.forward(shifted, &y2, count: n + 3)
        #expect(Array(y2[3...]) == y)
    }
}
