import FlowgateAlgorithms
import FlowgateCore

/// Phase 1 of energy training: the autoencoder `x → z → x̂` learns the manifold of next states by
/// L2 reconstruction (`mean((x̂ − x)²)`), with `z` projected on the unit sphere when the spec asks.
public final class EnergyAutoencoderPhase: TrainingPhase {
    public let name = "energy-autoencoder"
    public var totalSteps: Int { skeleton.totalSteps }
    public var completedSteps: Int { skeleton.completedSteps }
    let model: EnergyTransitionModel
    let manifold: [Float]
    var skeleton: PhaseSkeleton
    private let xBatch = FloatBuffer()
    private let zBuf = FloatBuffer()
    private let uNorm = FloatBuffer()
    private let grad = FloatBuffer()

    init(model: EnergyTransitionModel, manifold: [Float], config: EnergyTrainingConfig, rng: RNG) {
        self.model = model
        self.manifold = manifold
        skeleton = PhaseSkeleton(
            steps: config.autoencoderSteps,
            optimizer: Adam(parameters: model.autoencoderParameters, learningRate: config.autoencoderLearningRate),
            sampler: MinibatchSampler(rng: rng, population: manifold.count / model.spec.obsDim, batchSize: config.autoencoderBatch),
            keys: .suffixed("ae"))
    }

    public func step() throws -> [String: Double] {
        let spec = model.spec
        let d = spec.obsDim, l = spec.latentDim, b = skeleton.sampler.batchSize
        skeleton.sampler.draw()
        xBatch.reserve(b * d)
        PreparedData.gather(manifold, width: d, indices: skeleton.sampler.indices, into: xBatch.pointer)
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
        return ["reconstruction": Double(loss), "grad_norm": skeleton.finishStep()]
    }

    public func stateTensors() -> [String: Tensor] {
        skeleton.state(model.autoencoderParameters)
    }

    public func loadState(_ tensors: [String: Tensor]) throws {
        try skeleton.load(tensors, into: model.autoencoderParameters)
    }
}
