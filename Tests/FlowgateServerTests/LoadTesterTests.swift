import FlowgateClient
import FlowgateCommon
import FlowgateProtocol
import FlowgateServer
import Testing
import FlowgateDemo

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
