import Foundation

/// A growable, manually managed Float buffer used as a layer workspace.
///
/// Workspaces are sized to the largest batch seen and reused, so steady-state forward and backward
/// passes allocate nothing. A `FloatBuffer` is owned by one layer instance and is not shared
/// across threads. Their bytes are counted per thread (`bytesOnThisThread`), so a server worker
/// can report what its workspaces hold and a test can check that traffic never grows them.
public final class FloatBuffer {
    /// Start of the storage (valid for `capacity` elements).
    public private(set) var pointer: UnsafeMutablePointer<Float>
    /// Elements allocated.
    public private(set) var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
        Self.count(bytes: self.capacity * MemoryLayout<Float>.stride)
    }

    deinit {
        pointer.deallocate()
        Self.count(bytes: -capacity * MemoryLayout<Float>.stride)
    }

    /// Makes room for `count` elements (contents are not preserved when it grows).
    @inline(__always)
    public func reserve(_ count: Int) {
        if count > capacity {
            pointer.deallocate()
            let old = capacity
            capacity = max(count, capacity * 2)
            pointer = .allocate(capacity: capacity)
            pointer.initialize(repeating: 0, count: capacity)
            Self.count(bytes: (capacity - old) * MemoryLayout<Float>.stride)
        }
    }

    private static let bytesKey = "flowgate.FloatBuffer.bytes"

    /// Bytes of `FloatBuffer` storage allocated or grown on the calling thread, minus the storage
    /// freed on it: for a thread that owns its workspaces (a server worker), the memory they hold.
    /// It changes only when a buffer is made, grows or is freed, which a warm path never does, so
    /// keeping it costs nothing there.
    public static var bytesOnThisThread: Int {
        Thread.current.threadDictionary[bytesKey] as? Int ?? 0
    }

    private static func count(bytes: Int) {
        let d = Thread.current.threadDictionary
        d[bytesKey] = (d[bytesKey] as? Int ?? 0) + bytes
    }

    /// The first `count` elements as a buffer pointer.
    public func buffer(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// Copies the first `count` elements into a new array.
    public func array(_ count: Int) -> [Float] { Array(buffer(count)) }
}
