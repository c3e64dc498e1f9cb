import FlowgateClient
import FlowgateCommon
import FlowgateDemo
import FlowgateProtocol
import FlowgateServer
import Foundation
import Testing

/// The open-loop load tester and the parts of `flowgate bench serve` that decide what a number
/// means: the Poisson schedule, intended-time bookkeeping, HdrHistogram percentiles, the JSON
/// report and the remote-endpoint guard. No timing assertions: fixed seeds, counts and tolerances.
@Suite("open-loop load tester")
struct OpenLoopTests {
    @Test("Poisson schedule: mean gap 1/rate, exponential spread, increasing, reproducible from its seed")
    func poissonSchedule() {
        let rate = 1000.0, n = 20_000
        let t = PoissonSchedule.offsets(rate: rate, count: n, seed: 7)
        #expect(t.count == n)
        #expect(zip(t, t.dropFirst()).allSatisfy { $0 < $1 })
        var gaps = [Double(t[0])]
        for i in 1..<n { gaps.append(Double(t[i] - t[i - 1])) }
        let mean = gaps.reduce(0, +) / Double(n)
        // Standard error of the mean gap is 1/(rate·√n) = 0.7 %; 3 % is generous and still fails a
        // schedule at a wrong rate (e.g. a factor of 2, or milliseconds for nanoseconds).
        #expect(abs(mean / 1e6 - 1) < 0.03, "mean gap \(mean) ns, expected 1e6")
        // Exponential gaps have coefficient of variation 1 (a fixed-interval schedule has 0).
        let sd = (gaps.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)).squareRoot()
        #expect(abs(sd / mean - 1) < 0.05, "CV \(sd / mean)")
        #expect(PoissonSchedule.offsets(rate: rate, count: n, seed: 7) == t)
        #expect(PoissonSchedule.offsets(rate: rate, count: 100, seed: 8) != Array(t.prefix(100)))
        // A duration limit ends the schedule: ~200 arrivals in 2 s at 100/s, none after 2 s.
        let d = PoissonSchedule.offsets(rate: 100, count: 10_000, durationSeconds: 2, seed: 3)
        #expect(d.allSatisfy { $0 <= 2_000_000_000 })
        #expect((150...250).contains(d.count), "\(d.count) arrivals in 2 s at 100/s")
    }

    @Test("latency counts from the intended send time: a late send and a slow reply both count in full")
    func intendedTimeBookkeeping() {
        let ms: UInt64 = 1_000_000
        var book = OutstandingRequests(intended: [10 * ms, 20 * ms, 30 * ms], timeoutNanoseconds: 100 * ms)
        book.sent(0, at: 15 * ms)  // the sender was 5 ms late
        book.sent(1, at: 20 * ms)
        book.sent(2, at: 30 * ms)
        #expect(book.outstanding == 3)
        #expect(book.maxSendLagNanoseconds == 5 * ms)
        // Reply to request 0 at 95 ms: 85 ms after it was meant to go out, 80 ms after it did.
        #expect(book.completed(0, at: 95 * ms) == .init(latencyNanoseconds: 85 * ms, serviceNanoseconds: 80 * ms))
        // Request 1 gets no reply within 100 ms of its intended time: one timeout, and its reply
        // when it finally comes is late (not a latency sample, not silently dropped).
        #expect(book.expire(now: 119 * ms) == 0)
        #expect(book.nextExpiry() == 120 * ms)
        #expect(book.expire(now: 120 * ms) == 1)
        #expect(book.timedOut == 1)
        #expect(book.completed(1, at: 121 * ms) == nil)
        #expect(book.lateReplies == 1)
        // An answered request never times out; a duplicate reply is late.
        #expect(book.completed(2, at: 40 * ms)?.latencyNanoseconds == 10 * ms)
        #expect(book.expire(now: 1000 * ms) == 0)
        #expect(book.completed(2, at: 41 * ms) == nil)
        #expect(book.lateReplies == 2)
        #expect(book.outstanding == 0)
        #expect(book.nextExpiry() == nil)
    }

    @Test("HdrHistogram summary: p50/p90/p99/p99.9/max within 0.1 %, in milliseconds")
    func histogramSummary() {
        var h = LatencyHistogram()
        for us in 1...10_000 { h.record(microseconds: UInt64(us)) }
        var other = LatencyHistogram()
        other.record(nanoseconds: 20_000_000_400)  // 20 s, rounded to the microsecond
        h.add(other)
        let s = h.summary
        #expect(s.count == 10_001)
        func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 0.001 * b + 0.001 }
        #expect(close(s.p50, 5.0), "p50 \(s.p50)")
        #expect(close(s.p90, 9.0), "p90 \(s.p90)")
        #expect(close(s.p99, 99.0 * 10_001 / 100 / 1000), "p99 \(s.p99)")
        #expect(close(s.p999, 9.991), "p99.9 \(s.p999)")
        #expect(close(s.max, 20_000), "max \(s.max)")
        #expect(LatencyHistogram().summary.count == 0)
    }

    @Test("JSON report: snake_case schema with p99_9, errors by code and the compute bound")
    func jsonReport() throws {
        let latency = LatencySummary(count: 90, p50: 1, p90: 2, p99: 3, p999: 4, max: 5, mean: 1.5)
        var row = ServeBenchRow(
            mode: "open", concurrency: 4, targetRateRps: 100, offeredRateRps: 98.5, steps: 4, candidates: 16, samples: 8,
            check: true, maxDelayUs: 0, sent: 100, requests: 90, errorsByCode: ["timeout": 7, "overloaded": 3],
            lateReplies: 2, seconds: 1, throughputRps: 90, latencyMs: latency, serviceMs: latency, maxSendLagMs: 0.2,
            serverQueueUsMean: 10, serverComputeUsMean: 20, meanBatch: 1.5)
        let bound = ComputeBound(probe: "test", peakGflopsPerCore: 50, cores: 2)
        row.account(flopsPerObservation: 100e6, bound: bound)
        let report = ServeBenchReport(
            machine: ["cpu": "test"], model: "m v1", modelSource: "test", endpoint: "tcp://127.0.0.1:1", target: "loopback",
            mode: "open", requestsPerCell: 100, durationLimitS: 1, timeoutMs: 1000, seed: 1, computeBound: bound, results: [row])
        let json = try #require(try JSONSerialization.jsonObject(with: report.jsonData()) as? [String: Any])
        #expect(json["benchmark"] as? String == "serve")
        #expect(json["schema_version"] as? Int == 2)
        let cb = try #require(json["compute_bound"] as? [String: Any])
        #expect(cb["bound_gflops"] as? Double == 100)
        #expect(cb["peak_gflops_per_core"] as? Double == 50)
        let r = try #require((json["results"] as? [[String: Any]])?.first)
        #expect(r["errors"] as? Int == 10)
        #expect(r["errors_by_code"] as? [String: Int] == ["timeout": 7, "overloaded": 3])
        #expect(r["late_replies"] as? Int == 2)
        #expect(r["throughput_rps"] as? Double == 90)
        #expect(r["target_rate_rps"] as? Double == 100)
        let l = try #require(r["latency_ms"] as? [String: Any])
        #expect(l["p99_9"] as? Double == 4)
        #expect(l["p50"] as? Double == 1)
        // 90 obs/s × 100 MFLOP = 9 GFLOP/s of a 100 GFLOP/s bound (1000 obs/s).
        #expect(r["achieved_gflops"] as? Double == 9)
        #expect(r["bound_obs_per_s"] as? Double == 1000)
        #expect(abs((r["fraction_of_bound"] as? Double ?? 0) - 0.09) < 1e-12)
    }

    @Test("a non-loopback endpoint needs --remote; --remote needs tcp://HOST:PORT")
    func remoteGuard() throws {
        #expect(try BenchTarget.resolve(endpoint: nil, remote: nil) == nil)
        for local in ["tcp://127.0.0.1:5555", "tcp://localhost:5555", "tcp://[::1]:5555", "ipc:///tmp/x", "inproc://x"] {
            #expect(try BenchTarget.resolve(endpoint: local, remote: nil) == local)
        }
        for other in ["tcp://10.0.0.5:5555", "tcp://example.com:5555", "tcp://*:5555", "tcp://0.0.0.0:5555"] {
            let refusal = #expect(throws: BenchTarget.Refusal.self) { _ = try BenchTarget.resolve(endpoint: other, remote: nil) }
            #expect(refusal?.description.contains("--remote \(other)") == true)
        }
        #expect(try BenchTarget.resolve(endpoint: nil, remote: "tcp://10.0.0.5:5555") == "tcp://10.0.0.5:5555")
        for bad in ["10.0.0.5:5555", "tcp://10.0.0.5", "tcp://10.0.0.5:0", "tcp://10.0.0.5:x", "ipc:///tmp/x"] {
            #expect(throws: BenchTarget.Refusal.self) { _ = try BenchTarget.resolve(endpoint: nil, remote: bad) }
        }
        #expect(throws: BenchTarget.Refusal.self) {
            _ = try BenchTarget.resolve(endpoint: "tcp://127.0.0.1:1", remote: "tcp://10.0.0.5:5555")
        }
    }

    @Test("open loop against a server: every offered request is answered and recorded once")
    func openLoopRun() throws {
        try withServer(models: [DemoModel()]) { server in
            var config = OpenLoopConfiguration(target: demoTarget(server), rate: 400, durationSeconds: 60, maxRequests: 60)
            config.connections = 3
            config.warmupRequests = 1
            let r = try OpenLoopTester.run(config)
            #expect(r.offered == 60)
            #expect(r.completed == 60)
            #expect(r.errors.isEmpty)
            #expect(r.lateReplies == 0)
            #expect(r.latency.count == 60)
            #expect(r.serviceTime.count == 60)
            // From the intended time is never less than from the actual send.
            #expect(r.latency.summary.max >= r.serviceTime.summary.max)
            #expect(r.meanBatch >= 1)
        }
    }

    @Test("open loop counts server errors by code and unanswered requests as timeouts")
    func openLoopErrors() throws {
        try withServer(models: [DemoModel()]) { server in
            var config = OpenLoopConfiguration(
                target: demoTarget(server, parameters: ActParameters()), rate: 500, durationSeconds: 60, maxRequests: 20)
            config.model = "no-such-model"
            config.warmupRequests = 0
            let r = try OpenLoopTester.run(config)
            #expect(r.completed == 0)
            #expect(r.errors == ["unknown_model": 20])
        }
        // Nothing listens: every request times out (counted, not dropped).
        var config = OpenLoopConfiguration(
            target: LoadTarget(endpoint: "tcp://127.0.0.1:9", parameters: ActParameters(), observationDim: 4), rate: 1000,
            durationSeconds: 60, maxRequests: 10)
        config.warmupRequests = 0
        config.timeoutMilliseconds = 50
        let r = try OpenLoopTester.run(config)
        #expect(r.completed == 0)
        #expect(r.errors == ["timeout": 10])
    }
}
