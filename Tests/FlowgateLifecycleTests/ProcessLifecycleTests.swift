import Dispatch
import Foundation
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import UnixSignals

@testable import FlowgateLifecycle

/// A blocking body that waits for `stop` (or gives up after a generous bound, so a broken stop path
/// fails the test instead of hanging it) and records which of the two ended it.
private final class BlockingBody: Sendable {
    let stopCalls = StopFlag()
    let stoppedByStop = StopFlag()
    let returned = StopFlag()
    private let wake = DispatchSemaphore(value: 0)

    func run() {
        if wake.wait(timeout: .now() + 60) == .success { stoppedByStop.set() }
        returned.set()
    }

    func stop() {
        stopCalls.set()
        wake.signal()
    }

    var service: ThreadService {
        ThreadService("test.blocking", body: { self.run() }, stop: { self.stop() })
    }
}

private struct Failure: Error, Equatable {}

/// `ProcessLifecycle.run` leaves the signals it traps ignored, as a command that exits next wants;
/// the test process must stay killable.
private func restoreDefaultActions() {
    for signal in [SIGTERM, SIGINT, SIGUSR1, SIGUSR2] { _ = Foundation.signal(signal, SIG_DFL) }
}

@Suite("ProcessLifecycle", .serialized)
struct ProcessLifecycleTests {
    let logger = Logger(label: "test.lifecycle")

    @Test func gracefulShutdownCallsStopAndWaitsForTheBody() async throws {
        let body = BlockingBody()
        try await testGracefulShutdown { trigger in
            async let running: Void = body.service.run()
            trigger.triggerGracefulShutdown()
            try await running
        }
        #expect(body.stopCalls.isSet)
        #expect(body.stoppedByStop.isSet)
        #expect(body.returned.isSet)
    }

    @Test func theBodysErrorEndsTheGroupWithThatError() async throws {
        defer { restoreDefaultActions() }
        let failing = ThreadService("test.failing", body: { throw Failure() }, stop: {})
        let helper = SignalService("test.helper", signals: [.sigusr2]) { _ in }
        await #expect(throws: Failure.self) {
            try await ProcessLifecycle.run(failing, with: [helper], ignoring: [.sigusr2], shutdownSignals: [], logger: logger)
        }
    }

    @Test func theGroupEndsWhenTheMainServiceReturns() async throws {
        defer { restoreDefaultActions() }
        let ran = StopFlag()
        let main = ThreadService("test.short", body: { ran.set() }, stop: {})
        let helper = SignalService("test.helper", signals: [.sigusr2]) { _ in }
        try await ProcessLifecycle.run(main, with: [helper], ignoring: [.sigusr2], shutdownSignals: [], logger: logger)
        #expect(ran.isSet)
    }

    /// A real SIGUSR1 delivered to this process reaches the `SignalService` action (the reload
    /// path SIGHUP takes in `serve`; SIGHUP itself is not used so that a failure cannot hang up the
    /// test runner's session).
    @Test func aDeliveredSignalRunsTheAction() async throws {
        defer { restoreDefaultActions() }
        let body = BlockingBody()
        let seen = StopFlag()
        let reload = SignalService("test.reload", signals: [.sigusr1]) { signal in
            if signal == .sigusr1 {
                seen.set()
                body.stop()
            }
        }
        // `run` ignores the signal's default action first; here the group starts concurrently with
        // the loop below, so ignore it before the first delivery can race the group's start.
        ProcessLifecycle.ignoreDefaultAction(of: .sigusr1)
        async let group: Void = ProcessLifecycle.run(body.service, with: [reload], ignoring: [.sigusr1], shutdownSignals: [], logger: logger)
        // Deliveries before the service registered its source are ignored, not fatal: repeat.
        for _ in 0..<400 where !seen.isSet {
            kill(getpid(), SIGUSR1)
            try await Task.sleep(for: .milliseconds(25))
        }
        try await group
        #expect(seen.isSet)
        #expect(body.stoppedByStop.isSet)
    }

    /// A real SIGTERM shuts the group down gracefully: the main service's stop runs, its body
    /// returns, and `run` returns without an error (exit status 0 in `serve`).
    @Test func sigtermShutsDownGracefully() async throws {
        defer { restoreDefaultActions() }
        let body = BlockingBody()
        ProcessLifecycle.ignoreDefaultAction(of: .sigterm)
        async let group: Void = ProcessLifecycle.run(body.service, logger: logger)
        for _ in 0..<400 where !body.stopCalls.isSet {
            kill(getpid(), SIGTERM)
            try await Task.sleep(for: .milliseconds(25))
        }
        try await group
        #expect(body.stoppedByStop.isSet)
        #expect(body.returned.isSet)
    }

    @Test func stopFlagStaysSet() {
        let flag = StopFlag()
        #expect(!flag.isSet)
        flag.set()
        flag.set()
        #expect(flag.isSet)
    }
}
