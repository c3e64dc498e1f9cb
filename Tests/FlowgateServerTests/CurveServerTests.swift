import FlowgateClient
import FlowgateProtocol
import FlowgateZMQ
import Foundation
import Testing

@testable import FlowgateServer

/// A CURVE server in-process: only allowlisted keys get replies, on the ROUTER and the PUB socket.
@Suite struct CurveServerTests {
    struct Keys {
        let dir: String
        let server: CurveKeyPair
        let alice: CurveKeyPair
        let mallory: CurveKeyPair
        var allow: String { dir + "/allow" }

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("curve-srv-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir + "/allow", withIntermediateDirectories: true)
            server = try CurveKeys.generate()
            alice = try CurveKeys.generate()
            mallory = try CurveKeys.generate()
            try CurveKeys.write(server, prefix: dir + "/server", force: false)
            try CurveKeys.writeAtomically("public=\(alice.publicKey)\n", to: dir + "/allow/alice.pub", mode: 0o644)
        }

        func client(_ pair: CurveKeyPair) -> CurveClientKeys {
            CurveClientKeys(serverPublicKey: server.publicKey, publicKey: pair.publicKey, secretKey: pair.secretKey)
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    func withCurveServer<T>(_ keys: Keys, telemetry: Bool = false, _ body: (InferenceServer) throws -> T) throws -> T {
        try withServer(
            telemetry: telemetry,
            configure: {
                $0.curveSecretKeyFile = keys.dir + "/server.secret"
                $0.curveAllow = keys.allow
            }, body)
    }

    /// True when `keys` get a health reply within 1.5 s (a refused client gets none at all).
    func answered(_ server: InferenceServer, _ keys: CurveClientKeys?) throws -> Bool {
        let client = try FlowgateClient(endpoint: server.endpoint, timeoutMilliseconds: 1500, retries: 0, curve: keys)
        do {
            _ = try client.health()
            return true
        } catch FlowgateClientError.timeout {
            return false
        }
    }

    @Test func onlyAllowlistedKeysGetReplies() throws {
        let keys = try Keys()
        defer { keys.remove() }
        try withCurveServer(keys) { server in
            #expect(server.curvePublicKey == keys.server.publicKey)
            #expect(try answered(server, keys.client(keys.alice)))
            #expect(try !answered(server, keys.client(keys.mallory)))
            #expect(try !answered(server, nil))  // plaintext
            let wrongServer = CurveClientKeys(
                serverPublicKey: keys.mallory.publicKey, publicKey: keys.alice.publicKey, secretKey: keys.alice.secretKey)
            #expect(try !answered(server, wrongServer))

            let client = try FlowgateClient(endpoint: server.endpoint, timeoutMilliseconds: 10_000, retries: 0, curve: keys.client(keys.alice))
            let r = try client.act(observation: [1, 2, 3])
            #expect(r.reliable.count == 1)
            let auth = try client.stats()["auth"]
            #expect(auth?["curve"]?.boolValue == true)
            #expect((auth?["refused"]?.intValue ?? 0) >= 1)
            #expect((auth?["allowed"]?.intValue ?? 0) >= 2)
            #expect(auth?["allowlist_keys"]?.intValue == 1)
            // the wrong-server-key client fails before the ZAP handler and the socket monitor counts
            // it (a plaintext client is counted only when the server notices the mismatch first)
            #expect((auth?["handshake_failures"]?.intValue ?? 0) >= 1)
        }
    }

    @Test func allowlistReloadAdmitsAddedKeysAndKeepsOldKeysOnError() throws {
        let keys = try Keys()
        defer { keys.remove() }
        try withCurveServer(keys) { server in
            #expect(try !answered(server, keys.client(keys.mallory)))
            try CurveKeys.writeAtomically("public=\(keys.mallory.publicKey)\n", to: keys.allow + "/mallory.pub", mode: 0o644)
            #expect(try server.reloadAllowlist() == 2)
            #expect(try answered(server, keys.client(keys.mallory)))

            try CurveKeys.writeAtomically("not a key\n", to: keys.allow + "/broken.pub", mode: 0o644)
            #expect(throws: CurveKeyError.self) { try server.reloadAllowlist() }
            #expect(try answered(server, keys.client(keys.alice)))  // old keys still admitted
            let stats = try FlowgateClient(endpoint: server.endpoint, timeoutMilliseconds: 10_000, retries: 0, curve: keys.client(keys.alice)).stats()
            #expect(stats["auth"]?["allowlist_errors"]?.intValue ?? 0 >= 1)
        }
    }

    @Test func telemetryRefusesUnlistedSubscribers() throws {
        let keys = try Keys()
        defer { keys.remove() }
        try withCurveServer(keys, telemetry: true) { server in
            let endpoint = try #require(server.telemetryEndpoint)
            let allowed = try TelemetryMonitor(endpoint: endpoint, curve: keys.client(keys.alice))
            let unlisted = try TelemetryMonitor(endpoint: endpoint, curve: keys.client(keys.mallory))
            let plaintext = try TelemetryMonitor(endpoint: endpoint)
            let client = try FlowgateClient(endpoint: server.endpoint, timeoutMilliseconds: 10_000, retries: 0, curve: keys.client(keys.alice))
            var seen = 0
            for _ in 0..<100 where seen < 5 {
                _ = try client.act(observation: [0, 0, 0])
                if try allowed.next(timeoutMilliseconds: 50) != nil { seen += 1 }
            }
            #expect(seen == 5)
            #expect(try unlisted.next(timeoutMilliseconds: 500) == nil)
            #expect(try plaintext.next(timeoutMilliseconds: 100) == nil)
        }
    }

    @Test func provenanceOnlyWhenConfigured() throws {
        let hidden = try withServer { server in try FlowgateClient(server).info() }
        #expect(hidden.models[0].provenance.isEmpty)
        let shown = try withServer(configure: { $0.exposeProvenance = true }) { server in try FlowgateClient(server).info() }
        #expect(shown.models[0].provenance["kind"] == "test double")
    }

    @Test func badKeyFilesStopTheServerWithTheFileNamed() throws {
        let keys = try Keys()
        defer { keys.remove() }
        chmod(keys.dir + "/server.secret", 0o644)
        do {
            try withCurveServer(keys) { _ in }
            Issue.record("started with a world-readable secret key")
        } catch {
            #expect("\(error)".contains("server.secret") && "\(error)".contains("chmod 600"), "\(error)")
        }
        chmod(keys.dir + "/server.secret", 0o600)
        do {
            try withServer(configure: {
                $0.curveSecretKeyFile = keys.dir + "/server.secret"
                $0.curveAllow = keys.dir + "/no-such-dir"
            }) { _ in }
            Issue.record("started without an allowlist")
        } catch {
            #expect("\(error)".contains("no-such-dir"), "\(error)")
        }
    }
}
