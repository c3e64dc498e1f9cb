import FlowgateZMQ

/// What a client needs to talk to a CURVE server (docs/operations.md): the server's public key and
/// this client's keypair, each a 40-character Z85 string.
public struct CurveClientKeys: Sendable, Equatable {
    public var serverPublicKey: String
    public var publicKey: String
    public var secretKey: String

    public init(serverPublicKey: String, publicKey: String, secretKey: String) {
        self.serverPublicKey = serverPublicKey
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// Reads the server's public key file (`NAME.pub`) and this client's keypair file
    /// (`NAME.secret`, mode 0600), both as written by `flowgate keygen`.
    ///
    /// - Throws: an error naming the file and what is wrong with it.
    public static func load(serverKeyFile: String, clientKeyFile: String) throws -> CurveClientKeys {
        let server = try CurveKeys.readPublicKey(serverKeyFile)
        let pair = try CurveKeys.readKeyPair(clientKeyFile)
        return CurveClientKeys(serverPublicKey: server, publicKey: pair.publicKey, secretKey: pair.secretKey)
    }

    func apply(to socket: ZMQSocket) throws(ZMQError) {
        try socket.setCurveClient(serverKey: serverPublicKey, publicKey: publicKey, secretKey: secretKey)
    }
}
