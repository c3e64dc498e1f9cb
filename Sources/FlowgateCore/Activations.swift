import RealModule

extension Activation {
    /// Applies the activation elementwise: `y[i] = f(x[i])` (x and y may alias).
    @inline(__always)
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .identity:
            if UnsafePointer(y) != x { y.update(from: x, count: count) }
        case .relu:
            for i in 0..<count { y[i] = max(x[i], 0) }
        case .silu:
            for i in 0..<count {
                let v = x[i]
                y[i] = v / (1 + Float.exp(-v))
            }
        case .tanh:
            for i in 0..<count { y[i] = Float.tanh(x[i]) }
        }
    }

    /// Backward pass: `dx[i] = dy[i] · f'(x[i])`, given the pre-activation `x` and output `y`.
    /// `dx` may alias `dy`.
    @inline(__always)
    public func backward(
        x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>, count: Int
    ) {
        switch self {
        case .identity:
            if UnsafePointer(dx) != dy { dx.update(from: dy, count: count) }
        case .relu:
            for i in 0..<count { dx[i] = x[i] > 0 ? dy[i] : 0 }
        case .silu:
            for i in 0..<count {
                let s = 1 / (1 + Float.exp(-x[i]))
                dx[i] = dy[i] * s * (1 + x[i] * (1 - s))
            }
        case .tanh:
            for i in 0..<count { dx[i] = dy[i] * (1 - y[i] * y[i]) }
        }
    }
}
