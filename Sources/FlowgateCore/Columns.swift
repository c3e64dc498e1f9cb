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
