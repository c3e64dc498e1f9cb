import FlowgateCore

/// Central finite differences of a scalar function of a flat parameter vector, compared with an
/// analytic gradient by the relative error of the whole vector:
/// `||g_analytic − g_numeric|| / max(||g_analytic|| + ||g_numeric||, tiny)`.
/// Shared by every test target that checks gradients.
public func relativeGradientError(
    values: inout [Float], analytic: [Float], epsilon: Float = 1e-2, loss: (_ values: [Float]) -> Double
) -> Double {
    precondition(values.count == analytic.count)
    var diff: Double = 0, na: Double = 0, nn: Double = 0
    for i in 0..<values.count {
        let keep = values[i]
        values[i] = keep + epsilon
        let up = loss(values)
        values[i] = keep - epsilon
        let down = loss(values)
        values[i] = keep
        let numeric = (up - down) / Double(2 * epsilon)
        diff += (numeric - Double(analytic[i])) * (numeric - Double(analytic[i]))
        na += Double(analytic[i]) * Double(analytic[i])
        nn += numeric * numeric
    }
    return diff.squareRoot() / max(na.squareRoot() + nn.squareRoot(), 1e-12)
}

/// Random N(0, std²) values from a seeded generator.
public func randomArray(_ count: Int, seed: UInt64, std: Float = 1) -> [Float] {
    var rng = RNG(seed: seed)
    var a = [Float](repeating: 0, count: count)
    rng.fillNormal(&a, std: std)
    return a
}

/// Σ a·b in Double, the linear functional that turns a network output into a scalar loss.
public func dot(_ a: [Float], _ b: [Float]) -> Double {
    var s: Double = 0
    for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
    return s
}
