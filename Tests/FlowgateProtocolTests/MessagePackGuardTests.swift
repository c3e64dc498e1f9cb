import FlowgateCore
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

    /// Exact messages and offsets for a few hostile inputs (what an error reply will quote).
    @Test func exactMessagesAndOffsets() {
        func expectError(_ bytes: [UInt8], _ message: String, at offset: Int) {
            #expect(throws: MessagePackError(message, offset: offset)) { try MessagePack.decode(bytes) }
        }
        expectError([], "empty message", at: 0)
        expectError([0xc1], "reserved byte 0xc1 is not MessagePack", at: 0)
        expectError(hex("c0c0c0"), "2 trailing bytes after the MessagePack object", at: 1)
        expectError(hex("930102"), "array declares 3 elements but only 2 bytes remain", at: 1)
        expectError(hex("dbffffffff6162"), "str declares 4294967295 bytes but only 2 remain", at: 5)
        expectError(hex("cb40"), "float64 declares 8 bytes but only 1 remain", at: 1)
        expectError(
            [UInt8](repeating: 0x91, count: MessagePackGuard.maxDepth + 1) + [0x01],
            "nesting deeper than \(MessagePackGuard.maxDepth) levels", at: MessagePackGuard.maxDepth + 1)
    }

    /// Seeded garbage (1–24 random bytes) and seeded mutations of valid messages: every input is either
    /// decoded to a value that re-encodes and decodes to the same value, or rejected by the guard with
    /// a MessagePackError at an offset inside the input — never by msgpack-c, never a crash. Every
    /// strict prefix of a valid message is rejected, and so is a valid message with a byte appended.
    @Test func seededGarbageIsDecodedConsistentlyOrRejectedByTheGuard() throws {
        var rng = RNG(seed: 0x6D73_6770)
        var accepted = 0, rejected = 0
        func check(_ bytes: [UInt8]) {
            do {
                let value = try MessagePack.decode(bytes)
                accepted += 1
                let again = MessagePack.encode(value)
                #expect(sameValue(try MessagePack.decode(again), value), "\(bytes) → \(value) → \(again)")
            } catch {
                rejected += 1
                #expect((0...bytes.count).contains(error.offset), "\(error) for \(bytes)")
                #expect(!error.message.contains("msgpack-c"), "the guard let \(bytes) through to msgpack-c: \(error)")
            }
        }
        for _ in 0..<3000 {
            let n = 1 + rng.int(below: 24)
            check((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        #expect(accepted > 20 && rejected > 2000, "accepted \(accepted), rejected \(rejected)")

        accepted = 0
        rejected = 0
        for _ in 0..<400 {
            let value = randomValue(&rng, depth: 0)
            let bytes = MessagePack.encode(value)
            #expect(sameValue(try MessagePack.decode(bytes), value), "\(value)")
            // Every strict prefix when short, else 32 seeded cuts plus the longest one.
            let cuts = bytes.count <= 64 ? Array(0..<bytes.count) : (0..<32).map { _ in rng.int(below: bytes.count) } + [bytes.count - 1]
            for cut in cuts {
                #expect(throws: MessagePackError.self, "prefix of \(cut) bytes of \(bytes)") {
                    try MessagePack.decode(Array(bytes[..<cut]))
                }
            }
            #expect(throws: MessagePackError("2 trailing bytes after the MessagePack object", offset: bytes.count)) {
                try MessagePack.decode(bytes + [0xc0, 0x01])
            }
            var flipped = bytes
            flipped[rng.int(below: bytes.count)] ^= UInt8(truncatingIfNeeded: 1 + rng.int(below: 255))
            check(flipped)
        }
        #expect(accepted > 50 && rejected > 20, "mutations: accepted \(accepted), rejected \(rejected)")
    }

    /// Equality that treats NaNs with equal bit patterns as equal (random bytes decode to NaNs).
    func sameValue(_ a: MessagePackValue, _ b: MessagePackValue) -> Bool {
        switch (a, b) {
        case (.float(let x), .float(let y)): return x.bitPattern == y.bitPattern
        case (.double(let x), .double(let y)): return x.bitPattern == y.bitPattern
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { sameValue($0, $1) }
        case (.map(let x), .map(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { sameValue($0.key, $1.key) && sameValue($0.value, $1.value) }
        default: return a == b
        }
    }

    /// A random value of every MessagePack type, with lengths that cross the fix/8/16-bit headers.
    func randomValue(_ rng: inout RNG, depth: Int) -> MessagePackValue {
        let bytes = { (rng: inout RNG, n: Int) in (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        switch rng.int(below: depth < 2 ? 12 : 10) {
        case 0: return .nil
        case 1: return .bool(rng.int(below: 2) == 0)
        case 2: return .int(Int64(bitPattern: rng.next()) >> UInt64(rng.int(below: 64)))
        case 3: return .uint(UInt64(Int64.max) + 1 + rng.next() % UInt64(Int64.max))
        case 4:
            // msgpack-c widens float32 to double, which quiets a signalling NaN: use the plain NaN.
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            return .float(f.isNaN ? .nan : f)
        case 5: return .double(Double(bitPattern: rng.next()))
        case 6: return .string(String(repeating: "é", count: rng.int(below: 40)))
        case 7: return .binary(bytes(&rng, [0, 3, 255, 256, 300][rng.int(below: 5)]))
        case 8: return .ext(Int8(truncatingIfNeeded: rng.int(below: 256)), bytes(&rng, [1, 2, 4, 8, 16, 3, 300][rng.int(below: 7)]))
        case 9: return .rawString([0xff, 0xfe] + bytes(&rng, rng.int(below: 3)))
        case 10: return .array((0..<[0, 1, 3, 15, 16][rng.int(below: 5)]).map { _ in randomValue(&rng, depth: depth + 1) })
        default:
            return .map(
                (0..<[0, 1, 2, 16][rng.int(below: 4)]).map { _ in
                    MessagePackEntry(randomValue(&rng, depth: depth + 1), randomValue(&rng, depth: depth + 1))
                })
        }
    }
}
