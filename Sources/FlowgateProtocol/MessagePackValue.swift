/// One MessagePack value.
///
/// Maps keep their entries in order (so encoding is deterministic) and may have keys of any type,
/// although protocol v1 only uses string keys. Floats remember whether they were float32 or float64 on
/// the wire.
public enum MessagePackValue: Sendable, Equatable {
    case `nil`
    case bool(Bool)
    /// Any integer that fits in `Int64` (negative integers always do).
    case int(Int64)
    /// A non-negative integer above `Int64.max`.
    case uint(UInt64)
    case float(Float)
    case double(Double)
    case string(String)
    /// A str whose bytes are not valid UTF-8, kept byte for byte (so an id echoes unchanged).
    case rawString([UInt8])
    case binary([UInt8])
    case array([MessagePackValue])
    case map([MessagePackEntry])
    /// An extension type (type code and payload); protocol v1 does not use them.
    case ext(Int8, [UInt8])
}

/// One key/value pair of a MessagePack map.
public struct MessagePackEntry: Sendable, Equatable {
    public var key: MessagePackValue
    public var value: MessagePackValue

    /// Creates an entry.
    public init(_ key: MessagePackValue, _ value: MessagePackValue) {
        self.key = key
        self.value = value
    }
}

extension MessagePackValue {
    /// Builds a map with string keys, in the given order.
    public static func map(_ pairs: KeyValuePairs<String, MessagePackValue>) -> MessagePackValue {
        .map(pairs.map { MessagePackEntry(.string($0.key), $0.value) })
    }

    /// Builds a map with string keys from an ordered list of pairs.
    public static func stringMap(_ pairs: [(String, MessagePackValue)]) -> MessagePackValue {
        .map(pairs.map { MessagePackEntry(.string($0.0), $0.1) })
    }

    /// The value stored under string key `key` when `self` is a map (first match), else `nil`.
    public subscript(key: String) -> MessagePackValue? {
        guard case .map(let entries) = self else { return nil }
        for entry in entries {
            if case .string(let k) = entry.key, k == key { return entry.value }
        }
        return nil
    }

    /// The entries when `self` is a map.
    public var mapEntries: [MessagePackEntry]? {
        if case .map(let e) = self { return e }
        return nil
    }

    /// The elements when `self` is an array.
    public var arrayValue: [MessagePackValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The string when `self` is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The Boolean when `self` is a Boolean.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The integer when `self` is an integer that fits in `Int64`.
    public var int64Value: Int64? {
        switch self {
        case .int(let v): return v
        case .uint(let v): return v <= UInt64(Int64.max) ? Int64(v) : nil
        default: return nil
        }
    }

    /// The integer when `self` is an integer that fits in `Int`.
    public var intValue: Int? { int64Value.flatMap { Int(exactly: $0) } }

    /// The number as a `Double` when `self` is an integer or a float.
    public var doubleValue: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .uint(let v): return Double(v)
        case .float(let v): return Double(v)
        case .double(let v): return v
        default: return nil
        }
    }

    /// A short name of the value's type, for error messages.
    public var typeName: String {
        switch self {
        case .nil: return "nil"
        case .bool: return "bool"
        case .int, .uint: return "integer"
        case .float, .double: return "float"
        case .string, .rawString: return "string"
        case .binary: return "bin"
        case .array: return "array"
        case .map: return "map"
        case .ext: return "ext"
        }
    }
}
