import Foundation
public import Logging
public import ServiceLifecycle
public import UnixSignals

/// How `serve`, `broker` and `train` run: one `ServiceGroup` whose graceful shutdown SIGTERM and
/// SIGINT start, plus optional services such as a SIGHUP reload (`SignalService`).
public enum ProcessLifecycle {
    /// The signals that start a graceful shutdown (drain, checkpoint) in every long-running command.
    public static let shutdownSignals: [UnixSignal] = [.sigterm, .sigint]

    /// Runs `main` and `others` in one service group until `main` returns (its return or error ends
    /// the group) or SIGTERM/SIGINT has shut the group down gracefully.
    ///
    /// The default actions of `shutdownSignals` and of every signal in `ignoring` (SIGHUP for the
    /// reload services) are set to "ignore" first: signals are then seen only through the group's
    /// dispatch sources, never kill the process, and one that arrives before the group has
    /// registered its sources is dropped instead of killing it. A second SIGTERM/SIGINT during
    /// the drain does nothing more; the drain is bounded by the work already admitted.
    ///
    /// Run one group per process: on Linux, libdispatch delivered no SIGTERM to the sources of a
    /// second group after the first group's sources for it were cancelled (seen in
    /// `ProcessLifecycleTests`, which therefore pass `shutdownSignals: []` where they do not test
    /// SIGTERM itself).
    public static func run(
        _ main: ThreadService, with others: [any Service] = [], ignoring: [UnixSignal] = [],
        shutdownSignals: [UnixSignal] = ProcessLifecycle.shutdownSignals, logger: Logger
    ) async throws {
        for signal in shutdownSignals + ignoring {
            ignoreDefaultAction(of: signal)
        }
        // The group gracefully shuts down its services in reverse order: the helpers (SIGHUP
        // reload) stop first, the main service drains last. When the main service returns, the
        // group shuts the helpers down and ends without an error; when it throws, the group ends
        // with that error. A helper that returns early must not end the group.
        var services = [
            ServiceGroupConfiguration.ServiceConfiguration(service: main, successTerminationBehavior: .gracefullyShutdownGroup)
        ]
        for other in others {
            services.append(.init(service: other, successTerminationBehavior: .ignore))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: shutdownSignals, logger: logger))
        try await group.run()
    }

    /// Sets the process's action for `signal` to "ignore", so that only dispatch sources see it.
    public static func ignoreDefaultAction(of signal: UnixSignal) {
        _ = Foundation.signal(signal.rawValue, SIG_IGN)
    }
}
