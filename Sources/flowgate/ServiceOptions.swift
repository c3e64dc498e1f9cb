import ArgumentParser
import Logging

/// The flags `flowgate serve` and `flowgate broker` share: CURVE on the socket clients connect to,
/// and the log level.
struct ServiceOptions: ParsableArguments {
    @Option(name: .customLong("curve-secret-key"), help: "Keypair file from `flowgate keygen` (mode 0600): the socket clients connect to uses CURVE. Needs --curve-allow.")
    var curveSecretKey: String?
    @Option(name: .customLong("curve-allow"), help: "Allowlisted client public keys: a directory of *.pub files or one file of keys. Re-read on change and on SIGHUP.")
    var curveAllow: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func validate() throws { try LogLevel.check(logLevel) }
}

/// `--log-level` values and the logging set-up they drive (serve, broker, eval).
enum LogLevel {
    static func check(_ name: String) throws {
        guard Logger.Level(rawValue: name) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// Every logger writes to stderr at `name`'s level (validated before: anything else is `fallback`).
    static func bootstrap(_ name: String, fallback: Logger.Level) {
        let level = Logger.Level(rawValue: name) ?? fallback
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
