internal import CMsgPack

extension MessagePack {
    /// Decodes one MessagePack object that fills `bytes` exactly.
    ///
    /// The bytes are first checked by `MessagePackGuard` (lengths against bytes left, depth, trailing
    /// bytes), so msgpack-c never sees a header that would make it allocate more than the message
    /// could hold. Then msgpack-c parses them and the result is copied into `MessagePackValue`.
    public static func decode(_ bytes: [UInt8]) throws(MessagePackError) -> MessagePackValue {
        let result: Result<MessagePackValue, MessagePackError> = bytes.withUnsafeBytes { raw in
            do throws(MessagePackError) {
                return .success(try decode(raw))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Decodes one MessagePack object that fills `bytes` exactly (see the other overload).
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(MessagePackError) -> MessagePackValue {
        try MessagePackGuard.validate(bytes)
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self) else {
            throw MessagePackError("empty message", offset: 0)
        }
        var unpacked = msgpack_unpacked()
        msgpack_unpacked_init(&unpacked)
        defer { msgpack_unpacked_destroy(&unpacked) }
        var offset = 0
        let rc = msgpack_unpack_next(&unpacked, base, bytes.count, &offset)
        switch rc {
        case MSGPACK_UNPACK_SUCCESS:
            break
        case MSGPACK_UNPACK_CONTINUE:
            throw MessagePackError("truncated message", offset: offset)
        case MSGPACK_UNPACK_NOMEM_ERROR:
            throw MessagePackError("msgpack-c ran out of memory", offset: offset)
        default:
            throw MessagePackError("msgpack-c could not parse the message", offset: offset)
        }
        return convert(unpacked.data)
    }

    private static func convert(_ o: msgpack_object) -> MessagePackValue {
        switch o.type {
        case MSGPACK_OBJECT_NIL:
            return .nil
        case MSGPACK_OBJECT_BOOLEAN:
            return .bool(o.via.boolean)
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            let u = o.via.u64
            return u <= UInt64(Int64.max) ? .int(Int64(u)) : .uint(u)
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return .int(o.via.i64)
        case MSGPACK_OBJECT_FLOAT32:
            return .float(Float(o.via.f64))
        case MSGPACK_OBJECT_FLOAT64:
            return .double(o.via.f64)
        case MSGPACK_OBJECT_STR:
            let s = o.via.str
            guard s.size > 0, let p = s.ptr else { return .string("") }
            let buffer = UnsafeRawBufferPointer(start: p, count: Int(s.size))
            if let valid = String(validating: buffer, as: UTF8.self) { return .string(valid) }
            return .rawString(Array(buffer))
        case MSGPACK_OBJECT_BIN:
            let b = o.via.bin
            guard b.size > 0, let p = b.ptr else { return .binary([]) }
            return .binary(Array(UnsafeRawBufferPointer(start: p, count: Int(b.size))))
        case MSGPACK_OBJECT_ARRAY:
            let a = o.via.array
            guard a.size > 0, let p = a.ptr else { return .array([]) }
            return .array(UnsafeBufferPointer(start: p, count: Int(a.size)).map(convert))
        case MSGPACK_OBJECT_MAP:
            let m = o.via.map
            guard m.size > 0, let p = m.ptr else { return .map([]) }
            return .map(
                UnsafeBufferPointer(start: p, count: Int(m.size)).map {
                    MessagePackEntry(convert($0.key), convert($0.val))
                })
        case MSGPACK_OBJECT_EXT:
            let e = o.via.ext
            let data =
                e.size > 0 && e.ptr != nil
                ? Array(UnsafeRawBufferPointer(start: e.ptr, count: Int(e.size))) : []
            return .ext(e.type, data)
        default:
            return .nil
        }
    }
}
