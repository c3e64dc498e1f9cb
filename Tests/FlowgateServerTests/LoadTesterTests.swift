import FlowgateClient
import FlowgateCommon
import FlowgateProtocol
import FlowgateServer
import Testing
import FlowgateDemo
import FlowgateZMQ
import Foundation

/// The demo model (obs_dim 4) on `server`, at K = 2 unless `parameters` says otherwise.
func demoTarget(_ server: InferenceServer, parameters: ActParameters = ActParameters(steps: 2)) -> LoadTarget {
    LoadTarget(endpoint: server.endpoint, parameters: parameters, observationDim: 4)
}

@Suite("load tester")
struct LoadTesterTests {
    @Test("concurrent clients spend exactly the request budget and record every reply")
    func budget() throws {
        try withServer(models: [DemoModel()]) { server in
            var config = LoadTestConfiguration(target: demoTarget(server), concurrency: 3, requests: 40, durationSeconds: 30)
            config.warmupRequests = 1
            let r = try LoadTester.run(config)
            #expect(r.completed == 40)
            #expect(r.errorCount == 0)
            #expect(r.latenciesMicroseconds.count == 40)
            #expect(r.latenciesMicroseconds == r.latenciesMicroseconds.sorted())
            #expect(r.meanBatch >= 1)
            #expect(r.throughput > 0)
            // Percentiles are SampleStatistics' (NumPy's default interpolation) over the sorted latencies.
            #expect(r.percentileMicroseconds(90) == SampleStatistics.percentile(sorted: r.latenciesMicroseconds, 90))
        }
    }
}

@Suite("load tester errors")
struct LoadTesterErrorTests {
    @Test("closed loop: server errors are counted by code, percentiles come from the histogram")
    func errorsByCode() throws {
        try withServer(models: [DemoModel()]) { server in
            var config = LoadTestConfiguration(target: demoTarget(server), concurrency: 2, requests: 10, durationSeconds: 30)
            config.warmupRequests = 0
            config.model = "no-such-model"
            let r = try LoadTester.run(config)
            #expect(r.completed == 0)
            #expect(r.errors == ["unknown_model": 10])
            #expect(r.histogram.count == 0)
        }
    }
}

/// A scripted server on a bare ROUTER socket: it answers each request with an error reply whose
/// code `answer` picks from the request's number on its connection (0, 1, …), after `delay`
/// milliseconds (replies are sent in the order of their due times). It records the largest
/// number of requests any one connection had unanswered, and the connections it saw.
private final class ScriptedRouter: @unchecked Sendable {
    let endpoint: String
    private let socket: ZMQSocket
    private let answer: @Sendable (Int) -> (code: ErrorCode, delayMilliseconds: Int)
    private let lock = NSLock()
    private var stopped = false
    private var _maxUnanswered = 0
    private var _connections = Set<[UInt8]>()
    private let done = DispatchSemaphore(value: 0)
    var maxUnanswered: Int { lock.withLock { _maxUnanswered } }
    var connections: Int { lock.withLock { _connections.count } }

    init(answer: @escaping @Sendable (Int) -> (code: ErrorCode, delayMilliseconds: Int)) throws {
        socket = try ZMQSocket(ZMQContext(), .router)
        try socket.setLinger(milliseconds: 0)
        try socket.bind("tcp://127.0.0.1:*")
        endpoint = try socket.lastEndpoint()
        self.answer = answer
        let thread = Thread { [self] in
            run()
            done.signal()
        }
        thread.start()
    }

    func shutdown() {
        lock.withLock { stopped = true }
        done.wait()
    }

    private func run() {
        var seen: [[UInt8]: Int] = [:]
        var unanswered: [[UInt8]: Int] = [:]
        var due: [(at: UInt64, peer: [UInt8], body: [UInt8])] = []
        while !lock.withLock({ stopped }) {
            let now = monotonicNanoseconds()
            let sendable = due.filter { $0.at <= now }
            due.removeAll { $0.at <= now }
            for d in sendable.sorted(by: { $0.at < $1.at }) {
                try? socket.send([d.peer, [], d.body])
                unanswered[d.peer, default: 0] -= 1
            }
            guard (try? ZMQSocket.pollReadable([socket], timeoutMilliseconds: 2))?[0] == true else { continue }
            while let frames = try? socket.receive(dontWait: true).frames {
                guard frames.count == 3, let request = try? MessagePack.decode(frames[2]) else { continue }
                let peer = frames[0]
                lock.withLock { _ = _connections.insert(peer) }
                let n = seen[peer, default: 0]
                seen[peer] = n + 1
                unanswered[peer, default: 0] += 1
                let u = unanswered[peer]!
                lock.withLock { _maxUnanswered = max(_maxUnanswered, u) }
                let (code, delay) = answer(n)
                let id = request["id"].flatMap(RequestID.init)
                let body = ProtocolError(code, "scripted", id: id).encode()
                due.append((monotonicNanoseconds() + UInt64(delay) * 1_000_000, peer, body))
            }
        }
    }
}

@Suite("load tester: closed loop against a scripted server")
struct LoadTesterScriptedTests {
    @Test("each client is its own connection with one request in flight")
    func oneInFlightPerConnection() throws {
        // Replies take 5 ms, so a client that sent again before its reply would show 2 unanswered.
        let server = try ScriptedRouter { _ in (.overloaded, 5) }
        defer { server.shutdown() }
        var config = LoadTestConfiguration(
            target: LoadTarget(endpoint: server.endpoint, parameters: ActParameters(), observationDim: 3),
            concurrency: 4, requests: 40, durationSeconds: 30)
        config.warmupRequests = 0
        let r = try LoadTester.run(config)
        #expect(r.errors == ["overloaded": 40])
        #expect(server.maxUnanswered == 1)
        #expect(server.connections == 4)
    }

    @Test("a reply after the timeout is counted once, as a timeout, and never taken for the next request's")
    func lateReplyIsDroppedByID() throws {
        // Each connection's first request is answered (with unknown_model) 300 ms late, after the
        // 60 ms timeout; every later one at once (with overloaded). A tester that took the late
        // reply for the request then in flight would count unknown_model.
        let server = try ScriptedRouter { n in n == 0 ? (.unknownModel, 300) : (.overloaded, 0) }
        defer { server.shutdown() }
        var config = LoadTestConfiguration(
            target: LoadTarget(endpoint: server.endpoint, parameters: ActParameters(), observationDim: 3),
            concurrency: 2, requests: 1_000_000, durationSeconds: 0.6)
        config.warmupRequests = 0
        config.timeoutMilliseconds = 60
        let r = try LoadTester.run(config)
        #expect(r.errors["timeout"] == 2)
        #expect(r.errors["unknown_model"] == nil)
        #expect((r.errors["overloaded"] ?? 0) > 2)
        #expect(r.completed == 0)
    }
}
