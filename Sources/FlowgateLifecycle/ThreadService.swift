import Foundation
public import ServiceLifecycle

/// A blocking loop (the server's drain-and-wait, the broker's proxy, a training run) run as a
/// swift-service-lifecycle `Service` on a thread of its own, never on Swift concurrency's cooperative
/// pool (two threads on a two-core machine; a blocked pool stalls every task).
///
/// Graceful shutdown of the group (SIGTERM/SIGINT through `ServiceGroup`) and cancellation both call
/// `stop`, which must make `body` return soon: `InferenceServer.requestShutdown` (drain, then exit),
/// `Broker.stop`, or a `StopFlag` a training loop polls. `run()` returns when `body` returns and
/// rethrows what it throws. `stop` may be called more than once and before `body` starts.
public struct ThreadService: Service, CustomStringConvertible {
    /// The thread's name and the service's name in the group's log lines.
    public let description: String
    private let body: @Sendable () throws -> Void
    private let stop: @Sendable () -> Void

    /// - Parameters:
    ///   - name: the thread's name.
    ///   - body: the blocking loop.
    ///   - stop: asks `body` to return; safe from any thread, more than once.
    public init(_ name: String, body: @escaping @Sendable () throws -> Void, stop: @escaping @Sendable () -> Void) {
        self.description = name
        self.body = body
        self.stop = stop
    }

    public func run() async throws {
        let stop = self.stop
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await runOnOwnThread()
            } onGracefulShutdown: {
                stop()
            }
        } onCancel: {
            stop()
        }
    }

    private func runOnOwnThread() async throws {
        let body = self.body
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread {
                do {
                    try body()
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = description
            // The main thread's usual size: training and serving ran there before.
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
