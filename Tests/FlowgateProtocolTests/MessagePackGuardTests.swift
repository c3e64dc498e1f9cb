import Testing

@testable import FlowgateProtocol

/// Hostile inputs: each must be rejected before msgpack-c allocates anything large.
@Suite struct MessagePackGuardTests {
    func rejects(_ bytes: [UInt8], containing fragment: String) {
        #expect(throws: MessagePackError.self) { try MessagePack.decode(bytes) }
        do {
            _ = try MessagePack.decode(bytes)
        } catch {
            #expect(error.message.contains(fragment), "\(error.message) should mention \(fragment)")
        }
    }

    @Test func emptyMessage() { rejects([], containing: "empty") }
    @Test func reservedByte() { rejects([0xc1], containing: "reserved") }
    @Test func truncatedArray() { rejects(hex("9301"), containing: "3 elements") }
    @Test func truncatedFloat() { rejects(hex("cb4004"), containing: "float64") }
    @Test func truncatedLengthField() { rejects(hex("dc00"), containing: "truncated") }
    @Test func array32WithHugeCount() { rejects(hex("ddffffffff"), containing: "4294967295 elements") }
    @Test func map32WithHugeCount() { rejects(hex("dfffffffff"), containing: "4294967295 elements") }
    @Test func str32WithHugeLength() { rejects(hex("dbffffffff61"), containing: "4294967295 bytes") }
    @Test func bin32WithHugeLength() { rejects(hex("c6ffffffff"), containing: "bin") }
    @Test func ext32WithHugeLength() { rejects(hex("c9ffffffff01"), containing: "ext") }
    @Test func hugeArrayInsideMap() { rejects(hex("81a16fddffffffff00"), containing: "elements") }
    @Test func trailingBytes() { rejects(hex("c0c0"), containing: "trailing") }

    @Test func nestingBeyondTheLimit() {
        let bytes = [UInt8](repeating: 0x91, count: MessagePackGuard.maxDepth + 1) + [0x01]
        rejects(bytes, containing: "nesting")
    }

    @Test func randomGarbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let n = Int.random(in: 1...24, using: &rng)
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? MessagePack.decode(bytes)
        }
    }
}
