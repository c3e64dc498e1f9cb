import Foundation

/// A value behind a pthread mutex (`NSLock`), for state shared between the server's threads.
///
/// Not the standard library's `Mutex`: its contended path waits in an uninstrumented futex call, so
/// the thread sanitizer, which CI runs on the server tests, cannot see the ordering it provides and
/// reported accesses inside two `withLock` calls as a race. A pthread mutex is intercepted by the
/// sanitizer, so a report from code using this type is a real race.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
