import FlowgateCommon
import Testing

@Suite("SplitMix64")
struct SplitMix64Tests {
    @Test("the stream matches the reference implementation (Vigna's splitmix64.c)")
    func referenceStream() {
        var rng = SplitMix64(seed: 1234567)
        #expect(rng.next() == 6_457_827_717_110_365_317)
        #expect(rng.next() == 3_203_168_211_198_807_973)
        #expect(rng.next() == 9_817_491_932_198_370_423)
        var zero = SplitMix64(seed: 0)
        #expect(zero.next() == 0xE220_A839_7B1D_CDAF)
    }

    @Test("unit-interval draws are the top 53 bits of the next output, in [0, 1)")
    func unitInterval() {
        var a = SplitMix64(seed: 9), b = SplitMix64(seed: 9)
        for _ in 0..<1000 {
            let u = a.nextUnitInterval()
            #expect(u == Double(b.next() >> 11) / 9_007_199_254_740_992)
            #expect(u >= 0 && u < 1)
        }
    }
}
