/// The command that continues an interrupted `flowgate train` run: the same program and arguments
/// (every step, energy and config flag the run was started with, since a checkpoint only resumes
/// under the same config and phases), without `--restart-from` (that phase has restarted
/// already), with `--resume` added once; each argument quoted for a POSIX shell where needed.
public enum ResumeCommandLine {
    /// - Parameter arguments: the process's arguments as started (`CommandLine.arguments`).
    public static func from(arguments: [String]) -> String {
        var kept: [String] = []
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            if argument == "--restart-from" {
                i += 2
                continue
            }
            if !argument.hasPrefix("--restart-from=") { kept.append(argument) }
            i += 1
        }
        if !kept.contains("--resume") { kept.append("--resume") }
        return kept.map(shellQuoted).joined(separator: " ")
    }

    /// `argument` unchanged when a POSIX shell reads it as one word as it is, else in single quotes.
    static func shellQuoted(_ argument: String) -> String {
        let plain = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
        if !argument.isEmpty && argument.allSatisfy({ plain.contains($0) }) { return argument }
        return "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
