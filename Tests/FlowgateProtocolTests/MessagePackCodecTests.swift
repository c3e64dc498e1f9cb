import Testing

@testable import FlowgateProtocol

/// Encodings written by hand from the MessagePack specification.
@Suite struct MessagePackCodecTests {
    static let known: [(MessagePackValue, String)] = [
        (.nil, "c0"),
        (.bool(false), "c2"),
        (.bool(true), "c3"),
        (.int(0), "00"),
        (.int(127), "7f"),
        (.int(128), "cc80"),
        (.int(256), "cd0100"),
        (.int(70000), "ce00011170"),
        (.int(1 << 32), "cf0000000100000000"),
        (.uint(UInt64.max), "cfffffffffffffffff"),
        (.int(-1), "ff"),
        (.int(-32), "e0"),
        (.int(-33), "d0df"),
        (.int(-129), "d1ff7f"),
        (.int(-40000), "d2ffff63c0"),
        (.int(Int64.min), "d38000000000000000"),
        (.float(1.5), "ca3fc00000"),
        (.double(2.5), "cb4004000000000000"),
        (.string(""), "a0"),
        (.string("act"), "a3616374"),
        (.string(String(repeating: "x", count: 32)), "d920" + String(repeating: "78", count: 32)),
        (.binary([1, 2, 3]), "c403010203"),
        (.array([]), "90"),
        (.array([.int(1), .double(2.5)]), "9201cb4004000000000000"),
        (.map(["a": .int(1)]), "81a16101"),
        (.map(["ok": .bool(true), "id": .nil]), "82a26f6bc3a26964c0"),
        (.ext(-1, [0, 0, 0, 1]), "d6ff00000001"),
    ]

    @Test func encodesKnownBytes() {
        for (value, bytes) in Self.known {
            #expect(MessagePack.encode(value) == hex(bytes), "encoding \(value)")
        }
    }

    @Test func decodesKnownBytes() throws {
        for (value, bytes) in Self.known {
            #expect(try MessagePack.decode(hex(bytes)) == value, "decoding \(bytes)")
        }
    }

    @Test func lengthBoundariesRoundTrip() throws {
        for n in [15, 16, 31, 32, 255, 256, 65535, 65536] {
            let array = MessagePackValue.array(Array(repeating: .int(1), count: n))
            #expect(try MessagePack.decode(MessagePack.encode(array)) == array)
            let string = MessagePackValue.string(String(repeating: "é", count: n))
            #expect(try MessagePack.decode(MessagePack.encode(string)) == string)
            let bin = MessagePackValue.binary(Array(repeating: 7, count: n))
            #expect(try MessagePack.decode(MessagePack.encode(bin)) == bin)
        }
        let map = MessagePackValue.map((0..<20).map { MessagePackEntry(.string("k\($0)"), .int(Int64($0))) })
        #expect(MessagePack.encode(map).first == 0xde)
        #expect(try MessagePack.decode(MessagePack.encode(map)) == map)
    }

    @Test func nestingUpToTheLimitDecodes() throws {
        var value = MessagePackValue.int(1)
        for _ in 0..<MessagePackGuard.maxDepth { value = .array([value]) }
        #expect(try MessagePack.decode(MessagePack.encode(value)) == value)
    }
}
