import FlowgateCore

/// Architecture of the twin Q networks `Q1, Q2` over `concat(s, a)`.
public struct CriticSpec: Codable, Sendable, Equatable {
    public var observationDim: Int
    public var actionDim: Int
    public var hiddenDims: [Int]
    public var activation: Activation
    public var layerNorm: Bool

    public init(observationDim: Int, actionDim: Int, hiddenDims: [Int] = [256, 256, 256], activation: Activation = .relu, layerNorm: Bool = false) {
        self.observationDim = observationDim
        self.actionDim = actionDim
        self.hiddenDims = hiddenDims
        self.activation = activation
        self.layerNorm = layerNorm
    }

    /// Each Q network (stored under prefixes "q1" and "q2").
    public var mlp: MLPSpec {
        MLPSpec(inputDim: observationDim + actionDim, hiddenDims: hiddenDims, outputDim: 1, activation: activation, layerNorm: layerNorm)
    }
}

/// Twin critic; `Q = min(Q1, Q2)` is what action selection and policy improvement use.
public final class TwinCritic {
    public let spec: CriticSpec
    public let q1: MLP
    public let q2: MLP
    private let input = FloatBuffer()
    private let minimum = FloatBuffer()

    public init(spec: CriticSpec, rng: inout RNG) {
        self.spec = spec
        q1 = MLP(spec: spec.mlp, prefix: "q1", rng: &rng)
        q2 = MLP(spec: spec.mlp, prefix: "q2", rng: &rng)
    }

    /// `forwardOnly`: for evaluation only (`MLP.forwardOnly`: smaller workspaces, no training).
    public init(spec: CriticSpec, tensors: [String: Tensor], forwardOnly: Bool = false) throws {
        self.spec = spec
        q1 = try MLP(spec: spec.mlp, prefix: "q1", tensors: tensors, forwardOnly: forwardOnly)
        q2 = try MLP(spec: spec.mlp, prefix: "q2", tensors: tensors, forwardOnly: forwardOnly)
    }

    private init(sharing other: TwinCritic, forwardOnly: Bool) {
        spec = other.spec
        q1 = other.q1.replica(forwardOnly: forwardOnly)
        q2 = other.q2.replica(forwardOnly: forwardOnly)
    }

    /// Shares weights, owns workspaces; `forwardOnly`: for evaluation only (`MLP.forwardOnly`).
    public func replica(forwardOnly: Bool = false) -> TwinCritic { TwinCritic(sharing: self, forwardOnly: forwardOnly) }

    /// An independent copy with its own weights (for target networks).
    public func copy() -> TwinCritic {
        try! TwinCritic(spec: spec, tensors: parameters.namedTensors())
    }

    public var parameters: [Parameter] { q1.parameters + q2.parameters }

    /// Evaluates both networks on `batch` rows; returns pointers to the two `batch` outputs, valid
    /// until the next call.
    @discardableResult
    public func evaluate(obs: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int)
        -> (q1: UnsafeMutablePointer<Float>, q2: UnsafeMutablePointer<Float>)
    {
        let obsDim = spec.observationDim, actDim = spec.actionDim
        input.reserve(batch * (obsDim + actDim))
        Columns.concat([(obs, obsDim), (actions, actDim)], rows: batch, into: input.pointer)
        let x = UnsafePointer(input.pointer)
        var a: UnsafeMutablePointer<Float>?, b: UnsafeMutablePointer<Float>?
        // Independent networks: with two compute threads, one per core (same bits as in turn).
        BLAS.concurrently({ a = self.q1.forward(x, batch: batch) }, { b = self.q2.forward(x, batch: batch) })
        return (a!, b!)
    }

    /// `min(Q1, Q2)` for `batch` rows; valid until the next call.
    @discardableResult
    public func minQ(obs: UnsafePointer<Float>, actions: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let (a, b) = evaluate(obs: obs, actions: actions, batch: batch)
        minimum.reserve(batch)
        for i in 0..<batch { minimum.pointer[i] = min(a[i], b[i]) }
        return minimum.pointer
    }

    /// Backpropagates gradients w.r.t. the two outputs of the last `evaluate` into the parameters.
    public func backward(dq1: UnsafePointer<Float>, dq2: UnsafePointer<Float>) {
        BLAS.concurrently(
            { self.q1.backward(dq1, computeInputGradient: false) }, { self.q2.backward(dq2, computeInputGradient: false) })
    }
}
