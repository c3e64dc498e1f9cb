import ArgumentParser
import Foundation
import FlowgateCore
import FlowgateModelFormat

/// Output flags shared by every `flowgate bench` subcommand.
struct BenchOutputOptions: ParsableArguments {
    @Option(help: "Also write a machine-readable JSON report to this file.")
    var json: String?

    @Flag(help: "Print CSV (header + one row per measurement) on stdout instead of the aligned table.")
    var csv = false

    /// Prints `table` as text or CSV and writes `report` as JSON when asked.
    func emit<R: Encodable>(_ table: TextTable, report: R) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.keyEncodingStrategy = .convertToSnakeCase
        try emit(table, json: json == nil ? Data() : e.encode(report))
    }

    /// Prints `table` and writes already-encoded JSON when asked (atomically: write, fsync, rename).
    func emit(_ table: TextTable, json data: @autoclosure () throws -> Data) throws {
        print(csv ? table.csv : table.text, terminator: "")
        if let json {
            try AtomicFile.write(try data(), to: URL(fileURLWithPath: json))
            note("wrote \(json)")
        }
    }
}

/// A table of strings printed aligned (numbers right-aligned) or as CSV.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []

    init(_ headers: [String]) { self.headers = headers }

    mutating func add(_ row: [String]) { rows.append(row) }

    var text: String {
        let widths = headers.indices.map { i in ([headers[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.indices.map { i in
                let pad = String(repeating: " ", count: widths[i] - cells[i].count)
                return i == 0 ? cells[i] + pad : pad + cells[i]
            }.joined(separator: "  ")
        }
        return
            ([line(headers), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
            + rows.map(line)).joined(separator: "\n") + "\n"
    }

    var csv: String {
        ([headers] + rows).map { $0.joined(separator: ",") }.joined(separator: "\n") + "\n"
    }
}

/// Where a benchmark ran: what the report needs to be compared with another.
struct MachineInfo: Codable {
    var cpuModel: String
    var cores: Int
    /// 1-minute load average when the benchmark started (other processes share the machine).
    var loadAverage1m: Double?
    var blasThreads: Int
    var flowgateVersion: String
    var date: String

    static func current(blasThreads: Int) -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model =
            cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown"
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.flatMap { Double($0) }
        return MachineInfo(
            cpuModel: model, cores: ProcessInfo.processInfo.activeProcessorCount, loadAverage1m: load,
            blasThreads: blasThreads, flowgateVersion: FlowgateCore.flowgateVersion, date: ISO8601DateFormatter().string(from: Date()))
    }

    var summary: String {
        "\(cpuModel), \(cores) cores, load average \(loadAverage1m.map { String(format: "%.2f", $0) } ?? "?") at start, BLAS threads \(blasThreads)"
    }
}

/// A comma-separated list of positive integers ("1,8"); repeated values are accepted too.
struct IntList: ExpressibleByArgument, CustomStringConvertible {
    var values: [Int]
    /// How help shows a default: `1,8`, not the Swift value.
    var description: String { values.map(String.init).joined(separator: ",") }
    var defaultValueDescription: String { description }
    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) > 0 }) else { return nil }
        values = parts.map { $0! }
    }
}

/// A comma-separated list of integers ≥ 0 ("0,5,20"), for counts where none is a valid choice.
struct CountList: ExpressibleByArgument, CustomStringConvertible {
    var values: [Int]
    var description: String { values.map(String.init).joined(separator: ",") }
    var defaultValueDescription: String { description }
    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
        values = parts.map { $0! }
    }
}

/// A status line on stderr (stdout carries only the table or CSV).
func note(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }
