#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// Writes the `batch × outputDim` embedding of `times` into `output`.
    public func embed(_ times: UnsafePointer<Float>, batch: Int, into output: UnsafeMutablePointer<Float>) {
        let f = frequencies.count
        frequencies.withUnsafeBufferPointer { w in
            for r in 0..<batch {
                let base = 2 * Float.pi * times[r]
                let row = output + r * 2 * f
                for j in 0..<f {
                    let a = base * w[j]
                    row[j] = sinf(a)
                    row[f + j] = cosf(a)
                }
            }
        }
    }
}

/// Column-wise concatenation and splitting of row-major matrices with the same number of rows.
public enum Columns {
    /// `out[r] = [parts[0][r], parts[1][r], …]`; each part is `(pointer, width)`.
    public static func concat(
        _ parts: [(UnsafePointer<Float>, Int)], rows: Int, into out: UnsafeMutablePointer<Float>
    ) {
        let total = parts.reduce(0) { $0 + $1.1 }
        for r in 0..<rows {
            var offset = r * total
            for (p, w) in parts {
                (out + offset).update(from: p + r * w, count: w)
                offset += w
            }
        }
    }

    /// Copies columns `[start, start + width)` of a `rows × total` matrix into `out` (`rows × width`).
    public static func slice(
        _ input: UnsafePointer<Float>, rows: Int, total: Int, start: Int, width: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows { (out + r * width).update(from: input + r * total + start, count: width) }
    }
}
