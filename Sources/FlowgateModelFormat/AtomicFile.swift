import Foundation

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
        let tempURL = directory.appendingPathComponent(
            temporaryPrefix(for: url) + String(UInt64.random(in: 0...UInt64.max), radix: 36))
        let tempPath = tempURL.path
        let fd = try retrying("open", path: tempPath) {
            open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        }
        var renamed = false
        defer {
            if !renamed { _ = unlink(tempPath) }
        }
        do {
            try writeAll(data, fd: fd, path: tempPath)
            _ = try retrying("fsync", path: tempPath) { fsync(fd) }
        } catch {
            _ = close(fd)
            throw error
        }
        _ = try retrying("close", path: tempPath, retryOnInterrupt: false) { close(fd) }
        _ = try retrying("rename", path: url.path) { rename(tempPath, url.path) }
        renamed = true
        try syncDirectory(directory)
    }

    /// `fsync`s a directory so that renames and creations inside it are durable.
    public static func syncDirectory(_ directory: URL) throws {
        let path = directory.path.isEmpty ? "." : directory.path
        let fd = try retrying("open", path: path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { _ = close(fd) }
        _ = try retrying("fsync", path: path) { fsync(fd) }
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

    private static func writeAll(_ data: Data, fd: Int32, path: String) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let n = try retrying("write", path: path) {
                    posixWrite(fd, base + offset, raw.count - offset)
                }
                offset += n
            }
        }
    }

    /// Runs a POSIX call, retrying on `EINTR`, and turns `-1` into a `ModelFileError`.
    static func retrying<T: BinaryInteger>(
        _ operation: String, path: String, retryOnInterrupt: Bool = true, _ call: () -> T
    ) throws -> T {
        while true {
            let result = call()
            if result != -1 { return result }
            let code = errno
            if code == EINTR && retryOnInterrupt { continue }
            let message = String(cString: strerror(code))
            throw ModelFileError(path: path, .io(operation: operation, message: message))
        }
    }
}

/// `write(2)` under a name that does not clash with `AtomicFile.write(_:to:)`.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
