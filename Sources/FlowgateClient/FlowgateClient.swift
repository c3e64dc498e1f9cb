// FlowgateClient: a Swift client for protocol v1 (docs/protocol.md), used by tests and the load tester.
import FlowgateZMQ
public import FlowgateProtocol

/// Why a client call failed.
public enum FlowgateClientError: Error, Sendable, CustomStringConvertible {
    /// No reply within the timeout after every retry.
    case timeout(endpoint: String, attempts: Int)
    /// The server answered with `ok: false`.
    case server(ProtocolError)
    /// A ZeroMQ call failed.
    case transport(String)
    /// The reply was not a protocol v1 reply.
    case malformedReply(String)

    public var description: String {
        switch self {
        case .timeout(let e, let n): return "no reply from \(e) after \(n) attempts"
        case .server(let e): return "server error \(e)"
        case .transport(let m): return "transport error: \(m)"
        case .malformedReply(let m): return "malformed reply: \(m)"
        }
    }
}

/// A synchronous client for one flowgate server.
///
/// REQ sockets follow the Lazy Pirate pattern: wait `timeoutMilliseconds` for a reply, then close and
/// reopen the socket and resend, up to `retries` times. DEALER sockets send the empty delimiter frame
/// like REQ does and additionally allow pipelining (`send` several requests, then `receive`).
///
/// Not thread-safe: use one client per thread.
public final class FlowgateClient {
    /// The ZeroMQ socket type used to talk to the server.
    public enum SocketKind: Sendable {
        case req, dealer
    }

    public let endpoint: String
    public let kind: SocketKind
    /// How long to wait for each reply.
    public var timeoutMilliseconds: Int
    /// How many times to resend after a timeout (so at most `retries + 1` attempts).
    public var retries: Int
    /// CURVE keys when the server uses CURVE; nil for a plaintext server.
    public let curve: CurveClientKeys?
    private let context: ZMQContext
    private var socket: ZMQSocket

    /// Connects to `endpoint` (connection is asynchronous; the first request waits for it).
    ///
    /// - Parameter sharedContext: a ZeroMQ context to use instead of a new one; needed for
    ///   `inproc://` endpoints of a server in the same process (`InferenceServer.sharedContext`).
    /// - Parameter curve: keys for a CURVE server (`CurveClientKeys.load`); a refused client gets
    ///   no reply at all, so its calls time out.
    public init(
        endpoint: String, kind: SocketKind = .req, timeoutMilliseconds: Int = 5000, retries: Int = 2,
        sharedContext: UnsafeMutableRawPointer? = nil, curve: CurveClientKeys? = nil
    ) throws {
        self.endpoint = endpoint
        self.curve = curve
        self.kind = kind
        self.timeoutMilliseconds = timeoutMilliseconds
        self.retries = retries
        do {
            if let sharedContext {
                context = ZMQContext(borrowing: sharedContext)
            } else {
                context = try ZMQContext()
            }
            socket = try Self.makeSocket(context, kind, endpoint, curve)
        } catch {
            throw FlowgateClientError.transport(error.description)
        }
    }

    private static func makeSocket(
        _ context: ZMQContext, _ kind: SocketKind, _ endpoint: String, _ curve: CurveClientKeys?
    ) throws(ZMQError) -> ZMQSocket {
        let s = try ZMQSocket(context, kind == .req ? .req : .dealer)
        try s.setLinger(milliseconds: 0)
        try curve?.apply(to: s)
        try s.connect(endpoint)
        return s
    }

    // MARK: - Typed calls

    /// Asks for the action of one observation.
    public func act(
        observation: [Float], parameters: ActParameters = ActParameters(), id: RequestID? = nil,
        model: String? = nil, encoding: ArrayEncoding = .plain
    ) throws -> ActReply {
        try act(Request.act(FloatArray(observation), encoding: encoding, parameters: parameters, id: id, model: model))
    }

    /// Asks for the actions of a batch of observations (observation i uses seed S+i).
    public func act(
        batch: [[Float]], parameters: ActParameters = ActParameters(), id: RequestID? = nil,
        model: String? = nil, encoding: ArrayEncoding = .plain
    ) throws -> ActReply {
        try act(Request.act(FloatArray(rows: batch), encoding: encoding, parameters: parameters, id: id, model: model))
    }

    /// Sends an `act` request and decodes its reply; server errors throw `.server`.
    public func act(_ request: Request) throws -> ActReply {
        try typed(request, ActReply.init)
    }

    /// Protocol and model information.
    public func info(id: RequestID? = nil) throws -> InfoReply {
        try typed(Request(op: .info, id: id), InfoReply.init)
    }

    /// Liveness and readiness.
    public func health(id: RequestID? = nil) throws -> HealthReply {
        try typed(Request(op: .health, id: id), HealthReply.init)
    }

    /// Server statistics, as the reply map (see docs/protocol.md, "stats").
    public func stats(id: RequestID? = nil) throws -> MessagePackValue {
        let reply = try request(Request(op: .stats, id: id))
        do {
            try Reply.checkOK(reply)
        } catch {
            throw FlowgateClientError.server(error)
        }
        return reply
    }

    private func typed<T>(_ request: Request, _ decode: (MessagePackValue) throws(ProtocolError) -> T) throws -> T {
        let reply = try self.request(request)
        do {
            return try decode(reply)
        } catch {
            throw FlowgateClientError.server(error)
        }
    }

    // MARK: - Raw calls

    /// Sends `request` and returns the reply map as is (errors included).
    public func request(_ request: Request) throws -> MessagePackValue {
        let bytes = try roundTrip(request.encode())
        do {
            return try MessagePack.decode(bytes)
        } catch {
            throw FlowgateClientError.malformedReply("\(error)")
        }
    }

    /// Sends one raw body frame and returns the raw reply body, with Lazy-Pirate retries.
    public func roundTrip(_ body: [UInt8]) throws -> [UInt8] {
        var attempts = 0
        while true {
            attempts += 1
            try send(frame: body)
            if let reply = try receiveFrame(timeoutMilliseconds: timeoutMilliseconds) { return reply }
            // Lazy Pirate: a REQ socket that lost its reply is stuck; reopen it.
            try reconnect()
            if attempts > retries { throw FlowgateClientError.timeout(endpoint: endpoint, attempts: attempts) }
        }
    }

    /// Sends a request without waiting (DEALER: any number in flight; REQ: one at a time).
    public func send(_ request: Request) throws { try send(frame: request.encode()) }

    /// Sends a raw body frame (with the empty delimiter on DEALER sockets).
    public func send(frame body: [UInt8]) throws {
        do {
            try socket.send(kind == .dealer ? [[], body] : [body])
        } catch {
            throw FlowgateClientError.transport(error.description)
        }
    }

    /// Sends arbitrary frames as one multipart message, exactly as given (no delimiter is added).
    public func sendFrames(_ frames: [[UInt8]]) throws {
        do {
            try socket.send(frames)
        } catch {
            throw FlowgateClientError.transport(error.description)
        }
    }

    /// Waits for the next reply and decodes it; `nil` after the timeout.
    public func receive(timeoutMilliseconds: Int? = nil) throws -> MessagePackValue? {
        guard let bytes = try receiveFrame(timeoutMilliseconds: timeoutMilliseconds ?? self.timeoutMilliseconds) else {
            return nil
        }
        do {
            return try MessagePack.decode(bytes)
        } catch {
            throw FlowgateClientError.malformedReply("\(error)")
        }
    }

    /// Waits for the next message and returns all its frames as received; `nil` after the timeout.
    public func receiveFrames(timeoutMilliseconds: Int) throws -> [[UInt8]]? {
        do {
            guard try ZMQSocket.pollReadable([socket], timeoutMilliseconds: timeoutMilliseconds)[0] else { return nil }
            return try socket.receive().frames
        } catch {
            throw FlowgateClientError.transport(error.description)
        }
    }

    /// Waits for the next reply body; `nil` after the timeout.
    public func receiveFrame(timeoutMilliseconds: Int) throws -> [UInt8]? {
        guard let frames = try receiveFrames(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        switch kind {
        case .req:
            guard frames.count == 1 else { throw FlowgateClientError.malformedReply("\(frames.count) frames") }
            return frames[0]
        case .dealer:
            guard frames.count == 2, frames[0].isEmpty else {
                throw FlowgateClientError.malformedReply("expected [empty, body], got \(frames.count) frames")
            }
            return frames[1]
        }
    }

    /// Closes the socket and opens a fresh one (drops any reply still on its way).
    public func reconnect() throws {
        socket.close()
        do {
            socket = try Self.makeSocket(context, kind, endpoint, curve)
        } catch {
            throw FlowgateClientError.transport(error.description)
        }
    }
}
