import Foundation

/// Appends one JSON object per line: `{"phase", "step", "global_step", "time", <metrics>}`.
public final class TrainingLog {
    private let handle: FileHandle
    public let path: String

    /// Opens (appending; resumed runs continue the same log) or creates the log at `path`.
    public init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw TrainingError.io("cannot create training log \(path)")
            }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw TrainingError.io("cannot open training log \(path)") }
        h.seekToEndOfFile()
        handle = h
    }

    deinit { try? handle.close() }

    public func record(phase: String, step: Int, globalStep: Int, metrics: [String: Double]) {
        var line = "{\"phase\":\"\(phase)\",\"step\":\(step),\"global_step\":\(globalStep),\"time\":\(String(format: "%.3f", Date().timeIntervalSince1970))"
        for (k, v) in metrics.sorted(by: { $0.key < $1.key }) {
            line += ",\"\(k)\":" + (v.isFinite ? "\(v)" : "null")
        }
        line += "}\n"
        handle.write(Data(line.utf8))
    }
}
