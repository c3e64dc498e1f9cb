/// Namespace of the MessagePack codec.
public enum MessagePack {
    /// Encodes `value` with the smallest MessagePack representation of every integer, string, bin,
    /// array and map header. Floats keep their width (float32 → 0xca, float64 → 0xcb).
    public static func encode(_ value: MessagePackValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        append(value, to: &out)
        return out
    }

    /// Appends the encoding of `value` to `out`.
    public static func append(_ value: MessagePackValue, to out: inout [UInt8]) {
        switch value {
        case .nil: out.append(0xc0)
        case .bool(let b): out.append(b ? 0xc3 : 0xc2)
        case .int(let v): appendInt(v, to: &out)
        case .uint(let v): appendUInt(v, to: &out)
        case .float(let f):
            out.append(0xca)
            appendBigEndian(f.bitPattern, to: &out)
        case .double(let d):
            out.append(0xcb)
            appendBigEndian(d.bitPattern, to: &out)
        case .string(let s):
            appendString(Array(s.utf8), to: &out)
        case .rawString(let bytes):
            appendString(bytes, to: &out)
        case .binary(let bytes):
            appendBinaryHeader(count: bytes.count, to: &out)
            out.append(contentsOf: bytes)
        case .array(let elements):
            appendArrayHeader(count: elements.count, to: &out)
            for e in elements { append(e, to: &out) }
        case .map(let entries):
            let n = entries.count
            if n < 16 {
                out.append(0x80 | UInt8(n))
            } else if n <= 0xffff {
                out.append(0xde)
                appendBigEndian(UInt16(n), to: &out)
            } else {
                out.append(0xdf)
                appendBigEndian(UInt32(n), to: &out)
            }
            for e in entries {
                append(e.key, to: &out)
                append(e.value, to: &out)
            }
        case .ext(let type, let data):
            let n = data.count
            switch n {
            case 1: out.append(0xd4)
            case 2: out.append(0xd5)
            case 4: out.append(0xd6)
            case 8: out.append(0xd7)
            case 16: out.append(0xd8)
            default:
                if n <= 0xff {
                    out.append(0xc7)
                    out.append(UInt8(n))
                } else if n <= 0xffff {
                    out.append(0xc8)
                    appendBigEndian(UInt16(n), to: &out)
                } else {
                    out.append(0xc9)
                    appendBigEndian(UInt32(n), to: &out)
                }
            }
            out.append(UInt8(bitPattern: type))
            out.append(contentsOf: data)
        }
    }

    /// Appends a str header and the bytes (taken as they are).
    static func appendString(_ bytes: [UInt8], to out: inout [UInt8]) {
        let n = bytes.count
        if n < 32 {
            out.append(0xa0 | UInt8(n))
        } else if n <= 0xff {
            out.append(0xd9)
            out.append(UInt8(n))
        } else if n <= 0xffff {
            out.append(0xda)
            appendBigEndian(UInt16(n), to: &out)
        } else {
            out.append(0xdb)
            appendBigEndian(UInt32(n), to: &out)
        }
        out.append(contentsOf: bytes)
    }

    /// Appends an array header for `count` elements.
    public static func appendArrayHeader(count n: Int, to out: inout [UInt8]) {
        if n < 16 {
            out.append(0x90 | UInt8(n))
        } else if n <= 0xffff {
            out.append(0xdc)
            appendBigEndian(UInt16(n), to: &out)
        } else {
            out.append(0xdd)
            appendBigEndian(UInt32(n), to: &out)
        }
    }

    /// Appends a bin header for `count` bytes.
    public static func appendBinaryHeader(count n: Int, to out: inout [UInt8]) {
        if n <= 0xff {
            out.append(0xc4)
            out.append(UInt8(n))
        } else if n <= 0xffff {
            out.append(0xc5)
            appendBigEndian(UInt16(n), to: &out)
        } else {
            out.append(0xc6)
            appendBigEndian(UInt32(n), to: &out)
        }
    }

    static func appendInt(_ v: Int64, to out: inout [UInt8]) {
        if v >= 0 {
            appendUInt(UInt64(v), to: &out)
        } else if v >= -32 {
            out.append(UInt8(bitPattern: Int8(v)))
        } else if v >= Int64(Int8.min) {
            out.append(0xd0)
            out.append(UInt8(bitPattern: Int8(v)))
        } else if v >= Int64(Int16.min) {
            out.append(0xd1)
            appendBigEndian(UInt16(bitPattern: Int16(v)), to: &out)
        } else if v >= Int64(Int32.min) {
            out.append(0xd2)
            appendBigEndian(UInt32(bitPattern: Int32(v)), to: &out)
        } else {
            out.append(0xd3)
            appendBigEndian(UInt64(bitPattern: v), to: &out)
        }
    }

    static func appendUInt(_ v: UInt64, to out: inout [UInt8]) {
        if v < 0x80 {
            out.append(UInt8(v))
        } else if v <= 0xff {
            out.append(0xcc)
            out.append(UInt8(v))
        } else if v <= 0xffff {
            out.append(0xcd)
            appendBigEndian(UInt16(v), to: &out)
        } else if v <= 0xffff_ffff {
            out.append(0xce)
            appendBigEndian(UInt32(v), to: &out)
        } else {
            out.append(0xcf)
            appendBigEndian(v, to: &out)
        }
    }

    @inline(__always)
    static func appendBigEndian<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        var be = v.bigEndian
        withUnsafeBytes(of: &be) { out.append(contentsOf: $0) }
    }
}
