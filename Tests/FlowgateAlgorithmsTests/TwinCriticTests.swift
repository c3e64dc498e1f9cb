import FlowgateCore
import FlowgateTestSupport
import Foundation
import Testing

@testable import FlowgateAlgorithms

/// The twin critic runs its two networks on the two compute threads; the numbers must be those of
/// running them in turn, bit for bit, so that a trainer run does not change with this hand-off.
@Suite("Twin critic on two cores", .serialized)
struct TwinCriticTests {
    /// Hidden 256 at batch 64: the hidden products are large enough to be cut in halves.
    static let spec = CriticSpec(observationDim: 11, actionDim: 3, hiddenDims: [256, 256])
    static let batch = 64

    /// Outputs and parameter gradients after one forward and backward.
    static func run(_ critic: TwinCritic, inTurn: Bool, obs: [Float], act: [Float], dq: [Float]) -> [Float] {
        for p in critic.parameters { p.zeroGrad() }
        var out: [Float] = []
        obs.withUnsafeBufferPointer { o in
            act.withUnsafeBufferPointer { a in
                dq.withUnsafeBufferPointer { g in
                    if inTurn {
                        // What `evaluate` and `backward` did before they used both cores.
                        var input = [Float](repeating: 0, count: batch * 14)
                        for r in 0..<batch {
                            for j in 0..<11 { input[r * 14 + j] = o[r * 11 + j] }
                            for j in 0..<3 { input[r * 14 + 11 + j] = a[r * 3 + j] }
                        }
                        out += critic.q1.forward(input, batch: batch)
                        out += critic.q2.forward(input, batch: batch)
                        critic.q1.backward(g.baseAddress!, computeInputGradient: false)
                        critic.q2.backward(g.baseAddress! + batch, computeInputGradient: false)
                    } else {
                        let (q1, q2) = critic.evaluate(obs: o.baseAddress!, actions: a.baseAddress!, batch: batch)
                        out += Array(UnsafeBufferPointer(start: q1, count: batch))
                        out += Array(UnsafeBufferPointer(start: q2, count: batch))
                        critic.backward(dq1: g.baseAddress!, dq2: g.baseAddress! + batch)
                    }
                }
            }
        }
        for p in critic.parameters { out += p.grad }
        return out
    }

    @Test("two compute threads: outputs and gradients equal the networks run in turn, bit for bit")
    func sameBitsAsInTurn() {
        var rng = RNG(seed: 11)
        let critic = TwinCritic(spec: Self.spec, rng: &rng)
        let obs = randomArray(Self.batch * 11, seed: 1), act = randomArray(Self.batch * 3, seed: 2)
        let dq = randomArray(2 * Self.batch, seed: 3, std: 0.01)
        BLAS.withComputeThreads(2) {
            let inTurn = Self.run(critic, inTurn: true, obs: obs, act: act, dq: dq)
            let together = Self.run(critic, inTurn: false, obs: obs, act: act, dq: dq)
            #expect(inTurn.count == together.count)
            #expect(zip(inTurn, together).filter { $0.bitPattern != $1.bitPattern }.count == 0)
            #expect(inTurn.contains { $0 != 0 })
        }
        // With one thread, the same again (nothing to share, nothing cut).
        BLAS.withComputeThreads(1) {
            let inTurn = Self.run(critic, inTurn: true, obs: obs, act: act, dq: dq)
            let together = Self.run(critic, inTurn: false, obs: obs, act: act, dq: dq)
            #expect(zip(inTurn, together).filter { $0.bitPattern != $1.bitPattern }.count == 0)
        }
    }

    @Test("BLAS.concurrently runs its second body on the helper with two compute threads, in turn with one")
    func secondBodyOnTheHelper() {
        let me = pthread_self()
        func threads() -> (Bool, Bool) {
            var first = me, second = me
            BLAS.concurrently({ first = pthread_self() }, { second = pthread_self() })
            return (pthread_equal(first, me) != 0, pthread_equal(second, me) != 0)
        }
        BLAS.withComputeThreads(1) {
            for _ in 0..<5 {
                let (a, b) = threads()
                #expect(a && b)
            }
        }
        BLAS.withComputeThreads(2) {
            // Another test's product may hold the helper for a moment (then both run here), so ask
            // a few times; the first body always runs on the caller.
            var handedOff = false
            for _ in 0..<50 where !handedOff {
                let (a, b) = threads()
                #expect(a)
                handedOff = !b
            }
            #expect(handedOff)
        }
    }
}
