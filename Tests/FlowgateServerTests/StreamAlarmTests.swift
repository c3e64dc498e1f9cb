import FlowgateClient
import FlowgateProtocol
@testable import FlowgateServer
import Foundation
import Testing

/// risk = sigmoid(E − 2) for the test double's energy E = |obs|².
let energyRisk = RiskModel.Logistic(features: ["energy"], mean: [0], std: [1], weights: [1], bias: -2)
func sigmoid(_ x: Double) -> Float { Float(1 / (1 + exp(-x))) }
/// Raise on 2 of the last 3 risks ≥ 0.5, clear after 2 risks < 0.2.
let testRisk = RiskModel(
    horizon: 20, trendRate: 0.5, stateless: energyRisk, stream: energyRisk,
    alarm: .init(on: 0.5, k: 2, n: 3, off: 0.2, clearAfter: 2))

/// The linear test double with a risk model.
final class RiskyTestModel: ServableModel {
    let inner = LinearTestModel()
    var modelDescription: ModelDescription { inner.modelDescription }
    func makeWorker() -> any ModelWorker { inner.makeWorker() }
    func flopsPerObservation(_ options: ActOptions) -> Double { inner.flopsPerObservation(options) }
    var riskModel: RiskModel? { testRisk }
}

/// Energies (|obs|²) whose risks sigmoid(E − 2) are: calm 0.12 (E 0), middle 0.38 (E 1.5), high 0.999 (E 9).
let calm: Float = 0, middle: Float = 1.5, high: Float = 9

@Suite struct RiskModelTests {
    @Test func statelessRiskIsTheCalibratedLogistic() {
        #expect(abs(testRisk.risk(q: 0, energy: 3) - sigmoid(1)) < 1e-6)
        #expect(abs(testRisk.risk(q: 5, energy: -1) - sigmoid(-3)) < 1e-6)  // q is not a feature here
        // an unchecked action (NaN energy) sits at the feature's mean (0): sigmoid(−2)
        #expect(abs(testRisk.risk(q: 0, energy: .nan) - sigmoid(-2)) < 1e-6)
    }

    @Test func alarmNeedsKOfNAndClearsAfterCalmSteps() {
        var s = RiskModel.StreamState()
        func step(_ e: Float) -> RiskModel.Transition { testRisk.step(&s, q: 0, energy: e).transition }
        #expect(step(high) == .none)  // 1 of 3
        #expect(step(calm) == .none)  // 1 of 3
        guard case .raised = step(high) else { Issue.record("2 of the last 3 high must raise"); return }
        #expect(s.alarm)
        // hysteresis: risks between off (0.2) and on (0.5) keep the alarm
        for _ in 0..<10 { #expect(step(middle) == .none) }
        #expect(s.alarm)
        #expect(step(calm) == .none)  // one calm step is not enough
        guard case .cleared = step(calm) else { Issue.record("2 calm steps must clear"); return }
        #expect(!s.alarm)
        // after a clear the window restarts: one high risk alone does not raise again
        #expect(step(high) == .none)
        #expect(s.steps == 16)
    }

    @Test func streamTrendsFollowTheServersDefinition() {
        let trend = RiskModel.Logistic(features: ["q_drop", "q_delta"], mean: [0, 0], std: [1, 1], weights: [1, 0], bias: 0)
        let m = RiskModel(
            horizon: 20, trendRate: 0.5, stateless: energyRisk, stream: trend,
            alarm: .init(on: 0.9, k: 1, n: 1, off: 0.1, clearAfter: 1))
        var s = RiskModel.StreamState()
        #expect(abs(m.step(&s, q: 10, energy: 1).risk - 0.5) < 1e-6)  // first step: no trend
        // average 10, q 8: q_drop 2
        #expect(abs(m.step(&s, q: 8, energy: 1).risk - sigmoid(2)) < 1e-6)
        // average 9 (rate 0.5), q 9: q_drop 0
        #expect(abs(m.step(&s, q: 9, energy: 1).risk - 0.5) < 1e-6)
    }

    @Test func malformedSectionsAreRefusedAndAbsentOnesLoadAsNil() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("risk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("manifest.json")
        try Data(#"{"name": "old", "schemaVersion": 1}"#.utf8).write(to: path)
        #expect(try RiskModel.load(directory: dir.path) == nil)
        let encoder = JSONEncoder()
        try Data(#"{"name": "new", "risk": \#(String(decoding: try encoder.encode(testRisk), as: UTF8.self))}"#.utf8).write(to: path)
        #expect(try RiskModel.load(directory: dir.path) == testRisk)
        var bad = testRisk
        bad.stateless.features = ["q_drop"]  // needs a stream
        try Data(#"{"risk": \#(String(decoding: try encoder.encode(bad), as: UTF8.self))}"#.utf8).write(to: path)
        #expect(throws: RiskModelError.self) { try RiskModel.load(directory: dir.path) }
        bad = testRisk
        bad.alarm.k = 4  // k > n
        try Data(#"{"risk": \#(String(decoding: try encoder.encode(bad), as: UTF8.self))}"#.utf8).write(to: path)
        #expect(throws: RiskModelError.self) { try RiskModel.load(directory: dir.path) }
        bad = testRisk
        bad.stream.weights = [1, 2]
        try Data(#"{"risk": \#(String(decoding: try encoder.encode(bad), as: UTF8.self))}"#.utf8).write(to: path)
        #expect(throws: RiskModelError.self) { try RiskModel.load(directory: dir.path) }
    }
}

@Suite struct StreamTableTests {
    func key(_ s: String, _ model: String = "m") -> StreamTable.Key { .init(model: model, stream: s) }

    @Test func streamsKeepSeparateState() {
        let t = StreamTable(capacity: 8, ttlSeconds: 100)
        _ = t.step(key("a"), model: testRisk, q: 0, energy: high, now: 0)
        _ = t.step(key("b"), model: testRisk, q: 0, energy: calm, now: 1)
        _ = t.step(key("a", "other"), model: testRisk, q: 0, energy: high, now: 1)
        let a = t.step(key("a"), model: testRisk, q: 0, energy: high, now: 2)
        let b = t.step(key("b"), model: testRisk, q: 0, energy: high, now: 3)
        #expect(a.alarm && a.transition != .none)
        #expect(!b.alarm)  // b's first step was calm: 1 of 3
        #expect(t.alarm(key("a", "other")) == false)  // same stream name, other model
        #expect(t.counts.streams == 3)
    }

    @Test func fullTableEvictsTheLeastRecentlyUsedStream() {
        let t = StreamTable(capacity: 3, ttlSeconds: 1000)
        for (i, s) in ["a", "b", "c"].enumerated() { _ = t.step(key(s), model: testRisk, q: 0, energy: high, now: Double(i)) }
        _ = t.step(key("a"), model: testRisk, q: 0, energy: high, now: 3)  // a raises; b is now the oldest
        #expect(t.alarm(key("a")) == true)
        _ = t.step(key("d"), model: testRisk, q: 0, energy: calm, now: 4)
        #expect(t.counts.streams == 3)
        #expect(t.counts.evicted == 1)
        #expect(t.alarm(key("b")) == nil)
        #expect(t.alarm(key("a")) == true && t.alarm(key("c")) == false && t.alarm(key("d")) == false)
        // many new streams never grow the table
        for i in 0..<1000 { _ = t.step(key("x\(i)"), model: testRisk, q: 0, energy: calm, now: 5 + Double(i)) }
        #expect(t.counts.streams == 3)
    }

    @Test func idleStreamsExpire() {
        let t = StreamTable(capacity: 4, ttlSeconds: 10)
        _ = t.step(key("a"), model: testRisk, q: 0, energy: high, now: 0)
        _ = t.step(key("a"), model: testRisk, q: 0, energy: high, now: 5)
        #expect(t.alarm(key("a")) == true)
        // 10.5 s idle: the state is gone, so one high risk is 1 of 3 again
        let r = t.step(key("a"), model: testRisk, q: 0, energy: high, now: 15.5)
        #expect(!r.alarm && r.transition == .none)
        #expect(t.counts.expired == 1)
        // expired streams make room before any live one is evicted
        _ = t.step(key("b"), model: testRisk, q: 0, energy: calm, now: 16)
        _ = t.step(key("c"), model: testRisk, q: 0, energy: calm, now: 17)
        _ = t.step(key("d"), model: testRisk, q: 0, energy: calm, now: 40)  // a, b, c idle > 10 s
        _ = t.step(key("e"), model: testRisk, q: 0, energy: calm, now: 41)
        _ = t.step(key("f"), model: testRisk, q: 0, energy: calm, now: 42)
        #expect(t.counts.evicted == 0)
        #expect(t.counts.streams <= 4)
    }
}

@Suite struct StreamServingTests {
    @Test func repliesCarryRiskAndStreamsCarryAlarms() throws {
        try withServer(models: [RiskyTestModel()]) { server in
            let client = try FlowgateClient(server)
            // E = 3 → risk sigmoid(1)
            let plain = try client.act(Request.act(FloatArray([1, 1, 1]), parameters: .init(seed: 1)))
            #expect(plain.risk.map { isClose($0, [sigmoid(1)], tolerance: 1e-5) } == true)
            #expect(plain.alarm == nil)
            func send(_ obs: [Float], _ stream: String) throws -> ActReply {
                try client.act(Request.act(FloatArray(obs), parameters: .init(seed: 1, stream: stream)))
            }
            #expect(try send([3, 0, 0], "robot-1").alarm == [false])
            #expect(try send([3, 0, 0], "robot-1").alarm == [true])
            #expect(try send([3, 0, 0], "robot-2").alarm == [false])  // its own state
            #expect(try send([0, 0, 0], "robot-1").alarm == [true])
            #expect(try send([0, 0, 0], "robot-1").alarm == [false])
            // a batch on a stream is its next observations, in order
            let batch = try client.act(Request.act(FloatArray(shape: [3, 3], values: [3, 0, 0, 3, 0, 0, 0, 0, 0]), parameters: .init(seed: 1, stream: "robot-3")))
            #expect(batch.alarm == [false, true, true])
            #expect(batch.risk?.count == 3)
        }
    }

    @Test func overlongStreamNamesAreBadRequests() throws {
        try withServer(models: [RiskyTestModel()]) { server in
            let client = try FlowgateClient(server)
            let long = String(repeating: "s", count: ActParameters.maxStreamBytes + 1)
            let reply = try client.request(Request.act(FloatArray([0, 0, 0]), parameters: .init(stream: long)))
            #expect(errorCode(reply) == .badRequest)
            let empty = try client.request(Request.act(FloatArray([0, 0, 0]), parameters: .init(stream: "")))
            #expect(errorCode(empty) == .badRequest)
        }
    }

    @Test func modelsWithoutRiskAnswerAsBefore() throws {
        try withServer { server in
            let reply = try FlowgateClient(server).act(Request.act(FloatArray([0, 0, 0]), parameters: .init(stream: "s")))
            #expect(reply.risk == nil && reply.alarm == nil)
        }
    }

    @Test func alarmAndClearAreTelemetryEvents() throws {
        try withServer(models: [RiskyTestModel()], telemetry: true) { server in
            let monitor = try TelemetryMonitor(endpoint: #require(server.telemetryEndpoint), topics: ["alarm/", "clear/"])
            let client = try FlowgateClient(server)
            // the subscription is up once an alarm of a probe stream comes through (bounded)
            var up = false
            for i in 0..<100 where !up {
                _ = try client.act(Request.act(FloatArray([3, 0, 0]), parameters: .init(seed: 1, stream: "probe-\(i)")))
                _ = try client.act(Request.act(FloatArray([3, 0, 0]), parameters: .init(seed: 1, stream: "probe-\(i)")))
                up = try monitor.next(timeoutMilliseconds: 50) != nil
            }
            #expect(up)
            while try monitor.next(timeoutMilliseconds: 100) != nil {}
            for obs: [Float] in [[3, 0, 0], [3, 0, 0], [0, 0, 0], [0, 0, 0]] {
                _ = try client.act(observation: obs, parameters: .init(seed: 1, stream: "arm"), id: .string("r"))
            }
            let raised = try #require(try monitor.next(timeoutMilliseconds: 5000))
            let cleared = try #require(try monitor.next(timeoutMilliseconds: 5000))
            #expect(raised.topic == "alarm/test" && raised.kind == .alarm)
            #expect(raised.stream == "arm")
            #expect(raised.risk.map { abs($0 - sigmoid(7)) < 1e-5 } == true)
            #expect(raised.reason?.contains("2 of the last 3") == true)
            #expect(cleared.topic == "clear/test" && cleared.stream == "arm")
            #expect(cleared.reason != nil)
            #expect(try monitor.next(timeoutMilliseconds: 200) == nil)  // nothing else on these topics
        }
    }
}

@Suite struct TelemetryEventCodingTests {
    @Test func eventsRoundTripThroughTheirFrames() throws {
        let e = TelemetryEvent(
            kind: .alarm, id: .string("x"), model: "m", time: 1.5, reliable: false, confidence: 0.25, energy: 7,
            threshold: 4, stream: "s", risk: 0.5, reason: "because")
        #expect(try TelemetryEvent.decode(frames: e.frames) == e)
        let plain = TelemetryEvent(kind: .reliable, id: nil, model: "m", time: 2, reliable: true, confidence: 1, energy: 0, threshold: 4)
        #expect(try TelemetryEvent.decode(frames: plain.frames) == plain)
        #expect(plain.messagePackValue["stream"] == nil && plain.messagePackValue["risk"] == nil)
        #expect(throws: ProtocolError.self) { try TelemetryEvent.decode(frames: [Array("nonsense/m".utf8), e.frames[1]]) }
    }
}
