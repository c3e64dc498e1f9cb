import FlyingFox
import FlyingSocks
import Foundation
import Logging

/// The HTTP listener of `metrics_address`: `GET /metrics` (Prometheus text), `/healthz` (200 while
/// the process runs) and `/readyz` (200 when ready, 503 while starting or draining).
///
/// Runs on FlyingFox (Swift concurrency; its socket polling blocks a dispatch queue of its own, not
/// a cooperative thread). `init` and `stop()` block the calling thread until the listener is bound
/// or stopped, so call them from an ordinary thread, not from inside Swift concurrency tasks that
/// may hold every thread of the cooperative pool.
final class MetricsHTTPServer: Sendable {
    /// The bound `host:port` (the real port when configured with port 0).
    let boundAddress: String
    private let server: HTTPServer
    private let stopping = OneShot<Void>()

    /// Binds and starts serving; throws when the address cannot be bound.
    init(address: MetricsAddress, metrics: ServerMetrics, logger: Logger) throws {
        let handler = ProbeHandler(metrics: metrics)
        let log = FlyingFoxLogger(logger: logger)
        let server =
            address.isIPv6
            ? HTTPServer(address: try .inet6(ip6: address.host, port: address.port), logger: log, handler: handler)
            : HTTPServer(address: try .inet(ip4: address.host, port: address.port), logger: log, handler: handler)
        self.server = server
        let outcome = OneShot<Result<Socket.Address?, any Error>>()
        Task { [stopping] in
            do {
                try await server.run()
            } catch {
                // Before it listened: `init` throws it. Later, unless stopping: the listener died.
                if !outcome.set(.failure(error)) && !stopping.isSet {
                    logger.error("metrics HTTP listener stopped: \(error)")
                }
            }
        }
        Task {
            do {
                try await server.waitUntilListening(timeout: 10)
                outcome.set(.success(await server.listeningAddress))
            } catch {
                outcome.set(.failure(error))
            }
        }
        guard let result = outcome.wait(seconds: 15) else {
            throw MetricsServerError.notListening(address.description, "no answer within 15 s")
        }
        switch result {
        case .failure(let error):
            stopping.set(())
            Self.stop(server)
            throw MetricsServerError.notListening(address.description, "\(error)")
        case .success(.ip4(let host, let port)): boundAddress = "\(host):\(port)"
        case .success(.ip6(let host, let port)): boundAddress = "[\(host)]:\(port)"
        case .success: boundAddress = address.description
        }
    }

    /// Closes the listener and its connections (waits at most about 2 s). Idempotent.
    func stop() {
        stopping.set(())
        Self.stop(server)
    }

    private static func stop(_ server: HTTPServer) {
        let done = OneShot<Void>()
        Task {
            await server.stop(timeout: 0)
            done.set(())
        }
        _ = done.wait(seconds: 2)
    }
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

/// Routes the three paths; anything else is 404, any method but GET and HEAD is 405.
struct ProbeHandler: HTTPHandler {
    let metrics: ServerMetrics

    func handleRequest(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard request.method == .GET || request.method == .HEAD else {
            return text(HTTPStatusCode(405, phrase: "Method Not Allowed"), "only GET and HEAD\n")
        }
        switch request.path {
        case "/metrics":
            return HTTPResponse(
                statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: Data(metrics.exposition()))
        case "/healthz":
            return text(.ok, "ok\n")
        case "/readyz":
            return metrics.readiness ? text(.ok, "ready\n") : text(.serviceUnavailable, "not ready\n")
        default:
            return text(.notFound, "not found: try /metrics, /healthz or /readyz\n")
        }
    }

    private func text(_ status: HTTPStatusCode, _ body: String) -> HTTPResponse {
        HTTPResponse(statusCode: status, headers: [.contentType: "text/plain; charset=utf-8"], body: Data(body.utf8))
    }
}

/// FlyingFox's log lines, lowered in swift-log: it logs every request at info, every closed
/// connection as an error, and its own stop as critical. (Bind errors surface from `init`, and a
/// listener dying later is logged by `MetricsHTTPServer`.)
struct FlyingFoxLogger: FlyingSocks.Logging {
    let logger: Logger

    func logDebug(_ debug: @autoclosure () -> String) { logger.trace("\(debug())") }
    func logInfo(_ info: @autoclosure () -> String) { logger.trace("\(info())") }
    func logWarning(_ warning: @autoclosure () -> String) { logger.debug("\(warning())") }
    func logError(_ error: @autoclosure () -> String) { logger.debug("\(error())") }
    func logCritical(_ critical: @autoclosure () -> String) { logger.debug("metrics HTTP: \(critical())") }
}

/// A value set once from a task and awaited by a thread.
final class OneShot<Value: Sendable>: @unchecked Sendable {
    // Invariant: `value` is only read or written with `lock` held.
    private let lock = NSLock()
    private let semaphore = DispatchSemaphore(value: 0)
    private var value: Value?

    /// Sets the value unless one is set already; true when this call set it.
    @discardableResult
    func set(_ v: Value) -> Bool {
        lock.lock()
        let first = value == nil
        if first { value = v }
        lock.unlock()
        if first { semaphore.signal() }
        return first
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value != nil
    }

    /// The value, or nil after `seconds` without one.
    func wait(seconds: Double) -> Value? {
        guard semaphore.wait(timeout: .now() + seconds) == .success else { return nil }
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}
