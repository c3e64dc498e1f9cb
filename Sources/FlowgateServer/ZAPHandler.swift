import FlowgateZMQ
import Foundation
import Logging

/// Counts of CURVE handshakes decided by the ZAP handler and allowlist reloads. Thread-safe by
/// construction (one `Locked` value): written by the ZAP thread, read by the socket thread for `stats`.
final class CurveAccessCounters: Sendable {
    private struct Counts {
        var allowed = 0, refused = 0, allowlistKeys = 0, reloads = 0, reloadErrors = 0, handshakeFailures = 0
    }
    private let counts = Locked(Counts())

    func admitted(_ ok: Bool) {
        counts.withLock { if ok { $0.allowed += 1 } else { $0.refused += 1 } }
    }

    func loaded(keys: Int, initial: Bool) {
        counts.withLock {
            $0.allowlistKeys = keys
            if !initial { $0.reloads += 1 }
        }
    }

    func handshakeFailed() { counts.withLock { $0.handshakeFailures += 1 } }

    func reloadFailed() { counts.withLock { $0.reloadErrors += 1 } }

    /// The `auth` map of the `stats` reply.
    var snapshot: (allowed: Int, refused: Int, handshakeFailures: Int, allowlistKeys: Int, reloads: Int, reloadErrors: Int) {
        counts.withLock { ($0.allowed, $0.refused, $0.handshakeFailures, $0.allowlistKeys, $0.reloads, $0.reloadErrors) }
    }
}

/// The client public keys a CURVE server admits, read from a file or directory (`CurveKeys`),
/// reloadable from any thread (one lock). A reload that fails keeps the previous keys.
final class CurveAllowlist: @unchecked Sendable {
    let path: String
    private let lock = NSLock()
    private var keys: Set<[UInt8]>
    private var signature: [Int64]
    private let counters: CurveAccessCounters
    private let logger: Logger

    init(path: String, counters: CurveAccessCounters, logger: Logger) throws(CurveKeyError) {
        self.path = path
        self.counters = counters
        self.logger = logger
        signature = CurveKeys.allowlistSignature(path)
        let loaded = try CurveKeys.readAllowlist(path)
        keys = loaded.keys
        counters.loaded(keys: keys.count, initial: true)
        Self.report(loaded, path: path, logger: logger, verb: "loaded")
    }

    func contains(_ key: [UInt8]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return keys.contains(key)
    }

    /// Re-reads the allowlist now. Returns the number of keys, or throws (keeping the old keys).
    @discardableResult
    func reload() throws(CurveKeyError) -> Int {
        lock.lock()
        defer { lock.unlock() }
        signature = CurveKeys.allowlistSignature(path)
        let loaded: (keys: Set<[UInt8]>, ignored: [String])
        do {
            loaded = try CurveKeys.readAllowlist(path)
        } catch {
            counters.reloadFailed()
            logger.error("CURVE allowlist reload failed, still admitting the previous \(keys.count) keys: \(error)")
            throw error
        }
        keys = loaded.keys
        counters.loaded(keys: keys.count, initial: false)
        Self.report(loaded, path: path, logger: logger, verb: "reloaded")
        return keys.count
    }

    /// Reloads when the files' names, sizes or times changed since the last (attempted) load.
    func reloadIfChanged() {
        lock.lock()
        let changed = CurveKeys.allowlistSignature(path) != signature
        lock.unlock()
        if changed { _ = try? reload() }
    }

    private static func report(
        _ loaded: (keys: Set<[UInt8]>, ignored: [String]), path: String, logger: Logger, verb: String
    ) {
        logger.notice("CURVE allowlist \(verb): \(loaded.keys.count) client keys from \(path)")
        if !loaded.ignored.isEmpty {
            logger.warning(
                "CURVE allowlist \(path): ignored \(loaded.ignored.joined(separator: ", ")) (only *\(CurveKeys.publicSuffix) files are read)")
        }
        if loaded.keys.isEmpty { logger.warning("CURVE allowlist \(path) is empty: every client will be refused") }
    }
}

/// The ZAP handler (ZeroMQ RFC 27) of a CURVE server: a thread with a REP socket bound to
/// `inproc://zeromq.zap.01` in the server's context that admits only allowlisted client public keys.
/// It also polls the allowlist about once a second and reloads it when it changed, and reads the
/// CURVE sockets' monitor events to count handshakes that fail before ZAP (plaintext clients,
/// clients with a wrong server key).
///
/// Life cycle: `init` binds the REP socket (before any CURVE socket binds, so no handshake can
/// happen without it: ZAP requests queue until the thread runs); `secure(_:name:)` configures each
/// CURVE socket; `start()` starts the thread; `stop()` or `deinit` ends it (the thread notices
/// within `pollMilliseconds`). The sockets are created on the caller's thread and used only by the
/// ZAP thread once it starts (the thread start is the happens-before edge).
final class ZAPHandler: @unchecked Sendable {
    static let endpoint = "inproc://zeromq.zap.01"
    static let domain = "flowgate"
    static let pollMilliseconds = 200
    static let allowlistPollSeconds = 1.0

    let keyPair: CurveKeyPair
    let allowlist: CurveAllowlist
    let counters: CurveAccessCounters
    private let state: State

    /// Loads the server keypair and the allowlist and binds the REP socket (`start()` runs it).
    init(secretKeyFile: String, allowlistPath: String, context: ZMQContext, logger: Logger) throws {
        guard CurveKeys.isAvailable else {
            throw CurveKeyError(secretKeyFile, "this libzmq was built without CURVE support (zmq_has(\"curve\") is false)")
        }
        keyPair = try CurveKeys.readKeyPair(secretKeyFile)
        counters = CurveAccessCounters()
        allowlist = try CurveAllowlist(path: allowlistPath, counters: counters, logger: logger)
        let socket = try ZMQSocket(context, .rep)
        try socket.setLinger(milliseconds: 0)
        try socket.bind(Self.endpoint)
        state = State(socket: socket, allowlist: allowlist, counters: counters, logger: logger)
        logger.notice("CURVE on; server public key \(keyPair.publicKey)")
    }

    deinit { stop() }

    /// Makes `socket` a CURVE server whose handshakes this handler decides, and watches its
    /// handshake failures. Call before `bind` and before `start()`; `name` must be unique.
    func secure(_ socket: ZMQSocket, name: String) throws(ZMQError) {
        try socket.setCurveServer(secretKey: keyPair.secretKey, zapDomain: Self.domain)
        let endpoint = "inproc://flowgate-curve-monitor-\(name)"
        try socket.monitorHandshakeFailures(endpoint)
        let pair = try ZMQSocket(socket.context, .pair)
        try pair.setLinger(milliseconds: 0)
        try pair.connect(endpoint)
        state.monitors.append(pair)
    }

    /// Starts the thread (once).
    func start() {
        guard state.markStarted() else { return }
        let state = self.state
        let thread = Thread { state.run() }
        thread.name = "flowgate-zap"
        thread.start()
    }

    /// Stops the thread and closes the REP socket; waits for it (idempotent).
    func stop() { state.stop() }

    /// Everything the thread touches. The REP socket is used only by the thread after it starts.
    private final class State: @unchecked Sendable {
        let socket: ZMQSocket
        /// PAIR sockets receiving the CURVE sockets' monitor events (set up before the thread starts).
        var monitors: [ZMQSocket] = []
        let allowlist: CurveAllowlist
        let counters: CurveAccessCounters
        let logger: Logger
        private let lock = NSLock()
        private var stopRequested = false
        private var running = false
        private let exited = DispatchSemaphore(value: 0)
        private var log = RefusalLog()

        init(socket: ZMQSocket, allowlist: CurveAllowlist, counters: CurveAccessCounters, logger: Logger) {
            self.socket = socket
            self.allowlist = allowlist
            self.counters = counters
            self.logger = logger
        }

        /// True the first time (the caller starts the thread).
        func markStarted() -> Bool {
            lock.lock()
            defer { lock.unlock() }
            guard !running && !stopRequested else { return false }
            running = true
            return true
        }

        func stop() {
            lock.lock()
            stopRequested = true
            let wasRunning = running
            running = false
            lock.unlock()
            if wasRunning { exited.wait() }
        }

        private var shouldStop: Bool {
            lock.lock()
            defer { lock.unlock() }
            return stopRequested
        }

        func run() {
            var nextCheck = Date().addingTimeInterval(ZAPHandler.allowlistPollSeconds)
            while !shouldStop {
                do {
                    let readable = try ZMQSocket.pollReadable(
                        [socket] + monitors, timeoutMilliseconds: ZAPHandler.pollMilliseconds)
                    if readable[0] {
                        let request = try socket.receive(dontWait: true).frames
                        try socket.send(answer(request))
                    }
                    for (monitor, ready) in zip(monitors, readable.dropFirst()) where ready {
                        let event = try monitor.receive(dontWait: true).frames
                        if let failure = ZMQSocket.handshakeFailure(event) {
                            counters.handshakeFailed()
                            refused("a handshake on \(failure.endpoint): \(failure.reason)")
                        }
                    }
                } catch {
                    if error.isTerminated { break }
                    if !error.wouldBlock { logger.error("ZAP handler: \(error)") }
                }
                if Date() >= nextCheck {
                    allowlist.reloadIfChanged()
                    nextCheck = Date().addingTimeInterval(ZAPHandler.allowlistPollSeconds)
                }
            }
            socket.close()
            for m in monitors { m.close() }
            exited.signal()
        }

        /// The reply to one ZAP request: [version, request id, status, text, user id, metadata].
        func answer(_ f: [[UInt8]]) -> [[UInt8]] {
            let requestID = f.count > 1 ? f[1] : []
            func reply(_ status: String, _ text: String, user: String = "") -> [[UInt8]] {
                [Array("1.0".utf8), requestID, Array(status.utf8), Array(text.utf8), Array(user.utf8), []]
            }
            guard f.count >= 7, f[0] == Array("1.0".utf8) else {
                logger.error("ZAP handler: malformed request of \(f.count) frames")
                return reply("500", "malformed ZAP request")
            }
            let domain = String(decoding: f[2], as: UTF8.self)
            let address = String(decoding: f[3], as: UTF8.self)
            let mechanism = String(decoding: f[5], as: UTF8.self)
            guard domain == ZAPHandler.domain, mechanism == "CURVE", f[6].count == 32 else {
                counters.admitted(false)
                refused("mechanism \(mechanism), domain '\(domain)' from \(address)")
                return reply("400", "only CURVE clients of domain \(ZAPHandler.domain) are served")
            }
            let key = f[6]
            let z85 = CurveKeys.encode(key)
            guard allowlist.contains(key) else {
                counters.admitted(false)
                refused("key \(z85) from \(address)")
                return reply("400", "client key not in the allowlist")
            }
            counters.admitted(true)
            logger.debug("ZAP: admitted \(z85) from \(address)")
            return reply("200", "OK", user: z85)
        }

        private func refused(_ what: String) {
            switch log.record(now: Date()) {
            case .log(let suppressed):
                let extra = suppressed > 0 ? " (\(suppressed) more refusals not logged)" : ""
                logger.warning("CURVE: refused \(what)\(extra)")
            case .quiet:
                break
            }
        }
    }
}

/// Rate limit for refusal log lines: at most `burst` lines per `window` seconds; the next line
/// logged says how many were left out.
struct RefusalLog {
    let window: TimeInterval
    let burst: Int
    private var windowStart = Date.distantPast
    private var loggedInWindow = 0
    private var suppressed = 0

    init(window: TimeInterval = 10, burst: Int = 5) {
        self.window = window
        self.burst = burst
    }

    enum Decision: Equatable {
        case log(suppressed: Int)
        case quiet
    }

    mutating func record(now: Date) -> Decision {
        if now.timeIntervalSince(windowStart) >= window {
            windowStart = now
            loggedInWindow = 0
        }
        guard loggedInWindow < burst else {
            suppressed += 1
            return .quiet
        }
        loggedInWindow += 1
        defer { suppressed = 0 }
        return .log(suppressed: suppressed)
    }
}
