import FlowgateClient
import FlowgateCommon
import FlowgateProtocol
import FlowgateServer
import Testing
import FlowgateDemo

@Suite("load tester")
struct LoadTesterTests {
    @Test("concurrent clients spend exactly the request budget and record every reply")
    func budget() throws {
        try withServer(models: [DemoModel()]) { server in
            var config = LoadTestConfiguration(
                endpoint: server.endpoint, concurrency: 3, requests: 40, durationSeconds: 30,
                parameters: ActParameters(steps: 2), observationDim: 4)
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
