import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Testing

@Suite("load tester")
struct LoadTesterTests {
    @Test("percentiles of client latencies interpolate like NumPy's default")
    func percentiles() {
        let v: [Double] = [10, 20, 30, 40, 50]
        #expect(LoadTestResult.percentile(sorted: v, 50) == 30)
        #expect(abs(LoadTestResult.percentile(sorted: v, 90) - 46) < 1e-9)
        #expect(abs(LoadTestResult.percentile(sorted: (1...100).map(Double.init), 99) - 99.01) < 1e-9)
        #expect(LoadTestResult.percentile(sorted: [], 50) == 0)
    }

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
        }
    }
}
