/// The `op` of a request.
public enum Operation: String, Sendable, CaseIterable {
    case act, info, health, stats
}

/// Optional sampling settings of an `act` request; `nil` means "the model's default".
public struct ActParameters: Sendable, Equatable, Hashable {
    /// Flow steps K.
    public var steps: Int?
    /// Candidate actions M per observation.
    public var candidates: Int?
    /// Next-state samples N for the energy check.
    public var samples: Int?
    /// Whether to run the energy (reliability) check; default true.
    public var check: Bool?
    /// Seed S; observation i of a batch uses S+i (mod 2^64). Negative seeds are read as their
    /// 64-bit two's-complement bit pattern.
    public var seed: UInt64?
    /// Give up with `deadline_exceeded` if the request's batch has not started this many
    /// milliseconds after the server received it.
    public var deadlineMilliseconds: Double?
    /// The client's stream (one robot's episode): the server keeps per-stream alarm state under
    /// this name (1 to `maxStreamBytes` UTF-8 bytes). It does not affect batching.
    public var stream: String?

    /// Longest `stream` name in bytes.
    public static let maxStreamBytes = 128

    public init(
        steps: Int? = nil, candidates: Int? = nil, samples: Int? = nil, check: Bool? = nil,
        seed: UInt64? = nil, deadlineMilliseconds: Double? = nil, stream: String? = nil
    ) {
        self.stream = stream
        self.steps = steps
        self.candidates = candidates
        self.samples = samples
        self.check = check
        self.seed = seed
        self.deadlineMilliseconds = deadlineMilliseconds
    }
}

/// The observation part of an `act` request.
public struct ActRequest: Sendable, Equatable {
    /// `[obs_dim]` for one observation or `[B, obs_dim]` for a batch.
    public var observations: FloatArray
    /// How `obs` was encoded; the reply uses the same encoding.
    public var encoding: ArrayEncoding
    public var parameters: ActParameters

    public init(observations: FloatArray, encoding: ArrayEncoding = .plain, parameters: ActParameters = .init()) {
        self.observations = observations
        self.encoding = encoding
        self.parameters = parameters
    }

    /// True when `obs` was 2-D (the reply then holds lists of B values).
    public var isBatch: Bool { observations.shape.count == 2 }
    /// Number of observations B (1 for a single observation).
    public var count: Int { isBatch ? observations.shape[0] : 1 }
    /// Length of each observation.
    public var observationDim: Int { observations.shape.last ?? 0 }
}

/// One decoded request.
public struct Request: Sendable, Equatable {
    public var op: Operation
    public var id: RequestID?
    /// Model name; `nil` selects the server's default model.
    public var model: String?
    /// Present exactly when `op == .act`.
    public var act: ActRequest?

    public init(op: Operation, id: RequestID? = nil, model: String? = nil, act: ActRequest? = nil) {
        self.op = op
        self.id = id
        self.model = model
        self.act = act
    }

    /// An `act` request.
    public static func act(
        _ observations: FloatArray, encoding: ArrayEncoding = .plain, parameters: ActParameters = .init(),
        id: RequestID? = nil, model: String? = nil
    ) -> Request {
        Request(
            op: .act, id: id, model: model,
            act: ActRequest(observations: observations, encoding: encoding, parameters: parameters))
    }

    /// The request as a MessagePack map (what a client sends).
    public var messagePackValue: MessagePackValue {
        var pairs: [(String, MessagePackValue)] = [("op", .string(op.rawValue))]
        if let id { pairs.append(("id", id.messagePackValue)) }
        if let model { pairs.append(("model", .string(model))) }
        if let act {
            pairs.append(("obs", act.observations.messagePackValue(act.encoding)))
            let p = act.parameters
            if let v = p.steps { pairs.append(("steps", .int(Int64(v)))) }
            if let v = p.candidates { pairs.append(("candidates", .int(Int64(v)))) }
            if let v = p.samples { pairs.append(("samples", .int(Int64(v)))) }
            if let v = p.check { pairs.append(("check", .bool(v))) }
            if let v = p.seed { pairs.append(("seed", v <= UInt64(Int64.max) ? .int(Int64(v)) : .uint(v))) }
            if let v = p.deadlineMilliseconds { pairs.append(("deadline_ms", .double(v))) }
            if let v = p.stream { pairs.append(("stream", .string(v))) }
        }
        return .stringMap(pairs)
    }

    /// The request as one MessagePack frame.
    public func encode() -> [UInt8] { MessagePack.encode(messagePackValue) }

    /// Decodes a request frame.
    ///
    /// Frames longer than `maxBytes` are `too_large` (checked before any parsing); bytes that are
    /// not one MessagePack map are `bad_request`. Unknown keys are ignored; a known key twice is
    /// `bad_request`. `obs` is read straight into floats, its size checked against `limits` and the
    /// bytes present before anything is allocated (`RequestDecoder`). Errors carry the request's
    /// `id` whenever the map and its `id` could be read, wherever `id` stands in the map.
    public static func decode(
        _ frame: [UInt8], maxBytes: Int = .max, limits: ObservationLimits = .unbounded
    ) throws(ProtocolError) -> Request {
        guard frame.count <= maxBytes else {
            throw ProtocolError(.tooLarge, "message of \(frame.count) bytes exceeds the limit of \(maxBytes) bytes")
        }
        let result: Result<Request, ProtocolError> = frame.withUnsafeBytes { raw in
            do throws(ProtocolError) {
                var decoder = RequestDecoder(raw, limits: limits)
                return .success(try decoder.decode())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Decodes a request frame held elsewhere (e.g. in a ZeroMQ message), without copying it.
    public static func decode(bytes: UnsafeRawBufferPointer, limits: ObservationLimits = .unbounded) throws(ProtocolError) -> Request {
        var decoder = RequestDecoder(bytes, limits: limits)
        return try decoder.decode()
    }

    /// Decodes a request from an already decoded MessagePack value (same rules as the frame decoder,
    /// which it runs on the value's encoding).
    public static func decode(_ value: MessagePackValue) throws(ProtocolError) -> Request {
        try decode(MessagePack.encode(value))
    }
}
