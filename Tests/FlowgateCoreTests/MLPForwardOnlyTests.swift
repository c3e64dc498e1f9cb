import FlowgateTestSupport
import Testing

@testable import FlowgateCore

/// Forward-only networks (what a server's policy and critic run) and the weights' shared transposed
/// copies: the same outputs as the full network, bit for bit, in less memory.
@Suite("Forward-only MLPs and shared transposed weights", .serialized)
struct MLPForwardOnlyTests {
    /// (activation, LayerNorm, output activation, hidden width).
    static let configurations: [(Activation, Bool, Activation, Int)] = [
        (.relu, false, .identity, 64), (.silu, false, .identity, 256), (.silu, true, .identity, 64), (.relu, true, .tanh, 48),
    ]

    static func network(_ index: Int) -> MLP {
        let (act, ln, out, width) = configurations[index]
        let spec = MLPSpec(inputDim: 18, hiddenDims: [width, width, width], outputDim: 3, activation: act, layerNorm: ln, outputActivation: out)
        var rng = RNG(seed: 11 + UInt64(index))
        return MLP(spec: spec, prefix: "net", rng: &rng)
    }

    @Test(
        "a forward-only replica computes what the full network computes, bit for bit",
        arguments: 0..<4, [1, 5, 64, 256])
    func sameOutputs(_ index: Int, _ batch: Int) {
        let full = Self.network(index)
        let forwardOnly = full.replica(forwardOnly: true)
        let x = randomArray(batch * 18, seed: 5 + UInt64(batch))
        let expected: [Float] = full.forward(x, batch: batch)
        let got: [Float] = forwardOnly.forward(x, batch: batch)
        #expect(got == expected)
        // Again at a smaller batch after the larger one (buffers reused, not regrown), and the
        // first-layer-linear entry point (the energy check's shared first layer).
        let small = max(1, batch / 3)
        let xs: [Float] = Array(x.prefix(small * 18))
        let expectedSmall: [Float] = full.forward(xs, batch: small)
        let gotSmall: [Float] = forwardOnly.forward(xs, batch: small)
        #expect(gotSmall == expectedSmall)
        let w0 = full.weights[0].value, b0 = full.biases[0].value
        let width = full.spec.dims[1]
        func fill(_ z: UnsafeMutablePointer<Float>) {
            for r in 0..<batch {
                for o in 0..<width {
                    var s = b0[o]
                    for i in 0..<18 { s += x[r * 18 + i] * w0[o * 18 + i] }
                    z[r * width + o] = s
                }
            }
        }
        let viaFull = Array(UnsafeBufferPointer(start: full.forward(batch: batch, firstLayerLinear: fill), count: batch * 3))
        let viaForwardOnly = Array(UnsafeBufferPointer(start: forwardOnly.forward(batch: batch, firstLayerLinear: fill), count: batch * 3))
        #expect(viaForwardOnly == viaFull)
    }

    @Test("a forward-only replica holds two layers' outputs; replicas share one transposed copy of each weight")
    func memory() {
        let proto = Self.network(0)  // 18 → 64 → 64 → 64 → 3
        let batch = 32
        let x = randomArray(batch * 18, seed: 3)
        // The prototype's pass makes the transposed copies (in auto mode, for libxsmm's kernels).
        _ = proto.forward(x, batch: batch)
        let full = proto.replica()
        let forwardOnly = proto.replica(forwardOnly: true)
        let second = proto.replica(forwardOnly: true)

        var before = FloatBuffer.bytesOnThisThread
        let reference: [Float] = full.forward(x, batch: batch)
        let fullBytes = FloatBuffer.bytesOnThisThread - before

        before = FloatBuffer.bytesOnThisThread
        #expect(forwardOnly.forward(x, batch: batch) == reference)
        let forwardOnlyBytes = FloatBuffer.bytesOnThisThread - before
        // Two buffers of batch × 64 (each made with room for one float): nothing per layer, no
        // input copy, and no transposed weights of its own.
        #expect(forwardOnlyBytes == 2 * (batch * 64 - 1) * MemoryLayout<Float>.stride)
        #expect(forwardOnlyBytes * 3 < fullBytes, "forward-only \(forwardOnlyBytes) bytes, full \(fullBytes)")

        before = FloatBuffer.bytesOnThisThread
        #expect(second.forward(x, batch: batch) == reference)
        #expect(FloatBuffer.bytesOnThisThread - before == forwardOnlyBytes)
    }

    @Test("a changed weight gives every replica the new transposed copy")
    func transposedFollowsTheValue() {
        let proto = Self.network(1)
        let a = proto.replica(forwardOnly: true), b = proto.replica(forwardOnly: true)
        let x = randomArray(16 * 18, seed: 9)
        let old: [Float] = a.forward(x, batch: 16)
        #expect(b.forward(x, batch: 16) == old)
        // As an optimiser step would (never while forward passes run).
        proto.weights[1].value.withUnsafeMutableBufferPointer { w in for i in w.indices { w[i] *= 0.5 } }
        let expected: [Float] = proto.replica().forward(x, batch: 16)
        #expect(expected != old)
        #expect(a.forward(x, batch: 16) == expected)
        #expect(b.forward(x, batch: 16) == expected)
        let t = proto.weights[1].transposed()
        let (rows, cols) = (proto.weights[1].shape[0], proto.weights[1].shape[1])
        #expect(t.version == proto.weights[1].version)
        #expect(t.pointer[3 * rows + 7] == proto.weights[1].value[7 * cols + 3])
    }

    @Test("gradient storage is made on the first write, never by forward passes")
    func gradientsOnDemand() {
        let net = Self.network(0)
        let x = randomArray(4 * 18, seed: 1)
        _ = net.forward(x, batch: 4)
        _ = net.replica(forwardOnly: true).forward(x, batch: 4)
        #expect(net.parameters.allSatisfy { !$0.holdsGradient })
        #expect(net.parameters[0].grad == [Float](repeating: 0, count: net.parameters[0].count))
        _ = net.backward(randomArray(4 * 3, seed: 2))
        #expect(net.parameters.allSatisfy { $0.holdsGradient })
        #expect(net.parameters[0].grad.contains { $0 != 0 })
    }

    @Test("backward on a forward-only network stops with a message")
    func backwardRefused() async {
        await #expect(processExitsWith: .failure) {
            let net = MLPForwardOnlyTests.network(0).replica(forwardOnly: true)
            _ = net.forward(randomArray(2 * 18, seed: 1), batch: 2)
            _ = net.backward(randomArray(2 * 3, seed: 2))
        }
    }
}
