import Synchronization

/// A flag one thread sets (a graceful shutdown) and a loop on another polls (a training run between
/// steps). Set once, it stays set.
public final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    /// Asks the loop to stop; safe from any thread, more than once.
    public func set() { flag.store(true, ordering: .releasing) }

    /// True once `set()` was called.
    public var isSet: Bool { flag.load(ordering: .acquiring) }
}
