import FlowgateZMQ
public import FlowgateProtocol

/// Subscribes to the server's telemetry feed (a safety monitor's view of every action, and the
/// `alarm/` and `clear/` events of streams). The events are FlowgateProtocol's `TelemetryEvent`.
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
        do {
            return try TelemetryEvent.decode(frames: frames)
        } catch {
            throw FlowgateClientError.malformedReply(error.message)
        }
    }
}
