import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `/metrics`, `/healthz` and `/readyz` scraped over real HTTP from servers on loopback.
/// Serialized: one server with a metrics listener at a time keeps failures easy to read.
@Suite(.serialized) struct MetricsTests {
    @Test func countersAndHistogramsOverHTTP() throws {
        try withServer(configure: { $0.metricsAddress = "127.0.0.1:0" }) { server in
            let address = try #require(server.metricsAddress)
            #expect(address.hasPrefix("127.0.0.1:") && !address.hasSuffix(":0"))
            let client = try FlowgateClient(server)
            // LinearTestModel: energy = |obs|², reliable when ≤ 4.
            #expect(try client.act(observation: [0, 0, 0]).reliable == [true])
            #expect(try client.act(observation: [1, 1, 0]).reliable == [true])
            #expect(try client.act(observation: [3, 0, 0]).reliable == [false])
            _ = try client.act(observation: [3, 0, 0], parameters: ActParameters(check: false))
            _ = try client.health()
            let wrongShape = try MessagePack.decode(
                client.roundTrip(MessagePack.encode(.map(["obs": .array([.int(1), .int(2)])]))))
            #expect(errorCode(wrongShape) == .shapeMismatch)
            let notAMap = try MessagePack.decode(client.roundTrip(MessagePack.encode(.array([.int(1)]))))
            #expect(errorCode(notAMap) == .badRequest)

            let scrape = try httpGet(address, "/metrics")
            #expect(scrape.status == 200)
            #expect(scrape.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
            let m = parseExposition(scrape.body)
            #expect(m[#"flowgate_requests_total{op="act",code="ok"}"#] == 4)
            #expect(m[#"flowgate_requests_total{op="act",code="shape_mismatch"}"#] == 1)
            #expect(m[#"flowgate_requests_total{op="health",code="ok"}"#] == 1)
            #expect(m[#"flowgate_requests_total{op="none",code="bad_request"}"#] == 1)
            #expect(m[#"flowgate_requests_total{op="stats",code="ok"}"#] == 0)
            #expect(m["flowgate_act_latency_seconds_count"] == 4)
            #expect(m["flowgate_act_queue_seconds_count"] == 4)
            #expect(m["flowgate_act_compute_seconds_count"] == 4)
            #expect(m[#"flowgate_act_latency_seconds_bucket{le="+Inf"}"#] == 4)
            #expect(m["flowgate_batch_size_sum"] == 4)  // one observation per request
            #expect(m[#"flowgate_observations_total{model="test"}"#] == 4)
            #expect(m[#"flowgate_checked_observations_total{model="test"}"#] == 3)
            #expect(m[#"flowgate_unreliable_observations_total{model="test"}"#] == 1)
            #expect(m["flowgate_dropped_replies_total"] == 0)
            #expect(m["flowgate_refused_keys_total"] == 0)
            #expect(m["flowgate_queue_depth"] == 0)
            #expect(m["flowgate_queue_work"] == 0)
            #expect(m["flowgate_ready"] == 1)
            // Every latency histogram has buckets from 0.1 ms to 10 s.
            #expect(m[#"flowgate_act_queue_seconds_bucket{le="0.0001"}"#] != nil)
            #expect(m[#"flowgate_act_queue_seconds_bucket{le="10.0"}"#] != nil)

            // The `stats` op still answers as before.
            let stats = try client.stats()
            #expect(stats["requests"]?["act"]?.intValue == 5)
            #expect(stats["errors"]?["bad_request"]?.intValue == 1)

            #expect(try httpGet(address, "/healthz").status == 200)
            #expect(try httpGet(address, "/readyz").status == 200)
            #expect(try httpGet(address, "/nope").status == 404)
        }
    }

    @Test func serversInOneProcessKeepSeparateMetrics() throws {
        try withServer(configure: { $0.metricsAddress = "127.0.0.1:0" }) { first in
            try withServer(configure: { $0.metricsAddress = "127.0.0.1:0" }) { second in
                _ = try FlowgateClient(first).act(observation: [0, 0, 0])
                _ = try FlowgateClient(first).act(observation: [0, 0, 0])
                _ = try FlowgateClient(second).act(observation: [0, 0, 0])
                let a = parseExposition(try httpGet(#require(first.metricsAddress), "/metrics").body)
                let b = parseExposition(try httpGet(#require(second.metricsAddress), "/metrics").body)
                #expect(a[#"flowgate_requests_total{op="act",code="ok"}"#] == 2)
                #expect(b[#"flowgate_requests_total{op="act",code="ok"}"#] == 1)
                #expect(first.metricsExposition.contains(#"flowgate_requests_total{op="act",code="ok"} 2"#))
            }
        }
    }

    @Test func readyOnlyAfterStartAndNotWhileDraining() throws {
        var config = ServerConfiguration()
        config.endpoint = "tcp://127.0.0.1:*"
        config.workers = 1
        config.maxDelayMicroseconds = 0
        config.metricsAddress = "127.0.0.1:0"
        config.warmup = false  // the test model blocks or sleeps
        var logger = Logger(label: "flowgate.test")
        logger.logLevel = .warning
        let gate = GatedModel()
        defer { gate.open() }  // never leave a worker blocked, even when an expectation fails
        let server = try InferenceServer(models: [gate], configuration: config, logger: logger)
        defer { server.shutdown() }
        let address = try #require(server.metricsAddress)
        // Bound but not started: alive, not ready.
        #expect(try httpGet(address, "/healthz").status == 200)
        #expect(try httpGet(address, "/readyz").status == 503)
        server.start()
        #expect(try waitForStatus(address, "/readyz", 200))

        // Hold one request inside the model, so the drain cannot finish while we look.
        let dealer = try FlowgateClient(server, kind: .dealer)
        try dealer.send(Request.act(FloatArray([0, 0, 0]), id: .int(1)))
        try #require(gate.waitUntilEntered(seconds: 10))
        server.requestShutdown()
        #expect(try waitForStatus(address, "/readyz", 503))
        #expect(try httpGet(address, "/healthz").status == 200)
        #expect(parseExposition(try httpGet(address, "/metrics").body)["flowgate_ready"] == 0)
        #expect(parseExposition(try httpGet(address, "/metrics").body)["flowgate_in_flight"] == 1)
        gate.open()
        server.wait()
        let reply = try ActReply(#require(try dealer.receive(timeoutMilliseconds: 5000)))
        #expect(reply.id == .int(1))
    }

    /// The listener has threads of its own: it binds and answers while every thread of Swift
    /// concurrency's cooperative pool is blocked (as in a parallel test run, or an app that blocks
    /// its tasks). A listener on that pool would time out here instead.
    @Test func answersWhileTheCooperativePoolIsBlocked() throws {
        let gate = DispatchSemaphore(value: 0)
        let blockers = ProcessInfo.processInfo.activeProcessorCount
        for _ in 0..<blockers { Task.detached { gate.wait() } }
        defer { for _ in 0..<blockers { gate.signal() } }
        Thread.sleep(forTimeInterval: 0.1)  // let the blockers take their threads (not asserted)
        try withServer(configure: { $0.metricsAddress = "127.0.0.1:0" }) { server in
            let address = try #require(server.metricsAddress)
            #expect(try httpGet(address, "/healthz").status == 200)
            #expect(try httpGet(address, "/metrics").status == 200)
        }
    }

    @Test func metricsAddressIsConfigurableAndChecked() throws {
        let c = try JSONDecoder().decode(
            ServerConfiguration.self, from: Data(#"{"metrics_address": "127.0.0.1:9464"}"#.utf8))
        #expect(c.metricsAddress == "127.0.0.1:9464")
        #expect(ServerConfiguration().metricsAddress == nil)
        for good in ["127.0.0.1:0", "[::1]:9464", "localhost:9464", "*:9464", "0.0.0.0:1"] {
            var config = ServerConfiguration()
            config.metricsAddress = good
            #expect(config.problems.isEmpty, "\(good)")
        }
        for bad in ["9464", "127.0.0.1", "127.0.0.1:70000", "example.com:9464", "::1:9464", ":9464"] {
            var config = ServerConfiguration()
            config.metricsAddress = bad
            #expect(config.problems.contains { $0.contains("metrics_address") }, "\(bad)")
        }
    }

    @Test func aTakenMetricsPortFailsAtInit() throws {
        try withServer(configure: { $0.metricsAddress = "127.0.0.1:0" }) { first in
            let taken = try #require(first.metricsAddress)
            #expect(throws: (any Error).self) {
                try withServer(configure: { $0.metricsAddress = taken }) { _ in }
            }
        }
    }
}

// MARK: - Helpers

/// A model whose worker blocks inside `act` until `open()`, to hold the server in a known state.
final class GatedModel: ServableModel, @unchecked Sendable {
    // Thread-safe: only semaphores, and an immutable inner model.
    private let inner = LinearTestModel()
    private let entered = DispatchSemaphore(value: 0)
    private let release = DispatchSemaphore(value: 0)
    private let openLock = NSLock()
    private var isOpen = false

    var modelDescription: ModelDescription { inner.modelDescription }

    func makeWorker() -> any ModelWorker { Worker(self) }

    func flopsPerObservation(_ options: ActOptions) -> Double { inner.flopsPerObservation(options) }

    func waitUntilEntered(seconds: Double) -> Bool { entered.wait(timeout: .now() + seconds) == .success }

    /// Lets every waiting and later `act` through (idempotent).
    func open() {
        openLock.lock()
        defer { openLock.unlock() }
        guard !isOpen else { return }
        isOpen = true
        release.signal()
    }

    final class Worker: ModelWorker {
        let model: GatedModel
        let inner: any ModelWorker
        init(_ model: GatedModel) {
            self.model = model
            inner = model.inner.makeWorker()
        }

        func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult {
            model.entered.signal()
            model.release.wait()
            model.release.signal()  // stay open for later calls
            return try inner.act(observations: observations, count: count, seeds: seeds, options: options)
        }
    }
}

struct HTTPAnswer {
    let status: Int
    let headers: [String: String]
    let body: String
}

/// One `GET` over a fresh TCP connection (HTTP/1.1, `Connection: close`), read to the end.
func httpGet(_ address: String, _ path: String) throws -> HTTPAnswer {
    struct HTTPFailure: Error { let what: String }
    guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
        throw HTTPFailure(what: "bad address \(address)")
    }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HTTPFailure(what: "socket: errno \(errno)") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    inet_pton(AF_INET, String(address[..<colon]), &addr.sin_addr)
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw HTTPFailure(what: "connect to \(address): errno \(errno)") }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
    guard send(fd, request, request.count, 0) == request.count else { throw HTTPFailure(what: "send: errno \(errno)") }
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n < 0 { throw HTTPFailure(what: "recv: errno \(errno)") }
        if n == 0 { break }
        data.append(contentsOf: buffer[0..<n])
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw HTTPFailure(what: "no header end in \(text)") }
    let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = head[0].split(separator: " ")
    guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw HTTPFailure(what: "status line \(head[0])") }
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
        guard let c = line.firstIndex(of: ":") else { continue }
        headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces)
    }
    return HTTPAnswer(status: status, headers: headers, body: String(text[split.upperBound...]))
}

/// Polls `path` until it answers `status` (at most about 10 s); true when it did.
func waitForStatus(_ address: String, _ path: String, _ status: Int) throws -> Bool {
    for _ in 0..<1000 {
        if try httpGet(address, path).status == status { return true }
        Thread.sleep(forTimeInterval: 0.01)
    }
    return false
}

/// Prometheus text format → `name{labels}` (exactly as written) → value. Comments are skipped.
func parseExposition(_ text: String) -> [String: Double] {
    var out: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        out[String(line[..<space])] = value
    }
    return out
}
