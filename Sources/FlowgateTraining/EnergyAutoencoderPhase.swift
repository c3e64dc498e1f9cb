import FlowgateAlgorithms
import FlowgateCore

/// Phase 1 of energy training: the autoencoder `x → z → x̂` learns the manifold of next states by
/// L2 reconstruction (`mean((x̂ − x)²)`), with `z` projected on the unit sphere when the spec asks.
public final class EnergyAutoencoderPhase: TrainingPhase {
    public let name = "energy-autoencoder"
    public let totalSteps: Int
    public private(set) var completedSteps = 0
    let model: EnergyTransitionModel
    let manifold: [Float]
    let batchSize: Int
    let optimizer: Adam
    var rng: RNG
    private let xBatch = FloatBuffer()
    private let zBuf = FloatBuffer()
    private let uNorm = FloatBuffer()
    private let grad = FloatBuffer()

    init(model: EnergyTransitionModel, manifold: [Float], config: EnergyTrainingConfig, rng: RNG) {
        self.model = model
        self.manifold = manifold
        self.totalSteps = config.autoencoderSteps
        self.batchSize = config.autoencoderBatch
        self.rng = rng
        optimizer = Adam(parameters: model.autoencoderParameters, learningRate: config.autoencoderLearningRate)
    }

    public func step() throws -> [String: Double] {
        let spec = model.spec
        let d = spec.obsDim, l = spec.latentDim, b = batchSize
        let n = manifold.count / d
        xBatch.reserve(b * d)
        manifold.withUnsafeBufferPointer { m in
            for r in 0..<b { (xBatch.pointer + r * d).update(from: m.baseAddress! + rng.int(below: n) * d, count: d) }
        }
        let u = model.encoder.forward(xBatch.pointer, batch: b)
        zBuf.reserve(b * l)
        uNorm.reserve(b)
        let z = zBuf.pointer
        z.update(from: u, count: b * l)
        if spec.sphericalLatent {
            for r in 0..<b {
                var s: Float = 0
                for j in 0..<l { s += z[r * l + j] * z[r * l + j] }
                let nrm = max(s.squareRoot(), 1e-12)
                uNorm.pointer[r] = nrm
                for j in 0..<l { z[r * l + j] /= nrm }
            }
        }
        let xHat = model.decoder.forward(z, batch: b)
        grad.reserve(b * d)
        let loss = Loss.mse(xHat, xBatch.pointer, count: b * d, grad: grad.pointer)
        let gz = model.decoder.backward(grad.pointer, accumulateParameterGradients: true, computeInputGradient: true)!
        if spec.sphericalLatent {
            // Through z = u / ||u||: du = (dz − z (z·dz)) / ||u||.
            for r in 0..<b {
                var dot: Float = 0
                for j in 0..<l { dot += z[r * l + j] * gz[r * l + j] }
                for j in 0..<l { gz[r * l + j] = (gz[r * l + j] - z[r * l + j] * dot) / uNorm.pointer[r] }
            }
        }
        model.encoder.backward(gz, accumulateParameterGradients: true, computeInputGradient: false)
        optimizer.step()
        completedSteps += 1
        return ["reconstruction": Double(loss), "grad_norm": Double(optimizer.lastGradNorm)]
    }

    public func stateTensors() -> [String: Tensor] {
        var t = model.autoencoderParameters.namedTensors()
        t.merge(optimizer.stateTensors(prefix: "adam_ae")) { a, _ in a }
        t["rng_ae"] = rng.tensor()
        t["step_ae"] = stepTensor(completedSteps)
        return t
    }

    public func loadState(_ tensors: [String: Tensor]) throws {
        try model.autoencoderParameters.load(from: tensors)
        try optimizer.loadState(tensors, prefix: "adam_ae")
        guard let r = tensors["rng_ae"] else { throw ParameterLoadError.missing("rng_ae") }
        rng = try RNG(tensor: r)
        completedSteps = try stepValue(tensors["step_ae"], name: "step_ae")
    }
}
