/// A trainable tensor: its value and the gradient accumulated by backward passes.
///
/// Parameters are reference types so that replicas of a network (one per server worker thread)
/// share weights while owning separate workspaces. Writes (optimiser steps, loading) must not run
/// concurrently with forward passes that read the same parameter.
public final class Parameter: @unchecked Sendable {
    /// Tensor name inside a model file, e.g. `"q1.0.weight"`.
    public let name: String
    /// Tensor shape.
    public let shape: [Int]
    /// Current values, row-major. Every write (assignment or in-place mutation) advances
    /// `version`, so caches derived from the value (an `MLP`'s transposed weights) know to refresh.
    public var value: [Float] {
        didSet { version &+= 1 }
    }
    /// Advances on every write to `value` (observers of `value` without `oldValue` mutate in place,
    /// so the optimiser's in-place updates cost no copy).
    public private(set) var version = 0
    /// Accumulated gradient, same layout as `value`.
    public var grad: [Float]

    public init(name: String, shape: [Int], value: [Float]) {
        precondition(value.count == Tensor.elementCount(shape), "parameter \(name): \(value.count) values for shape \(shape)")
        self.name = name
        self.shape = shape
        self.value = value
        self.grad = [Float](repeating: 0, count: value.count)
    }

    /// Number of scalars.
    public var count: Int { value.count }

    /// Sets the gradient to zero.
    public func zeroGrad() {
        grad.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// The value as a tensor.
    public var tensor: Tensor { Tensor(shape: shape, scalars: value) }
}

extension Array where Element == Parameter {
    /// Zeroes every gradient.
    public func zeroGrad() { for p in self { p.zeroGrad() } }

    /// Total number of scalars.
    public var scalarCount: Int { reduce(0) { $0 + $1.count } }

    /// Name → tensor map of the values (for saving).
    public func namedTensors() -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for p in self { d[p.name] = p.tensor }
        return d
    }

    /// Loads values by name; every parameter must be present with its exact shape.
    public func load(from tensors: [String: Tensor]) throws {
        for p in self {
            guard let t = tensors[p.name] else { throw ParameterLoadError.missing(p.name) }
            guard t.shape == p.shape else { throw ParameterLoadError.shape(p.name, expected: p.shape, found: t.shape) }
            p.value = t.scalars
        }
    }

    /// Copies values from `source` (same architecture, same order).
    public func copyValues(from source: [Parameter]) {
        precondition(count == source.count)
        for (d, s) in zip(self, source) {
            precondition(d.shape == s.shape)
            d.value = s.value
        }
    }
}

/// A parameter could not be loaded from a tensor map.
public enum ParameterLoadError: Error, CustomStringConvertible, Equatable {
    case missing(String)
    case shape(String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .missing(let n): return "missing tensor '\(n)'"
        case .shape(let n, let e, let f): return "tensor '\(n)' has shape \(f), expected \(e)"
        }
    }
}

/// Polyak averaging of target networks: `target ← (1 − tau) · target + tau · source`.
public func polyakUpdate(target: [Parameter], source: [Parameter], tau: Float) {
    precondition(target.count == source.count, "polyak: parameter lists differ")
    for (t, s) in zip(target, source) {
        precondition(t.count == s.count, "polyak: \(t.name) and \(s.name) differ in size")
        let keep = 1 - tau
        s.value.withUnsafeBufferPointer { sv in
            t.value.withUnsafeMutableBufferPointer { tv in
                for i in 0..<tv.count { tv[i] = keep * tv[i] + tau * sv[i] }
            }
        }
    }
}
