import FlowgateCore

/// One network of a model: the safetensors file it lives in and the tensors that file must hold.
///
/// The file holds, for each entry `(key, spec)` of `mlps`, the tensors of
/// `spec.tensorShapes(prefix: key)`, plus every tensor of `fixedTensors`, and nothing else.
public struct NetworkSpec: Codable, Sendable, Equatable {
    /// File name inside the model directory, e.g. `"policy.safetensors"`.
    public var file: String
    /// What the network is, e.g. `"flow-velocity"`, `"twin-critic"`, `"energy"`, `"autoencoder"`.
    public var kind: String
    /// The network's MLPs; each MLP's tensors are stored under its key as prefix.
    public var mlps: [String: MLPSpec]
    /// Non-trainable tensors (e.g. Fourier feature frequencies): name → shape.
    public var fixedTensors: [String: [Int]]
    /// Free-form numeric options for the algorithm layer (e.g. `"fourierScale": 16`).
    public var options: [String: Double]?

    /// Creates a network description.
    public init(
        file: String, kind: String, mlps: [String: MLPSpec], fixedTensors: [String: [Int]] = [:],
        options: [String: Double]? = nil
    ) {
        self.file = file
        self.kind = kind
        self.mlps = mlps
        self.fixedTensors = fixedTensors
        self.options = options
    }

    /// Decodes a network; `fixedTensors` may be omitted (no fixed tensors).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        file = try container.decode(String.self, forKey: .file)
        kind = try container.decode(String.self, forKey: .kind)
        mlps = try container.decode([String: MLPSpec].self, forKey: .mlps)
        fixedTensors = try container.decodeIfPresent([String: [Int]].self, forKey: .fixedTensors) ?? [:]
        options = try container.decodeIfPresent([String: Double].self, forKey: .options)
    }

    /// Every tensor the network's file must hold: MLP tensors (MLPs in key order, each in layer
    /// order), then fixed tensors in name order.
    public var expectedTensors: [(name: String, shape: [Int])] {
        var result: [(name: String, shape: [Int])] = []
        for key in mlps.keys.sorted() { result += mlps[key]!.tensorShapes(prefix: key) }
        for name in fixedTensors.keys.sorted() { result.append((name, fixedTensors[name]!)) }
        return result
    }

    /// Number of trainable scalars (all MLP parameters).
    public var parameterCount: Int { mlps.values.reduce(0) { $0 + $1.parameterCount } }

    /// Number of scalars in fixed (non-trainable) tensors.
    public var fixedScalarCount: Int { fixedTensors.values.reduce(0) { $0 + Tensor.elementCount($1) } }
}
