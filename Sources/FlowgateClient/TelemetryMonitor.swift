import FlowgateZMQ
public import FlowgateProtocol

/// One telemetry event from the server's PUB socket.
public struct TelemetryEvent: Sendable, Equatable {
    /// `reliable/<model>` or `unreliable/<model>`.
    public var topic: String
    public var id: RequestID?
    public var model: String
    /// Unix time in seconds when the action was computed.
    public var time: Double
    public var reliable: Bool
    public var confidence: Float
    public var energy: Float
    public var threshold: Float
}

/// Subscribes to the server's telemetry feed (a safety monitor's view of every action).
///
/// Not thread-safe: use it from one thread. PUB/SUB drops events sent before the subscription is
/// established and when the subscriber falls behind by more than the high-water mark.
public final class TelemetryMonitor {
    private let context: ZMQContext
    private let socket: ZMQSocket

    /// Connects to `endpoint` and subscribes to topics starting with each prefix (`""`: everything,
    /// `"unreliable/"`: only unreliable actions of any model). `curve`: keys for a CURVE server.
    public init(endpoint: String, topics: [String] = [""], curve: CurveClientKeys? = nil) throws {
        do {
            context = try ZMQContext()
            socket = try ZMQSocket(context, .sub)
            try socket.setLinger(milliseconds: 0)
            try curve?.apply(to: socket)
            for t in topics { try socket.subscribe(t) }
            try socket.connect(endpoint)
        } catch {
            throw FlowgateClientError.transport(error.description)
        }
    }

    /// The next event, or `nil` if none arrives within the timeout.
    public func next(timeoutMilliseconds: Int) throws -> TelemetryEvent? {
        let frames: [[UInt8]]
        do {
            guard try ZMQSocket.pollReadable([socket], timeoutMilliseconds: timeoutMilliseconds)[0] else { return nil }
            frames = try socket.receive().frames
        } catch {
            throw FlowgateClientError.transport(error.description)
        }
        guard frames.count == 2 else { throw FlowgateClientError.malformedReply("telemetry with \(frames.count) frames") }
        let v: MessagePackValue
        do {
            v = try MessagePack.decode(frames[1])
        } catch {
            throw FlowgateClientError.malformedReply("telemetry body: \(error)")
        }
        return TelemetryEvent(
            topic: String(decoding: frames[0], as: UTF8.self), id: v["id"].flatMap(RequestID.init),
            model: v["model"]?.stringValue ?? "", time: v["t"]?.doubleValue ?? 0,
            reliable: v["reliable"]?.boolValue ?? false, confidence: Float(v["confidence"]?.doubleValue ?? .nan),
            energy: Float(v["energy"]?.doubleValue ?? .nan), threshold: Float(v["threshold"]?.doubleValue ?? .nan))
    }
}
