import Foundation

/// Shows training progress: a live one-line bar when stderr is a terminal, plain periodic lines
/// otherwise (logs, CI, `nohup`).
public final class ProgressReporter {
    private let interactive: Bool
    private let lineInterval: TimeInterval
    private var lastLine = Date.distantPast
    private var phaseStart = Date()
    private var phaseStartStep = 0
    private var lastRender = Date.distantPast
    private var currentPhase = ""

    /// - Parameter lineInterval: seconds between plain lines when not on a terminal.
    public init(interactive: Bool? = nil, lineInterval: TimeInterval = 10) {
        self.interactive = interactive ?? (isatty(STDERR_FILENO) == 1)
        self.lineInterval = lineInterval
    }

    /// Marks the start (or resumption) of a phase at `step`.
    public func begin(phase: String, step: Int, total: Int) {
        currentPhase = phase
        phaseStart = Date()
        phaseStartStep = step
        lastLine = .distantPast
        emit("\(phase): starting at step \(step)/\(total)\n")
    }

    /// Reports that `step` of `total` steps is done, with the latest metrics.
    public func update(step: Int, total: Int, metrics: [String: Double]) {
        let now = Date()
        let elapsed = now.timeIntervalSince(phaseStart)
        let done = step - phaseStartStep
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - step) / rate : 0
        let shown = Self.shown(metrics)
        if interactive {
            guard now.timeIntervalSince(lastRender) > 0.1 || step == total else { return }
            lastRender = now
            let width = 24
            let filled = total > 0 ? Int(Double(width) * Double(step) / Double(total)) : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            emit("\r\u{1B}[2K\(currentPhase) \(bar) \(step)/\(total) \(String(format: "%.1f", rate)) steps/s ETA \(Self.duration(eta)) \(shown)")
            if step == total { emit("\n") }
        } else if now.timeIntervalSince(lastLine) >= lineInterval || step == total {
            lastLine = now
            emit("\(currentPhase) step \(step)/\(total) (\(String(format: "%.1f", rate)) steps/s, ETA \(Self.duration(eta))) \(shown)\n")
        }
    }

    /// A free-form message on its own line.
    public func message(_ text: String) {
        emit((interactive ? "\r\u{1B}[2K" : "") + text + "\n")
    }

    private func emit(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }

    /// The metrics a progress line shows: the validation signal (`val_*`) first, then the others
    /// by name, seven at most.
    static func shown(_ metrics: [String: Double]) -> String {
        let ordered = metrics.sorted { a, b in
            let va = a.key.hasPrefix("val_"), vb = b.key.hasPrefix("val_")
            return va != vb ? va : a.key < b.key
        }
        return ordered.prefix(7).map { "\($0.key)=\(Self.format($0.value))" }.joined(separator: " ")
    }

    static func format(_ v: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        return a >= 1000 || a < 1e-3 ? String(format: "%.3e", v) : String(format: "%.4g", v)
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds)
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}
