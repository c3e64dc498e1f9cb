import Foundation

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
    /// Accumulated gradient, same layout as `value`. Its storage is made on the first write (a
    /// served network, which only reads its weights, never holds one); until then it reads as
    /// zeros.
    public var grad: [Float] {
        get { gradStorage.count == value.count ? gradStorage : [Float](repeating: 0, count: value.count) }
        set { gradStorage = newValue }
        _modify {
            if gradStorage.count != value.count { gradStorage = [Float](repeating: 0, count: value.count) }
            yield &gradStorage
        }
    }
    private var gradStorage: [Float] = []
    /// `transposed()`'s copy, the value's version it was made from, and the lock that makes it
    /// once for every network (and thread) reading this parameter.
    private let transposedCopy = FloatBuffer()
    private var transposedVersion = -1
    private let transposeLock = NSLock()

    /// This 2-D parameter's value `[rows, cols]` transposed to `[cols, rows]` (what the libxsmm
    /// forward kernels read), and the version it was made from. It is computed once per version
    /// and shared by every network reading the parameter: a server's worker replicas hold one copy
    /// between them, not one each. Safe to call from several threads at once; the pointer stays
    /// valid until the value changes (which must not happen while forward passes run).
    public func transposed() -> (pointer: UnsafePointer<Float>, version: Int) {
        precondition(shape.count == 2, "parameter \(name): transposed() needs a matrix, shape is \(shape)")
        transposeLock.lock()
        defer { transposeLock.unlock() }
        if transposedVersion != version {
            let rows = shape[0], cols = shape[1]
            transposedCopy.reserve(rows * cols)
            let t = transposedCopy.pointer
            value.withUnsafeBufferPointer { wp in
                for r in 0..<rows {
                    for c in 0..<cols { t[c * rows + r] = wp[r * cols + c] }
                }
            }
            transposedVersion = version
        }
        return (UnsafePointer(transposedCopy.pointer), transposedVersion)
    }
    /// Whether the gradient's storage exists (it is made on the first write to `grad`).
    public var holdsGradient: Bool { gradStorage.count == value.count && !value.isEmpty }

    public init(name: String, shape: [Int], value: [Float]) {
        precondition(value.count == Tensor.elementCount(shape), "parameter \(name): \(value.count) values for shape \(shape)")
        self.name = name
        self.shape = shape
        self.value = value
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
