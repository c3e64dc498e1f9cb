/// Scales `v[0..<n]` to unit L2 norm (leaves an all-zero vector alone): the projection onto the
/// sphere of the energy model's spherical latents, in training and in the serving-side sampler.
@inlinable @inline(__always)
public func normalise(_ v: UnsafeMutablePointer<Float>, _ n: Int) {
    var s: Float = 0
    for j in 0..<n { s += v[j] * v[j] }
    guard s > 0 else { return }
    let inv = 1 / s.squareRoot()
    for j in 0..<n { v[j] *= inv }
}
