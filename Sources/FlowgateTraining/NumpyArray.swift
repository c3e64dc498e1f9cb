import Foundation

/// Element types we read from `.npy` files (and map HDF5 datasets onto).
public enum NumpyDType: Equatable, Sendable, CustomStringConvertible {
    case float32, float64, bool, int64, int32, uint8
    /// `<U n`: fixed-width unicode, n UTF-32LE code units per element.
    case unicode(chars: Int)

    public var itemSize: Int {
        switch self {
        case .float32, .int32: return 4
        case .float64, .int64: return 8
        case .bool, .uint8: return 1
        case .unicode(let n): return 4 * n
        }
    }

    public var isNumeric: Bool {
        switch self {
        case .float32, .float64, .int64, .int32, .uint8: return true
        case .bool, .unicode: return false
        }
    }

    public var isFloatingPoint: Bool { self == .float32 || self == .float64 }

    /// The numpy `descr` spelling.
    public var description: String {
        switch self {
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .bool: return "|b1"
        case .int64: return "<i8"
        case .int32: return "<i4"
        case .uint8: return "|u1"
        case .unicode(let n): return "<U\(n)"
        }
    }
}

/// An n-dimensional array in C order: the raw little-endian element bytes plus dtype and shape.
/// `.npz` members and HDF5 datasets are both read into this form before `OfflineDataset`
/// validates and converts them.
public struct NumpyArray: Sendable, Equatable {
    public let dtype: NumpyDType
    public let shape: [Int]
    /// count × itemSize bytes, little-endian, C order.
    public let bytes: [UInt8]

    /// Validating initialiser: `bytes.count` must equal the product of `shape` × item size.
    public init(dtype: NumpyDType, shape: [Int], bytes: [UInt8]) throws {
        guard let n = NumpyArray.elementCount(shape), n.multipliedReportingOverflow(by: dtype.itemSize).overflow == false,
            n * dtype.itemSize == bytes.count
        else {
            throw DatasetError(.shapeMismatch, file: "<memory>", "shape \(shape) × \(dtype.itemSize) bytes ≠ \(bytes.count) bytes")
        }
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    init(unchecked dtype: NumpyDType, shape: [Int], bytes: [UInt8]) {
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// Convenience for tests and callers building arrays in memory.
    public init(float32 values: [Float], shape: [Int]) throws {
        var b = [UInt8](repeating: 0, count: values.count * 4)
        for (i, v) in values.enumerated() { b.storeLE(v.bitPattern, at: 4 * i) }
        try self.init(dtype: .float32, shape: shape, bytes: b)
    }

    public init(float64 values: [Double], shape: [Int]) throws {
        var b = [UInt8](repeating: 0, count: values.count * 8)
        for (i, v) in values.enumerated() { b.storeLE(v.bitPattern, at: 8 * i) }
        try self.init(dtype: .float64, shape: shape, bytes: b)
    }

    public init(bool values: [Bool], shape: [Int]) throws {
        try self.init(dtype: .bool, shape: shape, bytes: values.map { $0 ? 1 : 0 })
    }

    /// Product of the dimensions, nil on overflow or a negative dimension.
    static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        return n
    }

    public var count: Int { dtype.itemSize == 0 ? 0 : bytes.count / dtype.itemSize }

    /// Elements converted to Float (bools as 0/1); nil for strings.
    public func floats() -> [Float]? {
        let n = count
        switch dtype {
        case .unicode: return nil
        case .float32:
            return [Float](unsafeUninitializedCapacity: n) { out, c in
                bytes.withUnsafeBytes { raw in
                    #if _endian(little)
                        if n > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: n * 4) }
                    #else
                        for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                    #endif
                }
                c = n
            }
        case .float64:
            return convert(n) { raw, i in Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case .int64:
            return convert(n) { raw, i in Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .int32:
            return convert(n) { raw, i in Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .uint8, .bool:
            return convert(n) { raw, i in Float(raw[i]) }
        }
    }

    /// Elements converted to Double (bools as 0/1); nil for strings.
    public func doubles() -> [Double]? {
        switch dtype {
        case .unicode: return nil
        case .float64:
            return convert(count) { raw, i in Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        case .int64:
            return convert(count) { raw, i in Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        default:
            return floats().map { $0.map(Double.init) }
        }
    }

    /// Unicode elements decoded from UTF-32LE with trailing NULs removed; nil for other dtypes.
    public func strings() -> [String]? {
        guard case .unicode(let chars) = dtype else { return nil }
        var out: [String] = []
        out.reserveCapacity(count)
        bytes.withUnsafeBytes { raw in
            for e in 0..<count {
                var scalars = String.UnicodeScalarView()
                for k in 0..<chars {
                    let u = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: (e * chars + k) * 4, as: UInt32.self))
                    if u == 0 { break }
                    scalars.append(Unicode.Scalar(u) ?? "\u{FFFD}")
                }
                out.append(String(scalars))
            }
        }
        return out
    }

    private func convert<T>(_ n: Int, _ f: (UnsafeRawBufferPointer, Int) -> T) -> [T] {
        [T](unsafeUninitializedCapacity: n) { out, c in
            bytes.withUnsafeBytes { raw in
                for i in 0..<n { (out.baseAddress! + i).initialize(to: f(raw, i)) }
            }
            c = n
        }
    }
}

extension [UInt8] {
    mutating func storeLE<T: FixedWidthInteger>(_ v: T, at offset: Int) {
        var le = v.littleEndian
        Swift.withUnsafeBytes(of: &le) { src in
            for k in 0..<MemoryLayout<T>.size { self[offset + k] = src[k] }
        }
    }
}

// MARK: - .npy parsing

/// Reader for the NumPy `.npy` format (versions 1.0, 2.0, 3.0).
public enum NumpyFormat {
    /// Reads a standalone `.npy` file.
    public static func readNpy(path: String) throws -> NumpyArray {
        let data = try readWholeFile(path)
        return try data.withUnsafeBytes { try parseNpy($0, file: path, key: nil) }
    }

    /// Parses `.npy` bytes. `file`/`key` only label errors.
    public static func parseNpy(_ buf: UnsafeRawBufferPointer, file: String, key: String?) throws -> NumpyArray {
        func fail(_ k: DatasetError.Kind, _ msg: String) -> DatasetError { DatasetError(k, file: file, key: key, msg) }
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard buf.count >= 10 else {
            if buf.count < 6 || !zip(magic, buf.prefix(6)).allSatisfy({ $0 == $1 }) {
                throw fail(.badHeader, "not a .npy array (no \\x93NUMPY magic; \(buf.count) bytes)")
            }
            throw fail(.memberTruncated, ".npy header truncated (\(buf.count) bytes)")
        }
        guard zip(magic, buf.prefix(6)).allSatisfy({ $0 == $1 }) else {
            throw fail(.badHeader, "not a .npy array (no \\x93NUMPY magic)")
        }
        let major = buf[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(UInt16(buf[8]) | UInt16(buf[9]) << 8)
            headerStart = 10
        case 2, 3:
            guard buf.count >= 12 else { throw fail(.memberTruncated, ".npy header truncated (\(buf.count) bytes)") }
            headerLength = Int(UInt32(buf[8]) | UInt32(buf[9]) << 8 | UInt32(buf[10]) << 16 | UInt32(buf[11]) << 24)
            headerStart = 12
        default:
            throw fail(.badHeader, "unsupported .npy format version \(major).\(buf[7])")
        }
        guard headerLength <= buf.count - headerStart else {
            throw fail(.memberTruncated, ".npy header length \(headerLength) exceeds the \(buf.count - headerStart) bytes available")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: buf[headerStart..<(headerStart + headerLength)])
        let dict: [String: PyLiteral]
        do {
            var p = PyLiteralParser(Array(headerBytes))
            guard case .dict(let d) = try p.parseTop() else { throw PyLiteralParser.Failure(message: "header is not a dict") }
            dict = d
        } catch let e as PyLiteralParser.Failure {
            throw fail(.badHeader, ".npy header not parseable: \(e.message)")
        }
        guard case .str(let descr)? = dict["descr"] else {
            if dict["descr"] != nil { throw fail(.unsupportedDtype, "structured dtype \(dict["descr"]!) is not supported") }
            throw fail(.badHeader, ".npy header has no 'descr' string")
        }
        guard case .bool(let fortran)? = dict["fortran_order"] else { throw fail(.badHeader, ".npy header has no 'fortran_order' bool") }
        guard case .tuple(let dimsLit)? = dict["shape"] else { throw fail(.badHeader, ".npy header has no 'shape' tuple") }
        var shape: [Int] = []
        for d in dimsLit {
            guard case .int(let v) = d, v >= 0 else { throw fail(.badHeader, ".npy shape \(dimsLit) is not a tuple of non-negative ints") }
            shape.append(v)
        }
        let dtype = try parseDescr(descr, file: file, key: key)
        if fortran && shape.filter({ $0 > 1 }).count > 1 {
            throw fail(.fortranOrder, "array is stored in Fortran order (fortran_order: True); only C order is supported — save np.ascontiguousarray(x)")
        }
        guard let n = NumpyArray.elementCount(shape) else { throw fail(.sizeOutOfRange, "shape \(shape) has an absurd element count") }
        let (nbytes, o) = n.multipliedReportingOverflow(by: dtype.itemSize)
        let available = buf.count - headerStart - headerLength
        guard !o, nbytes <= available else {
            throw fail(.memberTruncated, "shape \(shape) × item size \(dtype.itemSize) needs \(o ? "more than Int.max" : String(nbytes)) bytes but only \(available) follow the header")
        }
        guard nbytes == available else {
            throw fail(.shapeMismatch, "shape \(shape) × item size \(dtype.itemSize) = \(nbytes) bytes but the data holds \(available)")
        }
        let start = headerStart + headerLength
        let bytes = [UInt8](UnsafeRawBufferPointer(rebasing: buf[start..<(start + nbytes)]))
        return NumpyArray(unchecked: dtype, shape: shape, bytes: bytes)
    }

    static func parseDescr(_ descr: String, file: String, key: String?) throws -> NumpyDType {
        func unsupported() -> DatasetError {
            DatasetError(
                .unsupportedDtype, file: file, key: key,
                "unsupported dtype '\(descr)' (supported: <f4 <f8 |b1 <i8 <i4 |u1 <U…)")
        }
        if descr == "?" { return .bool }
        guard let first = descr.first, "<>|=".contains(first) else { throw unsupported() }
        let body = String(descr.dropFirst())
        let dtype: NumpyDType
        switch body {
        case "f4": dtype = .float32
        case "f8": dtype = .float64
        case "b1", "?": dtype = .bool
        case "i8": dtype = .int64
        case "i4": dtype = .int32
        case "u1": dtype = .uint8
        default:
            guard body.hasPrefix("U"), let n = Int(body.dropFirst()), n >= 0, n <= 1 << 20 else { throw unsupported() }
            dtype = .unicode(chars: n)
        }
        if first == ">" && dtype.itemSize > 1 {
            throw DatasetError(.bigEndian, file: file, key: key, "big-endian dtype '\(descr)' is not supported; save with .astype('<\(body)')")
        }
        return dtype
    }
}

func readWholeFile(_ path: String) throws -> Data {
    do {
        return try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
    } catch {
        throw DatasetError(.io, file: path, "cannot read file: \(error.localizedDescription)")
    }
}

// MARK: - Python literal parser for .npy headers

enum PyLiteral: Equatable, CustomStringConvertible {
    case str(String), int(Int), bool(Bool), none
    case tuple([PyLiteral]), list([PyLiteral]), dict([String: PyLiteral])

    var description: String {
        switch self {
        case .str(let s): return "'\(s)'"
        case .int(let i): return String(i)
        case .bool(let b): return b ? "True" : "False"
        case .none: return "None"
        case .tuple(let t): return "(" + t.map(\.description).joined(separator: ", ") + (t.count == 1 ? ",)" : ")")
        case .list(let l): return "[" + l.map(\.description).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.map { "'\($0.key)': \($0.value)" }.joined(separator: ", ") + "}"
        }
    }
}

/// Just enough of Python's literal syntax for `.npy` headers: dicts with string keys, strings,
/// ints, True/False/None, tuples and lists. Depth-limited; never traps.
struct PyLiteralParser {
    struct Failure: Error { var message: String }
    let s: [UInt8]
    var i = 0
    var depth = 0

    init(_ bytes: [UInt8]) { s = bytes }

    mutating func parseTop() throws -> PyLiteral {
        let v = try value()
        skipSpace()
        guard i == s.count else { throw Failure(message: "trailing characters at offset \(i)") }
        return v
    }

    mutating func skipSpace() {
        while i < s.count, s[i] == 0x20 || s[i] == 0x0A || s[i] == 0x0D || s[i] == 0x09 { i += 1 }
    }

    mutating func expect(_ c: UInt8) throws {
        skipSpace()
        guard i < s.count, s[i] == c else { throw Failure(message: "expected '\(Character(Unicode.Scalar(c)))' at offset \(i)") }
        i += 1
    }

    mutating func value() throws -> PyLiteral {
        skipSpace()
        guard i < s.count else { throw Failure(message: "unexpected end of header") }
        depth += 1
        defer { depth -= 1 }
        guard depth < 32 else { throw Failure(message: "nesting too deep") }
        switch s[i] {
        case UInt8(ascii: "{"):
            i += 1
            var d: [String: PyLiteral] = [:]
            while true {
                skipSpace()
                if i < s.count, s[i] == UInt8(ascii: "}") { i += 1; return .dict(d) }
                guard case .str(let k) = try value() else { throw Failure(message: "dict key is not a string") }
                try expect(UInt8(ascii: ":"))
                d[k] = try value()
                skipSpace()
                if i < s.count, s[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "}"))
                return .dict(d)
            }
        case UInt8(ascii: "("), UInt8(ascii: "["):
            let close = s[i] == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "]")
            let isTuple = s[i] == UInt8(ascii: "(")
            i += 1
            var items: [PyLiteral] = []
            while true {
                skipSpace()
                if i < s.count, s[i] == close { i += 1; break }
                items.append(try value())
                skipSpace()
                if i < s.count, s[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(close)
                break
            }
            return isTuple ? .tuple(items) : .list(items)
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            let q = s[i]
            i += 1
            var out: [UInt8] = []
            while i < s.count, s[i] != q {
                if s[i] == UInt8(ascii: "\\"), i + 1 < s.count { i += 1 }
                out.append(s[i])
                i += 1
            }
            guard i < s.count else { throw Failure(message: "unterminated string") }
            i += 1
            return .str(String(decoding: out, as: UTF8.self))
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
            let start = i
            i += 1
            while i < s.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(s[i]) { i += 1 }
            guard let v = Int(String(decoding: s[start..<i], as: UTF8.self)) else {
                throw Failure(message: "integer out of range at offset \(start)")
            }
            if i < s.count, s[i] == UInt8(ascii: "L") { i += 1 }  // Python 2 long
            return .int(v)
        default:
            for (word, lit) in [("True", PyLiteral.bool(true)), ("False", .bool(false)), ("None", .none)] {
                let w = Array(word.utf8)
                if s.count - i >= w.count, Array(s[i..<(i + w.count)]) == w { i += w.count; return lit }
            }
            throw Failure(message: "unexpected character at offset \(i)")
        }
    }
}
