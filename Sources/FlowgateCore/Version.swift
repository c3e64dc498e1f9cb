/// The flowgate release version, reported by `flowgate --version` and the server's `info` op.
public let flowgateVersion = "0.1.0"
