/// Why bytes are not an acceptable MessagePack message.
public struct MessagePackError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong, in words fit for an error reply.
    public var message: String
    /// Byte offset where the problem was found.
    public var offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "\(message) (at byte \(offset))" }
}

/// Checks untrusted bytes before they reach msgpack-c.
///
/// msgpack-c allocates `count * sizeof(msgpack_object)` as soon as it reads an array or map header,
/// so a 5-byte message declaring 2^32-1 elements asks for ~100 GB. The guard walks the structure once
/// without allocating and rejects any str/bin/ext whose declared length exceeds the bytes left, any
/// array or map that declares more elements than bytes are left (every element takes at least one
/// byte, a map entry two), nesting deeper than `maxDepth`, reserved bytes (0xc1), truncation, and
/// trailing bytes after the single top-level object.
public enum MessagePackGuard {
    /// Deepest container nesting accepted; msgpack-c's own parser stack holds 32 levels.
    public static let maxDepth = 32

    /// Validates that `bytes` hold exactly one well-formed MessagePack object.
    public static func validate(_ bytes: UnsafeRawBufferPointer) throws(MessagePackError) {
        if bytes.isEmpty { throw MessagePackError("empty message", offset: 0) }
        var walker = Walker(bytes: bytes)
        try walker.skipObject(depth: 0)
        if walker.offset != bytes.count {
            throw MessagePackError(
                "\(bytes.count - walker.offset) trailing bytes after the MessagePack object",
                offset: walker.offset)
        }
    }

    /// Validates `bytes` (see the other overload).
    public static func validate(_ bytes: [UInt8]) throws(MessagePackError) {
        let result: Result<Void, MessagePackError> = bytes.withUnsafeBytes { raw in
            do throws(MessagePackError) {
                try validate(raw)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    private struct Walker {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var remaining: Int { bytes.count - offset }

        mutating func readByte() throws(MessagePackError) -> UInt8 {
            guard offset < bytes.count else {
                throw MessagePackError("truncated message", offset: offset)
            }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func readBigEndian(_ width: Int) throws(MessagePackError) -> UInt64 {
            guard remaining >= width else {
                throw MessagePackError("truncated message", offset: offset)
            }
            var v: UInt64 = 0
            for i in 0..<width { v = v << 8 | UInt64(bytes[offset + i]) }
            offset += width
            return v
        }

        mutating func skipBytes(_ n: UInt64, what: String) throws(MessagePackError) {
            guard n <= UInt64(remaining) else {
                throw MessagePackError(
                    "\(what) declares \(n) bytes but only \(remaining) remain", offset: offset)
            }
            offset += Int(n)
        }

        mutating func skipContainer(_ n: UInt64, perElement: UInt64, what: String, depth: Int)
            throws(MessagePackError)
        {
            let start = offset
            guard depth + 1 <= MessagePackGuard.maxDepth else {
                throw MessagePackError(
                    "nesting deeper than \(MessagePackGuard.maxDepth) levels", offset: start)
            }
            guard n * perElement <= UInt64(remaining) else {
                throw MessagePackError(
                    "\(what) declares \(n) elements but only \(remaining) bytes remain", offset: start)
            }
            for _ in 0..<(n * perElement) { try skipObject(depth: depth + 1) }
        }

        mutating func skipObject(depth: Int) throws(MessagePackError) {
            let at = offset
            let b = try readByte()
            switch b {
            case 0x00...0x7f, 0xe0...0xff, 0xc0, 0xc2, 0xc3: return
            case 0x80...0x8f: try skipContainer(UInt64(b & 0x0f), perElement: 2, what: "map", depth: depth)
            case 0x90...0x9f: try skipContainer(UInt64(b & 0x0f), perElement: 1, what: "array", depth: depth)
            case 0xa0...0xbf: try skipBytes(UInt64(b & 0x1f), what: "str")
            case 0xc1: throw MessagePackError("reserved byte 0xc1 is not MessagePack", offset: at)
            case 0xc4: try skipBytes(try readBigEndian(1), what: "bin")
            case 0xc5: try skipBytes(try readBigEndian(2), what: "bin")
            case 0xc6: try skipBytes(try readBigEndian(4), what: "bin")
            case 0xc7: let n = try readBigEndian(1); try skipBytes(n + 1, what: "ext")
            case 0xc8: let n = try readBigEndian(2); try skipBytes(n + 1, what: "ext")
            case 0xc9: let n = try readBigEndian(4); try skipBytes(n + 1, what: "ext")
            case 0xca: try skipBytes(4, what: "float32")
            case 0xcb: try skipBytes(8, what: "float64")
            case 0xcc, 0xd0: try skipBytes(1, what: "integer")
            case 0xcd, 0xd1: try skipBytes(2, what: "integer")
            case 0xce, 0xd2: try skipBytes(4, what: "integer")
            case 0xcf, 0xd3: try skipBytes(8, what: "integer")
            case 0xd4: try skipBytes(2, what: "fixext")
            case 0xd5: try skipBytes(3, what: "fixext")
            case 0xd6: try skipBytes(5, what: "fixext")
            case 0xd7: try skipBytes(9, what: "fixext")
            case 0xd8: try skipBytes(17, what: "fixext")
            case 0xd9: try skipBytes(try readBigEndian(1), what: "str")
            case 0xda: try skipBytes(try readBigEndian(2), what: "str")
            case 0xdb: try skipBytes(try readBigEndian(4), what: "str")
            case 0xdc: try skipContainer(try readBigEndian(2), perElement: 1, what: "array", depth: depth)
            case 0xdd: try skipContainer(try readBigEndian(4), perElement: 1, what: "array", depth: depth)
            case 0xde: try skipContainer(try readBigEndian(2), perElement: 2, what: "map", depth: depth)
            case 0xdf: try skipContainer(try readBigEndian(4), perElement: 2, what: "map", depth: depth)
            default: throw MessagePackError("unknown type byte", offset: at)
            }
        }
    }
}
