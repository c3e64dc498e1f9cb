/// The reply to `health`.
public struct HealthReply: Sendable, Equatable {
    public var id: RequestID?
    /// Always true in a reply (the server answered).
    public var ok: Bool
    /// True once models are loaded and the server accepts `act`; false while draining.
    public var ready: Bool
    public var uptimeSeconds: Double

    public init(id: RequestID?, ok: Bool = true, ready: Bool, uptimeSeconds: Double) {
        self.id = id
        self.ok = ok
        self.ready = ready
        self.uptimeSeconds = uptimeSeconds
    }

    public var messagePackValue: MessagePackValue {
        .map([
            "ok": .bool(ok), "id": id?.messagePackValue ?? .nil, "ready": .bool(ready),
            "uptime_s": .double(uptimeSeconds),
        ])
    }

    public init(_ v: MessagePackValue) throws(ProtocolError) {
        try Reply.checkOK(v)
        self.init(
            id: v["id"].flatMap(RequestID.init), ok: true, ready: v["ready"]?.boolValue ?? false,
            uptimeSeconds: v["uptime_s"]?.doubleValue ?? 0)
    }
}
