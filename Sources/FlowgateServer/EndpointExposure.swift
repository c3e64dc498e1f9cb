import Logging

/// Whether a ZeroMQ endpoint can only be reached from this machine: `ipc://` and `inproc://`, and
/// `tcp://` bound to a loopback address (127.0.0.0/8, ::1, `localhost`, interface `lo`). Anything
/// else (`tcp://*`, `tcp://0.0.0.0`, a LAN address or interface, pgm, ws …) is reachable from
/// other machines.
func isLocalOnly(endpoint: String) -> Bool {
    let lower = endpoint.lowercased()
    if lower.hasPrefix("ipc://") || lower.hasPrefix("inproc://") { return true }
    guard lower.hasPrefix("tcp://") else { return false }
    var address = Substring(lower.dropFirst("tcp://".count))
    if let semicolon = address.lastIndex(of: ";") { address = address[address.index(after: semicolon)...] }
    var host: Substring
    if address.hasPrefix("[") {
        guard let close = address.firstIndex(of: "]") else { return false }
        host = address[address.index(after: address.startIndex)..<close]
    } else if let colon = address.lastIndex(of: ":") {
        host = address[..<colon]
    } else {
        host = address
    }
    if host.hasPrefix("::ffff:") { host = host.dropFirst("::ffff:".count) }
    return host == "localhost" || host == "lo" || host == "::1" || host == "0:0:0:0:0:0:0:1" || host.hasPrefix("127.")
}

/// Logs a loud warning for every endpoint reachable from other machines while CURVE is off.
func warnAboutExposedEndpoints(_ endpoints: [String], curve: Bool, logger: Logger) {
    guard !curve else { return }
    for e in endpoints where !isLocalOnly(endpoint: e) {
        logger.critical(
            "SECURITY WARNING: \(e) is reachable from other machines and CURVE is off: anyone who can connect can request actions and read the telemetry, unencrypted and unauthenticated. Configure --curve-secret-key and --curve-allow (docs/operations.md), or bind tcp://127.0.0.1."
        )
    }
}
