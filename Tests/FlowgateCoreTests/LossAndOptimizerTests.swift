import FlowgateTestSupport
import Testing
import FlowgateCore

@Suite("losses, optimiser, RNG")
struct LossAndOptimizerTests {
    @Test("MSE, weighted squared error and InfoNCE gradients match finite differences")
    func lossGradients() {
        let rows = 3, width = 4
        var p = randomArray(rows * width, seed: 1)
        let t = randomArray(rows * width, seed: 2)
        let w: [Float] = [0.2, 1.5, 0.7]
        var g = [Float](repeating: 0, count: rows * width)
        _ = Loss.mse(p, t, count: p.count, grad: &g)
        var err = relativeGradientError(values: &p, analytic: g, epsilon: 1e-2) { v in
            var scratch = [Float](repeating: 0, count: v.count)
            return Double(Loss.mse(v, t, count: v.count, grad: &scratch))
        }
        #expect(err < 1e-3)
        _ = Loss.weightedSquaredError(p, t, weights: w, rows: rows, width: width, grad: &g)
        err = relativeGradientError(values: &p, analytic: g, epsilon: 1e-2) { v in
            var scratch = [Float](repeating: 0, count: v.count)
            return Double(Loss.weightedSquaredError(v, t, weights: w, rows: rows, width: width, grad: &scratch))
        }
        #expect(err < 1e-3)
        var logits = randomArray(rows * 5, seed: 3, std: 3)
        var gl = [Float](repeating: 0, count: logits.count)
        _ = Loss.infoNCE(logits: logits, rows: rows, columns: 5, positive: 0, grad: &gl)
        err = relativeGradientError(values: &logits, analytic: gl, epsilon: 1e-2) { v in
            var scratch = [Float](repeating: 0, count: v.count)
            return Double(Loss.infoNCE(logits: v, rows: rows, columns: 5, positive: 0, grad: &scratch))
        }
        #expect(err < 1e-3)
    }

    @Test("log-softmax is stable for huge logits and InfoNCE has the known value")
    func stability() {
        let logits: [Float] = [1000, 1000, -1000, 0]
        var out = [Float](repeating: 0, count: 4)
        Loss.logSoftmax(logits, rows: 1, columns: 4, into: &out)
        #expect(out.allSatisfy { $0.isFinite || $0 == -.infinity })
        #expect(abs(out[0] - (-0.693_147_2)) < 1e-4)  // Float32 spacing at 1000 is 6e-5
        var g = [Float](repeating: 0, count: 3)
        let uniform = Loss.infoNCE(logits: [0, 0, 0], rows: 1, columns: 3, grad: &g)
        #expect(abs(uniform - 1.098_612_3) < 1e-5)  // log 3
        #expect(abs(g[0] - (1.0 / 3.0 - 1)) < 1e-6 && abs(g[1] - 1.0 / 3.0) < 1e-6)
    }

    @Test("Adam's first step moves each weight by the learning rate against the gradient sign")
    func adamFirstStep() {
        let p = Parameter(name: "w", shape: [3], value: [1, -2, 0.5])
        p.grad = [0.3, -4, 0]
        let opt = Adam(parameters: [p], learningRate: 0.1)
        opt.step()
        #expect(abs(p.value[0] - 0.9) < 1e-4 && abs(p.value[1] - (-1.9)) < 1e-4 && p.value[2] == 0.5)
        #expect(p.grad.allSatisfy { $0 == 0 })
    }

    @Test("AdamW with clipping minimises a quadratic")
    func adamBehaviour() {
        let p = Parameter(name: "w", shape: [2], value: [3, -5])
        let opt = Adam(parameters: [p], learningRate: 0.05, weightDecay: 0.01, maxGradNorm: 1)
        for _ in 0..<2000 {
            p.grad = [2 * (p.value[0] - 1), 2 * (p.value[1] + 2)]
            opt.step()
        }
        #expect(abs(p.value[0] - 1) < 0.05 && abs(p.value[1] + 2) < 0.05)
    }

    /// Adam's first step is scale-free (m̂/√v̂ = sign g), so clipping shows only from the second step
    /// on: a gradient of norm 50 after one of norm 1 must move the weights exactly as its clipped
    /// copy (norm 1, over both parameters together) does, computed here by hand in Double.
    @Test("gradient clipping bounds the update: the step equals Adam's step on the clipped gradient")
    func clippingBoundsTheUpdate() {
        let a = Parameter(name: "a", shape: [2], value: [0.5, -0.25])
        let b = Parameter(name: "b", shape: [1], value: [2])
        let lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8
        let opt = Adam(parameters: [a, b], learningRate: Float(lr), maxGradNorm: 1)
        let g1: [Double] = [0.6, 0, 0.8]  // norm 1: not clipped
        let g2: [Double] = [30, -40, 0]  // norm 50: clipped to [0.6, -0.8, 0]
        var x: [Double] = [0.5, -0.25, 2]
        var unclipped = x
        var m = [Double](repeating: 0, count: 3), v = m, mu = m, vu = m
        for (t, g) in [g1, g2].enumerated() {
            let scale = t == 0 ? 1 : 1 / (50 + 1e-6)
            let step = Double(t + 1)
            for i in 0..<3 {
                let gc = g[i] * scale
                m[i] = b1 * m[i] + (1 - b1) * gc
                v[i] = b2 * v[i] + (1 - b2) * gc * gc
                x[i] -= lr * (m[i] / (1 - pow(b1, step))) / ((v[i] / (1 - pow(b2, step))).squareRoot() + eps)
                mu[i] = b1 * mu[i] + (1 - b1) * g[i]
                vu[i] = b2 * vu[i] + (1 - b2) * g[i] * g[i]
                unclipped[i] -= lr * (mu[i] / (1 - pow(b1, step))) / ((vu[i] / (1 - pow(b2, step))).squareRoot() + eps)
            }
            a.grad = [Float(g[0]), Float(g[1])]
            b.grad = [Float(g[2])]
            opt.step()
        }
        #expect(opt.lastGradNorm == 50)
        let got = (a.value + b.value).map(Double.init)
        for i in 0..<3 {
            #expect(abs(got[i] - x[i]) < 1e-5, "weight \(i): \(got[i]) vs \(x[i]) by hand")
        }
        // The expectation tells clipping apart: without it the first weight would end elsewhere.
        #expect(abs(unclipped[0] - x[0]) > 0.02, "\(unclipped[0]) vs \(x[0])")
    }

    @Test("Adam state round-trips through tensors and resumes bit for bit")
    func adamState() throws {
        func run(_ steps: Int, from: Adam? = nil) -> (Parameter, Adam) {
            let p = Parameter(name: "w", shape: [2], value: [1, 1])
            let o = Adam(parameters: [p], learningRate: 0.01)
            for k in 0..<steps { p.grad = [Float(k), -Float(k) * 0.5]; o.step() }
            return (p, o)
        }
        let (pFull, _) = run(10)
        let (pHalf, oHalf) = run(5)
        let saved = oHalf.stateTensors(prefix: "opt")
        let p2 = Parameter(name: "w", shape: [2], value: pHalf.value)
        let o2 = Adam(parameters: [p2], learningRate: 0.01)
        try o2.loadState(saved, prefix: "opt")
        #expect(o2.stepCount == 5)
        for k in 5..<10 { p2.grad = [Float(k), -Float(k) * 0.5]; o2.step() }
        #expect(p2.value == pFull.value)
    }

    @Test("Polyak averaging moves the target by tau")
    func polyak() {
        let t = Parameter(name: "a", shape: [2], value: [0, 10])
        let s = Parameter(name: "a", shape: [2], value: [1, 0])
        polyakUpdate(target: [t], source: [s], tau: 0.25)
        #expect(t.value == [0.25, 7.5])
    }

    @Test("same seed, same bits; state restores; moments are right")
    func rng() {
        var a = RNG(seed: 123), b = RNG(seed: 123), c = RNG(seed: 124)
        let xa = (0..<100).map { _ in a.next() }
        #expect(xa == (0..<100).map { _ in b.next() })
        #expect(xa != (0..<100).map { _ in c.next() })
        let restored = RNG(stateWords: a.stateWords)
        var r1 = restored, r2 = a
        #expect(r1.next() == r2.next())
        var g = RNG(seed: 7)
        var xs = [Float](repeating: 0, count: 200_000)
        g.fillNormal(&xs)
        let mean = xs.reduce(0, +) / Float(xs.count)
        let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(xs.count)
        #expect(abs(mean) < 0.01 && abs(variance - 1) < 0.02)
        var u = RNG(seed: 8)
        let us = (0..<100_000).map { _ in u.uniform() }
        #expect(us.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(abs(us.reduce(0, +) / 100_000 - 0.5) < 0.01)
        var h = RNG(seed: 9)
        let ints = (0..<10_000).map { _ in h.int(below: 3) }
        #expect(Set(ints) == [0, 1, 2])
    }

    @Test("Fourier time embedding matches its definition and column helpers round-trip")
    func fourierAndColumns() {
        let emb = FourierTimeEmbedding(frequencies: [0.5, -2])
        var out = [Float](repeating: 0, count: 8)
        emb.embed([0.25, 1], batch: 2, into: &out)
        let a = 2 * Float.pi * 0.25 * 0.5
        #expect(abs(out[0] - sinf(a)) < 1e-6 && abs(out[2] - cosf(a)) < 1e-6)
        var cat = [Float](repeating: 0, count: 2 * 5)
        let left: [Float] = [1, 2, 3, 4, 5, 6], right: [Float] = [7, 8, 9, 10]
        left.withUnsafeBufferPointer { l in
            right.withUnsafeBufferPointer { r in
                Columns.concat([(l.baseAddress!, 3), (r.baseAddress!, 2)], rows: 2, into: &cat)
            }
        }
        #expect(cat == [1, 2, 3, 7, 8, 4, 5, 6, 9, 10])
        var back = [Float](repeating: 0, count: 4)
        Columns.slice(cat, rows: 2, total: 5, start: 3, width: 2, into: &back)
        #expect(back == right)
    }

    @Test("rows of a Fourier embedding that share a time are those of that time embedded alone")
    func fourierRepeatedTimes() {
        var rng = RNG(seed: 21)
        let emb = FourierTimeEmbedding(features: 16, scale: 30, rng: &rng)
        let times: [Float] = [0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 0.25, 0]
        var batch = [Float](repeating: .nan, count: times.count * 32)
        emb.embed(times, batch: times.count, into: &batch)
        for (r, t) in times.enumerated() {
            var alone = [Float](repeating: .nan, count: 32)
            emb.embed([t], batch: 1, into: &alone)
            let row = Array(batch[(r * 32)..<((r + 1) * 32)])
            #expect(row.map(\.bitPattern) == alone.map(\.bitPattern), "row \(r), t = \(t)")
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif
