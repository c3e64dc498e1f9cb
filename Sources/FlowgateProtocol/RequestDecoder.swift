/// Bounds on the observations a request may carry, checked before anything is allocated for them.
///
/// The server passes the largest `max_batch` and `obs_dim` of its loaded models; the exact per-model
/// checks (which model, its own `max_batch` and `obs_dim`) happen after decoding. Whatever these
/// limits say, the element count is also bounded by the bytes present: every number takes at least
/// one byte on the wire.
public struct ObservationLimits: Sendable, Equatable {
    /// Most observations (rows) in one request.
    public var maxObservations: Int
    /// Most values per observation (columns).
    public var maxObservationDim: Int

    public init(maxObservations: Int, maxObservationDim: Int) {
        self.maxObservations = max(1, maxObservations)
        self.maxObservationDim = max(1, maxObservationDim)
    }

    /// No bound beyond the bytes present (clients and tests).
    public static let unbounded = ObservationLimits(maxObservations: .max, maxObservationDim: .max)
}

/// Decodes a request frame straight from its bytes: one pass, no intermediate value tree, `obs`
/// read directly into `Float`s.
///
/// Cost is linear in the frame with a small constant, and the only allocations are the observation
/// values (bounded by `ObservationLimits` and the bytes present, checked before allocating), short
/// strings (op, model, id) and the error message. Structure is checked as in `MessagePackGuard`
/// (lengths against the bytes left, nesting depth, truncation, trailing bytes). Unknown keys are
/// skipped. When a field is wrong the scan still reads the rest of the map for `id`, so the error
/// reply carries the request's id wherever it stands in the map.
struct RequestDecoder: ~Copyable {
    private let bytes: UnsafeRawBufferPointer
    private let limits: ObservationLimits
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer, limits: ObservationLimits) {
        self.bytes = bytes
        self.limits = limits
    }

    // MARK: Entry

    /// Why decoding stopped: the bytes are not one well-formed MessagePack object (the scan ends), or
    /// a field's value is wrong (the scan rewinds, skips the value and goes on looking for `id`).
    enum Failure: Error {
        case structure(MessagePackError)
        case field(ProtocolError)
    }

    /// Most entries a request map may have; protocol v1 defines 11 keys and ignores unknown ones,
    /// so this leaves room for clients' own keys while a map of millions of entries is refused at
    /// its header.
    static let maxEntries = 256

    private static let knownKeys: Set<String> = [
        "op", "id", "model", "obs", "steps", "candidates", "samples", "check", "seed", "deadline_ms",
        "stream",
    ]

    mutating func decode() throws(ProtocolError) -> Request {
        guard !bytes.isEmpty else {
            throw ProtocolError(.badRequest, "empty message: a request is a MessagePack map")
        }
        var id: RequestID?
        var firstError: ProtocolError?
        var seen = Set<String>()
        var op: Operation?
        var model: String?
        var obs: (FloatArray, ArrayEncoding)?
        var p = ActParameters()
        do throws(Failure) {
            guard let entryCount = try mapHeader() else {
                throw Failure.field(
                    ProtocolError(.badRequest, "request must be a MessagePack map, got \(Self.typeName(bytes[0]))"))
            }
            guard entryCount <= Self.maxEntries else {
                throw Failure.field(
                    ProtocolError(
                        .badRequest,
                        "request map has \(entryCount) entries; at most \(Self.maxEntries) are read (protocol v1 defines 11 keys)"))
            }
            for _ in 0..<entryCount {
                let keyStart = offset
                guard let key = try readKeyString() else {
                    let type = Self.typeName(bytes[keyStart])
                    try skipObject(depth: 1)
                    try skipObject(depth: 1)
                    if firstError == nil {
                        firstError = ProtocolError(.badRequest, "request map keys must be strings, got \(Self.withArticle(type)) key")
                    }
                    continue
                }
                guard Self.knownKeys.contains(key) else {
                    try skipObject(depth: 1)  // unknown keys are ignored
                    continue
                }
                let valueStart = offset
                do throws(Failure) {
                    guard seen.insert(key).inserted else {
                        throw Failure.field(
                            ProtocolError(.badRequest, "key '\(key)' appears more than once in the request map"))
                    }
                    if key == "id" {
                        id = try readID()
                    } else if firstError != nil {
                        try skipObject(depth: 1)  // only the id matters now
                    } else {
                        try field(key, op: &op, model: &model, obs: &obs, parameters: &p)
                    }
                } catch {
                    switch error {
                    case .structure: throw error
                    case .field(let e):
                        if firstError == nil { firstError = e }
                        offset = valueStart
                        try skipObject(depth: 1)
                    }
                }
            }
            if offset != bytes.count {
                throw Failure.structure(
                    MessagePackError("\(bytes.count - offset) trailing bytes after the request map", offset: offset))
            }
        } catch {
            switch error {
            case .structure(let e): throw ProtocolError(.badRequest, "not a MessagePack message: \(e)", id: id)
            case .field(let e): throw e
            }
        }
        if var e = firstError {
            e.id = id
            throw e
        }
        let operation = op ?? .act
        guard operation == .act else { return Request(op: operation, id: id, model: model) }
        guard let (observations, encoding) = obs else {
            throw ProtocolError(.badRequest, "act request needs 'obs'", id: id)
        }
        return Request(
            op: .act, id: id, model: model,
            act: ActRequest(observations: observations, encoding: encoding, parameters: p))
    }

    private mutating func readID() throws(Failure) -> RequestID? {
        let at = offset
        guard let v = try readScalar() else {
            throw Failure.field(
                ProtocolError(.badRequest, "'id' must be a string or an integer, got \(Self.typeName(bytes[at]))"))
        }
        if v == .nil { return nil }
        guard let parsed = RequestID(v) else {
            throw Failure.field(ProtocolError(.badRequest, "'id' must be a string or an integer, got \(v.typeName)"))
        }
        return parsed
    }

    private mutating func field(
        _ key: String, op: inout Operation?, model: inout String?, obs: inout (FloatArray, ArrayEncoding)?,
        parameters p: inout ActParameters
    ) throws(Failure) {
        switch key {
        case "op":
            let v = try scalarField(key)
            guard v != .nil else { return }
            guard let name = v.stringValue else { throw bad("'op' must be a string, got \(v.typeName)") }
            guard let parsed = Operation(rawValue: name) else {
                throw Failure.field(
                    ProtocolError(
                        .unknownOp, "unknown op '\(Self.printable(name))' (expected act, info, health or stats)"))
            }
            op = parsed
        case "model":
            let v = try scalarField(key)
            guard v != .nil else { return }
            guard let name = v.stringValue else { throw bad("'model' must be a string, got \(v.typeName)") }
            model = name
        case "obs":
            if offset < bytes.count, bytes[offset] == 0xc0 {
                offset += 1
                return
            }
            obs = try observations()
        case "steps": p.steps = try positiveInt(key, try scalarField(key))
        case "candidates": p.candidates = try positiveInt(key, try scalarField(key))
        case "samples": p.samples = try positiveInt(key, try scalarField(key))
        case "check":
            let v = try scalarField(key)
            guard v != .nil else { return }
            guard let b = v.boolValue else { throw bad("'check' must be a bool, got \(v.typeName)") }
            p.check = b
        case "seed":
            switch try scalarField(key) {
            case .nil: return
            case .int(let i): p.seed = UInt64(bitPattern: i)
            case .uint(let u): p.seed = u
            case let v: throw bad("'seed' must be an integer, got \(v.typeName)")
            }
        case "deadline_ms":
            let v = try scalarField(key)
            guard v != .nil else { return }
            guard let d = v.doubleValue else { throw bad("'deadline_ms' must be a number, got \(v.typeName)") }
            guard d.isFinite, d >= 0 else { throw bad("'deadline_ms' must be a finite number >= 0, got \(d)") }
            p.deadlineMilliseconds = d
        case "stream":
            let v = try scalarField(key)
            guard v != .nil else { return }
            guard let name = v.stringValue else { throw bad("'stream' must be a string, got \(v.typeName)") }
            guard !name.isEmpty, name.utf8.count <= ActParameters.maxStreamBytes else {
                throw bad("'stream' must be 1 to \(ActParameters.maxStreamBytes) bytes of UTF-8, got \(name.utf8.count) bytes")
            }
            p.stream = name
        default:
            try skipObject(depth: 1)
        }
    }

    private func bad(_ message: String) -> Failure { .field(ProtocolError(.badRequest, message)) }
    private func shape(_ message: String) -> Failure { .field(ProtocolError(.shapeMismatch, message)) }

    // MARK: Fields

    /// A scalar value; arrays and maps are a field error naming their type.
    private mutating func scalarField(_ key: String) throws(Failure) -> MessagePackValue {
        let at = offset
        guard let scalar = try readScalar() else {
            throw bad("'\(key)' must not be \(Self.withArticle(Self.typeName(bytes[at])))")
        }
        return scalar
    }

    private func positiveInt(_ key: String, _ v: MessagePackValue) throws(Failure) -> Int? {
        switch v {
        case .nil: return nil
        case .int(let i):
            guard i >= 1 else { throw bad("'\(key)' must be >= 1, got \(i)") }
            return Int(exactly: i) ?? Int.max
        case .uint: return Int.max
        default: throw bad("'\(key)' must be an integer, got \(v.typeName)")
        }
    }

    // MARK: Observations

    private mutating func observations() throws(Failure) -> (FloatArray, ArrayEncoding) {
        let start = offset
        if let n = try arrayHeader() { return (try plainArray(count: n), .plain) }
        if let n = try mapHeader() { return try ndarray(entries: n) }
        throw bad("'obs' must be an array of numbers or an ndarray map, got \(Self.typeName(bytes[start]))")
    }

    private mutating func plainArray(count: Int) throws(Failure) -> FloatArray {
        guard count > 0 else { throw shape("'obs' is empty") }
        let rowStart = offset
        guard let columns = try arrayHeader() else {
            // 1-D: one observation.
            guard count <= limits.maxObservationDim else {
                throw shape(
                    "'obs' has \(count) values; no loaded model takes more than \(limits.maxObservationDim) per observation")
            }
            var values = [Float]()
            values.reserveCapacity(count)  // count <= bytes left, checked by arrayHeader
            for i in 0..<count {
                values.append(try number(row: nil, column: i))
            }
            return FloatArray(shape: [count], values: values)
        }
        offset = rowStart
        guard count <= limits.maxObservations else {
            throw Failure.field(
                ProtocolError(
                    .tooLarge,
                    "batch of \(count) observations exceeds max_batch \(limits.maxObservations) (the largest of the loaded models)"))
        }
        guard columns > 0 else { throw shape("'obs' rows are empty") }
        guard columns <= limits.maxObservationDim else {
            throw shape(
                "'obs' rows have \(columns) values; no loaded model takes more than \(limits.maxObservationDim) per observation")
        }
        let (total, overflow) = count.multipliedReportingOverflow(by: columns)
        guard !overflow, total <= remaining else {
            throw bad("'obs' declares \(count) rows of \(columns) values but only \(remaining) bytes remain")
        }
        var values = [Float]()
        values.reserveCapacity(total)
        for r in 0..<count {
            let at = offset
            guard let n = try arrayHeader() else {
                throw bad("'obs'[\(r)] must be an array of numbers, got \(Self.typeName(bytes[at]))")
            }
            guard n == columns else { throw shape("'obs' is ragged: row 0 has \(columns) values, row \(r) has \(n)") }
            for c in 0..<columns {
                values.append(try number(row: r, column: c))
            }
        }
        return FloatArray(shape: [count, columns], values: values)
    }

    /// Reads one number of `obs` at `[row][column]` (`[column]` for a single observation).
    private mutating func number(row: Int?, column: Int) throws(Failure) -> Float {
        let at = offset
        guard offset < bytes.count else { throw Self.structure("truncated message", offset) }
        let b = bytes[offset]
        // Fast paths: float32, float64, fixint.
        if b == 0xca, remaining >= 5 {
            offset += 1
            let f = Float(bitPattern: UInt32(try bigEndian(4)))
            guard f.isFinite else { throw bad("'obs'\(Self.index(row, column)) is not finite (\(f))") }
            return f
        }
        guard let v = try readScalar() else {
            if Self.isArray(b) {
                throw row == nil
                    ? bad("'obs' mixes numbers and arrays (element \(column))")
                    : shape("'obs' has more than 2 dimensions")
            }
            throw bad("'obs'\(Self.index(row, column)) must be a number, got \(Self.typeName(b))")
        }
        guard let d = v.doubleValue else {
            offset = at
            throw bad("'obs'\(Self.index(row, column)) must be a number, got \(v.typeName)")
        }
        let f = Float(d)
        guard f.isFinite else { throw bad("'obs'\(Self.index(row, column)) is not finite (\(d))") }
        return f
    }

    static func index(_ row: Int?, _ column: Int) -> String {
        row.map { "[\($0)][\(column)]" } ?? "[\(column)]"
    }

    private mutating func ndarray(entries: Int) throws(Failure) -> (FloatArray, ArrayEncoding) {
        var flag: Bool?
        var dtypeName: String?
        var shapeValue: [Int]?
        var data: UnsafeRawBufferPointer?
        for _ in 0..<entries {
            let key = try readKeyString()
            let at = offset
            switch key {
            case "__ndarray__":
                flag = try readScalar()?.boolValue
                if offset == at { try skipObject(depth: 2) }
            case "dtype":
                dtypeName = try readScalar()?.stringValue
                if offset == at { try skipObject(depth: 2) }
            case "shape":
                guard let n = try arrayHeader(), n <= 8 else {
                    throw bad("'obs' ndarray needs an array 'shape' of at most 8 non-negative integers")
                }
                var dims: [Int] = []
                for _ in 0..<n {
                    guard let d = try readScalar()?.intValue, d >= 0, d <= Int(Int32.max) else {
                        throw bad("'obs' ndarray shape must hold non-negative integers")
                    }
                    dims.append(d)
                }
                shapeValue = dims
            case "data":
                guard offset < bytes.count else { throw Self.structure("truncated message", offset: offset) }
                if (0xc4...0xc6).contains(bytes[offset]) {
                    let n = try binHeader()
                    data = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
                    offset += n
                } else {
                    try skipObject(depth: 2)
                }
            default:
                if key == nil { try skipObject(depth: 2) }
                try skipObject(depth: 2)
            }
        }
        guard flag == true else { throw bad("'obs' is a map without \"__ndarray__\": true") }
        guard let dtypeName else { throw bad("'obs' ndarray needs a string 'dtype'") }
        guard let dtype = ArrayEncoding.DType(rawValue: dtypeName) else {
            throw bad("'obs' ndarray dtype '\(Self.printable(dtypeName))' is not supported (use '<f4' or '<f8')")
        }
        guard let shapeValue else { throw bad("'obs' ndarray needs an array 'shape'") }
        guard let data else { throw bad("'obs' ndarray needs bin 'data'") }
        guard shapeValue.count == 1 || shapeValue.count == 2 else {
            throw shape("'obs' must be 1-D or 2-D, got shape \(shapeValue)")
        }
        let count = shapeValue.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        guard count <= data.count / dtype.size, data.count == count * dtype.size else {
            throw bad(
                "'obs' ndarray data has \(data.count) bytes, shape \(shapeValue) of \(dtype.rawValue) needs \(count.multipliedReportingOverflow(by: dtype.size).partialValue)")
        }
        guard count > 0 else { throw shape("'obs' is empty (shape \(shapeValue))") }
        let columns = shapeValue[shapeValue.count - 1]
        if shapeValue.count == 2, shapeValue[0] > limits.maxObservations {
            throw Failure.field(
                ProtocolError(
                    .tooLarge,
                    "batch of \(shapeValue[0]) observations exceeds max_batch \(limits.maxObservations) (the largest of the loaded models)"))
        }
        guard columns <= limits.maxObservationDim else {
            throw shape(
                "'obs' has \(columns) values per observation; no loaded model takes more than \(limits.maxObservationDim)")
        }
        var values = [Float](repeating: 0, count: count)
        var firstBad: Int?
        values.withUnsafeMutableBufferPointer { out in
            switch dtype {
            case .float32:
                for i in 0..<count {
                    let v = Float(bitPattern: UInt32(littleEndian: data.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                    out[i] = v
                    if !v.isFinite, firstBad == nil { firstBad = i }
                }
            case .float64:
                for i in 0..<count {
                    let d = Double(bitPattern: UInt64(littleEndian: data.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))
                    out[i] = Float(d)
                    if !out[i].isFinite, firstBad == nil { firstBad = i }
                }
            }
        }
        if let i = firstBad {
            let where_ = shapeValue.count == 2 ? Self.index(i / columns, i % columns) : Self.index(nil, i)
            throw bad("'obs'\(where_) is not finite (\(values[i]))")
        }
        return (FloatArray(shape: shapeValue, values: values), .ndarray(dtype))
    }

    // MARK: Reading

    private var remaining: Int { bytes.count - offset }

    static func structure(_ message: String, offset: Int) -> Failure {
        .structure(MessagePackError(message, offset: offset))
    }

    static func structure(_ message: String, _ offset: Int) -> Failure { structure(message, offset: offset) }

    private mutating func byte() throws(Failure) -> UInt8 {
        guard offset < bytes.count else { throw Self.structure("truncated message", offset: offset) }
        defer { offset += 1 }
        return bytes[offset]
    }

    private mutating func bigEndian(_ width: Int) throws(Failure) -> UInt64 {
        guard remaining >= width else { throw Self.structure("truncated message", offset: offset) }
        var v: UInt64 = 0
        for i in 0..<width { v = v << 8 | UInt64(bytes[offset + i]) }
        offset += width
        return v
    }

    /// Reads an array header and returns its count (checked against the bytes left), or `nil` with
    /// the offset unchanged when the next object is not an array.
    private mutating func arrayHeader() throws(Failure) -> Int? {
        let at = offset
        let b = try byte()
        let n: UInt64
        switch b {
        case 0x90...0x9f: n = UInt64(b & 0x0f)
        case 0xdc: n = try bigEndian(2)
        case 0xdd: n = try bigEndian(4)
        default: offset = at; return nil
        }
        guard n <= UInt64(remaining) else {
            throw Self.structure("array declares \(n) elements but only \(remaining) bytes remain", offset: at)
        }
        return Int(n)
    }

    /// Reads a map header (count checked against the bytes left: two per entry), or `nil` with the
    /// offset unchanged when the next object is not a map.
    private mutating func mapHeader() throws(Failure) -> Int? {
        let at = offset
        let b = try byte()
        let n: UInt64
        switch b {
        case 0x80...0x8f: n = UInt64(b & 0x0f)
        case 0xde: n = try bigEndian(2)
        case 0xdf: n = try bigEndian(4)
        default: offset = at; return nil
        }
        guard n * 2 <= UInt64(remaining) else {
            throw Self.structure("map declares \(n) entries but only \(remaining) bytes remain", offset: at)
        }
        return Int(n)
    }

    private mutating func binHeader() throws(Failure) -> Int {
        let at = offset
        let b = try byte()
        let n: UInt64
        switch b {
        case 0xc4: n = try bigEndian(1)
        case 0xc5: n = try bigEndian(2)
        case 0xc6: n = try bigEndian(4)
        default: throw Self.structure("expected bin", offset: at)
        }
        guard n <= UInt64(remaining) else {
            throw Self.structure("bin declares \(n) bytes but only \(remaining) remain", offset: at)
        }
        return Int(n)
    }

    /// Reads a str key; returns `nil` with the offset unchanged when the next object is not a str.
    /// Keys that are not valid UTF-8 are returned decoded with replacement characters (they match no
    /// known key).
    private mutating func readKeyString() throws(Failure) -> String? {
        let at = offset
        switch try readScalar() {
        case .string(let s)?: return s
        case .rawString(let b)?: return String(decoding: b, as: UTF8.self)
        default: offset = at; return nil
        }
    }

    /// Reads a scalar (nil, bool, integer, float, str, bin, ext); returns `nil` with the offset
    /// unchanged for an array or map. Only str and bin allocate (their length is checked first).
    private mutating func readScalar() throws(Failure) -> MessagePackValue? {
        let at = offset
        let b = try byte()
        switch b {
        case 0x00...0x7f: return .int(Int64(b))
        case 0xe0...0xff: return .int(Int64(Int8(bitPattern: b)))
        case 0xc0: return .nil
        case 0xc2: return .bool(false)
        case 0xc3: return .bool(true)
        case 0x80...0x9f, 0xdc...0xdf: offset = at; return nil
        case 0xa0...0xbf: return try str(Int(b & 0x1f), at: at)
        case 0xd9: return try str(Int(try bigEndian(1)), at: at)
        case 0xda: return try str(Int(try bigEndian(2)), at: at)
        case 0xdb: return try str(Int(try bigEndian(4)), at: at)
        case 0xc4, 0xc5, 0xc6:
            offset = at
            let n = try binHeader()
            defer { offset += n }
            return .binary(Array(bytes[offset..<(offset + n)]))
        case 0xca:
            return .float(Float(bitPattern: UInt32(try bigEndian(4))))
        case 0xcb:
            return .double(Double(bitPattern: try bigEndian(8)))
        case 0xcc: return .int(Int64(try bigEndian(1)))
        case 0xcd: return .int(Int64(try bigEndian(2)))
        case 0xce: return .int(Int64(try bigEndian(4)))
        case 0xcf:
            let u = try bigEndian(8)
            return u <= UInt64(Int64.max) ? .int(Int64(u)) : .uint(u)
        case 0xd0: return .int(Int64(Int8(truncatingIfNeeded: try bigEndian(1))))
        case 0xd1: return .int(Int64(Int16(truncatingIfNeeded: try bigEndian(2))))
        case 0xd2: return .int(Int64(Int32(truncatingIfNeeded: try bigEndian(4))))
        case 0xd3: return .int(Int64(bitPattern: try bigEndian(8)))
        case 0xc1: throw Self.structure("reserved byte 0xc1 is not MessagePack", offset: at)
        default:
            // ext and fixext: skipped, reported as ext.
            offset = at
            try skipObject(depth: 1)
            return .ext(0, [])
        }
    }

    private mutating func str(_ n: Int, at: Int) throws(Failure) -> MessagePackValue {
        guard n <= remaining else {
            throw Self.structure("str declares \(n) bytes but only \(remaining) remain", offset: at)
        }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
        offset += n
        if let s = String(validating: slice, as: UTF8.self) { return .string(s) }
        return .rawString(Array(slice))
    }

    private mutating func skip(_ n: UInt64) throws(Failure) {
        guard n <= UInt64(remaining) else {
            throw Self.structure("value declares \(n) bytes but only \(remaining) remain", offset: offset)
        }
        offset += Int(n)
    }

    /// Skips one object of any type, checking its structure without allocating. Iterative (a count
    /// of objects still to skip, to which each container adds its elements), so nesting costs no
    /// stack and needs no depth limit; each remaining object needs at least one byte, which bounds
    /// the count by the bytes left. About a nanosecond per byte on one-byte elements.
    private mutating func skipObject(depth: Int) throws(Failure) {
        let end = bytes.count
        var o = offset
        var left = 1
        while left > 0 {
            guard left <= end - o else {
                throw Self.structure("\(left) values declared but only \(end - o) bytes remain", offset: o)
            }
            let at = o
            let b = bytes[o]
            o += 1
            left -= 1
            if Self.isOneByteObject(b) {
                // A run of one-byte objects (fixints, nil, bools, empty containers): the cheapest
                // way to fill a frame, so it gets the tightest loop.
                let stop = o + min(left, end - o)
                var p = o
                while p < stop && Self.isOneByteObject(bytes[p]) { p += 1 }
                left -= p - o
                o = p
                continue
            }
            var skip = 0
            var elements = 0
            var lengthWidth = 0
            switch b {
            case 0x80...0x8f: elements = Int(b & 0x0f) * 2
            case 0x90...0x9f: elements = Int(b & 0x0f)
            case 0xa0...0xbf: skip = Int(b & 0x1f)
            case 0xc4, 0xd9: lengthWidth = 1
            case 0xc5, 0xda: lengthWidth = 2
            case 0xc6, 0xdb: lengthWidth = 4
            case 0xc7: lengthWidth = 1; skip = 1
            case 0xc8: lengthWidth = 2; skip = 1
            case 0xc9: lengthWidth = 4; skip = 1
            case 0xca: skip = 4
            case 0xcb: skip = 8
            case 0xcc, 0xd0: skip = 1
            case 0xcd, 0xd1: skip = 2
            case 0xce, 0xd2: skip = 4
            case 0xcf, 0xd3: skip = 8
            case 0xd4: skip = 2
            case 0xd5: skip = 3
            case 0xd6: skip = 5
            case 0xd7: skip = 9
            case 0xd8: skip = 17
            case 0xdc: lengthWidth = -2
            case 0xdd: lengthWidth = -4
            case 0xde: lengthWidth = -2; elements = -1
            case 0xdf: lengthWidth = -4; elements = -1
            case 0xc1: throw Self.structure("reserved byte 0xc1 is not MessagePack", offset: at)
            default: throw Self.structure("unknown type byte", offset: at)
            }
            if lengthWidth != 0 {
                let width = abs(lengthWidth)
                guard end - o >= width else { throw Self.structure("truncated message", offset: o) }
                var n = 0
                for i in 0..<width { n = n << 8 | Int(bytes[o + i]) }
                o += width
                if lengthWidth > 0 {
                    skip += n  // str/bin/ext payload (+1 type byte for ext)
                } else {
                    elements = elements == -1 ? 2 * n : n
                }
            }
            if skip > 0 {
                guard skip <= end - o else {
                    throw Self.structure("value declares \(skip) bytes but only \(end - o) remain", offset: at)
                }
                o += skip
            }
            if elements > 0 {
                guard elements <= end - o else {
                    throw Self.structure(
                        "container declares \(elements) elements but only \(end - o) bytes remain", offset: at)
                }
                left += elements
            }
        }
        offset = o
    }

    // MARK: Names

    /// Fixints, nil, bools and empty fixarray/fixmap: objects that are exactly one byte.
    @inline(__always)
    static func isOneByteObject(_ b: UInt8) -> Bool {
        b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3 || b == 0x90 || b == 0x80
    }

    static func isArray(_ b: UInt8) -> Bool { (0x90...0x9f).contains(b) || b == 0xdc || b == 0xdd }

    static func typeName(_ b: UInt8) -> String {
        switch b {
        case 0x00...0x7f, 0xe0...0xff, 0xcc...0xd3: return "integer"
        case 0x80...0x8f, 0xde, 0xdf: return "map"
        case 0x90...0x9f, 0xdc, 0xdd: return "array"
        case 0xa0...0xbf, 0xd9...0xdb: return "string"
        case 0xc0: return "nil"
        case 0xc2, 0xc3: return "bool"
        case 0xc4...0xc6: return "bin"
        case 0xca, 0xcb: return "float"
        case 0xc1: return "reserved byte 0xc1"
        default: return "ext"
        }
    }

    /// "an integer", "a map".
    static func withArticle(_ noun: String) -> String {
        (noun.first.map { "aeiou".contains($0) } ?? false ? "an " : "a ") + noun
    }

    /// A user string for an error message: at most 64 characters.
    static func printable(_ s: String) -> String {
        s.count <= 64 ? s : String(s.prefix(64)) + "…"
    }
}
