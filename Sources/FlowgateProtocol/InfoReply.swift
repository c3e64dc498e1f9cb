/// The reply to `info`.
public struct InfoReply: Sendable, Equatable {
    public var id: RequestID?
    public var protocolVersion: Int
    public var serverVersion: String
    /// Name of the model used when a request names none.
    public var defaultModel: String
    public var models: [ModelInfo]

    public init(id: RequestID?, protocolVersion: Int = flowgateProtocolVersion, serverVersion: String, defaultModel: String, models: [ModelInfo]) {
        self.id = id
        self.protocolVersion = protocolVersion
        self.serverVersion = serverVersion
        self.defaultModel = defaultModel
        self.models = models
    }

    public var messagePackValue: MessagePackValue {
        .stringMap([
            ("ok", .bool(true)),
            ("id", id?.messagePackValue ?? .nil),
            ("protocol", .int(Int64(protocolVersion))),
            ("server_version", .string(serverVersion)),
            ("default_model", .string(defaultModel)),
            ("models", .array(models.map(\.messagePackValue))),
        ])
    }

    public init(_ v: MessagePackValue) throws(ProtocolError) {
        try Reply.checkOK(v)
        var models: [ModelInfo] = []
        for m in v["models"]?.arrayValue ?? [] { models.append(try ModelInfo(m)) }
        self.init(
            id: v["id"].flatMap(RequestID.init), protocolVersion: v["protocol"]?.intValue ?? 0,
            serverVersion: v["server_version"]?.stringValue ?? "",
            defaultModel: v["default_model"]?.stringValue ?? "", models: models)
    }
}
