import ArgumentParser
import FlowgateAlgorithms
import FlowgateBenchmarks
import FlowgateCore
import FlowgateModelFormat
import Foundation

/// `flowgate bench kernels`: OpenBLAS, BLIS and libxsmm at the exact products a model's action
/// selection issues, and the fused layer forms (docs/benchmarks.md).
struct BenchKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "GFLOP/s of OpenBLAS, BLIS and libxsmm at the exact products a model's passes issue, and the fused layer forms.",
        discussion: """
            Runs the model's action selection (candidates, samples and check from the manifest) once \
            per observation count with product recording on, then times every distinct product with \
            each library, interleaved repeat by repeat, and the layer step (product + bias + activation \
            forward; activation backward + product for input gradients) before (FLOWGATE_KERNELS=openblas) \
            and after. The report names the shared object behind each library's entry point.
            """)

    @Argument(help: "Model directory (default: the shipped models/hopper-medium).")
    var model = "models/hopper-medium"
    @Option(help: "Observations per request, comma-separated.")
    var observations = IntList(argument: "1,4,16,64")!
    @Option(name: .customLong("pass-rows"), help: "Candidate rows per pass, as `serve --pass-rows`.")
    var passRows = 256
    @Option(help: "Repeats per measurement; the median is reported.")
    var repeats = 7
    @Option(name: .customLong("min-ms"), help: "Each repeat runs for at least this many milliseconds.")
    var minimumMilliseconds = 20.0
    @Option(help: "Fixed calls per repeat instead of timing-based calibration (for callgrind).")
    var iterations: Int?
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeats must be >= 1") }
        if passRows < 1 { throw ValidationError("--pass-rows must be >= 1") }
        if observations.values.contains(where: { $0 < 1 }) { throw ValidationError("--observations must all be >= 1") }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be >= 1") }
    }

    struct Report: Codable {
        var benchmark = "kernels"
        var machine: MachineInfo
        var model: String
        var libraries: KernelBenchmark.Libraries
        var shapes: [KernelBenchmark.Row]
    }

    func run() throws {
        BLAS.setThreads(1)
        try configureKernelsFromEnvironment()
        let machine = MachineInfo.current(blasThreads: BLAS.threads)
        note("machine: \(machine.summary)")
        let libraries = try KernelBenchmark.libraries()
        note("OpenBLAS cblas_sgemm from \(libraries.openblas); BLIS bli_sgemm from \(libraries.blis); libxsmm from \(libraries.libxsmm); AVX2+FMA epilogues: \(libraries.fusedEpilogues)")
        let bundle: PolicyBundle
        do {
            bundle = try PolicyBundle.load(directory: model)
        } catch {
            throw ValidationError("cannot load model '\(model)': \(error)")
        }
        let selector = bundle.makeSelector()
        selector.rowsPerPass = passRows
        let obsDim = bundle.manifest.observationDim
        // Observations: the model's normalisation means (states it saw), so the check runs as served.
        let mean = bundle.manifest.normalization.observationMean
        var seen: [ProductShape: (obs: [Int], calls: [Int])] = [:]
        for n in observations.values {
            let products = KernelBenchmark.products(
                selector: selector, observationDim: obsDim, observations: n, settings: bundle.defaultSettings
            ) { count in (0..<count).flatMap { _ in mean } }
            for (shape, calls) in products {
                seen[shape, default: ([], [])].obs.append(n)
                seen[shape, default: ([], [])].calls.append(calls)
            }
        }
        note("\(seen.count) distinct products over \(observations.values.map(String.init).joined(separator: ",")) observations")
        var table = TextTable([
            "kind", "rows", "in", "out", "act", "obs", "OpenBLAS_GF/s", "BLIS_GF/s", "libxsmm_GF/s", "layer_before_us",
            "layer_after_us", "speedup", "chosen",
        ])
        var rows: [KernelBenchmark.Row] = []
        for shape in seen.keys.sorted() {
            let (obs, calls) = seen[shape]!
            let r = KernelBenchmark.measure(
                shape, observations: obs, callsPerRequest: calls, repeats: repeats, minimumSeconds: minimumMilliseconds / 1000,
                fixedIterations: iterations)
            rows.append(r)
            table.add([
                shape.kind == "forward" ? "fwd" : "dx", "\(shape.rows)", "\(shape.inner)", "\(shape.outputs)", shape.activation,
                obs.map(String.init).joined(separator: "/"), fmt(r.openblasGflops), r.blisGflops.map { fmt($0) } ?? "-",
                r.xsmmGflops.map { fmt($0) } ?? "-", fmt(r.layerBeforeMicroseconds), fmt(r.layerAfterMicroseconds),
                fmt(r.layerSpeedup, 2), r.chosen,
            ])
        }
        let worst = rows.compactMap { r in [r.blisMaxError, r.xsmmMaxError].compactMap { $0 }.max() }.max() ?? 0
        note("largest |difference| from OpenBLAS over all shapes: \(String(format: "%.2e", worst))")
        try output.emit(table, report: Report(machine: machine, model: model, libraries: libraries, shapes: rows))
    }
}
