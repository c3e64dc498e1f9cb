import FlowgateProtocol
import Testing

/// The frame decoder the server runs on untrusted bytes (`Request.decode(_:limits:)`).
@Suite struct RequestDecoderTests {
    /// MessagePack of `{"obs": [[0]*rows] + [None]*(rows-1)}`: the 200 KB request that used to ask
    /// for rows² floats (40 GB for 100,000 rows) before checking row 1.
    static func raggedBomb(rows: Int) -> [UInt8] {
        var out: [UInt8] = [0x81]
        MessagePack.append(.string("obs"), to: &out)
        MessagePack.appendArrayHeader(count: rows, to: &out)
        MessagePack.appendArrayHeader(count: rows, to: &out)
        out += [UInt8](repeating: 0x00, count: rows)
        out += [UInt8](repeating: 0xc0, count: rows - 1)
        return out
    }

    @Test func raggedBombIsRefusedBeforeAllocating() throws {
        let frame = Self.raggedBomb(rows: 100_000)
        #expect(frame.count < 210_000)
        // Unbounded limits: only the bytes present bound it (100,000 × 100,000 > 200 KB left).
        let e1 = #expect(throws: ProtocolError.self) { try Request.decode(frame) }
        #expect(e1?.code == .badRequest)
        #expect(e1?.message.contains("declares 100000 rows of 100000 values") == true, "\(e1!)")
        // Server limits: refused as too many observations at the first header.
        let limits = ObservationLimits(maxObservations: 64, maxObservationDim: 15)
        let e2 = #expect(throws: ProtocolError.self) { try Request.decode(frame, limits: limits) }
        #expect(e2?.code == .tooLarge)
        #expect(e2?.message.contains("exceeds max_batch 64") == true)
    }

    @Test func wideRowsAreAShapeErrorWithinLimits() throws {
        let limits = ObservationLimits(maxObservations: 64, maxObservationDim: 15)
        let wide = Request.act(FloatArray(rows: [[Float](repeating: 1, count: 40)]))
        let e = #expect(throws: ProtocolError.self) { try Request.decode(wide.encode(), limits: limits) }
        #expect(e?.code == .shapeMismatch)
        let one = Request.act(FloatArray([Float](repeating: 1, count: 16)))
        #expect(throws: ProtocolError.self) { try Request.decode(one.encode(), limits: limits) }
        let fits = Request.act(FloatArray(rows: Array(repeating: [Float](repeating: 1, count: 15), count: 64)))
        #expect(try Request.decode(fits.encode(), limits: limits) == fits)
    }

    @Test func ndarrayShapeIsCheckedAgainstLimitsBeforeAllocating() throws {
        let limits = ObservationLimits(maxObservations: 4, maxObservationDim: 3)
        let big = Request.act(FloatArray(rows: Array(repeating: [1, 2, 3], count: 5)), encoding: .ndarray(.float32))
        let e = #expect(throws: ProtocolError.self) { try Request.decode(big.encode(), limits: limits) }
        #expect(e?.code == .tooLarge)
    }

    @Test func idIsEchoedWhereverItStands() throws {
        // A non-string key before the id, a bad obs before the id, a bad op after it.
        let cases: [MessagePackValue] = [
            .map([MessagePackEntry(.int(1), .nil), MessagePackEntry(.string("id"), .string("a"))]),
            .map([MessagePackEntry(.string("obs"), .array([.nil])), MessagePackEntry(.string("id"), .string("a"))]),
            .map([MessagePackEntry(.string("id"), .string("a")), MessagePackEntry(.string("op"), .int(3))]),
            .map([MessagePackEntry(.string("steps"), .int(0)), MessagePackEntry(.string("id"), .string("a"))]),
        ]
        for value in cases {
            let e = #expect(throws: ProtocolError.self) { try Request.decode(MessagePack.encode(value)) }
            #expect(e?.id == .string("a"), "\(value)")
            #expect(e?.code == .badRequest)
        }
    }

    @Test func nonUTF8IdEchoesByteForByte() throws {
        // {"id": <str 0xff 0xfe 'x'>, "op": "health"}
        var frame: [UInt8] = [0x82, 0xa2, 0x69, 0x64, 0xa3, 0xff, 0xfe, 0x78]
        MessagePack.append(.string("op"), to: &frame)
        MessagePack.append(.string("health"), to: &frame)
        let r = try Request.decode(frame)
        #expect(r.id == .rawString([0xff, 0xfe, 0x78]))
        let reply = MessagePack.encode(.map([MessagePackEntry(.string("id"), r.id!.messagePackValue)]))
        #expect(Array(reply[4...]) == [0xa3, 0xff, 0xfe, 0x78])
    }

    @Test func duplicateKnownKeysAreRefused() throws {
        let v: MessagePackValue = .map([
            MessagePackEntry(.string("obs"), .array([.int(1)])), MessagePackEntry(.string("obs"), .array([.int(2)])),
        ])
        let e = #expect(throws: ProtocolError.self) { try Request.decode(MessagePack.encode(v)) }
        #expect(e?.message.contains("'obs' appears more than once") == true)
    }

    @Test func messagesNameWhatIsWrong() throws {
        let cases: [([UInt8], ErrorCode, String)] = [
            (Array("hello world".utf8), .badRequest, "request must be a MessagePack map, got integer"),
            ([0x81, 0xa3, 0x6f, 0x62, 0x73], .badRequest, "truncated"),
            ([0x80, 0x00], .badRequest, "1 trailing bytes after the request map"),
        ]
        for (bytes, code, fragment) in cases {
            let e = #expect(throws: ProtocolError.self) { try Request.decode(bytes) }
            #expect(e?.code == code)
            #expect(e?.message.contains(fragment) == true, "\(e!)")
        }
        let nanRow = Request.act(FloatArray(rows: [[0, 0, 0], [0, .nan, 0]]), encoding: .ndarray(.float32))
        // Encode NaN directly: FloatArray accepts it on the sending side.
        let e = #expect(throws: ProtocolError.self) { try Request.decode(nanRow.encode()) }
        #expect(e?.message.contains("'obs'[1][1] is not finite") == true, "\(e!)")
    }

    @Test func oneByteBodiesAreRefusedInOnePass() throws {
        // 1 MiB of nils as obs, and a map of 500,000 nil:nil entries: refused, id still found.
        var nils: [UInt8] = [0x82]
        MessagePack.append(.string("obs"), to: &nils)
        MessagePack.appendArrayHeader(count: 1 << 20, to: &nils)
        nils += [UInt8](repeating: 0xc0, count: 1 << 20)
        MessagePack.append(.string("id"), to: &nils)
        MessagePack.append(.int(9), to: &nils)
        let e1 = #expect(throws: ProtocolError.self) { try Request.decode(nils) }
        #expect(e1?.id == .int(9))
        var map: [UInt8] = [0xdf, 0x00, 0x07, 0xa1, 0x21]  // 500,001 entries: refused at the header
        for _ in 0..<500_000 { map += [0xc0, 0xc0] }
        MessagePack.append(.string("id"), to: &map)
        MessagePack.append(.int(10), to: &map)
        let e2 = #expect(throws: ProtocolError.self) { try Request.decode(map) }
        #expect(e2?.message.contains("request map has 500001 entries; at most 256") == true, "\(e2!)")
        var small: [UInt8] = [0xde, 0x00, 0xc9]  // 201 entries: 200 nil:nil, then the id
        for _ in 0..<200 { small += [0xc0, 0xc0] }
        MessagePack.append(.string("id"), to: &small)
        MessagePack.append(.int(11), to: &small)
        let e3 = #expect(throws: ProtocolError.self) { try Request.decode(small) }
        #expect(e3?.id == .int(11))
        #expect(e3?.message.contains("keys must be strings") == true)
    }

    @Test func anNDArrayKeyAtTheVeryEndIsTruncation() throws {
        // Found by the fuzzer: {"obs": {"data" <end>}} read one byte past the frame.
        let frame: [UInt8] = [0x81, 0xa3] + Array("obs".utf8) + [0x81, 0xa4] + Array("data".utf8)
        let e = #expect(throws: ProtocolError.self) { try Request.decode(frame) }
        #expect(e?.message.contains("truncated") == true, "\(e!)")
    }

    @Test func valueDecoderAgreesWithFrameDecoder() throws {
        let r = Request.act(
            FloatArray(rows: [[1, 2, 3], [4, 5, 6]]), encoding: .ndarray(.float64),
            parameters: ActParameters(steps: 2, candidates: 3, samples: 4, check: false, seed: 7, deadlineMilliseconds: 5),
            id: .string("x"), model: "m")
        #expect(try Request.decode(r.messagePackValue) == r)
        #expect(try Request.decode(r.encode()) == r)
    }
}
