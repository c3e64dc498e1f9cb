/// The safetensors element types the reader accepts.
///
/// Flowgate computes in Float32, so every dtype is converted to `Float` on load:
/// - `F32`: exact.
/// - `F64`: rounded to the nearest `Float` (values beyond the Float range become ±infinity).
/// - `F16`, `BF16`: exact (every half and bfloat16 value is a `Float`).
/// - `I64`, `I32`: rounded to the nearest `Float` (exact up to 2^24 in magnitude).
///
/// The writer only writes `F32`.
public enum SafetensorsDType: String, Sendable, CaseIterable, Codable {
    case f32 = "F32"
    case f64 = "F64"
    case f16 = "F16"
    case bf16 = "BF16"
    case i64 = "I64"
    case i32 = "I32"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        }
    }

    /// Decodes `count` little-endian elements starting at `offset` in `raw` into `Float`s.
    /// The caller has checked that `offset + count * byteSize <= raw.count`.
    func decode(_ raw: UnsafeRawBufferPointer, offset: Int, count: Int) -> [Float] {
        let size = byteSize
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count {
                let at = offset + i * size
                let value: Float
                switch self {
                case .f32:
                    value = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                case .f64:
                    value = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))))
                case .f16:
                    value = Self.floatFromHalf(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
                case .bf16:
                    value = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self))) << 16)
                case .i64:
                    value = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int64.self)))
                case .i32:
                    value = Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int32.self)))
                }
                buffer[i] = value
            }
            initialized = count
        }
    }

    /// Converts IEEE 754 binary16 bits to a `Float` (exact, including subnormals, inf and NaN).
    static func floatFromHalf(_ bits: UInt16) -> Float {
        let sign = UInt32(bits >> 15) << 31
        let exponent = Int((bits >> 10) & 0x1F)
        let mantissa = UInt32(bits & 0x3FF)
        switch exponent {
        case 0:
            // Zero or subnormal: mantissa × 2^-24.
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign == 0 ? magnitude : -magnitude
        case 0x1F:
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        default:
            return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
        }
    }
}
