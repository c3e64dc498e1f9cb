import FlowgateCore

/// Architecture of the flow-matching policy's velocity field `v_θ(s, x_t, t)`.
public struct FlowPolicySpec: Codable, Sendable, Equatable {
    public var observationDim: Int
    public var actionDim: Int
    public var hiddenDims: [Int]
    public var activation: Activation
    public var layerNorm: Bool
    /// Gaussian Fourier features of t (CEP: 16 features, scale 30) and their trainable projection width.
    public var timeFeatures: Int
    public var timeScale: Float
    public var timeEmbeddingDim: Int

    public init(
        observationDim: Int, actionDim: Int, hiddenDims: [Int] = [256, 256, 256], activation: Activation = .silu,
        layerNorm: Bool = false, timeFeatures: Int = 16, timeScale: Float = 30, timeEmbeddingDim: Int = 32
    ) {
        self.observationDim = observationDim
        self.actionDim = actionDim
        self.hiddenDims = hiddenDims
        self.activation = activation
        self.layerNorm = layerNorm
        self.timeFeatures = timeFeatures
        self.timeScale = timeScale
        self.timeEmbeddingDim = timeEmbeddingDim
    }

    /// The time projection `Linear(2·features → embedding) → SiLU`, stored under prefix "time".
    public var timeMLP: MLPSpec {
        MLPSpec(inputDim: 2 * timeFeatures, hiddenDims: [], outputDim: timeEmbeddingDim, activation: .silu, outputActivation: .silu)
    }

    /// The velocity MLP over `concat(s, x_t, time_embedding)`, stored under prefix "velocity".
    public var velocityMLP: MLPSpec {
        MLPSpec(
            inputDim: observationDim + actionDim + timeEmbeddingDim, hiddenDims: hiddenDims, outputDim: actionDim,
            activation: activation, layerNorm: layerNorm)
    }

    /// Name of the fixed Fourier-frequency tensor.
    public static let frequencyTensor = "time.frequencies"
}

/// The flow policy network (rectified/OT path): `x_t = (1 − t)·x0 + t·a`, target velocity `a − x0`.
///
/// Observations are normalised and actions scaled to [-1, 1] by the caller (`PolicyBundle`).
/// The same object is used by the trainer (forward + backward) and, through `replica()`, by each
/// server worker for sampling.
public final class FlowPolicy {
    public let spec: FlowPolicySpec
    public let embedding: FourierTimeEmbedding
    public let timeNet: MLP
    public let velocityNet: MLP
    // Workspaces.
    private let fourier = FloatBuffer()
    private let input = FloatBuffer()
    private let dTime = FloatBuffer()
    private var lastBatch = 0

    public init(spec: FlowPolicySpec, rng: inout RNG) {
        self.spec = spec
        embedding = FourierTimeEmbedding(features: spec.timeFeatures, scale: spec.timeScale, rng: &rng)
        timeNet = MLP(spec: spec.timeMLP, prefix: "time", rng: &rng)
        velocityNet = MLP(spec: spec.velocityMLP, prefix: "velocity", rng: &rng)
    }

    /// Builds the policy from named tensors (a loaded `policy.safetensors`); `forwardOnly`: for
    /// sampling only (`MLP.forwardOnly`: smaller workspaces, no training).
    public init(spec: FlowPolicySpec, tensors: [String: Tensor], forwardOnly: Bool = false) throws {
        self.spec = spec
        guard let w = tensors[FlowPolicySpec.frequencyTensor] else { throw ParameterLoadError.missing(FlowPolicySpec.frequencyTensor) }
        guard w.shape == [spec.timeFeatures] else {
            throw ParameterLoadError.shape(FlowPolicySpec.frequencyTensor, expected: [spec.timeFeatures], found: w.shape)
        }
        embedding = FourierTimeEmbedding(frequencies: w.scalars)
        timeNet = try MLP(spec: spec.timeMLP, prefix: "time", tensors: tensors, forwardOnly: forwardOnly)
        velocityNet = try MLP(spec: spec.velocityMLP, prefix: "velocity", tensors: tensors, forwardOnly: forwardOnly)
    }

    private init(sharing other: FlowPolicy, forwardOnly: Bool) {
        spec = other.spec
        embedding = other.embedding
        timeNet = other.timeNet.replica(forwardOnly: forwardOnly)
        velocityNet = other.velocityNet.replica(forwardOnly: forwardOnly)
    }

    /// Shares weights, owns workspaces (one per thread); `forwardOnly`: for sampling only.
    public func replica(forwardOnly: Bool = false) -> FlowPolicy { FlowPolicy(sharing: self, forwardOnly: forwardOnly) }

    /// Trainable parameters.
    public var parameters: [Parameter] { timeNet.parameters + velocityNet.parameters }

    /// Every tensor to save (parameters and the fixed frequencies).
    public func namedTensors() -> [String: Tensor] {
        var t = parameters.namedTensors()
        t[FlowPolicySpec.frequencyTensor] = Tensor(shape: [spec.timeFeatures], scalars: embedding.frequencies)
        return t
    }

    /// Draws flow-matching training pairs on the OT path for `rows` actions: `x0 ~ N(0, I)`,
    /// `t ~ U[0, 1]`, `x_t = (1 − t)·x0 + t·a` and the target velocity `a − x0`. The one definition
    /// of the path, used by behaviour cloning and QIPO alike.
    public static func drawPathPoints(
        actions: UnsafePointer<Float>, rows: Int, actionDim actDim: Int, rng: inout RNG,
        x0: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Float>, xt: UnsafeMutablePointer<Float>,
        target: UnsafeMutablePointer<Float>
    ) {
        rng.fillNormal(UnsafeMutableBufferPointer(start: x0, count: rows * actDim))
        for r in 0..<rows {
            let tr = rng.uniform()
            t[r] = tr
            for j in 0..<actDim {
                let i = r * actDim + j
                xt[i] = (1 - tr) * x0[i] + tr * actions[i]
                target[i] = actions[i] - x0[i]
            }
        }
    }

    /// `v_θ(s, x, t)` for `batch` rows: `obs` is batch×obsDim, `x` batch×actDim, `t` batch.
    /// Returns batch×actDim, valid until the next call.
    @discardableResult
    public func velocity(
        obs: UnsafePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Float>, batch: Int
    ) -> UnsafeMutablePointer<Float> {
        lastBatch = batch
        let obsDim = spec.observationDim, actDim = spec.actionDim, timeDim = spec.timeEmbeddingDim
        fourier.reserve(batch * embedding.outputDim)
        embedding.embed(t, batch: batch, into: fourier.pointer)
        let temb = timeNet.forward(fourier.pointer, batch: batch)
        let width = obsDim + actDim + timeDim
        input.reserve(batch * width)
        Columns.concat([(obs, obsDim), (x, actDim), (UnsafePointer(temb), timeDim)], rows: batch, into: input.pointer)
        return velocityNet.forward(input.pointer, batch: batch)
    }

    /// Backpropagates `∂loss/∂v` (batch×actDim) from the last `velocity` call into the parameters.
    public func backward(_ gradVelocity: UnsafePointer<Float>) {
        let obsDim = spec.observationDim, actDim = spec.actionDim, timeDim = spec.timeEmbeddingDim
        let gIn = velocityNet.backward(gradVelocity, computeInputGradient: true)!
        dTime.reserve(lastBatch * timeDim)
        Columns.slice(gIn, rows: lastBatch, total: obsDim + actDim + timeDim, start: obsDim + actDim, width: timeDim, into: dTime.pointer)
        timeNet.backward(dTime.pointer, computeInputGradient: false)
    }
}
