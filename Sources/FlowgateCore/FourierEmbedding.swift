import RealModule

/// Gaussian Fourier features of a scalar time `t ∈ [0, 1]` (CEP/QGPO):
/// `emb(t) = [sin(2π t W), cos(2π t W)]` with fixed `W ~ N(0, scale²)`.
///
/// The frequencies are not trained; they are stored in the model file (as a fixed tensor) so the
/// server computes exactly what the trainer did. The trainable projection that follows is an
/// ordinary `MLP` owned by the network that uses the embedding.
public struct FourierTimeEmbedding: Sendable {
    /// Frequencies (`features` of them); the embedding has `2 · features` outputs.
    public let frequencies: [Float]

    public init(frequencies: [Float]) { self.frequencies = frequencies }

    /// Draws `features` frequencies from N(0, scale²) (CEP uses 16 and 30).
    public init(features: Int = 16, scale: Float = 30, rng: inout RNG) {
        var w = [Float](repeating: 0, count: features)
        rng.fillNormal(&w, std: scale)
        self.frequencies = w
    }

    /// Output width.
    public var outputDim: Int { 2 * frequencies.count }

    /// Writes the `batch × outputDim` embedding of `times` into `output`. A row whose time equals
    /// the previous row's copies that row: a sampler's rows all share the step's time, so its
    /// sines and cosines are computed once per step, not once per row (same bits).
    public func embed(_ times: UnsafePointer<Float>, batch: Int, into output: UnsafeMutablePointer<Float>) {
        let f = frequencies.count
        frequencies.withUnsafeBufferPointer { w in
            for r in 0..<batch {
                let row = output + r * 2 * f
                if r > 0 && times[r].bitPattern == times[r - 1].bitPattern {
                    row.update(from: row - 2 * f, count: 2 * f)
                    continue
                }
                let base = 2 * Float.pi * times[r]
                for j in 0..<f {
                    let a = base * w[j]
                    row[j] = Float.sin(a)
                    row[f + j] = Float.cos(a)
                }
            }
        }
    }
}
