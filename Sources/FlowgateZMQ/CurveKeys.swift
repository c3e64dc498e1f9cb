// CURVE key files (docs/operations.md, "Authentication and encryption (CURVE)").
//
// Format (UTF-8 text, one item per line; the Python client reads the same, flowgate_client/curve.py):
// - blank lines and lines starting with `#` are ignored;
// - `public=KEY` and `secret=KEY` (spaces around `=` and double quotes around KEY are allowed);
// - a bare line of exactly 40 Z85 characters is a public key (so an allowlist may be a plain list;
//   Z85 includes '=', so a line is an entry only when the text before its first '=' is an entry name);
// - anything else is an error naming the file and line.
// KEY is a 40-character Z85 encoding of a 32-byte Curve25519 key.
//
// `flowgate keygen NAME` writes NAME.pub (`public=`, mode 0644) and NAME.secret (`public=` and
// `secret=`, mode 0600, refused when readable by group or others).
internal import CZeroMQ
internal import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A CURVE keypair as Z85 strings (40 characters each).
package struct CurveKeyPair: Sendable, Equatable {
    package var publicKey: String
    package var secretKey: String

    package init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

/// A key file that cannot be used, with the file and the reason.
package struct CurveKeyError: Error, CustomStringConvertible, Equatable {
    package let path: String
    package let problem: String

    package init(_ path: String, _ problem: String) {
        self.path = path
        self.problem = problem
    }

    package var description: String { "CURVE key file \(path): \(problem)" }
}

/// Reading, writing and checking CURVE key files.
package enum CurveKeys {
    /// Suffix of the public key file written by `write(_:prefix:force:)`.
    package static let publicSuffix = ".pub"
    /// Suffix of the secret (keypair) file written by `write(_:prefix:force:)`.
    package static let secretSuffix = ".secret"

    /// True when libzmq was built with CURVE (libsodium or tweetnacl).
    package static var isAvailable: Bool { zmq_has("curve") != 0 }

    /// A fresh keypair from `zmq_curve_keypair`.
    package static func generate() throws(ZMQError) -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_keypair") { zmq_curve_keypair(&pub, &sec) }
        return CurveKeyPair(publicKey: string(pub), secretKey: string(sec))
    }

    /// The 32 key bytes of a Z85 key, or nil when `z85` is not 40 Z85 characters.
    package static func decode(_ z85: String) -> [UInt8]? {
        let chars = Array(z85.utf8)
        guard chars.count == 40, chars.allSatisfy({ z85Alphabet.contains($0) }) else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        let ok = z85.withCString { zmq_z85_decode(&out, $0) != nil }
        return ok ? out : nil
    }

    /// The Z85 text of 32 key bytes.
    package static func encode(_ key: [UInt8]) -> String {
        precondition(key.count == 32, "CURVE keys are 32 bytes")
        var out = [CChar](repeating: 0, count: 41)
        _ = zmq_z85_encode(&out, key, 32)
        return string(out)
    }

    /// The public key belonging to a Z85 secret key, or nil when the secret is not a valid key.
    package static func publicKey(forSecret secret: String) -> String? {
        guard decode(secret) != nil else { return nil }
        var pub = [CChar](repeating: 0, count: 41)
        let rc = secret.withCString { zmq_curve_public(&pub, $0) }
        return rc == 0 ? string(pub) : nil
    }

    // MARK: - Parsing

    /// The keys found in one file's text.
    package struct Parsed: Equatable {
        package var publicKeys: [String] = []
        package var secretKeys: [String] = []
    }

    /// Parses key file text (format at the top of this file); `path` only names the file in errors.
    package static func parse(_ text: String, path: String) throws(CurveKeyError) -> Parsed {
        var parsed = Parsed()
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let where_ = "line \(index + 1)"
            // Z85 has '=' in its alphabet, so a bare key may contain one: a line is an entry only
            // when what precedes its first '=' is an entry name (or it is not a bare key).
            let eq = line.firstIndex(of: "=")
            let name = eq.map { line[..<$0].trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            let isEntry = eq != nil && (Self.entryNames.contains(name) || !(line.utf8.count == 40 && decode(line) != nil))
            if let eq, isEntry {
                var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
                if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast())
                }
                guard decode(value) != nil else {
                    throw CurveKeyError(path, "\(where_): '\(name)' is not a 40-character Z85 key")
                }
                switch name {
                case "public", "public-key": parsed.publicKeys.append(value)
                case "secret", "secret-key": parsed.secretKeys.append(value)
                default: throw CurveKeyError(path, "\(where_): unknown entry '\(name)' (expected public= or secret=)")
                }
            } else if line.utf8.count == 40 {
                guard decode(line) != nil else { throw CurveKeyError(path, "\(where_): not a valid Z85 key") }
                parsed.publicKeys.append(line)
            } else {
                throw CurveKeyError(
                    path, "\(where_): expected 'public=KEY', 'secret=KEY' or a bare 40-character Z85 key")
            }
        }
        return parsed
    }

    // MARK: - Reading

    /// Reads a keypair file (`secret=` and optionally `public=`, which must match the secret).
    /// Refuses files that group or others may read or write.
    package static func readKeyPair(_ path: String) throws(CurveKeyError) -> CurveKeyPair {
        let text = try readText(path)
        try checkPrivate(path)
        let parsed = try parse(text, path: path)
        guard parsed.secretKeys.count == 1 else {
            throw CurveKeyError(
                path,
                parsed.secretKeys.isEmpty
                    ? "no 'secret=' line (is this a public key file? `flowgate keygen NAME` writes the keypair to NAME.secret)"
                    : "\(parsed.secretKeys.count) 'secret=' lines; expected one")
        }
        let secret = parsed.secretKeys[0]
        guard let derived = publicKey(forSecret: secret) else { throw CurveKeyError(path, "secret key is not valid") }
        if parsed.publicKeys.count > 1 { throw CurveKeyError(path, "more than one 'public=' line") }
        if let stated = parsed.publicKeys.first, stated != derived {
            throw CurveKeyError(path, "'public=' does not belong to the 'secret=' key in the same file")
        }
        return CurveKeyPair(publicKey: derived, secretKey: secret)
    }

    /// Reads one public key (e.g. the server's, for a client). A keypair file is accepted too, with
    /// the same permission check as `readKeyPair`; only its public key is returned.
    package static func readPublicKey(_ path: String) throws(CurveKeyError) -> String {
        let parsed = try parse(try readText(path), path: path)
        if !parsed.secretKeys.isEmpty { return try readKeyPair(path).publicKey }
        guard parsed.publicKeys.count == 1 else {
            throw CurveKeyError(path, parsed.publicKeys.isEmpty ? "no public key" : "more than one public key")
        }
        return parsed.publicKeys[0]
    }

    /// The allowlisted client keys (32 bytes each) from a file (every public key in it) or a
    /// directory (every non-hidden `*.pub` file directly inside; other files are returned in
    /// `ignored`). Files holding a secret key are refused: only public keys belong in an allowlist.
    package static func readAllowlist(_ path: String) throws(CurveKeyError) -> (keys: Set<[UInt8]>, ignored: [String]) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CurveKeyError(path, "allowlist does not exist")
        }
        var files: [String] = []
        var ignored: [String] = []
        if isDirectory.boolValue {
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
            } catch {
                throw CurveKeyError(path, "cannot list allowlist directory: \(error.localizedDescription)")
            }
            for name in names where !name.hasPrefix(".") {
                let full = (path as NSString).appendingPathComponent(name)
                var sub: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: full, isDirectory: &sub)
                if name.hasSuffix(publicSuffix) && !sub.boolValue { files.append(full) } else { ignored.append(name) }
            }
        } else {
            files = [path]
        }
        var keys = Set<[UInt8]>()
        for file in files {
            let parsed = try parse(try readText(file), path: file)
            guard parsed.secretKeys.isEmpty else {
                throw CurveKeyError(file, "holds a secret key; an allowlist takes public keys only (NAME.pub)")
            }
            for k in parsed.publicKeys { keys.insert(decode(k)!) }
        }
        return (keys, ignored)
    }

    /// A cheap fingerprint of an allowlist file or directory (names, sizes, mtimes, inodes), to
    /// notice edits without re-reading every file.
    package static func allowlistSignature(_ path: String) -> [Int64] {
        var signature: [Int64] = []
        func add(_ p: String) {
            var st = stat()
            guard stat(p, &st) == 0 else {
                signature.append(-1)
                return
            }
            signature += [
                Int64(st.st_ino), Int64(st.st_size), Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec),
                Int64(st.st_ctim.tv_sec), Int64(st.st_ctim.tv_nsec),
            ]
        }
        add(path)
        if let names = try? FileManager.default.contentsOfDirectory(atPath: path) {
            for name in names.sorted() where !name.hasPrefix(".") {
                signature.append(Int64(truncatingIfNeeded: name.hashValue))
                add((path as NSString).appendingPathComponent(name))
            }
        }
        return signature
    }

    // MARK: - Writing

    /// Writes `pair` to `prefix.pub` (mode 0644) and `prefix.secret` (mode 0600), each atomically
    /// (temporary file, fsync, rename, fsync of the directory). Refuses to replace either file
    /// unless `force`. Returns the two paths.
    @discardableResult
    package static func write(_ pair: CurveKeyPair, prefix: String, force: Bool) throws(CurveKeyError)
        -> (publicPath: String, secretPath: String)
    {
        let pubPath = prefix + publicSuffix
        let secPath = prefix + secretSuffix
        let directory = (secPath as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.isEmpty ? "." : directory, isDirectory: &isDirectory),
            isDirectory.boolValue
        else {
            throw CurveKeyError(secPath, "directory \(directory) does not exist")
        }
        if !force {
            for p in [pubPath, secPath] where FileManager.default.fileExists(atPath: p) {
                throw CurveKeyError(p, "already exists; pass --force to replace it")
            }
        }
        let stamp = "generated by flowgate keygen"
        try writeAtomically(
            "# flowgate CURVE keypair (Z85), \(stamp). SECRET: keep it mode 0600 and never share it.\npublic=\(pair.publicKey)\nsecret=\(pair.secretKey)\n",
            to: secPath, mode: 0o600)
        try writeAtomically(
            "# flowgate CURVE public key (Z85), \(stamp). Safe to share; a server admits a client when this file is in its --curve-allow directory.\npublic=\(pair.publicKey)\n",
            to: pubPath, mode: 0o644)
        return (pubPath, secPath)
    }

    /// Writes `text` to a temporary file created with `mode` (then `fchmod`, so the umask cannot
    /// widen or narrow it), fsyncs it, renames it over `path` and fsyncs the directory.
    package static func writeAtomically(_ text: String, to path: String, mode: mode_t) throws(CurveKeyError) {
        let directory = (path as NSString).deletingLastPathComponent
        let dir = directory.isEmpty ? "." : directory
        let name = (path as NSString).lastPathComponent
        let temp = (dir as NSString).appendingPathComponent(".\(name).tmp-\(UInt64.random(in: 0 ... .max))")
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw CurveKeyError(temp, "open failed: \(errnoText())") }
        var done = false
        defer {
            if !done { _ = unlink(temp) }
        }
        let bytes = Array(text.utf8)
        var ok = fchmod(fd, mode) == 0
        var offset = 0
        while ok && offset < bytes.count {
            let n = bytes.withUnsafeBytes { posixWrite(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                ok = false
            } else {
                offset += n
            }
        }
        if ok { ok = fsync(fd) == 0 }
        let failure = ok ? "" : errnoText()
        _ = close(fd)
        guard ok else { throw CurveKeyError(temp, "write failed: \(failure)") }
        guard rename(temp, path) == 0 else { throw CurveKeyError(path, "rename failed: \(errnoText())") }
        done = true
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            _ = close(dfd)
        }
    }

    // MARK: - Helpers

    private static let entryNames: Set<String> = ["public", "public-key", "secret", "secret-key"]

    private static let z85Alphabet = Set(
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)

    private static func string(_ chars: [CChar]) -> String {
        chars.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) + " (errno \(errno))" }

    private static func readText(_ path: String) throws(CurveKeyError) -> String {
        guard FileManager.default.fileExists(atPath: path) else { throw CurveKeyError(path, "does not exist") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CurveKeyError(path, "cannot be read (permissions?)")
        }
        guard data.count <= 1 << 20 else { throw CurveKeyError(path, "is larger than 1 MiB; not a key file") }
        guard let text = String(data: data, encoding: .utf8) else { throw CurveKeyError(path, "is not UTF-8 text") }
        return text
    }

    /// Refuses a secret key file that group or others can access (like ssh does).
    private static func checkPrivate(_ path: String) throws(CurveKeyError) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw CurveKeyError(path, "stat failed: \(errnoText())") }
        let mode = st.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw CurveKeyError(
                path,
                "holds a secret key but is accessible to group or others (mode \(String(mode, radix: 8))); run: chmod 600 \(path)")
        }
    }
}

/// `write(2)` under a name that does not clash with `CurveKeys.write(_:prefix:force:)`.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
