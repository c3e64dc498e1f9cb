import FlowgateCore
import FlowgateModelFormat

/// Manifest ⇄ algorithm specs. The manifest describes networks generically (MLPs by prefix, fixed
/// tensors); these conversions are the only place that knows how each algorithm lays them out.
extension FlowPolicySpec {
    /// Network role of the policy in a model directory.
    public static let role = "policy"

    /// The manifest entry for this policy.
    public var networkSpec: NetworkSpec {
        NetworkSpec(
            file: "policy.safetensors", kind: "flow-velocity", mlps: ["time": timeMLP, "velocity": velocityMLP],
            fixedTensors: [FlowPolicySpec.frequencyTensor: [timeFeatures]], options: ["timeScale": Double(timeScale)])
    }

    /// Rebuilds the spec from a manifest entry.
    public init(network n: NetworkSpec, observationDim: Int, actionDim: Int) throws {
        guard n.kind == "flow-velocity" else { throw ModelFileError(path: n.file, .invalidManifest("network kind '\(n.kind)' is not a flow policy")) }
        guard let v = n.mlps["velocity"], let t = n.mlps["time"], let w = n.fixedTensors[FlowPolicySpec.frequencyTensor], w.count == 1 else {
            throw ModelFileError(path: n.file, .invalidManifest("flow policy needs MLPs 'velocity' and 'time' and fixed tensor '\(FlowPolicySpec.frequencyTensor)'"))
        }
        guard v.inputDim == observationDim + actionDim + t.outputDim, v.outputDim == actionDim, t.inputDim == 2 * w[0] else {
            throw ModelFileError(
                path: Manifest.fileName,
                .invalidManifest("network '\(FlowPolicySpec.role)' (\(n.file)): velocity MLP \(v.inputDim) → \(v.outputDim) does not fit observationDim \(observationDim) + actionDim \(actionDim) + time embedding \(t.outputDim) → actionDim"))
        }
        self.init(
            observationDim: observationDim, actionDim: actionDim, hiddenDims: v.hiddenDims, activation: v.activation,
            layerNorm: v.layerNorm, timeFeatures: w[0], timeScale: Float(n.options?["timeScale"] ?? 30), timeEmbeddingDim: t.outputDim)
    }
}

extension CriticSpec {
    /// Network role of the critic in a model directory.
    public static let role = "critic"

    public var networkSpec: NetworkSpec {
        NetworkSpec(file: "critic.safetensors", kind: "twin-critic", mlps: ["q1": mlp, "q2": mlp])
    }

    public init(network n: NetworkSpec, observationDim: Int, actionDim: Int) throws {
        guard n.kind == "twin-critic" else { throw ModelFileError(path: n.file, .invalidManifest("network kind '\(n.kind)' is not a twin critic")) }
        guard let q = n.mlps["q1"], n.mlps["q2"] == q else {
            throw ModelFileError(path: n.file, .invalidManifest("twin critic needs two MLPs 'q1' and 'q2' of the same shape"))
        }
        guard q.inputDim == observationDim + actionDim, q.outputDim == 1 else {
            throw ModelFileError(
                path: Manifest.fileName,
                .invalidManifest("network '\(CriticSpec.role)' (\(n.file)): critic input \(q.inputDim) ≠ observationDim \(observationDim) + actionDim \(actionDim)"))
        }
        self.init(observationDim: observationDim, actionDim: actionDim, hiddenDims: q.hiddenDims, activation: q.activation, layerNorm: q.layerNorm)
    }
}
