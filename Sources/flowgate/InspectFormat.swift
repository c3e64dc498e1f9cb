import FlowgateCore
import Foundation
import FlowgateModelFormat

/// Text and JSON renderings for `flowgate inspect`.
enum InspectFormat {
    // MARK: Model directories

    static func text(_ s: ModelSummary) -> String {
        let m = s.manifest
        var lines: [String] = []
        func row(_ label: String, _ value: String) { lines.append(label.padding(toLength: 12, withPad: " ", startingAt: 0) + value) }
        row("model", "\(m.name) \(m.modelVersion) (\(m.kind)), schema \(m.schemaVersion)")
        row("dims", "observation \(m.observationDim), action \(m.actionDim)")
        row("action", "low \(vector(m.actionLow))  high \(vector(m.actionHigh))")
        row("normalize", "observation mean/std (\(m.normalization.observationMean.count) dims), rewardScale \(m.normalization.rewardScale)")
        let p = m.sampling
        row(
            "sampling",
            "steps \(p.steps) (max \(p.maxSteps)), candidates \(p.candidates) (max \(p.maxCandidates)), "
                + "samples \(p.samples) (max \(p.maxSamples)), maxBatch \(p.maxBatch)")
        if let r = m.reliability {
            row("reliability", "threshold \(r.threshold) at quantile \(r.quantile), calibration \(r.calibration.count) values from \(r.heldOutCount) held out")
        } else {
            row("reliability", "none")
        }
        let v = m.provenance
        let steps = v.trainingSteps.keys.sorted().map { "\($0)=\(v.trainingSteps[$0]!)" }.joined(separator: " ")
        row("dataset", v.dataset + (v.datasetSHA256.map { " (sha256 \($0))" } ?? ""))
        row("training", "steps \(steps.isEmpty ? "-" : steps), seed \(v.seed)")
        row("built", "\(v.date), commit \(v.gitCommit), flowgate \(v.flowgateVersion)" + (v.config == nil ? "" : ", config recorded"))
        lines.append("")

        var table: [[String]] = [["network", "file / mlp", "kind / layers", "activation", "params", "KB"]]
        for n in s.networks {
            table.append([n.name, n.file, n.kind, "", "\(n.parameterCount)", kilobytes(n.byteSize)])
            for mlp in n.mlps {
                let act = mlp.activation.rawValue + (mlp.layerNorm ? "+ln" : "") + " → " + mlp.outputActivation.rawValue
                table.append(["", "  " + mlp.name, mlp.dims.map(String.init).joined(separator: "→"), act, "\(mlp.parameterCount)", kilobytes(mlp.parameterCount * 4)])
            }
            if n.fixedScalarCount > 0 {
                table.append(["", "  (fixed)", "\(n.fixedTensorCount) tensor\(n.fixedTensorCount == 1 ? "" : "s")", "", "\(n.fixedScalarCount)", kilobytes(n.fixedScalarCount * 4)])
            }
        }
        table.append(["total", "", "", "", "\(s.totalParameterCount)", kilobytes(s.totalByteSize)])
        lines += render(table, rightAligned: [4, 5])
        lines.append("")
        lines.append("OK: all \(s.fileCount) files valid")
        return lines.joined(separator: "\n")
    }

    static func json(_ s: ModelSummary) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(s), as: UTF8.self)
    }

    // MARK: Single safetensors files

    struct Stats {
        var min: Float, max: Float, mean: Double, nonFinite: Int
        init(_ scalars: [Float]) {
            let finite = scalars.filter(\.isFinite)
            min = finite.min() ?? .nan
            max = finite.max() ?? .nan
            mean = finite.isEmpty ? .nan : finite.reduce(0.0) { $0 + Double($1) } / Double(finite.count)
            nonFinite = scalars.count - finite.count
        }
    }

    static func tensorsText(_ file: SafetensorsFile, path: String) -> String {
        var table: [[String]] = [["tensor", "dtype", "shape", "min", "max", "mean"]]
        for name in file.names {
            let t = file.tensors[name]!
            let st = Stats(t.scalars)
            let stats =
                t.count == 0
                ? ["-", "-", "-"]
                : [
                    "\(st.min)", "\(st.max)",
                    String(format: "%.6g", st.mean) + (st.nonFinite > 0 ? " (\(st.nonFinite) non-finite)" : ""),
                ]
            table.append([name, file.dtypes[name]!.rawValue, "\(t.shape)"] + stats)
        }
        var lines = ["\(path): \(file.tensors.count) tensor\(file.tensors.count == 1 ? "" : "s"), \(file.tensors.values.reduce(0) { $0 + $1.count }) scalars"]
        for key in file.metadata.keys.sorted() { lines.append("metadata \(key) = \(file.metadata[key]!)") }
        lines += render(table, rightAligned: [3, 4, 5])
        lines.append("OK: valid safetensors file")
        return lines.joined(separator: "\n")
    }

    static func tensorsJSON(_ file: SafetensorsFile, path: String) -> String {
        let tensors = file.names.map { name -> String in
            let t = file.tensors[name]!
            let st = Stats(t.scalars)
            return "{\"name\":\(quote(name)),\"dtype\":\"\(file.dtypes[name]!.rawValue)\",\"shape\":\(t.shape),"
                + "\"min\":\(number(st.min)),\"max\":\(number(st.max)),\"mean\":\(number(st.mean)),\"nonFinite\":\(st.nonFinite)}"
        }
        return "{\"path\":\(quote(path)),\"metadata\":\(metadataJSON(file)),\"tensors\":[\n"
            + tensors.joined(separator: ",\n") + "\n]}"
    }

    static func valuesJSON(_ file: SafetensorsFile) -> String {
        let tensors = file.names.map { name -> String in
            let t = file.tensors[name]!
            return "\(quote(name)):{\"dtype\":\"\(file.dtypes[name]!.rawValue)\",\"shape\":\(t.shape),"
                + "\"values\":[\(t.scalars.map(number).joined(separator: ","))]}"
        }
        return "{\"metadata\":\(metadataJSON(file)),\"tensors\":{\n" + tensors.joined(separator: ",\n") + "\n}}"
    }

    // MARK: Helpers

    /// Shortest round-trip decimal; non-finite values as Python's json module writes them.
    static func number<F: BinaryFloatingPoint & CustomStringConvertible>(_ x: F) -> String {
        if x.isNaN { return "NaN" }
        if x.isInfinite { return x > 0 ? "Infinity" : "-Infinity" }
        return x.description
    }

    static func quote(_ s: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(s)) ?? Data("\"\"".utf8), as: UTF8.self)
    }

    static func metadataJSON(_ file: SafetensorsFile) -> String {
        "{" + file.metadata.keys.sorted().map { "\(quote($0)):\(quote(file.metadata[$0]!))" }.joined(separator: ",") + "}"
    }

    static func vector(_ v: [Float]) -> String {
        let shown = v.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "[" + shown + (v.count > 8 ? ", … (\(v.count))" : "") + "]"
    }

    static func kilobytes(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1024) }

    static func render(_ rows: [[String]], rightAligned: Set<Int>) -> [String] {
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            let line = row.indices.map { c in
                let pad = String(repeating: " ", count: widths[c] - row[c].count)
                return rightAligned.contains(c) ? pad + row[c] : row[c] + pad
            }.joined(separator: "  ")
            return String(line.reversed().drop { $0 == " " }.reversed())
        }
    }
}
