import FlowgateCore

/// Per-dimension observation z-scoring, `(obs − mean) / std`, fitted on a training set.
///
/// The energy model works in these coordinates; the server must apply the same statistics before
/// calling `EnergySampler`. (If the shared policy normaliser lands in FlowgateTraining, this type
/// can be replaced by it: only `mean` and `std` are used.)
public struct ObservationNormalization: Codable, Sendable, Equatable {
    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count)
        self.mean = mean
        self.std = std
    }

    /// Fits mean and standard deviation (floored at `minStd`) over the observations of `dataset`.
    public init(fitting dataset: OfflineDataset, minStd: Float = 1e-3) {
        let d = dataset.observationDim, n = dataset.count
        var m = [Double](repeating: 0, count: d), v = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { m[j] += Double(dataset.observations[i * d + j]) } }
        for j in 0..<d { m[j] /= Double(max(n, 1)) }
        for i in 0..<n {
            for j in 0..<d { let x = Double(dataset.observations[i * d + j]) - m[j]; v[j] += x * x }
        }
        mean = m.map { Float($0) }
        std = v.map { max(Float(($0 / Double(max(n - 1, 1))).squareRoot()), minStd) }
    }

    /// Normalised copy of a `rows × dim` matrix.
    public func apply(_ x: [Float]) -> [Float] {
        let d = mean.count
        var out = x
        for i in 0..<out.count { let j = i % d; out[i] = (out[i] - mean[j]) / std[j] }
        return out
    }

    /// Inverse of `apply`.
    public func invert(_ z: [Float]) -> [Float] {
        let d = mean.count
        var out = z
        for i in 0..<out.count { let j = i % d; out[i] = out[i] * std[j] + mean[j] }
        return out
    }
}
