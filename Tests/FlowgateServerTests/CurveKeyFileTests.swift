import FlowgateZMQ
import Foundation
import Testing

@testable import FlowgateServer

/// Key files (`flowgate keygen`), the allowlist parser and the endpoint exposure check.
@Suite struct CurveKeyFileTests {
    func temporaryDirectory() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("curve-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test func writtenKeyPairReadsBackWithSafePermissions() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pair = try CurveKeys.generate()
        let paths = try CurveKeys.write(pair, prefix: dir + "/server", force: false)
        #expect(paths.publicPath == dir + "/server.pub")
        #expect(try mode(paths.secretPath) == 0o600)
        #expect(try mode(paths.publicPath) == 0o644)
        #expect(try CurveKeys.readKeyPair(paths.secretPath) == pair)
        #expect(try CurveKeys.readPublicKey(paths.publicPath) == pair.publicKey)
        #expect(try CurveKeys.readPublicKey(paths.secretPath) == pair.publicKey)
        #expect(CurveKeys.publicKey(forSecret: pair.secretKey) == pair.publicKey)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)
    }

    @Test func existingFilesAreReplacedOnlyWithForce() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try CurveKeys.generate()
        try CurveKeys.write(first, prefix: dir + "/k", force: false)
        let second = try CurveKeys.generate()
        #expect(throws: CurveKeyError.self) { try CurveKeys.write(second, prefix: dir + "/k", force: false) }
        #expect(try CurveKeys.readKeyPair(dir + "/k.secret") == first)
        try CurveKeys.write(second, prefix: dir + "/k", force: true)
        #expect(try CurveKeys.readKeyPair(dir + "/k.secret") == second)
        #expect(try mode(dir + "/k.secret") == 0o600)
        #expect(throws: CurveKeyError.self) { try CurveKeys.write(second, prefix: dir + "/missing/k", force: false) }
    }

    @Test func secretReadableByOthersIsRefused() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let paths = try CurveKeys.write(try CurveKeys.generate(), prefix: dir + "/k", force: false)
        chmod(paths.secretPath, 0o644)
        do {
            _ = try CurveKeys.readKeyPair(paths.secretPath)
            Issue.record("a world-readable secret key was accepted")
        } catch {
            #expect(error.problem.contains("chmod 600"))
            #expect(error.path == paths.secretPath)
        }
        #expect(throws: CurveKeyError.self) { try CurveKeys.readKeyPair(dir + "/absent.secret") }
        #expect(throws: CurveKeyError.self) { try CurveKeys.readKeyPair(paths.publicPath) }  // no secret= line
    }

    @Test func parserAcceptsTheDocumentedFormsAndNamesTheBadLine() throws {
        let a = try CurveKeys.generate(), b = try CurveKeys.generate()
        let text = "# comment\n\n  public = \"\(a.publicKey)\"\n\(b.publicKey)\nsecret=\(a.secretKey)\n"
        let parsed = try CurveKeys.parse(text, path: "t")
        #expect(parsed.publicKeys == [a.publicKey, b.publicKey])
        #expect(parsed.secretKeys == [a.secretKey])
        let bad: [(String, String)] = [
            ("public=\(a.publicKey.dropLast())", "line 1"),  // 39 characters
            ("\n\(a.publicKey.dropLast())\"", "line 2"),  // '"' is not Z85
            ("private=\(a.publicKey)", "unknown entry"),
            ("hello", "line 1"),
        ]
        for (text, expected) in bad {
            do {
                _ = try CurveKeys.parse(text, path: "f.pub")
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.description.contains(expected), "\(error)")
                #expect(error.description.contains("f.pub"))
            }
        }
    }

    @Test func bareKeysContainingEqualsSignsAreKeys() throws {
        // '=' is a Z85 character: a bare allowlist line may contain it (and once did break parsing).
        var keys: [String] = []
        for _ in 0..<500 where keys.count < 3 {
            let k = try CurveKeys.generate().publicKey
            if k.contains("=") { keys.append(k) }
        }
        try #require(keys.count == 3)
        let parsed = try CurveKeys.parse(keys.joined(separator: "\n") + "\npublic=\(keys[0])\n", path: "t")
        #expect(parsed.publicKeys == keys + [keys[0]])
        #expect(parsed.secretKeys.isEmpty)
    }

    @Test func keyPairWhosePublicLineDoesNotMatchIsRefused() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try CurveKeys.generate(), b = try CurveKeys.generate()
        try CurveKeys.writeAtomically("public=\(b.publicKey)\nsecret=\(a.secretKey)\n", to: dir + "/x.secret", mode: 0o600)
        #expect(throws: CurveKeyError.self) { try CurveKeys.readKeyPair(dir + "/x.secret") }
        try CurveKeys.writeAtomically("secret=\(a.secretKey)\n", to: dir + "/y.secret", mode: 0o600)
        #expect(try CurveKeys.readKeyPair(dir + "/y.secret") == a)  // public derived from the secret
    }

    @Test func allowlistDirectoryReadsPubFilesOnlyAndRefusesSecrets() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try CurveKeys.generate(), b = try CurveKeys.generate(), c = try CurveKeys.generate()
        try CurveKeys.write(a, prefix: dir + "/alice", force: false)  // alice.secret must be ignored
        try CurveKeys.writeAtomically("\(b.publicKey)\n\(c.publicKey)\n", to: dir + "/team.pub", mode: 0o644)
        try CurveKeys.writeAtomically("public=\(try CurveKeys.generate().publicKey)\n", to: dir + "/.hidden.pub", mode: 0o644)
        let loaded = try CurveKeys.readAllowlist(dir)
        #expect(loaded.keys == Set([a, b, c].map { CurveKeys.decode($0.publicKey)! }))
        #expect(loaded.ignored == ["alice.secret"])

        let single = try CurveKeys.readAllowlist(dir + "/team.pub")
        #expect(single.keys.count == 2)

        try CurveKeys.writeAtomically("secret=\(c.secretKey)\n", to: dir + "/oops.pub", mode: 0o600)
        #expect(throws: CurveKeyError.self) { try CurveKeys.readAllowlist(dir) }
        #expect(throws: CurveKeyError.self) { try CurveKeys.readAllowlist(dir + "/nope") }
    }

    @Test func allowlistSignatureChangesWhenAFileIsAdded() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let before = CurveKeys.allowlistSignature(dir)
        #expect(CurveKeys.allowlistSignature(dir) == before)
        try CurveKeys.writeAtomically("public=\(try CurveKeys.generate().publicKey)\n", to: dir + "/n.pub", mode: 0o644)
        #expect(CurveKeys.allowlistSignature(dir) != before)
    }

    @Test func z85RoundTrip() throws {
        let pair = try CurveKeys.generate()
        let bytes = try #require(CurveKeys.decode(pair.publicKey))
        #expect(bytes.count == 32)
        #expect(CurveKeys.encode(bytes) == pair.publicKey)
        #expect(CurveKeys.decode("short") == nil)
    }

    @Test func loopbackEndpointsAreLocalOthersAreExposed() {
        for e in [
            "tcp://127.0.0.1:5555", "tcp://localhost:5555", "tcp://[::1]:5555", "tcp://127.0.0.2:*", "tcp://lo:5555",
            "ipc:///tmp/flowgate.sock", "inproc://x", "TCP://127.0.0.1:1",
        ] {
            #expect(isLocalOnly(endpoint: e), "\(e)")
        }
        for e in [
            "tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://[::]:5555", "tcp://192.168.1.10:5555", "tcp://eth0:5555",
            "tcp://robot.example.com:5555", "ws://127.0.0.1:5555",
            "pgm://eth0;239.192.1.1:5555",
        ] {
            #expect(!isLocalOnly(endpoint: e), "\(e)")
        }
    }

    @Test func refusalLogIsRateLimitedAndCountsWhatItLeftOut() {
        var log = RefusalLog(window: 10, burst: 2)
        let t0 = Date(timeIntervalSince1970: 1000)
        #expect(log.record(now: t0) == .log(suppressed: 0))
        #expect(log.record(now: t0) == .log(suppressed: 0))
        #expect(log.record(now: t0 + 1) == .quiet)
        #expect(log.record(now: t0 + 2) == .quiet)
        #expect(log.record(now: t0 + 11) == .log(suppressed: 2))
        #expect(log.record(now: t0 + 12) == .log(suppressed: 0))
    }

    @Test func configurationKeysAndTheirPairing() throws {
        let json = #"{"curve_secret_key": "s.secret", "curve_allow": "allow", "expose_provenance": true}"#
        let c = try JSONDecoder().decode(ServerConfiguration.self, from: Data(json.utf8))
        #expect(c.curveSecretKeyFile == "s.secret" && c.curveAllow == "allow" && c.exposeProvenance)
        #expect(c.problems.isEmpty)
        #expect(!ServerConfiguration().exposeProvenance)
        var half = ServerConfiguration()
        half.curveSecretKeyFile = "s.secret"
        #expect(half.problems.contains { $0.contains("curve_allow") })
    }
}
