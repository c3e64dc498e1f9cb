// Thin libzmq wrapper shared by FlowgateServer and FlowgateClient (package access only: the client
// must not depend on the server, and neither exposes ZeroMQ types in its public API).
internal import CZeroMQ

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A libzmq call failed: names the function and the errno it reported.
package struct ZMQError: Error, CustomStringConvertible {
    package let function: String
    package let errno: Int32

    package var description: String {
        "\(function) failed: \(String(cString: zmq_strerror(errno))) (errno \(errno))"
    }

    /// The context was terminated (`zmq_ctx_shutdown`): blocking calls return this to stop loops.
    package var isTerminated: Bool { errno == ETERM }
    /// A non-blocking call would have blocked.
    package var wouldBlock: Bool { errno == EAGAIN }
    /// ROUTER_MANDATORY: the peer is gone (or its queue is full).
    package var isUnroutable: Bool { errno == EHOSTUNREACH }
}

/// Runs one libzmq call the swift-nio way: retries on EINTR and turns -1 into a `ZMQError` naming
/// `function` and errno. Every libzmq call in this module goes through here.
@inline(__always)
@discardableResult
package func zmqCall(_ function: String, _ body: () -> Int32) throws(ZMQError) -> Int32 {
    while true {
        let rc = body()
        if rc != -1 { return rc }
        let e = zmq_errno()
        if e == EINTR { continue }
        throw ZMQError(function: function, errno: e)
    }
}

/// A libzmq context. Thread-safe (libzmq contexts are), so it is `Sendable`; terminated in `deinit`
/// once every socket that retains it has been closed.
package final class ZMQContext: @unchecked Sendable {
    package let handle: UnsafeMutableRawPointer
    private let owned: Bool

    package init() throws(ZMQError) {
        guard let h = zmq_ctx_new() else { throw ZMQError(function: "zmq_ctx_new", errno: zmq_errno()) }
        handle = h
        owned = true
    }

    /// Uses a context owned by someone else (for `inproc://` endpoints, which only connect sockets of
    /// one context); it is not terminated here.
    package init(borrowing handle: UnsafeMutableRawPointer) {
        self.handle = handle
        owned = false
    }

    /// Makes every blocking call on this context's sockets return ETERM.
    package func shutdown() { _ = zmq_ctx_shutdown(handle) }

    deinit {
        guard owned else { return }
        while zmq_ctx_term(handle) == -1 && zmq_errno() == EINTR {}
    }
}

/// Socket types used by flowgate.
package enum ZMQSocketType: Int32 {
    case pair = 0, req = 3, rep = 4, dealer = 5, router = 6, pub = 1, sub = 2, push = 8, pull = 7
}

/// One libzmq socket. NOT thread-safe: a socket is created, used and closed on one thread (or handed
/// over with a happens-before edge, e.g. before a thread starts). Closed in `deinit` if not before.
package final class ZMQSocket {
    private(set) var handle: UnsafeMutableRawPointer?
    package let context: ZMQContext

    package init(_ context: ZMQContext, _ type: ZMQSocketType) throws(ZMQError) {
        guard let h = zmq_socket(context.handle, type.rawValue) else {
            throw ZMQError(function: "zmq_socket", errno: zmq_errno())
        }
        self.context = context
        self.handle = h
    }

    deinit { close() }

    /// Closes the socket (idempotent). Pending outgoing messages are kept for `ZMQ_LINGER`.
    package func close() {
        if let h = handle {
            _ = zmq_close(h)
            handle = nil
        }
    }

    package func setOption(_ option: Int32, _ value: Int32) throws(ZMQError) {
        var v = value
        try zmqCall("zmq_setsockopt") { zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) }
    }

    package func setOption(_ option: Int32, int64 value: Int64) throws(ZMQError) {
        var v = value
        try zmqCall("zmq_setsockopt") { zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) }
    }

    package func setOption(_ option: Int32, bytes: [UInt8]) throws(ZMQError) {
        try zmqCall("zmq_setsockopt") {
            bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        }
    }

    package func setLinger(milliseconds: Int32) throws(ZMQError) { try setOption(ZMQ_LINGER, milliseconds) }
    package func setSendHighWaterMark(_ n: Int32) throws(ZMQError) { try setOption(ZMQ_SNDHWM, n) }
    package func setReceiveHighWaterMark(_ n: Int32) throws(ZMQError) { try setOption(ZMQ_RCVHWM, n) }
    package func setRouterMandatory() throws(ZMQError) { try setOption(ZMQ_ROUTER_MANDATORY, 1) }
    package func setMaxMessageSize(_ n: Int64) throws(ZMQError) { try setOption(ZMQ_MAXMSGSIZE, int64: n) }
    package func subscribe(_ prefix: String) throws(ZMQError) { try setOption(ZMQ_SUBSCRIBE, bytes: Array(prefix.utf8)) }

    // CURVE and ZAP (set before bind/connect; keys are 40-character Z85 strings, see CurveKeys).

    /// CURVE server role with this secret key; handshakes go to the ZAP handler of `zapDomain`.
    package func setCurveServer(secretKey: String, zapDomain: String) throws(ZMQError) {
        try setOption(ZMQ_CURVE_SERVER, 1)
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(secretKey.utf8))
        try setOption(ZMQ_ZAP_DOMAIN, bytes: Array(zapDomain.utf8))
        // ZMQ_ZAP_ENFORCE_DOMAIN (93) is a draft option: refuse clients when no ZAP handler answers.
        // Debian's libzmq is built without draft options; the handler is always bound first anyway.
        try? setOption(93, 1)
    }

    /// Publishes this socket's handshake protocol failures (mechanism mismatch, bad cryptography,
    /// malformed commands) on a PAIR socket bound at `endpoint` (`inproc://…`), read with
    /// `ZMQSocket.handshakeFailure(_:)`. Plain I/O errors during a handshake (a peer resetting the
    /// connection, also after a ZAP refusal) are not included.
    package func monitorHandshakeFailures(_ endpoint: String) throws(ZMQError) {
        let events = ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
        try zmqCall("zmq_socket_monitor(\(endpoint))") { zmq_socket_monitor(handle, endpoint, events) }
    }

    /// Decodes one monitor event (two frames: 2-byte event, 4-byte value; endpoint) into a reason.
    package static func handshakeFailure(_ frames: [[UInt8]]) -> (reason: String, endpoint: String)? {
        guard frames.count >= 2, frames[0].count >= 6 else { return nil }
        let f = frames[0]
        let event = Int32(UInt16(f[0]) | UInt16(f[1]) << 8)
        let value = UInt32(f[2]) | UInt32(f[3]) << 8 | UInt32(f[4]) << 16 | UInt32(f[5]) << 24
        let endpoint = String(decoding: frames[1], as: UTF8.self)
        switch event {
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            switch Int32(bitPattern: value) {
            case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: return ("security mechanism mismatch (a plaintext client?)", endpoint)
            case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: return ("cryptographic error (the client has a wrong server key?)", endpoint)
            default: return ("protocol error 0x\(String(value, radix: 16))", endpoint)
            }
        default:
            return nil
        }
    }

    /// CURVE client role: the server's public key and this client's keypair.
    package func setCurveClient(serverKey: String, publicKey: String, secretKey: String) throws(ZMQError) {
        try setOption(ZMQ_CURVE_SERVERKEY, bytes: Array(serverKey.utf8))
        try setOption(ZMQ_CURVE_PUBLICKEY, bytes: Array(publicKey.utf8))
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(secretKey.utf8))
    }

    /// ZMTP heartbeats: a PING every `intervalMilliseconds`; a peer silent for `timeoutMilliseconds`
    /// is disconnected (its queued messages are dropped). Detects a peer whose host died, which TCP
    /// alone notices only after minutes.
    package func setHeartbeat(intervalMilliseconds: Int32, timeoutMilliseconds: Int32) throws(ZMQError) {
        try setOption(ZMQ_HEARTBEAT_IVL, intervalMilliseconds)
        try setOption(ZMQ_HEARTBEAT_TIMEOUT, timeoutMilliseconds)
    }

    /// The endpoint actually bound (resolves `tcp://host:*` to a port).
    package func lastEndpoint() throws(ZMQError) -> String {
        var buffer = [CChar](repeating: 0, count: 1024)
        var size = buffer.count
        try zmqCall("zmq_getsockopt") { zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    package func bind(_ endpoint: String) throws(ZMQError) {
        try zmqCall("zmq_bind(\(endpoint))") { zmq_bind(handle, endpoint) }
    }

    package func connect(_ endpoint: String) throws(ZMQError) {
        try zmqCall("zmq_connect(\(endpoint))") { zmq_connect(handle, endpoint) }
    }

    /// Sends `frames` as one multipart message.
    package func send(_ frames: [[UInt8]], dontWait: Bool = false) throws(ZMQError) {
        for (i, frame) in frames.enumerated() {
            var flags: Int32 = dontWait ? ZMQ_DONTWAIT : 0
            if i < frames.count - 1 { flags |= ZMQ_SNDMORE }
            try zmqCall("zmq_send") {
                frame.withUnsafeBytes { Int32(truncatingIfNeeded: zmq_send(handle, $0.baseAddress, $0.count, flags)) }
            }
        }
    }

    /// Receives one multipart message. Frames longer than `maxCopyBytes` are not copied: their entry
    /// holds no bytes and `sizes` tells their real length.
    package func receive(dontWait: Bool = false, maxCopyBytes: Int = .max) throws(ZMQError)
        -> (frames: [[UInt8]], sizes: [Int])
    {
        let r = try receive(dontWait: dontWait, maxCopyBytes: maxCopyBytes, keepLastFrameAbove: .max)
        return (r.frames, r.sizes)
    }

    /// Receives one multipart message. Frames up to `maxCopyBytes` are copied into `frames`; a last
    /// frame longer than `keepLastFrameAbove` (and within `maxCopyBytes`) is not copied but handed
    /// over as a `ZMQMessage` in `last` (its slot in `frames` is empty), so a large body crosses
    /// threads without a copy.
    package func receive(dontWait: Bool = false, maxCopyBytes: Int = .max, keepLastFrameAbove: Int) throws(ZMQError)
        -> (frames: [[UInt8]], sizes: [Int], last: ZMQMessage?)
    {
        var frames: [[UInt8]] = []
        var sizes: [Int] = []
        var last: ZMQMessage?
        var msg = zmq_msg_t()
        zmq_msg_init(&msg)
        defer { zmq_msg_close(&msg) }
        while true {
            try zmqCall("zmq_msg_recv") { zmq_msg_recv(&msg, handle, dontWait ? ZMQ_DONTWAIT : 0) }
            let size = zmq_msg_size(&msg)
            let more = zmq_msg_more(&msg) != 0
            sizes.append(size)
            if !more && size > keepLastFrameAbove && size <= maxCopyBytes {
                last = ZMQMessage(moving: &msg)
                frames.append([])
            } else if size > 0 && size <= maxCopyBytes, let data = zmq_msg_data(&msg) {
                frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
            } else {
                frames.append([])
            }
            if !more { break }
        }
        return (frames, sizes, last)
    }

    /// Runs libzmq's built-in proxy (`zmq_proxy_steerable`) on the calling thread, forwarding every
    /// message between `frontend` and `backend` until `control` receives `TERMINATE` (returns
    /// normally) or the context is shut down (throws a terminated error). All three sockets are
    /// used by the proxy for the duration of the call: no other code may touch them meanwhile.
    package static func proxy(frontend: ZMQSocket, backend: ZMQSocket, control: ZMQSocket) throws(ZMQError) {
        try zmqCall("zmq_proxy_steerable") {
            zmq_proxy_steerable(frontend.handle, backend.handle, nil, control.handle)
        }
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever) for any socket in `sockets` to become
    /// readable; returns which ones are.
    package static func pollReadable(_ sockets: [ZMQSocket], timeoutMilliseconds: Int) throws(ZMQError) -> [Bool] {
        var items = sockets.map {
            zmq_pollitem_t(socket: $0.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        }
        try zmqCall("zmq_poll") { zmq_poll(&items, Int32(items.count), timeoutMilliseconds) }
        return items.map { $0.revents & Int16(ZMQ_POLLIN) != 0 }
    }
}

/// One received frame owned outright (libzmq's `zmq_msg_t`, moved out of the receive call), so a
/// large body can be handed to another thread without copying it. Immutable after creation and used
/// by one thread at a time (ownership passes with the object), hence `@unchecked Sendable`.
package final class ZMQMessage: @unchecked Sendable {
    private let message: UnsafeMutablePointer<zmq_msg_t>

    init(moving source: inout zmq_msg_t) {
        message = .allocate(capacity: 1)
        zmq_msg_init(message)
        zmq_msg_move(message, &source)
    }

    deinit {
        zmq_msg_close(message)
        message.deallocate()
    }

    /// Length in bytes.
    package var count: Int { zmq_msg_size(message) }

    /// The frame's bytes, valid during `body`.
    package func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(message), count: zmq_msg_size(message)))
    }
}
