import RealModule

/// Loss functions. Each returns the loss and writes ∂loss/∂prediction into `grad`.
public enum Loss {
    /// Mean squared error over all `count` elements: `mean((p − t)²)`.
    public static func mse(
        _ prediction: UnsafePointer<Float>, _ target: UnsafePointer<Float>, count: Int,
        grad: UnsafeMutablePointer<Float>
    ) -> Float {
        var s: Double = 0
        let scale = 2 / Float(count)
        for i in 0..<count {
            let d = prediction[i] - target[i]
            s += Double(d * d)
            grad[i] = scale * d
        }
        return Float(s / Double(count))
    }

    /// Per-sample weighted squared error, summed over each row's `width` elements and averaged over
    /// `rows`: `(1/rows) · Σ_i w_i · ||p_i − t_i||²`. `weights == nil` means all ones (the flow
    /// matching loss). Weights may be any non-negative numbers (QIPO's softmax weights).
    public static func weightedSquaredError(
        _ prediction: UnsafePointer<Float>, _ target: UnsafePointer<Float>, weights: UnsafePointer<Float>?,
        rows: Int, width: Int, grad: UnsafeMutablePointer<Float>
    ) -> Float {
        var s: Double = 0
        let invRows = 1 / Float(rows)
        for r in 0..<rows {
            let w = weights?[r] ?? 1
            var rowSum: Float = 0
            for j in 0..<width {
                let i = r * width + j
                let d = prediction[i] - target[i]
                rowSum += d * d
                grad[i] = 2 * w * d * invRows
            }
            s += Double(w * rowSum)
        }
        return Float(s) * invRows
    }

    /// Numerically stable row-wise log-softmax of a `rows × columns` matrix (in → out; may alias).
    public static func logSoftmax(
        _ logits: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let x = logits + r * columns
            let y = out + r * columns
            var m = -Float.infinity
            for j in 0..<columns { m = max(m, x[j]) }
            var s: Float = 0
            for j in 0..<columns { s += Float.exp(x[j] - m) }
            let lse = m + Float.log(s)
            for j in 0..<columns { y[j] = x[j] - lse }
        }
    }

    /// Row-wise softmax (stable: subtracts each row's max first).
    public static func softmax(
        _ logits: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>
    ) {
        logSoftmax(logits, rows: rows, columns: columns, into: out)
        for i in 0..<(rows * columns) { out[i] = Float.exp(out[i]) }
    }

    /// InfoNCE / cross-entropy with the positive in column `positive` of each row:
    /// `mean_r −log softmax(logits_r)[positive]`. The gradient w.r.t. the logits is
    /// `(softmax − onehot) / rows`. For energies, pass logits = −E.
    public static func infoNCE(
        logits: UnsafePointer<Float>, rows: Int, columns: Int, positive: Int = 0,
        grad: UnsafeMutablePointer<Float>
    ) -> Float {
        logSoftmax(logits, rows: rows, columns: columns, into: grad)
        var loss: Double = 0
        let inv = 1 / Float(rows)
        for r in 0..<rows {
            let g = grad + r * columns
            loss -= Double(g[positive])
            for j in 0..<columns { g[j] = Float.exp(g[j]) * inv }
            g[positive] -= inv
        }
        return Float(loss / Double(rows))
    }
}

extension Loss {
    /// Array convenience for `mse` (allocates).
    public static func mse(_ prediction: [Float], _ target: [Float]) -> (loss: Float, grad: [Float]) {
        precondition(prediction.count == target.count)
        var g = [Float](repeating: 0, count: prediction.count)
        let l = g.withUnsafeMutableBufferPointer { gp in
            mse(prediction, target, count: prediction.count, grad: gp.baseAddress!)
        }
        return (l, g)
    }
}
