import FlowgateCore

/// ETM's gradient-norm penalty `P = mean_i max(0, ||∇_x E(s_i, a_i, x_i)|| − margin)²` and its
/// parameter gradient, accumulated into the energy network's `grad`s.
///
/// `∇_θ P` needs a Hessian-vector product: for an active row, `∇_θ max(0, n − m)² = 2 (n − m) ∇_θ n`
/// and `∇_θ n = H_θx ĝ` with `ĝ = g / ||g||`, the derivative of `∇_θ E` along `ĝ` in input space. We
/// take it by central differences (the finite-difference Pearlmutter trick):
/// `H_θx ĝ ≈ (∇_θ E(x + εĝ) − ∇_θ E(x − εĝ)) / (2ε)`, i.e. one extra forward/backward over the active
/// rows shifted both ways, with output gradients `±weight · 2(n − m) / (rows · 2ε)`. The test suite
/// checks this against finite differences of `P` itself.
///
/// Thread confinement: one instance per energy network and thread (owns workspaces).
public final class EnergyGradientPenalty {
    public var margin: Float
    public var epsilon: Float
    private let shifted = FloatBuffer()
    private let outGrad = FloatBuffer()
    private let norms = FloatBuffer()
    private let inputGrads = FloatBuffer()
    private var active: [Int] = []

    public init(margin: Float = 5, epsilon: Float = 1e-2) {
        self.margin = margin
        self.epsilon = epsilon
    }

    /// Measures the penalty at `inputs` (`rows × energy.inputDim`; the last `xWidth` columns are the
    /// next-state coordinates the gradient is taken over) and, when `weight > 0`, adds
    /// `weight · ∇_θ P` into the energy parameters' gradients. Runs its own forward passes: call it
    /// before or after (not between) the forward and backward of the main loss.
    ///
    /// - Returns: the penalty `P` (unweighted) and the mean gradient norm over rows.
    @discardableResult
    public func accumulate(
        energy: MLP, inputs: UnsafePointer<Float>, rows: Int, xWidth: Int, weight: Float
    ) -> (penalty: Float, meanNorm: Float) {
        let w = energy.inputDim, off = w - xWidth
        _ = energy.forward(inputs, batch: rows)
        outGrad.reserve(2 * rows)
        for r in 0..<rows { outGrad.pointer[r] = 1 }
        let gIn = energy.backward(outGrad.pointer, accumulateParameterGradients: false, computeInputGradient: true)!
        inputGrads.reserve(rows * xWidth)
        Columns.slice(gIn, rows: rows, total: w, start: off, width: xWidth, into: inputGrads.pointer)
        norms.reserve(rows)
        active.removeAll(keepingCapacity: true)
        var penalty: Double = 0, normSum: Double = 0
        for r in 0..<rows {
            let g = inputGrads.pointer + r * xWidth
            var s: Float = 0
            for j in 0..<xWidth { s += g[j] * g[j] }
            let n = s.squareRoot()
            norms.pointer[r] = n
            normSum += Double(n)
            if n > margin {
                penalty += Double((n - margin) * (n - margin))
                active.append(r)
            }
        }
        let p = Float(penalty / Double(rows))
        let meanNorm = Float(normSum / Double(rows))
        guard weight > 0, !active.isEmpty else { return (p, meanNorm) }
        // Rows x ± εĝ for the active rows: plus block first, then minus block.
        let m = active.count
        shifted.reserve(2 * m * w)
        let eps = epsilon
        for (k, r) in active.enumerated() {
            let src = inputs + r * w
            let plus = shifted.pointer + k * w, minus = shifted.pointer + (m + k) * w
            plus.update(from: src, count: w)
            minus.update(from: src, count: w)
            let g = inputGrads.pointer + r * xWidth
            let inv = 1 / norms.pointer[r]
            for j in 0..<xWidth {
                plus[off + j] += eps * g[j] * inv
                minus[off + j] -= eps * g[j] * inv
            }
            let coefficient = weight * 2 * (norms.pointer[r] - margin) / Float(rows) / (2 * eps)
            outGrad.pointer[k] = coefficient
            outGrad.pointer[m + k] = -coefficient
        }
        _ = energy.forward(shifted.pointer, batch: 2 * m)
        energy.backward(outGrad.pointer, accumulateParameterGradients: true, computeInputGradient: false)
        return (p, meanNorm)
    }
}
