import ArgumentParser
import FlowgateZMQ

/// `flowgate keygen NAME`: writes a CURVE keypair for a server or a client.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a CURVE keypair (Z85) to NAME.pub and NAME.secret.",
        discussion: """
            NAME.pub holds 'public=KEY' (mode 0644; give it to the other side: a client's goes in the \
            server's --curve-allow directory, the server's goes to every client). NAME.secret holds \
            'public=KEY' and 'secret=KEY' (mode 0600; never share it). Keys are 40-character Z85 \
            strings from zmq_curve_keypair. Files are written atomically and never replaced unless \
            --force. See docs/operations.md.
            """)

    @Argument(help: "Path prefix of the two files, e.g. keys/server or keys/clients/robot1.")
    var name: String

    @Flag(help: "Replace NAME.pub and NAME.secret if they exist.")
    var force = false

    func validate() throws {
        guard !name.isEmpty, !name.hasSuffix("/") else { throw ValidationError("NAME must be a file path prefix, e.g. keys/server") }
        for suffix in [CurveKeys.publicSuffix, CurveKeys.secretSuffix] where name.hasSuffix(suffix) {
            throw ValidationError("NAME is a prefix: give '\(name.dropLast(suffix.count))', and keygen adds .pub and .secret")
        }
    }

    func run() throws {
        guard CurveKeys.isAvailable else { throw ValidationError("this libzmq was built without CURVE support") }
        let pair = try CurveKeys.generate()
        let paths = try CurveKeys.write(pair, prefix: name, force: force)
        print("public key  \(paths.publicPath)  (share it)")
        print("secret key  \(paths.secretPath)  (mode 0600; keep it private)")
        print("public=\(pair.publicKey)")
    }
}
