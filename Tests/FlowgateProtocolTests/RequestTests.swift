import Testing

@testable import FlowgateProtocol

@Suite struct RequestTests {
    /// Packed by Python: msgpack.packb({'op':'act','id':7,'obs':[0.5,-1.0,2,3],'seed':42}).
    @Test func decodesPythonPlainRequest() throws {
        let r = try Request.decode(
            hex("84a26f70a3616374a2696407a36f627394cb3fe0000000000000cbbff00000000000000203a4736565642a"))
        #expect(r.op == .act)
        #expect(r.id == .int(7))
        #expect(r.act?.observations == FloatArray([0.5, -1, 2, 3]))
        #expect(r.act?.encoding == .plain)
        #expect(r.act?.isBatch == false)
        #expect(r.act?.parameters.seed == 42)
    }

    /// Packed by Python from a (2, 2) float32 numpy array in the openpi ndarray convention.
    @Test func decodesPythonNDArrayRequest() throws {
        let r = try Request.decode(
            hex(
                "82a26964a27231a36f627384ab5f5f6e6461727261795f5fc3a56474797065a33c6634a57368617065920202a464617461c4100000c03f000000c00000803e00008040"
            ))
        #expect(r.op == .act)
        #expect(r.id == .string("r1"))
        #expect(r.act?.observations == FloatArray(shape: [2, 2], values: [1.5, -2, 0.25, 4]))
        #expect(r.act?.encoding == .ndarray(.float32))
        #expect(r.act?.count == 2)
    }

    @Test func roundTripsEveryEncoding() throws {
        let obs = FloatArray(rows: [[1, 2, 3], [4, 5, 6]])
        for encoding in [ArrayEncoding.plain, .ndarray(.float32), .ndarray(.float64)] {
            let request = Request.act(
                obs, encoding: encoding,
                parameters: ActParameters(steps: 4, candidates: 8, samples: 2, check: false, seed: 9, deadlineMilliseconds: 12.5),
                id: .string("x"), model: "m")
            #expect(try Request.decode(request.encode()) == request)
        }
    }

    func error(_ value: MessagePackValue) -> ProtocolError? {
        do {
            _ = try Request.decode(MessagePack.encode(value))
            return nil
        } catch {
            return error
        }
    }

    @Test func rejectsWithCodesAndIds() {
        #expect(error(.array([]))?.code == .badRequest)
        #expect(error(.map(["op": .string("fly"), "id": .int(3)])) == ProtocolError(.unknownOp, "unknown op 'fly' (expected act, info, health or stats)", id: .int(3)))
        #expect(error(.map(["id": .string("a")]))?.id == .string("a"))
        #expect(error(.map(["obs": .array([.double(.nan)])]))?.code == .badRequest)
        #expect(error(.map(["obs": .array([.double(.infinity)])]))?.code == .badRequest)
        #expect(error(.map(["obs": .array([.string("1")])]))?.code == .badRequest)
        #expect(error(.map(["obs": .array([.array([.int(1), .int(2)]), .array([.int(1)])])]))?.code == .shapeMismatch)
        #expect(error(.map(["obs": .array([])]))?.code == .shapeMismatch)
        #expect(error(.map(["obs": .array([.int(1)]), "steps": .int(0)]))?.code == .badRequest)
        #expect(error(.map(["obs": .array([.int(1)]), "check": .int(1)]))?.code == .badRequest)
        #expect(error(.map(["obs": .array([.int(1)]), "id": .double(1)]))?.code == .badRequest)
        let shortData = MessagePackValue.map([
            "__ndarray__": .bool(true), "dtype": .string("<f4"), "shape": .array([.int(3)]), "data": .binary([0, 0, 0, 0]),
        ])
        #expect(error(.map(["obs": shortData]))?.code == .badRequest)
        let int8 = MessagePackValue.map([
            "__ndarray__": .bool(true), "dtype": .string("<i1"), "shape": .array([.int(1)]), "data": .binary([0]),
        ])
        #expect(error(.map(["obs": int8]))?.message.contains("<i1") == true)
        let huge = MessagePackValue.map([
            "__ndarray__": .bool(true), "dtype": .string("<f4"), "shape": .array([.int(1 << 30), .int(1 << 30)]), "data": .binary([]),
        ])
        #expect(error(.map(["obs": huge]))?.code == .badRequest)
    }

    @Test func frameLimitIsTooLarge() {
        let bytes = Request.act(FloatArray(Array(repeating: 1, count: 100))).encode()
        #expect(throws: ProtocolError(.tooLarge, "message of \(bytes.count) bytes exceeds the limit of 64 bytes")) {
            try Request.decode(bytes, maxBytes: 64)
        }
    }

    @Test func actReplyRoundTrips() throws {
        for encoding in [ArrayEncoding.plain, .ndarray(.float32), .ndarray(.float64)] {
            for batch in [false, true] {
                let actions = batch ? FloatArray(rows: [[0.5, -0.5], [0.25, 1]]) : FloatArray([0.5, -0.5])
                let n = batch ? 2 : 1
                let reply = ActReply(
                    id: .int(1), model: "m", version: "v1", actions: actions,
                    confidence: Array(repeating: 0.75, count: n), reliable: Array(repeating: true, count: n),
                    energy: Array(repeating: 1.5, count: n), q: Array(repeating: -2, count: n), threshold: 3,
                    timing: Timing(queueMicroseconds: 10, computeMicroseconds: 20, batch: 4), encoding: encoding)
                #expect(try ActReply(MessagePack.decode(reply.encode())) == reply)
            }
        }
    }

    /// The wire bytes of error replies against fixtures packed by Python's msgpack:
    /// `msgpack.packb({'ok': False, 'id': …, 'error': {'code': …, 'message': …}})`.
    @Test func errorReplyBytesMatchPython() throws {
        let cases: [(ProtocolError, String)] = [
            (
                ProtocolError(.overloaded, "queue full", id: .string("q")),
                "83a26f6bc2a26964a171a56572726f7282a4636f6465aa6f7665726c6f61646564a76d657373616765aa71756575652066756c6c"
            ),
            (
                ProtocolError(.badRequest, "x"),
                "83a26f6bc2a26964c0a56572726f7282a4636f6465ab6261645f72657175657374a76d657373616765a178"
            ),
            (
                ProtocolError(.deadlineExceeded, "late", id: .int(7)),
                "83a26f6bc2a2696407a56572726f7282a4636f6465b1646561646c696e655f6578636565646564a76d657373616765a46c617465"
            ),
        ]
        for (error, python) in cases {
            #expect(error.encode() == hex(python), "\(error)")
            // Reading the Python bytes gives the error back, and a client expecting an act reply throws it.
            #expect(ProtocolError(errorReply: try MessagePack.decode(hex(python))) == error)
            #expect(throws: error) { try ActReply(MessagePack.decode(hex(python))) }
        }
    }
}
