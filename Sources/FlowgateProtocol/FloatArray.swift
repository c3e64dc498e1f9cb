/// How a request carried its arrays; the reply uses the same encoding.
public enum ArrayEncoding: Sendable, Hashable {
    /// Plain MessagePack arrays of numbers (nested for 2-D); replies hold float32 numbers.
    case plain
    /// `{"__ndarray__": true, "dtype": ..., "shape": [...], "data": bin}` with this dtype.
    case ndarray(DType)

    /// Element types accepted in ndarray maps (little-endian).
    public enum DType: String, Sendable, Hashable {
        case float32 = "<f4"
        case float64 = "<f8"

        /// Bytes per element.
        public var size: Int { self == .float32 ? 4 : 8 }
    }
}

/// A 1-D or 2-D array of floats as read from or written to the wire.
public struct FloatArray: Sendable, Equatable {
    /// `[n]` or `[rows, columns]`.
    public var shape: [Int]
    /// Elements in row-major order.
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not match \(values.count) values")
        self.shape = shape
        self.values = values
    }

    /// A 1-D array.
    public init(_ values: [Float]) { self.init(shape: [values.count], values: values) }

    /// A 2-D array from equal-length rows.
    public init(rows: [[Float]]) {
        let columns = rows.first?.count ?? 0
        precondition(rows.allSatisfy { $0.count == columns }, "ragged rows")
        self.init(shape: [rows.count, columns], values: rows.flatMap { $0 })
    }

    /// Rows of a 2-D array, as arrays.
    public var rows: [[Float]] {
        guard shape.count == 2 else { return [values] }
        let c = shape[1]
        return (0..<shape[0]).map { Array(values[$0 * c..<($0 + 1) * c]) }
    }

    /// Encodes the array with `encoding`.
    public func messagePackValue(_ encoding: ArrayEncoding) -> MessagePackValue {
        switch encoding {
        case .plain:
            if shape.count == 2 {
                let c = shape[1]
                return .array(
                    (0..<shape[0]).map { r in
                        .array(values[r * c..<(r + 1) * c].map { .float($0) })
                    })
            }
            return .array(values.map { .float($0) })
        case .ndarray(let dtype):
            var data: [UInt8] = []
            data.reserveCapacity(values.count * dtype.size)
            switch dtype {
            case .float32:
                for v in values {
                    var le = v.bitPattern.littleEndian
                    withUnsafeBytes(of: &le) { data.append(contentsOf: $0) }
                }
            case .float64:
                for v in values {
                    var le = Double(v).bitPattern.littleEndian
                    withUnsafeBytes(of: &le) { data.append(contentsOf: $0) }
                }
            }
            return .map([
                "__ndarray__": .bool(true),
                "dtype": .string(dtype.rawValue),
                "shape": .array(shape.map { .int(Int64($0)) }),
                "data": .binary(data),
            ])
        }
    }

    /// Reads an array of numbers (plain or ndarray) of rank 1 or 2; `key` names it in error messages.
    ///
    /// Wrong types, malformed ndarray maps and non-finite numbers are `bad_request`; ragged rows,
    /// empty arrays and ranks other than 1 and 2 are `shape_mismatch`.
    public static func decode(_ value: MessagePackValue, key: String) throws(ProtocolError)
        -> (FloatArray, ArrayEncoding)
    {
        switch value {
        case .array(let elements):
            return (try decodePlain(elements, key: key), .plain)
        case .map:
            return try decodeNDArray(value, key: key)
        default:
            throw ProtocolError(
                .badRequest, "'\(key)' must be an array of numbers or an ndarray map, got \(value.typeName)")
        }
    }

    private static func number(_ v: MessagePackValue, key: String, index: String) throws(ProtocolError) -> Float {
        guard let d = v.doubleValue else {
            throw ProtocolError(.badRequest, "'\(key)'\(index) must be a number, got \(v.typeName)")
        }
        let f = Float(d)
        guard f.isFinite else {
            throw ProtocolError(.badRequest, "'\(key)'\(index) is not finite (\(d))")
        }
        return f
    }

    private static func decodePlain(_ elements: [MessagePackValue], key: String) throws(ProtocolError) -> FloatArray {
        guard let first = elements.first else {
            throw ProtocolError(.shapeMismatch, "'\(key)' is empty")
        }
        if case .array(let firstRow) = first {
            let columns = firstRow.count
            // No reserve from rows x columns: a first row of 100,000 numbers followed by 99,999 nils
            // would ask for 40 GB before row 1 is checked. The array grows with the rows that are valid.
            var values: [Float] = []
            for (r, row) in elements.enumerated() {
                guard case .array(let items) = row else {
                    throw ProtocolError(
                        .badRequest, "'\(key)'[\(r)] must be an array of numbers, got \(row.typeName)")
                }
                guard items.count == columns else {
                    throw ProtocolError(
                        .shapeMismatch,
                        "'\(key)' is ragged: row 0 has \(columns) values, row \(r) has \(items.count)")
                }
                for (c, item) in items.enumerated() {
                    if case .array = item {
                        throw ProtocolError(.shapeMismatch, "'\(key)' has more than 2 dimensions")
                    }
                    values.append(try number(item, key: key, index: "[\(r)][\(c)]"))
                }
            }
            guard columns > 0 else { throw ProtocolError(.shapeMismatch, "'\(key)' rows are empty") }
            return FloatArray(shape: [elements.count, columns], values: values)
        }
        var values: [Float] = []
        values.reserveCapacity(elements.count)
        for (i, item) in elements.enumerated() {
            if case .array = item {
                throw ProtocolError(.badRequest, "'\(key)' mixes numbers and arrays (element \(i))")
            }
            values.append(try number(item, key: key, index: "[\(i)]"))
        }
        return FloatArray(shape: [elements.count], values: values)
    }

    private static func decodeNDArray(_ value: MessagePackValue, key: String) throws(ProtocolError)
        -> (FloatArray, ArrayEncoding)
    {
        guard value["__ndarray__"]?.boolValue == true else {
            throw ProtocolError(.badRequest, "'\(key)' is a map without \"__ndarray__\": true")
        }
        guard let dtypeName = value["dtype"]?.stringValue else {
            throw ProtocolError(.badRequest, "'\(key)' ndarray needs a string 'dtype'")
        }
        guard let dtype = ArrayEncoding.DType(rawValue: dtypeName) else {
            throw ProtocolError(
                .badRequest, "'\(key)' ndarray dtype '\(dtypeName)' is not supported (use '<f4' or '<f8')")
        }
        guard let shapeValues = value["shape"]?.arrayValue else {
            throw ProtocolError(.badRequest, "'\(key)' ndarray needs an array 'shape'")
        }
        var shape: [Int] = []
        for s in shapeValues {
            guard let n = s.intValue, n >= 0, n <= Int(Int32.max) else {
                throw ProtocolError(.badRequest, "'\(key)' ndarray shape must hold non-negative integers")
            }
            shape.append(n)
        }
        guard case .binary(let data)? = value["data"] else {
            throw ProtocolError(.badRequest, "'\(key)' ndarray needs bin 'data'")
        }
        guard shape.count == 1 || shape.count == 2 else {
            throw ProtocolError(.shapeMismatch, "'\(key)' must be 1-D or 2-D, got shape \(shape)")
        }
        let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        guard count <= data.count / dtype.size, data.count == count * dtype.size else {
            throw ProtocolError(
                .badRequest,
                "'\(key)' ndarray data has \(data.count) bytes, shape \(shape) of \(dtype.rawValue) needs \(count.multipliedReportingOverflow(by: dtype.size).partialValue)")
        }
        guard count > 0 else { throw ProtocolError(.shapeMismatch, "'\(key)' is empty (shape \(shape))") }
        var values = [Float](repeating: 0, count: count)
        data.withUnsafeBytes { raw in
            switch dtype {
            case .float32:
                for i in 0..<count {
                    values[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                }
            case .float64:
                for i in 0..<count {
                    values[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
                }
            }
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw ProtocolError(.badRequest, "'\(key)' element \(bad) is not finite")
        }
        return (FloatArray(shape: shape, values: values), .ndarray(dtype))
    }
}
