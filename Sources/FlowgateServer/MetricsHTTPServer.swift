import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The HTTP listener of `metrics_address`: `GET /metrics` (Prometheus text), `/healthz` (200 while
/// the process runs) and `/readyz` (200 when ready, 503 while starting or draining).
///
/// Runs on SwiftNIO's HTTP/1 codec with one event-loop thread of its own, like the rest of the
/// server's threads: it needs nothing from Swift concurrency's cooperative pool, so it answers
/// even when that pool is busy or blocked (tests, embedding apps). `init` binds synchronously.
final class MetricsHTTPServer: Sendable {
    /// The bound `host:port` (the real port when configured with port 0).
    let boundAddress: String
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let stopLock = NSLock()
    nonisolated(unsafe) private var stopped = false  // guarded by stopLock

    /// Binds and starts serving; throws when the address cannot be bound.
    init(address: MetricsAddress, metrics: ServerMetrics, logger: Logger) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ProbeHandler(metrics: metrics))
                }
            }
        do {
            channel = try bootstrap.bind(host: address.host, port: Int(address.port)).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw MetricsServerError.notListening(address.description, "\(error)")
        }
        self.group = group
        if let ip = channel.localAddress?.ipAddress, let port = channel.localAddress?.port {
            boundAddress = address.isIPv6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        } else {
            boundAddress = address.description
        }
    }

    /// Closes the listener and its connections and ends its thread. Idempotent; call it from any
    /// thread but the listener's own.
    func stop() {
        stopLock.lock()
        let first = !stopped
        stopped = true
        stopLock.unlock()
        guard first else { return }
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    deinit { stop() }
}

/// Why the metrics listener did not start.
enum MetricsServerError: Error, CustomStringConvertible {
    case notListening(String, String)

    var description: String {
        switch self {
        case .notListening(let address, let why): return "cannot serve metrics on \(address): \(why)"
        }
    }
}

/// Answers the three paths; anything else is 404, any method but GET and HEAD is 405.
/// Confined to its channel's event loop.
final class ProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: ServerMetrics
    private var request: HTTPRequestHead?

    init(metrics: ServerMetrics) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(context, head)
        }
    }

    /// Status, content type and body for a request.
    private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, [UInt8]) {
        let text = "text/plain; charset=utf-8"
        guard head.method == .GET || head.method == .HEAD else {
            return (.methodNotAllowed, text, Array("only GET and HEAD\n".utf8))
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        switch path {
        case "/metrics": return (.ok, "text/plain; version=0.0.4; charset=utf-8", metrics.exposition())
        case "/healthz": return (.ok, text, Array("ok\n".utf8))
        case "/readyz":
            return metrics.readiness ? (.ok, text, Array("ready\n".utf8)) : (.serviceUnavailable, text, Array("not ready\n".utf8))
        default: return (.notFound, text, Array("not found: try /metrics, /healthz or /readyz\n".utf8))
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let (status, contentType, body) = answer(head)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
