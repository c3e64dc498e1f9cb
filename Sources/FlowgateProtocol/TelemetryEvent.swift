/// One telemetry event on the server's PUB socket (protocol §5): the server encodes it, clients
/// decode it, so the message is defined once, here.
///
/// Two frames: the topic (`<kind>/<model>`, UTF-8) and a MessagePack map. Per-observation events
/// (`reliable/`, `unreliable/`) come for every observation of a successful `act`; stream events
/// (`alarm/`, `clear/`) come when a stream's alarm is raised or cleared (requests with `stream`).
public struct TelemetryEvent: Sendable, Equatable {
    /// The topic's first part.
    public enum Kind: String, Sendable, CaseIterable {
        case reliable, unreliable, alarm, clear
    }

    public var kind: Kind
    /// The request's id (the same for every observation of a batch).
    public var id: RequestID?
    public var model: String
    /// Unix time in seconds when the batch finished.
    public var time: Double
    public var reliable: Bool
    public var confidence: Float
    public var energy: Float
    public var threshold: Float
    /// The request's `stream`, when it named one.
    public var stream: String?
    /// P(failure within the model's horizon) for this observation, when the model has a risk model.
    public var risk: Float?
    /// Why an alarm was raised or cleared (human-readable; `alarm`/`clear` events only).
    public var reason: String?

    public init(
        kind: Kind, id: RequestID?, model: String, time: Double, reliable: Bool, confidence: Float, energy: Float,
        threshold: Float, stream: String? = nil, risk: Float? = nil, reason: String? = nil
    ) {
        self.kind = kind
        self.id = id
        self.model = model
        self.time = time
        self.reliable = reliable
        self.confidence = confidence
        self.energy = energy
        self.threshold = threshold
        self.stream = stream
        self.risk = risk
        self.reason = reason
    }

    /// `reliable/<model>`, `unreliable/<model>`, `alarm/<model>` or `clear/<model>`.
    public var topic: String { kind.rawValue + "/" + model }

    /// The event's body (the second frame); optional keys are left out when absent.
    public var messagePackValue: MessagePackValue {
        var pairs: [(String, MessagePackValue)] = [
            ("id", id?.messagePackValue ?? .nil), ("model", .string(model)), ("t", .double(time)),
            ("reliable", .bool(reliable)), ("confidence", .float(confidence)), ("energy", .float(energy)),
            ("threshold", .float(threshold)),
        ]
        if let stream { pairs.append(("stream", .string(stream))) }
        if let risk { pairs.append(("risk", .float(risk))) }
        if let reason { pairs.append(("reason", .string(reason))) }
        return .stringMap(pairs)
    }

    /// The two frames published on the PUB socket.
    public var frames: [[UInt8]] { [Array(topic.utf8), MessagePack.encode(messagePackValue)] }

    /// Reads an event from its topic and decoded body; `nil` when the topic's kind is unknown.
    public init?(topic: String, body v: MessagePackValue) {
        guard let slash = topic.firstIndex(of: "/"), let kind = Kind(rawValue: String(topic[..<slash])) else { return nil }
        self.init(
            kind: kind, id: v["id"].flatMap(RequestID.init),
            model: v["model"]?.stringValue ?? String(topic[topic.index(after: slash)...]),
            time: v["t"]?.doubleValue ?? 0, reliable: v["reliable"]?.boolValue ?? false,
            confidence: Float(v["confidence"]?.doubleValue ?? .nan), energy: Float(v["energy"]?.doubleValue ?? .nan),
            threshold: Float(v["threshold"]?.doubleValue ?? .nan), stream: v["stream"]?.stringValue,
            risk: v["risk"]?.doubleValue.map(Float.init), reason: v["reason"]?.stringValue)
    }

    /// Decodes the two frames of an event.
    public static func decode(frames: [[UInt8]]) throws(ProtocolError) -> TelemetryEvent {
        guard frames.count == 2 else { throw ProtocolError(.internal, "telemetry with \(frames.count) frames") }
        let topic = String(decoding: frames[0], as: UTF8.self)
        let body: MessagePackValue
        do {
            body = try MessagePack.decode(frames[1])
        } catch {
            throw ProtocolError(.internal, "telemetry body: \(error)")
        }
        guard body.mapEntries != nil, let event = TelemetryEvent(topic: topic, body: body) else {
            throw ProtocolError(.internal, "telemetry event on unknown topic '\(topic)' or with a body that is not a map")
        }
        return event
    }
}
