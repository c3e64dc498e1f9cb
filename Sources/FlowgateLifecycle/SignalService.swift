import Dispatch
public import ServiceLifecycle
public import UnixSignals

/// Calls `action` on every delivery of `signals` (SIGHUP: reload) until the group shuts down.
///
/// The action runs on a serial dispatch queue of its own (a reload reads model files: blocking
/// work that must not hold one of the cooperative pool's threads), one delivery after the other, so
/// a slow reload delays the next one instead of overlapping it. A reload that fails must log and
/// return: SIGHUP never stops the process.
public struct SignalService: Service, CustomStringConvertible {
    public let description: String
    private let signals: [UnixSignal]
    private let action: @Sendable (UnixSignal) -> Void

    public init(_ name: String, signals: [UnixSignal], action: @escaping @Sendable (UnixSignal) -> Void) {
        self.description = name
        self.signals = signals
        self.action = action
    }

    public func run() async throws {
        let queue = DispatchQueue(label: description)
        let action = self.action
        let deliveries = await UnixSignalsSequence(trapping: signals)
        for await signal in deliveries.cancelOnGracefulShutdown() {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                queue.async {
                    action(signal)
                    done.resume()
                }
            }
        }
    }
}
