public import FlowgateProtocol

/// A ZeroMQ context handle shared with an in-process server (needed for `inproc://` endpoints).
/// libzmq contexts are thread-safe, so the handle may cross threads.
public struct SharedZMQContext: @unchecked Sendable {
    public let handle: UnsafeMutableRawPointer
    public init(_ handle: UnsafeMutableRawPointer) { self.handle = handle }
}

/// What a load test sends and where: the server, the `act` requests (sampling parameters, model,
/// random observations) and the connection settings. The closed-loop (`LoadTestConfiguration`) and
/// open-loop (`OpenLoopConfiguration`) tests share it and add only how the load is offered.
public struct LoadTarget: Sendable {
    /// Server endpoint (loopback tcp, ipc or inproc).
    public var endpoint: String
    /// Sampling parameters of every `act` request (e.g. `steps` K).
    public var parameters: ActParameters
    /// Length of the random observations (the model's obs_dim).
    public var observationDim: Int
    /// Model name, or nil for the server's default model.
    public var model: String? = nil
    /// Seed of the random observations (and of the open loop's arrival schedule).
    public var seed: UInt64 = 1
    /// A request with no reply this long counts as `timeout` (open loop: from its intended send time).
    public var timeoutMilliseconds: Int = 10_000
    /// The server's context, for `inproc://` endpoints.
    public var sharedContext: SharedZMQContext? = nil
    /// Keys for a CURVE server; nil for plaintext.
    public var curve: CurveClientKeys? = nil

    public init(endpoint: String, parameters: ActParameters, observationDim: Int) {
        self.endpoint = endpoint
        self.parameters = parameters
        self.observationDim = observationDim
    }
}

/// A load test's configuration: its `target`, whose fields read and set as the configuration's own
/// (`config.endpoint`, `config.model`, …).
@dynamicMemberLookup
public protocol LoadTargeting {
    var target: LoadTarget { get set }
}

extension LoadTargeting {
    public subscript<T>(dynamicMember field: WritableKeyPath<LoadTarget, T>) -> T {
        get { target[keyPath: field] }
        set { target[keyPath: field] = newValue }
    }
}
