import ArgumentParser
import FlowgateCommon
import FlowgateProtocol
import Foundation

/// `flowgate bench decode`: cost of the request decoder on ordinary and hostile frames.
struct BenchDecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Time the request decoder on ordinary and hostile frames (µs per frame, ns per byte).",
        discussion: """
            Frames: a single observation (plain and ndarray), a batch of 64, the 200 KB ragged request, and 16 MiB \
            bodies of one-byte elements (nils, nil:nil map entries, empty arrays). Limits as for a model with \
            max_batch 64 and obs_dim 15. Reports the median of --repeats runs.
            """)

    @Option(help: "Timed decodes per frame (median reported).")
    var repeats = 9

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let limits = ObservationLimits(maxObservations: 64, maxObservationDim: 15)
        let obs = (0..<15).map { Float($0) * 0.1 }
        var frames: [(String, [UInt8])] = [
            ("single obs, plain", Request.act(FloatArray(obs), id: .int(1)).encode()),
            ("single obs, ndarray <f4", Request.act(FloatArray(obs), encoding: .ndarray(.float32), id: .int(1)).encode()),
            ("64 obs, plain", Request.act(FloatArray(rows: Array(repeating: obs, count: 64)), id: .int(1)).encode()),
            ("64 obs, ndarray <f4", Request.act(FloatArray(rows: Array(repeating: obs, count: 64)), encoding: .ndarray(.float32), id: .int(1)).encode()),
        ]
        let big = 16 << 20 - 64
        var ragged: [UInt8] = [0x81]
        MessagePack.append(.string("obs"), to: &ragged)
        MessagePack.appendArrayHeader(count: 100_000, to: &ragged)
        MessagePack.appendArrayHeader(count: 100_000, to: &ragged)
        ragged += [UInt8](repeating: 0, count: 100_000) + [UInt8](repeating: 0xc0, count: 99_999)
        frames.append(("200 KB ragged", ragged))
        for (name, element) in [("16 MiB nil array", [UInt8]([0xc0])), ("16 MiB empty arrays", [0x90])] {
            var f: [UInt8] = [0x82]
            MessagePack.append(.string("obs"), to: &f)
            MessagePack.appendArrayHeader(count: big, to: &f)
            f.reserveCapacity(big + 16)
            for _ in 0..<big { f += element }
            MessagePack.append(.string("id"), to: &f)
            MessagePack.append(.int(1), to: &f)
            frames.append((name, f))
        }
        var map: [UInt8] = [0xdf]
        let entries = big / 2
        for shift in [24, 16, 8, 0] { map.append(UInt8(truncatingIfNeeded: (entries + 1) >> shift)) }
        map += [UInt8](repeating: 0xc0, count: 2 * entries)
        MessagePack.append(.string("id"), to: &map)
        MessagePack.append(.int(1), to: &map)
        frames.append(("16 MiB nil:nil map", map))

        struct Row: Encodable { var frame: String; var bytes: Int; var outcome: String; var medianMicroseconds: Double; var nanosecondsPerByte: Double }
        var rows: [Row] = []
        for (name, frame) in frames {
            var times: [Double] = []
            var outcome = ""
            for _ in 0..<max(1, repeats) {
                let start = monotonicNanoseconds()
                do {
                    _ = try Request.decode(frame, limits: limits)
                    outcome = "ok"
                } catch {
                    outcome = error.code.rawValue
                }
                times.append(Double(monotonicNanoseconds() - start) / 1e3)
            }
            times.sort()
            let median = times[times.count / 2]
            rows.append(Row(frame: name, bytes: frame.count, outcome: outcome, medianMicroseconds: median, nanosecondsPerByte: median * 1e3 / Double(frame.count)))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(rows), as: UTF8.self))
            return
        }
        print("frame                      bytes       outcome         median µs   ns/byte")
        for r in rows {
            print(
                r.frame.padding(toLength: 26, withPad: " ", startingAt: 0)
                    + String(r.bytes).padding(toLength: 12, withPad: " ", startingAt: 0)
                    + r.outcome.padding(toLength: 16, withPad: " ", startingAt: 0)
                    + String(format: "%-12.1f%.2f", r.medianMicroseconds, r.nanosecondsPerByte))
        }
    }
}
