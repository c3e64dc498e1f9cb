#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where the metrics and probe HTTP listener binds: `ServerConfiguration.metricsAddress` parsed.
///
/// Accepted forms: `127.0.0.1:9464`, `0.0.0.0:9464`, `*:9464` (all IPv4 interfaces),
/// `localhost:9464` (127.0.0.1), `[::1]:9464`, `[::]:9464`. Port 0 picks a free port. Host names
/// other than `localhost` are not resolved: the listener binds numeric addresses only.
struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    /// A numeric IPv4 or IPv6 address (IPv6 without brackets).
    let host: String
    let port: UInt16
    let isIPv6: Bool

    /// A `metrics_address` that cannot be bound, in words.
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// True for 127.0.0.0/8 and ::1.
    var isLoopback: Bool { isIPv6 ? host == "::1" : host.hasPrefix("127.") }

    static func parse(_ text: String) -> Result<MetricsAddress, Problem> {
        func problem(_ why: String) -> Result<MetricsAddress, Problem> {
            .failure(Problem(description: "metrics_address '\(text)' \(why) (expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464)"))
        }
        guard let colon = text.lastIndex(of: ":") else { return problem("has no port") }
        var host = String(text[..<colon])
        guard let port = UInt16(text[text.index(after: colon)...]) else { return problem("has no port in 0...65535") }
        var ipv6 = false
        if host.hasPrefix("[") && host.hasSuffix("]") && host.count >= 2 {
            host = String(host.dropFirst().dropLast())
            ipv6 = true
        }
        switch host {
        case "": return problem("has no host")
        case "localhost": host = "127.0.0.1"
        case "*": host = "0.0.0.0"
        default: break
        }
        var buffer = [UInt8](repeating: 0, count: 16)
        guard inet_pton(ipv6 ? AF_INET6 : AF_INET, host, &buffer) == 1 else {
            return problem(ipv6 ? "has no numeric IPv6 host" : "has no numeric IPv4 host (IPv6 goes in brackets)")
        }
        return .success(MetricsAddress(host: host, port: port, isIPv6: ipv6))
    }
}
