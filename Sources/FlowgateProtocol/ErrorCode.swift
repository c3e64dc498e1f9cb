/// Error codes of protocol v1 (`error.code` in a reply with `ok: false`).
public enum ErrorCode: String, Sendable, CaseIterable, Codable {
    /// Not MessagePack, not a map, a key of the wrong type, a non-finite number, a bad value.
    case badRequest = "bad_request"
    /// `obs` does not have the model's `obs_dim` columns, is ragged, empty, or not 1-D/2-D.
    case shapeMismatch = "shape_mismatch"
    /// `model` names no loaded model.
    case unknownModel = "unknown_model"
    /// `op` is not one of act, info, health, stats.
    case unknownOp = "unknown_op"
    /// The frame, the batch or a sampling setting exceeds the server's limits.
    case tooLarge = "too_large"
    /// The request queue is full; retry later.
    case overloaded = "overloaded"
    /// `deadline_ms` passed before the request's batch started.
    case deadlineExceeded = "deadline_exceeded"
    /// The model failed; the server keeps running.
    case `internal` = "internal"
}

/// The request's `id`, echoed unchanged in the reply: any string or integer.
public enum RequestID: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    /// A str id whose bytes are not valid UTF-8: echoed byte for byte.
    case rawString([UInt8])
    case int(Int64)
    case uint(UInt64)

    /// Reads an id from a MessagePack value; `nil` for other types.
    public init?(_ value: MessagePackValue) {
        switch value {
        case .string(let s): self = .string(s)
        case .rawString(let b): self = .rawString(b)
        case .int(let i): self = .int(i)
        case .uint(let u): self = .uint(u)
        default: return nil
        }
    }

    /// The id as a MessagePack value.
    public var messagePackValue: MessagePackValue {
        switch self {
        case .string(let s): return .string(s)
        case .rawString(let b): return .rawString(b)
        case .int(let i): return .int(i)
        case .uint(let u): return .uint(u)
        }
    }

    public var description: String {
        switch self {
        case .string(let s): return "\"\(s)\""
        case .rawString(let b): return "\"\(String(decoding: b, as: UTF8.self))\" (not UTF-8)"
        case .int(let i): return String(i)
        case .uint(let u): return String(u)
        }
    }
}

/// A protocol error: what goes into `error` of a reply with `ok: false`.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    /// The request's id when it could be read.
    public var id: RequestID?

    public init(_ code: ErrorCode, _ message: String, id: RequestID? = nil) {
        self.code = code
        self.message = message
        self.id = id
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
