#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Adam with optional decoupled weight decay (AdamW) and global gradient-norm clipping.
///
/// `step()` reads each parameter's accumulated `grad`, clips the global norm to `maxGradNorm`
/// (when set), updates the values and zeroes the gradients. Its state (moments and step count)
/// can be exported and restored for checkpoints, so a resumed run continues bit for bit.
public final class Adam {
    public let parameters: [Parameter]
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Decoupled weight decay (AdamW); 0 for plain Adam.
    public var weightDecay: Float
    /// Clip the global L2 norm of all gradients to this value; nil disables clipping.
    public var maxGradNorm: Float?
    /// Steps taken.
    public private(set) var stepCount: Int = 0
    /// Global gradient norm measured at the last step (before clipping).
    public private(set) var lastGradNorm: Float = 0
    private var m: [[Float]]
    private var v: [[Float]]

    public init(
        parameters: [Parameter], learningRate: Float = 3e-4, beta1: Float = 0.9, beta2: Float = 0.999,
        epsilon: Float = 1e-8, weightDecay: Float = 0, maxGradNorm: Float? = nil
    ) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.maxGradNorm = maxGradNorm
        m = parameters.map { [Float](repeating: 0, count: $0.count) }
        v = parameters.map { [Float](repeating: 0, count: $0.count) }
    }

    /// Global L2 norm of the accumulated gradients.
    public func gradientNorm() -> Float {
        var s: Double = 0
        for p in parameters { for g in p.grad { s += Double(g * g) } }
        return Float(s.squareRoot())
    }

    /// One optimisation step; gradients are zeroed afterwards.
    public func step() {
        stepCount += 1
        let norm = gradientNorm()
        lastGradNorm = norm
        var scale: Float = 1
        if let maxNorm = maxGradNorm, norm > maxNorm, norm.isFinite { scale = maxNorm / (norm + 1e-6) }
        let t = Float(stepCount)
        let bc1 = 1 - powf(beta1, t)
        let bc2 = 1 - powf(beta2, t)
        let lr = learningRate, b1 = beta1, b2 = beta2, eps = epsilon, wd = weightDecay
        for (k, p) in parameters.enumerated() {
            m[k].withUnsafeMutableBufferPointer { mk in
                v[k].withUnsafeMutableBufferPointer { vk in
                    p.grad.withUnsafeMutableBufferPointer { g in
                        p.value.withUnsafeMutableBufferPointer { x in
                            for i in 0..<x.count {
                                let gi = g[i] * scale
                                mk[i] = b1 * mk[i] + (1 - b1) * gi
                                vk[i] = b2 * vk[i] + (1 - b2) * gi * gi
                                let mh = mk[i] / bc1
                                let vh = vk[i] / bc2
                                if wd != 0 { x[i] -= lr * wd * x[i] }
                                x[i] -= lr * mh / (vh.squareRoot() + eps)
                                g[i] = 0
                            }
                        }
                    }
                }
            }
        }
    }

    /// Optimiser state as named tensors (`<prefix>.m.<param>`, `<prefix>.v.<param>`, `<prefix>.step`).
    public func stateTensors(prefix: String) -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (k, p) in parameters.enumerated() {
            d["\(prefix).m.\(p.name)"] = Tensor(shape: p.shape, scalars: m[k])
            d["\(prefix).v.\(p.name)"] = Tensor(shape: p.shape, scalars: v[k])
        }
        // The step count is stored exactly as two 24-bit halves (Float holds integers up to 2^24).
        d["\(prefix).step"] = Tensor(shape: [2], scalars: [Float(stepCount & 0xFFFFFF), Float(stepCount >> 24)])
        return d
    }

    /// Restores state saved by `stateTensors(prefix:)`.
    public func loadState(_ tensors: [String: Tensor], prefix: String) throws {
        for (k, p) in parameters.enumerated() {
            guard let mt = tensors["\(prefix).m.\(p.name)"], let vt = tensors["\(prefix).v.\(p.name)"] else {
                throw ParameterLoadError.missing("\(prefix).m/v.\(p.name)")
            }
            guard mt.shape == p.shape, vt.shape == p.shape else {
                throw ParameterLoadError.shape("\(prefix).m.\(p.name)", expected: p.shape, found: mt.shape)
            }
            m[k] = mt.scalars
            v[k] = vt.scalars
        }
        guard let s = tensors["\(prefix).step"], s.count == 2 else { throw ParameterLoadError.missing("\(prefix).step") }
        stepCount = Int(s.scalars[0]) | (Int(s.scalars[1]) << 24)
    }
}
