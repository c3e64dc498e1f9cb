/// Which server a load test may drive: loopback by default, anything else only when asked for
/// explicitly, so that a typo or a pasted address never sends load to someone else's server.
public enum BenchTarget {
    /// Why an endpoint was refused.
    public struct Refusal: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// True for loopback tcp (127.x, localhost, [::1]), ipc:// and inproc:// endpoints.
    public static func isLocal(_ endpoint: String) -> Bool {
        endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") || endpoint.hasPrefix("tcp://127.")
            || endpoint.hasPrefix("tcp://localhost:") || endpoint.hasPrefix("tcp://[::1]:")
    }

    /// The endpoint to drive, from `--endpoint` (loopback only) or `--remote` (any
    /// `tcp://host:port`); nil when neither is given (start an in-process server).
    ///
    /// - Throws: `Refusal` naming the flag and what is wrong: a non-loopback `--endpoint` (use
    ///   `--remote`), both flags, or a `--remote` that is not `tcp://host:port`.
    public static func resolve(endpoint: String?, remote: String?) throws(Refusal) -> String? {
        switch (endpoint, remote) {
        case (nil, nil): return nil
        case (.some, .some):
            throw Refusal(description: "give either --endpoint (loopback) or --remote (any host), not both")
        case (let e?, nil):
            guard isLocal(e) else {
                throw Refusal(
                    description: "--endpoint \(e): not a loopback tcp (127.0.0.1, localhost, [::1]), ipc:// or inproc:// endpoint; "
                        + "to load a server on another host, pass it as --remote \(e)")
            }
            return e
        case (nil, let r?):
            guard r.hasPrefix("tcp://"), let colon = r.lastIndex(of: ":"), colon > r.index(r.startIndex, offsetBy: 6),
                let port = Int(r[r.index(after: colon)...]), (1...65535).contains(port)
            else {
                throw Refusal(description: "--remote \(r): expected tcp://HOST:PORT with a port in 1...65535")
            }
            return r
        }
    }
}
