import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Testing

@Suite struct ActTests {
    @Test func reqClientGetsAnAction() throws {
        try withServer { server in
            let client = try FlowgateClient(server)
            let reply = try client.act(observation: [0.1, 0.2, 0.3], parameters: ActParameters(seed: 1), id: .string("a"))
            #expect(reply.id == .string("a"))
            #expect(reply.model == "test")
            #expect(reply.version == "test-1")
            #expect(reply.actions.shape == [2])
            #expect(reply.actions.values.allSatisfy { (-1...1).contains($0) })
            #expect(reply.reliable == [true])
            #expect((0...1).contains(reply.confidence[0]))
            #expect(isClose(reply.energy, [0.14]))
            #expect(reply.threshold == 4)
            #expect(reply.timing.batch >= 1)
        }
    }

    @Test func dealerClientGetsTheSameAnswerAsReq() throws {
        try withServer { server in
            let req = try FlowgateClient(server, kind: .req)
            let dealer = try FlowgateClient(server, kind: .dealer)
            let p = ActParameters(seed: 77)
            let a = try req.act(observation: [1, -1, 0.5], parameters: p, id: .int(1))
            let b = try dealer.act(observation: [1, -1, 0.5], parameters: p, id: .int(2))
            #expect(a.actions == b.actions)
            #expect(b.id == .int(2))
        }
    }

    @Test func sameSeedSameAction() throws {
        try withServer { server in
            let client = try FlowgateClient(server)
            let p = ActParameters(seed: 5)
            let a = try client.act(observation: [0.3, 0.3, 0.3], parameters: p)
            let b = try client.act(observation: [0.3, 0.3, 0.3], parameters: p)
            let c = try client.act(observation: [0.3, 0.3, 0.3], parameters: ActParameters(seed: 6))
            #expect(a.actions == b.actions)
            #expect(a.actions != c.actions)
        }
    }

    @Test func batchEqualsSingleRequestsWithConsecutiveSeeds() throws {
        try withServer { server in
            let client = try FlowgateClient(server)
            let rows: [[Float]] = [[0.1, 0.2, 0.3], [1, 0, -1], [2, 2, 2], [-0.5, 0.25, 0]]
            let seed: UInt64 = 1000
            let batch = try client.act(batch: rows, parameters: ActParameters(seed: seed), id: .string("b"))
            #expect(batch.actions.shape == [4, 2])
            #expect(batch.confidence.count == 4)
            for (i, row) in rows.enumerated() {
                let single = try client.act(observation: row, parameters: ActParameters(seed: seed + UInt64(i)))
                #expect(isClose(batch.actions.rows[i], single.actions.values))
                #expect(isClose([batch.energy[i]], single.energy))
                #expect(isClose([batch.q[i]], single.q))
                #expect(batch.reliable[i] == single.reliable[0])
            }
            #expect(batch.reliable == [true, true, false, true])
        }
    }

    @Test func negativeAndHugeSeedsAreAccepted() throws {
        try withServer { server in
            let client = try FlowgateClient(server)
            let v: MessagePackValue = .map(["obs": .array([.int(0), .int(0), .int(0)]), "seed": .int(-1)])
            let a = try client.request(Request.decode(v))
            #expect(a["ok"]?.boolValue == true)
            let b = try client.act(observation: [0, 0, 0], parameters: ActParameters(seed: UInt64.max))
            #expect(try ActReply(a).actions == b.actions)
        }
    }

    @Test func encodingsFollowTheRequest() throws {
        try withServer { server in
            let client = try FlowgateClient(server)
            for encoding in [ArrayEncoding.plain, .ndarray(.float32), .ndarray(.float64)] {
                let single = try client.request(Request.act(FloatArray([0.1, 0.2, 0.3]), encoding: encoding, parameters: ActParameters(seed: 3)))
                let batch = try client.request(Request.act(FloatArray(rows: [[0.1, 0.2, 0.3], [0, 0, 1]]), encoding: encoding, parameters: ActParameters(seed: 3)))
                switch encoding {
                case .plain:
                    #expect(single["action"]?.arrayValue?.count == 2)
                    #expect(batch["action"]?.arrayValue?.first?.arrayValue?.count == 2)
                    #expect(batch["confidence"]?.arrayValue?.count == 2)
                case .ndarray(let dtype):
                    #expect(single["action"]?["dtype"]?.stringValue == dtype.rawValue)
                    #expect(single["action"]?["shape"] == .array([.int(2)]))
                    #expect(batch["action"]?["shape"] == .array([.int(2), .int(2)]))
                    #expect(batch["confidence"]?["dtype"]?.stringValue == dtype.rawValue)
                    #expect(batch["reliable"]?.arrayValue?.count == 2)
                }
                #expect(single["confidence"]?.doubleValue != nil)
                #expect(try ActReply(single).encoding == encoding)
            }
        }
    }

    @Test func uncheckedActionsAreNeverReliable() throws {
        try withServer { server in
            let client = try FlowgateClient(server)
            let r = try client.act(observation: [0, 0, 0], parameters: ActParameters(check: false))
            #expect(r.reliable == [false])
            #expect(r.confidence == [0])
            #expect(r.energy[0].isNaN)
        }
    }

    @Test func infoHealthAndStats() throws {
        try withServer(models: [LinearTestModel(name: "a"), LinearTestModel(name: "b", observationDim: 5)]) { server in
            let client = try FlowgateClient(server)
            let info = try client.info(id: .int(9))
            #expect(info.id == .int(9))
            #expect(info.protocolVersion == 1)
            #expect(info.defaultModel == "a")
            #expect(info.models.map(\.name) == ["a", "b"])
            #expect(info.models[1].observationDim == 5)
            #expect(info.models[0].limits.maxSteps == 32)
            #expect(info.models[0].provenance.isEmpty)  // shown only with expose_provenance (CurveServerTests)
            let r = try client.act(observation: [1, 2, 3, 4, 5], model: "b")
            #expect(r.model == "b")
            let health = try client.health()
            #expect(health.ready)
            #expect(health.uptimeSeconds >= 0)
            let stats = try client.stats()
            #expect(stats["requests"]?["act"]?.intValue == 1)
            #expect(stats["replies"]?["ok"]?.intValue ?? 0 >= 3)
            #expect(stats["latency_us"]?["total"]?["count"]?.intValue == 1)
            #expect(stats["batch_size"]?["sizes"]?["1"]?.intValue == 1)
            #expect(stats["errors"]?["bad_request"]?.intValue == 0)
        }
    }

    @Test func manyConcurrentClientsGetTheirOwnReplies() throws {
        try withServer { server in
            let endpoint = server.endpoint
            let failures = Failures()
            let group = DispatchGroup()
            for t in 0..<8 {
                group.enter()
                Thread {
                    defer { group.leave() }
                    do {
                        let client = try FlowgateClient(endpoint: endpoint, kind: t % 2 == 0 ? .req : .dealer, timeoutMilliseconds: 10_000, retries: 0)
                        for i in 0..<15 {
                            let id = RequestID.string("\(t)-\(i)")
                            let obs: [Float] = [Float(t), Float(i) / 10, 0]
                            let r = try client.act(observation: obs, parameters: ActParameters(seed: UInt64(t * 100 + i)), id: id)
                            if r.id != id || !isClose(r.energy, [obs.reduce(0) { $0 + $1 * $1 }]) {
                                failures.add("client \(t) request \(i): got id \(String(describing: r.id)) energy \(r.energy)")
                            }
                        }
                    } catch {
                        failures.add("client \(t): \(error)")
                    }
                }.start()
            }
            #expect(group.wait(timeout: .now() + 60) == .success)
            #expect(failures.all.isEmpty, "\(failures.all)")
        }
    }
}

/// Thread-safe list of failure messages collected from client threads.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) {
        lock.lock()
        items.append(s)
        lock.unlock()
    }
    var all: [String] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}
