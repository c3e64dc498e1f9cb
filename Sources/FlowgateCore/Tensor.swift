/// A dense row-major Float32 tensor with value semantics.
///
/// `Tensor` is the exchange type between model files, the trainer and the server. Hot loops do not
/// build tensors per call: layers keep preallocated workspaces and work on raw buffers.
public struct Tensor: Sendable, Equatable {
    /// Dimensions, outermost first. A scalar has shape `[]`.
    public var shape: [Int]
    /// Elements in row-major (C) order; `scalars.count == shape.reduce(1, *)`.
    public var scalars: [Float]

    /// Creates a tensor from its shape and row-major elements.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(
            scalars.count == Tensor.elementCount(shape),
            "tensor of shape \(shape) needs \(Tensor.elementCount(shape)) scalars, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    /// Creates a tensor of the given shape filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        self.init(shape: shape, scalars: [Float](repeating: value, count: Tensor.elementCount(shape)))
    }

    /// Number of elements.
    public var count: Int { scalars.count }
    /// Rows of a 2-D tensor (the first dimension).
    public var rows: Int { shape.first ?? 1 }
    /// Columns of a 2-D tensor (the product of all but the first dimension).
    public var columns: Int { shape.count <= 1 ? 1 : shape.dropFirst().reduce(1, *) }

    /// Number of elements a tensor of `shape` holds.
    public static func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// True when every element is finite (no NaN or infinity).
    public var isFinite: Bool { scalars.allSatisfy { $0.isFinite } }

    /// Element access for 2-D tensors.
    public subscript(row: Int, column: Int) -> Float {
        get { scalars[row * columns + column] }
        set { scalars[row * columns + column] = newValue }
    }
}
