/// Elementwise activation functions used by the networks.
public enum Activation: String, Codable, Sendable, CaseIterable {
    case relu, silu, tanh, identity
}

/// The architecture of a multilayer perceptron, as stored in a model manifest.
///
/// Layer `i` is `Linear(dims[i] -> dims[i+1])` where `dims = [inputDim] + hiddenDims + [outputDim]`.
/// Every hidden layer is followed by an optional LayerNorm and then `activation`; the last layer is
/// followed by `outputActivation`.
///
/// Tensor names inside a safetensors file, for an MLP stored under `prefix`:
/// - `"\(prefix).\(i).weight"`, shape `[out, in]` (PyTorch layout, `y = x Wᵀ + b`)
/// - `"\(prefix).\(i).bias"`, shape `[out]`
/// - `"\(prefix).ln\(i).weight"` and `"\(prefix).ln\(i).bias"`, shape `[out]`, when `layerNorm` is on
///   (hidden layers only).
public struct MLPSpec: Codable, Sendable, Equatable {
    public var inputDim: Int
    public var hiddenDims: [Int]
    public var outputDim: Int
    public var activation: Activation
    public var layerNorm: Bool
    public var outputActivation: Activation

    public init(
        inputDim: Int, hiddenDims: [Int], outputDim: Int, activation: Activation = .relu,
        layerNorm: Bool = false, outputActivation: Activation = .identity
    ) {
        self.inputDim = inputDim
        self.hiddenDims = hiddenDims
        self.outputDim = outputDim
        self.activation = activation
        self.layerNorm = layerNorm
        self.outputActivation = outputActivation
    }

    /// Widths of every layer boundary: input, hidden layers, output.
    public var dims: [Int] { [inputDim] + hiddenDims + [outputDim] }

    /// Names and shapes of the tensors this MLP stores under `prefix`, in a stable order.
    public func tensorShapes(prefix: String) -> [(name: String, shape: [Int])] {
        var result: [(name: String, shape: [Int])] = []
        let d = dims
        for i in 0..<(d.count - 1) {
            result.append(("\(prefix).\(i).weight", [d[i + 1], d[i]]))
            result.append(("\(prefix).\(i).bias", [d[i + 1]]))
            if layerNorm && i < d.count - 2 {
                result.append(("\(prefix).ln\(i).weight", [d[i + 1]]))
                result.append(("\(prefix).ln\(i).bias", [d[i + 1]]))
            }
        }
        return result
    }

    /// Number of trainable scalars.
    public var parameterCount: Int {
        tensorShapes(prefix: "").reduce(0) { $0 + Tensor.elementCount($1.shape) }
    }
}
