import FlowgateCore

/// A description of a model for people and tools: the manifest plus per-network sizes.
/// `flowgate inspect` prints it as a table or, with `--json`, encodes it.
public struct ModelSummary: Codable, Sendable {
    /// One MLP of a network.
    public struct MLP: Codable, Sendable {
        /// The MLP's key (its tensor-name prefix).
        public var name: String
        /// Layer widths: input, hidden layers, output.
        public var dims: [Int]
        /// Hidden activation.
        public var activation: Activation
        /// Output activation.
        public var outputActivation: Activation
        /// Whether hidden layers have LayerNorm.
        public var layerNorm: Bool
        /// Trainable scalars.
        public var parameterCount: Int
    }

    /// One network (one file).
    public struct Network: Codable, Sendable {
        /// The network's role name (key in the manifest).
        public var name: String
        /// Its file name.
        public var file: String
        /// Its kind.
        public var kind: String
        /// Its MLPs, sorted by name.
        public var mlps: [MLP]
        /// Number of tensors in the file.
        public var tensorCount: Int
        /// Number of fixed (non-trainable) tensors.
        public var fixedTensorCount: Int
        /// Trainable scalars (all MLPs).
        public var parameterCount: Int
        /// Scalars in fixed (non-trainable) tensors.
        public var fixedScalarCount: Int
        /// Size of the file on disk when known, else the size of its F32 data.
        public var byteSize: Int
    }

    /// The full manifest.
    public var manifest: Manifest
    /// Networks sorted by name.
    public var networks: [Network]
    /// Trainable scalars over all networks.
    public var totalParameterCount: Int
    /// Bytes over all networks.
    public var totalByteSize: Int
    /// Files in the model: one per network plus the manifest.
    public var fileCount: Int
}

extension ModelFiles {
    /// Summarises the model: per network its MLPs, parameter count and byte size.
    public func summary() -> ModelSummary {
        let networks = manifest.networks.keys.sorted().map { role -> ModelSummary.Network in
            let spec = manifest.networks[role]!
            let mlps = spec.mlps.keys.sorted().map { key -> ModelSummary.MLP in
                let mlp = spec.mlps[key]!
                return ModelSummary.MLP(
                    name: key, dims: mlp.dims, activation: mlp.activation, outputActivation: mlp.outputActivation,
                    layerNorm: mlp.layerNorm, parameterCount: mlp.parameterCount)
            }
            let scalars = spec.parameterCount + spec.fixedScalarCount
            return ModelSummary.Network(
                name: role, file: spec.file, kind: spec.kind, mlps: mlps, tensorCount: spec.expectedTensors.count,
                fixedTensorCount: spec.fixedTensors.count,
                parameterCount: spec.parameterCount, fixedScalarCount: spec.fixedScalarCount,
                byteSize: fileSizes[role] ?? scalars * 4)
        }
        return ModelSummary(
            manifest: manifest, networks: networks,
            totalParameterCount: networks.reduce(0) { $0 + $1.parameterCount },
            totalByteSize: networks.reduce(0) { $0 + $1.byteSize }, fileCount: networks.count + 1)
    }
}
