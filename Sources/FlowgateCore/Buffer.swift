/// A growable, manually managed Float buffer used as a layer workspace.
///
/// Workspaces are sized to the largest batch seen and reused, so steady-state forward and backward
/// passes allocate nothing. A `FloatBuffer` is owned by one layer instance and is not shared
/// across threads.
public final class FloatBuffer {
    /// Start of the storage (valid for `capacity` elements).
    public private(set) var pointer: UnsafeMutablePointer<Float>
    /// Elements allocated.
    public private(set) var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// Makes room for `count` elements (contents are not preserved when it grows).
    @inline(__always)
    public func reserve(_ count: Int) {
        if count > capacity {
            pointer.deallocate()
            capacity = max(count, capacity * 2)
            pointer = .allocate(capacity: capacity)
            pointer.initialize(repeating: 0, count: capacity)
        }
    }

    /// The first `count` elements as a buffer pointer.
    public func buffer(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// Copies the first `count` elements into a new array.
    public func array(_ count: Int) -> [Float] { Array(buffer(count)) }
}
