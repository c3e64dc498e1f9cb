/// Where the time of an `act` request went (`timing` in the reply).
public struct Timing: Sendable, Equatable {
    /// Microseconds from the server receiving the request to its batch starting.
    public var queueMicroseconds: Int
    /// Microseconds the batch's forward pass took.
    public var computeMicroseconds: Int
    /// Number of observations that shared the computation (across all requests in the batch).
    public var batch: Int

    public init(queueMicroseconds: Int, computeMicroseconds: Int, batch: Int) {
        self.queueMicroseconds = queueMicroseconds
        self.computeMicroseconds = computeMicroseconds
        self.batch = batch
    }
}

/// The reply to a successful `act` request.
///
/// Per-observation fields hold one value per observation; when the request held a single
/// observation (`isBatch == false`) they are written as scalars and `action` as a 1-D array.
public struct ActReply: Sendable, Equatable {
    public var id: RequestID?
    public var model: String
    public var version: String
    /// `[act_dim]` or `[B, act_dim]`.
    public var actions: FloatArray
    public var confidence: [Float]
    public var reliable: [Bool]
    public var energy: [Float]
    public var q: [Float]
    public var threshold: Float
    public var timing: Timing
    /// Encoding of arrays in this reply (the request's).
    public var encoding: ArrayEncoding
    /// P(failure within the model's risk horizon) per observation; `nil` (key absent) when the
    /// model has no risk calibration.
    public var risk: [Float]?
    /// The stream's alarm state after each observation; `nil` (key absent) unless the request named
    /// a `stream` and the model has an alarm rule.
    public var alarm: [Bool]?

    public init(
        id: RequestID?, model: String, version: String, actions: FloatArray, confidence: [Float],
        reliable: [Bool], energy: [Float], q: [Float], threshold: Float, timing: Timing,
        encoding: ArrayEncoding, risk: [Float]? = nil, alarm: [Bool]? = nil
    ) {
        self.risk = risk
        self.alarm = alarm
        self.id = id
        self.model = model
        self.version = version
        self.actions = actions
        self.confidence = confidence
        self.reliable = reliable
        self.energy = energy
        self.q = q
        self.threshold = threshold
        self.timing = timing
        self.encoding = encoding
    }

    /// True when the request held a batch (2-D `obs`).
    public var isBatch: Bool { actions.shape.count == 2 }

    /// The reply as a MessagePack map.
    public var messagePackValue: MessagePackValue {
        func perObservation(_ v: [Float]) -> MessagePackValue {
            if !isBatch { return .float(v.first ?? 0) }
            return FloatArray(v).messagePackValue(encoding)
        }
        var pairs: [(String, MessagePackValue)] = [
            ("ok", .bool(true)),
            ("id", id?.messagePackValue ?? .nil),
            ("model", .string(model)),
            ("version", .string(version)),
            ("action", actions.messagePackValue(encoding)),
            ("confidence", perObservation(confidence)),
            ("reliable", isBatch ? .array(reliable.map { .bool($0) }) : .bool(reliable.first ?? false)),
            ("energy", perObservation(energy)),
            ("q", perObservation(q)),
            ("threshold", .float(threshold)),
            (
                "timing",
                .map([
                    "queue_us": .int(Int64(timing.queueMicroseconds)),
                    "compute_us": .int(Int64(timing.computeMicroseconds)),
                    "batch": .int(Int64(timing.batch)),
                ])
            ),
        ]
        if let risk { pairs.append(("risk", perObservation(risk))) }
        if let alarm { pairs.append(("alarm", isBatch ? .array(alarm.map { .bool($0) }) : .bool(alarm.first ?? false))) }
        return .stringMap(pairs)
    }

    /// Encodes the reply as one frame.
    public func encode() -> [UInt8] { MessagePack.encode(messagePackValue) }

    /// Decodes a reply map; a reply with `ok: false` throws its `ProtocolError`.
    public init(_ value: MessagePackValue) throws(ProtocolError) {
        try Reply.checkOK(value)
        func bad(_ what: String) -> ProtocolError { ProtocolError(.internal, "malformed act reply: \(what)") }
        guard let actionValue = value["action"] else { throw bad("no 'action'") }
        let (actions, encoding) = try FloatArray.decode(actionValue, key: "action")
        let batch = actions.shape.count == 2
        func floats(_ key: String) throws(ProtocolError) -> [Float] {
            guard let v = value[key] else { throw bad("no '\(key)'") }
            if !batch {
                guard let d = v.doubleValue else { throw bad("'\(key)' is not a number") }
                return [Float(d)]
            }
            return try FloatArray.decode(v, key: key).0.values
        }
        self.id = value["id"].flatMap(RequestID.init)
        self.model = value["model"]?.stringValue ?? ""
        self.version = value["version"]?.stringValue ?? ""
        self.actions = actions
        self.encoding = encoding
        self.confidence = try floats("confidence")
        self.energy = try floats("energy")
        self.q = try floats("q")
        if batch {
            guard let list = value["reliable"]?.arrayValue else { throw bad("'reliable' is not a list") }
            self.reliable = list.map { $0.boolValue ?? false }
        } else {
            guard let b = value["reliable"]?.boolValue else { throw bad("'reliable' is not a bool") }
            self.reliable = [b]
        }
        self.threshold = Float(value["threshold"]?.doubleValue ?? .nan)
        self.risk = value["risk"] == nil ? nil : try floats("risk")
        if let a = value["alarm"] {
            self.alarm = batch ? (a.arrayValue ?? []).map { $0.boolValue ?? false } : [a.boolValue ?? false]
        } else {
            self.alarm = nil
        }
        let t = value["timing"]
        self.timing = Timing(
            queueMicroseconds: t?["queue_us"]?.intValue ?? 0,
            computeMicroseconds: t?["compute_us"]?.intValue ?? 0,
            batch: t?["batch"]?.intValue ?? 0)
    }
}

/// Helpers shared by every reply.
public enum Reply {
    /// Throws the reply's error when it has `ok: false` (or no `ok`).
    public static func checkOK(_ value: MessagePackValue) throws(ProtocolError) {
        guard value.mapEntries != nil else {
            throw ProtocolError(.internal, "reply is not a map")
        }
        if value["ok"]?.boolValue == true { return }
        throw ProtocolError(errorReply: value)
    }
}

extension ProtocolError {
    /// The error as a reply map: `{ok: false, id, error: {code, message}}`.
    public var messagePackValue: MessagePackValue {
        .map([
            "ok": .bool(false),
            "id": id?.messagePackValue ?? .nil,
            "error": .map(["code": .string(code.rawValue), "message": .string(message)]),
        ])
    }

    /// Encodes the error reply as one frame.
    public func encode() -> [UInt8] { MessagePack.encode(messagePackValue) }

    /// Reads an error reply (`ok: false`); unreadable replies become `internal`.
    public init(errorReply value: MessagePackValue) {
        let error = value["error"]
        let code = error?["code"]?.stringValue.flatMap(ErrorCode.init(rawValue:)) ?? .internal
        let message = error?["message"]?.stringValue ?? "reply without ok: true"
        self.init(code, message, id: value["id"].flatMap(RequestID.init))
    }
}
