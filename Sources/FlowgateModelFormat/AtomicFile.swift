import Foundation
import SystemPackage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Crash-safe whole-file writes.
///
/// `write(_:to:)` writes to a temporary file in the target's directory, `fsync`s it, renames it over
/// the target and `fsync`s the directory. After a crash at any point the target holds either its old
/// contents or the new ones, never a mix; at worst a temporary file named
/// `.<target name>.tmp-<random>` is left behind, which readers ignore and which
/// `removeStaleTemporaries(for:)` deletes.
///
/// The POSIX calls go through swift-system (`FileDescriptor.open`, `writeAll`, `close`: typed
/// `Errno`, `EINTR` retried, short writes continued). swift-system has no `fsync`, `rename` or
/// `unlink`, so those three are libc calls behind `retryingOnInterrupt`, which throws the same `Errno`.
public enum AtomicFile {
    /// The name prefix of the temporary files used while writing `target`.
    public static func temporaryPrefix(for target: URL) -> String {
        ".\(target.lastPathComponent).tmp-"
    }

    /// True when `fileName` looks like a temporary file left by an interrupted `write`.
    public static func isTemporaryName(_ fileName: String) -> Bool {
        fileName.hasPrefix(".") && fileName.contains(".tmp-")
    }

    /// Atomically replaces (or creates) the file at `url` with `data`.
    ///
    /// - Throws: `ModelFileError` with an `.io` problem naming the failing call and `errno`.
    public static func write(_ data: Data, to url: URL) throws {
        let directory = url.deletingLastPathComponent()
        let tempPath = directory.appendingPathComponent(
            temporaryPrefix(for: url) + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        ).path
        let temp = FilePath(tempPath)
        let fd = try io("open", path: tempPath) {
            try FileDescriptor.open(
                temp, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
        }
        var renamed = false
        defer {
            if !renamed { _ = unlink(tempPath) }
        }
        // `closeAfter` closes on every path (never retrying close: after EINTR the descriptor is
        // gone on Linux) and reports a failed close only when writing and syncing succeeded.
        var operation = "write"
        try io({ operation }, path: tempPath) {
            try fd.closeAfter {
                _ = try fd.writeAll(data)
                operation = "fsync"
                try retryingOnInterrupt { fsync(fd.rawValue) }
                operation = "close"
            }
        }
        try rename(tempPath, to: url.path)
        renamed = true
        try syncDirectory(directory)
    }

    /// `fsync`s a directory so that renames and creations inside it are durable.
    public static func syncDirectory(_ directory: URL) throws {
        let path = directory.path.isEmpty ? "." : directory.path
        let fd = try io("open", path: path) {
            try FileDescriptor.open(FilePath(path), .readOnly, options: [.directory, .closeOnExec])
        }
        try io("fsync", path: path) {
            try fd.closeAfter { try retryingOnInterrupt { fsync(fd.rawValue) } }
        }
    }

    /// `rename(2)` of `source` over `target` (atomic within one file system), retried on `EINTR`.
    ///
    /// - Throws: `ModelFileError` naming `target` and the `errno` text.
    public static func rename(_ source: String, to target: String) throws {
        try io("rename", path: target) {
            try retryingOnInterrupt { Foundation.rename(source, target) }
        }
    }

    /// Deletes temporary files left next to `target` by interrupted writes; returns how many.
    @discardableResult
    public static func removeStaleTemporaries(for target: URL) -> Int {
        let directory = target.deletingLastPathComponent()
        let prefix = temporaryPrefix(for: target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        var removed = 0
        for name in names where name.hasPrefix(prefix) {
            if unlink(directory.appendingPathComponent(name).path) == 0 { removed += 1 }
        }
        return removed
    }

    /// Runs `body`, turning a swift-system `Errno` into a `ModelFileError` naming `path` and the call.
    private static func io<T>(_ operation: @autoclosure () -> String, path: String, _ body: () throws -> T) throws -> T {
        try io(operation, path: path, body)
    }

    private static func io<T>(_ operation: () -> String, path: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as Errno {
            throw ModelFileError(path: path, .io(operation: operation(), message: error.description))
        }
    }
}

/// Runs a libc call that returns -1 and sets `errno` on failure, again while it fails with `EINTR`.
///
/// - Throws: the call's `Errno`.
func retryingOnInterrupt(_ call: () -> Int32) throws {
    while call() == -1 {
        let code = Errno(rawValue: errno)
        if code != .interrupted { throw code }
    }
}
