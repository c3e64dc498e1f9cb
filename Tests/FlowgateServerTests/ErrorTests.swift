import FlowgateClient
import FlowgateProtocol
import FlowgateServer
import Foundation
import Testing

/// Every error code is produced, and the server keeps answering afterwards.
@Suite struct ErrorTests {
    func expectStillServing(_ server: InferenceServer) throws {
        let client = try FlowgateClient(server)
        #expect(try client.health().ready)
        #expect(try client.act(observation: [0, 0, 0]).actions.shape == [2])
    }

    func reply(_ client: FlowgateClient, _ value: MessagePackValue) throws -> MessagePackValue {
        try MessagePack.decode(client.roundTrip(MessagePack.encode(value)))
    }

    @Test func requestErrorsCarryCodeMessageAndId() throws {
        try withServer { server in
            let client = try FlowgateClient(server)
            let obs3: MessagePackValue = .array([.int(1), .int(2), .int(3)])
            let cases: [(MessagePackValue, ErrorCode, String)] = [
                (.array([.int(1)]), .badRequest, "must be a MessagePack map"),
                (.map(["id": .int(1), "obs": .array([.double(.nan), .int(0), .int(0)])]), .badRequest, "not finite"),
                (.map(["id": .int(2), "obs": .array([.int(1), .int(2)])]), .shapeMismatch, "expects obs_dim 3"),
                (.map(["id": .int(3), "obs": obs3, "model": .string("nope")]), .unknownModel, "unknown model 'nope'"),
                (.map(["id": .int(4), "op": .string("train")]), .unknownOp, "unknown op 'train'"),
                (.map(["id": .int(5), "obs": obs3, "steps": .int(1000)]), .tooLarge, "steps 1000 exceeds max_steps 32"),
                (.map(["id": .int(6), "obs": .array(Array(repeating: obs3, count: 300))]), .tooLarge, "exceeds max_batch 256"),
                (.map(["id": .int(7), "obs": .array([.int(Int64(LinearTestModel.poison)), .int(0), .int(0)])]), .internal, "failed"),
                (.map(["id": .int(8), "obs": obs3, "seed": .string("x")]), .badRequest, "'seed' must be an integer"),
            ]
            for (request, code, fragment) in cases {
                let r = try reply(client, request)
                #expect(r["ok"] == .bool(false))
                #expect(errorCode(r) == code, "\(request)")
                #expect(r["error"]?["message"]?.stringValue?.contains(fragment) == true, "\(r)")
                #expect(r["id"] == request["id"] ?? .nil)
            }
            let stats = try client.stats()
            #expect(stats["errors"]?["internal"]?.intValue == 1)
            #expect(stats["errors"]?["too_large"]?.intValue == 2)
            try expectStillServing(server)
        }
    }

    @Test func oversizedFrameIsTooLarge() throws {
        try withServer(configure: { $0.maxMessageBytes = 1024 }) { server in
            let client = try FlowgateClient(server)
            let big = Request.act(FloatArray(Array(repeating: 1, count: 3)), id: .string(String(repeating: "x", count: 2000)))
            let r = try MessagePack.decode(client.roundTrip(big.encode()))
            #expect(errorCode(r) == .tooLarge)
            #expect(r["error"]?["message"]?.stringValue?.contains("limit of 1024 bytes") == true)
            try expectStillServing(server)
        }
    }

    @Test func hostileFramesAreBadRequests() throws {
        try withServer { server in
            let client = try FlowgateClient(server, kind: .dealer)
            let frames: [(String, [UInt8])] = [
                ("garbage", [0xc1, 0xff, 0x00, 0x13, 0x37]),
                ("empty", []),
                ("truncated", Array(Request.act(FloatArray([1, 2, 3])).encode().dropLast(3))),
                ("array32 of 2^32-1", [0xdd, 0xff, 0xff, 0xff, 0xff]),
                ("map32 of 2^32-1", [0xdf, 0xff, 0xff, 0xff, 0xff]),
                ("str32 of 2^32-1", [0xdb, 0xff, 0xff, 0xff, 0xff]),
                ("bin32 of 2^32-1 as obs", [0x81, 0xa3, 0x6f, 0x62, 0x73, 0xc6, 0xff, 0xff, 0xff, 0xff]),
                ("nested 40 deep", [UInt8](repeating: 0x91, count: 40) + [0x00]),
                ("two objects", [0x80, 0x80]),
            ]
            for (name, body) in frames {
                let r = try MessagePack.decode(client.roundTrip(body))
                #expect(errorCode(r) == .badRequest, "\(name): \(r)")
                #expect(r["id"] == .nil)
            }
            try expectStillServing(server)
        }
    }

    @Test func malformedEnvelopesAreAnswered() throws {
        try withServer { server in
            let dealer = try FlowgateClient(server, kind: .dealer)
            // Two body frames after the delimiter.
            try dealer.sendFrames([[], [0x80], [0x80]])
            let r1 = try #require(try dealer.receive())
            #expect(errorCode(r1) == .badRequest)
            #expect(r1["error"]?["message"]?.stringValue?.contains("one body frame") == true)
            // No delimiter at all: the reply comes back without one.
            try dealer.sendFrames([MessagePack.encode(.map(["op": .string("health")]))])
            let raw = try #require(try dealer.receiveFrames(timeoutMilliseconds: 10_000))
            #expect(raw.count == 1)
            #expect(errorCode(try MessagePack.decode(raw[0])) == .badRequest)
            // Delimiter but no body.
            try dealer.sendFrames([[]])
            let r2 = try #require(try dealer.receive())
            #expect(errorCode(r2) == .badRequest)
            try expectStillServing(server)
        }
    }

    @Test func lazyPirateClientRecoversAfterATimeout() throws {
        try withServer(models: [LinearTestModel(delay: 0.4)], configure: { $0.workers = 1 }) { server in
            let client = try FlowgateClient(endpoint: server.endpoint, kind: .req, timeoutMilliseconds: 50, retries: 1)
            #expect(throws: FlowgateClientError.self) { try client.act(observation: [0, 0, 0]) }
            client.timeoutMilliseconds = 10_000
            // The REQ socket was reopened, so it is not stuck waiting for the lost reply.
            let r = try client.act(observation: [0, 0, 0], id: .string("after"))
            #expect(r.id == .string("after"))
        }
    }

    @Test func fullQueueIsOverloaded() throws {
        try withServer(
            models: [LinearTestModel(maxBatch: 1, delay: 0.2)],
            configure: {
                $0.workers = 1
                $0.queueLimit = 2
                $0.maxDelayMicroseconds = 0
            }
        ) { server in
            let dealer = try FlowgateClient(server, kind: .dealer)
            for i in 0..<6 { try dealer.send(Request.act(FloatArray([0, 0, 0]), id: .int(Int64(i)))) }
            var codes: [ErrorCode?] = []
            var ids: Set<RequestID> = []
            for _ in 0..<6 {
                let r = try #require(try dealer.receive(timeoutMilliseconds: 10_000))
                codes.append(errorCode(r))
                if let id = r["id"].flatMap(RequestID.init) { ids.insert(id) }
            }
            #expect(codes.contains(.overloaded))
            #expect(codes.contains(nil))
            #expect(ids.count == 6)
            try expectStillServing(server)
        }
    }

    @Test func queuedPastDeadlineIsDeadlineExceeded() throws {
        try withServer(
            models: [LinearTestModel(maxBatch: 1, delay: 0.3)],
            configure: {
                $0.workers = 1
                $0.maxDelayMicroseconds = 0
            }
        ) { server in
            let dealer = try FlowgateClient(server, kind: .dealer)
            try dealer.send(Request.act(FloatArray([0, 0, 0]), id: .string("slow")))
            try dealer.send(Request.act(FloatArray([0, 0, 0]), parameters: ActParameters(deadlineMilliseconds: 20), id: .string("late")))
            var byID: [RequestID: MessagePackValue] = [:]
            for _ in 0..<2 {
                let r = try #require(try dealer.receive(timeoutMilliseconds: 10_000))
                byID[RequestID(r["id"]!)!] = r
            }
            #expect(errorCode(byID[.string("slow")]) == nil)
            #expect(errorCode(byID[.string("late")]) == .deadlineExceeded)
            try expectStillServing(server)
        }
    }

    /// A client that sends a request and disconnects before its reply: the reply is dropped and
    /// counted, and the server goes on serving others. The gate holds the worker until the client's
    /// socket is closed, so the order does not depend on the machine's speed. libzmq tears a
    /// vanished peer's pipe down on its I/O thread; a reply sent before that finishes goes into the
    /// dying pipe and is lost uncounted, so the vanish is repeated with a fresh client (at most
    /// five times) until a reply is counted. Waits are bounded (20 s) only as failure guards.
    @Test func vanishedClientDoesNotStallOthers() throws {
        let gate = Gate()
        try withServer(models: [LinearTestModel(gate: gate)], configure: { $0.workers = 1 }) { server in
            let client = try FlowgateClient(server)
            var dropped = 0
            for attempt in 0..<5 where dropped == 0 {
                gate.close()
                do {
                    let gone = try FlowgateClient(server, kind: .dealer)
                    try gone.send(Request.act(FloatArray([LinearTestModel.hold, 0, 0]), id: .string("gone-\(attempt)")))
                    try withExtendedLifetime(gone) {
                        try #require(gate.waitForWorker(), "the vanishing client's request never reached the worker")
                    }
                }  // the socket is closed while the worker holds its request
                gate.open()
                // The reply has been handed to ZeroMQ (sent or dropped) once nothing is queued or in flight.
                let limit = Date(timeIntervalSinceNow: 20)
                var stats = try client.stats()
                while stats["in_flight"]?.intValue != 0 || stats["queue_depth"]?.intValue != 0 {
                    try #require(Date() < limit, "the vanished client's request never completed")
                    Thread.sleep(forTimeInterval: 0.01)
                    stats = try client.stats()
                }
                dropped = stats["dropped_replies"]?.intValue ?? 0
            }
            #expect(dropped == 1)
            try expectStillServing(server)
        }
    }
}
